"""Wiring of the shared law :mod:`jaxscale.laws.context` to a flat parameter vector for fitting.

A :class:`Spec` (hashable, static under ``jit``) says which parameters are free and how the fit
runs.  The vector ``theta`` holds, in order: ``a``, ``alpha`` (only if ``fit_alpha``), ``b``,
``beta``, ``log_scale`` (only for ``logistic``/``log_ratio`` with ``fit_scale``), ``log_shift``
(only with ``fit_shift``) and ``gamma`` (only with ``decay``).  Any object with the array fields
``log_C, n_pmt, n_ctx, y, weight, floor`` can be fitted (the pillar's ``Data`` or the legacy
:class:`ContextData` NamedTuple); rows with weight 0 (padding, held-out rows) do not enter the loss,
even when their score is missing (NaN).
"""
from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxscale._registry import register_moved
from jaxscale.context_law.spec import LIKELIHOODS, Spec
from jaxscale.laws.context import PENALTIES, ContextLawParams, context_law

__all__ = [
    "Spec",
    "PENALTIES",
    "SHAPED_PENALTIES",
    "LIKELIHOODS",
    "ContextData",
    "param_names",
    "param_bounds",
    "unpack",
    "predict_law",
    "mse_loss",
    "penalty_scale",
]

# DE box in normalised units (C / 1e22 FLOPs, n_pmt / 1e3 tokens); wide enough for every task we met.
_BOUNDS = {
    "a": (-10.0, 10.0),
    "alpha": (0.01, 3.0),
    "b": (-10.0, 10.0),
    "beta": (0.01, 3.0),
    "log_scale:logistic": (math.log(1e-3), math.log(1.0)),  # relative width of the cliff
    "log_scale:log_ratio": (math.log(1.0), math.log(200.0)),  # steepness kappa
    "gamma": (0.0, 2.0),
    "log_shift": (math.log(0.25), math.log(4.0)),  # effective limit / claimed n_ctx
}


register_moved(Spec, __name__)  # defined here before it moved to .spec


class ContextData(NamedTuple):
    """Observations: log compute, prompt length, context limit, score in [0,1], row weight, and the
    chance floor g of each row (P = g + (1 - g) law; 0 = no floor)."""

    log_C: jax.Array
    n_pmt: jax.Array
    n_ctx: jax.Array
    y: jax.Array
    weight: jax.Array
    floor: jax.Array


#: The penalties with a width and a location: ``fit_scale`` and ``fit_shift`` act on these only.
SHAPED_PENALTIES = ("logistic", "log_ratio")


def _has_scale(spec: Spec) -> bool:
    return spec.fit_scale and spec.penalty in SHAPED_PENALTIES


def param_names(spec: Spec) -> tuple:
    names = ["a"] + (["alpha"] if spec.fit_alpha else []) + ["b", "beta"]
    if _has_scale(spec):
        names.append("log_scale")
    if spec.fit_shift and spec.penalty in SHAPED_PENALTIES:
        names.append("log_shift")
    if spec.decay:
        names.append("gamma")
    return tuple(names)


def param_bounds(spec: Spec) -> np.ndarray:
    """(n_params, 2) box for differential evolution, in the order of :func:`param_names`."""
    rows = []
    for n in param_names(spec):
        rows.append(_BOUNDS[f"log_scale:{spec.penalty}"] if n == "log_scale" else _BOUNDS[n])
    return np.asarray(rows, dtype=float)


def penalty_scale(spec: Spec, theta) -> jax.Array:
    """The penalty scale implied by ``theta`` (fixed value when not fitted)."""
    if _has_scale(spec):
        return jnp.exp(theta[param_names(spec).index("log_scale")])
    return jnp.asarray(spec.scale if spec.penalty != "step" else 1.0)


def unpack(spec: Spec, theta):
    """theta -> (ContextLawParams, penalty scale, gamma, shift)."""
    names = param_names(spec)
    get = {n: theta[i] for i, n in enumerate(names)}
    alpha = get["alpha"] if spec.fit_alpha else jnp.asarray(spec.alpha_fixed, dtype=theta.dtype)
    params = ContextLawParams(get["a"], alpha, get["b"], get["beta"])
    gamma = get["gamma"] if spec.decay else jnp.asarray(0.0, dtype=theta.dtype)
    shift = jnp.exp(get["log_shift"]) if "log_shift" in get else jnp.asarray(1.0, dtype=theta.dtype)
    return params, penalty_scale(spec, theta), gamma, shift


def predict_law(spec: Spec, theta, log_C, n_pmt, n_ctx, floor=0.0):
    """The law P at parameters ``theta`` for each row (elementwise; broadcasts)."""
    params, scale, gamma, shift = unpack(spec, theta)
    return context_law(params, log_C, n_pmt, n_ctx, penalty=spec.penalty, scale=scale, floor=floor,
                       decay=gamma, shift=shift, log_compute=True)


def mse_loss(theta, spec: Spec, data, offset=0.0):
    """Weighted mean squared (``spec.loss == "mse"``) or absolute (``"mae"``) error of P.

    Rows with weight 0 contribute exactly nothing, even with a NaN score (their score is replaced
    by 0 before the residual, so gradients stay finite). ``offset`` is added to the weighted sum
    of errors before dividing by the summed weight: the within-cell sum of squares of rows merged
    into weighted cells (see :func:`jaxscale.context_law.fit.compress`), so that the merged rows
    give the same loss as the original ones.
    """
    y = jnp.where(data.weight > 0, data.y, 0.0)
    r = predict_law(spec, theta, data.log_C, data.n_pmt, data.n_ctx, data.floor) - y
    err = r ** 2 if spec.loss == "mse" else jnp.sqrt(r ** 2 + 1e-12)
    return (jnp.sum(data.weight * err) + offset) / jnp.sum(data.weight)
