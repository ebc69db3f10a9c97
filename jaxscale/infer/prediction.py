r"""The one prediction type every pillar returns: ``Prediction(mean, lower, upper, samples, extrapolation)``.

``lower``/``upper`` bound a central interval at the ``level`` the caller asked for (0.9 by
default); ``samples`` (sample axis first) is present when the model produced draws (bootstraps,
posterior predictive, Monte Carlo) and ``None`` otherwise; ``extrapolation`` says how far each
query lies outside the training data (0 inside it; each pillar documents its distance, e.g.
decades of compute beyond the largest training run). Arrays are in the units of the pillar's
target (loss, accuracy, score), one entry per query row.
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

__all__ = ["Prediction", "from_samples", "from_normal", "check_level", "check_key", "check_fit", "z_value",
           "warn_extrapolation"]


class Prediction(NamedTuple):
    """Predictive mean and central interval, optionally with the draws they came from.

    Attributes:
      mean: ``(n,)`` point prediction per query row.
      lower: ``(n,)`` lower end of the central interval.
      upper: ``(n,)`` upper end.
      samples: ``(S, n)`` predictive draws, or ``None``.
      extrapolation: ``(n,)`` distance of each query outside the training data (0 inside), or
        ``None`` when the model does not measure it.
    """

    mean: jax.Array
    lower: jax.Array
    upper: jax.Array
    samples: jax.Array | None = None
    extrapolation: jax.Array | None = None

    def to_frame(self, frame=None, prefix: str = ""):
        """A pandas frame with ``mean``, ``lower``, ``upper`` (and ``extrapolation`` when measured),
        appended to a copy of ``frame`` if given (its index kept, rows in order; columns of those
        names are replaced: pass ``prefix="pred_"`` to keep both)."""
        import numpy as np
        import pandas as pd

        cols = {f"{prefix}mean": np.asarray(self.mean), f"{prefix}lower": np.asarray(self.lower),
                f"{prefix}upper": np.asarray(self.upper)}
        if self.extrapolation is not None:
            cols[f"{prefix}extrapolation"] = np.asarray(self.extrapolation)
        if frame is None:
            return pd.DataFrame(cols)
        out = frame.copy()
        if len(out) != len(cols[f"{prefix}mean"]):
            raise ValueError(f"prediction has {len(cols[f'{prefix}mean'])} rows but the frame has {len(out)}")
        for k, v in cols.items():
            out[k] = v
        return out


def check_key(key, what: str = "key", *, optional: bool = False):
    """``key`` if it is a JAX PRNG key (``jax.random.key(seed)``, or a legacy
    ``jax.random.PRNGKey(seed)``, also batched), ``None`` when ``optional`` and absent; otherwise a
    ``ValueError`` naming the fix (an int seed or ``None`` would fail deep inside JAX)."""
    import numpy as np

    if key is None and optional:
        return None
    dtype = getattr(key, "dtype", None)
    if isinstance(key, (jax.Array, np.ndarray)) and dtype is not None:
        if jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key):
            return key
        if dtype == np.uint32 and np.ndim(key) >= 1 and np.shape(key)[-1] in (2, 4):  # legacy raw key data
            return key
    got = "None" if key is None else f"{type(key).__name__} {str(key)[:40]}"
    raise ValueError(f"{what} must be a JAX PRNG key, e.g. jax.random.key(0) (randomness is explicit: there are no "
                     f"default keys), got {got}")


def check_fit(fit, cls: type, pillar: str):
    """``fit`` if it is a ``cls`` (this pillar's fitted model); otherwise a ``ValueError`` naming
    the pillar whose ``predict`` takes it."""
    if isinstance(fit, cls):
        return fit
    module = type(fit).__module__
    owner = ".".join(module.split(".")[:2]) if module.startswith("jaxscale.") else None
    hint = f": it is a fit of {owner}, use {owner}.predict" if owner and owner != pillar else ""
    raise ValueError(f"{pillar}.predict takes the {cls.__name__} of {pillar}.fit (or jaxscale.load of one), got a "
                     f"{type(fit).__name__}{hint}")


def check_level(level: float) -> float:
    """Validate an interval level in (0, 1)."""
    level = float(level)
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}; e.g. level=0.9 for a 90% interval")
    return level


def z_value(level: float) -> float:
    """Two-sided standard-normal quantile of a central ``level`` interval (1.645 for 0.9), as a
    Python float (computed on the host: as device code it would compile a dozen small programs)."""
    from scipy.special import ndtri

    return float(ndtri(0.5 + check_level(level) / 2.0))


def from_samples(samples, level: float = 0.9, mean=None, keep_samples: bool = True) -> Prediction:
    """Prediction from draws ``(S, n)``: sample mean (unless ``mean`` is given) and quantiles."""
    level = check_level(level)
    samples = jnp.asarray(samples)
    q = jnp.quantile(samples, jnp.asarray([(1 - level) / 2, (1 + level) / 2]), axis=0)
    m = jnp.mean(samples, axis=0) if mean is None else jnp.asarray(mean)
    return Prediction(m, q[0], q[1], samples if keep_samples else None)


def from_normal(mean, std, level: float = 0.9) -> Prediction:
    """Prediction from a Gaussian ``N(mean, std^2)`` per row (no draws)."""
    z = z_value(level)
    mean, std = jnp.asarray(mean), jnp.asarray(std)
    return Prediction(mean, mean - z * std, mean + z * std, None)


def warn_extrapolation(what: str, distance, unit: str, threshold: float = 0.0, stacklevel: int = 2,
                       note: str = "") -> float:
    """Warn once when any query lies outside the training data; return the worst distance.

    Args:
      what: the model, e.g. ``"Chinchilla predict"``.
      distance: ``(n,)`` extrapolation distances (0 inside the training data).
      unit: how to read a distance, e.g. ``"decades of compute beyond the largest training run"``.
      threshold: distances at or below this are not reported.
      note: appended to the warning (e.g. what the interval leaves out there).
    """
    import warnings

    import numpy as np

    d = np.asarray(distance, float)
    far = int(np.isinf(d).sum())  # no finite distance: e.g. a category the model never saw
    d = d[np.isfinite(d)] if np.isfinite(d).any() else d
    worst = float(np.max(d)) if d.size else 0.0
    n = int(np.sum(np.asarray(distance, float) > threshold))
    if n:
        unseen = ("at an infinite distance, with a label or value the model never saw (their extrapolation is "
                  "written as inf, or null in JSON)")
        worst_text = f"worst: {worst:.3g} {unit}" + (f"; {far} of them {unseen}" if far else "")
        if far == n:
            worst_text = f"every one {unseen}"
        warnings.warn(f"{what}: {n} of {np.size(distance)} queries lie outside the training data "
                      f"({worst_text}); predictions there are extrapolations and their "
                      f"intervals rest on the model's assumptions{'; ' + note if note else ''}", UserWarning,
                      stacklevel=stacklevel)
    return worst
