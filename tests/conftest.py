"""Test configuration: single-threaded BLAS, float64, most XLA optimisations off (per file back on
with ``XLA_OPTIMIZE = True``), a key fixture, compiled programs released after each file."""
import os
import sys

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("JAXSCALE_PROGRESS", "0")
os.environ.setdefault("JAXSCALE_NO_CACHE", "1")  # in-process CLI calls leave the user's cache alone
# Most tests run small compiled programs once, so XLA's compiler, not the programs, takes their time:
# with most of its optimisations off they compile about a third faster. Subprocesses (CLI calls,
# notebook kernels) inherit it; a test file whose time goes into running programs (long MCMC
# chains) sets ``XLA_OPTIMIZE = True`` and gets the optimised programs (see ``_compile_effort``).
os.environ.setdefault("JAX_DISABLE_MOST_OPTIMIZATIONS", "1")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from jaxscale._xla import cpu_deadlock_workaround  # noqa: E402  (before JAX creates its CPU client)

cpu_deadlock_workaround()

import gc  # noqa: E402

import jax  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_enable_x64", True)
#: The environment's choice (off by default, above), as JAX itself parsed it.
NO_OPTIMIZATIONS = jax.config.read("jax_disable_most_optimizations")


@pytest.fixture(autouse=True, scope="module")
def _compile_effort(request):
    """XLA's optimisations for a file that sets ``XLA_OPTIMIZE = True`` (its time goes into running
    compiled programs); :data:`NO_OPTIMIZATIONS` for the others."""
    jax.config.update("jax_disable_most_optimizations",
                      NO_OPTIMIZATIONS and not getattr(request.module, "XLA_OPTIMIZE", False))
    yield
    jax.config.update("jax_disable_most_optimizations", NO_OPTIMIZATIONS)


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_programs():
    """Drop JAX's compiled programs after each test file: a worker that keeps every program of the
    suite grows past 6 GB and leaves the machine little room for XLA's compiler."""
    yield
    jax.clear_caches()
    gc.collect()


@pytest.fixture
def key():
    """The root PRNG key of a test; split it explicitly."""
    return jax.random.key(0)
