"""Parsers for the bundled long-context result sets, validation, and array packing.

Each ``load_*`` returns a tidy frame with columns ``source, model, task, N, D, C, C_imputed, n_ctx,
n_pmt, score, n_items, n_correct, beyond_ctx``.  Selection rules (logged, never silent):

* ``ruler``: rows with a published D; N = active parameters for MoE; the 0.0 cells beyond the claimed
  length whose ``notes`` say they may be "not run" are dropped (their status is unknown).
* ``babilong``: the paper's default prompt (instruction + 2 examples + post prompt), lengths >= 1k
  (0k has no n_pmt), ``n_items >= 50``, published D.  Keeps ``n_items``/``n_correct`` (binomial).
* ``longcontext_icl``: all rows; D is not disclosed for Mistral, so D = 2e12 is imputed there
  (``C_imputed``); the set is one compute level, so fit with ``Spec(fit_alpha=False)``.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import jax.numpy as jnp

from jaxscale._log import get_logger
from jaxscale.context_law.model import ContextData
from jaxscale.context_law.spec import SOURCES
from jaxscale.data import data_dir
from jaxscale.data import validate as V

__all__ = ["SOURCES", "load_source", "validate_frame", "to_context_data", "stack_tasks", "split_mask",
           "load_compute_table", "ICL_LABELS"]

_log = get_logger(__name__)
_FILES = {"ruler": "ruler_readme_results.csv", "babilong": "babilong_results.csv",
          "longcontext_icl": "longcontext_icl_results.csv"}
_DEFAULT_PROMPT = "instruction_yes_examples_yes_post_prompt_yes"
# label-set sizes of the many-shot ICL classification sets (output constrained to the labels), so
# chance = 1 / n_labels; BABILong qa1-qa5 answers are open words, RULER is exact-match: chance 0.
ICL_LABELS = {"banking77": 77, "clinic150": 151, "nlu": 68, "trec": 6, "trecfine": 50}


def load_compute_table() -> pd.DataFrame:
    """The paper's Table 1 (12 rows: base model, n_ctx, N_nonembedding, C_reported ...)."""
    return pd.read_csv(data_dir("context_law") / "compute_table.csv")


def _tidy(df: pd.DataFrame, source: str, impute_D: float | None) -> pd.DataFrame:
    N = df["n_params"].astype(float)
    if "n_params_active" in df:
        N = df["n_params_active"].astype(float).fillna(N)
    D = df["train_tokens"].astype(float)
    imputed = D.isna()
    if impute_D is not None:
        D = D.fillna(impute_D)
    out = pd.DataFrame({
        "source": source, "model": df["model"], "task": df["task"].astype(str), "N": N, "D": D,
        "C": 6.0 * N * D, "C_imputed": imputed & (impute_D is not None),
        "n_ctx": df["n_ctx"].astype(float), "n_pmt": df["n_pmt"].astype(float),
        "score": df["score"].astype(float),
        "n_items": df["n_items"].astype(float) if "n_items" in df else np.nan,
        "n_correct": df["n_correct"].astype(float) if "n_correct" in df else np.nan,
    })
    out["beyond_ctx"] = out["n_pmt"] > out["n_ctx"]
    out["chance"] = out["task"].map(lambda t: 1.0 / ICL_LABELS[t] if t in ICL_LABELS else 0.0)
    return out.reset_index(drop=True)


def load_source(name: str) -> pd.DataFrame:
    """Tidy rows of one bundled source (``ruler``, ``babilong``, ``longcontext_icl``)."""
    if name not in SOURCES:
        raise ValueError(f"dataset={name!r} is unknown; choose one of {SOURCES}")
    raw = pd.read_csv(data_dir("context_law") / _FILES[name])
    n0 = len(raw)
    if name == "ruler":
        unclear = (raw["score"] == 0) & raw["notes"].fillna("").str.contains("not run")
        raw = raw[raw["train_tokens"].notna() & ~unclear]
        _log.info("ruler: kept %d/%d rows (published D; dropped %d zero cells of unclear status)",
                  len(raw), n0, int(unclear.sum()))
        df = _tidy(raw, name, None)
    elif name == "babilong":
        keep = ((raw["prompt_config"] == _DEFAULT_PROMPT) & raw["n_pmt"].notna() & (raw["n_items"] >= 50)
                & raw["train_tokens"].notna())
        raw = raw[keep]
        _log.info("babilong: kept %d/%d rows (default prompt, >= 1k tokens, n_items >= 50, published D)",
                  len(raw), n0)
        df = _tidy(raw, name, None)
    else:
        df = _tidy(raw, name, 2.0e12)
        _log.info("longcontext_icl: %d rows; D imputed (2e12) for %d rows without a published D",
                  len(df), int(df["C_imputed"].sum()))
    validate_frame(df, what=name)
    return df


def validate_frame(df: pd.DataFrame, what: str = "context-law data") -> None:
    """Raise ValueError on missing columns, non-positive C/n_pmt/n_ctx, or scores outside [0, 1]."""
    V.require_columns(df, ["C", "n_pmt", "n_ctx", "score"], what)
    V.check_positive(df, ["C", "n_pmt", "n_ctx"], what)
    V.check_range(df, "score", 0.0, 1.0, what)


def to_context_data(df: pd.DataFrame, weight=None, chance_floor: bool = False,
                    what: str = "context-law data") -> ContextData:
    """Validated frame -> :class:`ContextData` (float64 when x64 is on).

    ``chance_floor=True`` uses the frame's ``chance`` column as floor g (multiple-choice / label tasks).
    """
    validate_frame(df, what)
    w = np.ones(len(df)) if weight is None else np.asarray(weight, dtype=float)
    if chance_floor:
        V.require_columns(df, ["chance"], what)
        V.check_range(df, "chance", 0.0, 0.99, what)
        floor = df["chance"].to_numpy(float)
    else:
        floor = np.zeros(len(df))
    return ContextData(
        jnp.asarray(np.log(df["C"].to_numpy(float))), jnp.asarray(df["n_pmt"].to_numpy(float)),
        jnp.asarray(df["n_ctx"].to_numpy(float)), jnp.asarray(df["score"].to_numpy(float)), jnp.asarray(w),
        jnp.asarray(floor))


def stack_tasks(frames: list, masks: list | None = None, chance_floor: bool = False) -> ContextData:
    """Pad several frames to one length (padding copies row 0 with weight 0) and stack them.

    ``masks`` (optional, one boolean array per frame) sets weight 0 on held-out rows.
    """
    n = max(len(f) for f in frames)
    cols = []
    for i, f in enumerate(frames):
        d = to_context_data(f, chance_floor=chance_floor)
        w = np.asarray(d.weight) * (1.0 if masks is None else np.asarray(masks[i], dtype=float))
        pad = n - len(f)
        arrs = [np.concatenate([np.asarray(x), np.repeat(np.asarray(x)[:1], pad)]) for x in d]
        arrs[4] = np.concatenate([w, np.zeros(pad)])
        cols.append(arrs)
    return ContextData(*[jnp.asarray(np.stack([c[j] for c in cols])) for j in range(len(ContextData._fields))])


def split_mask(df: pd.DataFrame, cutoff: float = 10_000.0) -> np.ndarray:
    """Training mask of the extrapolation experiment: prompts shorter than ``cutoff`` tokens."""
    return df["n_pmt"].to_numpy(float) < cutoff
