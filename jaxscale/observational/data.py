"""Loaders for the bundled ObsScaling tables (Ruan et al. 2024, commit 4d6e1e4)."""
from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pandas as pd

from .constants import (
    EVALUATED_FAMILIES,
    FAMILIES_WITH_FLOPS,
    FAMILY,
    PREREGISTERED_MODELS,
)
from .constants import FLOPS, SIZE  # noqa: F401  (the tables' columns, also read as data.FLOPS, data.SIZE)

__all__ = [
    "obscaling_dir",
    "read_table",
    "base_models",
    "instruct_models",
    "core_models",
    "merge_target",
]


def obscaling_dir() -> Path:
    """Folder of the bundled CSVs (``jaxscale.data.data_dir('obscaling')``)."""
    from jaxscale.data import data_dir

    return Path(data_dir("obscaling"))


@functools.lru_cache(maxsize=None)
def _read(name: str) -> pd.DataFrame:
    return pd.read_csv(obscaling_dir() / f"{name}.csv")


def read_table(name: str) -> pd.DataFrame:
    """A copy of one bundled CSV by stem, e.g. ``base_llm_benchmark_eval``."""
    return _read(name).copy()


def base_models(families=EVALUATED_FAMILIES, include_prereg: bool = False) -> pd.DataFrame:
    """Base-model benchmark table restricted to ``families``; pre-registered models flagged."""
    df = read_table("base_llm_benchmark_eval")
    df = df[df[FAMILY].isin(families)].copy()
    df["prereg"] = df["Model"].isin(PREREGISTERED_MODELS)
    if not include_prereg:
        df = df[~df["prereg"]]
    return df.reset_index(drop=True)


def core_models() -> pd.DataFrame:
    """The paper's 77-model core set (21 families)."""
    return base_models(EVALUATED_FAMILIES, include_prereg=False)


def instruct_models() -> pd.DataFrame:
    """The 27 instruct / proprietary models (Table B.2)."""
    df = read_table("instruct_llm_benchmark_eval")
    df["prereg"] = False
    return df


def merge_target(bench: pd.DataFrame, table: str, column: str, lo: float = 0.0,
                 hi: float = 1.0) -> pd.DataFrame:
    """Join a target column (min–max normalised to ``(raw - lo)/(hi - lo)``) on ``Model``.

    Rows whose target is missing are dropped (as the original loader does).
    """
    tgt = read_table(table)
    if column not in tgt.columns:
        raise ValueError(f"target column {column!r} not in {table}.csv; available: "
                         f"{[c for c in tgt.columns if c != 'Model'][:12]}...")
    df = bench.merge(tgt[["Model", column]], on="Model", how="inner")
    df = df[np.isfinite(df[column].to_numpy(float))].copy()
    df["y"] = (df[column].to_numpy(float) - lo) / (hi - lo)
    return df.reset_index(drop=True)


def with_flops_families(df: pd.DataFrame) -> pd.DataFrame:
    """Restrict to the 'families with FLOPs' filter (emergent and LB-v2 figures)."""
    return df[df[FAMILY].isin(FAMILIES_WITH_FLOPS)].reset_index(drop=True)


__all__.append("with_flops_families")
