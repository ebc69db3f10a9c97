"""The input of the NCPL contract: one row per training run, as validated arrays.

A run is described by its configuration columns, each either **numeric** (learning rate, width,
batch size... written into the serialised text as a number token whose value an MLP embeds) or
**text** (optimizer, schedule, dataset name... written as words the text encoder reads). The
target (final loss) is what the model predicts; optional ``N`` (parameters) and ``D`` (training
tokens) columns let :func:`jaxscale.ncpl.fit` subtract a Chinchilla law fitted on the training
rows, so the network only learns how the other settings move the loss.
"""
from __future__ import annotations

import re
import shlex
import warnings

import jax
import numpy as np
import pandas as pd

from jaxscale._log import get_logger
from jaxscale._pytree import pytree_dataclass, static_field
from jaxscale.data.validate import (
    _rows,
    check_finite,
    check_numeric,
    check_positive,
    require_columns,
    tokens_from_compute_hint,
    warn_far_above,
)
from jaxscale.ncpl.dataset import cell_codes
from jaxscale.ncpl.serialize import (
    NUMBER_TOKEN,
    NumField,
    check_token_lengths,
    infer_fields,
    row_texts,
    unique_texts,
)
from jaxscale.ncpl.spec import MAX_TOKENS

__all__ = ["Data", "from_frame", "MAX_TOKENS", "DUPLICATES", "missing_counts", "warn_result_columns", "token_lengths", "duplicate_rows"]

log = get_logger(__name__)

#: What :func:`from_frame` does with training rows that repeat another row in every used column.
DUPLICATES = ("error", "keep")


@pytree_dataclass
class Data:
    """Validated run rows (row ``i`` of every array is row ``i`` of the frame).

    Attributes:
      values: ``(n, F)`` float64 numeric config values as given (0 where absent).
      present: ``(n, F)`` bool, whether row ``i`` has numeric field ``j`` (absent fields are left
        out of the serialised text).
      codes: ``(n, T)`` int32, row ``i``'s value of text field ``j`` as an index into
        ``vocab[j]`` (-1: missing, the field is left out of the text).
      y: ``(n,)`` target (NaN for rows to predict).
      N: ``(n,)`` parameters for the Chinchilla baseline, or ``None``.
      D: ``(n,)`` training tokens, or ``None``.
      base: ``(n,)`` a baseline column subtracted from the target, or ``None``.
      group: ``(n,)`` int32 validation cell of each row (whole cells are held out for early
        stopping; every row is its own cell unless ``group_cols`` were given).
      index: ``(n,)`` int64 label of each row in messages: the frame's index when it holds integers
        (lines of the file for frames from :func:`jaxscale.data.read_table`), else the position.
      num_cols: numeric fields' columns.
      num_keys: numeric fields' keys (written in the text).
      num_log: whether each numeric field is log10-scaled.
      text_cols: text fields' columns.
      text_keys: text fields' keys.
      vocab: per text field, the sorted tuple of its values.
      columns: ``(role, column)`` pairs: ``target``, ``text``, ``num``, ``n``, ``d``, ``baseline``,
        ``group``, and ``skipped`` (columns the inference left out).
    """

    values: jax.Array
    present: jax.Array
    codes: jax.Array
    y: jax.Array
    N: jax.Array | None
    D: jax.Array | None
    base: jax.Array | None
    group: jax.Array
    index: jax.Array
    num_cols: tuple = static_field()
    num_keys: tuple = static_field()
    num_log: tuple = static_field()
    text_cols: tuple = static_field()
    text_keys: tuple = static_field()
    vocab: tuple = static_field()
    columns: tuple = static_field()

    @property
    def n_rows(self) -> int:
        return int(np.shape(self.y)[0])

    @property
    def num_fields(self) -> tuple:
        """The numeric fields as :class:`~jaxscale.ncpl.serialize.NumField` s."""
        return tuple(NumField(k, c, bool(lg)) for k, c, lg in zip(self.num_keys, self.num_cols, self.num_log))

    @property
    def text_fields(self) -> tuple:
        """The text fields as ``(key, column)`` pairs."""
        return tuple(zip(self.text_keys, self.text_cols))

    def rows(self, mask) -> str:
        """The labels of the rows where ``mask`` holds, for messages (``[2, 7, ...] (+k more)``)."""
        return _rows(np.asarray(self.index)[np.asarray(mask, bool)])

    def texts(self) -> list[str]:
        """The serialised configuration of every row (numbers as ``[MASK]`` placeholders)."""
        return row_texts(self.text_keys, self.vocab, np.asarray(self.codes), self.num_keys, np.asarray(self.present))

    def transformed(self) -> np.ndarray:
        """``(n, F)`` values after the per-field log10 (NaN where absent)."""
        x = np.where(np.asarray(self.present, bool), np.asarray(self.values, float), np.nan)
        logs = np.asarray(self.num_log, bool)
        if logs.any():
            with np.errstate(invalid="ignore", divide="ignore"):
                x[:, logs] = np.log10(x[:, logs])
        return x


#: Words that mark a column as a result of a run (a metric), not a setting of it.
RESULT_WORDS = ("loss", "ppl", "perplexity", "acc", "accuracy", "bpb", "bpc", "bleu", "chrf", "score", "eval")
#: Rank correlation with the target above which a config column is suspected to be another result.
RESULT_CORRELATION = 0.95


def warn_result_columns(df: pd.DataFrame, target_col: str, columns, what: str = "runs") -> list:
    """Warn when inferred config ``columns`` look like results of the runs (other losses or
    metrics), not settings: numbers that differ in most runs (a measurement, where a setting
    repeats) under a name holding a word of :data:`RESULT_WORDS`, or (>= 10 rows) a rank
    correlation with the target of at least :data:`RESULT_CORRELATION`. Read as configuration,
    a result leaks the answer on rows of the same runs and is unknown for a run not yet trained.
    Returns the flagged columns."""
    flagged = {}
    y = pd.to_numeric(df[target_col], errors="coerce")
    for c in columns:
        x = pd.to_numeric(df[c], errors="coerce")
        if x.notna().sum() < max(5, 0.5 * len(df)):
            continue  # text, or mostly empty
        words = set(re.split(r"[^a-z0-9]+", str(c).lower()))
        hit = sorted(words & set(RESULT_WORDS))
        if hit and x.nunique() >= 0.5 * x.notna().sum():
            flagged[c] = f"named like a metric ({hit[0]!r}), a different value in most runs"
            continue
        ok = x.notna() & y.notna()
        if ok.sum() >= 10 and x[ok].nunique() > 2 and y[ok].nunique() > 1:
            rho = float(x[ok].rank().corr(y[ok].rank()))
            if abs(rho) >= RESULT_CORRELATION:
                flagged[c] = f"rank correlation {rho:+.3f} with {target_col!r}"
    if flagged:
        listed = "; ".join(f"{c!r} ({why})" for c, why in list(flagged.items())[:8])
        cli = shlex.quote(",".join(map(str, flagged)))  # a name with a space stays one shell word
        more = f" (+{len(flagged) - 8} more)" if len(flagged) > 8 else ""
        warnings.warn(
            f"{what}: {len(flagged)} column(s) read as configuration look like results of the runs, not settings: "
            f"{listed}{more}. A result used as an input leaks the answer and is unknown for a run not yet trained; "
            f"leave them out with exclude_cols (CLI: --exclude-cols {cli}) or list the "
            "configuration with num_cols/text_cols (CLI: --config-cols). Keep them if they are settings.",
            UserWarning, stacklevel=3)
    return list(flagged)


def missing_counts(data: Data) -> dict:
    """``{column: rows}`` of config fields that are empty in some rows (left out of their text)."""
    out = {c: int(k) for c, k in zip(data.num_cols, (~np.asarray(data.present, bool)).sum(0)) if k}
    out.update({c: int(k) for c, k in zip(data.text_cols, (np.asarray(data.codes) < 0).sum(0)) if k})
    return out


def token_lengths(texts) -> np.ndarray:
    """Number of encoder tokens (with [CLS] and [SEP]) of each text."""
    from jaxscale.ncpl.encoder import load_tokenizer

    if not texts:
        return np.zeros(0, int)
    return np.array([len(e.ids) for e in load_tokenizer().encode_batch(list(texts))], int)


def from_frame(df: pd.DataFrame, *, target_col: str | None = "final_loss", text_cols=None, num_cols=None,
               exclude_cols=(), n_col: str | None = None, d_col: str | None = None, baseline_col: str | None = None,
               group_cols=None, require_target: bool = True, max_tokens: int = MAX_TOKENS,
               duplicates: str = "error", what: str = "runs") -> Data:
    """Validate a run table (one row per run) and return its arrays.

    Args:
      df: the runs. Rows are never dropped or reordered.
      target_col: the loss to predict. ``None`` (or a column the frame lacks, with
        ``require_target=False``) gives NaN targets: rows to predict.
      text_cols: text config columns (names or ``(key, column)`` pairs).
      num_cols: numeric config columns (names or :class:`~jaxscale.ncpl.serialize.NumField` s).
        With both ``None``, every column other than the target, baseline and ``exclude_cols`` is a
        config field, numeric when all its values parse as numbers, text otherwise
        (:func:`~jaxscale.ncpl.serialize.infer_fields`); given one list, the others are inferred.
      exclude_cols: columns that are not configuration (run ids, notes, other metrics...).
      n_col: parameter counts (> 0) for the Chinchilla baseline; give ``d_col`` too. It stays a
        config field as well (always log10-scaled), unless excluded.
      d_col: training tokens (> 0).
      baseline_col: a column subtracted from the target before the network sees it (e.g. a law
        you fitted yourself); the prediction adds it back.
      group_cols: columns whose combinations form the validation cells held out for early
        stopping (default: random rows).
      require_target: every row must have a finite target (training data).
      max_tokens: longest serialised configuration allowed (the text encoder's window).
      duplicates: training rows (``require_target=True``) that repeat another row in every used
        column (config fields, target, N, D, baseline) would be weighted twice: ``"error"``
        refuses them (remove the copies first, e.g. with ``df.drop_duplicates(cols)``);
        ``"keep"`` keeps them on purpose (see :func:`duplicate_rows` to count them).
      what: the table's name in error messages (a fitted model's query: ``"query runs"``).

    Raises:
      ValueError: missing columns, non-numeric or infinite numeric values, values <= 0 in a
      log-scaled field or in N/D, a positive wide-range column with a few values <= 0, missing
      targets, duplicated training rows, or a configuration longer than ``max_tokens`` tokens
      (the message names the columns that take most tokens and how to leave them out).
    """
    if not isinstance(df, pd.DataFrame):
        raise ValueError(f"from_frame expects a pandas DataFrame, got {type(df).__name__}")
    if len(df) == 0:
        raise ValueError(f"{what}: the table has no rows")
    if (n_col is None) != (d_col is None):
        raise ValueError(f"give both n_col and d_col (parameters and tokens) or neither; got n_col={n_col!r}, "
                         f"d_col={d_col!r}")
    if d_col is not None:
        tokens_from_compute_hint(df, n_col, d_col, f"{what} (d_col)")
    for name, col in (("n_col", n_col), ("d_col", d_col), ("baseline_col", baseline_col)):
        if col is not None:
            require_columns(df, [col], f"{what} ({name})")
    has_target = target_col is not None and target_col in df.columns
    if target_col is not None and not has_target and require_target:
        require_columns(df, [target_col], f"{what} (target_col)")
    if duplicates not in DUPLICATES:
        raise ValueError(f"duplicates must be one of {DUPLICATES}, got {duplicates!r}")
    # the roles first, so their messages say what the column is for
    if n_col is not None:
        check_positive(df, [n_col, d_col], what)
    if has_target:
        check_numeric(df, [target_col], what)
        if require_target:
            check_finite(df, [target_col], what)
            warn_far_above(df, target_col, what)
    if baseline_col is not None:
        check_finite(df, [baseline_col], what)
    roles = [c for c in (target_col if has_target else None, baseline_col) if c is not None]
    exclude = list(exclude_cols or ())
    text_fields, num_fields, skipped = infer_fields(
        df, exclude=exclude + [c for c in roles if c not in exclude], text_cols=text_cols, num_cols=num_cols)
    if not text_fields and not num_fields:
        raise ValueError(f"{what}: no configuration column left (columns {list(df.columns)[:20]}, excluded "
                         f"{exclude}); give text_cols/num_cols")
    if skipped:
        log.warning("left out %d column(s): %s", len(skipped), "; ".join(f"{c!r}: {r}" for c, r in skipped.items()))
    if has_target and require_target:
        given_cols = {t[1] if isinstance(t, tuple) else t for t in (text_cols or ())} | \
            {f.column if isinstance(f, NumField) else f for f in (num_cols or ())}
        inferred = [c for _, c in text_fields] + [f.column for f in num_fields]
        warn_result_columns(df, target_col, [c for c in inferred if c not in given_cols and c not in (n_col, d_col)],
                            what)
    # sizes are log-scale quantities whatever their span (> 0 is checked above); a NumField you give is kept
    given = {f.column for f in (num_cols or ()) if isinstance(f, NumField)}
    sizes = {c for c in (n_col, d_col) if c is not None} - given
    num_fields = tuple(NumField(f.key, f.column, True) if f.column in sizes else f for f in num_fields)
    n = len(df)

    # numeric fields: numbers or empty; log-scaled ones > 0
    num_cols_ = [f.column for f in num_fields]
    check_numeric(df, num_cols_, what)
    values = np.zeros((n, len(num_fields)))
    present = np.zeros((n, len(num_fields)), bool)
    for j, f in enumerate(num_fields):
        v = pd.to_numeric(df[f.column], errors="coerce").to_numpy(float)
        inf = np.isinf(v)
        if inf.any():
            raise ValueError(f"{what}: column {f.column!r} has {int(inf.sum())} infinite value(s) at rows "
                             f"{_rows(df.index[inf])}; write a finite number or leave the cell empty (field absent)")
        if f.log:
            bad = np.isfinite(v) & (v <= 0)
            if bad.any():
                raise ValueError(f"{what}: column {f.column!r} is log-scaled but has {int(bad.sum())} value(s) <= 0 "
                                 f"at rows {_rows(df.index[bad])} (first {float(v[bad][0]):g}); fix the data or give "
                                 "it as NumField(key, column, log=False)")
        present[:, j] = np.isfinite(v)
        values[:, j] = np.where(present[:, j], v, 0.0)

    # text fields: per-field codes into sorted vocabularies
    codes = np.full((n, len(text_fields)), -1, np.int32)
    vocab = []
    for j, (_, c) in enumerate(text_fields):
        col = df[c]
        ok = col.notna().to_numpy()
        strs = col.astype(str).to_numpy(dtype=object)[ok]
        voc, inv = np.unique(strs, return_inverse=True) if ok.any() else (np.array([], object), np.zeros(0, int))
        vocab.append(tuple(str(v) for v in voc))
        codes[ok, j] = np.asarray(inv).reshape(-1)

    for (key, c), voc in zip(text_fields, vocab):
        bad = [v for v in voc if NUMBER_TOKEN in v]
        if bad or NUMBER_TOKEN in key:
            raise ValueError(f"{what}: text column {c!r} holds {NUMBER_TOKEN!r} (e.g. {(bad or [key])[0]!r}), the "
                             "placeholder of numbers in the serialised text; rename those values")
    bad_keys = [f.key for f in num_fields if NUMBER_TOKEN in f.key]
    if bad_keys:
        raise ValueError(f"{what}: numeric field key(s) {bad_keys} contain {NUMBER_TOKEN!r}; rename them")

    # target, N, D, baseline (checked above)
    y = pd.to_numeric(df[target_col], errors="coerce").to_numpy(float) if has_target else np.full(n, np.nan)
    N = D = base = None
    if n_col is not None:
        N = pd.to_numeric(df[n_col]).to_numpy(float)
        D = pd.to_numeric(df[d_col]).to_numpy(float)
    if baseline_col is not None:
        base = pd.to_numeric(df[baseline_col]).to_numpy(float)
    group = cell_codes(df, list(group_cols) if group_cols else [])
    used = list(dict.fromkeys([c for _, c in text_fields] + num_cols_ + [c for c in (n_col, d_col, baseline_col)
                                                                        if c is not None]))
    if has_target and require_target and duplicates == "error":
        dup = duplicate_rows(df, used + [target_col])
        if dup.any():
            raise ValueError(
                f"{what}: {int(dup.sum())} rows repeat another row in every used column (config, target"
                f"{', N, D' if n_col else ''}) at rows {_rows(df.index[dup])}; a duplicate would be weighted twice. "
                "Remove the copies (CLI: --duplicates first; pandas: df.drop_duplicates(columns)) or keep them on "
                "purpose (duplicates='keep', CLI: --duplicates keep)")
    index = np.asarray(df.index) if pd.api.types.is_integer_dtype(df.index) else np.arange(n)

    columns = ([("target", target_col)] if target_col is not None else []) + \
        [("text", c) for _, c in text_fields] + [("num", f.column) for f in num_fields] + \
        ([("n", n_col), ("d", d_col)] if n_col is not None else []) + \
        ([("baseline", baseline_col)] if baseline_col is not None else []) + \
        [("group", c) for c in (group_cols or ())] + [("skipped", c) for c in skipped]
    data = Data(values=values, present=present, codes=codes, y=y, N=N, D=D, base=base, group=group,
                index=np.asarray(index, np.int64), num_cols=tuple(num_cols_), num_keys=tuple(f.key for f in num_fields),
                num_log=tuple(bool(f.log) for f in num_fields), text_cols=tuple(c for _, c in text_fields),
                text_keys=tuple(k for k, _ in text_fields), vocab=tuple(vocab), columns=tuple(columns))
    texts, text_id = unique_texts(data.texts())
    check_token_lengths(texts, token_lengths(texts), max_tokens, field_parts=_field_parts(data), text_id=text_id,
                        index=df.index)
    return data


def duplicate_rows(df: pd.DataFrame, columns) -> np.ndarray:
    """Boolean mask of the rows that repeat another row in every one of ``columns`` (all copies,
    missing values compared equal)."""
    return df.duplicated(subset=list(columns), keep=False).to_numpy()


def _field_parts(data: Data) -> dict:
    """``{column: key}`` of every serialised field."""
    return {**dict(zip(data.text_cols, data.text_keys)), **dict(zip(data.num_cols, data.num_keys))}
