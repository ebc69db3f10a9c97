"""Elementwise robust losses for residuals."""
from __future__ import annotations

import jax.numpy as jnp

__all__ = ["huber", "squared"]


def huber(residual, delta: float = 1.0):
    r"""Huber loss: :math:`r^2/2` for :math:`|r| \le \delta`, else :math:`\delta(|r| - \delta/2)`.

    Same convention as ``scipy.special.huber`` (used by Hoffmann et al. and Epoch).
    """
    r = jnp.abs(jnp.asarray(residual))
    return jnp.where(r <= delta, 0.5 * r * r, delta * (r - 0.5 * delta))


def squared(residual):
    """Squared error :math:`r^2`."""
    r = jnp.asarray(residual)
    return r * r
