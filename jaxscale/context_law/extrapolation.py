"""How far a query lies outside a task's training cells, and how fast errors grow out there.

**Distance** (``distance``): in decades, the largest of

* how far the prompt length lies outside the task's training prompt lengths
  (``log10(n_pmt / longest)`` above, ``log10(shortest / n_pmt)`` below),
* how far the compute lies outside the task's training compute (the same, in FLOPs),
* how far the prompt-to-limit ratio ``n_pmt / n_ctx`` exceeds the largest ratio among the task's
  training rows (a prompt further past the context limit than any training cell),

and 0 inside. A prompt twice as long as the task's longest training prompt has distance 0.30; a
model with 10x the largest training compute has distance 1.

**Drift** (``backtest_weights`` and ``drift_from_backtest``): a leave-future-out backtest inside
the training rows. Per task, the rows with the longest prompts (``Spec.backtest_frac`` of them,
whole prompt lengths at a time) play the future: the law is refitted on the others, and the errors
``e`` of that fit on the future rows, at their distances ``d`` outside the refit's cells, give one
rate ``tau`` for all tasks (pooled: a task has only a handful of such rows) solving
``mean(e^2 / (s0^2 + tau^2 d^2)) = 1``, where ``s0`` is the refit's residual sd on its own rows
(0 when the errors are no larger than that noise). Predictions then add an extrapolation
discrepancy of sd ``tau * d`` (score units) to the noise, so intervals widen with the distance.
"""
from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from jaxscale.context_law.model import Spec, param_names, predict_law

__all__ = ["BOX_FIELDS", "training_box", "distance", "backtest_weights", "drift_from_backtest", "solve_drift"]

#: Columns of a task's training box: log10 prompt length (min, max), log10 compute (min, max),
#: log10 of the largest prompt-to-limit ratio.
BOX_FIELDS = ("log10_n_pmt_min", "log10_n_pmt_max", "log10_C_min", "log10_C_max", "log10_ratio_max")

_LN10 = float(np.log(10.0))
_INSIDE = 1e-9  # decades: a training cell read back through logs is inside, not 1e-16 outside


def training_box(stacked) -> np.ndarray:
    """(T, 5) box of each task's rows with weight > 0 (``stacked`` leaves are (T, m)); see
    :data:`BOX_FIELDS`."""
    w = np.asarray(stacked.weight) > 0
    lp = np.log10(np.asarray(stacked.n_pmt, float))
    lc = np.asarray(stacked.log_C, float) / _LN10
    lr = lp - np.log10(np.asarray(stacked.n_ctx, float))
    big = np.inf
    return np.stack([np.where(w, lp, big).min(1), np.where(w, lp, -big).max(1),
                     np.where(w, lc, big).min(1), np.where(w, lc, -big).max(1),
                     np.where(w, lr, -big).max(1)], axis=1)


def distance(box, log_C, n_pmt, n_ctx, xp=jnp):
    """Decades outside the training box for each row (``box`` rows broadcast against the row
    arrays: pass ``box[task]``); 0 inside. Jit-able; ``xp=np`` computes on the host."""
    box = xp.asarray(box)
    lp = xp.log10(xp.asarray(n_pmt))
    lc = xp.asarray(log_C) / _LN10
    lr = lp - xp.log10(xp.asarray(n_ctx))
    parts = xp.stack([box[..., 0] - lp, lp - box[..., 1], box[..., 2] - lc, lc - box[..., 3], lr - box[..., 4]])
    d = xp.max(parts, axis=0)
    return xp.where(d > _INSIDE, d, 0.0)


def _enough(y, n_pmt, log_C, spec: Spec) -> bool:
    from jaxscale.context_law.fit import _compute_levels

    return (len(y) >= len(param_names(spec)) + 1 and not np.all(y == y[0])
            and np.unique(np.round(np.log(n_pmt), 9)).size >= 2
            and (not spec.fit_alpha or _compute_levels(log_C) >= 2))


def backtest_weights(stacked, spec: Spec, frac: float):
    """Split each task's training rows (weight > 0) at a prompt length: the longest prompts (about
    ``frac`` of the rows, at least one prompt length) are the future, the rest the past.

    Returns ``(w_past, future, ok)``: (T, m) weights of the refit (the full training weights where
    the split is not possible, so every refit is well-posed), (T, m) boolean future rows, and (T,)
    whether the task's split is usable (its past alone can pin the law's free parameters).
    """
    w = np.asarray(stacked.weight, float)
    n_pmt = np.asarray(stacked.n_pmt, float)
    y = np.asarray(stacked.y, float)
    log_C = np.asarray(stacked.log_C, float)
    T = w.shape[0]
    w_past, future, ok = w.copy(), np.zeros(w.shape, bool), np.zeros(T, bool)
    if frac <= 0:
        return w_past, future, ok
    for t in range(T):  # host-side bookkeeping per task (no numerics)
        rows = w[t] > 0
        lengths = np.sort(n_pmt[t][rows])
        if lengths.size == 0:
            continue
        cut = lengths[min(int(np.floor((1.0 - frac) * lengths.size)), lengths.size - 1)]
        fut = rows & (n_pmt[t] >= cut)
        past = rows & ~fut
        if not fut.any() or not _enough(y[t][past], n_pmt[t][past], log_C[t][past], spec):
            continue
        w_past[t] = np.where(past, w[t], 0.0)
        future[t], ok[t] = fut, True
    return w_past, future, ok


def solve_drift(e, d, s0) -> float:
    """The rate ``tau >= 0`` with ``mean(e^2 / (s0^2 + tau^2 d^2)) = 1`` (0 when already <= 1)."""
    e2 = np.asarray(e, float) ** 2
    d2 = np.asarray(d, float) ** 2
    s2 = np.maximum(np.asarray(s0, float) ** 2, 1e-12)
    if e2.size == 0 or not np.any(d2 > 0):
        return 0.0

    def excess(tau):
        return float(np.mean(e2 / (s2 + tau ** 2 * d2))) - 1.0

    if excess(0.0) <= 0:
        return 0.0
    hi = 1.0
    while excess(hi) > 0 and hi < 1e3:
        hi *= 2.0
    lo = 0.0
    for _ in range(60):  # bisection on a scalar (host side)
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if excess(mid) > 0 else (lo, mid)
    return hi


@partial(jax.jit, static_argnames=("law",))
def _refit_predictions(law, theta, log_C, n_pmt, n_ctx, floor):
    """Each task's refit ``theta`` (T, P) at that task's rows (leaves (T, m)): one compiled program
    instead of one small eager program per operation."""
    return predict_law(law, jnp.moveaxis(theta, -1, 0)[..., None], log_C, n_pmt, n_ctx, floor)


def _host_distance(box, stacked) -> np.ndarray:
    """:func:`distance` of every row of ``stacked`` (leaves (T, m)) from its task's ``box``, on the host."""
    return distance(box[:, None, :], np.asarray(stacked.log_C, float), np.asarray(stacked.n_pmt, float),
                    np.asarray(stacked.n_ctx, float), xp=np)


def drift_from_backtest(stacked, w_past, future, ok, theta, spec: Spec) -> dict:
    """Pooled drift rate from the refits ``theta`` (T, P) on the past rows ``w_past``.

    Returns ``{"tau", "n_future", "tasks_used", "reason"}``; ``tau`` is 0 (with a reason) when no
    task could be split or the future errors are no larger than the in-sample noise.
    """
    ok = np.asarray(ok, bool)
    if not ok.any():
        return {"tau": 0.0, "n_future": 0, "tasks_used": 0,
                "reason": "no task has enough rows below its longest prompts for a backtest refit; "
                          "intervals do not widen outside the training cells"}
    law = spec.law()
    y = np.asarray(stacked.y, float)
    w_past = np.asarray(w_past, float)
    p = np.asarray(_refit_predictions(law, jnp.asarray(theta), stacked.log_C, stacked.n_pmt, stacked.n_ctx,
                                      stacked.floor))
    past = w_past > 0
    n_par = len(param_names(spec))
    r = np.where(past, y - p, 0.0)
    s0 = np.sqrt(np.sum(w_past * r ** 2, 1) / np.maximum(np.sum(w_past, 1), 1e-300) * past.sum(1)
                 / np.maximum(past.sum(1) - n_par, 1))
    box = training_box(stacked.replace(weight=w_past) if hasattr(stacked, "replace")
                       else stacked._replace(weight=w_past))
    d = _host_distance(box, stacked)
    fut = np.asarray(future, bool) & ok[:, None]
    e = (y - p)[fut]
    tau = solve_drift(e, d[fut], np.broadcast_to(s0[:, None], fut.shape)[fut])
    out = {"tau": tau, "n_future": int(fut.sum()), "tasks_used": int(ok.sum()), "reason": None}
    if tau == 0.0:
        out["reason"] = "the backtest's errors beyond the refit's cells were no larger than its in-sample noise"
    return out
