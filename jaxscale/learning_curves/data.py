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
from jaxscale.data.validate import _rows
from jaxscale.learning_curves.spec import LC_DATASETS
from jaxscale.learning_curves.spec import MULTILINGUAL_LANGS as _LANGS

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


def _check_labels(labels, name: str, what: str) -> tuple:
    labels = tuple(labels)
    if not labels:
        raise ValueError(f"{what}: {name} is empty; give one label per index")
    seen, dup = set(), []
    for lab in labels:
        if lab in seen:
            dup.append(lab)
        seen.add(lab)
    if dup:
        raise ValueError(f"{what}: {name} has duplicate label(s) {dup[:5]}; labels must be unique (two indices "
                         "with one label would merge their curves in every report)")
    return labels


def _check_index(frame: pd.DataFrame, col: str, labels: tuple, role: str, what: str) -> None:
    """Integer index column ``col`` in ``0 .. len(labels) - 1`` (no truncation, no clamping, no collision)."""
    v = pd.to_numeric(frame[col]).to_numpy(float)
    frac = v != np.round(v)
    if frac.any():
        raise ValueError(f"{what}: column {col!r} has {int(frac.sum())} non-integer value(s) at rows "
                         f"{_rows(frame.index[frac])} (first: {float(v[frac][0]):g}); {col!r} is an integer {role} "
                         f"index 0..{len(labels) - 1} and a fraction would be truncated. Fix the index column")
    n = len(labels)
    out = (v < 0) | (v >= n)
    if out.any():
        raise ValueError(f"{what}: column {col!r} has {int(out.sum())} value(s) outside 0..{n - 1} at rows "
                         f"{_rows(frame.index[out])} (first: {int(v[out][0])}); the {n} {role} label(s) "
                         f"{list(labels)[:10]} take the indices 0..{n - 1}, and an index outside them would give "
                         f"a curve id that collides with another curve or is clamped. Give {role}_labels one "
                         "label per index, or fix the index")


def from_frame(name: str, frame: pd.DataFrame, task_labels, replicate_labels, kind: str = "custom") -> LCData:
    """Wrap a tidy frame with integer columns ``d``, ``r``, ``point`` and float ``x``, ``value``.

    Raises:
      ValueError: naming the column, the count and the first rows (frame index) and the fix: an
        empty frame, missing columns, non-finite values, task / replicate indices that are not
        integers or lie outside the label lists (they would give colliding curve ids), duplicate
        or empty label lists, a negative or fractional ``point``, two rows at the same
        (d, r, x) or (d, r, point), or ``task`` / ``replicate`` label columns that disagree with
        the label lists.
    """
    from jaxscale.data.validate import check_finite, require_columns

    what = f"learning-curve frame {name!r}"
    if not isinstance(frame, pd.DataFrame):
        raise ValueError(f"{what}: expected a pandas DataFrame, got {type(frame).__name__}")
    if len(frame) == 0:
        raise ValueError(f"{what}: the frame has no rows; give one row per logged point of a curve")
    require_columns(frame, ["d", "r", "point", "x", "value"], what)
    check_finite(frame, ["d", "r", "point", "x", "value"], what)
    task_labels = _check_labels(task_labels, "task_labels", what)
    replicate_labels = _check_labels(replicate_labels, "replicate_labels", what)
    _check_index(frame, "d", task_labels, "task", what)
    _check_index(frame, "r", replicate_labels, "replicate", what)
    pt = pd.to_numeric(frame["point"]).to_numpy(float)
    bad = (pt < 0) | (pt != np.round(pt))
    if bad.any():
        raise ValueError(f"{what}: column 'point' has {int(bad.sum())} negative or fractional value(s) at rows "
                         f"{_rows(frame.index[bad])}; 'point' is the 0-based position along the curve")
    for keys in (["d", "r", "x"], ["d", "r", "point"]):
        dup = frame.duplicated(subset=keys, keep=False).to_numpy()
        if dup.any():
            raise ValueError(f"{what}: {int(dup.sum())} rows share the same {keys} at rows {_rows(frame.index[dup])}; "
                             "a curve has one value per point (duplicates would be counted twice). Remove or "
                             "average them first")
    for col, labels in (("task", task_labels), ("replicate", replicate_labels)):
        if col in frame.columns:
            code = frame["d" if col == "task" else "r"].to_numpy(float).astype(int)
            want = np.asarray([str(labels[c]).strip() for c in code], dtype=object)
            got = frame[col].astype(str).str.strip().to_numpy(dtype=object)
            off = want != got
            if off.any():
                i = int(np.flatnonzero(off)[0])
                raise ValueError(f"{what}: column {col!r} disagrees with the label list at {int(off.sum())} rows "
                                 f"{_rows(frame.index[off])} (first: {got[i]!r}, but index {code[i]} is labelled "
                                 f"{want[i]!r}); fix the labels or the index column")
    frame = frame.copy()
    R = len(replicate_labels)
    frame["d"] = frame["d"].to_numpy(float).astype(int)
    frame["r"] = frame["r"].to_numpy(float).astype(int)
    frame["point"] = pt.astype(int)
    frame["curve"] = frame["d"] * R + frame["r"]
    return LCData(name, frame.reset_index(drop=True), task_labels, replicate_labels, kind)


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
