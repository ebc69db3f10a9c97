"""Bundled-data experiments: in-distribution fit and < 10k -> longer extrapolation, per source and task.

Both experiments of every task are stacked and fitted in one vmapped DE + L-BFGS program (the
held-out rows carry weight 0 in the extrapolation fit).  MAE is split by n_pmt <= n_ctx / > n_ctx
as in the paper's ablation table.  :func:`bayes_extrapolation` adds NUTS on the extrapolation
split and scores the 90 % predictive bands on the held-out (longer) prompts; :func:`source_report`
turns a result into plain JSON-ready numbers.
"""
from __future__ import annotations

import warnings

import jax
import numpy as np
import pandas as pd

from jaxscale.context_law.data import load_source, split_mask, stack_tasks
from jaxscale.context_law.extrapolation import distance
from jaxscale.context_law.fit import bound_messages, convergence_reason, fit_many, params_at_bounds, theta_dict
from jaxscale.context_law.model import PENALTIES, Spec, param_names, predict_law
from jaxscale.infer import bucket

__all__ = ["PRESETS", "CHANCE_FLOOR", "default_spec", "mae_split", "evaluate_source", "predict_frame", "frame_distance",
           "bayes_extrapolation", "source_report"]

#: Named presets of the bundled sources.  Many-shot ICL is one compute level (alpha fixed); the cliff
#: location is fitted as an effective limit (the ICL n_pmt at the largest shot count equals n_ctx by
#: construction).  NUTS: binomial on BABILong's item counts, Laplace (robust, its posterior mean
#: tracks the median, i.e. MAE) on the others' cell scores. Many-shot ICL draws 1000 per chain: its
#: slowest site (the prompt-length law's centre, ESS about one draw in five) gave a split R-hat of
#: 1.010-1.015 over three seeds with 400 draws per chain, 1.004-1.009 with 1000.
PRESETS = {
    "longcontext_icl": Spec(penalty="logistic", fit_alpha=False, fit_shift=True, likelihood="laplace",
                            num_samples=1000),
    "ruler": Spec(penalty="logistic", fit_alpha=True, fit_shift=True, likelihood="laplace"),
    "babilong": Spec(penalty="logistic", fit_alpha=True, fit_shift=True, likelihood="binomial"),
}
CHANCE_FLOOR = {"longcontext_icl": True, "ruler": False, "babilong": False}
_Z90 = 1.6448536269514722  # two-sided 90 % normal quantile


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


_law_rows = jax.jit(predict_law, static_argnames=("spec",))
_distance_rows = jax.jit(distance)


def _padded(*cols) -> tuple[int, list]:
    """Row columns padded to a bucket by repeating their first row (one compiled program serves
    every task length; eager array code would compile a program per operation and length)."""
    n = len(cols[0])
    m = bucket(n)
    return n, [np.concatenate([c, np.full(m - n, c[0] if n else 1.0)]) for c in cols]


def predict_frame(spec: Spec, theta, df: pd.DataFrame, chance_floor: bool) -> np.ndarray:
    """The law at ``theta`` for the rows of a tidy bundled frame (columns C, n_pmt, n_ctx, chance)."""
    floor = df["chance"].to_numpy(float) if chance_floor else np.zeros(len(df))
    n, cols = _padded(np.log(df["C"].to_numpy(float)), df["n_pmt"].to_numpy(float), df["n_ctx"].to_numpy(float),
                      floor)
    return np.asarray(_law_rows(spec, np.asarray(theta, float), *cols))[:n]


def frame_distance(box, df: pd.DataFrame) -> np.ndarray:
    """Decades outside the training ``box`` (one task's row of
    :func:`~jaxscale.context_law.extrapolation.training_box`) for the rows of a bundled frame."""
    n, cols = _padded(np.log(df["C"].to_numpy(float)), df["n_pmt"].to_numpy(float), df["n_ctx"].to_numpy(float))
    return np.asarray(_distance_rows(np.asarray(box, float), *cols))[:n]


def evaluate_source(key, source: str, spec: Spec | None = None, *, cutoff: float = 10_000.0,
                    restarts: int | None = None, popsize: int | None = None, maxiter: int | None = None,
                    df: pd.DataFrame | None = None, extrapolate: bool = True) -> dict:
    """Fit every task of ``source`` in-distribution and (optionally) on prompts < ``cutoff`` tokens.

    ``spec`` defaults to the source's preset (:data:`PRESETS`); ``restarts``/``popsize``/``maxiter``
    override its optimiser settings.  With ``extrapolate``, each task is also refitted inside its
    training prompts without the longest ``spec.backtest_frac`` of them (the backtest that learns
    the drift of the intervals; :mod:`jaxscale.context_law.extrapolation`), and the held-out rows
    are scored against the carry-forward baseline (:func:`jaxscale.context_law.baseline.carry_forward`).
    All fits run in one vmapped program. Design properties of the bundled tables (e.g. no training
    row past the context limit once the long prompts are held out) are returned as
    ``design_notes`` rather than warned; DE non-convergence is warned, and so is a parameter of an
    in-distribution or extrapolation fit at an end of its allowed range (per task ``at_bound`` and
    ``extrap_at_bound``; :func:`jaxscale.context_law.fit.params_at_bounds`).

    Returns ``{"source", "spec", "tasks": [{task, params, mae_in{...}, mae_out{...}, n_train, ...}],
    "frames": {task: frame}, "fits": ContextFit, "task_names", "fit_labels", "cutoff", "drift",
    "design_notes"}`` (in ``fits``, tasks come first in-distribution, then, with ``extrapolate``, the
    extrapolation fits, then the backtest refits).
    """
    from jaxscale.context_law.baseline import carry_forward, prompt_trend
    from jaxscale.context_law.extrapolation import backtest_weights, drift_from_backtest, training_box

    spec = spec or default_spec(source)
    spec = spec._replace(**{k: v for k, v in dict(restarts=restarts, popsize=popsize, maxiter=maxiter).items()
                            if v is not None})
    floor = CHANCE_FLOOR[source]
    df = load_source(source) if df is None else df
    tasks = sorted(df["task"].unique())
    frames = [df[df["task"] == t].reset_index(drop=True) for t in tasks]
    masks = [np.ones(len(f), bool) for f in frames]
    labels = list(tasks)
    bt = None
    if extrapolate:
        for f in frames:
            tr = split_mask(f, cutoff)
            if tr.sum() < 5 or tr.all():
                raise ValueError(f"{source}: task {f['task'].iloc[0]!r} has {int(tr.sum())} rows below {cutoff:g} "
                                 f"tokens and {int((~tr).sum())} above; the extrapolation split needs both.")
        train_masks = [split_mask(f, cutoff) for f in frames]
        extrap = stack_tasks(frames, train_masks, chance_floor=floor)
        w_past, future, ok = backtest_weights(extrap, spec, float(spec.backtest_frac))
        bt = (extrap, w_past, future, ok)
        past_masks = [w_past[i, :len(f)] > 0 for i, f in enumerate(frames)]
        masks = masks + train_masks + past_masks
        labels += [f"{t} (< {cutoff:g} tokens)" for t in tasks] + [f"{t} (backtest refit)" for t in tasks]
    all_frames = frames * (3 if extrapolate else 1)
    notes: list = []
    fits = fit_many(key, stack_tasks(all_frames, masks, chance_floor=floor), spec, what=f"{source} fit",
                    labels=labels, notes=notes)
    T = len(tasks)
    drift = None
    theta = np.asarray(fits.theta)  # indexed on the host (eager indexing compiles a program per shape)
    reported = 2 * T if extrapolate else T  # the in-distribution and extrapolation fits (not the backtest refits)
    for msg in bound_messages(spec, theta[:reported], f"{source} fit", labels[:reported], noun="fit"):
        warnings.warn(msg, UserWarning, stacklevel=2)
    at_bound = params_at_bounds(spec, theta)
    if extrapolate:
        extrap, w_past, future, ok = bt
        drift = drift_from_backtest(extrap, w_past, future, ok, theta[2 * T:], spec)
        box = training_box(extrap)
    rows = []
    for i, (t, f) in enumerate(zip(tasks, frames)):
        p = predict_frame(spec, theta[i], f, floor)
        row = {"task": t, "params": theta_dict(spec, theta[i]), "at_bound": at_bound[i], "n": len(f),
               "mae_in": mae_split(p, f["score"], f["beyond_ctx"])}
        if extrapolate:
            j = T + i
            tr = split_mask(f, cutoff)
            p2 = predict_frame(spec, theta[j], f, floor)
            y = f["score"].to_numpy(float)
            row["extrap_params"], row["extrap_at_bound"] = theta_dict(spec, theta[j]), at_bound[j]
            row["mae_train"] = mae_split(p2[tr], y[tr], f["beyond_ctx"][tr])
            row["mae_out"] = mae_split(p2[~tr], y[~tr], f["beyond_ctx"][~tr])
            row["n_train"], row["n_test"] = int(tr.sum()), int((~tr).sum())
            d = frame_distance(box[i], f)
            row["extrapolation"], row["point_extrap"] = d, p2
            n_par = len(param_names(spec))
            sigma = float(np.sqrt(np.sum((y[tr] - p2[tr]) ** 2) / max(int(tr.sum()) - n_par, 1)))
            half = _Z90 * np.sqrt(sigma ** 2 + (drift["tau"] * d) ** 2)
            row["point_lower"], row["point_upper"] = np.clip(p2 - half, 0, 1), np.clip(p2 + half, 0, 1)
            inside = (y >= row["point_lower"]) & (y <= row["point_upper"])
            row["coverage_90_point"] = float(inside[~tr].mean())
            row["extrapolation_max"] = float(d[~tr].max())
            cells = _cells(f, floor)
            base, n_fb = carry_forward(cells, tr, f["model"].to_numpy() if "model" in f else None)
            row["baseline_pred"] = np.asarray(base.mean)
            row["baseline_out"] = mae_split(row["baseline_pred"][~tr], y[~tr], f["beyond_ctx"][~tr])
            row["baseline_fallback_rows"] = n_fb
            row["trend_pred"] = np.asarray(prompt_trend(cells, tr, f["model"].to_numpy() if "model" in f else None)[0]
                                           .mean)
        rows.append(row)
    return {"source": source, "spec": spec._asdict(), "tasks": rows, "frames": dict(zip(tasks, frames)),
            "fits": fits, "task_names": tasks, "fit_labels": labels, "cutoff": cutoff, "drift": drift,
            "design_notes": notes,
            "backtest": None if bt is None else {"w_past": bt[1], "future": bt[2], "ok": bt[3]}}


def _cells(f: pd.DataFrame, floor: bool):
    """A bundled frame as the pillar's ``Data`` (one task)."""
    from jaxscale.context_law.contract import from_frame

    return from_frame(f, c_col="C", chance_col="chance" if floor else None, what=f"bundled {f['source'].iloc[0]}"
                      if "source" in f else None)


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
    (prompts < cutoff), started at the point fits, and, in the same program, over the backtest's
    past rows (:func:`jaxscale.context_law.bayes.fit_bayes_backtest`), whose errors on the backtest's
    future rows give the Bayesian drift; the ``level`` posterior-predictive band on the held-out
    (longer) rows includes the extrapolation discrepancy (sd = that drift times the row's distance
    outside the training cells). Returns coverage (mean over tasks and over
    rows), the held-out MAE of the posterior mean, of the point fit and of the carry-forward
    baseline, alpha's 90 % interval per task and the sampler's diagnostics."""
    import jax

    from jaxscale.context_law.bayes import coverage, fit_bayes_backtest, predictive_bands

    spec = spec or Spec(**res["spec"])
    names, frames = res["task_names"], [res["frames"][t] for t in res["task_names"]]
    if len(res["fit_labels"]) != 3 * len(names):
        raise ValueError("bayes_extrapolation needs an evaluate_source result with extrapolate=True")
    masks = [split_mask(f, res["cutoff"]) for f in frames]
    data = stack_tasks(frames, masks, chance_floor=CHANCE_FLOOR[res["source"]])
    n = data.y.shape[1]

    def pad(values, fill=None):
        return np.stack([np.concatenate([np.asarray(v, float), np.full(n - len(v), v[0] if fill is None else fill)])
                         for v in values])

    lik = spec.likelihood
    kw = {}
    if lik == "binomial":
        if frames[0]["n_items"].isna().any():
            raise ValueError(f"{res['source']}: likelihood='binomial' needs item counts, which this source "
                             "does not have; use --likelihood laplace/normal/beta")
        kw = dict(n_items=pad([f["n_items"].to_numpy() for f in frames]),
                  n_correct=pad([f["n_correct"].to_numpy() for f in frames]))
    n_t = len(names)
    bt = res["backtest"]
    bf, drift = fit_bayes_backtest(key, data, bt["w_past"], bt["future"], bt["ok"], spec,
                                   init_theta=np.asarray(res["fits"].theta[n_t:2 * n_t]),
                                   init_backtest=np.asarray(res["fits"].theta[2 * n_t:]), likelihood=lik,
                                   num_warmup=spec.num_warmup, num_samples=spec.num_samples,
                                   num_chains=spec.num_chains, **kw)
    tau = float(drift["tau"])
    extra = tau * pad([r["extrapolation"] for r in res["tasks"]], fill=0.0)
    bands = predictive_bands(jax.random.fold_in(key, 1), bf, lik, kw.get("n_items"), level=level, extra_sd=extra)
    d = bf.posterior.diagnostics
    out = {"likelihood": lik, "level": level, "drift_per_decade": tau, "drift": drift,
           "diagnostics": {"max_r_hat": float(d["max_r_hat"]), "min_ess": float(d["min_ess"]),
                           "divergences": int(d["divergences"]), "num_chains": int(d["num_chains"]),
                           "num_samples": int(d["num_samples"])},
           "tasks": []}
    if not np.isfinite(out["diagnostics"]["max_r_hat"]):
        out["diagnostics"]["max_r_hat_reason"] = "R-hat needs at least 2 chains of at least 4 draws"
    inside, err_post, err_point, err_base = [], [], [], []
    for i, (t, f, m) in enumerate(zip(names, frames, masks)):
        k = len(f)
        b = {key_: v[i, :k] for key_, v in bands.items()}
        y = f["score"].to_numpy(float)
        test = ~m
        r = res["tasks"][i]
        row = {"task": t, "coverage_90": coverage(y, b, test),
               "mae_out_posterior_mean": mae_split(b["mean"][test], y[test], f["beyond_ctx"][test]),
               "mae_out_point": r["mae_out"], "mae_out_baseline": r["baseline_out"]}
        if spec.fit_alpha:
            row["alpha_90"] = [float(np.quantile(bf.theta[:, i, 1], q)) for q in (0.05, 0.95)]
        else:
            row["alpha_90"], row["alpha_90_reason"] = None, f"alpha is fixed at {spec.alpha_fixed} (fit_alpha=False)"
        out["tasks"].append(row)
        inside.append((y[test] >= b["lo"][test]) & (y[test] <= b["hi"][test]))
        err_post.append(np.abs(b["mean"][test] - y[test]))
        err_point.append(np.abs(r["point_extrap"][test] - y[test]))
        err_base.append(np.abs(r["baseline_pred"][test] - y[test]))
    out["coverage_90"] = float(np.mean([r["coverage_90"] for r in out["tasks"]]))
    out["coverage_90_rows"] = float(np.mean(np.concatenate(inside)))
    out["mae_out"] = {"posterior_mean": float(np.mean(np.concatenate(err_post))),
                      "point_fit": float(np.mean(np.concatenate(err_point))),
                      "carry_forward_baseline": float(np.mean(np.concatenate(err_base))),
                      "n": int(sum(len(e) for e in err_post))}
    return out


def source_report(res: dict) -> dict:
    """JSON-ready summary of an :func:`evaluate_source` result: per task parameters (and those at an
    end of their allowed range, ``at_bound`` / ``extrap_at_bound``), MAE in and out
    (with the carry-forward baseline's held-out MAE and the point fit's 90 % coverage there), DE
    convergence of every fit, the backtest's drift, design notes; means over tasks."""
    out = {"dataset": res["source"], "spec": res["spec"], "cutoff_tokens": res["cutoff"], "tasks": []}
    conv = _convergence(res)
    n_t = len(res["task_names"])
    for i, row in enumerate(res["tasks"]):
        r = {k: row[k] for k in ("task", "params", "at_bound", "n", "mae_in")}
        r["converged"], r["reason"] = conv[i]["converged"], conv[i]["reason"]
        if "mae_out" in row:
            r.update({k: row[k] for k in ("mae_out", "n_train", "n_test", "extrap_params", "extrap_at_bound",
                                          "baseline_out", "baseline_fallback_rows", "coverage_90_point",
                                          "extrapolation_max")})
            r["extrap_converged"], r["extrap_reason"] = conv[n_t + i]["converged"], conv[n_t + i]["reason"]
            r["backtest_converged"], r["backtest_reason"] = conv[2 * n_t + i]["converged"], conv[2 * n_t + i]["reason"]
        out["tasks"].append(r)
    out["converged"] = all(c["converged"] for c in conv)
    out["mae_in_mean"] = float(np.mean([r["mae_in"]["all"] for r in res["tasks"]]))
    if all("mae_out" in r for r in res["tasks"]):
        out["mae_out_mean"] = float(np.mean([r["mae_out"]["all"] for r in res["tasks"]]))
        out["baseline_out_mean"] = float(np.mean([r["baseline_out"]["all"] for r in res["tasks"]]))
        out["coverage_90_point"] = float(np.mean([r["coverage_90_point"] for r in res["tasks"]]))
        out["drift"] = res["drift"]
    out["design_notes"] = list(res.get("design_notes", []))
    return out
