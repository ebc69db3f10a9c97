"""How far a run lies outside the training data, and how NCPL predicts there.

**Distance.** A query's extrapolation is the largest of: the decades by which ``N``, ``D`` or the
compute ``6ND`` lie outside the training range (when the fit knows ``N`` and ``D``), both over all
training runs and over the training runs that share the query's value of each text field (a
1.2B-parameter Marin run is judged against the Marin runs, not against larger runs of another
source); for every
log10-scaled numeric field, the decades outside its training range; for every linear numeric
field, the distance outside its range in units of the range's width (for a field that was constant
in training, the relative change); and 1 for a text value never seen in training or a field that
every training run had but the query lacks. 0 inside the training data.

**Prediction outside.** A backtest inside the training rows holds out the largest runs (whole
model sizes when there are enough of them, else the runs with the largest compute; or the runs
with the largest values of the numeric field a fit names, ``Spec.backtest_col``), trains the
same ensemble on the rest, and on the held-out runs chooses (by MAE) whether the network is
evaluated at the query's values or at the nearest training edge of each numeric field
(``clip``), and how fast the predicted residual falls back to the baseline
(``residual / (1 + shrink * d)``); then ``tau``, the growth of the predictive std with the
distance (``std = sqrt(s^2 + (tau d)^2)``), is the split-conformal value that covers the
``coverage`` share of the held-out runs (on top of the spread of the baseline laws the training
rows cannot tell apart, when the baseline is a Chinchilla law).
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import numpy as np

from jaxscale._pytree import register_serializable

__all__ = [
    "Extrapolation",
    "SHRINK_GRID",
    "MIN_BACKTEST_RUNS",
    "MIN_TRAINING_RUNS",
    "no_extrapolation",
    "size_range",
    "group_size_range",
    "size_distance",
    "group_size_distance",
    "field_distance",
    "combine",
    "future_rows",
    "future_rows_along",
    "choose",
]

#: Candidate ``shrink`` values of the backtest (``1e6``: the baseline alone outside the data).
SHRINK_GRID = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 1e6)

#: Fewest training runs for a backtest, and fewest it keeps to train on.
MIN_TRAINING_RUNS = 30
MIN_BACKTEST_RUNS = 20


class Extrapolation(NamedTuple):
    """Behaviour outside the training data, learnt by the backtest (arrays; see the module).

    Attributes:
      clip: evaluate the network at the nearest training edge of each numeric field.
      shrink: the residual over the baseline is multiplied by ``1 / (1 + shrink * d)``.
      tau: growth of the predictive std per unit of distance (loss units).
      n_backtest: held-out runs of the backtest (0: no backtest).
      backtest_mae: MAE of the chosen prediction on them.
      backtest_mae_plain: MAE of the plain network (no clip, no shrink) on them.
      backtest_mae_baseline: MAE of the baseline (plus the mean residual) on them.
      backtest_coverage: coverage of the chosen ``coverage``-level interval on them.
      backtest_max_distance: largest distance of a held-out run from the backtest's training rows.
    """

    clip: jax.Array
    shrink: jax.Array
    tau: jax.Array
    n_backtest: jax.Array
    backtest_mae: jax.Array
    backtest_mae_plain: jax.Array
    backtest_mae_baseline: jax.Array
    backtest_coverage: jax.Array
    backtest_max_distance: jax.Array


register_serializable(Extrapolation)


def no_extrapolation() -> Extrapolation:
    """The plain network with no widening (no backtest)."""
    nan = np.asarray(np.nan)
    return Extrapolation(np.asarray(False), np.asarray(0.0), np.asarray(0.0), np.asarray(0), nan, nan, nan, nan, nan)


def size_range(N, D) -> np.ndarray:
    """``(3, 2)`` min/max of log10 N, log10 D and log10 (6 N D)."""
    ln, ld = np.log10(np.asarray(N, float)), np.log10(np.asarray(D, float))
    lc = ln + ld + np.log10(6.0)
    return np.array([[a.min(), a.max()] for a in (ln, ld, lc)])


def group_size_range(N, D, codes, n_values) -> np.ndarray:
    """``(T, V, 3, 2)`` :func:`size_range` of the rows with each value of each text field (NaN where
    no row has it); ``codes`` ``(n, T)`` index the values (-1: missing), ``n_values`` is ``V``."""
    ln, ld = np.log10(np.asarray(N, float)), np.log10(np.asarray(D, float))
    lc = ln + ld + np.log10(6.0)
    codes = np.asarray(codes).reshape(len(ln), -1)
    out = np.full((codes.shape[1], max(int(n_values), 1), 3, 2), np.nan)
    for j in range(codes.shape[1]):
        for v in np.unique(codes[:, j]):
            if v < 0:
                continue
            m = codes[:, j] == v
            out[j, v] = [[a[m].min(), a[m].max()] for a in (ln, ld, lc)]
    return out


def group_size_distance(N, D, codes, rng) -> np.ndarray:
    """``(n, T)`` decades of N, D or compute (the largest) outside the range of the training runs
    sharing the row's value of each text field (0 for a missing or unknown value)."""
    ln, ld = np.log10(np.asarray(N, float)), np.log10(np.asarray(D, float))
    lc = ln + ld + np.log10(6.0)
    codes = np.asarray(codes).reshape(len(ln), -1)
    rng = np.asarray(rng, float)
    out = np.zeros(codes.shape)
    for j in range(codes.shape[1]):
        c = codes[:, j]
        ok = (c >= 0) & (c < rng.shape[1])
        r = rng[j, np.where(ok, c, 0)]  # (n, 3, 2)
        d = np.max([_outside(v, r[:, i, 0], r[:, i, 1]) for i, v in enumerate((ln, ld, lc))], axis=0)
        out[:, j] = np.where(ok, d, 0.0)
    return out


def _outside(x, lo, hi):
    d = np.maximum(np.maximum(lo - x, x - hi), 0.0)
    return np.where(np.isfinite(d), d, 0.0)


def size_distance(N, D, rng) -> dict:
    """Decades of ``N``, ``D`` and compute ``6ND`` outside the training ranges ``rng`` (3, 2)."""
    ln, ld = np.log10(np.asarray(N, float)), np.log10(np.asarray(D, float))
    lc = ln + ld + np.log10(6.0)
    rng = np.asarray(rng, float)
    return {name: _outside(v, rng[i, 0], rng[i, 1]) for i, (name, v) in enumerate((("N", ln), ("D", ld),
                                                                                   ("compute", lc)))}


def field_distance(x, x_range, log) -> np.ndarray:
    """``(n, F)`` distance of each transformed value outside the field's training range.

    Decades for log10-scaled fields; range widths for linear fields (relative change for a field
    constant in training); 0 for a missing value or a field with no training value.
    """
    x = np.asarray(x, float)
    lo, hi = np.asarray(x_range, float)[:, 0], np.asarray(x_range, float)[:, 1]
    out = _outside(x, lo, hi)
    lin = ~np.asarray(log, bool)
    if lin.any():
        width = (hi - lo)[lin]
        scale = np.where(width > 0, width, np.maximum(np.abs(lo[lin]), np.abs(np.nan_to_num(x[:, lin]))))
        with np.errstate(divide="ignore", invalid="ignore"):
            out[:, lin] = np.where(out[:, lin] > 0, out[:, lin] / np.where(scale > 0, scale, 1.0), 0.0)
    return out


def combine(parts: dict, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``(distance, worst part name)`` per row: the largest of the named ``(n,)`` parts."""
    if not parts:
        return np.zeros(n), np.full(n, "", dtype=object)
    names = list(parts)
    stack = np.stack([np.asarray(parts[k], float) for k in names])
    i = np.argmax(stack, 0)
    d = stack[i, np.arange(n)]
    worst = np.where(d > 0, np.asarray(names, dtype=object)[i], "")
    return d, worst


def _whole_values(v: np.ndarray, frac: float, keep: int) -> np.ndarray | None:
    """Rows with the largest values of ``v``, whole values from the largest down until at least
    ``frac`` of the rows, when that holds out at most half the rows, leaves ``keep`` distinct values
    and :data:`MIN_BACKTEST_RUNS` rows; else ``None``."""
    n = v.size
    held = np.zeros(n, bool)
    values = np.unique(v[np.isfinite(v)])[::-1]
    for s in values[:max(len(values) - keep, 0)]:
        if held.sum() >= frac * n:
            break
        held |= v == s
    return held if frac * n <= held.sum() <= 0.5 * n and (~held).sum() >= MIN_BACKTEST_RUNS else None


def _largest(v: np.ndarray, frac: float) -> tuple[np.ndarray, float]:
    """``(held, threshold)``: the ``frac`` of the rows (at least 5) with the largest finite ``v``, ties
    included."""
    k = max(int(round(frac * v.size)), 5)
    thr = np.sort(v)[::-1][min(k, v.size) - 1]
    return (v >= thr) & np.isfinite(v), float(thr)


def future_rows(N, D, frac: float, min_sizes: int) -> tuple[np.ndarray, str]:
    """Rows the backtest holds out as "larger runs", and a description of the rule.

    Whole model sizes from the largest down until at least ``frac`` of the rows are held out, when
    that holds out at most half the rows and leaves ``min_sizes`` distinct sizes; else the
    ``frac`` of the rows with the largest compute ``N D``.
    """
    N, D = np.asarray(N, float), np.asarray(D, float)
    held = _whole_values(N, frac, min_sizes)
    if held is not None:
        k, n = int(np.unique(N[held]).size), int(held.sum())
        if k == n:  # a size per run (sizes drawn at random, not a grid)
            return held, f"the {n} run(s) with the largest model sizes (N >= {N[held].min():.4g})"
        return held, f"the {k} largest model size(s) (N >= {N[held].min():.4g}; {n} runs)"
    held, thr = _largest(N * D, frac)
    return held, f"the runs with the largest compute N*D (>= {thr:.4g}; {int(held.sum())} runs)"


def future_rows_along(values, present, frac: float, column: str) -> tuple[np.ndarray, str]:
    """Rows the backtest holds out along one numeric field: its largest values (whole values from the
    largest down, as :func:`future_rows` does with sizes, else the ``frac`` of the rows with the
    largest values, ties included). Rows without the field stay in training."""
    v = np.where(np.asarray(present, bool), np.asarray(values, float), -np.inf)
    held = _whole_values(v, frac, 1)
    if held is None:
        held, _ = _largest(v, frac)
    if not held.any():
        return held, f"no run has {column!r}"
    k = int(np.unique(v[held]).size)
    low = v[held].min()
    return held, f"the runs with the {k} largest value(s) of {column!r} (>= {low:.4g}; {int(held.sum())} runs)"


def _conformal_tau(e, s, d, coverage: float, w=0.0) -> float:
    """Smallest ``tau`` with ``e <= w + sqrt(s^2 + (tau d)^2)`` on a ``ceil((n + 1) coverage) / n``
    share of the rows (all of them, so rows inside the data count); candidates come from rows at
    least a tenth of the largest distance out (a row just outside cannot demand an unbounded growth)."""
    n = e.size
    if n == 0 or d.max() <= 0:
        return 0.0
    w = np.broadcast_to(np.asarray(w, float), e.shape)
    excess = np.maximum(e - w, 0.0)
    need = np.sqrt(np.maximum(excess ** 2 - s ** 2, 0.0)) / np.maximum(d, 1e-300)
    far = d >= 0.1 * d.max()
    cands = np.unique(np.concatenate([[0.0], need[far]]))
    target = min(np.ceil((n + 1) * coverage) / n, 1.0)
    for t in cands:  # ascending; coverage grows with tau
        if np.mean(excess <= np.sqrt(s ** 2 + (t * d) ** 2)) >= target:
            return float(t)
    return float(cands[-1])


def choose(y, base, y_mean: float, y_std: float, mu_plain, mu_clip, std_clip, d, coverage: float, z: float,
           band=0.0) -> Extrapolation:
    """Pick ``clip`` and ``shrink`` by MAE on the backtest's held-out runs, then the conformal ``tau``.

    Args:
      y: ``(n,)`` true targets of the held-out runs.
      base: ``(n,)`` baseline of those runs (loss scale).
      y_mean: mean residual of the backtest's training rows.
      y_std: its standard deviation.
      mu_plain: ``(M, n)`` member means (standardised residual) at the runs' own values.
      mu_clip: ``(M, n)`` member means with numeric fields at the nearest training edge.
      std_clip: ``(n,)`` calibrated predictive std (loss scale) of the clipped pass.
      d: ``(n,)`` distances of the runs from the backtest's training rows.
      coverage: target coverage of the interval.
      z: the Gaussian quantile of ``coverage``.
      band: ``(n,)`` half-width the interval has on top of ``z * std`` (the spread of the laws the
        training rows cannot tell apart), or 0.
    """
    y, base, d, std_clip = (np.asarray(a, float) for a in (y, base, d, std_clip))
    best = None
    for clip, mu in ((False, np.asarray(mu_plain, float)), (True, np.asarray(mu_clip, float))):
        r = mu.mean(0)
        for lam in SHRINK_GRID:
            g = 1.0 / (1.0 + lam * d)
            mean = base + y_mean + y_std * r * g
            mae = float(np.mean(np.abs(mean - y)))
            if best is None or mae < best[0] - 1e-12:
                best = (mae, clip, lam, mean)
    mae, clip, lam, mean = best
    plain = float(np.mean(np.abs(base + y_mean + y_std * np.asarray(mu_plain, float).mean(0) - y)))
    law = float(np.mean(np.abs(base + y_mean - y)))
    e = np.abs(y - mean)
    band = np.broadcast_to(np.asarray(band, float), e.shape)
    tau = _conformal_tau(e / z, std_clip, d, coverage, band / z)
    cov = float(np.mean(e <= band + z * np.sqrt(std_clip ** 2 + (tau * d) ** 2)))
    return Extrapolation(np.asarray(bool(clip)), np.asarray(float(lam)), np.asarray(tau), np.asarray(int(y.size)),
                         np.asarray(mae), np.asarray(plain), np.asarray(law), np.asarray(cov),
                         np.asarray(float(d.max()) if d.size else 0.0))
