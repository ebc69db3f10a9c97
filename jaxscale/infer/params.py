"""Parameter specs: named constraints with bijections between constrained and unconstrained space.

Optimisers work on unconstrained reals; laws see constrained values. The same
:class:`ParamSpec` builds numpyro priors with the right support, so a point fit and a
Bayesian fit of one law cannot drift apart.
"""
from __future__ import annotations

from typing import Mapping, NamedTuple

import jax
import jax.numpy as jnp

__all__ = ["Real", "Positive", "Bounded", "ParamSpec"]


class Real(NamedTuple):
    """Unconstrained real parameter."""

    def forward(self, u):
        return u

    def inverse(self, x):
        return jnp.asarray(x)

    def check(self, x) -> bool:
        return bool(jnp.all(jnp.isfinite(jnp.asarray(x))))

    def describe(self) -> str:
        return "real"


class Positive(NamedTuple):
    """Strictly positive parameter, ``x = exp(u)`` (log-parametrised)."""

    def forward(self, u):
        return jnp.exp(u)

    def inverse(self, x):
        return jnp.log(jnp.asarray(x))

    def check(self, x) -> bool:
        return bool(jnp.all(jnp.asarray(x) > 0))

    def describe(self) -> str:
        return "positive"


class Bounded(NamedTuple):
    """Parameter in the open interval ``(lo, hi)``, ``x = lo + (hi - lo) sigmoid(u)``."""

    lo: float
    hi: float

    def forward(self, u):
        return self.lo + (self.hi - self.lo) * jax.nn.sigmoid(u)

    def inverse(self, x):
        z = (jnp.asarray(x) - self.lo) / (self.hi - self.lo)
        return jnp.log(z) - jnp.log1p(-z)

    def check(self, x) -> bool:
        x = jnp.asarray(x)
        return bool(jnp.all((x > self.lo) & (x < self.hi)))

    def describe(self) -> str:
        return f"in ({self.lo}, {self.hi})"


class ParamSpec:
    """An ordered mapping ``name -> constraint``.

    Example:
      >>> spec = ParamSpec({"E": Positive(), "b": Bounded(0.0, 0.2)})
      >>> p = spec.to_constrained({"E": 0.0, "b": 0.0})
      >>> float(p["E"]), round(float(p["b"]), 3)
      (1.0, 0.1)
    """

    def __init__(self, constraints: Mapping[str, object]):
        if not constraints:
            raise ValueError("ParamSpec needs at least one parameter")
        self.constraints = dict(constraints)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.constraints)

    def to_constrained(self, u: Mapping[str, jnp.ndarray]) -> dict:
        """Map unconstrained values to constrained parameters (jit/vmap safe)."""
        self._check_keys(u)
        return {k: c.forward(u[k]) for k, c in self.constraints.items()}

    def to_unconstrained(self, params: Mapping[str, jnp.ndarray]) -> dict:
        """Map constrained parameters to unconstrained space; raises on out-of-support values."""
        self._check_keys(params)
        for k, c in self.constraints.items():
            if not isinstance(params[k], jax.core.Tracer) and not c.check(params[k]):
                raise ValueError(
                    f"parameter {k!r}={params[k]!r} is outside its support ({c.describe()}); "
                    "pass a start value inside the support"
                )
        return {k: c.inverse(params[k]) for k, c in self.constraints.items()}

    def _check_keys(self, d: Mapping) -> None:
        missing = set(self.constraints) - set(d)
        extra = set(d) - set(self.constraints)
        if missing or extra:
            raise ValueError(
                f"parameter names do not match the spec: missing {sorted(missing)}, "
                f"unexpected {sorted(extra)}; expected {list(self.constraints)}"
            )

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}: {c.describe()}" for k, c in self.constraints.items())
        return f"ParamSpec({inner})"
