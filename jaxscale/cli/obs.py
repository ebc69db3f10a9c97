"""``jaxscale obs``: observational scaling laws (Ruan et al. 2024) on your own benchmark table
(``fit --csv``, ``predict``) or the paper's named tasks (``fit --task``, ``tasks``, ``select``,
``calibrate``, ``sweep``, ``subsets``, ``family``); and the observational section of
``jaxscale demo``."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from jaxscale.cli._common import (
    Formatter,
    add_output_args,
    add_predict_command,
    add_table_args,
    baseline_columns,
    check_interval,
    check_outputs,
    compare_baselines,
    interval_level,
    read_input,
    save_fit,
    score,
    split_list,
    write_predictions,
)

__all__ = ['register', 'fit_handler', 'tasks_handler', 'select_handler', 'calibrate_handler',
           'sweep_handler', 'subsets_handler', 'family_handler', 'demo_section']

#: What a split by the target itself does to the held-out score (said in the JSON and the log).
TEST_FRAC_NOTE = ("the held-out rows were chosen by their own target, so they are the models whose scores came out "
                  "high, noise included: a model of the target given the benchmarks (and any baseline) tends to "
                  "under-predict them, and its interval to under-cover (selection on the outcome). To test "
                  "extrapolation to stronger models, hold out by an input: --cutoff (FLOPs) or --holdout on a "
                  "benchmark column or an average of them")

_TABLE_ONLY = ("holdout", "where", "cutoff", "test_frac", "predictions", "save", "metric_cols", "dedupe",
               "max_steps")
BASELINE = "ln_flops_sigmoid"


def _link(args, default_floor: bool):
    return {"floor": True, "plain": False, None: default_floor}[args.link]


def fit_handler(args) -> dict:
    """Handler of ``jaxscale obs fit``: a named task (``--task``) or your own table (``--csv``)."""
    if (args.task is None) == (args.csv is None):
        raise ValueError("give exactly one of --task NAME or --csv PATH (with --target-col COLUMN)")
    if args.csv is None:
        from jaxscale.observational.report import task_summary

        used = [f"--{a.replace('_', '-')}" for a in _TABLE_ONLY if getattr(args, a, None)]
        if used:
            raise ValueError(f"{', '.join(used)} work with --csv only (--task runs the paper's own split)")
        check_outputs(args)
        from jaxscale.observational.pipeline import run_task

        floor = None if args.link is None else _link(args, True)
        result = run_task(args.task, **{key: v for key, v in (("k", args.k), ("floor", floor)) if v is not None})
        out = task_summary(args.seed, args.task, k=args.k, floor=floor, bootstrap=args.bootstrap, bayes=args.bayes,
                           likelihood=args.likelihood, num_warmup=args.warmup, num_samples=args.samples,
                           num_chains=args.chains, plot=args.plot, result=result)
        out.update(_task_baselines(args.task, result))
        return out
    return _fit_table(args)


def _task_baselines(name: str, result) -> dict:
    """``baselines`` of a named task's fit: the ln-FLOPs sigmoid on the held-out models with FLOPs."""
    from jaxscale.infer.prediction import Prediction
    from jaxscale.observational.pipeline import task_heldout

    h = task_heldout(result)
    if h["reason"]:
        return {"baselines": None, "baselines_reason": h["reason"]}
    has = np.isfinite(h["baseline"])
    nan = np.full_like(h["model"], np.nan)
    b = compare_baselines(h["y"], Prediction(h["model"], nan, nan), {BASELINE: h["baseline"]},
                          what=f"obs fit --task {name} (held-out models with FLOPs, normalised target)", mask=has)
    b["model"]["coverage_reason"] = "the named task's point fit gives no interval"
    b.update(n_heldout_no_flops=h["n_test_no_flops"], n_train_no_flops=h["n_train_no_flops"],
             ln_flops_law=h["law"], units="normalised target (raw - lo) / (hi - lo)",
             rows=f"the {int(has.sum())} held-out models with FLOPs; the {h['n_test_no_flops']} without FLOPs are "
                  "scored for the law only (mse_test)")
    return {"baselines": b}


MEAN_BASELINE = "mean_score_sigmoid"


def _table_baselines(args, fit, data, pred, train, held, base_cols: dict) -> dict:
    """``baselines`` of a held-out report on your table: the mean-benchmark-score sigmoid on every
    held-out row with a target (the rows of ``holdout``), and the ln-FLOPs sigmoid on those of
    them with FLOPs. ``model`` is the model on the rows of the first (without it, of the second); the
    ln-FLOPs sigmoid, scored on fewer rows, then carries the model's score on its rows as its ``model``.
    Each baseline's value on those rows (raw units) goes into ``base_cols``, a column per baseline."""
    from jaxscale.infer.prediction import Prediction
    from jaxscale.observational.model import flops_baseline, mean_score_baseline, take_rows
    scored = held & np.isfinite(np.asarray(data.y, float))
    y = fit.lo + (fit.hi - fit.lo) * np.asarray(data.y, float)[scored]
    model = Prediction(*(np.asarray(v, float)[scored] for v in (pred.mean, pred.lower, pred.upper)))
    tr, q = take_rows(data, train), take_rows(data, scored)
    b, loses = {}, []
    mean_base, minfo = mean_score_baseline(tr, q, fit.spec, level=args.level)
    if mean_base is None:
        b[MEAN_BASELINE + "_reason"] = minfo["reason"]
    else:
        base_cols.update(baseline_columns(len(scored), scored, {MEAN_BASELINE: mean_base}))
        m = compare_baselines(y, model, {MEAN_BASELINE: mean_base}, what="obs fit (held-out rows)")
        b[MEAN_BASELINE], b["model"] = m[MEAN_BASELINE], m["model"]
        b["mean_score_law"] = {key: minfo[key] for key in ("slope", "intercept", "floor", "converged")}
        loses += m["model_loses_to"]
    base, info = flops_baseline(tr, q, fit.spec, level=args.level)
    has = np.zeros(int(scored.sum()), bool) if base is None else np.isfinite(np.asarray(base.mean, float))
    if base is None:
        b[BASELINE + "_reason"] = info["reason"]
    elif not has.any():
        b[BASELINE + "_reason"] = f"none of the {int(scored.sum())} held-out rows with a target has FLOPs"
    else:
        base_cols.update(baseline_columns(len(scored), scored, {BASELINE: base}))
        f = compare_baselines(y, model, {BASELINE: base}, what="obs fit (held-out rows with FLOPs)", mask=has)
        b[BASELINE] = f[BASELINE]
        if "model" in b:
            b[BASELINE]["model"] = f["model"]
        else:
            b["model"] = f["model"]
        loses += f["model_loses_to"]
        b.update(n_heldout_no_flops=int((~has).sum()),
                 n_train_no_flops=info["n_train_no_flops"],
                 ln_flops_law={key: info[key] for key in ("slope", "intercept", "floor", "converged")})
    if not (MEAN_BASELINE in b or BASELINE in b):
        return {"baselines": None, "baselines_reason": "; ".join(v for k, v in b.items() if k.endswith("_reason"))}
    b["model_loses_to"] = loses
    # each held-out row is another model: the rows are independent (the exact binomial test applies)
    check = check_interval(y, model, args.level, what="obs fit (held-out rows)", independent=True)
    if check is not None:
        b["model_interval"] = check
    on_flops_rows = f"{BASELINE}.model" if MEAN_BASELINE in b else "model"
    b["rows"] = (f"{MEAN_BASELINE}: the {int(scored.sum())} held-out rows with a target (those of holdout); "
                 + (f"{BASELINE}: the {int(has.sum())} of them with FLOPs ({on_flops_rows}: the model on those), "
                    f"fitted on the {info['n_train']} training rows with FLOPs ({info['n_train_no_flops']} without "
                    "are left out)" if has.any() else f"{BASELINE}: not scored ({b[BASELINE + '_reason']})"))
    return {"baselines": b}


def _fit_table(args) -> dict:
    import jax

    from jaxscale import observational as obs
    from jaxscale._log import get_logger
    from jaxscale.data import holdout_mask
    from jaxscale.observational.model import _warn_imputed, dedupe, top_rows
    from jaxscale.observational.report import extrapolation_summary, table_summary

    if not args.target_col:
        raise ValueError("--csv needs --target-col COLUMN (the score to predict)")
    if sum([args.cutoff is not None, bool(args.holdout), args.test_frac is not None]) > 1:
        raise ValueError("give at most one of --cutoff, --holdout and --test-frac")
    check_outputs(args)
    default = obs.Spec()
    spec = obs.Spec(k=default.k if args.k is None else args.k, floor=_link(args, default.floor),
                    loss=args.loss, bootstrap=args.bootstrap, bayes=args.bayes, likelihood=args.likelihood,
                    num_warmup=args.warmup, num_samples=args.samples, num_chains=args.chains,
                    n_items=args.n_items, ref_family=args.ref_family,
                    max_steps=default.max_steps if args.max_steps is None else args.max_steps)
    df = read_input(args)
    n_read, dropped = len(df), []
    metrics = split_list(args.metric_cols)
    if args.dedupe:
        df, dropped = dedupe(df, model_col=args.model_col,
                             columns=None if metrics is None else metrics + [args.target_col])
    data = obs.from_frame(df, target_col=args.target_col, metric_cols=metrics, lo=args.lo, hi=args.hi,
                          flops_col=args.flops_col, flops_unit=args.flops_unit, model_col=args.model_col,
                          metric_scale=args.metric_scale,
                          family_col=args.family_col, what=Path(args.csv).name)
    if args.k is None and len(data.metric_names) < spec.k:  # the default k, not one you chose
        get_logger("jaxscale.cli").info("%d benchmark columns: %d principal capabilities (the default is %d; "
                                        "--k to choose)", len(data.metric_names), len(data.metric_names), spec.k)
        spec = spec._replace(k=len(data.metric_names))
    n = len(df)
    excluded = np.zeros(n, bool)
    if args.cutoff is not None:
        train, held, excluded = obs.cutoff_rows(data, args.cutoff)
        split = f"train: FLOPs <= {args.cutoff:g} (unit of column {dict(data.columns)['flops']!r})"
    elif args.test_frac is not None:
        train, held, excluded = top_rows(data, args.test_frac)
        split = f"held out: the top {args.test_frac:g} of the rows by target"
    else:
        held = holdout_mask(df, args.holdout, min_train=1)
        train = ~held
        split = f"held out: {args.holdout}" if args.holdout else "none: every row is fitted"
    key = jax.random.key(args.seed)
    t0 = time.perf_counter()
    fit = obs.fit(key, obs.take_rows(data, train), spec)
    seconds = time.perf_counter() - t0
    # every row: same draws as `obs predict`; the training rows' imputed cells were warned about by fit
    pred = obs.predict(fit, data, key=key, level=args.level, warn_imputed=False)
    miss = ~np.isfinite(np.asarray(data.scores, float))
    _warn_imputed(fit, data, miss, rows=~train, what="obs fit (rows not fitted)", stacklevel=2)
    out = dict(source=str(args.csv), n_read=n_read, n_duplicates_dropped=len(dropped),
               duplicate_rows_dropped=dropped, split=split, level=args.level,
               **table_summary(fit, data, pred, train=train, held_out=held, excluded=excluded),
               n_no_flops=int(excluded.sum()) if args.cutoff is not None else 0,
               fit_seconds=seconds)
    if args.test_frac is not None:
        out["n_no_target"] = int(excluded.sum())
        out["split_note"] = TEST_FRAC_NOTE
        get_logger("jaxscale.cli").info("--test-frac: %s", TEST_FRAC_NOTE)
    base_cols = {}  # each baseline's value on the scored held-out rows, for --predictions
    if (held & np.isfinite(np.asarray(data.y))).any():
        out["holdout"] = score(df[args.target_col], pred, mask=held)
        out.update(_table_baselines(args, fit, data, pred, train, held, base_cols))
    else:
        out["holdout"] = out["baselines"] = None
        out["holdout_reason"] = out["baselines_reason"] = _no_holdout_reason(args, held)
    out["extrapolation"] = extrapolation_summary(fit, data, pred, ~train)
    label = np.where(train, "train", np.where(held, "holdout", "excluded"))
    if args.predictions:
        out["predictions"] = write_predictions(args.predictions, df, pred, extra={
            "split": label, IMPUTED_COLUMN: miss.sum(axis=1), **base_cols})
    if args.plot:
        from jaxscale import plotting
        from jaxscale.observational.plot import plot_fit

        target = dict(fit.columns).get("target", "target")
        fig, _ = plot_fit(fit, data, pred, train=train, held_out=held, axis=obs.reference_axis(fit, data),
                          title=f"observational scaling law of {target} ({Path(args.csv).name})", level=args.level)
        out["plot"] = str(plotting.save(fig, args.plot))
    out["saved"] = save_fit(args, fit)
    if out["saved"] is None:
        out["saved_reason"] = "no --save folder given"
    return out


def _no_holdout_reason(args, held) -> str:
    """Why a fit on your table has no held-out score: no split, a split that holds out nothing, or
    held-out rows without a target value."""
    if held.any():
        return (f"the {int(held.sum())} held-out row(s) have no target value (column {args.target_col!r} is empty "
                "there), so there is nothing to score: give their targets, or hold out rows that have one")
    if args.cutoff is not None:
        return f"no row has FLOPs above the cut-off {args.cutoff:g}, so none is held out: lower --cutoff"
    if args.test_frac is not None:
        return f"--test-frac {args.test_frac:g} of the rows with a target rounds down to no row: raise it"
    if args.holdout:
        return f"--holdout {args.holdout!r} selects no row: change the expression"
    return "no split given, every row is fitted (give --holdout, --cutoff or --test-frac)"


#: Column of the predictions file: benchmark cells of the row that the prediction imputed.
IMPUTED_COLUMN = "n_imputed"


def _imputed_report(fit, df) -> tuple[dict, dict]:
    """``obs predict``'s account of the query's empty benchmark cells (imputed by the prediction,
    which warns): their count, the rows, per column (JSON), and an ``n_imputed`` column per row."""
    from jaxscale.observational import imputed_cells

    miss = imputed_cells(fit, df)
    fields = {"n_imputed": int(miss.sum()), "n_rows_imputed": int(miss.any(axis=1).sum()),
              "imputed_columns": {name: int(c) for name, c in zip(fit.metric_names, miss.sum(axis=0)) if c}}
    return fields, {IMPUTED_COLUMN: miss.sum(axis=1)}


def tasks_handler(args) -> dict:
    """Handler of ``jaxscale obs tasks``: every named experiment and its settings."""
    from jaxscale.observational.tasks import TASKS

    return {"tasks": [dict(name=t.name, description=t.description, target=t.column,
                           split=f"{t.split} {t.split_value:g}", link="floor" if t.floor else "plain",
                           loss=t.loss, metrics=len(t.metrics), reference=t.ref_family)
                      for t in TASKS.values()]}


def select_handler(args) -> dict:
    """Handler of ``jaxscale obs select``: V-optimal family unions within the budget(s)."""
    from jaxscale.observational.selection import select, select_table

    budgets = [int(b) for b in str(args.budget).split(",")]
    if any(b < 3 for b in budgets):
        raise ValueError(f"--budget must be >= 3 models, got {budgets}")
    forced = None if args.forced in ("", "none", "None") else args.forced
    sel = select(args.pool, budgets, forced=forced)
    out = {"pool": args.pool, "forced": forced, "selections": select_table(sel),
           "models": {s.budget: list(s.models) for s in sel}}
    if forced is None:
        out["forced_reason"] = "no family forced (--forced none)"
    return out


def calibrate_handler(args) -> dict:
    """Handler of ``jaxscale obs calibrate``: held-out coverage of the Bayesian law, every task."""
    import jax

    from jaxscale.observational.bayes_eval import calibrate
    from jaxscale.infer.prediction import Prediction

    names = split_list(args.tasks)
    res = calibrate(jax.random.key(args.seed), names, likelihood=args.likelihood,
                    num_warmup=args.warmup, num_samples=args.samples, num_chains=args.chains, warn=True)
    res.pop("fits")
    for row in res["rows"]:  # the ln-FLOPs sigmoid on the same held-out models (those with FLOPs)
        h = row.pop("heldout")
        model = Prediction(h["mean"], h["lower"], h["upper"])
        # the 90 % interval on every held-out model, the rows of coverage_90
        row["model_interval"] = check_interval(h["y"], model, 0.9, rows="the held-out models", independent=True,
                                               what=f"obs calibrate, task {row['task']} (Bayesian law)")
        has = np.isfinite(h["baseline"])
        if h["baseline_reason"] or not has.any():
            row["baselines"], row["baselines_reason"] = None, h["baseline_reason"] or "no held-out model has FLOPs"
            continue
        row["baselines"] = compare_baselines(h["y"], model, {BASELINE: h["baseline"]}, mask=has,
                                             what=f"obs calibrate, task {row['task']} (Bayesian law, held-out "
                                                  "models with FLOPs)")
        row["baselines"].update(n_heldout_no_flops=int((~has).sum()), n_train_no_flops=h["n_train_no_flops"])
    return res


def sweep_handler(args) -> dict:
    """Handler of ``jaxscale obs sweep``: test MSE per test ratio and AUE, PC law vs ln-FLOPs."""
    from jaxscale.observational.splits import SWEEP_RATIOS
    from jaxscale.observational.sweep import cutoff_sweep

    check_outputs(args)
    ratios = SWEEP_RATIOS if args.ratios is None else np.array(split_list(args.ratios, float))
    out = cutoff_sweep(args.task, ratios, rank_by=args.rank_by).to_dict()
    if args.plot:
        from jaxscale.observational.plot import plot_sweep

        out["plot"] = str(plot_sweep(out, args.plot, args.rank_by))
    return out


def subsets_handler(args) -> dict:
    """Handler of ``jaxscale obs subsets``: V-optimal vs random training subsets (Fig. 7a)."""
    import jax

    from jaxscale.observational.sweep import subset_curve

    budgets = tuple(split_list(args.budget, int))
    if any(b < 3 for b in budgets):
        raise ValueError(f"--budget must be >= 3 models, got {list(budgets)}")
    key = None if args.random == 0 else jax.random.key(args.seed)
    return subset_curve(key, budgets, n_random=max(args.random, 1))


def family_handler(args) -> dict:
    """Handler of ``jaxscale obs family``."""
    from jaxscale.observational.report import family_summary

    check_outputs(args)
    return family_summary(args.seed, task=args.task, ref=args.ref, latent_flops=args.latent_flops,
                          tau_scale=args.tau_scale, num_warmup=args.warmup, num_samples=args.samples,
                          num_chains=args.chains, plot=args.plot)


def _bayes_args(p, warmup, samples, chains):
    from jaxscale.observational.spec import LIKELIHOODS, ObsSpec

    p.add_argument("--likelihood", choices=LIKELIHOODS, default=ObsSpec().likelihood,
                   help="Bayesian likelihood (extrap: censored normal + extrapolation discrepancy "
                        "calibrated by a within-training backtest; binomial ones need item counts)")
    p.add_argument("--seed", type=int, default=0, help="seed of bootstrap resamples, NUTS and predictive draws")
    p.add_argument("--warmup", type=int, default=warmup, help="NUTS warm-up steps per chain")
    p.add_argument("--samples", type=int, default=samples, help="NUTS draws per chain")
    p.add_argument("--chains", type=int, default=chains, help="NUTS chains")


_FIT_HELP = """Fit the observational law to your own table (--csv) or run a named task (--task).

Your table: one row per model; benchmark accuracies in [0, 1] (empty = missing, imputed on the
training rows), the target column (raw units within [--lo, --hi]), optionally training FLOPs
(--flops-col, unit --flops-unit FLOPs; empty = unknown), model and family names. Split with ONE of
--cutoff (train on FLOPs <= X; rows without FLOPs are left out and counted), --holdout EXPR or
--test-frac; without one every row is fitted."""


def register(subparsers) -> None:
    """Add the ``obs`` command (observational scaling laws, Ruan et al. 2024)."""
    from jaxscale.observational.constants import BASE_METRICS, FAMILY, FLOPS
    from jaxscale.observational.spec import FLOPS_UNIT, ObsSpec
    from jaxscale.observational.tasks import task_names

    spec = ObsSpec()
    obs = subparsers.add_parser("obs", help="observational scaling laws (PCA capabilities -> sigmoid)",
                                formatter_class=Formatter)
    sub = obs.add_subparsers(dest="obs_command", required=True)
    f = sub.add_parser("fit", help="fit your own benchmark table (--csv) or a named task (--task)",
                       formatter_class=Formatter, description=_FIT_HELP)
    f.add_argument("--task", default=None, help="named task (see `jaxscale obs tasks`)")
    add_table_args(f, csv_help="your own table (CSV, TSV, Parquet or JSON): one row per model")
    f.add_argument("--target-col", "--target", dest="target_col", default=None, metavar="COL",
                   help="--csv: the column to predict")
    f.add_argument("--metric-cols", "--metrics", dest="metric_cols", default=None, metavar="A,B,C",
                   help=f"--csv: comma-separated benchmark columns (none: those of {list(BASE_METRICS)} "
                        "present, except the target)")
    f.add_argument("--flops-col", default=FLOPS, metavar="COL",
                   help="--csv: training-compute column (optional; empty cells = unknown)")
    f.add_argument("--flops-unit", type=float, default=FLOPS_UNIT,
                   help="--csv: FLOPs per unit of --flops-col (1e21 for 'FLOPs (1E21)', 1 for raw FLOPs)")
    f.add_argument("--model-col", default="Model", metavar="COL", help="--csv: model names (optional, unique)")
    f.add_argument("--family-col", default=FAMILY, metavar="COL", help="--csv: family names (optional)")
    f.add_argument("--ref-family", default=spec.ref_family,
                   help="--csv: reference family of the equivalent-FLOPs axis")
    f.add_argument("--cutoff", type=float, default=None,
                   help="--csv: train on rows with FLOPs <= CUTOFF (unit of --flops-col), score the rest")
    f.add_argument("--test-frac", type=float, default=None,
                   help="--csv: hold out this top fraction of the rows by target (the agent tasks' rule)")
    f.add_argument("--dedupe", action="store_true",
                   help="--csv: keep the first row of a repeated model (else repeated models are an error)")
    f.add_argument("--lo", type=float, default=0.0, help="--csv: chance level of the target")
    f.add_argument("--hi", type=float, default=1.0, help="--csv: maximum of the target (100 for percentages)")
    f.add_argument("--metric-scale", type=float, default=1.0,
                   help="--csv: full scale of the benchmark columns (100 for percentages; a saved model reads "
                        "query tables on the same scale)")
    f.add_argument("--link", choices=["floor", "plain"], default=None,
                   help="floor b in [0, 0.2] or plain sigmoid (none: the task's link; for --csv "
                        f"{'floor' if spec.floor else 'plain'})")
    f.add_argument("--k", type=int, default=None,
                   help=f"number of principal capabilities (none: the task's; for --csv {spec.k})")
    f.add_argument("--loss", choices=["huber", "ols"], default=spec.loss, help="--csv: loss of the point fit")
    f.add_argument("--max-steps", type=int, default=None,
                   help=f"--csv: L-BFGS steps of the point fit (none: {spec.max_steps}); a fit that stops "
                        "unconverged is reported (converged, reason) and warned about")
    f.add_argument("--bootstrap", type=int, default=spec.bootstrap,
                   help="bootstrap refits of the law (vmapped damped Newton; e.g. 1000); 0 = none")
    f.add_argument("--bayes", action="store_true", help="also run the Bayesian law (numpyro NUTS)")
    f.add_argument("--n-items", type=int, default=spec.n_items,
                   help="--csv: items of the target benchmark (binomial likelihoods only)")
    _bayes_args(f, spec.num_warmup, spec.num_samples, spec.num_chains)
    f.add_argument("--level", type=interval_level, default=0.9, help="--csv: central interval level of predictions")
    f.add_argument("--plot", default=None, metavar="PNG", help="write the scaling-curve PNG here")
    add_output_args(f)
    f.set_defaults(func=fit_handler)
    add_predict_command(sub, "jaxscale.observational", "observational law", report=_imputed_report)
    t = sub.add_parser("tasks", help="list the named experiments", formatter_class=Formatter)
    t.set_defaults(func=tasks_handler)
    s = sub.add_parser("select", help="V-optimal model subsets (unions of families)", formatter_class=Formatter)
    s.add_argument("--budget", default="4,8,12,16,20", help="number of models (comma-separated list)")
    s.add_argument("--pool", choices=["full", "le7b", "flops84"], default="full",
                   help="candidate models: all, those <= 7B parameters, or with FLOPs <= 8.4e22")
    s.add_argument("--forced", default="Llama-2", help="family always included ('none' for none)")
    s.set_defaults(func=select_handler)
    c = sub.add_parser("calibrate", help="Bayesian law: held-out 50%%/90%% coverage on every task",
                       formatter_class=Formatter)
    c.add_argument("--tasks", default=None, help="comma-separated task names (default: all)")
    _bayes_args(c, 150, 150, spec.num_chains)
    c.set_defaults(func=calibrate_handler)
    s = sub.add_parser("sweep", help="cut-off sweep: test MSE vs test ratio and its AUE (App. C.4)",
                       formatter_class=Formatter)
    s.add_argument("--task", required=True, choices=task_names(), help="named task (see `jaxscale obs tasks`)")
    s.add_argument("--rank-by", choices=["flops", "y"], default="flops",
                   help="hold out the top models by FLOPs or by the target")
    s.add_argument("--ratios", default=None, help="comma-separated test ratios (default 0.60..0.05)")
    s.add_argument("--plot", default=None, help="write the MSE-vs-ratio PNG here")
    s.set_defaults(func=sweep_handler)
    c = sub.add_parser("subsets", help="Fig. 7a: GSM8K test MSE of fits trained on V-optimal subsets",
                       formatter_class=Formatter)
    c.add_argument("--budget", default="4,8,12,16,20,24", help="comma-separated model budgets")
    c.add_argument("--random", type=int, default=5, help="random family unions per budget (0: none)")
    c.add_argument("--seed", type=int, default=0, help="seed of the random subsets")
    c.set_defaults(func=subsets_handler)
    register_family(sub)


def register_family(sub) -> None:
    """Add ``family`` to the ``obs`` sub-subcommands (``sub`` from ``obs.add_subparsers``)."""
    p = sub.add_parser("family", help="family compute efficiency (hierarchical, NUTS) and pooled "
                                      "reference-equivalent FLOPs", formatter_class=Formatter)
    p.add_argument("--task", default=None, help="use this task's law capability P (default: PC-1)")
    p.add_argument("--ref", default=None, help="reference family (default: the task's, or Llama-2)")
    p.add_argument("--latent-flops", action="store_true",
                   help="include models without FLOPs with a latent log10 C (weakly identified)")
    p.add_argument("--tau-scale", type=float, default=1.0,
                   help="HalfNormal scale of the between-family spreads (standardised units)")
    p.add_argument("--seed", type=int, default=0, help="NUTS seed")
    p.add_argument("--warmup", type=int, default=300, help="NUTS warm-up steps per chain")
    p.add_argument("--samples", type=int, default=300, help="NUTS draws per chain")
    p.add_argument("--chains", type=int, default=4, help="NUTS chains")
    p.add_argument("--plot", default=None, help="write PC/P vs log10 FLOPs per family (PNG) here")
    p.set_defaults(func=family_handler)


def demo_section(key, out_dir, smoke: bool) -> dict:
    """Fit GSM8K CoT (paper: σ(2.04x − 5.53), test MSE 6.0e-3), run NUTS, save a PNG.

    Returns dict(title, markdown, summary).
    """
    import jax

    from jaxscale.config import enable_x64
    from jaxscale.observational import bayes
    from jaxscale.observational.pipeline import run_task
    from jaxscale.observational.plot import plot_scaling
    from jaxscale.observational.report import bayes_band, bayes_summary

    enable_x64()
    t0 = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    r = run_task("gsm8k_cot")
    dz = r.design
    n = 150 if smoke else 500
    summ, fit = bayes_summary(key, r, num_warmup=min(n, 300), num_samples=n, num_chains=4)
    band = bayes_band(jax.random.fold_in(key, 2), r, fit)
    png = "obs_gsm8k_cot.png"
    plot_scaling(r, out_dir / png, band=band,
                 title="GSM8K CoT: observational law, train FLOPs <= 8.4e22")
    w_lo, w_hi = np.quantile(bayes.fequiv_draws(fit, dz.ref_S[:, :3], dz.ref_flops)[0], [0.05, 0.95])
    d = fit.posterior.diagnostics
    summary = dict(task="gsm8k_cot", law=f"σ({r.slope:.2f}x {r.intercept:+.2f})",
                   mse_train=r.mse_train, mse_test=r.mse_test, mse_test_bayes=summ["mse_test_bayes"],
                   coverage_50=summ["coverage_50"], coverage_90=summ["coverage_90"],
                   n_train=r.n_train, n_test=r.n_test, max_r_hat=d["max_r_hat"],
                   divergences=d["divergences"], seconds=time.perf_counter() - t0)
    md = (
        "Observational scaling law (Ruan et al. 2024) for GSM8K 8-shot CoT: 3 principal "
        "capabilities of 7 standard benchmarks, trained on the 47 models with FLOPs <= 8.4e22, "
        f"tested on {r.n_test} larger / newer models.\n\n"
        f"* point fit: y = σ({r.slope:.2f}x {r.intercept:+.2f}) on the log10 Llama-2-equivalent "
        f"FLOPs axis (paper: σ(2.04x − 5.53)); MSE train {r.mse_train:.1e}, test {r.mse_test:.1e} "
        "(paper 3.1e-3 / 6.0e-3)\n"
        "* Bayesian (numpyro NUTS; normal likelihood censored to [0, 1], floor prior on [0, 0.2], "
        "an extrapolation discrepancy for models beyond the training data whose size is learned "
        f"by a backtest inside the training set): MAP test MSE {summ['mse_test_bayes']:.1e}; held-out "
        f"coverage of the 50% / 90% predictive intervals {summ['coverage_50']:.0%} / "
        f"{summ['coverage_90']:.0%}; the Llama-2 axis slope w has a 90% interval [{w_lo:.2f}, {w_hi:.2f}]\n\n"
        f"![GSM8K CoT]({png})\n"
    )
    return dict(title="Observational scaling laws: GSM8K CoT", markdown=md, summary=summary)
