"""A normal distribution censored to ``[low, high]`` (Tobit), as a numpyro distribution.

A latent score ``y* ~ N(loc, scale)`` is observed as ``clip(y*, low, high)``: an observation inside
the interval has the plain normal density (so, unlike a truncated normal, the likelihood of interior
data is exactly least squares), an observation at a bound carries the probability mass beyond it,
``Φ((low - loc)/scale)`` or ``Φ((loc - high)/scale)``, computed with ``log_ndtr`` (stable far in the
tails). Bounded scores with floor/ceiling effects (accuracy 0 at chance, 1 at saturation) are the use.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax.scipy.special import log_ndtr
from numpyro.distributions import Distribution, constraints
from numpyro.distributions.util import promote_shapes

__all__ = ["CensoredNormal"]

_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)  # a Python float: safe to import inside a trace


class CensoredNormal(Distribution):
    """``clip(N(loc, scale), low, high)``: density inside, point masses at the bounds."""

    arg_constraints = {"loc": constraints.real, "scale": constraints.positive}
    reparametrized_params = ["loc", "scale"]

    def __init__(self, loc=0.0, scale=1.0, low=-jnp.inf, high=jnp.inf, *, validate_args=None):
        self.loc, self.scale, self.low, self.high = promote_shapes(loc, scale, low, high)
        batch_shape = jax.lax.broadcast_shapes(*(jnp.shape(v) for v in (loc, scale, low, high)))
        super().__init__(batch_shape=batch_shape, validate_args=validate_args)

    @constraints.dependent_property(is_discrete=False, event_dim=0)
    def support(self):
        return constraints.interval(self.low, self.high)

    def sample(self, key, sample_shape=()):
        shape = sample_shape + self.batch_shape
        x = self.loc + self.scale * jax.random.normal(key, shape, jnp.result_type(self.loc, float))
        return jnp.clip(x, self.low, self.high)

    def log_prob(self, value):
        z = (value - self.loc) / self.scale
        inside = -0.5 * z**2 - jnp.log(self.scale) - _HALF_LOG_2PI
        below = value <= self.low
        # one log_ndtr for both bounds: log Φ((low - loc)/scale) or log Φ((loc - high)/scale)
        t = jnp.where(below, self.low - self.loc, self.loc - self.high) / self.scale
        at_bound = log_ndtr(t)
        return jnp.where(below | (value >= self.high), at_bound, inside)

    @property
    def mean(self):
        a, b = (self.low - self.loc) / self.scale, (self.high - self.loc) / self.scale
        pdf = jax.scipy.stats.norm.pdf
        cdf = jax.scipy.stats.norm.cdf
        # E[clip(X)] = low Φ(a) + high (1 - Φ(b)) + loc (Φ(b) - Φ(a)) + scale (φ(a) - φ(b))
        low = jnp.where(jnp.isfinite(self.low), self.low * cdf(a), 0.0)
        high = jnp.where(jnp.isfinite(self.high), self.high * (1.0 - cdf(b)), 0.0)
        return low + high + self.loc * (cdf(b) - cdf(a)) + self.scale * (pdf(a) - pdf(b))
