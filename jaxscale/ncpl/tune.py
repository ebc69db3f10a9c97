"""Hyper-parameter tuning with a trained config-to-loss model on a held-out (size, budget) cell.

The model scores (a) every run that exists in the cell and (b) a dense LR (x batch size on
StepLaw) grid built from a template run of the cell. The chosen setting's *true* loss is the loss
of the existing run (nearest in log-LR/log-BS to the grid optimum); it is compared with the best
run of the cell and with the StepLaw LR/BS law (mean of the bundled bootstrap fits).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from jaxscale.ncpl.dataset import ncpl_dir
from jaxscale.ncpl.serialize import ncpl_frame

__all__ = ["steplaw_law", "cell_key", "largest_cell", "cell_runs", "grid_configs", "tune_cell"]


def steplaw_law(N: float, D: float, path=None) -> dict:
    """StepLaw optimum ``lr* = e^a N^b D^c``, ``B* = e^d D^e`` (tokens), bootstrap mean and 90% range."""
    p = pd.read_csv(path or ncpl_dir() / "steplaw_fitted_lr_bs_bootstrap_params.csv")
    lr = np.exp(p.lr_intercept + p.lr_coefN * np.log(N) + p.lr_coefD * np.log(D))
    bs = np.exp(p.bs_intercept + p.bs_coefD * np.log(D))
    mean = p.mean()
    lr0 = float(np.exp(mean.lr_intercept + mean.lr_coefN * np.log(N) + mean.lr_coefD * np.log(D)))
    bs0 = float(np.exp(mean.bs_intercept + mean.bs_coefD * np.log(D)))
    return {"lr": lr0, "batch_tokens": bs0, "lr_q05_q95": [float(np.quantile(lr, .05)), float(np.quantile(lr, .95))],
            "batch_tokens_q05_q95": [float(np.quantile(bs, .05)), float(np.quantile(bs, .95))]}


def cell_key(df: pd.DataFrame) -> pd.Series:
    """(source, size_tag, optimizer, nominal D to 2 significant digits) as one string per run."""
    d = df["D_billion"].map(lambda v: f"{float(f'{v:.2g}'):g}")
    return df["source"] + "|" + df["size_tag"].astype(str) + "|" + df["optimizer"] + "|" + d


def largest_cell(df: pd.DataFrame, source: str, split: str = "ood_val") -> str:
    sub = df[(df["source"] == source) & (df["ncpl_split"] == split)]
    if sub.empty:
        raise ValueError(f"no {source} runs in split {split}")
    return cell_key(sub).value_counts().index[0]


def cell_runs(df: pd.DataFrame, cell: str) -> pd.DataFrame:
    sub = df[cell_key(df) == cell]
    if len(sub) < 2:
        raise ValueError(f"cell {cell!r} has {len(sub)} runs; pick one with >= 2 (see largest_cell)")
    return sub


def grid_configs(template: pd.Series, lrs, batch_seqs=None) -> pd.DataFrame:
    """Configs of the template run with LR (and batch size at fixed tokens) varied."""
    rows = []
    for bs in (batch_seqs if batch_seqs is not None else [template["batch_seqs"]]):
        for lr in lrs:
            r = template.copy()
            r["lr"] = lr
            r["batch_seqs"] = bs
            steps = max(int(round(template["D_billion"] * 1e9 / (bs * template["seq_len"]))) - 1, 1)
            r["total_steps"] = steps
            if template["source"] == "steplaw":  # min LR fixed at 1e-5 in StepLaw
                r["final_lr_ratio"] = 1e-5 / lr
            rows.append(r)
    return ncpl_frame(pd.DataFrame(rows).reset_index(drop=True))


def tune_cell(predict, df: pd.DataFrame, cell: str, n_lr: int = 25, n_bs: int = 9) -> dict:
    """Choose LR (x BS on StepLaw) for ``cell`` with ``predict(frame) -> loss``; compare with the truth."""
    runs = ncpl_frame(cell_runs(df, cell))
    true = runs["final_loss"].to_numpy(float)
    pred_runs = np.asarray(predict(runs), float)
    steplaw = runs["source"].iloc[0] == "steplaw"
    lrs = np.geomspace(runs["lr"].min(), runs["lr"].max(), n_lr)
    bss = np.unique(np.geomspace(runs["batch_seqs"].min(), runs["batch_seqs"].max(), n_bs).round()) if steplaw else None
    template = runs.iloc[int(np.argmin(true))]
    grid = grid_configs(template, lrs, bss)
    pg = np.asarray(predict(grid), float)
    g = int(np.argmin(pg))

    # tie-break: among runs equally close in LR/BS, prefer the one sharing the template's other
    # hyper-parameters (Marin cells also sweep weight decay, betas, warm-up ...)
    others = [c for c in ("weight_decay", "beta1", "beta2", "eps", "warmup_steps", "grad_clip", "final_lr_ratio",
                          "adam_lr", "preconditioner_lr", "lr_schedule", "batch_seqs") if c in runs.columns]
    mismatch = sum((runs[c].astype(str) != str(template[c])).to_numpy(float) for c in others)

    def nearest(lr, bs):
        d = np.log(runs["lr"].to_numpy(float) / lr) ** 2
        if steplaw:
            d = d + np.log(runs["batch_seqs"].to_numpy(float) / bs) ** 2
        return int(np.argmin(d + 1e-6 * mismatch))

    best = int(np.argmin(true))
    pick_runs = int(np.argmin(pred_runs))
    pick_grid = nearest(grid["lr"].iloc[g], grid["batch_seqs"].iloc[g])
    out = {
        "cell": cell, "n_runs": int(len(runs)),
        "best_run": {"lr": float(runs["lr"].iloc[best]), "batch_seqs": float(runs["batch_seqs"].iloc[best]),
                     "loss": float(true[best])},
        "model_pick_among_runs": {"lr": float(runs["lr"].iloc[pick_runs]), "batch_seqs": float(runs["batch_seqs"].iloc[pick_runs]),
                                  "loss": float(true[pick_runs]), "regret": float(true[pick_runs] - true[best])},
        "model_pick_grid": {"lr": float(grid["lr"].iloc[g]), "batch_seqs": float(grid["batch_seqs"].iloc[g]),
                            "predicted_loss": float(pg[g]), "nearest_run_loss": float(true[pick_grid]),
                            "regret": float(true[pick_grid] - true[best])},
        "grid": {"lr": grid["lr"].tolist(), "batch_seqs": grid["batch_seqs"].tolist(), "pred": pg.tolist()},
    }
    if steplaw:
        n_abs, d_tok = float(runs["N_million"].iloc[0]) * 1e6, float(template["D_billion"]) * 1e9
        law = steplaw_law(n_abs, d_tok)
        j = nearest(law["lr"], law["batch_tokens"] / float(template["seq_len"]))
        law.update(nearest_run_loss=float(true[j]), regret=float(true[j] - true[best]),
                   nearest_run_lr=float(runs["lr"].iloc[j]), nearest_run_batch_seqs=float(runs["batch_seqs"].iloc[j]))
        out["steplaw_law"] = law
    return out
