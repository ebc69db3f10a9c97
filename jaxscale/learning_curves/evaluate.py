"""Held-out metrics of the zero-shot paper (note §5) in original units.

Per held-out curve: RMSE, MAE and mean Gaussian NLPD (variance = latent + task noise) over
**full** (all held-out points), **partial** (last 3) and **last** (final point); then the mean
over curves; then mean ± std (ddof 0) over restarts.
"""
from __future__ import annotations

import numpy as np

from jaxscale.learning_curves.magp_predict import JointPrediction
from jaxscale.learning_curves.problem import LCProblem

__all__ = ["PARTS", "curve_metrics", "summarize_metrics", "evaluate_prediction"]

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


def evaluate_prediction(problem: LCProblem, pred: JointPrediction) -> dict:
    """Metrics of a held-out prediction (``pred`` for ``problem.test``): per restart and summary."""
    var = np.maximum(np.diagonal(np.asarray(pred.cov), axis1=-2, axis2=-1), 1e-12) + np.asarray(pred.noise_var)
    per = curve_metrics(problem.y_test, pred.mean, var, np.asarray(problem.test.c), np.asarray(problem.test.x))
    return {"per_restart": {k: {p: v.tolist() for p, v in d.items()} for k, d in per.items()},
            "summary": summarize_metrics(per)}
