r"""Compute-efficient frontier of a set of learning curves and the log-linear law fitted to it.

For a grid :math:`C_1..C_G` (default 100 points log-spaced on [1e18, 1e20] FLOPs) the frontier is
:math:`F(C_i) = \min_k L_k(C_i)` over curves k, and the law is the least-squares line
:math:`\ln F = b_1 \ln C + b_0` (natural logs, C in FLOPs).

Two rules give :math:`L_k(C_i)`:

* ``"nearest"`` — the loss of the curve point whose C is nearest to :math:`C_i` (linear distance,
  no range check): the original ``active_fit_sl.py`` / Pearce & Song rule, kept for parity.
* ``"interp"`` (default) — linear interpolation of :math:`\ln L` in :math:`\ln C` between the two
  neighbouring points, only inside the curve's compute range. Grid points covered by no curve get
  weight 0 in the fit (``extrapolate="mask"``, default) or the curve's end value
  (``extrapolate="clamp"``).

Everything that depends only on the compute of the points (which is the same for every posterior
draw) is precomputed on the host into a :class:`FrontierPlan`; :func:`law_from_loss` is then a
gather, a min and a closed-form weighted least-squares fit — jit-able and ``vmap``-able over draws.
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "GRID_MIN",
    "GRID_MAX",
    "GRID_SIZE",
    "LawParams",
    "FrontierPlan",
    "compute_grid",
    "make_plan",
    "min_log_loss",
    "frontier_log_loss",
    "subplan",
    "fit_law",
    "law_from_loss",
    "ground_truth_law",
]

GRID_MIN = 1e18
GRID_MAX = 1e20
GRID_SIZE = 100


class LawParams(NamedTuple):
    """``ln L = b1 ln C + b0``; leaves may carry a leading draw axis."""

    b1: jax.Array
    b0: jax.Array


class FrontierPlan(NamedTuple):
    """Draw-independent gather plan: ``L_k(C_g) = exp((1-w) lnL[k, lo] + w lnL[k, hi])`` where ``valid``."""

    lo: jax.Array  # (K, G) int32
    hi: jax.Array | None  # (K, G) int32; None for the nearest rule
    w: jax.Array | None  # (K, G) float; None for the nearest rule
    valid: jax.Array  # (K, G) bool
    log_c: jax.Array  # (G,) ln C of the grid
    weight: jax.Array  # (G,) fit weight: 1 where at least one curve covers the grid point, else 0


def compute_grid(c_min: float = GRID_MIN, c_max: float = GRID_MAX, n: int = GRID_SIZE) -> np.ndarray:
    """The log-spaced compute grid in float64 FLOPs."""
    if not (0 < c_min < c_max) or n < 2:
        raise ValueError(f"need 0 < c_min < c_max and n >= 2, got c_min={c_min}, c_max={c_max}, n={n}")
    return np.logspace(np.log10(c_min), np.log10(c_max), int(n))


def make_plan(compute, grid=None, rule: str = "interp", extrapolate: str = "mask") -> FrontierPlan:
    """Build the frontier plan for curves with point compute ``compute`` (K, P), float64 FLOPs.

    Args:
      compute: (K, P) cumulative compute of every point, increasing along P.
      grid: (G,) compute grid; default :func:`compute_grid` (100 points, 1e18..1e20).
      rule: ``"interp"`` (log-log interpolation inside each curve's range) or ``"nearest"``.
      extrapolate: for ``"interp"``: ``"mask"`` drops grid points no curve covers from the fit;
        ``"clamp"`` extends each curve flat beyond its ends (covers every grid point).
    """
    C = np.asarray(compute, dtype=np.float64)
    if C.ndim != 2 or C.shape[1] < 2:
        raise ValueError(f"compute must have shape (curves, points >= 2), got {C.shape}")
    if not np.all(np.isfinite(C)) or np.any(C <= 0):
        rows = np.unique(np.nonzero(~(np.isfinite(C) & (C > 0)))[0])[:5].tolist()
        raise ValueError(f"compute must be finite and > 0; offending curves (rows) {rows}")
    if np.any(np.diff(C, axis=1) <= 0):
        rows = np.unique(np.nonzero(np.diff(C, axis=1) <= 0)[0])[:5].tolist()
        raise ValueError(f"compute must increase strictly along each curve; offending curves (rows) {rows}")
    g = compute_grid() if grid is None else np.asarray(grid, dtype=np.float64)
    K, P = C.shape
    G = g.shape[0]
    if rule == "nearest":
        lo = np.abs(C[:, :, None] - g[None, None, :]).argmin(axis=1)
        hi = w = None  # nearest: one gather, no interpolation
        valid = np.ones((K, G), dtype=bool)
    elif rule == "interp":
        lc, lg = np.log(C), np.log(g)
        j = np.stack([np.searchsorted(lc[k], lg, side="right") - 1 for k in range(K)])  # host, K small
        lo = np.clip(j, 0, P - 2)
        hi = lo + 1
        a = np.take_along_axis(lc, lo, 1)
        b = np.take_along_axis(lc, hi, 1)
        w = (lg[None] - a) / (b - a)
        inside = (lg[None] >= lc[:, :1] - 1e-12) & (lg[None] <= lc[:, -1:] + 1e-12)
        if extrapolate == "mask":
            valid = inside
            w = np.clip(w, 0.0, 1.0)
        elif extrapolate == "clamp":
            valid = np.ones((K, G), dtype=bool)
            w = np.clip(w, 0.0, 1.0)
        else:
            raise ValueError(f"extrapolate must be 'mask' or 'clamp', got {extrapolate!r}")
    else:
        raise ValueError(f"rule must be 'interp' or 'nearest', got {rule!r}")
    weight = valid.any(axis=0).astype(np.float64)
    if weight.sum() < 2:
        raise ValueError(f"fewer than 2 of the {G} grid points [{g[0]:.3g}, {g[-1]:.3g}] FLOPs are covered "
                         "by any curve; widen the grid or use extrapolate='clamp'")
    return FrontierPlan(jnp.asarray(lo, jnp.int32), None if hi is None else jnp.asarray(hi, jnp.int32),
                        None if w is None else jnp.asarray(w),
                        jnp.asarray(valid), jnp.asarray(np.log(g)), jnp.asarray(weight))


def min_log_loss(plan: FrontierPlan, loss: jax.Array) -> jax.Array:
    """``min_k ln L_k(C_g)`` for curves (..., K, P) -> (..., G), ``+inf`` where no curve covers g.

    One flat gather over all curves (no vmap needed over leading draw axes).
    """
    K, P = loss.shape[-2:]
    G = plan.log_c.shape[0]
    lead = loss.shape[:-2]
    log_l = jnp.log(loss).reshape(lead + (K * P,))
    rows = (jnp.arange(K, dtype=jnp.int32) * P)[:, None]
    v = jnp.take(log_l, (rows + plan.lo).reshape(-1), axis=-1).reshape(lead + (K, G))
    if plan.w is not None:
        b = jnp.take(log_l, (rows + plan.hi).reshape(-1), axis=-1).reshape(lead + (K, G))
        v = v + plan.w * (b - v)
    return jnp.min(jnp.where(plan.valid, v, jnp.inf), axis=-2)


def frontier_log_loss(plan: FrontierPlan, loss: jax.Array, base: jax.Array | None = None) -> jax.Array:
    """``ln F`` on the grid from curve losses (..., K, P) -> (..., G); 0 where the plan's weight is 0.

    ``base`` (G,) is an optional :func:`min_log_loss` of other, fixed curves that the frontier is
    minimised against (used to hoist observed curves out of the per-draw work).
    """
    f = min_log_loss(plan, loss)
    if base is not None:
        f = jnp.minimum(f, base)
    return jnp.where(plan.weight > 0, f, 0.0)


def subplan(plan: FrontierPlan, rows) -> FrontierPlan:
    """The plan restricted to some curves (rows), keeping the grid and the fit weights."""
    rows = np.asarray(rows, dtype=int)
    pick = lambda a: None if a is None else a[rows]  # noqa: E731
    return FrontierPlan(pick(plan.lo), pick(plan.hi), pick(plan.w), pick(plan.valid), plan.log_c, plan.weight)


def fit_law(log_c: jax.Array, log_l: jax.Array, weight: jax.Array | None = None) -> LawParams:
    """Weighted least squares ``ln L = b1 ln C + b0`` over the last axis (closed form; equals
    ``np.polyfit`` for unit weights). ``log_l`` may carry leading draw axes."""
    if weight is None:
        weight = jnp.ones_like(log_c)
    sw = jnp.sum(weight)
    ubar = jnp.sum(weight * log_c) / sw
    uc = log_c - ubar
    a1 = weight * uc / jnp.sum(weight * uc * uc)  # b1 = <a1, y>
    b1 = log_l @ a1
    b0 = (log_l @ weight) / sw - b1 * ubar
    return LawParams(b1, b0)


def law_from_loss(plan: FrontierPlan, loss: jax.Array) -> LawParams:
    """Frontier + law fit for curves (..., K, P) (leading axes = draws; also ``vmap``-able)."""
    return fit_law(plan.log_c, frontier_log_loss(plan, loss), plan.weight)


def ground_truth_law(loss, compute, rule: str = "nearest", grid=None, extrapolate: str = "mask") -> LawParams:
    """The law of the true curves (all 30 nanoGPT-large curves with ``rule="nearest"``:
    b1 = -0.0541, b0 = 3.440 with C = 6 N T step, T = 491,520 tokens per step;
    the paper reports b1 = -0.056, b0 = 3.51 from its unpublished per-step compute)."""
    loss = np.asarray(loss, dtype=np.float64)
    if not np.all(np.isfinite(loss)) or np.any(loss <= 0):
        raise ValueError("loss must be finite and > 0 for a log-log law")
    plan = make_plan(compute, grid=grid, rule=rule, extrapolate=extrapolate)
    law = _law_jit(plan, jnp.asarray(loss))
    return LawParams(float(law.b1), float(law.b0))


_law_jit = jax.jit(law_from_loss)
