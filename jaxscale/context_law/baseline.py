"""The naive baselines a sceptic tries before any law: carry each model's last score forward, or
extend its trend in the logarithm of the prompt length.

For every query row, the baseline is the score of the same (model, task) at its longest training
prompt that is not longer than the query's (at the shortest training prompt when the query is
shorter than all of them); several training rows at that prompt length are averaged. A query of a
(model, task) with no training row at all gets the task's mean training score (counted as a
fallback). Held out on longer prompts, this is "the score stays where it was last measured".
:func:`prompt_trend` instead extends each (model, task)'s straight line in ``ln(prompt length)``
through its longest training prompts: "the score keeps moving as it last did".
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from jaxscale.infer.prediction import Prediction

__all__ = ["carry_forward", "model_groups", "prompt_trend"]


def model_groups(data, model=None) -> np.ndarray:
    """One label per row naming its (model, task): the given ``model`` labels, or, without them,
    the row's (compute, context limit) pair, which names a model as far as the law can tell."""
    task = np.asarray(data.task).astype(str)
    if model is not None:
        who = np.asarray(model).astype(str)
    else:
        who = np.char.add(np.char.add(np.round(np.asarray(data.log_C, float), 6).astype(str), "|"),
                          np.asarray(data.n_ctx, float).astype(str))
    return np.char.add(np.char.add(task, "#"), who)


def carry_forward(data, train, model=None) -> tuple[Prediction, int]:
    """The carry-forward baseline for every row of ``data``.

    Args:
      data: a context-law ``Data`` (its ``y`` holds the training scores).
      train: boolean mask of the rows the baseline may use.
      model: optional model label per row (e.g. the table's ``model`` column); without it a model
        is a (compute, context limit) pair.

    Returns:
      ``(Prediction with mean only (lower/upper NaN: no interval), number of rows that used the
      task-mean fallback)``; the mean on the table's score scale (``data.score_scale``).
    """
    train = np.asarray(train, bool)
    frame = pd.DataFrame({"g": model_groups(data, model), "task": np.asarray(data.task),
                          "n": np.asarray(data.n_pmt, float), "y": np.asarray(data.y, float),
                          "i": np.arange(len(train))})
    known = frame[train].groupby(["g", "n"], as_index=False)["y"].mean().sort_values("n")
    query = frame.sort_values("n")
    back = pd.merge_asof(query, known.rename(columns={"y": "yb"}), on="n", by="g", direction="backward")
    fwd = pd.merge_asof(query, known.rename(columns={"y": "yf"}), on="n", by="g", direction="forward")
    value = back["yb"].to_numpy()
    value = np.where(np.isnan(value), fwd["yf"].to_numpy(), value)
    task_mean = frame[train].groupby("task")["y"].mean()
    fallback = np.isnan(value)
    value = np.where(fallback, query["task"].map(task_mean).to_numpy(float), value)
    out = np.empty(len(train))
    out[query["i"].to_numpy()] = value * data.score_scale
    nan = np.full(len(train), np.nan)
    held_fallback = np.zeros(len(train), bool)
    held_fallback[query["i"].to_numpy()] = fallback
    return Prediction(out, nan, nan), int((held_fallback & ~train).sum())


def prompt_trend(data, train, model=None) -> tuple[Prediction, int]:
    """The local-trend baseline for every row of ``data``: each (model, task)'s least-squares line of
    the score in ``ln(prompt length)`` through its training prompts of the last octave (lengths from
    half its longest on; its two longest when that octave holds one), several rows at one length
    averaged first, extended and clipped to the score's range. A (model, task) with one training
    length carries its score forward; one with no training row (or only prompts of length 0) gets
    the task's mean training score (counted as a fallback). Returns as :func:`carry_forward`."""
    train = np.asarray(train, bool)
    n = np.asarray(data.n_pmt, float)
    frame = pd.DataFrame({"g": model_groups(data, model), "task": np.asarray(data.task), "n": n,
                          "y": np.asarray(data.y, float)})
    known = frame[train & (n > 0)].groupby(["g", "n"], as_index=False)["y"].mean()
    known["lx"] = np.log(known["n"])
    known = known.sort_values(["g", "n"], ascending=[True, False])
    rank = known.groupby("g").cumcount().to_numpy()
    top = known.groupby("g")["n"].transform("max").to_numpy()
    pts = known[(rank < 2) | (known["n"].to_numpy() >= 0.5 * top)].copy()
    pts["lxy"], pts["lxx"] = pts["lx"] * pts["y"], pts["lx"] ** 2
    agg = pts.groupby("g")[["lx", "y", "lxy", "lxx"]].agg(["sum", "count"])
    k = agg[("lx", "count")].to_numpy(float)
    sx, sy, sxy, sxx = (agg[(c, "sum")].to_numpy(float) for c in ("lx", "y", "lxy", "lxx"))
    den = sxx - sx * sx / k
    ok = den > 1e-12 * np.maximum(sxx, 1.0)
    slope = np.where(ok, (sxy - sx * sy / k) / np.where(ok, den, 1.0), 0.0)
    line = pd.DataFrame({"b": slope, "a": (sy - slope * sx) / k}, index=agg.index)
    a = frame["g"].map(line["a"]).to_numpy(float)
    b = frame["g"].map(line["b"]).to_numpy(float)
    value = a + b * np.log(np.maximum(n, np.finfo(float).tiny))
    fallback = np.isnan(value)
    task_mean = frame[train].groupby("task")["y"].mean()
    value = np.where(fallback, frame["task"].map(task_mean).to_numpy(float), value)
    out = np.clip(value, 0.0, 1.0) * data.score_scale
    nan = np.full(len(train), np.nan)
    return Prediction(out, nan, nan), int((fallback & ~train).sum())
