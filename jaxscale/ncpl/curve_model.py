"""Train and evaluate the NCPL loss-curve model (``frac`` as a numeric field)."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from jaxscale.ncpl.curves import curve_frame, curve_metrics, plot_curves
from jaxscale.ncpl.dataset import SOURCES, load_runs, select
from jaxscale.ncpl.model import Spec, fit_ncpl
from jaxscale.ncpl.pipeline import extrapolation_summary, predict_quiet
from jaxscale.ncpl.serialize import ncpl_fields, ncpl_frame

__all__ = ["CURVE_PRESETS", "fit_curve_model", "curve_evaluation"]

CURVE_PRESETS = {
    "small": Spec(members=3, steps=400, lr=3e-3, eval_every=100, patience=100),
    "default": Spec(members=5, steps=1500, lr=2e-3, eval_every=100, patience=100),
}


def fit_curve_model(key, runs: pd.DataFrame, preset: str = "small", max_points: int = 15):
    """Stage-1 ensemble on the curve points of the TRAIN runs of both sources."""
    if preset not in CURVE_PRESETS:
        raise ValueError(f"preset must be one of {list(CURVE_PRESETS)}, got {preset!r}")
    train = pd.concat([select(runs, s, "train") for s in SOURCES])
    frame = curve_frame(train, max_points=max_points)
    text, num = ncpl_fields(curves=True)
    return fit_ncpl(key, frame, text, num, target="curve_loss", baseline="chinchilla_ncpl",
                    spec=CURVE_PRESETS[preset])


def curve_evaluation(key, preset: str = "small", plot_dir: str | None = None, max_points: int = 15) -> dict:
    """Curve MAE (all retained points, loss scale) per source on ID and OOD runs (+ optional PNGs);
    each row reports its distance outside the training runs (``extrapolation``) instead of warning."""
    runs = ncpl_frame(load_runs())
    model = fit_curve_model(key, runs, preset, max_points)
    out = {"info": model.info, "results": []}
    for s in SOURCES:
        for sp in ("id", "ood"):
            frame = curve_frame(select(runs, s, sp), max_points=max_points)
            p = predict_quiet(model, frame)
            r = curve_metrics(frame, p.mean, p.lower, p.upper)
            r.update(source=s, split=sp, extrapolation=extrapolation_summary(p.extrapolation))
            out["results"].append(r)
            if plot_dir:
                Path(plot_dir).mkdir(parents=True, exist_ok=True)
                ids = frame["run_id"].drop_duplicates().sample(4, random_state=0).tolist()
                out.setdefault("plots", []).append(str(plot_curves(
                    frame, p.mean, p.lower, p.upper, ids, Path(plot_dir) / f"curves_{s}_{sp}.png", f"{s} {sp}")))
    return out
