"""Readers for users' own run tables."""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import pandas as pd

from jaxscale.data import validate as V
from jaxscale.data.table import read_table

__all__ = ["read_runs_csv"]


def read_runs_csv(
    path,
    columns: Mapping[str, str],
    positive: Sequence[str] = (),
    key: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Read a user's table (:func:`jaxscale.data.read_table`: CSV, TSV, Parquet or JSON), rename ``columns``
    (``{canonical: user_column}``) and validate.

    Every canonical column must be numeric and finite; those in ``positive`` must be > 0;
    ``key`` columns (default: all canonical columns) must be unique.

    Raises:
      ValueError: naming the file, column, count, first rows and the fix.
    """
    df = read_table(path)  # indexed by file line, as the messages below report
    what = Path(path).name
    V.require_columns(df, list(columns.values()), what)
    out = pd.DataFrame({canon: df[col] for canon, col in columns.items()})
    # report with the user's column names
    named = out.rename(columns={c: f"{columns[c]}" for c in out.columns})
    names = list(named.columns)
    V.check_finite(named, names, what + " (row numbers are file lines)")
    V.check_positive(named, [columns[c] for c in positive], what + " (row numbers are file lines)")
    V.check_unique(named, [columns[c] for c in (key or columns)], what + " (row numbers are file lines)")
    return out.astype(float).reset_index(drop=True)
