"""Test configuration: single-threaded BLAS, float64, a key fixture, compiled programs released after each file
(and kept for the rest of the run in an XLA compilation cache of its own)."""
import os
import shutil
import sys
import tempfile

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("JAXSCALE_PROGRESS", "0")
os.environ.setdefault("JAXSCALE_NO_CACHE", "1")  # in-process CLI calls leave the user's cache alone
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from jaxscale._xla import cpu_deadlock_workaround  # noqa: E402  (before JAX creates its CPU client)

cpu_deadlock_workaround()

import gc  # noqa: E402

import jax  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_enable_x64", True)

#: An XLA compilation cache for this run, shared by its xdist workers: a program compiled by one test file is
#: read back by the later files that compile it again (each file's programs are released from memory below).
#: The same compiled programs run, so no number changes. Removed when the run ends.
_RUN = os.getppid() if os.environ.get("PYTEST_XDIST_WORKER") else os.getpid()  # a worker's parent: the controller
_XLA_CACHE = os.path.join(tempfile.gettempdir(), f"jaxscale-tests-xla-{_RUN}")
jax.config.update("jax_compilation_cache_dir", _XLA_CACHE)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
jax.config.update("jax_compilation_cache_max_size", 8 << 30)  # a size limit turns on the file lock between workers


def pytest_sessionfinish(session):
    """The run's XLA cache goes with the run (removed by the controller, or by a run without workers)."""
    if not hasattr(session.config, "workerinput"):
        shutil.rmtree(_XLA_CACHE, ignore_errors=True)


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
