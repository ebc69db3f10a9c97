"""Result containers shared by every fitter."""
from __future__ import annotations

from typing import Any, NamedTuple

import jax.numpy as jnp
import numpy as np
from jax import export as jax_export

__all__ = ["FitResult", "MIN_RESID_DOF", "REASONS", "few_dof_note", "reason_text"]

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


#: Fewest residual degrees of freedom ``n - p`` (rows minus a law's free parameters) a fit is quiet
#: about; also never fewer than ``p``.
MIN_RESID_DOF = 5


def few_dof_note(n: int, p: int, sigma: float, unit: str) -> str | None:
    """The shared core of the laws' few-degrees-of-freedom warnings, or ``None`` when ``n`` rows
    leave at least ``max(MIN_RESID_DOF, p)`` residual degrees of freedom to ``p`` free parameters
    (or fewer than one, which the fitters refuse). With so few, the law passes (nearly) through
    every row and the residual scale ``sigma`` (in ``unit``) that sets the intervals is itself
    poorly known: its 95 % upper confidence bound, from the chi-square law of the residuals, is
    over 2x the estimate below 6 degrees of freedom. The caller adds its subject and remedies."""
    from scipy.stats import chi2

    dof, need = n - p, max(MIN_RESID_DOF, p)
    if dof >= need or dof < 1:
        return None
    up = float(np.sqrt(dof / chi2.ppf(0.05, dof)))
    return (f"leave {dof} residual degree(s) of freedom, fewer than {need} (the larger of {MIN_RESID_DOF} and the "
            f"parameter count): the law passes (nearly) through every row, so the residual scale ({sigma:.3g} "
            f"{unit}) that sets the intervals is itself poorly known (its 95 % upper confidence bound is {up:.3g}x "
            "the estimate) and the intervals are likely far too narrow")
