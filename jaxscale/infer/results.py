"""Result containers shared by every fitter."""
from __future__ import annotations

from typing import Any, NamedTuple

import jax.numpy as jnp
from jax import export as jax_export

__all__ = ["FitResult", "REASONS", "reason_text"]

#: Meaning of :attr:`FitResult.reason` codes.
REASONS = {
    0: "gradient norm below tolerance",
    1: "relative change of the objective below tolerance",
    2: "maximum number of steps reached",
    3: "objective or gradient became non-finite",
    4: "fixed number of steps completed",
}


class FitResult(NamedTuple):
    """Outcome of a point fit (leaves carry a leading restart axis after :func:`multistart`).

    Attributes:
      params: fitted parameters (same pytree as the start value, unconstrained space).
      loss: final objective value.
      converged: whether a tolerance was met (``reason`` 0, 1 or 4).
      n_steps: iterations used; for a non-finite stop, the step at which it happened.
      grad_norm: gradient norm at the end.
      reason: integer code, see :data:`REASONS` / :func:`reason_text`.
      history: per-step objective (Adam) or ``None``.
    """

    params: Any
    loss: jnp.ndarray
    converged: jnp.ndarray
    n_steps: jnp.ndarray
    grad_norm: jnp.ndarray
    reason: jnp.ndarray
    history: Any = None


# a traced program returning a FitResult can be kept on disk (jaxscale._programs)
jax_export.register_namedtuple_serialization(FitResult, serialized_name="jaxscale.infer.FitResult")


def reason_text(code) -> str:
    """Human-readable reason for a :class:`FitResult` code."""
    return REASONS.get(int(code), f"unknown reason {int(code)}")
