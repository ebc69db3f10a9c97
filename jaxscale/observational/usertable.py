"""Bring your own benchmark table: validate a CSV and turn it into a prepared task."""
from __future__ import annotations

import numpy as np
import pandas as pd

from jaxscale.data import validate

from . import data as _data
from .splits import cutoff_split, rank_top_split
from .tasks import Prepared, TaskSpec

__all__ = ["prepare_user_table", "read_user_csv"]


def read_user_csv(path) -> pd.DataFrame:
    """Read a CSV (one row per model) with a clear error when it is missing or empty."""
    try:
        df = pd.read_csv(path)
    except FileNotFoundError as e:
        raise ValueError(f"--csv: file {str(path)!r} not found") from e
    except pd.errors.EmptyDataError as e:
        raise ValueError(f"--csv: file {str(path)!r} is empty") from e
    if df.empty:
        raise ValueError(f"--csv: file {str(path)!r} has a header but no rows")
    return df


def prepare_user_table(df: pd.DataFrame, target: str, metrics=None, *, lo: float = 0.0,
                       hi: float = 1.0, cutoff: float | None = None,
                       flops_col: str = _data.FLOPS, test_fraction: float | None = None,
                       floor: bool = True, ref_family: str = "Llama-2", k: int = 3,
                       model_col: str = "Model", family_col: str = _data.FAMILY) -> Prepared:
    """Validate a user table and build a :class:`Prepared` task.

    Benchmarks (``metrics``; default: the base-model metrics present) must be accuracies in [0, 1];
    missing cells are imputed. The target must be present on every row and lie in ``[lo, hi]``.
    Split: ``cutoff`` on ``flops_col`` (missing FLOPs -> test), else the top ``test_fraction``
    by target go to test (default 0.1).
    """
    what = "--csv table"
    df = df.copy().reset_index(drop=True)
    validate.require_columns(df, [target], what)
    if metrics is None:
        from .constants import BASE_METRICS

        metrics = [m for m in BASE_METRICS if m in df.columns]
        if len(metrics) < 2:
            raise ValueError(f"{what}: found {len(metrics)} of the default benchmark columns "
                             f"{list(BASE_METRICS)}; pass --metrics col1,col2,... (>= 2 columns)")
    metrics = list(metrics)
    validate.require_columns(df, metrics, what)
    if target in metrics:
        raise ValueError(f"{what}: target column {target!r} is also listed as a benchmark; "
                         "remove it from --metrics")
    validate.check_numeric(df, metrics, what)
    validate.check_finite(df, [target], what)
    validate.check_range(df, target, lo, hi, what)
    B = df[metrics].apply(pd.to_numeric).to_numpy(float)
    bad = np.isfinite(B) & ((B < 0) | (B > 1))
    if bad.any():
        r, c = np.argwhere(bad)[0]
        raise ValueError(f"{what}: benchmark column {metrics[c]!r} has {int(bad[:, c].sum())} "
                         f"value(s) outside [0, 1] (first at row {r}: {B[r, c]!r}); "
                         "give accuracies as fractions (percentages / 100)")
    empty = [m for j, m in enumerate(metrics) if np.isfinite(B[:, j]).sum() < 2]
    if empty:
        raise ValueError(f"{what}: benchmark column(s) {empty} have fewer than 2 values")
    if model_col not in df.columns:
        df[model_col] = [f"row{i}" for i in range(len(df))]
    if family_col not in df.columns:
        df[family_col] = "user"
    df[metrics] = B
    df["y"] = (df[target].to_numpy(float) - lo) / (hi - lo)
    df["prereg"] = False
    if cutoff is not None:
        validate.require_columns(df, [flops_col], what)
        validate.check_numeric(df, [flops_col], what)
        df[flops_col] = pd.to_numeric(df[flops_col])
        train = cutoff_split(df, flops_col, cutoff)
        split, value = "cutoff", float(cutoff)
    else:
        q = 0.1 if test_fraction is None else float(test_fraction)
        if not 0 < q < 1:
            raise ValueError(f"--test-frac must be in (0, 1), got {q}")
        train = rank_top_split(df["y"].to_numpy(float), q)
        split, value = "rank_top", q
        if flops_col not in df.columns:
            df[flops_col] = np.nan
    if train.sum() < 3 + k:
        raise ValueError(f"{what}: the split leaves {int(train.sum())} training rows; need at least "
                         f"{3 + k} (K = {k} PCs + intercept + floor); raise --cutoff or lower --test-frac")
    if (~train).sum() < 1:
        raise ValueError(f"{what}: the split leaves no test rows; lower --cutoff or raise --test-frac")
    if k > len(metrics):
        raise ValueError(f"--k {k} exceeds the number of benchmark columns ({len(metrics)})")
    spec = TaskSpec("user", "user table", "user", target, lo, hi, universe="user",
                    metrics=tuple(metrics), split=split, split_value=value, floor=floor,
                    ref_family=ref_family, k=k, y_range=(0.0, 1.0))  # target validated to [lo, hi]
    return Prepared(spec, df, train)
