"""Real-data experiments: in-distribution fit and < 10k -> longer extrapolation, per source and task.

Both experiments of every task are stacked and fitted in one vmapped DE + L-BFGS program (the
held-out rows carry weight 0 in the extrapolation fit).  MAE is split by n_pmt <= n_ctx / > n_ctx
as in the paper's ablation table.
"""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from jaxscale.context_law.data import load_source, split_mask, stack_tasks
from jaxscale.context_law.fit import fit_many, theta_dict
from jaxscale.context_law.model import LawSpec, predict

__all__ = ["DEFAULT_SPECS", "default_spec", "mae_split", "evaluate_source", "predict_frame"]

# Defaults per source: ICL is one compute level (alpha fixed); the cliff location is fitted as an
# effective limit (the ICL n_pmt at the largest shot count equals n_ctx by construction).
DEFAULT_SPECS = {
    "longcontext_icl": LawSpec(penalty="logistic", fit_alpha=False, fit_shift=True),
    "ruler": LawSpec(penalty="logistic", fit_alpha=True, fit_shift=True),
    "babilong": LawSpec(penalty="logistic", fit_alpha=True, fit_shift=True),
}
CHANCE_FLOOR = {"longcontext_icl": True, "ruler": False, "babilong": False}


def default_spec(source: str, penalty: str | None = None, decay: bool = False) -> LawSpec:
    if source not in DEFAULT_SPECS:
        raise ValueError(f"dataset={source!r} is unknown; choose one of {sorted(DEFAULT_SPECS)}")
    spec = DEFAULT_SPECS[source]
    if penalty is not None:
        spec = spec._replace(penalty=penalty)
    return spec._replace(decay=decay)


def mae_split(p, y, beyond) -> dict:
    """MAE over all rows and split by n_pmt <= n_ctx / > n_ctx (None where a subset is empty)."""
    p, y, beyond = np.asarray(p), np.asarray(y), np.asarray(beyond, dtype=bool)
    err = np.abs(p - y)

    def m(mask):
        return float(err[mask].mean()) if mask.any() else None

    return {"all": m(np.ones_like(beyond)), "le_ctx": m(~beyond), "gt_ctx": m(beyond),
            "n_le": int((~beyond).sum()), "n_gt": int(beyond.sum())}


def predict_frame(spec: LawSpec, theta, df: pd.DataFrame, chance_floor: bool) -> np.ndarray:
    floor = df["chance"].to_numpy(float) if chance_floor else 0.0
    return np.asarray(predict(spec, theta, np.log(df["C"].to_numpy(float)), df["n_pmt"].to_numpy(float),
                              df["n_ctx"].to_numpy(float), floor))


def evaluate_source(key, source: str, spec: LawSpec | None = None, *, cutoff: float = 10_000.0,
                    restarts: int = 2, popsize: int = 15, maxiter: int = 1000, df: pd.DataFrame | None = None,
                    extrapolate: bool = True) -> dict:
    """Fit every task of ``source`` in-distribution and (optionally) on prompts < ``cutoff`` tokens.

    Returns ``{"source", "spec", "tasks": [{task, params, mae_in{...}, mae_out{...}, n_train, ...}],
    "frames": {task: frame}, "fits": ContextFit}``.
    """
    spec = spec or default_spec(source)
    floor = CHANCE_FLOOR[source]
    df = load_source(source) if df is None else df
    tasks = sorted(df["task"].unique())
    frames = [df[df["task"] == t].reset_index(drop=True) for t in tasks]
    masks = [np.ones(len(f), bool) for f in frames]
    if extrapolate:
        for f in frames:
            tr = split_mask(f, cutoff)
            if tr.sum() < 5 or tr.all():
                raise ValueError(f"{source}: task {f['task'].iloc[0]!r} has {int(tr.sum())} rows below {cutoff:g} "
                                 f"tokens and {int((~tr).sum())} above; the extrapolation split needs both.")
        masks = masks + [split_mask(f, cutoff) for f in frames]
    all_frames = frames + (frames if extrapolate else [])
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*only 2 compute levels.*")
        fits = fit_many(key, stack_tasks(all_frames, masks, chance_floor=floor), spec, restarts=restarts,
                        popsize=popsize, maxiter=maxiter, what=f"{source} fit")
    rows = []
    for i, (t, f) in enumerate(zip(tasks, frames)):
        p = predict_frame(spec, fits.theta[i], f, floor)
        row = {"task": t, "params": theta_dict(spec, fits.theta[i]), "n": len(f),
               "mae_in": mae_split(p, f["score"], f["beyond_ctx"])}
        if extrapolate:
            j = len(tasks) + i
            tr = masks[j]
            p2 = predict_frame(spec, fits.theta[j], f, floor)
            row["extrap_params"] = theta_dict(spec, fits.theta[j])
            row["mae_train"] = mae_split(p2[tr], f["score"][tr], f["beyond_ctx"][tr])
            row["mae_out"] = mae_split(p2[~tr], f["score"][~tr], f["beyond_ctx"][~tr])
            row["n_train"], row["n_test"] = int(tr.sum()), int((~tr).sum())
        rows.append(row)
    return {"source": source, "spec": spec._asdict(), "tasks": rows, "frames": dict(zip(tasks, frames)),
            "fits": fits, "task_names": tasks}
