"""Loss-curve prediction: the fraction of training is one more numeric field.

Each run contributes its curve subsampled as in NCPL (stride ``len // 15`` when longer than 15
points; step 0 dropped, its loss is the untrained ~11 nats). The target is the paper's
``loss_t - L_chin(N, D_final)`` (the same final-(N, D) Chinchilla value at every step), so
predictions add ``chinchilla_ncpl`` back.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from jaxscale.ncpl.dataset import load_curves, regression_metrics, require_columns

__all__ = ["curve_frame", "curve_metrics", "plot_curves"]


def curve_frame(runs: pd.DataFrame, curves: pd.DataFrame | None = None, max_points: int = 15) -> pd.DataFrame:
    """Long table: one row per (run, retained curve point) with the run's config + ``frac``, ``curve_loss``."""
    if max_points < 1:
        raise ValueError(f"max_points must be >= 1, got {max_points}")
    curves = load_curves() if curves is None else curves
    require_columns(curves, ["run_id", "step", "loss"], "curves")
    require_columns(runs, ["run_id", "total_steps"], "runs")
    c = curves[curves["run_id"].isin(runs["run_id"]) & (curves["step"] > 0)]
    c = c.sort_values(["run_id", "step"])
    rank = c.groupby("run_id").cumcount().to_numpy()
    n = c.groupby("run_id")["step"].transform("size").to_numpy()
    stride = np.maximum(n // max_points, 1)
    last = rank == n - 1
    keep = ((rank % stride) == (n - 1) % stride) | last  # stride ending at the final point
    c = c[keep]
    out = c.merge(runs, on="run_id", how="left", validate="many_to_one")
    out["frac"] = out["step"] / out["total_steps"].clip(lower=1)
    out["curve_loss"] = out["loss"]
    return out.reset_index(drop=True)


def curve_metrics(frame: pd.DataFrame, pred: np.ndarray, lo=None, hi=None) -> dict:
    """Curve MAE/RMSE/Spearman over all retained points (plus per-run mean MAE)."""
    out = regression_metrics(frame["curve_loss"], pred, lo, hi)
    err = np.abs(frame["curve_loss"].to_numpy(float) - np.asarray(pred, float))
    out["run_mean_mae"] = float(pd.Series(err).groupby(frame["run_id"].to_numpy()).mean().mean())
    out["n_runs"] = int(frame["run_id"].nunique())
    return out


def plot_curves(frame: pd.DataFrame, pred, lo, hi, run_ids, path, title: str = "loss curves"):
    """True (points) vs predicted (line + 90% band) curves of a few runs; saves a PNG."""
    from jaxscale.plotting import band, figure, save

    fig, ax = figure()
    for i, rid in enumerate(run_ids):
        m = (frame["run_id"] == rid).to_numpy()
        f = frame["frac"].to_numpy()[m]
        o = np.argsort(f)
        col = f"C{i % 10}"
        ax.plot(f[o], frame["curve_loss"].to_numpy()[m][o], "o", ms=3, color=col)
        band(ax, f[o], np.asarray(pred)[m][o], np.asarray(lo)[m][o], np.asarray(hi)[m][o], label=str(rid)[-28:],
             color=col, alpha=0.15)
    ax.set_xlabel("fraction of training")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.legend(fontsize=6)
    return save(fig, path)
