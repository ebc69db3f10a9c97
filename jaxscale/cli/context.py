"""``jaxscale context fit``: the context-aware scaling law (Montgomery et al. 2025) per task; and the
context-law section of ``jaxscale demo``."""
from __future__ import annotations

import time
from pathlib import Path

__all__ = ["register", "fit_handler", "run_fit", "demo_section"]


def run_fit(dataset: str, penalty: str | None = None, decay: bool = False, bayes: bool = False, seed: int = 0,
            restarts: int = 2, cutoff: float = 10_000.0, plot=None, num_warmup: int = 300,
            num_samples: int = 300, num_chains: int = 4) -> dict:
    """Point fits (in-distribution and < cutoff -> longer) of every task of ``dataset``, optionally NUTS."""
    import jax
    import numpy as np

    from jaxscale.context_law.evaluate import CHANCE_FLOOR, default_spec, evaluate_source, mae_split

    if penalty is not None and penalty not in ("none", "step", "logistic", "log_ratio"):
        raise ValueError(f"--penalty {penalty!r} is unknown; choose none, step, logistic or log_ratio")
    key = jax.random.key(seed)
    t0 = time.perf_counter()
    spec = default_spec(dataset, penalty, decay)
    res = evaluate_source(key, dataset, spec, cutoff=cutoff, restarts=restarts)
    out = {"dataset": dataset, "spec": spec._asdict(), "cutoff_tokens": cutoff,
           "fit_seconds": time.perf_counter() - t0, "tasks": []}
    for row in res["tasks"]:
        out["tasks"].append({"task": row["task"], "params": row["params"], "n": row["n"],
                             "mae_in": row["mae_in"], "mae_out": row["mae_out"],
                             "n_train": row["n_train"], "n_test": row["n_test"],
                             "extrap_params": row["extrap_params"]})
    out["mae_in_mean"] = float(np.mean([r["mae_in"]["all"] for r in res["tasks"]]))
    out["mae_out_mean"] = float(np.mean([r["mae_out"]["all"] for r in res["tasks"]]))
    if bayes:
        out["bayes"] = _bayes(jax.random.fold_in(key, 1), res, spec, CHANCE_FLOOR[dataset], cutoff,
                              num_warmup, num_samples, num_chains, mae_split)
    if plot:
        from jaxscale.context_law.plot import plot_fit

        out["plot"] = str(plot_fit(res, plot))
    return out


def _bayes(key, res, spec, floor, cutoff, num_warmup, num_samples, num_chains, mae_split):
    """Joint NUTS over all tasks on the extrapolation split: coverage of the held-out (>= cutoff) rows."""
    import numpy as np

    from jaxscale.context_law.bayes import coverage, fit_bayes, predictive_bands
    from jaxscale.context_law.data import split_mask, stack_tasks

    names, frames = res["task_names"], [res["frames"][t] for t in res["task_names"]]
    masks = [split_mask(f, cutoff) for f in frames]
    data = stack_tasks(frames, masks, chance_floor=floor)
    binomial = res["source"] == "babilong"
    n = data.y.shape[1]

    def pad(col):
        return np.stack([np.concatenate([f[col].to_numpy(float), np.full(n - len(f), f[col].iloc[0])])
                         for f in frames])

    lik = "binomial" if binomial else "laplace"  # robust: its posterior mean tracks the median (MAE)
    kw = dict(n_items=pad("n_items"), n_correct=pad("n_correct")) if binomial else {}
    n_t = len(names)
    bf = fit_bayes(key, data, spec, likelihood=lik, init_theta=np.asarray(res["fits"].theta[n_t:]),
                   num_warmup=num_warmup, num_samples=num_samples, num_chains=num_chains, **kw)
    bands = predictive_bands(key, bf, lik, kw.get("n_items"))
    out = {"likelihood": lik, "diagnostics": {"max_r_hat": float(bf.posterior.diagnostics["max_r_hat"]),
                                              "divergences": int(bf.posterior.diagnostics["divergences"])},
           "tasks": []}
    for i, (t, f, m) in enumerate(zip(names, frames, masks)):
        k = len(f)
        b = {key_: v[i, :k] for key_, v in bands.items()}
        y = f["score"].to_numpy(float)
        test = ~m
        out["tasks"].append({"task": t, "coverage_90": coverage(y, b, test),
                             "mae_out_posterior_mean": mae_split(b["mean"][test], y[test], f["beyond_ctx"][test]),
                             "alpha_90": ([float(np.quantile(bf.theta[:, i, 1], q)) for q in (0.05, 0.95)]
                                          if spec.fit_alpha else None)})
    out["coverage_90"] = float(np.mean([r["coverage_90"] for r in out["tasks"]]))
    return out


def fit_handler(args) -> dict:
    return run_fit(args.dataset, penalty=args.penalty, decay=args.decay, bayes=args.bayes, seed=args.seed,
                   restarts=args.restarts, cutoff=args.cutoff, plot=args.plot, num_warmup=args.num_warmup,
                   num_samples=args.num_samples)


def register(subparsers) -> None:
    """Add ``context`` with its ``fit`` leaf to the main CLI."""
    p = subparsers.add_parser("context", help="context-aware scaling law (Montgomery et al. 2025)")
    sub = p.add_subparsers(dest="context_cmd", required=True)
    f = sub.add_parser("fit", help="fit the law per task: in-distribution and < 10k -> longer extrapolation")
    f.add_argument("--dataset", required=True, choices=["ruler", "babilong", "longcontext_icl"])
    f.add_argument("--penalty", default=None, choices=["none", "step", "logistic", "log_ratio"],
                   help="penalty past n_ctx (default: logistic with fitted width and effective limit)")
    f.add_argument("--decay", action="store_true", help="add the length-decay extension (1+n/1e3)^-gamma")
    f.add_argument("--bayes", action="store_true", help="also run NUTS; reports coverage_90 on held-out rows")
    f.add_argument("--seed", type=int, default=0)
    f.add_argument("--restarts", type=int, default=2, help="independent DE runs per task (vmapped)")
    f.add_argument("--cutoff", type=float, default=10_000.0, help="train on prompts shorter than this")
    f.add_argument("--num-warmup", type=int, default=300)
    f.add_argument("--num-samples", type=int, default=300)
    f.add_argument("--plot", default=None, help="PNG path: P vs prompt length per n_ctx (first task)")
    f.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    f.set_defaults(func=fit_handler)


def demo_section(key, out_dir: Path, smoke: bool) -> dict:
    """Fit the context law to the many-shot ICL set (all tasks in one vmapped DE + L-BFGS program).

    ``smoke`` skips the extrapolation fit and uses one DE run per task instead of two.
    """
    import numpy as np

    from jaxscale.context_law.plot import plot_fit
    from jaxscale.context_law.data import load_compute_table
    from jaxscale.context_law.evaluate import default_spec, evaluate_source
    from jaxscale.laws.context import context_compute

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    table = load_compute_table()
    C = np.asarray(context_compute(table["N_nonembedding"].to_numpy(float), table["n_ctx_tokens"].to_numpy(float)))
    rel = float(np.max(np.abs(C / table["C_reported"].to_numpy(float) - 1)))

    spec = default_spec("longcontext_icl")
    res = evaluate_source(key, "longcontext_icl", spec, restarts=1 if smoke else 2, extrapolate=not smoke)
    maes = {r["task"]: r["mae_in"]["all"] for r in res["tasks"]}
    png = plot_fit(res, out_dir / "context_law_icl.png", task="nlu" if "nlu" in maes else None)
    summary = {"compute_table_max_rel_err": rel, "icl_mae_in": maes,
               "icl_mae_in_mean": float(np.mean(list(maes.values()))), "seconds": time.perf_counter() - t0}
    lines = [
        "Context-aware scaling law (Montgomery et al. 2025): P = f_C(C) f_n(n_pmt) S(n_pmt, n_ctx).",
        "",
        f"* Paper compute rule C = 6 N (2e12 + 400*64*n_ctx) reproduces all 12 rows of Table 1 "
        f"(max relative error {rel:.1e}).",
        "* Many-shot ICL (Bertsch et al. 2024), one fit per task pooled over 7 models, logistic cliff with "
        "fitted width and effective limit, chance floor 1/n_labels; JAX DE + L-BFGS, all tasks vmapped:",
        "",
        "| task | MAE in-distribution |" + (" MAE extrapolated (>= 10k tokens) |" if not smoke else ""),
        "| --- | --- |" + (" --- |" if not smoke else ""),
    ]
    for r in res["tasks"]:
        extra = f" {r['mae_out']['all']:.3f} |" if not smoke else ""
        lines.append(f"| {r['task']} | {r['mae_in']['all']:.3f} |{extra}")
    if not smoke:
        summary["icl_mae_out"] = {r["task"]: r["mae_out"]["all"] for r in res["tasks"]}
    lines += ["", f"![context law cliff]({Path(png).name})", "",
              "Reference: a plain scipy DE fit with a logistic penalty reached 0.047-0.052 per task. "
              "The law fails on distractor-filled prompts (RULER, BABILong), where scores fall with length: "
              "see `jaxscale context fit --dataset babilong --decay` for the length-decay extension."]
    return {"title": "Context-aware scaling law", "markdown": "\n".join(lines), "summary": summary}
