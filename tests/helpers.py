"""Shared test helpers: dtype-aware closeness, compile counting, and the small synthetic run tables
the tests write as a user's own CSV."""
from __future__ import annotations

import contextlib
import logging

import jax
import numpy as np
import pandas as pd

__all__ = ["assert_allclose", "count_compiles", "chinchilla_runs", "lc_runs", "json_error"]


def assert_allclose(actual, desired, rtol=None, atol=0.0):
    """``np.testing.assert_allclose`` with a tolerance keyed by dtype (float32 5e-4, float64 5e-7)."""
    actual = np.asarray(actual)
    if rtol is None:
        rtol = 5e-4 if actual.dtype == np.float32 else 5e-7
    np.testing.assert_allclose(actual, desired, rtol=rtol, atol=atol)


@contextlib.contextmanager
def log_lines(name: str, level: int = logging.INFO):
    """The messages logged to the logger ``name`` (and its children) inside the block, as a list
    filled while it runs; the logger's level is ``level`` meanwhile: ``with log_lines("jaxscale")
    as lines: ...``."""
    lines: list[str] = []

    class _Keep(logging.Handler):
        def emit(self, record):
            lines.append(record.getMessage())

    handler, logger = _Keep(), logging.getLogger(name)
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(level)
    try:
        yield lines
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)


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


def chinchilla_runs(seed=0, noise=0.01) -> pd.DataFrame:
    """25 runs (5 sizes x 5 token counts) of ``L = 1.7 + 400 / N^0.34 + 1500 / D^0.30`` with
    log-normal noise of sd ``noise``, under the columns ``params``, ``tokens``, ``val_loss``."""
    rng = np.random.default_rng(seed)
    N = np.repeat([3e7, 1e8, 3e8, 1e9, 3e9], 5)
    D = np.tile([3e9, 1e10, 3e10, 1e11, 3e11], 5)
    L = (1.7 + 400 / N**0.34 + 1500 / D**0.30) * np.exp(noise * rng.normal(size=N.size))
    return pd.DataFrame({"params": N, "tokens": D, "val_loss": L})


def lc_runs(seed=0, *, params=True, run=False) -> pd.DataFrame:
    """Learning curves of 3 widths x 2 depths, 5 logged steps per run (row ``i`` is line ``i + 2`` of
    the CSV): ``loss = 1.8 + 40 / N^0.25 + 6 / step^0.4 + noise``, with ``N = 12 depth width^2`` as
    column ``params`` (``params=False``: left out) and a run name column ``run`` when ``run``."""
    rng = np.random.default_rng(seed)
    rows = []
    for w in (128, 256, 512):
        for dep in (2, 8):
            n = 12 * dep * w * w
            for s in (10, 40, 160, 640, 2560):
                row = dict(width=w, depth=dep, step=s)
                if params:
                    row["params"] = n
                if run:
                    row["run"] = f"w{w}d{dep}"
                row["loss"] = 1.8 + 40.0 / n**0.25 + 6.0 / s**0.4 + rng.normal(0, 0.01)
                rows.append(row)
    return pd.DataFrame(rows)


def json_error(out: str) -> bool:
    """``out`` (a ``--json`` command's stdout after bad input) is exactly one strict JSON object
    ``{"error": message}``: no result, nothing else (no native-library chatter)."""
    import json

    obj = json.loads(out, parse_constant=lambda c: (_ for _ in ()).throw(ValueError(c)))
    return isinstance(obj, dict) and list(obj) == ["error"] and isinstance(obj["error"], str) and obj["error"] != ""
