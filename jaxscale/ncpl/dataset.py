"""NCPL run tables: loading, validation, the official split keys, metrics on the loss scale.

Data: ``ncpl_runs.csv`` (5,086 Marin + StepLaw runs), ``ncpl_curves.csv.gz`` and the split-key
JSONs of the NCPL repo (see ``jaxscale/data/bundled/ncpl/SOURCE.md``). ``ID`` = ``in_val`` (held-out
whole cells of the <=430M models), ``OOD`` = ``ood_val`` (all runs of models > 430M params).
The regression target is the residual over the per-source Chinchilla law ``chinchilla_ncpl``.
"""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from jaxscale.data.validate import check_finite, require_columns

__all__ = [
    "SOURCES",
    "SPLITS",
    "ncpl_dir",
    "require_columns",
    "load_runs",
    "load_curves",
    "split_keys",
    "select",
    "GROUP_COLS",
    "cell_codes",
    "held_cells",
    "carve_validation",
    "regression_metrics",
]

SOURCES = ("marin", "steplaw")
SPLITS = {"train": "train", "id": "in_val", "ood": "ood_val"}
_REQUIRED = [
    "run_id", "source", "ncpl_name", "ncpl_split", "optimizer", "lr", "weight_decay", "beta1",
    "beta2", "eps", "grad_clip", "lr_schedule", "warmup_steps", "total_steps", "final_lr_ratio",
    "n_layers", "d_model", "n_heads", "d_ff", "N_million", "batch_seqs", "seq_len", "D_billion",
    "final_loss", "chinchilla_ncpl", "residual_ncpl",
]


def ncpl_dir() -> Path:
    """Folder of the bundled NCPL files (``jaxscale/data/bundled/ncpl``)."""
    from jaxscale.data import data_dir

    return Path(data_dir("ncpl"))


@lru_cache(maxsize=2)
def _load_runs_cached(path: str) -> pd.DataFrame:
    return pd.read_csv(path)


def load_runs(path: str | Path | None = None) -> pd.DataFrame:
    """``ncpl_runs.csv`` validated (required columns, finite targets, known sources/splits)."""
    path = Path(path) if path is not None else ncpl_dir() / "ncpl_runs.csv"
    if not path.exists():
        raise ValueError(f"{path} does not exist; expected the bundled ncpl_runs.csv")
    df = _load_runs_cached(str(path)).copy()
    what = path.name
    require_columns(df, _REQUIRED, what)
    check_finite(df, ["final_loss", "chinchilla_ncpl", "residual_ncpl", "N_million", "D_billion", "lr"], what)
    bad = ~df["source"].isin(SOURCES)
    if bad.any():
        raise ValueError(f"{what}: unknown source values {sorted(set(df.source[bad]))[:5]}; allowed {SOURCES}")
    bad = ~df["ncpl_split"].isin(list(SPLITS.values()))
    if bad.any():
        raise ValueError(f"{what}: unknown ncpl_split values at rows {np.flatnonzero(bad)[:5].tolist()}")
    if df["run_id"].duplicated().any():
        raise ValueError(f"{what}: duplicated run_id e.g. {df.run_id[df.run_id.duplicated()].iloc[0]!r}")
    return df


@lru_cache(maxsize=1)
def load_curves(path: str | None = None) -> pd.DataFrame:
    """``ncpl_curves.csv.gz`` (``run_id, step, loss``), validated finite."""
    p = Path(path) if path else ncpl_dir() / "ncpl_curves.csv.gz"
    df = pd.read_csv(p)
    require_columns(df, ["run_id", "step", "loss"], p.name)
    check_finite(df, ["step", "loss"], p.name)
    return df


@lru_cache(maxsize=2)
def split_keys(source: str) -> dict:
    """The official NCPL split keys ``{train, in_val, ood_val}`` (run names) of one source."""
    if source not in SOURCES:
        raise ValueError(f"source must be one of {SOURCES}, got {source!r}")
    return json.loads((ncpl_dir() / f"ncpl_split_keys_{source}.json").read_text())


def select(df: pd.DataFrame, source: str, split: str) -> pd.DataFrame:
    """Rows of one source in one split (``train`` | ``id`` | ``ood``), keyed by the official JSONs.

    The membership is taken from ``ncpl_split_keys_<source>.json`` (not only the CSV column) and
    cross-checked against ``ncpl_split``.
    """
    if source not in SOURCES:
        raise ValueError(f"source must be one of {SOURCES}, got {source!r}")
    if split not in SPLITS:
        raise ValueError(f"split must be one of {list(SPLITS)}, got {split!r}")
    names = set(split_keys(source)[SPLITS[split]])
    sub = df[(df["source"] == source) & df["ncpl_name"].isin(names)]
    if not (sub["ncpl_split"] == SPLITS[split]).all():
        raise ValueError(f"{source}/{split}: ncpl_split column disagrees with the split-key JSON")
    return sub


#: Columns whose combinations are the held-out cells of the bundled runs' validation set.
GROUP_COLS = ("source", "optimizer", "N_million", "D_billion")


def cell_codes(df: pd.DataFrame, group_cols=None) -> np.ndarray:
    """Integer cell of every row: the sorted unique combinations of ``group_cols`` (as text).

    ``group_cols=None`` uses those of :data:`GROUP_COLS` the table has; with none of them (or an
    empty list) every row is its own cell.
    """
    cols = list(GROUP_COLS) if group_cols is None else list(group_cols)
    missing = [c for c in cols if c not in df.columns]
    if group_cols is not None and missing:
        require_columns(df, cols, "validation cells (group_cols)")
    cols = [c for c in cols if c in df.columns]
    if not cols:
        return np.arange(len(df), dtype=np.int32)
    cells = df[cols].astype(str).agg("|".join, axis=1).to_numpy()
    return np.unique(cells, return_inverse=True)[1].astype(np.int32).reshape(-1)


def held_cells(key, group, frac: float) -> np.ndarray:
    """Validation mask from cell codes: each cell is held out with probability ``frac``
    (one uniform draw per cell code); at least one cell is always held out."""
    import jax

    if not 0.0 < frac < 1.0:
        raise ValueError(f"val_frac must be in (0, 1), got {frac}")
    group = np.asarray(group)
    u = np.asarray(jax.random.uniform(key, (int(group.max()) + 1,)))
    codes = np.unique(group)
    held = np.zeros(u.shape, bool)
    held[codes] = u[codes] < frac
    if not held.any():
        held[codes[int(np.argmin(u[codes]))]] = True
    return held[group]


def carve_validation(key, df: pd.DataFrame, frac: float = 0.15, group_cols=None) -> np.ndarray:
    """Boolean mask of a validation subset of (TRAIN) rows, holding out whole cells.

    Cells default to (source, optimizer, N, D) as in the official ID split, so the carved
    set tests interpolation to unseen sweeps; never use ID/OOD rows for model selection.
    A table without those columns holds out random rows.
    """
    return held_cells(key, cell_codes(df, group_cols), frac)


def regression_metrics(y, pred, lo=None, hi=None) -> dict:
    """MAE, RMSE, Spearman rho on the loss scale (+ 90% interval coverage when bounds given)."""
    from jaxscale import metrics

    y, pred = np.asarray(y, float), np.asarray(pred, float)
    if y.shape != pred.shape:
        raise ValueError(f"targets {y.shape} and predictions {pred.shape} differ in shape")
    if not np.all(np.isfinite(pred)):
        raise ValueError(f"{int((~np.isfinite(pred)).sum())} non-finite predictions")
    out = {
        "n": int(y.size),
        "mae": float(np.mean(np.abs(pred - y))),
        "rmse": float(np.sqrt(np.mean(np.square(pred - y)))),
        "spearman": metrics.spearman(y, pred) if y.size > 2 else float("nan"),
    }
    if lo is not None and hi is not None:
        # fraction inside [lo, hi] in float64 (the shared interval_coverage averages in float32)
        out["coverage_90"] = float(np.mean((y >= np.asarray(lo, float)) & (y <= np.asarray(hi, float))))
    return out
