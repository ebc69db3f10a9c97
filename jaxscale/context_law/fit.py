"""Two-stage point fit of the context law: differential evolution (global) then L-BFGS (local).

Stage 1 is :func:`jaxscale.infer.evolution.de_run` over the box of :func:`param_bounds`; stage 2 is
:func:`jaxscale.infer.minimize_lbfgs` on ``u`` with theta = lo + (hi - lo) sigmoid(u) (stays in the
box, like SciPy's L-BFGS-B polish), accepted only when it lowers the loss.  Everything is one
compiled program; :func:`fit_many` ``vmap``s it over tasks (padded rows carry weight 0).
"""
from __future__ import annotations

import functools
import warnings
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxscale.config import warn_if_float32
from jaxscale.context_law.model import ContextData, LawSpec, mse_loss, param_bounds, param_names
from jaxscale.infer import minimize_lbfgs
from jaxscale.infer.evolution import de_run

__all__ = ["ContextFit", "fit_law", "fit_many", "check_identifiability", "theta_dict"]


class ContextFit(NamedTuple):
    """Result of :func:`fit_law` (leaves get a leading task axis from :func:`fit_many`)."""

    theta: jax.Array
    loss: jax.Array
    de_loss: jax.Array
    de_generations: jax.Array
    de_converged: jax.Array
    lbfgs_steps: jax.Array
    polished: jax.Array


@functools.lru_cache(maxsize=None)
def _losses(spec: LawSpec):
    def de_loss(theta, data):
        return mse_loss(theta, spec, data)

    def box_loss(u, data, lo, hi):
        return mse_loss(lo + (hi - lo) * jax.nn.sigmoid(u), spec, data)

    return de_loss, box_loss


@partial(jax.jit, static_argnames=("spec", "popsize", "maxiter", "polish"))
def _fit_one(key, data: ContextData, spec: LawSpec, popsize: int, maxiter: int, tol, polish: bool):
    de_loss, box_loss = _losses(spec)
    bounds = jnp.asarray(param_bounds(spec), dtype=data.y.dtype)
    lo, hi = bounds[:, 0], bounds[:, 1]
    state, info = de_run(key, de_loss, bounds, data, popsize=popsize, maxiter=maxiter, tol=tol)
    x0 = state.best_x
    if not polish:
        return ContextFit(x0, state.best_fitness, state.best_fitness, state.generation, state.converged,
                          jnp.asarray(0), jnp.asarray(False))
    frac = jnp.clip((x0 - lo) / (hi - lo), 1e-7, 1 - 1e-7)
    res = minimize_lbfgs(box_loss, jnp.log(frac) - jnp.log1p(-frac), data, lo, hi, max_steps=300, tol=1e-10)
    theta = lo + (hi - lo) * jax.nn.sigmoid(res.params)
    better = jnp.isfinite(res.loss) & jnp.all(jnp.isfinite(theta)) & (res.loss <= state.best_fitness)
    return ContextFit(jnp.where(better, theta, x0), jnp.where(better, res.loss, state.best_fitness),
                      state.best_fitness, state.generation, state.converged, res.n_steps, better)


def _compute_levels(log_C) -> int:
    """Distinct compute levels, clustering values within 10 % of each other."""
    v = np.sort(np.unique(np.round(np.asarray(log_C), 12)))
    if v.size == 0:
        return 0
    return int(1 + np.sum(np.diff(v) > np.log(1.1)))


def check_identifiability(data: ContextData, spec: LawSpec, what: str = "context-law fit") -> None:
    """Errors / warnings for designs that cannot pin the requested parameters."""
    w = np.asarray(data.weight) > 0
    log_C = np.asarray(data.log_C)[w]
    n_pmt = np.asarray(data.n_pmt)[w]
    n_ctx = np.asarray(data.n_ctx)[w]
    levels = _compute_levels(log_C)
    if spec.fit_alpha and levels < 2:
        raise ValueError(
            f"{what}: alpha (compute exponent) is underdetermined: all {w.sum()} rows sit at one compute "
            f"level (C ~ {np.exp(np.median(log_C)):.3g} FLOPs, spread < 10 %). Use LawSpec(fit_alpha=False) "
            "(alpha is then fixed and the compute factor is absorbed into a) or add models of other compute.")
    if spec.fit_alpha and levels == 2:
        warnings.warn(
            f"{what}: only 2 compute levels, so (a, alpha) are pinned by two numbers; extrapolation in "
            "compute is unreliable (expect a wide posterior over alpha).", UserWarning, stacklevel=3)
    if spec.penalty != "none" and spec.fit_scale and spec.penalty != "step" and not np.any(n_pmt > n_ctx):
        warnings.warn(
            f"{what}: no row has n_pmt > n_ctx, so the penalty scale is unconstrained by the data "
            "(any sharp cliff fits); consider LawSpec(fit_scale=False).", UserWarning, stacklevel=3)
    if np.unique(np.round(n_pmt)).size < 3:
        warnings.warn(f"{what}: fewer than 3 distinct prompt lengths; (b, beta) are poorly determined.",
                      UserWarning, stacklevel=3)


def _check_result(fit: ContextFit, what: str) -> None:
    bad = ~np.isfinite(np.asarray(fit.loss)).reshape(-1)
    if bad.any():
        ids = np.flatnonzero(bad)[:10].tolist()
        raise ValueError(f"{what}: non-finite loss for task index(es) {ids} after DE+L-BFGS; "
                         "check the data for zero prompt lengths or scores outside [0, 1].")


def fit_law(key, data: ContextData, spec: LawSpec = LawSpec(), *, popsize: int = 15, maxiter: int = 1000,
            tol: float = 1e-8, polish: bool = True, restarts: int = 1,
            what: str = "context-law fit") -> ContextFit:
    """Fit one data set: DE (best1bin, ``popsize`` x n_params members) then bounded L-BFGS.

    ``restarts > 1`` runs independent seeded DE+L-BFGS fits (vmapped) and keeps the best.
    """
    spec.check()
    warn_if_float32(what)
    check_identifiability(data, spec, what)
    fit = _fit_restarts(key, data, spec, popsize, maxiter, tol, polish, restarts)
    _check_result(fit, what)
    return fit


@partial(jax.jit, static_argnames=("spec", "popsize", "maxiter", "polish", "restarts"))
def _fit_restarts(key, data, spec, popsize, maxiter, tol, polish, restarts):
    if restarts == 1:
        return _fit_one(key, data, spec, popsize, maxiter, tol, polish)
    fits = jax.vmap(lambda k: _fit_one(k, data, spec, popsize, maxiter, tol, polish))(
        jax.random.split(key, restarts))
    i = jnp.argmin(jnp.where(jnp.isfinite(fits.loss), fits.loss, jnp.inf))
    return jax.tree_util.tree_map(lambda x: x[i], fits)


def fit_many(key, data: ContextData, spec: LawSpec = LawSpec(), *, popsize: int = 15, maxiter: int = 1000,
             tol: float = 1e-8, polish: bool = True, restarts: int = 1,
             what: str = "context-law fit") -> ContextFit:
    """Fit many tasks at once: ``data`` leaves have a leading task axis; DE and L-BFGS are vmapped."""
    spec.check()
    warn_if_float32(what)
    n_tasks = data.y.shape[0]
    for t in range(n_tasks):  # host-side design checks only (cheap, no fitting)
        check_identifiability(jax.tree_util.tree_map(lambda x: x[t], data), spec, f"{what} [task {t}]")
    keys = jax.random.split(key, n_tasks)
    fit = jax.vmap(lambda k, d: _fit_restarts(k, d, spec, popsize, maxiter, tol, polish, restarts))(keys, data)
    _check_result(fit, what)
    return fit


def theta_dict(spec: LawSpec, theta) -> dict:
    """theta -> {name: float} plus the derived penalty scale (JSON friendly)."""
    theta = np.asarray(theta)
    out = {n: float(theta[i]) for i, n in enumerate(param_names(spec))}
    if not spec.fit_alpha:
        out["alpha"] = float(spec.alpha_fixed)
    if "log_scale" in out:
        out["scale"] = float(np.exp(out["log_scale"]))
    if "log_shift" in out:
        out["shift"] = float(np.exp(out["log_shift"]))
    return out
