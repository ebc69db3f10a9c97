"""Train/test split rules of the original code (``utils/data.py:split_data``) and the cut-off sweep AUE (App. C.4)."""
from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = [
    "cutoff_split",
    "rank_top_split",
    "rank_by_column_split",
    "aue",
    "SWEEP_RATIOS",
]

SWEEP_RATIOS = np.round(np.arange(0.60, 0.049, -0.05), 2)  # test ratio 60% -> 5%


def cutoff_split(df: pd.DataFrame, column: str, threshold: float, force_test=None) -> np.ndarray:
    """Boolean train mask: ``df[column] <= threshold``; missing values and ``force_test`` rows -> test."""
    v = df[column].to_numpy(float)
    with np.errstate(invalid="ignore"):
        train = v <= threshold  # NaN compares False -> test, as in the original code
    if force_test is not None:
        train &= ~np.asarray(force_test, bool)
    return train


def rank_top_split(y, fraction: float) -> np.ndarray:
    """Train mask putting the top ``floor(fraction * n)`` rows by ``y`` (descending) in test."""
    y = np.asarray(y, float)
    n_test = int(np.floor(fraction * y.size))
    order = np.argsort(-y, kind="stable")
    train = np.ones(y.size, bool)
    train[order[:n_test]] = False
    return train


def rank_by_column_split(values, test_ratio: float) -> np.ndarray:
    """Train mask for a sweep: the top ``floor(test_ratio * n)`` rows by ``values`` go to test.

    Missing values rank as largest (they go to test first).
    """
    v = np.asarray(values, float)
    v = np.where(np.isfinite(v), v, np.inf)
    return rank_top_split(v, test_ratio)


def aue(test_ratios, test_mse) -> float:
    """Area under the test-MSE vs test-ratio curve (trapezoid rule over increasing ratios)."""
    r = np.asarray(test_ratios, float)
    e = np.asarray(test_mse, float)
    o = np.argsort(r)
    r, e = r[o], e[o]
    return float(np.sum(0.5 * (e[1:] + e[:-1]) * np.diff(r)))
