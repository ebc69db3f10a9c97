"""Numerical configuration: explicit float64 opt-in, dtype-aware jitter, smoke mode.

The library never changes JAX's numerical configuration on import; call :func:`enable_x64`
(the CLI and the demo do) or set ``JAX_ENABLE_X64=1``.

The CPU deadlock workaround of :mod:`jaxscale._xla` is applied on import (it only sets
``XLA_FLAGS``).
"""
from __future__ import annotations

import os
import warnings

from jaxscale._xla import CPU_SCHEDULER_FLAG, cpu_deadlock_workaround

cpu_deadlock_workaround()

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

__all__ = ["enable_x64", "x64_enabled", "jitter", "is_smoke", "warn_if_float32", "CPU_SCHEDULER_FLAG"]


def enable_x64(enabled: bool = True) -> None:
    """Turn on 64-bit floats in JAX (recommended for GPs and laws)."""
    jax.config.update("jax_enable_x64", bool(enabled))


def x64_enabled() -> bool:
    """Whether JAX currently creates float64 arrays."""
    return bool(jax.config.read("jax_enable_x64"))


def jitter(dtype) -> float:
    """Default diagonal jitter for a dtype: sqrt(machine epsilon)."""
    return float(jnp.sqrt(jnp.finfo(dtype).eps))


def is_smoke() -> bool:
    """True when ``JAXSCALE_SMOKE=1``: notebooks and demos shrink their work."""
    return os.environ.get("JAXSCALE_SMOKE", "0") not in ("", "0", "false", "False")


def warn_if_float32(what: str = "inputs") -> None:
    """Warn when x64 is off, since laws and GPs lose precision in float32."""
    if not x64_enabled():
        warnings.warn(
            f"{what}: JAX float64 is disabled, so computations run in float32 and may lose "
            "precision or produce NaN; call jaxscale.enable_x64() or set JAX_ENABLE_X64=1.",
            UserWarning,
            stacklevel=3,
        )
