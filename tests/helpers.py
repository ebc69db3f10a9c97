"""Shared test helpers: dtype-aware closeness and compile counting."""
from __future__ import annotations

import contextlib
import logging

import jax
import numpy as np

__all__ = ["assert_allclose", "count_compiles"]


def assert_allclose(actual, desired, rtol=None, atol=0.0):
    """``np.testing.assert_allclose`` with a tolerance keyed by dtype (float32 5e-4, float64 5e-7)."""
    actual = np.asarray(actual)
    if rtol is None:
        rtol = 5e-4 if actual.dtype == np.float32 else 5e-7
    np.testing.assert_allclose(actual, desired, rtol=rtol, atol=atol)


@contextlib.contextmanager
def count_compiles(name: str = ""):
    """Count XLA compilations (of functions whose name contains ``name``) inside the block:
    ``with count_compiles("fit") as n: ...; n()``."""
    records = []

    class _Handler(logging.Handler):
        def emit(self, record):
            msg = record.getMessage()
            if msg.startswith("Compiling") and name in msg.split(" with ")[0]:
                records.append(msg)

    handler = _Handler()
    logger = logging.getLogger("jax")
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        with jax.log_compiles(True):
            yield lambda: len(records)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
