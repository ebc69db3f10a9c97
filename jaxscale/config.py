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

__all__ = ["enable_compilation_cache", "compilation_cache_dir", "enable_x64", "x64_enabled", "jitter", "is_smoke", "warn_if_float32", "CPU_SCHEDULER_FLAG"]


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


def compilation_cache_dir() -> str | None:
    """Folder of the persistent XLA compilation cache: ``$JAXSCALE_CACHE_DIR``, else the per-user
    cache folder (``~/.cache/jaxscale/xla`` on Linux); ``None`` when ``JAXSCALE_NO_CACHE=1``."""
    if os.environ.get("JAXSCALE_NO_CACHE", "0") not in ("", "0", "false", "False"):
        return None
    path = os.environ.get("JAXSCALE_CACHE_DIR")
    if not path:
        import platformdirs

        path = os.path.join(platformdirs.user_cache_dir("jaxscale"), "xla")
    return path


def enable_compilation_cache(min_compile_seconds: float = 0.0) -> str | None:
    """Turn on JAX's persistent compilation cache in :func:`compilation_cache_dir` (the command line
    does), so a second run of a command reuses the programs the first one compiled.

    Programs that compiled in less than ``min_compile_seconds`` are not stored (default: every
    program; a command compiles dozens of small ones, which add up). The programs whose tracing
    alone costs seconds are also kept, traced, in its ``programs`` subfolder
    (:mod:`jaxscale._programs`). Returns the folder,
    or ``None`` when the cache is turned off (``JAXSCALE_NO_CACHE=1``).
    """
    path = compilation_cache_dir()
    if path is None:
        return None
    os.makedirs(path, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", float(min_compile_seconds))
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    from jaxscale._programs import set_program_dir

    set_program_dir(os.path.join(path, "programs"))
    return path
