"""Serialise run configurations as "key: value" text with number tokens.

Every numeric field is written as ``key: [MASK]``: the placeholder's embedding is later replaced
by (added to) an MLP of the field's scaled value (log10 for wide-range fields, then standardised
with TRAIN statistics) — the paper's "number tokens". Text fields (source, optimizer, schedule)
are written as ordinary words. A missing numeric value (NaN) omits the field from the text.

Runs that share their text fields share their token sequence, so the encoder only has to run on
the few unique texts (``Encoded.text_id`` maps runs to them).
"""
from __future__ import annotations

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
    "serialize",
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
    """One "key: value" text per run; numbers become :data:`NUMBER_TOKEN` placeholders."""
    x = _transform(df, schema.num_fields)
    texts = []
    text_vals = [df[c].astype(str).to_numpy() for _, c in schema.text_fields]
    for i in range(len(df)):
        parts = [f"{k}: {vals[i]}" for (k, _), vals in zip(schema.text_fields, text_vals)]
        parts += [f"{f.key}: {NUMBER_TOKEN}" for j, f in enumerate(schema.num_fields) if np.isfinite(x[i, j])]
        texts.append("; ".join(parts))
    return texts


def encode_frame(schema: Schema, df: pd.DataFrame) -> Encoded:
    """Unique texts, per-run text index, standardised values and presence mask."""
    x = _transform(df, schema.num_fields)
    present = np.isfinite(x)
    values = np.where(present, (x - schema.mean) / schema.std, 0.0)
    texts = serialize(schema, df)
    uniq, text_id = np.unique(np.asarray(texts, dtype=object), return_inverse=True)
    return Encoded(list(uniq), text_id.astype(np.int32), values.astype(np.float32), present.astype(np.float32))


def placeholder_positions(schema: Schema, texts: Sequence[str], ids: Sequence[Sequence[int]]) -> np.ndarray:
    """(U, F) token position of each numeric field's placeholder in each unique text (-1 if absent)."""
    out = np.full((len(texts), len(schema.num_fields)), -1, np.int32)
    for u, (t, tok) in enumerate(zip(texts, ids)):
        pos = [p for p, i in enumerate(tok) if i == NUMBER_TOKEN_ID]
        fields = [j for j, f in enumerate(schema.num_fields) if f"{f.key}: {NUMBER_TOKEN}" in t.split("; ")]
        if len(pos) != len(fields):
            raise ValueError(f"text {u}: {len(pos)} number tokens but {len(fields)} numeric fields; "
                             f"field names must not contain {NUMBER_TOKEN!r}")
        out[u, fields] = pos
    return out
