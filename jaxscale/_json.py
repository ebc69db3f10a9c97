"""Strict JSON for results: numpy/JAX values become plain Python, non-finite floats become ``null``.

:func:`to_jsonable` never emits ``NaN``/``Infinity`` (which are not JSON); :func:`dumps` refuses
them as a second guard.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

__all__ = ["to_jsonable", "dumps"]


def to_jsonable(obj):
    """Convert numpy/JAX scalars and arrays (recursively) to plain Python; NaN/inf -> ``None``."""
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if hasattr(obj, "_asdict") and isinstance(obj, tuple):
        return to_jsonable(obj._asdict())
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "shape") and hasattr(obj, "dtype"):
        arr = np.asarray(obj)
        return to_jsonable(arr.item() if arr.ndim == 0 else arr.tolist())
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (np.floating, float)):
        v = float(obj)
        return v if math.isfinite(v) else None
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


def dumps(obj, **kwargs) -> str:
    """``json.dumps(to_jsonable(obj), allow_nan=False)``."""
    return json.dumps(to_jsonable(obj), allow_nan=False, **kwargs)
