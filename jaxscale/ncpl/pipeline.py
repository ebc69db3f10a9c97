"""High-level NCPL workflows shared by the CLI, demo, notebook and benchmark.

``ncpl_model`` trains (or loads from ``~/.cache/jaxscale/ncpl``) the joint Marin+StepLaw stage-1
ensemble on the official TRAIN rows; ``evaluate`` reports MAE/RMSE/Spearman (+90% coverage for
NCPL) per source and split on the loss scale; ``scatter_plot`` draws true vs predicted.
"""
from __future__ import annotations

from pathlib import Path

import jax
import numpy as np
import pandas as pd

from jaxscale._log import get_logger
from jaxscale.ncpl import baselines as bl
from jaxscale.ncpl.dataset import SOURCES, SPLITS, load_runs, regression_metrics, select
from jaxscale.ncpl.model import NCPLModel, cache_dir, fit_ncpl, load_model, predict_ncpl, save_model
from jaxscale.ncpl.serialize import ncpl_fields, ncpl_frame
from jaxscale.ncpl.train import TrainConfig

__all__ = ["DEFAULT", "SMALL", "runs_frame", "ncpl_model", "evaluate", "evaluate_table", "scatter_plot"]

log = get_logger(__name__)

DEFAULT = dict(n_members=5, tcfg=TrainConfig(steps=1000, lr=2e-3, eval_every=100, patience=100))
SMALL = dict(n_members=3, tcfg=TrainConfig(steps=400, lr=3e-3, eval_every=100, patience=100))
MODELS = ("ncpl", "xgboost", "chinchilla", "chinchilla_refit")


def runs_frame() -> pd.DataFrame:
    """``ncpl_runs.csv`` with the derived config columns."""
    return ncpl_frame(load_runs())


def ncpl_model(key, preset: str = "default", cache: bool = True, df: pd.DataFrame | None = None) -> NCPLModel:
    """Joint stage-1 NCPL ensemble on both sources' TRAIN rows (cached on disk by preset and key)."""
    if preset not in ("default", "small"):
        raise ValueError(f"preset must be 'default' or 'small', got {preset!r}")
    cfg = DEFAULT if preset == "default" else SMALL
    seed = int(jax.random.key_data(key).ravel()[-1])
    path = cache_dir() / f"model_{preset}_seed{seed}.pkl"
    if cache and path.exists():
        return load_model(path)
    df = runs_frame() if df is None else df
    train = pd.concat([select(df, s, "train") for s in SOURCES])
    text, num = ncpl_fields()
    model = fit_ncpl(key, train, text, num, **cfg)
    if cache:
        save_model(model, path)
    return model


def evaluate(source: str, split: str, model: str, key=None, preset: str = "default",
             df: pd.DataFrame | None = None, fitted: NCPLModel | None = None) -> dict:
    """Metrics of ``model`` on ``source``/``split`` (``id`` | ``ood`` | ``train``), loss scale."""
    if model not in MODELS:
        raise ValueError(f"model must be one of {MODELS}, got {model!r}")
    if split not in SPLITS:
        raise ValueError(f"split must be one of {list(SPLITS)}, got {split!r}")
    df = runs_frame() if df is None else df
    if model != "ncpl":
        return bl.evaluate_baseline(df, model, source, split)
    fitted = fitted or ncpl_model(key if key is not None else jax.random.key(0), preset, df=df)
    test = select(df, source, split)
    p = predict_ncpl(fitted, test)
    out = regression_metrics(test["final_loss"], p.mean, p.lo, p.hi)
    out.update(model="ncpl", source=source, split=split)
    return out


def evaluate_table(key, preset: str = "default", models=MODELS, df=None) -> list[dict]:
    """All (model, source, split in id/ood) rows."""
    df = runs_frame() if df is None else df
    fitted = ncpl_model(key, preset, df=df) if "ncpl" in models else None
    return [evaluate(s, sp, m, key, preset, df, fitted) for m in models for s in SOURCES for sp in ("id", "ood")]


def scatter_plot(df: pd.DataFrame, pred, lo, hi, path, title: str = "NCPL: true vs predicted") -> Path:
    """True vs predicted final loss with 90% interval bars, one colour per source."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 5))
    y = df["final_loss"].to_numpy(float)
    for i, s in enumerate(sorted(df["source"].unique())):
        m = (df["source"] == s).to_numpy()
        ax.errorbar(y[m], np.asarray(pred)[m], yerr=[np.asarray(pred)[m] - np.asarray(lo)[m], np.asarray(hi)[m] - np.asarray(pred)[m]],
                    fmt="o", ms=2, alpha=0.5, elinewidth=0.5, color=f"C{i}", label=s)
    lim = [min(y.min(), np.min(pred)), max(y.max(), np.max(pred))]
    ax.plot(lim, lim, "k--", lw=0.8)
    ax.set_xlabel("true final loss")
    ax.set_ylabel("predicted (90% interval)")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)
