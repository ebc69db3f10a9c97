"""Your own run tables: read a CSV / TSV / Parquet / JSON file, filter it, and mark held-out rows.

:func:`read_table` numbers rows by their **line in the file** (the header is line 1, so the first
data row is 2): every validator in :mod:`jaxscale.data.validate` reports the frame's index, so
error messages point at the lines a user sees in an editor. :func:`where` and
:func:`holdout_mask` keep that index, and so does :func:`thin` (at most ``k`` steps per run, for
models whose cost grows with the number of logged points).
"""
from __future__ import annotations

import shlex
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["read_table", "where", "thin", "holdout_mask", "wandb_long", "FILE_ROWS", "RUN_COL"]

#: Suffix of ``what`` strings when the index holds file lines (see :func:`read_table`).
FILE_ROWS = "row numbers are lines of the file"


def read_table(path, *, what: str | None = None) -> pd.DataFrame:
    """Read a CSV (``.csv``, ``.tsv``/``.txt`` tab-separated), Parquet (``.parquet``/``.pq``) or JSON file
    (``.jsonl``/``.ndjson``: one record per line; ``.json``: a list of records or pandas' ``to_json``).

    A text file whose header splits into one column on the expected separator but into several on
    another (``;``, tab, ``|`` or ``,``) is read with that one, and a file separated by other than
    commas with columns that hold only numbers with decimal commas (``3,14``: a spreadsheet saved in
    a locale that writes them) and none with decimal points is read with decimal commas; either is
    logged and kept in ``attrs["read_as"]``.

    The returned frame's index is the 1-based line number of each row in the file (header =
    line 1); for JSON lines, the line of the record; for Parquet and a ``.json`` file, the row
    number plus one (as if a header line preceded it). Rows are never dropped or reordered.

    A first column without a name that holds 0, 1, 2, ... (the index ``DataFrame.to_csv`` writes
    unless told ``index=False``, which pandas reads back as ``Unnamed: 0``) is not data: it is left
    out, logged, and named in ``attrs["index_column_dropped"]``.

    Raises:
      ValueError: the file is missing, empty, unreadable, or has no rows.
    """
    path = Path(path)
    what = what or path.name
    if not path.exists():
        raise ValueError(f"{what}: file {str(path)!r} does not exist")
    suffix = path.suffix.lower()
    try:
        if suffix in (".parquet", ".pq"):
            try:
                df = pd.read_parquet(path)
            except ImportError as exc:
                raise ValueError(f"{what}: reading Parquet needs pyarrow: pip install 'jaxscale[parquet]' "
                                 "(or save the table as CSV)") from exc
        elif suffix in (".json", ".jsonl", ".ndjson"):
            try:
                df = pd.read_json(path, lines=suffix != ".json", dtype=False)  # values as written: no dates
            except ValueError as exc:  # pandas' JSON errors are ValueErrors
                raise pd.errors.ParserError(str(exc)) from exc
        else:
            df = _read_delimited(path, "\t" if suffix in (".tsv", ".txt") else ",", what)
    except pd.errors.EmptyDataError as exc:
        raise ValueError(f"{what}: file {str(path)!r} is empty") from exc
    except UnicodeDecodeError as exc:  # a spreadsheet saved in a legacy encoding (latin-1, cp1252)
        raw = path.read_bytes()  # the reader's position is within its chunk: find the byte in the file
        try:
            raw.decode("utf-8")
            bad = exc
        except UnicodeDecodeError as whole:
            bad = whole
        line = raw[:bad.start].count(b"\n") + 1 if bad is not exc else "?"
        raise ValueError(f"{what}: {str(path)!r} is not UTF-8 text: byte {bad.object[bad.start:bad.start + 1]!r} "
                         f"on line {line} ({bad.reason}). Save it as UTF-8 (a spreadsheet's 'CSV UTF-8' format), or "
                         f"convert it, e.g. iconv -f latin1 -t utf-8 {shlex.quote(str(path))} > utf8.csv") from exc
    except (pd.errors.ParserError, OSError) as exc:
        raise ValueError(f"{what}: could not parse {str(path)!r}: {exc}") from exc
    if df.empty:
        raise ValueError(f"{what}: file {str(path)!r} has " + ("no records" if "json" in suffix else
                                                                "a header but no rows"))
    first = 1 if suffix in (".jsonl", ".ndjson") else 2
    df.index = pd.RangeIndex(first, len(df) + first)
    df.attrs["source"] = str(path)
    return _drop_written_index(df, what)


def _drop_written_index(df: pd.DataFrame, what: str) -> pd.DataFrame:
    """Leave out a first column ``Unnamed: 0`` holding 0, 1, 2, ... (a pandas index written to the file)."""
    col = df.columns[0]
    if str(col) != "Unnamed: 0" or df.shape[1] < 2 or not pd.api.types.is_integer_dtype(df[col]):
        return df
    if not np.array_equal(df[col].to_numpy(), np.arange(len(df))):
        return df
    attrs = dict(df.attrs)
    df = df.drop(columns=[col])
    df.attrs.update(attrs, index_column_dropped=str(col))
    from jaxscale._log import get_logger

    get_logger("jaxscale.data").info("%s: its first column has no name and holds 0, 1, 2, ... (the index pandas' "
                                     "to_csv writes unless told index=False): left out", what)
    return df


_SEPARATORS = (",", ";", "\t", "|")
_NAMES = {",": "commas", ";": "semicolons", "\t": "tabs", "|": "vertical bars"}
_DECIMAL_COMMA = r"^\s*[-+]?(?:\d+,\d*|,\d+)(?:[eE][-+]?\d+)?\s*$"


def _read_delimited(path: Path, sep: str, what: str) -> pd.DataFrame:
    """:func:`read_table` of a text file, with the separator (and decimal commas) it turns out to use."""
    df = pd.read_csv(path, sep=sep)
    notes = []
    if df.shape[1] == 1:
        header = str(df.columns[0])
        other = [s for s in _SEPARATORS if s != sep and s in header]
        if other:
            sep = max(other, key=header.count)
            df = pd.read_csv(path, sep=sep)
            notes.append(f"separated by {_NAMES[sep]}")
    if sep != ",":
        text = [c for c in df.columns if not pd.api.types.is_numeric_dtype(df[c]) and df[c].notna().any()]
        commas = [c for c in text if df[c].dropna().astype(str).str.match(_DECIMAL_COMMA).all()]
        points = [c for c in df.columns if df[c].dtype.kind == "f" and (df[c].dropna() % 1 != 0).any()]
        if commas and not points:  # no column already uses decimal points
            df = pd.read_csv(path, sep=sep, decimal=",")
            notes.append(f"with decimal commas (in {', '.join(map(repr, commas))})")
    if notes:
        df.attrs["read_as"] = " ".join(notes)
        from jaxscale._log import get_logger

        get_logger("jaxscale.data").info("%s: read as %s", what, df.attrs["read_as"])
    return df


#: Run column of the long table :func:`wandb_long` makes of a W&B chart export.
RUN_COL = "run"
_WANDB_SEP = " - "
_WANDB_BOUNDS = ("__MIN", "__MAX")


def wandb_long(df: pd.DataFrame) -> pd.DataFrame | None:
    """The long table (one row per run and logged step) of a W&B chart export, else ``None``.

    A chart's "Export CSV" is wide: the x-axis column (``Step``, ``_step``, ``global_step``...)
    first, then one column ``"<run> - <metric>"`` per run (and per metric of the chart), with
    ``"<run> - <metric>__MIN"`` / ``"__MAX"`` siblings (the bounds of W&B's down-sampling buckets,
    not data: left out). A cell is empty at a step its run did not log. The long table has a
    :data:`RUN_COL` column (the run names), the x-axis column under its own name, and one column
    per metric; rows where every metric is empty (steps a run did not log) are not rows of data
    and are left out, counted in ``attrs["wandb"]``. The index keeps each value's line in the file
    (several runs share a line, so labels repeat; the run column tells them apart).

    Recognised when every column but the first is ``"<run> - <metric>"`` (or a bound of one),
    with at least one run, and :data:`RUN_COL` is not already a column.
    """
    cols = [str(c) for c in df.columns]
    if len(cols) < 2 or RUN_COL in cols or _WANDB_SEP in cols[0]:
        return None
    pairs = []
    for c in cols[1:]:
        if c.endswith(_WANDB_BOUNDS):
            if c[:-5] not in cols:
                return None
            continue
        if _WANDB_SEP not in c:
            return None
        run, metric = c.rsplit(_WANDB_SEP, 1)
        if not run or not metric:
            return None
        pairs.append((c, run, metric))
    if not pairs:
        return None
    x_col = cols[0]
    metrics = list(dict.fromkeys(m for _, _, m in pairs))
    runs = list(dict.fromkeys(r for _, r, _ in pairs))
    parts = []
    for run in runs:
        block = pd.DataFrame({RUN_COL: run, x_col: df.iloc[:, 0].to_numpy()}, index=df.index)
        for m in metrics:
            c = f"{run}{_WANDB_SEP}{m}"
            block[m] = df[c].to_numpy() if c in df.columns else np.nan
        parts.append(block)
    long = pd.concat(parts)
    logged = long[metrics].notna().any(axis=1).to_numpy()
    out = long[logged]
    out.attrs.update(df.attrs)
    out.attrs["wandb"] = {"runs": len(runs), "metrics": metrics, "x_col": x_col, "n_rows": int(logged.sum()),
                          "n_unlogged": int((~logged).sum()),
                          "bounds_left_out": sum(str(c).endswith(_WANDB_BOUNDS) for c in df.columns)}
    return out


def _eval_mask(df: pd.DataFrame, expr: str, flag: str) -> np.ndarray:
    try:
        mask = df.eval(expr)
    except Exception as exc:  # pandas raises many types for a bad expression
        raise ValueError(f"{flag} {expr!r} is not a valid pandas expression over the columns "
                         f"{list(df.columns)[:20]}: {exc}. Quote column names with spaces in backticks, "
                         "e.g. `my col` > 3") from exc
    mask = np.asarray(mask)
    if mask.dtype != bool or mask.shape != (len(df),):
        raise ValueError(f"{flag} {expr!r} must give one True/False per row (a comparison such as "
                         f"N > 1e9), got values of dtype {mask.dtype}")
    return mask


def where(df: pd.DataFrame, expr: str | None) -> pd.DataFrame:
    """Rows for which the pandas expression ``expr`` holds (``None``: all rows).

    The frame's index (file lines) is kept. Raises when no row is left.
    """
    if not expr:
        return df
    mask = _eval_mask(df, expr, "--where")
    if not mask.any():
        raise ValueError(f"--where {expr!r} keeps none of the {len(df)} rows")
    return df.loc[mask]


def thin(df: pd.DataFrame, by, x_col: str, per_curve: int, *, log: bool = True) -> pd.DataFrame:
    """At most ``per_curve`` rows of every curve, spread evenly in ``log(x)`` (``log=False``: in ``x``).

    A curve is the rows sharing the columns ``by`` (e.g. the run name, or width and depth). On a
    grid of ``per_curve`` points from each curve's smallest to its largest ``x``, the row nearest
    each grid point is kept (so its first and last rows always are); a curve with ``per_curve``
    rows or fewer is kept whole. Rows whose ``x`` is missing, or not positive with ``log``, and
    rows that repeat a step of their curve are kept, so that validation names them. The frame's
    index (file lines) and row order are kept.

    Why: a W&B export logs every step; a GP over all runs' points costs ``n^3`` per optimiser step,
    and a few dozen steps per run, log-spaced, carry the shape of a learning curve.

    Raises:
      ValueError: ``per_curve < 2``, or a column of ``by`` / ``x_col`` is missing.
    """
    by = [by] if isinstance(by, str) else list(by)
    if int(per_curve) != per_curve or per_curve < 2:
        raise ValueError(f"thin: keep at least 2 rows per curve (its first and last), got {per_curve!r}")
    missing = [c for c in by + [x_col] if c not in df.columns]
    if missing:
        raise ValueError(f"thin: column(s) {missing} not in the table (columns: {list(df.columns)[:20]})")
    x = pd.to_numeric(df[x_col], errors="coerce").to_numpy(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        u = np.log(x) if log else x.copy()
    odd = ~np.isfinite(u)
    g = df.groupby(by, sort=False, dropna=False).ngroup().to_numpy()
    frame = pd.DataFrame({"g": g, "u": np.where(odd, np.nan, u)})
    lo = frame.groupby("g")["u"].transform("min").to_numpy()
    hi = frame.groupby("g")["u"].transform("max").to_numpy()
    size = frame.groupby("g")["u"].transform("count").to_numpy()
    span = np.where(hi > lo, hi - lo, 1.0)
    pos = (frame["u"].to_numpy() - lo) / span * (per_curve - 1)  # in [0, per_curve - 1]
    slot = np.rint(pos)
    frame["slot"], frame["dist"] = slot, np.abs(pos - slot)
    nearest = frame[~odd].groupby(["g", "slot"])["dist"].idxmin().to_numpy()  # positions (RangeIndex)
    twice = frame.duplicated(["g", "u"], keep=False).to_numpy() & ~odd  # named by validation, not hidden
    keep = odd | twice | (size <= per_curve)
    keep[nearest] = True
    return df.iloc[np.flatnonzero(keep)]


def holdout_mask(df: pd.DataFrame, expr: str | None, *, min_train: int = 1) -> np.ndarray:
    """Boolean mask of held-out rows (``expr`` is a pandas expression; ``None``: no rows).

    Raises when the expression holds out every row, or leaves fewer than ``min_train`` rows to fit;
    an expression that selects no row is an error too (a typo would otherwise silently score
    nothing).
    """
    if not expr:
        return np.zeros(len(df), bool)
    mask = _eval_mask(df, expr, "--holdout")
    if not mask.any():
        raise ValueError(f"--holdout {expr!r} selects none of the {len(df)} rows; nothing would be scored")
    if (~mask).sum() < min_train:
        raise ValueError(f"--holdout {expr!r} holds out {int(mask.sum())} of {len(df)} rows and leaves "
                         f"{int((~mask).sum())} to fit; need at least {min_train}")
    return mask
