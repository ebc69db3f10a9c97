"""Bundled-data experiments: in-distribution fit and < 10k -> longer extrapolation, per source and task.

Both experiments of every task are stacked and fitted in one vmapped DE + L-BFGS program (the
held-out rows carry weight 0 in the extrapolation fit).  MAE is split by n_pmt <= n_ctx / > n_ctx
as in the paper's ablation table.  :func:`bayes_extrapolation` adds NUTS on the extrapolation
split and scores the 90 % predictive bands on the held-out (longer) prompts; :func:`source_report`
turns a result into plain JSON-ready numbers.
"""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from jaxscale.context_law.data import load_source, split_mask, stack_tasks
from jaxscale.context_law.fit import convergence_reason, fit_many, theta_dict
from jaxscale.context_law.model import PENALTIES, Spec, predict_law

__all__ = ["PRESETS", "CHANCE_FLOOR", "default_spec", "mae_split", "evaluate_source", "predict_frame",
           "bayes_extrapolation", "source_report"]

#: Named presets of the bundled sources.  Many-shot ICL is one compute level (alpha fixed); the cliff
#: location is fitted as an effective limit (the ICL n_pmt at the largest shot count equals n_ctx by
#: construction).  NUTS: binomial on BABILong's item counts, Laplace (robust, its posterior mean
#: tracks the median, i.e. MAE) on the others' cell scores.
PRESETS = {
    "longcontext_icl": Spec(penalty="logistic", fit_alpha=False, fit_shift=True, likelihood="laplace"),
    "ruler": Spec(penalty="logistic", fit_alpha=True, fit_shift=True, likelihood="laplace"),
    "babilong": Spec(penalty="logistic", fit_alpha=True, fit_shift=True, likelihood="binomial"),
}
CHANCE_FLOOR = {"longcontext_icl": True, "ruler": False, "babilong": False}


def default_spec(source: str, penalty: str | None = None, decay: bool = False) -> Spec:
    """The preset of a bundled source, with an optional penalty and the decay extension."""
    if source not in PRESETS:
        raise ValueError(f"dataset={source!r} is unknown; choose one of {sorted(PRESETS)}")
    if penalty is not None and penalty not in PENALTIES:
        raise ValueError(f"penalty={penalty!r} is unknown; choose one of {PENALTIES}")
    spec = PRESETS[source]
    if penalty is not None:
        spec = spec._replace(penalty=penalty)
    return spec._replace(decay=decay)


def mae_split(p, y, beyond) -> dict:
    """MAE over all rows and split by n_pmt <= n_ctx / > n_ctx (None, with a reason, where a subset is empty)."""
    p, y, beyond = np.asarray(p), np.asarray(y), np.asarray(beyond, dtype=bool)
    err = np.abs(p - y)
    out = {}
    for name, mask in (("all", np.ones_like(beyond)), ("le_ctx", ~beyond), ("gt_ctx", beyond)):
        out[name] = float(err[mask].mean()) if mask.any() else None
        if out[name] is None:
            out[f"{name}_reason"] = "no row in this subset"
    out.update(n_le=int((~beyond).sum()), n_gt=int(beyond.sum()))
    return out


def predict_frame(spec: Spec, theta, df: pd.DataFrame, chance_floor: bool) -> np.ndarray:
    """The law at ``theta`` for the rows of a tidy bundled frame (columns C, n_pmt, n_ctx, chance)."""
    floor = df["chance"].to_numpy(float) if chance_floor else 0.0
    return np.asarray(predict_law(spec, theta, np.log(df["C"].to_numpy(float)), df["n_pmt"].to_numpy(float),
                                  df["n_ctx"].to_numpy(float), floor))


def evaluate_source(key, source: str, spec: Spec | None = None, *, cutoff: float = 10_000.0,
                    restarts: int | None = None, popsize: int | None = None, maxiter: int | None = None,
                    df: pd.DataFrame | None = None, extrapolate: bool = True) -> dict:
    """Fit every task of ``source`` in-distribution and (optionally) on prompts < ``cutoff`` tokens.

    ``spec`` defaults to the source's preset (:data:`PRESETS`); ``restarts``/``popsize``/``maxiter``
    override its optimiser settings.  Returns ``{"source", "spec", "tasks": [{task, params, mae_in{...},
    mae_out{...}, n_train, ...}], "frames": {task: frame}, "fits": ContextFit, "task_names"}``
    (in ``fits``, tasks come first in-distribution, then, with ``extrapolate``, the extrapolation fits).
    """
    spec = spec or default_spec(source)
    spec = spec._replace(**{k: v for k, v in dict(restarts=restarts, popsize=popsize, maxiter=maxiter).items()
                            if v is not None})
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
    labels = tasks + ([f"{t} (< {cutoff:g} tokens)" for t in tasks] if extrapolate else [])
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*only 2 compute levels.*")
        fits = fit_many(key, stack_tasks(all_frames, masks, chance_floor=floor), spec, what=f"{source} fit",
                        labels=labels)
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
            "fits": fits, "task_names": tasks, "fit_labels": labels, "cutoff": cutoff}


def _convergence(res: dict) -> list:
    spec = Spec(**res["spec"])
    fits = res["fits"]
    out = []
    for i, label in enumerate(res["fit_labels"]):
        conv = bool(np.asarray(fits.de_converged)[i])
        out.append({"fit": label, "converged": conv, "reason": convergence_reason(
            conv, np.asarray(fits.de_generations)[i], np.asarray(fits.polished)[i], spec)})
    return out


def bayes_extrapolation(key, res: dict, spec: Spec | None = None, level: float = 0.9) -> dict:
    """Joint NUTS over all tasks of an :func:`evaluate_source` result on its extrapolation split
    (prompts < cutoff), started at the point fits; coverage of the ``level`` predictive band on the
    held-out (longer) rows, the posterior-mean MAE there and alpha's 90 % interval per task."""
    from jaxscale.context_law.bayes import coverage, fit_bayes, predictive_bands

    spec = spec or Spec(**res["spec"])
    names, frames = res["task_names"], [res["frames"][t] for t in res["task_names"]]
    if len(res["fit_labels"]) != 2 * len(names):
        raise ValueError("bayes_extrapolation needs an evaluate_source result with extrapolate=True")
    masks = [split_mask(f, res["cutoff"]) for f in frames]
    data = stack_tasks(frames, masks, chance_floor=CHANCE_FLOOR[res["source"]])
    n = data.y.shape[1]

    def pad(col):
        return np.stack([np.concatenate([f[col].to_numpy(float), np.full(n - len(f), f[col].iloc[0])])
                         for f in frames])

    lik = spec.likelihood
    kw = {}
    if lik == "binomial":
        if frames[0]["n_items"].isna().any():
            raise ValueError(f"{res['source']}: likelihood='binomial' needs item counts, which this source "
                             "does not have; use --likelihood laplace/normal/beta")
        kw = dict(n_items=pad("n_items"), n_correct=pad("n_correct"))
    n_t = len(names)
    bf = fit_bayes(key, data, spec, likelihood=lik, init_theta=np.asarray(res["fits"].theta[n_t:]),
                   num_warmup=spec.num_warmup, num_samples=spec.num_samples, num_chains=spec.num_chains, **kw)
    bands = predictive_bands(key, bf, lik, kw.get("n_items"), level=level)
    out = {"likelihood": lik, "level": level,
           "diagnostics": {"max_r_hat": float(bf.posterior.diagnostics["max_r_hat"]),
                           "divergences": int(bf.posterior.diagnostics["divergences"])},
           "tasks": []}
    for i, (t, f, m) in enumerate(zip(names, frames, masks)):
        k = len(f)
        b = {key_: v[i, :k] for key_, v in bands.items()}
        y = f["score"].to_numpy(float)
        test = ~m
        row = {"task": t, "coverage_90": coverage(y, b, test),
               "mae_out_posterior_mean": mae_split(b["mean"][test], y[test], f["beyond_ctx"][test])}
        if spec.fit_alpha:
            row["alpha_90"] = [float(np.quantile(bf.theta[:, i, 1], q)) for q in (0.05, 0.95)]
        else:
            row["alpha_90"], row["alpha_90_reason"] = None, f"alpha is fixed at {spec.alpha_fixed} (fit_alpha=False)"
        out["tasks"].append(row)
    out["coverage_90"] = float(np.mean([r["coverage_90"] for r in out["tasks"]]))
    return out


def source_report(res: dict) -> dict:
    """JSON-ready summary of an :func:`evaluate_source` result: per task parameters, MAE in and out,
    DE convergence of every fit; means over tasks."""
    out = {"dataset": res["source"], "spec": res["spec"], "cutoff_tokens": res["cutoff"], "tasks": []}
    conv = _convergence(res)
    n_t = len(res["task_names"])
    for i, row in enumerate(res["tasks"]):
        r = {k: row[k] for k in ("task", "params", "n", "mae_in")}
        r["converged"], r["reason"] = conv[i]["converged"], conv[i]["reason"]
        if "mae_out" in row:
            r.update({k: row[k] for k in ("mae_out", "n_train", "n_test", "extrap_params")})
            r["extrap_converged"], r["extrap_reason"] = conv[n_t + i]["converged"], conv[n_t + i]["reason"]
        out["tasks"].append(r)
    out["converged"] = all(c["converged"] for c in conv)
    out["mae_in_mean"] = float(np.mean([r["mae_in"]["all"] for r in res["tasks"]]))
    if all("mae_out" in r for r in res["tasks"]):
        out["mae_out_mean"] = float(np.mean([r["mae_out"]["all"] for r in res["tasks"]]))
    return out
