r"""Probabilistic scaling law of your own learning curves, from predicted held-out points.

Fit a curve model on the observed rows, draw joint samples of every held-out row (whole curves
or the ends of curves), merge each draw with the observed rows, and per draw take the
compute-efficient frontier of all curves and fit :math:`\ln L = b_1 \ln C + b_0`
(:mod:`.frontier`). With the true values of the held-out rows the same law of the true curves is
the ground truth, and every draw gets its AbC (area between the two lines in the
:math:`(\ln C, \ln L)` plane over the compute grid).

The compute grid defaults to the data's own range: from the smallest to the largest final
compute of the curves (100 log-spaced points). Curves logged at different numbers of points are
padded to a common length by repeating their last point at a compute larger by a relative
1e-9 per repeat (a flat, negligible extension, counted in the output as ``n_padded_points``).
"""
from __future__ import annotations

import time
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxscale._log import get_logger
from jaxscale.gp.linalg import cholesky_with_jitter
from jaxscale.learning_curves.baselines import BASELINE_LAWS_NOTE, data_baselines
from jaxscale.learning_curves.core import (
    Spec,
    _ids,
    extrapolation,
    extrapolation_summary,
    fit,
    fit_report,
    predict_restarts,
    prediction_from_joint,
    warn_extrapolation_of,
)
from jaxscale.learning_curves.frame import Data, curve_ids
from jaxscale.learning_curves.frontier import compute_grid, law_from_loss, make_plan
from jaxscale.metrics import abc_loglinear

__all__ = ["CurveTable", "curve_table", "default_grid", "table_law", "law_stats", "check_law_data",
           "check_abc_range", "abc_range_info"]

log = get_logger(__name__)


class CurveTable(NamedTuple):
    """Curves of a :class:`Data` as a padded ``(K, P)`` layout of row indices (sorted by x)."""

    labels: tuple  # K (task label, instance label)
    curve: np.ndarray  # (K,) curve ids
    index: np.ndarray  # (K, P) row of every point; padded entries repeat the curve's last row
    valid: np.ndarray  # (K, P) real (not padded) entries
    compute: np.ndarray  # (K, P) float64 FLOPs, strictly increasing along P
    n_padded: int


def curve_table(data: Data) -> CurveTable:
    """Group rows into curves (sorted by x) and pad them to a common length (see module docstring)."""
    if data.compute is None:
        raise ValueError("the scaling law needs the compute of every point: from_frame(..., compute_col=...) "
                         "(CLI --compute-col) or params_col + tokens_per_step (CLI --params-col, --tokens-per-step)")
    cid = curve_ids(data)
    x = np.asarray(data.x, float)
    comp = np.asarray(data.compute, float)
    order = np.lexsort((x, cid))
    cs = cid[order]
    curves, inv, counts = np.unique(cs, return_inverse=True, return_counts=True)
    start = np.cumsum(counts) - counts
    rank = np.arange(len(cs)) - start[inv]
    K, P = len(curves), int(counts.max())
    valid = np.zeros((K, P), bool)
    valid[inv, rank] = True
    index = np.empty((K, P), np.int64)
    index[:] = order[start + counts - 1][:, None]  # padded entries: the curve's last row
    index[inv, rank] = order
    R = max(data.n_instances, 1)
    bad = (np.diff(comp[order]) <= 0) & (cs[1:] == cs[:-1])
    if bad.any():
        c = int(cs[1:][bad][0])
        rows = order[cs == c]
        raise ValueError(f"compute must increase with x along every curve; curve "
                         f"({data.task_labels[c // R]}, {data.instance_labels[c % R]}) does not "
                         f"(compute {comp[rows][:6].tolist()}...)")
    compute = comp[index]
    pad = np.cumsum(~valid, axis=1)
    compute = np.where(valid, compute, compute * (1.0 + 1e-9 * pad))
    labels = tuple((data.task_labels[c // R], data.instance_labels[c % R]) for c in curves)
    return CurveTable(labels, curves, index, valid, compute, int((~valid).sum()))


def default_grid(table: CurveTable, n: int = 100) -> np.ndarray:
    """``n`` log-spaced compute values from the smallest to the largest final compute of the curves
    (the whole compute range when every curve ends at the same compute)."""
    last = table.compute[np.arange(len(table.curve)), table.valid.sum(1) - 1]
    lo, hi = float(last.min()), float(last.max())
    if not hi > lo * (1 + 1e-9):
        lo, hi = float(table.compute[:, 0].min()), float(last.max())
    return compute_grid(lo, hi, n)


def check_law_data(data: Data, table: CurveTable, rows=None) -> None:
    """The law ``ln L = b1 ln C + b0`` needs at least 2 curves and a loss > 0 on every row that
    carries one (``rows``: the rows to check, default all)."""
    if len(table.curve) < 2:
        lab = table.labels[0] if table.labels else ()
        raise ValueError(f"the scaling law needs at least 2 curves (runs of different size); the table has "
                         f"{len(table.curve)} curve {lab}: underdetermined. Add runs of other sizes")
    y = np.asarray(data.y, float)
    m = np.ones(len(y), bool) if rows is None else np.asarray(rows, bool)
    bad = m & np.isfinite(y) & (y <= 0)
    if bad.any():
        col = dict(data.columns).get("target", "y")
        raise ValueError(f"the scaling law takes ln of the loss, but column {col!r} has {int(bad.sum())} value(s) "
                         f"<= 0 at rows {_ids(data, bad)}; the loss must be > 0 (a metric that can be 0 or "
                         "negative is not a loss)")


def check_abc_range(abc_range) -> tuple:
    """``(C_min, C_max)`` of the AbC as floats, refused unless ``0 < C_min < C_max < inf``."""
    try:
        lo, hi = (float(v) for v in abc_range)
    except (TypeError, ValueError):
        raise ValueError(f"the AbC range must be two numbers (C_min, C_max) in FLOPs, e.g. (1e15, 1e20); "
                         f"got {abc_range!r}") from None
    if not (0 < lo < hi < np.inf):
        raise ValueError(f"the AbC range must satisfy 0 < C_min < C_max (FLOPs), got ({lo:g}, {hi:g})")
    return lo, hi


def abc_range_info(c_min: float, c_max: float, source: str) -> dict:
    """The JSON block that says over which compute range (FLOPs) an AbC was taken, and why."""
    return {"c_min": float(c_min), "c_max": float(c_max), "ln_c_min": float(np.log(c_min)),
            "ln_c_max": float(np.log(c_max)), "source": source}


def law_stats(a, level: float = 0.9) -> dict:
    """``{mean, std, lo, hi}`` of draws (central ``level`` band)."""
    a = np.asarray(a, float).ravel()
    q = (1 - level) / 2
    return {"mean": float(a.mean()), "std": float(a.std()), "lo": float(np.quantile(a, q)),
            "hi": float(np.quantile(a, 1 - q))}


@partial(jax.jit, static_argnames=("n_per",))
def _draw_laws(key, plan, truth, held_pos, mean, chol, index, floor, n_per: int):
    R, M = mean.shape
    eps = jax.random.normal(key, (R, n_per, M), mean.dtype)
    draws = mean[:, None, :] + jnp.einsum("rmk,rsk->rsm", chol, eps)
    draws = jnp.swapaxes(draws, 0, 1).reshape(n_per * R, M)  # interleaved over restarts
    rows = jnp.broadcast_to(truth, (draws.shape[0],) + truth.shape).at[:, held_pos].set(draws)
    n_bad = jnp.sum(draws <= 0)
    rows = jnp.maximum(rows, floor)
    return law_from_loss(plan, rows[:, index]), n_bad


def table_law(key, data: Data, held, spec: Spec = Spec(), *, n_samples: int = 1000, rule: str = "interp",
              grid=None, grid_size: int = 100, level: float = 0.9, abc_range=None) -> dict:
    """Probabilistic scaling law from the predicted held-out rows of ``data``.

    Args:
      key: PRNG key (fit restarts and joint draws).
      data: every row, with compute (``from_frame(..., compute_col=...)`` or params + tokens/step).
      held: ``(n,)`` boolean mask of held-out rows (predicted; scored when they carry a loss).
      spec: the curve model.
      n_samples: joint draws of the held-out rows (each draw gives one law).
      rule: frontier rule, ``"interp"`` (log-log interpolation within each curve) or ``"nearest"``.
      grid: compute grid (FLOPs); default :func:`default_grid` with ``grid_size`` points.
      level: central band of the reported statistics.
      abc_range: ``(C_min, C_max)`` in FLOPs over which the AbC integrates (default: the grid's
        range). Published AbC values of nanoGPT laws integrate over ``(1e15, 1e20)``, a wider range
        than the data's own, so compare with them only at that range.

    Returns:
      ``(fit, prediction of the held-out rows (observations, central ``level`` interval), summary)``;
      the summary is a JSON-ready dict: ``b1``, ``b0`` (and ``abc`` when the held-out rows carry
      their true loss) as ``{mean, std, lo, hi}`` over draws, the ground-truth law, the
      restart-means law (the original paper's mode), the grid, and counts of padded points and
      floored draws.
    """
    held = np.asarray(held, bool)
    if held.shape != (len(data),) or not held.any() or held.all():
        raise ValueError("the hold-out must select some but not all rows (they are predicted from the others)")
    if n_samples < 1:
        raise ValueError(f"n_samples must be >= 1, got {n_samples}")
    table = curve_table(data)
    check_law_data(data, table)
    g = default_grid(table, grid_size) if grid is None else np.asarray(grid, float)
    c_lo, c_hi = (float(g[0]), float(g[-1])) if abc_range is None else check_abc_range(abc_range)
    plan = make_plan(table.compute, grid=g, rule=rule)
    truth = np.asarray(data.y, float)
    has_truth = bool(np.all(np.isfinite(truth)))
    k_fit, k_draw = jax.random.split(key)
    t0 = time.perf_counter()
    fitted = fit(k_fit, data.rows(~held), spec)
    joint = predict_restarts(fitted, data.rows(held))
    dist = extrapolation(fitted, data.rows(held))
    warn_extrapolation_of(fitted, data.rows(held), dist, what=f"{spec.model} (held-out rows of the law)")
    fit_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    chol = cholesky_with_jitter(joint.cov, what="held-out joint predictive")
    R = joint.mean.shape[0]
    n_per = -(-int(n_samples) // R)
    observed = truth[~held]
    floor = 1e-3 * float(np.min(observed))
    truth0 = jnp.asarray(np.where(held, 1.0, truth))
    held_pos = jnp.asarray(np.flatnonzero(held))
    index = jnp.asarray(table.index)
    law, n_bad = _draw_laws(k_draw, plan, truth0, held_pos, jnp.asarray(joint.mean), chol, index, floor, n_per)
    b1, b0 = np.asarray(law.b1)[:n_samples], np.asarray(law.b0)[:n_samples]
    # restart means: one law per restart (the paper's mode)
    rows_r = jnp.broadcast_to(truth0, (R,) + truth0.shape).at[:, held_pos].set(
        jnp.maximum(jnp.asarray(joint.mean), floor))
    law_r = law_from_loss(plan, rows_r[:, index])
    u0, u1 = float(np.log(c_lo)), float(np.log(c_hi))
    out = {"model": spec.model, "rule": rule, "n_curves": len(table.curve),
           "n_heldout_curves": int(len(np.unique(curve_ids(data)[held]))), "n_heldout_rows": int(held.sum()),
           "restarts_ok": int(np.asarray(fitted.ok).sum()), "samples": int(b1.size), "level": level,
           "grid": {"min": float(g[0]), "max": float(g[-1]), "size": int(len(g)), "default": grid is None},
           "b1": law_stats(b1, level), "b0": law_stats(b0, level),
           "restart_means": {"b1": law_stats(law_r.b1, level), "b0": law_stats(law_r.b0, level)},
           "n_padded_points": table.n_padded, "n_floored_values": int(n_bad),
           "converged": None, "convergence": fit_report(fitted), "extrapolation": extrapolation_summary(dist)}
    out["converged"] = out["convergence"]["converged"]
    if out["b1"]["mean"] > 0:  # a law of the loss in compute that rises: the frontier does not follow a law
        import warnings

        warnings.warn(f"probabilistic scaling law: the fitted slope b1 = {out['b1']['mean']:.3g} (band "
                      f"[{out['b1']['lo']:.3g}, {out['b1']['hi']:.3g}]) says the loss rises with compute: the compute "
                      f"frontier of these {len(table.curve)} curves does not follow a falling power law (too few "
                      "runs, sizes too close, or runs trained too differently); do not extrapolate it", UserWarning,
                      stacklevel=2)
    if table.n_padded:
        log.warning("curves have different numbers of points: %d padded entries repeat a curve's last point "
                    "(a flat extension over a relative 1e-9 of compute)", table.n_padded)
    if int(n_bad):
        log.warning("%d drawn loss values <= 0 were floored at 1e-3 x the smallest observed loss before the log-log "
                    "law; the curve model is poorly fitted (more restarts or Adam steps?)", int(n_bad))
    if has_truth:
        gt = law_from_loss(plan, jnp.asarray(truth)[index])
        abc = abc_loglinear(jnp.asarray(b1), jnp.asarray(b0), gt.b1, gt.b0, u0, u1)
        out["gt"] = {"b1": float(gt.b1), "b0": float(gt.b0)}
        out["abc"] = law_stats(abc, level)
        out["abc_of_mean_law"] = float(abc_loglinear(b1.mean(), b0.mean(), gt.b1, gt.b0, u0, u1))
        out["restart_means"]["abc"] = law_stats(abc_loglinear(law_r.b1, law_r.b0, gt.b1, gt.b0, u0, u1), level)
        out["gt_in_band_b1"] = bool(out["b1"]["lo"] <= float(gt.b1) <= out["b1"]["hi"])
        out["gt_in_band_b0"] = bool(out["b0"]["lo"] <= float(gt.b0) <= out["b0"]["hi"])
        out["abc_range"] = abc_range_info(c_lo, c_hi, "the compute grid" if abc_range is None else "given")
    else:
        reason = "held-out rows carry no true loss, so there is no ground-truth law to compare with"
        out.update(gt=None, gt_reason=reason, abc=None, abc_reason=reason)
    # the sceptic's law (held-out rows filled by each naive baseline, from the training rows only): with
    # the truth its AbC; without it, whether its b1 lies inside the model's band
    preds, info = data_baselines(data.rows(~held), data.rows(held), full=data)
    laws = {}
    for name, b in preds.items():
        rows_b = truth0.at[held_pos].set(jnp.maximum(jnp.asarray(b), floor))
        lb = law_from_loss(plan, rows_b[index])
        laws[name] = {"b1": float(lb.b1), "b0": float(lb.b0),
                      "b1_in_model_band": bool(out["b1"]["lo"] <= float(lb.b1) <= out["b1"]["hi"])}
        if has_truth:
            laws[name]["abc"] = float(abc_loglinear(lb.b1, lb.b0, gt.b1, gt.b0, u0, u1))
    out["baseline_laws"] = {**laws, "size": info["size"], "note": BASELINE_LAWS_NOTE}
    out["fit_seconds"] = fit_s
    out["law_seconds"] = time.perf_counter() - t0
    return fitted, prediction_from_joint(joint, level=level)._replace(extrapolation=jnp.asarray(dist)), out
