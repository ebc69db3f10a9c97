"""Wiring of the shared law :mod:`jaxscale.laws.context` to a flat parameter vector for fitting.

A :class:`LawSpec` (hashable, static under ``jit``) says which parameters are free.  The vector
``theta`` holds, in order: ``a``, ``alpha`` (only if ``fit_alpha``), ``b``, ``beta``, ``log_scale``
(only for ``logistic``/``log_ratio`` with ``fit_scale``) and ``gamma`` (only with ``decay``).
Data live in a :class:`ContextData` NamedTuple of equal-length arrays; padded rows carry weight 0.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxscale.laws.context import PENALTIES, ContextLawParams, context_law

__all__ = [
    "LawSpec",
    "ContextData",
    "param_names",
    "param_bounds",
    "unpack",
    "predict",
    "mse_loss",
    "penalty_scale",
]

# DE box in normalised units (shared/docs/context_law.md section 1.2 [Ours]).
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


class LawSpec(NamedTuple):
    """Which form to fit.

    Attributes:
      penalty: one of ``none``, ``step``, ``logistic``, ``log_ratio``.
      fit_scale: fit the penalty scale (log relative width / log kappa) or hold ``scale`` fixed.
      scale: fixed penalty scale when not fitted (relative width for logistic, kappa for log_ratio).
      fit_alpha: fit the compute exponent; needs >= 2 compute levels. Otherwise ``alpha`` is held at
        ``alpha_fixed`` and the compute factor is absorbed into ``a``.
      alpha_fixed: value of alpha when not fitted.
      decay: add the length-decay extension (1 + n_pmt/1e3)^-gamma with gamma fitted.
      fit_shift: fit an effective context limit c * n_ctx (``log_shift``) for logistic/log_ratio.
      loss: ``mse`` (default, the note's choice) or ``mae`` (the metric the paper reports).
    """

    penalty: str = "logistic"
    fit_scale: bool = True
    scale: float = 0.05
    fit_alpha: bool = True
    alpha_fixed: float = 0.5
    decay: bool = False
    loss: str = "mse"
    fit_shift: bool = False

    def check(self) -> "LawSpec":
        if self.penalty not in PENALTIES:
            raise ValueError(f"penalty={self.penalty!r} is unknown; choose one of {PENALTIES}")
        if self.loss not in ("mse", "mae"):
            raise ValueError(f"loss={self.loss!r} is unknown; choose 'mse' or 'mae'")
        return self


class ContextData(NamedTuple):
    """Observations: log compute, prompt length, context limit, score in [0,1], row weight, and the
    chance floor g of each row (P = g + (1 - g) law; 0 = no floor)."""

    log_C: jax.Array
    n_pmt: jax.Array
    n_ctx: jax.Array
    y: jax.Array
    weight: jax.Array
    floor: jax.Array


def _has_scale(spec: LawSpec) -> bool:
    return spec.fit_scale and spec.penalty in ("logistic", "log_ratio")


def param_names(spec: LawSpec) -> tuple:
    names = ["a"] + (["alpha"] if spec.fit_alpha else []) + ["b", "beta"]
    if _has_scale(spec):
        names.append("log_scale")
    if spec.fit_shift and spec.penalty in ("logistic", "log_ratio"):
        names.append("log_shift")
    if spec.decay:
        names.append("gamma")
    return tuple(names)


def param_bounds(spec: LawSpec) -> np.ndarray:
    """(n_params, 2) box for differential evolution, in the order of :func:`param_names`."""
    rows = []
    for n in param_names(spec):
        rows.append(_BOUNDS[f"log_scale:{spec.penalty}"] if n == "log_scale" else _BOUNDS[n])
    return np.asarray(rows, dtype=float)


def penalty_scale(spec: LawSpec, theta) -> jax.Array:
    """The penalty scale implied by ``theta`` (fixed value when not fitted)."""
    if _has_scale(spec):
        return jnp.exp(theta[param_names(spec).index("log_scale")])
    return jnp.asarray(spec.scale if spec.penalty != "step" else 1.0)


def unpack(spec: LawSpec, theta):
    """theta -> (ContextLawParams, penalty scale, gamma, shift)."""
    names = param_names(spec)
    get = {n: theta[i] for i, n in enumerate(names)}
    alpha = get["alpha"] if spec.fit_alpha else jnp.asarray(spec.alpha_fixed, dtype=theta.dtype)
    params = ContextLawParams(get["a"], alpha, get["b"], get["beta"])
    gamma = get["gamma"] if spec.decay else jnp.asarray(0.0, dtype=theta.dtype)
    shift = jnp.exp(get["log_shift"]) if "log_shift" in get else jnp.asarray(1.0, dtype=theta.dtype)
    return params, penalty_scale(spec, theta), gamma, shift


def predict(spec: LawSpec, theta, log_C, n_pmt, n_ctx, floor=0.0):
    """Predicted P for each row."""
    params, scale, gamma, shift = unpack(spec, theta)
    return context_law(params, log_C, n_pmt, n_ctx, penalty=spec.penalty, scale=scale, floor=floor,
                       decay=gamma, shift=shift, log_compute=True)


def mse_loss(theta, spec: LawSpec, data: ContextData):
    """Weighted mean squared (``spec.loss == "mse"``) or absolute (``"mae"``) error of P."""
    r = predict(spec, theta, data.log_C, data.n_pmt, data.n_ctx, data.floor) - data.y
    err = r ** 2 if spec.loss == "mse" else jnp.sqrt(r ** 2 + 1e-12)
    return jnp.sum(data.weight * err) / jnp.sum(data.weight)
