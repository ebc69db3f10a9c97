"""A CPU runtime workaround applied when jaxscale is imported (before JAX creates its CPU client).

jaxlib 0.10.2's CPU runtime can deadlock (0 % CPU, forever) when two batched LAPACK calls (e.g.
vmapped Cholesky factors of several GP restarts) are scheduled concurrently on its intra-op thread
pool; we saw it with 10 vmapped MaGP restarts on 121, 128 and 255 points. Appending
``--xla_cpu_enable_concurrency_optimized_scheduler=false`` to ``XLA_FLAGS`` removed the hangs of
those reproductions at no measurable cost. It does not remove every such hang: 10 vmapped restarts
of the law-informed GP on 240 points (nanoGPT curves cut at 10 %) still deadlocked, with both pool
threads inside batched triangular solves (``--xla_cpu_multi_thread_eigen=false`` did not help
either). So the GP fits and predictions run their restarts one after another on a CPU device
(:func:`jaxscale.infer.sharded_vmap` with ``linalg=True``), which has no batched LAPACK call to
deadlock and was faster on 2 cores. The flag only affects the CPU backend, and only takes effect if
jaxscale is imported before JAX creates its CPU client (set ``XLA_FLAGS`` yourself otherwise, or
set ``JAXSCALE_NO_XLA_WORKAROUND=1`` to opt out). This module imports nothing but ``os``.
"""
from __future__ import annotations

import os

__all__ = ["CPU_SCHEDULER_FLAG", "cpu_deadlock_workaround"]

CPU_SCHEDULER_FLAG = "--xla_cpu_enable_concurrency_optimized_scheduler=false"


def cpu_deadlock_workaround() -> None:
    """Append :data:`CPU_SCHEDULER_FLAG` to ``XLA_FLAGS`` unless opted out or already set."""
    if os.environ.get("JAXSCALE_NO_XLA_WORKAROUND"):
        return
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_cpu_enable_concurrency_optimized_scheduler" not in flags:
        os.environ["XLA_FLAGS"] = (flags + " " + CPU_SCHEDULER_FLAG).strip()
