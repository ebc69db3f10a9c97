"""Test configuration: single-threaded BLAS, float64, a key fixture, warnings as errors."""
import os
import sys

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("JAXSCALE_PROGRESS", "0")
os.environ.setdefault("JAXSCALE_NO_CACHE", "1")  # in-process CLI calls leave the user's cache alone
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_enable_x64", True)


@pytest.fixture
def key():
    """The root PRNG key of a test; split it explicitly."""
    return jax.random.key(0)
