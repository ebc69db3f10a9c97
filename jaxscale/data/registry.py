"""Bundled datasets: a registry of tidy pandas loaders with provenance.

Every file under ``jaxscale/data/bundled/<folder>/`` is a verbatim copy of the project's
research data; each folder keeps its ``SOURCE.md`` (origin, commit, licence, checksums).
``load(name)`` returns a tidy :class:`pandas.DataFrame` whose columns are documented in
:func:`list_datasets`; bundled tables are validated on load like user tables.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from jaxscale.data import validate as V

__all__ = ["Dataset", "data_dir", "load", "list_datasets", "dataset_names", "read_gene_expression"]

_ROOT = Path(__file__).resolve().parent / "bundled"
FOLDERS = ("zeroshot_lc", "obscaling", "context_law", "ncpl")


def data_dir(folder: str) -> Path:
    """Path of a bundled data folder (``zeroshot_lc``, ``obscaling``, ``context_law``, ``ncpl``)."""
    if folder not in FOLDERS:
        raise ValueError(f"unknown data folder {folder!r}; known folders are {list(FOLDERS)}")
    return _ROOT / folder


@dataclass(frozen=True)
class Dataset:
    """A registry entry: how to read one bundled dataset and what it contains."""

    name: str
    folder: str
    path: str
    description: str
    reader: Callable[[Path], pd.DataFrame]
    key: tuple = ()
    positive: tuple = ()
    finite: tuple = ()
    extra: dict = field(default_factory=dict)

    def load(self) -> pd.DataFrame:
        df = self.reader(data_dir(self.folder) / self.path)
        what = f"dataset {self.name!r}"
        if self.finite:
            V.check_finite(df, list(self.finite), what)
        if self.positive:
            V.check_positive(df, list(self.positive), what)
        if self.key:
            V.check_unique(df, list(self.key), what)
        return df


def read_gene_expression(path: Path, pdata: Path | None = None) -> pd.DataFrame:
    """Read the HMOGP-LV "gene-expression" layout into a tidy frame.

    ``<name>.csv`` has one row per task (column 0 = label, then the concatenated curves of its
    replicates); ``<name>_pdata.csv`` gives ``(replicate_id 1-based, x)`` per value column.

    Returns:
      Columns ``task`` (str), ``replicate`` (int, 0-based), ``point`` (index within the curve),
      ``x`` (float), ``value`` (float; NaN kept where the file has NaN, e.g. ``*_bleu2``).
    """
    path = Path(path)
    pdata = Path(pdata) if pdata else path.with_name(path.stem + "_pdata.csv")
    raw = pd.read_csv(path, header=None)
    raw = raw.dropna(axis=1, how="all")  # trailing commas produce an all-empty last column
    p = pd.read_csv(pdata, header=None, names=["replicate", "x"])
    values = raw.iloc[:, 1:].to_numpy(dtype=float)
    if values.shape[1] != len(p):
        raise ValueError(
            f"{path.name}: {values.shape[1]} value columns but {pdata.name} describes {len(p)}; "
            "the pair of files does not match"
        )
    rep = p["replicate"].to_numpy(dtype=int) - 1
    point = p.groupby("replicate").cumcount().to_numpy()
    tasks = raw.iloc[:, 0].astype(str).to_numpy()
    return pd.DataFrame(
        {
            "task": np.repeat(tasks, len(p)),
            "replicate": np.tile(rep, len(tasks)),
            "point": np.tile(point, len(tasks)),
            "x": np.tile(p["x"].to_numpy(dtype=float), len(tasks)),
            "value": values.reshape(-1),
        }
    )


def _read_csv(path: Path) -> pd.DataFrame:
    return pd.read_csv(path)


def _read_epoch(path: Path) -> pd.DataFrame:
    df = pd.read_csv(path)
    out = pd.DataFrame(
        {
            "N": df["Model Size"].astype(float),
            "C": df["Training FLOP"].astype(float),
            "loss": df["loss"].astype(float),
        }
    )
    out["D"] = out["C"] / (6.0 * out["N"])
    return out[["N", "D", "C", "loss"]]


def _read_split_keys(path: Path) -> pd.DataFrame:
    keys = json.loads(path.read_text())
    rows = [(k, split) for split, names in keys.items() for k in names]
    return pd.DataFrame(rows, columns=["ncpl_name", "split"])


def _read_npy_dir(path: Path) -> pd.DataFrame:
    frames = []
    for f in sorted(path.glob("*.npy")):
        metric, src, tgt = f.stem.split("_")[:3]
        arr = np.load(f, allow_pickle=False)
        frames.append(
            pd.DataFrame(
                {"metric": metric, "src": src, "tgt": tgt, "point": np.arange(arr.size), "value": arr}
            )
        )
    return pd.concat(frames, ignore_index=True)


def _read_lc_json(path: Path) -> pd.DataFrame:
    frames = []
    for f in sorted(path.glob("*.json")):
        size = f.stem.split("_")[3]
        for pair, vals in json.loads(f.read_text()).items():
            src, tgt = pair.split("-")
            frames.append(
                pd.DataFrame(
                    {"size": size, "src": src, "tgt": tgt, "point": np.arange(len(vals)), "bleu": vals}
                )
            )
    return pd.concat(frames, ignore_index=True)


def _ge_reader(pdata_suffix: str = "_pdata.csv"):
    def reader(path: Path) -> pd.DataFrame:
        return read_gene_expression(path, path.with_name(path.stem + pdata_suffix))

    return reader


def _build() -> dict[str, Dataset]:
    d: dict[str, Dataset] = {}

    def add(ds: Dataset) -> None:
        d[ds.name] = ds

    ge_cols = "task, replicate, point, x, value"
    # --- pillar 1: zero-shot learning curves -------------------------------------------
    for name, sub, stem, desc in [
        ("nanogpt_large", "nanogpt_large", "layer_over_embd", "30 nanoGPT validation-loss curves: task = n_embd, replicate = n_layer index (8,10,12,24,32,48), x = ln(step), 11 points"),
        ("nanogpt_large_exchanged", "nanogpt_large", "embd_over_layer", "nanoGPT large with the hierarchy exchanged: task = n_layer, replicate = n_embd index"),
        ("nanogpt_large_regen", "nanogpt_large_regen", "layer_over_embd", "nanoGPT large regenerated from the raw logs (same layout)"),
        ("nanogpt_small", "nanogpt_small", "layer_over_embd", "nanoGPT small: task = n_embd, replicate = n_layer index"),
    ]:
        add(Dataset(name, "zeroshot_lc", f"{sub}/{stem}.csv", f"{desc}. Columns: {ge_cols}.",
                    _ge_reader(), key=("task", "replicate", "point"), finite=("x", "value")))
    bil = data_dir("zeroshot_lc") / "bilingual"
    for f in sorted(bil.glob("*_over_*.csv")):
        if f.stem.endswith("_pdata"):
            continue
        add(Dataset(f"bilingual_{f.stem}", "zeroshot_lc", f"bilingual/{f.name}",
                    f"Bilingual MT learning curves ({f.stem}). Columns: {ge_cols}.", _ge_reader(),
                    key=("task", "replicate", "point"), finite=("x", "value")))
    for run in ("Transformer_ood_tseed1", "mBart50_ood_tseed2"):
        add(Dataset(f"bilingual_raw_{run}", "zeroshot_lc", f"bilingual/raw_npy/{run}",
                    "Raw per-pair bilingual curves (.npy). Columns: metric, src, tgt, point, value.",
                    _read_npy_dir, key=("metric", "src", "tgt", "point"), finite=("value",)))
    ml = data_dir("zeroshot_lc") / "multilingual"
    for side in ("same_source", "same_target"):
        for f in sorted((ml / side).glob("*_metric_bleu.csv")):
            lang = f.stem.split("_")[1]
            add(Dataset(f"multilingual_{side}_{lang}", "zeroshot_lc", f"multilingual/{side}/{f.name}",
                        f"M2M-100 BLEU curves ({side}, language {lang}); task = model size, x = ln(v) from "
                        f"*_pdata_log.csv, 20 points. Columns: {ge_cols}.", _ge_reader("_pdata_log.csv"),
                        key=("task", "replicate", "point"), finite=("x", "value")))
    add(Dataset("multilingual_lc", "zeroshot_lc", "multilingual/LC_data",
                "M2M-100 raw BLEU curves from the JSON copies of the original pickles (the pickles are "
                "bundled for provenance only and never unpickled). Columns: size, src, tgt, point, bleu.",
                _read_lc_json, key=("size", "src", "tgt", "point"), finite=("bleu",)))
    # --- pillar 2: observational scaling ------------------------------------------------
    for name, fname, desc in [
        ("obscaling_base", "base_llm_benchmark_eval.csv", "Base LLMs: family, size, data, FLOPs (1E21) and 8 benchmark scores"),
        ("obscaling_base_sub_10b", "base_llm_benchmark_eval_sub_10b.csv", "Base LLMs under 10B parameters"),
        ("obscaling_emergent", "base_llm_emergent_capability_eval.csv", "BIG-bench emergent-capability scores of base LLMs"),
        ("obscaling_post_training", "base_llm_post_training_eval.csv", "GSM8K / BBH post-training-technique scores of base LLMs"),
        ("obscaling_leaderboard_v2", "base_llm_leaderboard_v2_eval.csv", "Open LLM Leaderboard v2 scores of base LLMs"),
        ("obscaling_instruct", "instruct_llm_benchmark_eval.csv", "Instruction-tuned LLMs: benchmarks, Arena Elo, MT-Bench"),
        ("obscaling_agent", "instruct_llm_agent_eval.csv", "AgentBench / AgentBoard scores of instruction-tuned LLMs"),
    ]:
        add(Dataset(name, "obscaling", fname, f"{desc}. One row per model (column Model); empty = missing.",
                    _read_csv, key=("Model",)))
    # --- pillar 3: context-aware scaling ------------------------------------------------
    for name, fname, desc, pos in [
        ("ruler", "ruler_readme_results.csv", "RULER results (model, n_ctx, n_pmt, task, score)", ("n_ctx", "n_pmt")),
        ("babilong", "babilong_results.csv", "BABILong results with item counts (n_items, n_correct)", ("n_ctx",)),
        ("longcontext_icl", "longcontext_icl_results.csv", "Long-context many-shot ICL results (Bertsch et al. 2024)", ("n_ctx", "n_pmt")),
        ("context_compute_table", "compute_table.csv", "The context-law paper's compute table (12 rows)", ("N_nonembedding", "n_ctx_tokens")),
        ("context_eval_datasets", "eval_datasets.csv", "Evaluation datasets of the context-law paper", ()),
        ("context_reported_errors", "reported_errors.csv", "Errors reported by the context-law paper", ()),
    ]:
        add(Dataset(name, "context_law", fname, f"{desc}. See context_law/SOURCE.md for columns.", _read_csv, positive=pos))
    # --- pillar 4: configuration -> performance ------------------------------------------
    add(Dataset("epoch_chinchilla", "ncpl", "epoch_chinchilla_svg_extracted_data.csv",
                "Epoch AI's 245 (N, C, loss) points extracted from the Chinchilla paper's SVG; D = C / (6N). "
                "Columns: N, D, C, loss.", _read_epoch, positive=("N", "D", "C", "loss")))
    for name, fname, desc, key in [
        ("ncpl_runs", "ncpl_runs.csv", "5,086 Marin + StepLaw runs: configuration, final loss, chinchilla_ncpl, split", ("run_id",)),
        ("losscast_nanochat_runs", "losscast_nanochat_runs.csv", "810 nanochat runs of LossCast-Bench: flattened config + final loss", ("run_id",)),
        ("steplaw_dense", "steplaw_dense_lr_bs_loss.csv", "StepLaw dense LR/BS grid: h, ffnh, numh, numl, lr, bs, ti, loss, D, N", ()),
        ("steplaw_moe", "steplaw_moe_lr_bs_loss.csv", "StepLaw MoE LR/BS grid", ()),
        ("steplaw_bootstrap", "steplaw_fitted_lr_bs_bootstrap_params.csv", "1,000 bootstrap fits of the StepLaw LR/BS law", ()),
        ("gadre2024_overtraining", "gadre2024_overtraining_runs.csv", "Gadre et al. 2024: 104 over-training runs with losses", ("name",)),
    ]:
        add(Dataset(name, "ncpl", fname, f"{desc}. See ncpl/SOURCE.md for columns.", _read_csv, key=key))
    for name, fname in [("ncpl_curves", "ncpl_curves.csv.gz"), ("losscast_nanochat_curves", "losscast_nanochat_curves.csv.gz")]:
        add(Dataset(name, "ncpl", fname, "Loss curves, long format. Columns: run_id, step, loss.", _read_csv,
                    key=("run_id", "step"), finite=("loss",)))
    for src in ("marin", "steplaw"):
        add(Dataset(f"ncpl_split_keys_{src}", "ncpl", f"ncpl_split_keys_{src}.json",
                    f"Official NCPL split keys for {src}. Columns: ncpl_name, split.", _read_split_keys))
    return d


@lru_cache(maxsize=1)
def _registry() -> dict[str, Dataset]:
    return _build()


def dataset_names() -> list[str]:
    """Names accepted by :func:`load`."""
    return sorted(_registry())


def load(name: str) -> pd.DataFrame:
    """Load a bundled dataset as a validated tidy DataFrame (a fresh copy each call).

    Example:
      >>> df = load("epoch_chinchilla")
      >>> list(df.columns), len(df)
      (['N', 'D', 'C', 'loss'], 245)
    """
    reg = _registry()
    if name not in reg:
        raise ValueError(f"unknown dataset {name!r}; available: {dataset_names()}")
    return _cached(name).copy()


@lru_cache(maxsize=None)
def _cached(name: str) -> pd.DataFrame:
    return _registry()[name].load()


def list_datasets(with_shape: bool = True) -> list[dict]:
    """One dict per dataset: name, folder, path, description (and rows, columns)."""
    out = []
    for name in dataset_names():
        ds = _registry()[name]
        row = {"name": name, "folder": ds.folder, "path": ds.path, "description": ds.description}
        if with_shape:
            df = _cached(name)
            row["rows"] = int(len(df))
            row["columns"] = [str(c) for c in df.columns]
        out.append(row)
    return out
