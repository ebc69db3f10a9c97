"""Input validation for tables: every check names the column, the count, the first offending
rows and the fix, and raises ``ValueError``. Nothing is ever dropped silently.
"""
from __future__ import annotations

import re
import warnings
from typing import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

__all__ = [
    "require_columns",
    "tokens_from_compute_hint",
    "check_numeric",
    "check_finite",
    "check_positive",
    "check_range",
    "check_unique",
    "check_categories",
    "check_shapes",
    "check_min_distinct",
    "check_constant_within",
    "warn_far_above",
]

_SHOW = 5


def _where_name(column: str) -> str:
    """``column`` as a pandas query (``--where``) names it: back-quoted unless an identifier."""
    return column if column.isidentifier() else f"`{column}`"


def _rows(index: Iterable) -> str:
    index = list(index)
    shown = ", ".join(str(i) for i in index[:_SHOW])
    more = f" (+{len(index) - _SHOW} more)" if len(index) > _SHOW else ""
    return f"[{shown}]{more}"


def require_columns(df: pd.DataFrame, columns: Sequence[str], what: str = "table",
                    options: Mapping[str, str] | None = None) -> None:
    """Raise if any of ``columns`` is missing, listing the columns that are present. The fix for a
    ``what`` that names a query (rows given to a fitted model's ``predict``) is to rename the
    query's columns: the model reads the names it was fitted with, and no option maps them.

    ``options`` maps a column to the text that says which option names it, e.g.
    ``{"loss": "(final loss): --loss-col NAME (loss_col=...)"}``: the message then names, for each
    missing column that has one, the option to pass (the column's role and its CLI flag and
    Python keyword); without it the fix is the generic "pass the right column names"."""
    missing = [c for c in columns if c not in df.columns]
    if missing:
        says = [f"{c!r} {options[c]}" for c in missing if options and c in options]
        if "query" in what:
            fix = "A fitted model reads the columns it was fitted with: rename (or add) these columns of the query"
        elif says:
            fix = f"Rename your columns, or pass the names of yours: {'; '.join(says)}."
        else:
            fix = "Rename your columns or pass the right column names."
        present = [c for c in df.columns if not (str(c).startswith("__") and str(c).endswith("__"))]  # ours
        raise ValueError(f"{what}: missing column(s) {missing}; present columns are {present}. {fix}")


def tokens_from_compute_hint(df: pd.DataFrame, n_col: str, d_col: str, what: str = "table") -> None:
    """Raise, with the fix, when the token column ``d_col`` is missing but a numeric column looks like
    training compute (its name says FLOP or compute): laws in N and D need tokens, and ``C = 6 N D``
    gives them. Returns without a word otherwise (the caller's column check names what is missing)."""
    if d_col in df.columns or n_col not in df.columns:
        return
    compute = [c for c in df.columns if re.search(r"flop|compute", str(c), re.IGNORECASE)
               and pd.api.types.is_numeric_dtype(df[c])]
    if compute:
        c = compute[0]
        raise ValueError(
            f"{what}: missing column {d_col!r} (training tokens D); present columns are {list(df.columns)}. "
            f"Column {c!r} looks like training compute: the law is fitted on N and D, so add the tokens as "
            f"D = C / (6 N), e.g. in pandas df['D'] = df[{c!r}] / (6 * df[{n_col!r}]), and pass --d-col D "
            "(d_col='D')")


def check_numeric(df: pd.DataFrame, columns: Sequence[str], what: str = "table") -> None:
    """Raise if a column holds values that are not numbers (e.g. text such as '1.2B')."""
    require_columns(df, columns, what)
    for c in columns:
        coerced = pd.to_numeric(df[c], errors="coerce")
        bad = coerced.isna() & df[c].notna()
        if bad.any():
            text = df.loc[bad, c].astype(str).str.strip()
            fix = "write plain numbers (1.2e9, not '1.2B')."
            if text.str.fullmatch(r"[-+]?\d{1,3}(,\d{3})+(\.\d*)?").all():  # thousands separators
                fix = (f"write them without thousands separators (251068939, not '251,068,939'), e.g. in pandas "
                       f"df[{c!r}] = df[{c!r}].str.replace(',', '').astype(float); or read the file with "
                       "pd.read_csv(path, thousands=',') and save it again.")
            raise ValueError(
                f"{what}: column {c!r} has {int(bad.sum())} non-numeric value(s) at rows "
                f"{_rows(df.index[bad])} (e.g. {df.loc[bad, c].iloc[0]!r}); {fix}"
            )


def check_finite(df: pd.DataFrame, columns: Sequence[str], what: str = "table") -> None:
    """Raise on NaN / missing / +-inf values in ``columns``: one error for every such column, with a
    ``--where`` that leaves out the missing cells of all of them at once and how many rows it leaves out."""
    check_numeric(df, columns, what)
    found, missing, flagged, bad_rows = [], [], [], np.zeros(len(df), dtype=bool)
    for c in dict.fromkeys(columns):
        values = pd.to_numeric(df[c], errors="coerce").to_numpy(dtype=float)
        bad = ~np.isfinite(values)
        if not bad.any():
            continue
        kinds = []
        if np.isnan(values).any():
            kinds.append(f"{int(np.isnan(values).sum())} NaN/missing")
        if np.isinf(values).any():
            kinds.append(f"{int(np.isinf(values).sum())} infinite")
        else:
            missing.append(c)
        found.append(f"column {c!r} has {int(bad.sum())} non-finite value(s) ({', '.join(kinds)}) at rows "
                     f"{_rows(df.index[bad])}")
        flagged.append(c)
        bad_rows |= bad
    if not found:
        return
    fix = "fill or remove these rows explicitly before fitting"
    # an infinite value (a step that diverged) is not missing: notna() would keep it, a comparison does not
    where = " and ".join(f"{_where_name(c)}.notna()" if c in missing else f"abs({_where_name(c)}) < inf"
                         for c in flagged)
    fix += (f" (e.g. --where \"{where}\", which leaves out {int(bad_rows.sum())} of {len(df)} rows; with a --where "
            "of your own, join the two with 'and')")
    raise ValueError(f"{what}: " + "; ".join(found) + f"; {fix}.")


def check_no_inf(df: pd.DataFrame, columns: Sequence[str], what: str = "table") -> None:
    """Raise on +-inf values in ``columns`` (missing values are allowed: rows still to predict): a
    loss of inf is a run that diverged, which no law predicts and no score can compare with."""
    for c in columns:
        values = pd.to_numeric(df[c], errors="coerce").to_numpy(dtype=float)
        bad = np.isinf(values)
        if bad.any():
            raise ValueError(f"{what}: column {c!r} has {int(bad.sum())} infinite value(s) at rows "
                             f"{_rows(df.index[bad])} (a step that diverged?); neither a fit nor a score can use "
                             f"them: leave those rows out, e.g. --where \"abs({_where_name(c)}) < inf or "
                             f"{_where_name(c)}.isna()\" (rows still to predict keep an empty value)")


def check_positive(df: pd.DataFrame, columns: Sequence[str], what: str = "table", *, steps: bool = False) -> None:
    """Raise on zero or negative values (laws take logs of N, D, C). ``steps``: the columns are
    training steps, where a 0 is the logged loss before training rather than an unknown value."""
    check_finite(df, columns, what)
    for c in columns:
        values = pd.to_numeric(df[c]).to_numpy(dtype=float)
        bad = values <= 0
        if bad.any():
            where = f"--where \"{_where_name(c)} > 0\""
            if steps and (values[bad] == 0).all():
                fix = (f"A step of 0 is the loss before any training: it has no logarithm and lies off every "
                       f"power law in the step, so leave those rows out ({where}; with a --where of your own, "
                       f"join the two with 'and').")
            else:
                fix = f"If 0 means 'unknown', remove those rows explicitly (e.g. {where})."
            raise ValueError(
                f"{what}: column {c!r} has {int(bad.sum())} non-positive value(s) at rows "
                f"{_rows(df.index[bad])} (first: {float(values[bad][0]):g}); the law takes logarithms, "
                f"so values must be > 0. {fix}"
            )


def check_range(
    df: pd.DataFrame, column: str, lo: float, hi: float, what: str = "table", fix: str | None = None
) -> None:
    """Raise on values outside ``[lo, hi]`` (e.g. accuracies outside [0, 1]); ``fix``: the advice
    that ends the message (default: rescale, e.g. percentages / 100)."""
    check_finite(df, [column], what)
    values = pd.to_numeric(df[column]).to_numpy(dtype=float)
    bad = (values < lo) | (values > hi)
    if bad.any():
        raise ValueError(
            f"{what}: column {column!r} has {int(bad.sum())} value(s) outside [{lo}, {hi}] at rows "
            f"{_rows(df.index[bad])} (first: {float(values[bad][0]):g}); "
            + (fix or f"rescale to [{lo}, {hi}] (e.g. percentages / 100).")
        )


def check_unique(df: pd.DataFrame, columns: Sequence[str], what: str = "table") -> None:
    """Raise on duplicated keys: duplicates would be double-weighted in a fit."""
    require_columns(df, columns, what)
    dup = df.duplicated(subset=list(columns), keep=False)
    if dup.any():
        raise ValueError(
            f"{what}: {int(dup.sum())} rows share the same {list(columns)} at rows "
            f"{_rows(df.index[dup])}; duplicates would be counted twice. Remove them or "
            "aggregate them (e.g. df.groupby(keys).mean()) first."
        )


def check_categories(
    df: pd.DataFrame, column: str, allowed: Iterable, what: str = "table"
) -> None:
    """Raise when ``column`` holds values outside the known set ``allowed``."""
    require_columns(df, [column], what)
    allowed = list(allowed)
    bad = ~df[column].isin(allowed)
    if bad.any():
        unknown = sorted(map(str, pd.unique(df.loc[bad, column])))
        raise ValueError(
            f"{what}: column {column!r} has {int(bad.sum())} row(s) with unknown value(s) "
            f"{unknown[:_SHOW]} at rows {_rows(df.index[bad])}; known values are "
            f"{sorted(map(str, allowed))[:20]}. Fix the spelling or add the category to the training data."
        )


def check_shapes(what: str = "inputs", **arrays: Mapping) -> None:
    """Raise unless every array has the same leading length, printing every shape."""
    shapes = {k: tuple(np.shape(v)) for k, v in arrays.items()}
    lengths = {k: (s[0] if s else None) for k, s in shapes.items()}
    if len(set(lengths.values())) > 1:
        desc = ", ".join(f"{k}.shape={s}" for k, s in shapes.items())
        raise ValueError(f"{what}: arrays must have the same length; got {desc}.")


def check_min_distinct(
    df: pd.DataFrame, column: str, minimum: int, what: str = "table", why: str = ""
) -> None:
    """Raise when ``column`` has fewer than ``minimum`` distinct values (underdetermined fit)."""
    n = int(df[column].nunique())
    if n < minimum:
        raise ValueError(
            f"{what}: underdetermined: need >= {minimum} distinct values of {column!r}, have {n}"
            + (f" ({why})" if why else "")
            + ". Add runs that vary it, or fix the corresponding exponent."
        )


def check_constant_within(df: pd.DataFrame, by: Sequence[str], columns: Sequence[str], what: str = "table",
                          unit: str = "run", kind: str = "column") -> None:
    """Raise when a column takes several values within one group of ``by`` (one ``unit``: a run, a
    curve), naming the first such group, its rows and how many groups differ. For the columns that
    describe a whole run (its size, depth, learning rate), logged on each of its rows."""
    by = list(by)
    for c in columns:
        moves = (df.groupby(by, sort=False)[c].transform("nunique") > 1).to_numpy()
        if moves.any():
            first = df.loc[moves, by].iloc[0]
            group = np.all([(df[b] == first[b]).to_numpy() for b in by], axis=0)
            key = ", ".join(f"{b!r} = {first[b]!r}" for b in by)
            n = len(df.loc[moves, by].drop_duplicates())
            raise ValueError(
                f"{what}: {kind} {c!r} changes along the {unit} {key} (rows {_rows(df.index[group])}; "
                f"{n} {unit}(s) in all); it describes the whole {unit} (its size, depth, ...): give one value "
                f"per {unit}"
            )


def warn_far_above(df: pd.DataFrame, column: str, what: str = "table", k: float = 20.0) -> None:
    """Warn (not refuse: they may be real) when values of ``column`` lie more than ``k`` robust
    standard deviations (1.4826 x the median absolute deviation) above the median, e.g. the losses
    of diverged runs, naming the count, the rows and a ``--where`` that would leave them out. Needs
    at least 10 finite values."""
    v = pd.to_numeric(df[column], errors="coerce").to_numpy(float)
    ok = np.isfinite(v)
    if ok.sum() < 10:
        return
    med = float(np.median(v[ok]))
    mad = 1.4826 * float(np.median(np.abs(v[ok] - med)))
    high = ok & (v > med + k * mad) if mad > 0 else np.zeros_like(ok)
    if high.any():
        q1, q3 = np.percentile(v[ok], [25, 75])
        cut = med + k * mad
        warnings.warn(
            f"{what}: {int(high.sum())} value(s) of column {column!r} lie far above the rest (rows "
            f"{_rows(df.index[high])}; up to {float(v[high].max()):.4g}, while half of the values lie in "
            f"[{q1:.4g}, {q3:.4g}]): diverged runs? They pull every fit toward them. Keep them only if they are "
            f"real; otherwise leave them out (e.g. --where \"{_where_name(column)} < {cut:.3g}\")",
            UserWarning, stacklevel=3)
