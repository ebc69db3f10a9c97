"""Serialise run configurations as "key: value" text with number tokens.

Every numeric field is written as ``key: [MASK]``: the placeholder's embedding is later replaced
by (added to) an MLP of the field's scaled value (log10 for wide-range fields, then standardised
with TRAIN statistics) — the paper's "number tokens". Text fields (source, optimizer, schedule)
are written as ordinary words. A missing numeric value (NaN) omits the field from the text.

Runs that share their text fields share their token sequence, so the encoder only has to run on
the few unique texts (``Encoded.text_id`` maps runs to them).
"""
from __future__ import annotations

import shlex
from typing import NamedTuple, Sequence

import numpy as np
import pandas as pd

__all__ = [
    "NumField",
    "Schema",
    "Encoded",
    "NUMBER_TOKEN",
    "ncpl_frame",
    "ncpl_fields",
    "REDUNDANT",
    "build_schema",
    "infer_fields",
    "serialize",
    "row_texts",
    "unique_texts",
    "check_token_lengths",
    "encode_frame",
    "placeholder_positions",
]

NUMBER_TOKEN = "[MASK]"
NUMBER_TOKEN_ID = 103  # id of [MASK] in the MiniLM WordPiece vocabulary


class NumField(NamedTuple):
    key: str  # text written before the number token
    column: str
    log: bool  # log10 before standardising


class Schema(NamedTuple):
    text_fields: tuple  # ((key, column), ...)
    num_fields: tuple  # (NumField, ...)
    mean: np.ndarray  # (F,) TRAIN mean of the transformed values
    std: np.ndarray  # (F,)


class Encoded(NamedTuple):
    texts: list  # unique serialised texts
    text_id: np.ndarray  # (n,) int32 index into texts
    values: np.ndarray  # (n, F) standardised numeric values (0 where missing)
    present: np.ndarray  # (n, F) float mask


def ncpl_frame(df: pd.DataFrame) -> pd.DataFrame:
    """Add the derived config columns used by :func:`ncpl_fields` to an NCPL run table."""
    out = df.copy()
    out["warmup_frac"] = out["warmup_steps"] / out["total_steps"].clip(lower=1)
    out["tokens_per_step"] = out["batch_seqs"] * out["seq_len"]
    out["tokens_per_param"] = out["D_billion"] * 1e3 / out["N_million"]
    out["one_minus_beta2"] = 1.0 - out["beta2"]
    out["one_minus_beta1"] = 1.0 - out["beta1"]
    out["eps_pos"] = out["eps"].where(out["eps"] > 0)
    return out


# Redundant size fields (functions of model size / data size) that hurt extrapolation to the
# larger OOD models: dropped from the default field set (OOD MAE 0.0235 -> 0.0136 on Marin in a
# 5-member, 1000-step stage-1 run; 0.0178 -> 0.0107 on StepLaw).
REDUNDANT = ("d_model", "d_ff", "n_heads", "total_steps", "tokens_per_step", "chinchilla_ncpl")


def ncpl_fields(curves: bool = False, full: bool = False):
    """(text_fields, num_fields) of the NCPL configs (``frac`` added for loss curves).

    ``full=True`` keeps the redundant size fields of :data:`REDUNDANT`.
    """
    text = (("source", "source"), ("optimizer", "optimizer"), ("schedule", "lr_schedule"))
    num = [
        NumField("model size", "N_million", True), NumField("data size", "D_billion", True),
        NumField("num layers", "n_layers", False), NumField("hidden dim", "d_model", True),
        NumField("num heads", "n_heads", False), NumField("ffn dim", "d_ff", True),
        NumField("batch size", "batch_seqs", True), NumField("sequence length", "seq_len", True),
        NumField("tokens per step", "tokens_per_step", True), NumField("max step", "total_steps", True),
        NumField("tokens per parameter", "tokens_per_param", True),
        NumField("learning rate", "lr", True), NumField("adam lr", "adam_lr", True),
        NumField("preconditioner lr", "preconditioner_lr", True),
        NumField("weight decay", "weight_decay", False), NumField("one minus beta1", "one_minus_beta1", True),
        NumField("one minus beta2", "one_minus_beta2", True), NumField("epsilon", "eps_pos", True),
        NumField("max grad norm", "grad_clip", False), NumField("warmup", "warmup_steps", False),
        NumField("warmup fraction", "warmup_frac", False), NumField("min lr ratio", "final_lr_ratio", False),
        NumField("chinchilla loss", "chinchilla_ncpl", False),
    ]
    if not full:
        num = [f for f in num if f.column not in REDUNDANT]
    if curves:
        num.append(NumField("frac", "frac", False))
    return text, tuple(num)


def _transform(df: pd.DataFrame, fields) -> np.ndarray:
    cols = []
    for f in fields:
        if f.column not in df.columns:
            raise ValueError(f"config column {f.column!r} (field {f.key!r}) not in the table; "
                             f"available: {sorted(df.columns)[:30]}")
        v = pd.to_numeric(df[f.column], errors="coerce").to_numpy(float)
        if f.log:
            bad = np.flatnonzero(np.isfinite(v) & (v <= 0))
            if bad.size:
                raise ValueError(f"column {f.column!r} is log-scaled but has {bad.size} value(s) <= 0 "
                                 f"(first rows {bad[:5].tolist()}); set log=False or fix the data")
            v = np.log10(np.where(np.isfinite(v), v, np.nan))
        cols.append(v)
    return np.stack(cols, 1) if cols else np.zeros((len(df), 0))


def build_schema(train: pd.DataFrame, text_fields, num_fields) -> Schema:
    """Fix the fields and their standardisation from TRAIN rows only."""
    if len(train) == 0:
        raise ValueError("build_schema: empty training table")
    for _, col in text_fields:
        if col not in train.columns:
            raise ValueError(f"text column {col!r} not in the table")
    x = _transform(train, num_fields)
    with np.errstate(all="ignore"):
        mean = np.nanmean(np.where(np.isfinite(x), x, np.nan), 0) if x.size else np.zeros(0)
        std = np.nanstd(np.where(np.isfinite(x), x, np.nan), 0) if x.size else np.zeros(0)
    mean = np.nan_to_num(mean)
    std = np.where(np.isfinite(std) & (std > 1e-12), std, 1.0)
    return Schema(tuple(text_fields), tuple(num_fields), mean, std)


def serialize(schema: Schema, df: pd.DataFrame) -> list[str]:
    """One "key: value" text per run; numbers become :data:`NUMBER_TOKEN` placeholders.

    A missing value (NaN) leaves its field out of the text."""
    x = _transform(df, schema.num_fields)
    text_vals = [df[c] for _, c in schema.text_fields]
    vocab, codes = [], np.zeros((len(df), len(text_vals)), np.int64)
    for j, col in enumerate(text_vals):
        missing = col.isna().to_numpy()
        v, c = np.unique(col.astype(str).to_numpy(dtype=object)[~missing], return_inverse=True) if (~missing).any() \
            else (np.array([], object), np.zeros(0, np.int64))
        vocab.append(tuple(v))
        codes[~missing, j] = c
        codes[missing, j] = -1
    return row_texts([k for k, _ in schema.text_fields], vocab, codes, [f.key for f in schema.num_fields],
                     np.isfinite(x))


def row_texts(text_keys, vocab, codes, num_keys, present) -> list[str]:
    """The serialised text of every row.

    Args:
      text_keys: key written before each text field's value.
      vocab: per text field, the tuple of its values; ``codes[i, j]`` indexes ``vocab[j]``
        (``-1``: missing, the field is left out).
      codes: ``(n, T)`` int codes.
      num_keys: key written before each numeric field's :data:`NUMBER_TOKEN`.
      present: ``(n, F)`` bool, whether row ``i`` has numeric field ``j``.

    Returns:
      ``"key: value; ...; key: [MASK]; ..."`` per row (text fields first, in field order).
    """
    codes = np.asarray(codes).reshape(len(present), len(text_keys))
    present = np.asarray(present, bool)
    if len(codes) == 0:
        return []
    combos, inv = np.unique(np.concatenate([codes, present.astype(codes.dtype)], 1), axis=0, return_inverse=True)
    texts = []
    t = len(text_keys)
    for row in combos:
        parts = [f"{k}: {vocab[j][row[j]]}" for j, k in enumerate(text_keys) if row[j] >= 0]
        parts += [f"{k}: {NUMBER_TOKEN}" for j, k in enumerate(num_keys) if row[t + j]]
        texts.append("; ".join(parts))
    return [texts[i] for i in np.asarray(inv).reshape(-1)]


def unique_texts(texts) -> tuple[list, np.ndarray]:
    """Sorted unique texts and each row's index into them (int32)."""
    uniq, text_id = np.unique(np.asarray(texts, dtype=object), return_inverse=True)
    return list(uniq), np.asarray(text_id, np.int32).reshape(-1)


def check_token_lengths(texts, lengths, max_tokens: int, *, field_parts, text_id=None, index=None) -> None:
    """Raise when a serialised text has more than ``max_tokens`` tokens, naming the columns that
    take most tokens (by their share of the tokens of the too-long texts) and the fix.

    Args:
      texts: unique serialised texts.
      lengths: token count of each text.
      max_tokens: the limit.
      field_parts: ``{column: key}`` of the serialised fields (to attribute tokens to columns).
      text_id: each row's text (to name the rows in the message).
      index: the rows' labels.
    """
    lengths = np.asarray(lengths)
    long = np.flatnonzero(lengths > max_tokens)
    if long.size == 0:
        return
    from jaxscale.ncpl.encoder import EncoderConfig, load_tokenizer

    tok = load_tokenizer()
    key_to_col = {k: c for c, k in field_parts.items()}
    counts: dict[str, int] = {}
    for u in long:
        for part in texts[u].split("; "):
            key = part.split(": ", 1)[0]
            col = key_to_col.get(key, key)
            counts[col] = counts.get(col, 0) + len(tok.encode(part, add_special_tokens=False).ids)
    total = max(sum(counts.values()), 1)
    top = sorted(counts.items(), key=lambda kv: -kv[1])[:5]
    if text_id is not None and index is not None:
        rows = np.asarray(list(index), dtype=object)[np.isin(np.asarray(text_id), long)]
        where = f"{rows.size} run(s) (rows {', '.join(map(str, rows[:5]))}{' ...' if rows.size > 5 else ''})"
    else:
        where = f"{long.size} serialised configuration(s)"
    desc = ", ".join(f"{c!r} ({n} tokens, {100 * n / total:.0f}%)" for c, n in top)
    drop = ",".join(c for c, n in top if n / total >= 0.1) or top[0][0]
    longest = int(lengths[long].max())
    limit = EncoderConfig().max_positions
    fit = min(-(-longest // 64) * 64, limit)  # the next multiple of 64
    more = (f" Or raise the limit: the encoder reads up to {limit} tokens, max_tokens={fit} (CLI: "
            f"--max-tokens {fit}) fits these runs, at a higher cost per step." if longest <= limit else "")
    raise ValueError(
        f"{where} serialise to more tokens than the text encoder reads (longest: {longest} > "
        f"max_tokens={max_tokens}). Most of their tokens come from the columns {desc}. Leave long free-text "
        f"columns out with exclude_cols=[...] (CLI: --exclude-cols {shlex.quote(drop)}), or choose the config columns "
        f"explicitly (text_cols=/num_cols=, CLI: --text-cols/--num-cols).{more}"
    )


def infer_fields(df: pd.DataFrame, *, exclude=(), columns=None, text_cols=None, num_cols=None):
    """Which columns are text and which numeric config fields, and which are skipped.

    ``text_cols`` / ``num_cols`` entries are taken as given: a column name, a ``(key, column)``
    pair (text) or a :class:`NumField` (numeric). When both are given, they are the whole config.
    Otherwise every other column of ``columns`` (default: all) not in ``exclude`` is inferred:
    numeric when every non-missing value parses as a number, text otherwise. Numeric fields are
    log10-scaled when all values are > 0 and span a factor 10 or more (learning rates, sizes).
    Skipped (and reported): columns with no value at all, and text columns whose every value is
    distinct (run ids, paths) in tables of >= 10 rows.

    Raises:
      ValueError: a column is mostly numbers with a few non-numbers (names the rows), a positive
      wide-range column has a few values <= 0 (placeholders for "unknown"?), a named column is
      missing, or a column is named both text and numeric.

    Returns:
      ``(text_fields, num_fields, skipped)``: ``((key, column), ...)``, ``(NumField, ...)`` and
      ``{column: reason}``. Inferred keys are the column names with ``_`` written as spaces.
    """
    from jaxscale.data.validate import require_columns

    text = [t if isinstance(t, tuple) else (_key(t), t) for t in (text_cols or ())]
    num = []
    for f in num_cols or ():
        if not isinstance(f, NumField):
            require_columns(df, [f], "num_cols")
            f = _num_field(df, f)
        num.append(f)
    require_columns(df, [c for _, c in text] + [f.column for f in num] + list(exclude or ()), "config columns")
    both = {c for _, c in text} & {f.column for f in num}
    if both:
        raise ValueError(f"columns {sorted(both)} are given both as text and as numeric fields; choose one")
    skipped: dict = {}
    if text_cols is not None and num_cols is not None:
        return tuple(text), tuple(num), skipped
    taken = {c for _, c in text} | {f.column for f in num} | set(exclude or ())
    cols = list(df.columns) if columns is None else list(columns)
    require_columns(df, cols, "config columns")
    for c in cols:
        if c in taken:
            continue
        col = df[c]
        if col.notna().sum() == 0:
            skipped[c] = "no value in any row"
            continue
        parsed = pd.to_numeric(col, errors="coerce")
        bad = (parsed.isna() & col.notna()).to_numpy()
        if not bad.any():
            num.append(_num_field(df, c))
        elif bad.sum() <= 0.1 * col.notna().sum():
            raise ValueError(
                f"column {c!r} holds numbers except for {int(bad.sum())} value(s) at rows "
                f"{list(df.index[bad][:5])} (e.g. {col[bad].iloc[0]!r}); write plain numbers "
                f"(empty for a missing value), or treat it as text with text_cols=[{c!r}] (CLI: --text-cols {c})")
        elif len(df) >= 10 and col.notna().all() and col.nunique() == len(df):
            skipped[c] = "text that differs in every row (an identifier?); name it in text_cols to keep it"
        else:
            text.append((_key(c), c))
    return tuple(text), tuple(num), skipped


def _key(col: str) -> str:
    return str(col).replace("_", " ")


def _num_field(df: pd.DataFrame, c: str) -> NumField:
    """A numeric field of column ``c``: log10-scaled when positive and spanning >= 10x.

    Raises:
      ValueError: the column is positive and spans >= 10x except for a few values <= 0 (at most
      10% of its values): a placeholder such as ``-1`` or ``0`` for "unknown" would otherwise turn
      the field linear and enter the model as a value.
    """
    v = pd.to_numeric(df[c], errors="coerce").to_numpy(float)
    fin = np.isfinite(v)
    pos = fin & (v > 0)
    nonpos = fin & (v <= 0)
    if pos.any() and nonpos.any() and nonpos.sum() <= 0.1 * fin.sum() and v[pos].max() / v[pos].min() >= 10:
        rows = list(df.index[nonpos])
        shown = ", ".join(map(str, rows[:5])) + (f" (+{len(rows) - 5} more)" if len(rows) > 5 else "")
        raise ValueError(
            f"column {c!r} is positive and spans {v[pos].max() / v[pos].min():.3g}x (a log10-scaled field) except for "
            f"{int(nonpos.sum())} value(s) <= 0 at rows [{shown}] (e.g. {float(v[nonpos][0]):g}). If they mean "
            f"'unknown', leave those cells empty (the field is then left out of those runs' text); if they are real "
            f"values, make the field linear: num_cols=[NumField({_key(c)!r}, {c!r}, log=False)] (CLI: --linear-cols "
            f"{c})")
    v = v[fin]
    log = bool(v.size and (v > 0).all() and v.max() / max(v.min(), 1e-300) >= 10)
    return NumField(_key(c), c, log)


def encode_frame(schema: Schema, df: pd.DataFrame) -> Encoded:
    """Unique texts, per-run text index, standardised values and presence mask."""
    x = _transform(df, schema.num_fields)
    present = np.isfinite(x)
    values = np.where(present, (x - schema.mean) / schema.std, 0.0)
    texts, text_id = unique_texts(serialize(schema, df))
    return Encoded(texts, text_id, values.astype(np.float32), present.astype(np.float32))


def placeholder_positions(fields, texts: Sequence[str], ids: Sequence[Sequence[int]]) -> np.ndarray:
    """(U, F) token position of each numeric field's placeholder in each unique text (-1 if absent).

    ``fields`` is a :class:`Schema` or the numeric fields' keys."""
    keys = [f.key for f in fields.num_fields] if isinstance(fields, Schema) else list(fields)
    out = np.full((len(texts), len(keys)), -1, np.int32)
    for u, (t, tok) in enumerate(zip(texts, ids)):
        pos = [p for p, i in enumerate(tok) if i == NUMBER_TOKEN_ID]
        parts = set(t.split("; "))
        present = [j for j, k in enumerate(keys) if f"{k}: {NUMBER_TOKEN}" in parts]
        if len(pos) != len(present):
            raise ValueError(f"text {u}: {len(pos)} number tokens but {len(present)} numeric fields; "
                             f"field names and text values must not contain {NUMBER_TOKEN!r}")
        out[u, present] = pos
    return out
