"""Numerical configuration: explicit float64 opt-in, dtype-aware jitter, smoke mode.

The library never changes JAX's numerical configuration on import; call :func:`enable_x64`
(the CLI and the demo do) or set ``JAX_ENABLE_X64=1``.

One runtime workaround is applied on import (before any computation): jaxlib 0.10.2's CPU
runtime can deadlock (0 % CPU, forever) when two batched LAPACK calls (e.g. vmapped Cholesky
factors of several GP restarts) are scheduled concurrently on its intra-op thread pool; we saw
it with 10 vmapped MaGP restarts on 121, 128 and 255 points. Appending
``--xla_cpu_enable_concurrency_optimized_scheduler=false`` to ``XLA_FLAGS`` removed every hang
in our reproductions at no measurable cost. It only affects the CPU backend, and only takes
effect if jaxscale is imported before JAX creates its CPU client (set ``XLA_FLAGS`` yourself
otherwise, or set ``JAXSCALE_NO_XLA_WORKAROUND=1`` to opt out).
"""
from __future__ import annotations

import os
import warnings

CPU_SCHEDULER_FLAG = "--xla_cpu_enable_concurrency_optimized_scheduler=false"


def _cpu_deadlock_workaround() -> None:
    if os.environ.get("JAXSCALE_NO_XLA_WORKAROUND"):
        return
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_cpu_enable_concurrency_optimized_scheduler" not in flags:
        os.environ["XLA_FLAGS"] = (flags + " " + CPU_SCHEDULER_FLAG).strip()


_cpu_deadlock_workaround()

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
