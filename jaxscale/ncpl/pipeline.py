"""High-level NCPL workflows shared by the CLI, demo, notebook and benchmark.

``ncpl_model`` trains (or loads from ``~/.cache/jaxscale/ncpl``) the joint Marin+StepLaw stage-1
ensemble on the official TRAIN rows; ``evaluate`` reports MAE/RMSE/Spearman (+90% coverage and
the distance outside the training data for NCPL) per source and split on the loss scale;
``scatter_plot`` draws true vs predicted.
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import jax
import numpy as np
import pandas as pd

from jaxscale._log import get_logger
from jaxscale.ncpl import baselines as bl
from jaxscale.ncpl.dataset import SOURCES, SPLITS, load_runs, regression_metrics, select
from jaxscale.ncpl.spec import Spec
from jaxscale.ncpl.serialize import ncpl_fields, ncpl_frame

if TYPE_CHECKING:
    from jaxscale.ncpl.model import Fit

__all__ = [
    "DEFAULT",
    "SMALL",
    "PRESETS",
    "runs_frame",
    "ncpl_model",
    "predict_quiet",
    "extrapolation_summary",
    "evaluate",
    "evaluate_table",
    "scatter_plot",
]

log = get_logger(__name__)

#: The bundled-runs presets (no early stopping: patience exceeds the evaluations).
DEFAULT = Spec(members=5, steps=1000, lr=2e-3, eval_every=100, patience=100)
SMALL = Spec(members=3, steps=400, lr=3e-3, eval_every=100, patience=100)
PRESETS = {"default": DEFAULT, "small": SMALL}
MODELS = ("ncpl", "xgboost", "chinchilla", "chinchilla_refit")


def runs_frame() -> pd.DataFrame:
    """``ncpl_runs.csv`` with the derived config columns."""
    return ncpl_frame(load_runs())


def ncpl_model(key, preset: str = "default", cache: bool = True, df: pd.DataFrame | None = None) -> Fit:
    """Joint stage-1 NCPL ensemble on both sources' TRAIN rows.

    Cached on disk (``cache_dir()/model_<preset>_seed<seed>``, written by :func:`jaxscale.save`)."""
    from jaxscale.io import load, save
    from jaxscale.ncpl.model import Fit, cache_dir, fit_ncpl

    if preset not in PRESETS:
        raise ValueError(f"preset must be one of {list(PRESETS)}, got {preset!r}")
    seed = int(jax.random.key_data(key).ravel()[-1])
    path = cache_dir() / f"model_{preset}_seed{seed}"
    if cache and (path / "jaxscale.json").exists():
        try:
            fitted = load(path)
        except ValueError:  # a model saved by an older version of the pillar: refit
            fitted = None
        if isinstance(fitted, Fit) and fitted.spec == PRESETS[preset]._replace(baseline="column"):  # as fit_ncpl
            return fitted
    df = runs_frame() if df is None else df
    train = pd.concat([select(df, s, "train") for s in SOURCES])
    text, num = ncpl_fields()
    model = fit_ncpl(key, train, text, num, spec=PRESETS[preset])
    if cache:
        save(model, path, overwrite=True)
    return model


def predict_quiet(model: Fit, frame: pd.DataFrame, **kwargs):
    """:func:`~jaxscale.ncpl.model.predict` without the warning about queries outside the
    training data, for callers that report the distances themselves (the official OOD split lies
    outside the training data by construction)."""
    from jaxscale.ncpl.model import predict

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"NCPL predict: .* outside the training data", category=UserWarning)
        return predict(model, frame, **kwargs)


def extrapolation_summary(distance) -> dict:
    """``{max, mean, n_outside}`` of extrapolation distances (0 inside the training data)."""
    d = np.asarray(distance, float)
    return {"max": float(d.max()) if d.size else 0.0, "mean": float(d.mean()) if d.size else 0.0,
            "n_outside": int((d > 0).sum())}


def evaluate(source: str, split: str, model: str, key=None, preset: str = "default",
             df: pd.DataFrame | None = None, fitted: Fit | None = None) -> dict:
    """Metrics of ``model`` on ``source``/``split`` (``id`` | ``ood`` | ``train``), loss scale.

    ``key`` seeds the NCPL fit (``model="ncpl"``; required unless ``fitted`` is given). For NCPL
    the result also has ``extrapolation`` (:func:`extrapolation_summary` of the split's distances
    outside the training rows; reported here instead of warned)."""
    if model not in MODELS:
        raise ValueError(f"model must be one of {MODELS}, got {model!r}")
    if split not in SPLITS:
        raise ValueError(f"split must be one of {list(SPLITS)}, got {split!r}")
    df = runs_frame() if df is None else df
    if model != "ncpl":
        return bl.evaluate_baseline(df, model, source, split)
    if fitted is None and key is None:
        raise ValueError("evaluate(model='ncpl') needs a PRNG key (or a fitted model)")
    fitted = fitted or ncpl_model(key, preset, df=df)
    test = select(df, source, split)
    p = predict_quiet(fitted, test)
    out = regression_metrics(test["final_loss"], p.mean, p.lower, p.upper)
    out.update(model="ncpl", source=source, split=split, extrapolation=extrapolation_summary(p.extrapolation))
    return out


def evaluate_table(key, preset: str = "default", models=MODELS, df=None) -> list[dict]:
    """All (model, source, split in id/ood) rows."""
    df = runs_frame() if df is None else df
    fitted = ncpl_model(key, preset, df=df) if "ncpl" in models else None
    return [evaluate(s, sp, m, key, preset, df, fitted) for m in models for s in SOURCES for sp in ("id", "ood")]


def scatter_plot(df: pd.DataFrame, pred, lo, hi, path, title: str = "NCPL: true vs predicted") -> Path:
    """True vs predicted final loss with 90% interval bars, one colour per source; saves a PNG."""
    from jaxscale.plotting import figure, save

    fig, ax = figure(size=(5, 5))
    y = df["final_loss"].to_numpy(float)
    pred, lo, hi = (np.asarray(a, float) for a in (pred, lo, hi))
    groups = df["source"].to_numpy() if "source" in df.columns else np.full(len(df), "runs")
    for i, s in enumerate(sorted(set(groups))):
        m = groups == s
        ax.errorbar(y[m], pred[m], yerr=[pred[m] - lo[m], hi[m] - pred[m]],
                    fmt="o", ms=2, alpha=0.5, elinewidth=0.5, color=f"C{i}", label=str(s))
    lim = [min(y.min(), pred.min()), max(y.max(), pred.max())]
    ax.plot(lim, lim, "k--", lw=0.8)
    ax.set_xlabel("true final loss")
    ax.set_ylabel("predicted (90% interval)")
    ax.set_title(title)
    ax.legend()
    return save(fig, path)
