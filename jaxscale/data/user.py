"""Readers for users' own run tables."""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import pandas as pd

from jaxscale.data import validate as V

__all__ = ["read_runs_csv"]


def read_runs_csv(
    path,
    columns: Mapping[str, str],
    positive: Sequence[str] = (),
    key: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Read a user's CSV, rename ``columns`` (``{canonical: user_column}``) and validate.

    Every canonical column must be numeric and finite; those in ``positive`` must be > 0;
    ``key`` columns (default: all canonical columns) must be unique.

    Raises:
      ValueError: naming the file, column, count, first rows and the fix.
    """
    path = Path(path)
    if not path.exists():
        raise ValueError(f"CSV file {str(path)!r} does not exist")
    try:
        df = pd.read_csv(path)
    except Exception as exc:  # parser errors become ValueErrors naming the file
        raise ValueError(f"could not parse {str(path)!r} as CSV: {exc}") from exc
    what = f"{path.name}"
    V.require_columns(df, list(columns.values()), what)
    out = pd.DataFrame({canon: df[col] for canon, col in columns.items()})
    # report with the user's column names, 1-based data-row numbers as in a spreadsheet
    named = out.rename(columns={c: f"{columns[c]}" for c in out.columns})
    named.index = named.index + 2
    names = list(named.columns)
    V.check_finite(named, names, what + " (row numbers are file lines)")
    V.check_positive(named, [columns[c] for c in positive], what + " (row numbers are file lines)")
    V.check_unique(named, [columns[c] for c in (key or columns)], what + " (row numbers are file lines)")
    return out.astype(float)
