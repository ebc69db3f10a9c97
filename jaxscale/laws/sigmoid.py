r"""Sigmoid links from a latent capability to a bounded score.

:math:`y = b + (h - b)\,\sigma(w x + c)`, with floor ``b`` and ceiling ``h``.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["sigmoid", "logit", "sigmoid_link"]


def sigmoid(x):
    """Numerically stable logistic function."""
    return jax.nn.sigmoid(jnp.asarray(x))


def logit(p):
    """Inverse of :func:`sigmoid` (``log p - log(1-p)``)."""
    p = jnp.asarray(p)
    return jnp.log(p) - jnp.log1p(-p)


def sigmoid_link(x, slope, intercept, floor=0.0, ceiling=1.0):
    r"""Bounded sigmoid link :math:`y = b + (h - b)\,\sigma(\text{slope}\cdot x + \text{intercept})`.

    Example:
      >>> round(float(sigmoid_link(0.0, 1.0, 0.0, floor=0.2)), 3)
      0.6
    """
    return floor + (ceiling - floor) * sigmoid(slope * jnp.asarray(x) + intercept)
