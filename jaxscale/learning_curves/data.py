"""Tidy loaders of the learning-curve datasets (gene-expression layout) with hierarchy metadata.

Every dataset becomes an :class:`LCData`: a frame with one row per observed point and integer
codes ``d`` (task, upper level), ``r`` (instance / replicate, lower level), ``curve`` (= d * R + r),
plus task / replicate labels and, for nanoGPT, the numeric descriptors (n_embd, n_layer).
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pandas as pd

from jaxscale._log import get_logger
from jaxscale.data import data_dir, read_gene_expression

__all__ = [
    "LCData",
    "NANOGPT_EMBD",
    "NANOGPT_LAYERS",
    "LC_DATASETS",
    "load_lc",
    "from_frame",
]

log = get_logger(__name__)

NANOGPT_EMBD = (512, 768, 960, 1024, 1600)
NANOGPT_LAYERS = (8, 10, 12, 24, 32, 48)
_SMALL_EMBD = (512, 960, 1600)
_SMALL_LAYERS = (8, 12, 24, 48)
_LANGS = ("en", "id", "jv", "ms", "ta", "tl")

#: name -> (relative csv path, pdata suffix, kind)
LC_DATASETS = {
    "nanogpt_large": ("nanogpt_large/layer_over_embd.csv", "_pdata.csv", "nanogpt"),
    "nanogpt_large_exchanged": ("nanogpt_large/embd_over_layer.csv", "_pdata.csv", "nanogpt_exch"),
    "nanogpt_large_regen": ("nanogpt_large_regen/layer_over_embd.csv", "_pdata.csv", "nanogpt"),
    "nanogpt_small": ("nanogpt_small/layer_over_embd.csv", "_pdata.csv", "nanogpt_small"),
}
for _dir in ("src_over_tgt", "tgt_over_src"):
    for _m in ("mBart", "Transformer"):
        for _met in ("bleu", "chrf"):
            LC_DATASETS[f"bilingual_{_dir}_{_m}_{_met}"] = (f"bilingual/{_dir}_{_m}_{_met}.csv", "_pdata.csv", "bilingual")
for _side, _pre in (("same_source", "source"), ("same_target", "target")):
    for _lang in _LANGS:
        LC_DATASETS[f"multilingual_{_side}_{_lang}"] = (
            f"multilingual/{_side}/{_pre}_{_lang}_task_2_m2m100_metric_bleu.csv", "_pdata_log.csv", "multilingual")


class LCData(NamedTuple):
    """A hierarchical learning-curve dataset.

    frame columns: task (label), replicate (label), d, r, curve, point, x, value
    (+ n_embd, n_layer for nanoGPT).
    """

    name: str
    frame: pd.DataFrame
    task_labels: tuple
    replicate_labels: tuple
    kind: str


def from_frame(name: str, frame: pd.DataFrame, task_labels, replicate_labels, kind: str = "custom") -> LCData:
    """Wrap a tidy frame with integer columns ``d``, ``r``, ``point`` and float ``x``, ``value``."""
    from jaxscale.data.validate import check_finite, require_columns

    require_columns(frame, ["d", "r", "point", "x", "value"], f"learning-curve frame {name!r}")
    check_finite(frame, ["x", "value"], f"learning-curve frame {name!r}")
    frame = frame.copy()
    R = len(replicate_labels)
    frame["curve"] = frame["d"].astype(int) * R + frame["r"].astype(int)
    return LCData(name, frame.reset_index(drop=True), tuple(task_labels), tuple(replicate_labels), kind)


def _gene_expression(name: str):
    if name not in LC_DATASETS:
        raise ValueError(f"unknown learning-curve dataset {name!r}; choose one of {sorted(LC_DATASETS)}")
    rel, suffix, kind = LC_DATASETS[name]
    path = data_dir("zeroshot_lc") / rel
    pdata = path.with_name(path.stem + suffix)
    return read_gene_expression(path, pdata), kind


def load_lc(name: str) -> LCData:
    """Load a bundled learning-curve dataset by name (see ``LC_DATASETS``).

    Bilingual files mark "no curve" (the source == target diagonal) with all-zero values;
    those curves are removed and the removal is logged with their labels.
    """
    df, kind = _gene_expression(name)
    tasks = list(dict.fromkeys(df["task"].tolist()))
    n_rep = int(df["replicate"].max()) + 1
    df["task"] = df["task"].astype(str).str.strip()
    tasks = list(dict.fromkeys(df["task"].tolist()))
    df = df.rename(columns={"replicate": "r"})
    df["d"] = df["task"].map({t: i for i, t in enumerate(tasks)}).astype(int)
    if kind in ("nanogpt", "nanogpt_small"):
        layers = NANOGPT_LAYERS if kind == "nanogpt" else _SMALL_LAYERS
        reps = tuple(str(v) for v in layers)
        df["n_embd"] = df["task"].astype(float).astype(int)
        df["n_layer"] = np.asarray(layers)[df["r"].to_numpy()]
    elif kind == "nanogpt_exch":
        reps = tuple(str(v) for v in NANOGPT_EMBD)
        df["n_layer"] = df["task"].astype(float).astype(int)
        df["n_embd"] = np.asarray(NANOGPT_EMBD)[df["r"].to_numpy()]
    elif kind == "bilingual":
        reps = _LANGS[:n_rep]
    elif kind == "multilingual":
        lang = name.split("_")[-1]
        reps = tuple(l for l in _LANGS if l != lang)[:n_rep]
    else:
        reps = tuple(str(i) for i in range(n_rep))
    df["replicate"] = np.asarray(reps, dtype=object)[df["r"].to_numpy()]
    if kind == "bilingual":
        zero = df.groupby(["d", "r"])["value"].transform(lambda v: bool(np.all(v == 0.0)))
        gone = df.loc[zero.astype(bool), ["task", "replicate"]].drop_duplicates()
        if len(gone):
            log.info("%s: removed %d empty (all-zero) curves: %s", name, len(gone),
                     ", ".join(f"{a}/{b}" for a, b in gone.itertuples(index=False)))
        df = df.loc[~zero.astype(bool)]
    nan = ~np.isfinite(df["value"].to_numpy())
    if nan.any():
        raise ValueError(f"{name}: {int(nan.sum())} non-finite values in column 'value' "
                         f"(first rows {np.flatnonzero(nan)[:5].tolist()}); fix or drop them before fitting")
    return from_frame(name, df, tasks, reps, kind)
