"""Held-out metrics of the zero-shot paper in original units, plus interval coverage.

Per held-out curve: RMSE, MAE and mean Gaussian NLPD (variance = latent + task noise) over
**full** (all held-out points), **partial** (last 3) and **last** (final point); then the mean
over curves; then mean ± std (ddof 0) over restarts. Coverage: the fraction of held-out points
inside the central 50 % / 90 % interval of the restart mixture's observation predictive, over
all held-out points (full) and the last point of every held-out curve (last).
"""
from __future__ import annotations

import numpy as np

from jaxscale.learning_curves.core import marginal_moments, mixture_interval
from jaxscale.learning_curves.magp_predict import JointPrediction
from jaxscale.learning_curves.problem import LCProblem

__all__ = ["PARTS", "COVERAGE_LEVELS", "curve_metrics", "summarize_metrics", "coverage_metrics",
           "heldout_metrics", "marginal_metrics", "evaluate_prediction"]

COVERAGE_LEVELS = (0.5, 0.9)

PARTS = ("full", "partial", "last")


def _part_masks(curve: np.ndarray, x: np.ndarray):
    """(parts, M) masks: full, last 3 points of each curve, last point of each curve."""
    order = np.lexsort((-x, curve))  # within each curve: largest x first
    rank = np.empty(len(x), int)
    c_sorted = curve[order]
    first = np.r_[0, np.flatnonzero(np.diff(c_sorted)) + 1]
    starts = np.repeat(first, np.diff(np.r_[first, len(x)]))
    rank[order] = np.arange(len(x)) - starts
    return {"full": np.ones(len(x), bool), "partial": rank < 3, "last": rank == 0}


def curve_metrics(y, mean, var, curve, x) -> dict:
    """Metrics per restart: ``{metric: {part: (R,) array}}`` (mean over held-out curves)."""
    y, mean, var = np.asarray(y), np.atleast_2d(np.asarray(mean)), np.atleast_2d(np.asarray(var))
    curve, x = np.asarray(curve), np.asarray(x)
    _, cid = np.unique(curve, return_inverse=True)
    C = cid.max() + 1
    err = mean - y[None]
    nlpd = 0.5 * np.log(2 * np.pi * var) + 0.5 * err**2 / var
    out = {"rmse": {}, "mae": {}, "nlpd": {}}
    for part, m in _part_masks(curve, x).items():
        onehot = (cid[None, :] == np.arange(C)[:, None]) & m[None, :]  # (C, M)
        n = onehot.sum(1)
        se = (err**2) @ onehot.T / n
        out["rmse"][part] = np.sqrt(se).mean(1)
        out["mae"][part] = (np.abs(err) @ onehot.T / n).mean(1)
        out["nlpd"][part] = (nlpd @ onehot.T / n).mean(1)
    return out


def summarize_metrics(per_restart: dict) -> dict:
    """``{metric: {part: {"mean", "std"}}}`` over restarts (plain floats, JSON-ready)."""
    return {k: {p: {"mean": float(np.mean(v)), "std": float(np.std(v))} for p, v in d.items()}
            for k, d in per_restart.items()}


def coverage_metrics(y, pred: JointPrediction, curve, x, levels=COVERAGE_LEVELS) -> dict:
    """``{"coverage_50": {"full", "last"}, "coverage_90": ...}``: fractions of ``y`` inside the central
    intervals of the restart mixture of ``pred`` (observation: latent + noise)."""
    mean, var = marginal_moments(pred)
    return _coverage(y, mean, np.sqrt(var), curve, x, levels)


def _coverage(y, mean, sd, curve, x, levels=COVERAGE_LEVELS) -> dict:
    """:func:`coverage_metrics` from each restart's mean and observation sd, ``(R, M)`` each."""
    y = np.asarray(y, float)
    last = _part_masks(np.asarray(curve), np.asarray(x, float))["last"]
    out = {}
    for level in levels:
        lo, hi = (np.asarray(a) for a in mixture_interval(mean, sd, level))
        inside = (y >= lo) & (y <= hi)  # jaxscale.metrics.interval_coverage, in float64
        out[f"coverage_{round(100 * level)}"] = {"full": float(np.mean(inside)), "last": float(np.mean(inside[last]))}
    return out


def heldout_metrics(y, pred: JointPrediction, curve, x) -> dict:
    """Per-restart metrics, their summary and the coverage of a held-out prediction."""
    return marginal_metrics(y, *marginal_moments(pred), curve, x)


def marginal_metrics(y, mean, var, curve, x) -> dict:
    """:func:`heldout_metrics` from each restart's mean and observation variance (latent + noise),
    ``(R, M)`` each: all it reads of a joint prediction, so a long held-out table predicted in
    chunks is scored the same way."""
    var = np.maximum(np.asarray(var, float), 1e-12)
    per = curve_metrics(y, mean, var, np.asarray(curve), np.asarray(x))
    return {"per_restart": {k: {p: v.tolist() for p, v in d.items()} for k, d in per.items()},
            "summary": summarize_metrics(per), "coverage": _coverage(y, mean, np.sqrt(var), curve, x)}


def evaluate_prediction(problem: LCProblem, pred: JointPrediction) -> dict:
    """Metrics of a held-out prediction (``pred`` for ``problem.test``): per restart, summary, coverage."""
    return heldout_metrics(problem.y_test, pred, np.asarray(problem.test.c), np.asarray(problem.test.x))
