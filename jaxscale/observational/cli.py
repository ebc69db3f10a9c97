"""``jaxscale obs`` command: ``obs fit``, ``obs tasks``, ``obs select`` (+ ``sweep``, ``subsets``, ``family``)."""
from __future__ import annotations

import numpy as np

__all__ = ["register", "fit_handler", "tasks_handler", "select_handler", "calibrate_handler",
           "run_fit"]


def run_fit(task: str | None = None, *, csv=None, target=None, metrics=None, cutoff=None,
            test_fraction=None, lo=0.0, hi=1.0, floor=None, k=None, bayes=False, seed=0,
            num_warmup=300, num_samples=500, num_chains=4, plot=None,
            likelihood="extrap", bootstrap=0) -> dict:
    """Point fit (optionally with ``bootstrap`` vmapped refits and the Bayesian fit) of a named
    task or a user CSV, as a dict."""
    import jax
    import numpy as np

    from . import pipeline
    from .tasks import get_task

    if (task is None) == (csv is None):
        raise ValueError("give exactly one of --task NAME or --csv PATH (with --target COLUMN)")
    if csv is not None:
        from .usertable import prepare_user_table, read_user_csv

        if not target:
            raise ValueError("--csv needs --target COLUMN (the column to predict)")
        prep = prepare_user_table(read_user_csv(csv), target, metrics, lo=lo, hi=hi, cutoff=cutoff,
                                  test_fraction=test_fraction,
                                  floor=True if floor is None else floor, k=3 if k is None else k)
        spec = prep.spec
        dz = pipeline.design(prep)
        params, res = pipeline.fit_law(dz.S_train[:, : spec.k], dz.y_train, floor=spec.floor,
                                       loss=spec.loss)
        result = pipeline.evaluate_params(dz, params, spec.k)._replace(converged=bool(res.converged))
    else:
        over = {}
        if k is not None:
            over["k"] = k
        if floor is not None:
            over["floor"] = floor
        spec = get_task(task, **over)
        result = pipeline.run_task(spec)
    out = dict(task=spec.name, mse_train=result.mse_train, mse_test=result.mse_test,
               slope=result.slope, intercept=result.intercept, floor=result.floor,
               n_train=result.n_train, n_test=result.n_test, k=spec.k,
               link="floor" if spec.floor else "plain", loss=spec.loss,
               pc_coefficients=[float(v) for v in np.asarray(result.params.slopes)],
               pc_intercept=float(result.params.intercept), converged=result.converged,
               axis=f"log10 {spec.ref_family}-equivalent FLOPs (1E21)")
    if bootstrap:
        out["bootstrap"] = _bootstrap_summary(jax.random.fold_in(jax.random.key(seed), 7), result,
                                              spec, bootstrap)
    band = None
    if bayes:
        from . import bayes as _b

        key = jax.random.key(seed)
        from .bayes_eval import fit_results

        fit = fit_results(key, [result], likelihood=likelihood, num_warmup=num_warmup,
                          num_samples=num_samples, num_chains=num_chains)[0]
        dz = result.design
        pr = _b.predictive(jax.random.fold_in(key, 1), fit, dz.S_test[:, : spec.k])
        cov = _b.coverage(dz.y_test, pr["q"])
        out.update(cov)
        # Bayesian point prediction = posterior mode (MAP) of the law; median / mean of μ beside it
        out["mse_test_bayes"] = float(np.mean((pr["mode"] - dz.y_test) ** 2))
        out["mse_test_bayes_median"] = float(np.mean((pr["median"] - dz.y_test) ** 2))
        out["mse_test_bayes_mean"] = float(np.mean((pr["mean"] - dz.y_test) ** 2))
        out["likelihood"] = likelihood
        d = fit.posterior.diagnostics
        out["nuts"] = dict(max_r_hat=d["max_r_hat"], min_ess=d["min_ess"],
                           divergences=d["divergences"], num_chains=d["num_chains"],
                           num_samples=d["num_samples"], mean_num_steps=d["mean_num_steps"])
        out["floor_posterior_mean"] = float(fit.floor.mean())
        if fit.kappa is not None:
            out["kappa_posterior_median"] = float(np.median(fit.kappa))
        if plot:
            from .plot import equiv_x

            S_all = np.concatenate([dz.S_train[:, : spec.k], dz.S_test[:, : spec.k]])
            pa = _b.predictive(jax.random.fold_in(key, 2), fit, S_all)
            band = dict(x=equiv_x(result.params, S_all, result.slope, result.intercept),
                        lo=pa["q"][0], hi=pa["q"][3], mean=pa["mode"])
    if plot:
        from .plot import plot_scaling

        out["plot"] = str(plot_scaling(result, plot, band=band))
    return out


def _bootstrap_summary(key, result, spec, n: int) -> dict:
    """``n`` bootstrap refits (one vmapped program): 90% intervals of the law on the reference
    axis and the mean-curve band at the held-out models (a confidence band, not a predictive one)."""
    import time

    from .fit import bootstrap_band, bootstrap_law

    if n < 10:
        raise ValueError(f"--bootstrap must be >= 10 refits, got {n}")
    dz, k = result.design, spec.k
    t0 = time.perf_counter()
    pb, rb = bootstrap_law(key, dz.S_train[:, :k], dz.y_train, n, floor=spec.floor, loss=spec.loss)
    ok = np.asarray(rb.converged)
    out = dict(n=int(n), n_converged=int(ok.sum()), seconds=time.perf_counter() - t0)
    if len(dz.y_test):
        q = bootstrap_band(pb, ok, dz.S_test[:, :k])
        out["mean_band_90_width"] = float(np.mean(q[1] - q[0]))
        out["mean_band_90_coverage"] = float(np.mean((dz.y_test >= q[0]) & (dz.y_test <= q[1])))
    if len(dz.ref_S) >= 2:  # law on the log10 reference-equivalent FLOPs axis, per refit
        P = np.asarray(pb.intercept)[ok, None] + np.asarray(pb.slopes)[ok] @ dz.ref_S[:, :k].T
        x = np.log10(np.asarray(dz.ref_flops, float))
        coef, *_ = np.linalg.lstsq(np.stack([x, np.ones_like(x)], 1), P.T, rcond=None)
        out["slope_90"] = np.quantile(coef[0], [0.05, 0.95]).tolist()
        out["intercept_90"] = np.quantile(coef[1], [0.05, 0.95]).tolist()
    return out


def fit_handler(args) -> dict:
    """Handler of ``jaxscale obs fit``."""
    from jaxscale.config import enable_x64

    enable_x64()
    metrics = [m.strip() for m in args.metrics.split(",")] if args.metrics else None
    floor = {"floor": True, "plain": False, None: None}[args.link]
    return run_fit(args.task, csv=args.csv, target=args.target, metrics=metrics,
                   cutoff=args.cutoff, test_fraction=args.test_frac, lo=args.lo, hi=args.hi,
                   floor=floor, k=args.k, bayes=args.bayes, seed=args.seed,
                   num_warmup=args.warmup, num_samples=args.samples, num_chains=args.chains,
                   plot=args.plot, likelihood=args.likelihood, bootstrap=args.bootstrap)


def tasks_handler(args) -> dict:
    """Handler of ``jaxscale obs tasks``: every named experiment and its settings."""
    from .tasks import TASKS

    return {"tasks": [dict(name=t.name, description=t.description, target=t.column,
                           split=f"{t.split} {t.split_value:g}", link="floor" if t.floor else "plain",
                           loss=t.loss, metrics=len(t.metrics), reference=t.ref_family)
                      for t in TASKS.values()]}


def select_handler(args) -> dict:
    """Handler of ``jaxscale obs select``: V-optimal family unions within the budget(s)."""
    from jaxscale.config import enable_x64

    from .selection import select, select_table

    enable_x64()
    budgets = [int(b) for b in str(args.budget).split(",")]
    if any(b < 3 for b in budgets):
        raise ValueError(f"--budget must be >= 3 models, got {budgets}")
    forced = None if args.forced in ("", "none", "None") else args.forced
    sel = select(args.pool, budgets, forced=forced)
    return {"pool": args.pool, "forced": forced, "selections": select_table(sel),
            "models": {s.budget: list(s.models) for s in sel}}


def calibrate_handler(args) -> dict:
    """Handler of ``jaxscale obs calibrate``: held-out coverage of the Bayesian law, every task."""
    import jax

    from jaxscale.config import enable_x64

    from .bayes_eval import calibrate

    enable_x64()
    names = [n.strip() for n in args.tasks.split(",")] if args.tasks else None
    res = calibrate(jax.random.key(args.seed), names, likelihood=args.likelihood,
                    num_warmup=args.warmup, num_samples=args.samples, num_chains=args.chains)
    res.pop("fits")
    return res


def _bayes_args(p, warmup, samples):
    from .bayes import LIKELIHOODS

    p.add_argument("--likelihood", choices=LIKELIHOODS, default="extrap",
                   help="Bayesian likelihood (default extrap: censored normal + extrapolation "
                        "discrepancy calibrated by a within-training backtest; binomial ones need "
                        "item counts)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--warmup", type=int, default=warmup)
    p.add_argument("--samples", type=int, default=samples)
    p.add_argument("--chains", type=int, default=4)


def register(subparsers) -> None:
    """Add the ``obs`` command (observational scaling laws, Ruan et al. 2024)."""
    obs = subparsers.add_parser("obs", help="observational scaling laws (PCA capabilities -> sigmoid)")
    sub = obs.add_subparsers(dest="obs_command", required=True)
    f = sub.add_parser("fit", help="fit one named task (or --csv table) and report train/test MSE")
    f.add_argument("--task", default=None, help="task name (see `jaxscale obs tasks`)")
    f.add_argument("--csv", default=None, help="your own table: one row per model, benchmark columns in [0,1]")
    f.add_argument("--target", default=None, help="--csv: column to predict")
    f.add_argument("--metrics", default=None, help="--csv: comma-separated benchmark columns")
    f.add_argument("--cutoff", type=float, default=None,
                   help="--csv: train on FLOPs (1E21) <= cutoff (column 'FLOPs (1E21)')")
    f.add_argument("--test-frac", type=float, default=None,
                   help="--csv without --cutoff: top fraction by target held out (default 0.1)")
    f.add_argument("--lo", type=float, default=0.0, help="--csv: chance level of the target")
    f.add_argument("--hi", type=float, default=1.0, help="--csv: maximum of the target")
    f.add_argument("--link", choices=["floor", "plain"], default=None,
                   help="override the link: floor b in [0, 0.2] or plain sigmoid")
    f.add_argument("--k", type=int, default=None, help="number of principal capabilities (default 3)")
    f.add_argument("--bootstrap", type=int, default=0,
                   help="also run this many bootstrap refits (vmapped damped Newton; e.g. 1000)")
    f.add_argument("--bayes", action="store_true", help="also run the numpyro model (NUTS)")
    _bayes_args(f, 300, 500)
    f.add_argument("--plot", default=None, help="write the scaling-curve PNG here")
    f.set_defaults(func=fit_handler)
    t = sub.add_parser("tasks", help="list the named experiments")
    t.set_defaults(func=tasks_handler)
    s = sub.add_parser("select", help="V-optimal model subsets (unions of families)")
    s.add_argument("--budget", default="4,8,12,16,20", help="number of models (comma-separated list)")
    s.add_argument("--pool", choices=["full", "le7b", "flops84"], default="full")
    s.add_argument("--forced", default="Llama-2", help="family always included ('none' for none)")
    s.set_defaults(func=select_handler)
    c = sub.add_parser("calibrate", help="Bayesian law: held-out 50%%/90%% coverage on every task")
    c.add_argument("--tasks", default=None, help="comma-separated task names (default: all)")
    _bayes_args(c, 150, 150)
    c.set_defaults(func=calibrate_handler)
    from .cli_sweep import register_sweep

    register_sweep(sub)
    from .cli_family import register_family

    register_family(sub)
