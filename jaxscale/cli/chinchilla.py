"""``jaxscale chinchilla``: fit L(N, D) = E + A/N^alpha + B/D^beta (Epoch's method) to the bundled
Epoch data or your own runs, predict new runs, find compute-optimal allocations; and the Chinchilla
section of ``jaxscale demo``."""
from __future__ import annotations

import time
import warnings
from pathlib import Path

import numpy as np

from jaxscale.cli._common import (
    Formatter,
    add_output_args,
    add_predict_command,
    add_table_args,
    baseline_columns,
    check_outputs,
    compare_baselines,
    interval_level,
    read_input,
    save_fit,
    score,
    split_list,
    write_predictions,
    wrong_model,
)

__all__ = ["register", "fit_handler", "optimal_handler", "demo_section"]

_EPOCH = "epoch_chinchilla"


def _interval_kind(fit) -> str:
    k = 0.0 if fit.kappa is None else float(fit.kappa)
    grows = (f", its scale x (1 + {k:.3g} d) at d decades outside the training runs (kappa, learnt by a backtest "
             "inside them)" if k > 0 else "")
    if fit.boot_theta is not None:
        return f"bootstrap refits ({len(fit.boot_theta)}) + residual noise{grows}"
    if fit.theta_cov is not None:
        return (f"residual noise{grows} + the law's own uncertainty linearised at the fit (Student-t); "
                "--bootstrap N measures the latter without the linear approximation")
    return f"residual noise (Student-t){grows}; add --bootstrap N for the law's own uncertainty"


def fit_handler(args) -> dict:
    """Handler of ``jaxscale chinchilla fit``."""
    import jax

    from jaxscale import chinchilla as ch
    from jaxscale.chinchilla.fit import _require_run_columns
    from jaxscale.data import holdout_mask, load, where
    from jaxscale.laws import chinchilla_theta_to_params

    check_outputs(args)
    spec_default = ch.Spec()
    if args.csv:
        df = read_input(args)
        cols = dict(n_col=args.n_col, d_col=args.d_col, loss_col=args.loss_col)
        source = str(args.csv)
        # before --agg and --holdout-top read them: a wrong name is told with its option
        _require_run_columns(df, **cols, what=Path(source).name)
        exclude = spec_default.exclude_top_loss if args.exclude_top_loss is None else args.exclude_top_loss
    else:
        if args.dataset != _EPOCH:
            raise ValueError(f"--dataset must be {_EPOCH} (or use --csv); got {args.dataset!r}")
        df = where(load(_EPOCH)[["N", "D", "loss"]], args.where)
        cols = dict(n_col="N", d_col="D", loss_col="loss")
        source = _EPOCH
        exclude = ch.EPOCH_SPEC.exclude_top_loss if args.exclude_top_loss is None else args.exclude_top_loss
    n_merged = 0
    if args.agg:
        df, n_merged = ch.aggregate(df, how=args.agg, **cols)
    if args.holdout and args.holdout_top is not None:
        raise ValueError("give --holdout EXPR or --holdout-top K, not both")
    if args.holdout_top is not None:  # 0 is refused, not read as no hold-out
        k = int(args.holdout_top)
        if not 0 < k < len(df):
            raise ValueError(f"--holdout-top {k} must be between 1 and {len(df) - 1} (the table has {len(df)} rows)")
        if len(df) - k - exclude < 6:
            raise ValueError(f"--holdout-top {k} leaves {len(df) - k} of the table's {len(df)} rows to fit"
                             + (f", {exclude} of them excluded (--exclude-top-loss)" if exclude else "")
                             + ": the law's 5 parameters need at least 6; hold out fewer runs or add runs")
        c = df[cols["n_col"]].to_numpy(float) * df[cols["d_col"]].to_numpy(float)
        held = np.zeros(len(df), bool)
        held[np.argsort(c, kind="stable")[len(df) - k:]] = True
    else:
        held = holdout_mask(df, args.holdout, min_train=6)
    spec = ch.Spec(exclude_top_loss=exclude, n_boot=args.bootstrap, boot_steps=args.boot_steps)
    train_df, test_df = df.loc[~held], df.loc[held]
    data = ch.from_frame(train_df, **cols, what=Path(source).name)
    # the held-out rows' N and D are checked before the fit; their loss is the truth to score, which
    # may be missing (counted in the score's n_missing_truth): the baseline reads only N and D
    query = (ch.from_frame(test_df.assign(**{cols["loss_col"]: 1.0}), **cols, what="held-out rows")
             if held.any() else None)
    t0 = time.perf_counter()
    fit = ch.fit(jax.random.key(args.seed), data, spec)
    out = {k: float(v) for k, v in ch.params_dict(fit.params).items()}
    excluded_rows = train_df.index[np.asarray(fit.excluded)].tolist()
    out.update(
        source=source, objective=float(fit.objective), converged=bool(fit.converged),
        n_starts=fit.n_starts, n_points=int(len(train_df) - len(excluded_rows)),
        excluded_rows=excluded_rows, excluded_rows_are=("file lines" if args.csv else "rows of the bundled table"),
        n_merged=n_merged, exclude_top_loss=exclude, sigma_log_loss=float(fit.sigma),
        kappa=None if fit.kappa is None else float(fit.kappa),
        fit_seconds=time.perf_counter() - t0, interval=_interval_kind(fit), level=args.level,
    )
    if fit.boot_theta is not None:
        boot = ch.params_dict(chinchilla_theta_to_params(np.asarray(fit.boot_theta)))
        lo, hi = (1 - args.level) / 2 * 100, (1 + args.level) / 2 * 100
        out["bootstrap"] = {k: {"lo": float(np.percentile(v, lo)), "median": float(np.percentile(v, 50)),
                                "hi": float(np.percentile(v, hi))} for k, v in boot.items()}
        out["bootstrap_n"] = int(len(fit.boot_theta))
        out["bootstrap_excluded"] = int(fit.boot_excluded)
    key = jax.random.key(args.seed)  # the same draws as `chinchilla predict --seed` on the same rows
    if held.any():
        from jaxscale.chinchilla.predict import power_law_baseline

        pred = ch.predict(fit, query, key=key, level=args.level)  # checked above (its warnings said once)
        y = test_df[cols["loss_col"]]
        out["holdout"] = score(y, pred)
        out["holdout"]["max_compute_ratio"] = float(
            np.max(test_df[cols["n_col"]].to_numpy(float) * test_df[cols["d_col"]].to_numpy(float))
            / np.max(train_df[cols["n_col"]].to_numpy(float) * train_df[cols["d_col"]].to_numpy(float)))
        out["holdout"]["max_extrapolation_decades"] = float(np.max(np.asarray(pred.extrapolation)))
        fitted = ch.take_rows(data, ~np.asarray(fit.excluded))
        bases = {"power_law_in_compute": power_law_baseline(fitted, query, args.level)}
        out["baselines"] = compare_baselines(y, pred, bases, what="Chinchilla (held-out rows)", level=args.level)
    else:
        bases = {}
    if args.predictions:
        with warnings.catch_warnings():
            if held.any():  # said above for the held-out rows; the others are the training rows
                warnings.filterwarnings("ignore", message=".*outside the training data.*")
            pred_all = ch.predict(fit, df, key=key, level=args.level)
        out["predictions"] = write_predictions(args.predictions, df, pred_all,
                                               extra={"heldout": held, **baseline_columns(len(df), held, bases)})
    if args.plot:
        from jaxscale.plotting import plot_chinchilla, save

        boot = (ch.params_dict(chinchilla_theta_to_params(np.asarray(fit.boot_theta)))
                if fit.boot_theta is not None else None)
        held_runs = ((test_df[cols["n_col"]], test_df[cols["d_col"]], test_df[cols["loss_col"]], pred)
                     if held.any() else None)
        fig = plot_chinchilla(train_df[cols["n_col"]], train_df[cols["d_col"]], train_df[cols["loss_col"]],
                              {k: float(v) for k, v in ch.params_dict(fit.params).items()},
                              np.asarray(fit.excluded), boot, held=held_runs, level=args.level,
                              names={"N": cols["n_col"], "D": cols["d_col"], "loss": cols["loss_col"]})
        out["plot"] = str(save(fig, args.plot))
    out["saved"] = save_fit(args, fit)
    if out["saved"] is None:
        out["saved_reason"] = "no --save folder given"
    return out


def optimal_handler(args) -> dict:
    """Handler of ``jaxscale chinchilla optimal``: N*, D* and loss at each compute budget."""
    from jaxscale import chinchilla as ch
    from jaxscale.io import load

    fit = load(args.model)
    if not isinstance(fit, ch.Fit):
        raise wrong_model(args.model, fit, "jaxscale.chinchilla")
    budgets = split_list(args.compute, float)
    if not budgets:
        raise ValueError("--compute needs one or more budgets in FLOPs, e.g. --compute 1e21,1e22")
    res = ch.optimal(fit, budgets, level=args.level)
    rows = []
    dist = None if res["extrapolation"] is None else np.asarray(res["extrapolation"], float)
    has_boot = fit.boot_theta is not None
    host = {name: tuple(np.asarray(a, float) for a in (res[name].mean, res[name].lower, res[name].upper))
            for name in ("N", "D", "loss")}  # indexed on the host: no device program per element
    for i, c in enumerate(budgets):
        row = {"compute": c, "extrapolation": None if dist is None else float(dist[i])}
        for name in ("N", "D", "loss"):
            mean, lower, upper = host[name]
            row[name] = float(mean[i])
            lo, hi = float(lower[i]), float(upper[i])
            row[f"{name}_lower"] = lo if np.isfinite(lo) else None
            row[f"{name}_upper"] = hi if np.isfinite(hi) else None
            if not np.isfinite(lo):
                row[f"{name}_interval_reason"] = "the model was saved without bootstrap refits (fit with --bootstrap N)"
        rows.append(row)
    return {"model": str(args.model), "level": args.level, "optima": rows,
            "interval": "bootstrap refits" + (" + residual noise for loss" if has_boot else "")
            if has_boot else "loss: residual noise only; N, D: none without --bootstrap"}


def register(sub) -> None:
    """Add ``chinchilla fit | predict | optimal``."""
    from jaxscale.chinchilla.spec import EPOCH_SPEC, ChinchillaSpec

    spec = ChinchillaSpec()
    p = sub.add_parser("chinchilla", help="Chinchilla L(N, D) = E + A/N^alpha + B/D^beta", formatter_class=Formatter)
    csub = p.add_subparsers(dest="action", required=True)
    f = csub.add_parser("fit", help="fit by Epoch's method (Huber on log loss, 4,500 starts, L-BFGS)",
                        formatter_class=Formatter,
                        description="Fit the law to the bundled Epoch data (default) or to --csv runs "
                                    "(one row per run: parameters N, tokens D, final loss).")
    f.add_argument("--dataset", default=_EPOCH, help="bundled table (ignored with --csv)")
    add_table_args(f, csv_help="your own runs (CSV, TSV, Parquet or JSON; one row per run)")
    f.add_argument("--holdout-top", type=int, default=None, metavar="K",
                   help="hold out the K highest-compute (N*D) rows and score them")
    f.add_argument("--n-col", default="N", help="column with parameter counts (raw count, not millions)")
    f.add_argument("--d-col", default="D", help="column with training tokens (raw count)")
    f.add_argument("--loss-col", default="loss", help="column with the final loss")
    f.add_argument("--agg", choices=["mean", "min"], default=None,
                   help="merge runs that repeat an (N, D) pair (without it, repeated pairs are an error)")
    f.add_argument("--exclude-top-loss", type=int, default=None,
                   help=f"leave out the K highest-loss rows (None: {EPOCH_SPEC.exclude_top_loss} on the "
                        f"Epoch data, Epoch's published method; {spec.exclude_top_loss} on --csv)")
    f.add_argument("--bootstrap", type=int, default=spec.n_boot,
                   help="bootstrap refits (vmapped); intervals then include parameter uncertainty")
    f.add_argument("--boot-steps", type=int, default=spec.boot_steps, help="Newton steps per bootstrap refit")
    f.add_argument("--level", type=interval_level, default=0.9, help="central interval level of predictions")
    f.add_argument("--seed", type=int, default=0, help="seed of the bootstrap and of predictive draws")
    f.add_argument("--plot", default=None, metavar="PNG", help="loss vs compute with the law")
    add_output_args(f)
    f.set_defaults(func=fit_handler)

    add_predict_command(csub, "jaxscale.chinchilla", "Chinchilla")

    o = csub.add_parser("optimal", help="compute-optimal N*, D* and loss at given budgets (saved model)",
                        formatter_class=Formatter)
    o.add_argument("--model", required=True, metavar="DIR", help="folder written by `chinchilla fit --save`")
    o.add_argument("--compute", required=True, help="comma-separated budgets in FLOPs, e.g. 1e21,1e22")
    o.add_argument("--level", type=interval_level, default=0.9, help="central interval level")
    o.set_defaults(func=optimal_handler)


def demo_section(key, out_dir: Path, smoke: bool) -> dict:
    """Chinchilla refit on Epoch's data, with bootstrap intervals and a plot."""
    from jaxscale import chinchilla as ch
    from jaxscale.data import load
    from jaxscale.laws import chinchilla_theta_to_params
    from jaxscale.plotting import plot_chinchilla, save

    df = load(_EPOCH)
    n_boot = 200 if smoke else 4000
    fit = ch.fit(key, ch.from_frame(df), ch.EPOCH_SPEC._replace(n_boot=n_boot))
    params = {k: float(v) for k, v in ch.params_dict(fit.params).items()}
    boot = ch.params_dict(chinchilla_theta_to_params(np.asarray(fit.boot_theta)))
    ci = {k: [float(np.percentile(v, 5)), float(np.percentile(v, 95))] for k, v in boot.items()}
    fig = plot_chinchilla(df["N"], df["D"], df["loss"], params, np.asarray(fit.excluded), boot)
    save(fig, Path(out_dir) / "chinchilla_fit.png")
    epoch = {"E": 1.8172, "A": 478.0, "B": 2142.0, "alpha": 0.3473, "beta": 0.3671}
    rows = "\n".join(
        f"| {k} | {params[k]:.4g} | [{ci[k][0]:.4g}, {ci[k][1]:.4g}] | {epoch[k]:.4g} |" for k in params)
    md = (
        "Epoch AI's replication method (Huber δ=1e-3 on log loss, 4,500 L-BFGS starts, 5 "
        f"highest-loss points excluded) on the 245 extracted points; {len(fit.boot_theta)} converged "
        f"bootstrap refits of {n_boot} ({int(fit.boot_excluded)} excluded), all vmapped.\n\n"
        "| param | fit | 90% bootstrap interval | Epoch (scipy re-run) |\n"
        "|---|---|---|---|\n" + rows + "\n\n![Chinchilla fit](chinchilla_fit.png)\n"
    )
    return {"title": "Chinchilla (Epoch replication)", "markdown": md,
            "summary": {"params": params, "bootstrap_90": ci, "n_boot": int(len(fit.boot_theta))}}
