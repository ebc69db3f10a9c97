"""Preprocessing of the original code: x as given (already ln step), per-task z-score.

``leaky=False`` (default) computes the per-task constants from training rows only; ``leaky=True``
reproduces the original, which uses every value of the task row (held-out curves included).
Tasks without training rows fall back to the pooled training constants.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

__all__ = ["Scaler", "task_scaler"]


class Scaler(NamedTuple):
    """Per-task affine map: z = (y - mean[d]) / std[d]."""

    mean: np.ndarray  # (D,)
    std: np.ndarray  # (D,)


def task_scaler(d: np.ndarray, y: np.ndarray, n_tasks: int, rows: np.ndarray) -> Scaler:
    """Per-task mean / std (ddof 0, as numpy in the original) over the rows flagged in ``rows``."""
    d = np.asarray(d)
    y = np.asarray(y, dtype=float)
    rows = np.asarray(rows, dtype=bool)
    pooled_m, pooled_s = y[rows].mean(), y[rows].std()
    cnt = np.bincount(d[rows], minlength=n_tasks).astype(float)
    s1 = np.bincount(d[rows], weights=y[rows], minlength=n_tasks)
    s2 = np.bincount(d[rows], weights=y[rows] ** 2, minlength=n_tasks)
    safe = np.maximum(cnt, 1.0)
    mean = np.where(cnt > 0, s1 / safe, pooled_m)
    var = np.where(cnt > 1, s2 / safe - (s1 / safe) ** 2, pooled_s ** 2)
    std = np.sqrt(np.maximum(var, 1e-12))
    return Scaler(mean, std)
