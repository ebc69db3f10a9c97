"""Robustness drivers: the cut-off sweep with AUE (App. C.4) and the subset-selection curve (Fig. 7a).

* :func:`cutoff_sweep`: hold out the top ``ratio`` of a task's models ranked by FLOPs (or by the
  target), for ratios 0.60 -> 0.05; refit the PC law and the ln-FLOPs baseline at every ratio;
  AUE = area under test-MSE vs ratio (trapezoid). Lower is better.
* :func:`subset_curve`: for each budget, the V-optimal union of families
  (:func:`jaxscale.observational.selection.select`, FLOPs <= 84 candidates, no forced family) is
  the ONLY training data of the three GSM8K post-training fits; the score is the geometric mean
  of their test MSEs on the post-cut-off models (pre-registered models excluded, as in Fig. 7a).
  Random family unions of a similar size are the baseline.
"""
from __future__ import annotations

import warnings
from functools import partial
import jax
import jax.numpy as jnp
import numpy as np

from jaxscale._pytree import pytree_dataclass, static_field
from jaxscale.infer import minimize_lbfgs

from . import data as _data
from .fit import FLOOR_MAX, ln_regressor, objective, predict, start_theta, unpack
from .pca import _fit_transform, _pad_rows
from .selection import candidate_pool, select
from .splits import SWEEP_RATIOS, aue, rank_by_column_split
from .tasks import TaskSpec, get_task, prepare

__all__ = ["SweepResult", "batched_test_mse", "cutoff_sweep", "geo_mse", "subset_curve", "GSM8K_TASKS"]

GSM8K_TASKS = ("gsm8k_naive", "gsm8k_cot", "gsm8k_cot_sc")


@pytree_dataclass
class SweepResult:
    """Test MSE per test ratio for the PC law and the ln-FLOPs baseline, and their AUEs (a pytree:
    the task's name and the ranking are static)."""

    task: str = static_field()
    rank_by: str = static_field()
    ratios: np.ndarray
    n_train: np.ndarray
    mse_pc: np.ndarray
    mse_flops: np.ndarray
    aue_pc: float
    aue_flops: float

    def to_dict(self) -> dict:
        return dict(task=self.task, rank_by=self.rank_by, aue_pc=self.aue_pc, aue_flops=self.aue_flops,
                    rows=[dict(test_ratio=float(r), n_train=int(n), mse_pc=float(a), mse_flops=float(b))
                          for r, n, a, b in zip(self.ratios, self.n_train, self.mse_pc, self.mse_flops)])


def _fit_test_mse(X, y, tr, te, floor_max, delta):
    """Fit the law on the rows weighted by ``tr`` from the paper's start (L-BFGS); MSE on ``te``."""
    res = minimize_lbfgs(objective, start_theta(X.shape[1], X.dtype), X, y, tr, delta, floor_max,
                         max_steps=1000, tol=1e-12, ftol=1e-15)
    r = predict(unpack(res.params, floor_max), X) - y
    return jnp.sum(te * r * r) / jnp.sum(te), res.converged


@partial(jax.jit, static_argnames=("k",))
def _batched_test_mse(Bp, op, y, trains, tests, floor_max, delta, k):
    """For every (train, test) mask pair: impute + PCA on the train rows, then
    :func:`_fit_test_mse` on the top ``k`` PCs. One vmapped program over the masks."""

    def one(tr, te):
        _, _, S = _fit_transform(Bp, op, tr)
        return _fit_test_mse(S[:, :k], y, tr, te, floor_max, delta)

    return jax.vmap(one)(trains, tests)


@jax.jit
def _batched_baseline_mse(X, y, trains, tests, floor_max, delta):
    return jax.vmap(lambda tr, te: _fit_test_mse(X, y, tr, te, floor_max, delta))(trains, tests)


def _pad_masks(masks, npad):
    m = np.zeros((len(masks), npad))
    m[:, :masks.shape[1]] = masks
    return jnp.asarray(m)


def batched_test_mse(spec: TaskSpec, df, trains, tests, baseline: bool = False) -> np.ndarray:
    """Test MSE of ``spec``'s law fitted on each row of ``trains`` (B, n) and scored on the
    matching row of ``tests``, all masks in ONE compiled program (vmap). ``baseline=True``:
    the ln-FLOPs baseline instead of the PCs (rows without FLOPs are left out of both masks).

    Warns naming the masks whose fit did not converge.
    """
    trains, tests = np.asarray(trains, bool), np.asarray(tests, bool)
    if trains.ndim != 2 or trains.shape != tests.shape or trains.shape[1] != len(df):
        raise ValueError(f"masks must be (B, {len(df)}) for the task's {len(df)} rows; got "
                         f"trains {trains.shape}, tests {tests.shape}")
    y = df["y"].to_numpy(float)
    n = len(df)
    npad = _pad_rows(n)
    yp = np.zeros(npad)
    yp[:n] = y
    fmax = jnp.asarray(FLOOR_MAX if spec.floor else 0.0)
    delta = jnp.asarray(1.0 if spec.loss == "huber" else np.inf)
    if baseline:
        v = df[_data.FLOPS].to_numpy(float)
        ok = np.isfinite(v)
        trains, tests = trains & ok, tests & ok
        X = np.zeros((npad, 1))
        X[:n] = ln_regressor(np.where(ok, v, 1.0))
        out, conv = _batched_baseline_mse(jnp.asarray(X), jnp.asarray(yp), _pad_masks(trains, npad),
                                          _pad_masks(tests, npad), fmax, delta)
    else:
        B = df[list(spec.metrics)].to_numpy(float)
        obs = np.isfinite(B)
        for i, tr in enumerate(trains):
            if tr.sum() < 3 or np.any((obs & tr[:, None]).sum(0) < 2):
                raise ValueError(f"mask {i}: {int(tr.sum())} training rows; need >= 3 with >= 2 "
                                 "observed values per benchmark")
        Bp = np.zeros((npad, B.shape[1]))
        Bp[:n] = np.where(obs, B, 0.0)
        op = np.ones((npad, B.shape[1]), bool)
        op[:n] = obs
        out, conv = _batched_test_mse(jnp.asarray(Bp), jnp.asarray(op), jnp.asarray(yp),
                                      _pad_masks(trains, npad), _pad_masks(tests, npad), fmax, delta,
                                      k=spec.k)
    conv = np.asarray(conv)
    if not conv.all():
        warnings.warn(f"{spec.name}: the fit did not converge for mask(s) {np.flatnonzero(~conv).tolist()}",
                      RuntimeWarning, stacklevel=2)
    return np.asarray(out)


def cutoff_sweep(task: str | TaskSpec, ratios=SWEEP_RATIOS, rank_by: str = "flops") -> SweepResult:
    """Cut-off sweep of one named task (App. C.4).

    ``rank_by="flops"``: the largest-FLOPs models go to test (missing FLOPs count as largest);
    ``"y"``: the best-scoring models go to test. The sweep runs over the task's models that have
    FLOPs (so the PC law and the ln-FLOPs baseline are scored on the same rows); pre-registered
    models join the ranking like any other model (the task's own split rule is replaced).
    """
    spec = task if isinstance(task, TaskSpec) else get_task(task)
    if rank_by not in ("flops", "y"):
        raise ValueError(f"rank_by must be 'flops' or 'y', got {rank_by!r}")
    base = prepare(spec)
    df = base.df[np.isfinite(base.df[_data.FLOPS].to_numpy(float))].reset_index(drop=True)
    col = df[_data.FLOPS] if rank_by == "flops" else df["y"]
    ratios = np.asarray(ratios, float)
    if np.any((ratios <= 0) | (ratios >= 1)):
        raise ValueError(f"test ratios must lie in (0, 1), got {ratios.tolist()}")
    trains = np.stack([rank_by_column_split(col.to_numpy(float), float(r)) for r in ratios])
    pcs = batched_test_mse(spec, df, trains, ~trains)
    fls = batched_test_mse(spec, df, trains, ~trains, baseline=True)
    return SweepResult(spec.name, rank_by, ratios, trains.sum(1), pcs, fls, aue(ratios, pcs),
                       aue(ratios, fls))


def _gsm8k_masks(name: str, subsets: list):
    """(df, trains, tests) for a GSM8K task: train = the subset's models, test = post-cut-off
    models (pre-registered models excluded, held-out candidates not added to test)."""
    spec = get_task(name, prereg="exclude")
    prep = prepare(spec)
    models = prep.df["Model"].to_numpy()
    trains = np.stack([np.isin(models, s) & prep.train for s in subsets])
    tests = np.broadcast_to(~prep.train, trains.shape)
    return spec, prep.df, trains, tests


def geo_mse(subsets: list) -> tuple[np.ndarray, dict]:
    """Geometric-mean test MSE over the three GSM8K fits for each training subset (model names).

    Returns (geo (S,), {task: mse (S,)}); every subset of every task runs in one program per task.
    """
    per = {}
    for name in GSM8K_TASKS:
        spec, df, trains, tests = _gsm8k_masks(name, subsets)
        per[name] = batched_test_mse(spec, df, trains, tests)
    geo = np.exp(np.mean([np.log(v) for v in per.values()], axis=0))
    return geo, per


def subset_curve(key=None, budgets=(4, 8, 12, 16, 20, 24), n_random: int = 5) -> dict:
    """Fig. 7a: V-optimal subsets vs random family subsets vs all FLOPs <= 84 models.

    ``key`` (a ``jax.random`` key) draws ``n_random`` random family unions per budget with a size
    in ``[budget - 2, budget]``; ``None`` skips the random baseline.
    Returns a JSON-ready dict with one row per budget.
    """
    pool = candidate_pool("flops84")
    sel = select(pool, budgets=budgets, forced=None)
    everyone = tuple(_data.core_models()["Model"])
    subsets = [s.models for s in sel] + [everyone]
    rnd = [] if key is None else _random_unions(key, pool, budgets, n_random)
    geo, per = geo_mse(subsets + [m for _, m in rnd])
    rows = []
    for i, s in enumerate(sel):
        rows.append(dict(budget=s.budget, objective=s.objective, n_models=s.n_models,
                         families=list(s.families), geo_mse=float(geo[i]),
                         **{f"mse_{k}": float(v[i]) for k, v in per.items()}))
        if key is not None:
            rows[-1]["random_geo_mse"] = [float(g) for (b, _), g in zip(rnd, geo[len(sel) + 1:])
                                          if b == s.budget]
    return dict(rows=rows, all_geo_mse=float(geo[len(sel)]), n_candidates=len(pool),
                all_mse={k: float(v[len(sel)]) for k, v in per.items()})


def _random_unions(key, pool, budgets, n_random) -> list:
    """``n_random`` random family unions per budget with ``budget - 2 <= size <= budget``: a
    random permutation of families is filled greedily (vectorised over 64 draws), the first
    ``n_random`` draws that land in the window are kept."""
    import jax

    fam = pool[_data.FAMILY].to_numpy()
    names = np.array(list(dict.fromkeys(fam)))
    sizes = np.array([(fam == f).sum() for f in names])
    out = []
    for b in budgets:
        perms = np.asarray(jax.vmap(lambda k: jax.random.permutation(k, len(names)))(
            jax.random.split(jax.random.fold_in(key, b), 64)))
        s = sizes[perms]
        # greedy fill: take a family if it still fits (sequential in the family order only)
        take = np.zeros_like(s, bool)
        tot = np.zeros(len(perms), int)
        for j in range(s.shape[1]):
            fits = tot + s[:, j] <= b
            take[:, j] = fits
            tot = tot + np.where(fits, s[:, j], 0)
        good = np.flatnonzero((tot >= max(b - 2, 3)) & (tot <= b))[:n_random]
        for g in good:
            chosen = names[perms[g][take[g]]]
            out.append((b, tuple(pool.loc[np.isin(fam, chosen), "Model"])))
    return out
