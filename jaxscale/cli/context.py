"""``jaxscale context``: the context-aware scaling law (Montgomery et al. 2025), one law per task, on
your own table (``fit --csv``) or a bundled long-context source (``fit --dataset``); ``predict`` with
a saved model; and the context-law section of ``jaxscale demo``."""
from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

from jaxscale._log import get_logger
from jaxscale.cli._common import (
    Formatter,
    add_json,
    add_output_args,
    add_predict_command,
    add_table_args,
    baseline_columns,
    check_outputs,
    compare_baselines,
    read_input,
    save_fit,
    score,
    write_predictions,
)

__all__ = ["register", "fit_handler", "spec_from_args", "demo_section"]

log = get_logger(__name__)

_FIT_HELP = """\
Fit P(C, n_pmt, n_ctx) = [1 - exp(-A (C/C_c)^alpha)] [1 - exp(-B (n_pmt/n_c)^beta)] S(n_pmt, n_ctx),
one law per task, by differential evolution + L-BFGS (all tasks in one vmapped program).

Your own table (--csv): one row per (model, task, prompt length) cell with compute C in FLOPs (or
--n-col/--d-col, C = 6 N D), prompt length and context limit in tokens, and a score in [0, 1].
Example:
  jaxscale context fit --csv cells.csv --task-col task --holdout "n_pmt >= 8000" \\
      --predictions pred.csv --save model/ --json
  jaxscale context predict --model model/ --csv new_cells.csv --json

Bundled sources (--dataset): in-distribution fit and the < --cutoff -> longer extrapolation per task,
with the source's preset (context_law.PRESETS); law flags given on the command line override it.
"""


def _mark(namespace, dest: str) -> None:
    namespace.spec_given = tuple(sorted(set(getattr(namespace, "spec_given", ())) | {dest}))


class _Given(argparse.Action):
    """Store the value and remember that the flag was given (it then overrides a preset)."""

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, values)
        _mark(namespace, self.dest)


class _GivenBool(argparse.BooleanOptionalAction):
    def __call__(self, parser, namespace, values, option_string=None):
        super().__call__(parser, namespace, values, option_string)
        _mark(namespace, self.dest)


def _add_spec_args(p: argparse.ArgumentParser) -> None:
    """One flag per ``Spec`` field, defaulting to ``Spec()``."""
    from jaxscale.context_law.spec import LIKELIHOODS, PENALTIES, Spec

    d = Spec()
    g = p.add_argument_group("law form (defaults: Spec())")
    g.add_argument("--penalty", action=_Given, default=d.penalty, choices=PENALTIES,
                   help="cliff past n_ctx: none, step (one-token sigmoid), logistic (relative width), log_ratio")
    g.add_argument("--fit-scale", action=_GivenBool, default=d.fit_scale, help="fit the penalty's width / steepness")
    g.add_argument("--scale", action=_Given, type=float, default=d.scale,
                   help="penalty scale when not fitted (relative width for logistic, kappa for log_ratio)")
    g.add_argument("--fit-alpha", action=_GivenBool, default=d.fit_alpha,
                   help="fit the compute exponent (needs >= 2 compute levels); else alpha = --alpha-fixed")
    g.add_argument("--alpha-fixed", action=_Given, type=float, default=d.alpha_fixed,
                   help="alpha when it is not fitted")
    g.add_argument("--decay", action=_GivenBool, default=d.decay,
                   help="add the length decay (1 + n_pmt/1e3)^-gamma (scores that fall with length)")
    g.add_argument("--loss", action=_Given, default=d.loss, choices=("mse", "mae"), help="point-fit loss on P")
    g.add_argument("--fit-shift", action=_GivenBool, default=d.fit_shift,
                   help="fit an effective context limit c * n_ctx (logistic / log_ratio penalties)")
    g = p.add_argument_group("optimiser")
    g.add_argument("--popsize", action=_Given, type=int, default=d.popsize, help="DE members per free parameter")
    g.add_argument("--maxiter", action=_Given, type=int, default=d.maxiter, help="DE generation cap")
    g.add_argument("--tol", action=_Given, type=float, default=d.tol, help="DE relative tolerance")
    g.add_argument("--polish", action=_GivenBool, default=d.polish, help="L-BFGS polish after DE")
    g.add_argument("--restarts", action=_Given, type=int, default=d.restarts,
                   help="independent DE + L-BFGS runs per task (vmapped); the best is kept")
    g = p.add_argument_group("Bayesian version (NUTS)")
    g.add_argument("--bayes", action=_GivenBool, default=d.bayes,
                   help="also run NUTS: posterior-predictive intervals and their coverage")
    g.add_argument("--likelihood", action=_Given, default=d.likelihood, choices=LIKELIHOODS,
                   help="noise model of the scores (binomial needs --n-items-col)")
    g.add_argument("--num-warmup", action=_Given, type=int, default=d.num_warmup, help="NUTS warm-up steps per chain")
    g.add_argument("--num-samples", action=_Given, type=int, default=d.num_samples, help="NUTS draws per chain")
    g.add_argument("--num-chains", action=_Given, type=int, default=d.num_chains, help="NUTS chains")
    g.add_argument("--target-accept", action=_Given, type=float, default=d.target_accept,
                   help="NUTS target acceptance probability; raise it (e.g. 0.95) on divergent transitions")
    g = p.add_argument_group("extrapolation")
    g.add_argument("--backtest-frac", action=_Given, type=float, default=d.backtest_frac,
                   help="share of each task's training rows (the longest prompts) held out inside the training data "
                        "to learn how fast errors grow outside it (intervals widen at that rate); 0: off")
    p.set_defaults(spec_given=())


def spec_from_args(args, base=None):
    """``Spec`` from the flags: all of them over ``Spec()`` (``base=None``), or only the flags given
    on the command line over a preset ``base``."""
    from jaxscale.context_law import Spec

    fields = Spec._fields if base is None else tuple(getattr(args, "spec_given", ()))
    base = Spec() if base is None else base
    return base._replace(**{f: getattr(args, f) for f in fields}).check()


def _columns(args) -> dict:
    return dict(c_col=args.c_col, n_col=args.n_col, d_col=args.d_col, n_prompt_col=args.n_pmt_col,
                n_ctx_col=args.n_ctx_col, score_col=args.score_col, chance_col=args.chance_col,
                task_col=args.task_col, n_items_col=args.n_items_col, score_scale=args.score_scale)


def _caught(records) -> list:
    msgs = []
    for w in records:
        msg = str(w.message)
        if msg not in msgs:
            msgs.append(msg)
            log.warning("warning: %s", msg)
    return msgs


def _shift_hint(spec) -> str:
    """What to try when the paper's law (the default) loses to carrying scores forward."""
    from jaxscale.context_law.model import SHAPED_PENALTIES

    if spec.fit_shift or spec.penalty not in SHAPED_PENALTIES:
        return ""
    return ("try --fit-shift (Spec(fit_shift=True)): an effective context limit shift x n_ctx, for scores that "
            "fall before the nominal limit; every bundled preset fits it")


def _interval_text(fit) -> str:
    if fit.posterior is not None:
        return (f"posterior predictive ({fit.spec.likelihood} likelihood, "
                f"{fit.posterior.theta.shape[0]} NUTS draws)")
    return ("residual noise: mean +- z * sqrt(task's residual sd^2 + (drift * extrapolation distance)^2), clipped "
            f"to [0, {fit.score_scale:g}]; no parameter uncertainty")


def _scores(y, pred, rows, label: str) -> tuple:
    """score() on ``rows`` or (None, reason) when there are none."""
    if not rows.any():
        return None, f"no {label} rows"
    return score(y, pred, rows), None


def _model_labels(args, df):
    if args.model_col is None:
        return None
    if args.model_col not in df.columns:
        raise ValueError(f"--model-col {args.model_col!r} is not a column of {args.csv}; columns: "
                         f"{list(df.columns)[:20]}")
    missing = df[args.model_col].isna()
    if missing.any():
        from jaxscale.data.validate import _rows

        raise ValueError(f"--model-col {args.model_col!r} has {int(missing.sum())} missing label(s) at rows "
                         f"{_rows(df.index[missing])}; give every row its model's name")
    return df[args.model_col].astype(str).to_numpy()


def _fit_table(args) -> dict:
    import jax
    import numpy as np

    from jaxscale import context_law as cl
    from jaxscale.context_law.baseline import carry_forward, prompt_trend
    from jaxscale.data import holdout_mask

    if args.cutoff is not None:
        raise ValueError("--cutoff applies to --dataset; with --csv give --holdout EXPR (e.g. \"n_pmt >= 10000\")")
    check_outputs(args)
    df = read_input(args)
    spec = spec_from_args(args)
    model = _model_labels(args, df)
    with warnings.catch_warnings(record=True) as records:
        warnings.simplefilter("always")
        data = cl.from_frame(df, **_columns(args))
        held = holdout_mask(df, args.holdout)
        train = jax.tree_util.tree_map(lambda a: jax.device_put(np.asarray(a)[~held]), data)  # on the host
        key = jax.random.key(args.seed)
        t0 = time.perf_counter()
        fit = cl.fit(key, train, spec)
        seconds = time.perf_counter() - t0
        pred = cl.predict(fit, data, key=key, level=0.9)  # the same draws as `context predict --seed`
        y = np.asarray(data.y) * data.score_scale  # predict answers on the table's scale
        codes = np.asarray(data.task)
        sin, _ = _scores(y, pred, ~held, "training")
        sout, out_reason = _scores(y, pred, held, "held-out (--holdout)")
        out = {"source": str(args.csv), "n_rows": int(len(df)), "n_train": int((~held).sum()),
               "n_holdout": int(held.sum()), "tasks_n": len(fit.task_labels), "spec": spec._asdict(),
               "fit_seconds": seconds, "interval": _interval_text(fit), "level": 0.9, "score_scale": fit.score_scale,
               "mae_in": sin["mae"], "in": sin}
        bases = {}
        if sout is None:
            out.update(mae_out=None, mae_out_reason=out_reason, coverage_90=None, coverage_90_reason=out_reason,
                       out=None, out_reason=out_reason, baselines=None, baselines_reason=out_reason)
        else:
            out.update(mae_out=sout["mae"], coverage_90=sout["coverage"], out=sout)
            base, n_fallback = carry_forward(data, ~held, model)
            trend, n_trend_fallback = prompt_trend(data, ~held, model)
            bases = {"carry_forward": np.asarray(base.mean)[held], "prompt_trend": np.asarray(trend.mean)[held]}
            out["baselines"] = compare_baselines(y, pred, {"carry_forward": base, "prompt_trend": trend},
                                                 what="context-law fit", mask=held, level=0.9, hint=_shift_hint(spec))
            who = ("; a model is " + (f"column {args.model_col!r}" if model is not None else
                                      "a (compute, context limit) pair (give --model-col to name models)")
                   + "; rows of a model with no training row use the task's mean training score")
            out["baselines"]["carry_forward"]["fallback_rows"] = n_fallback
            out["baselines"]["carry_forward"]["what"] = (
                "each (model, task)'s score at its longest training prompt not longer than the row's, carried "
                "forward" + who)
            out["baselines"]["prompt_trend"]["fallback_rows"] = n_trend_fallback
            out["baselines"]["prompt_trend"]["what"] = (
                "each (model, task)'s straight line in ln(prompt length) through its longest training prompts (those "
                "from half the longest on, or its two longest), extended and clipped to the score's range" + who)
        dist = np.asarray(pred.extrapolation)
        out["extrapolation_max"] = float(dist.max())
        out["extrapolation_unit"] = "decades of prompt length, compute or prompt/limit ratio outside the task's cells"
        out["drift_per_decade"] = float(np.asarray(fit.drift)[0]) * fit.score_scale
        out["backtest_rows"] = int(np.sum(np.asarray(fit.backtest_rows)))  # 0: the drift was not learnt
        if fit.drift_reason:
            out["drift_reason"] = fit.drift_reason
        point = None
        if fit.posterior is not None:
            point = cl.predict(fit.replace(posterior=None), data, level=0.9)
            ps, _ = _scores(y, point, held, "held-out")
            if ps is None:
                out.update(coverage_90_point=None, coverage_90_point_reason=out_reason)
            else:
                out["coverage_90_point"] = ps["coverage"]
            out["bayes"] = cl.posterior_summary(fit)
        tasks = cl.task_summary(fit)
        for t, row in enumerate(tasks):
            row["in"], _ = _scores(y, pred, ~held & (codes == t), "training")
            row["out"], reason = _scores(y, pred, held & (codes == t), "held-out")
            if reason:
                row["out_reason"] = reason
            if point is not None and held[codes == t].any():
                row["coverage_90_point"] = score(y, point, held & (codes == t))["coverage"]
        out["tasks"] = tasks
        out["converged"] = bool(np.all(np.asarray(fit.converged)))
    out["warnings"] = _caught(records)
    if args.predictions:
        out["predictions"] = write_predictions(args.predictions, df, pred,
                                               extra={"heldout": held, **baseline_columns(len(df), held, bases)})
    if args.plot:
        from jaxscale.context_law.plot import plot_task

        out["plot"] = str(plot_task(fit, data, heldout=held, key=key, path=args.plot))
    if args.save:
        out["saved"] = save_fit(args, fit)
    return out


def _fit_bundled(args) -> dict:
    import jax
    import numpy as np

    from jaxscale.context_law.evaluate import bayes_extrapolation, default_spec, evaluate_source, source_report
    from jaxscale.infer.prediction import Prediction

    for flag in ("csv", "where", "holdout", "predictions", "save", "model_col"):
        if getattr(args, flag, None):
            raise ValueError(f"--{flag.replace('_', '-')} works with --csv (your own table), not with --dataset; the "
                             "bundled experiments split at --cutoff")
    if args.score_scale != 1.0:
        raise ValueError("--score-scale works with --csv (your own table); the bundled sources hold fractions")
    check_outputs(args)
    key = jax.random.key(args.seed)
    spec = spec_from_args(args, default_spec(args.dataset))
    cutoff = 10_000.0 if args.cutoff is None else args.cutoff
    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as records:
        warnings.simplefilter("always")
        res = evaluate_source(key, args.dataset, spec, cutoff=cutoff)
        out = source_report(res)
        out["fit_seconds"] = time.perf_counter() - t0
        held = [~(f["n_pmt"].to_numpy(float) < cutoff) for f in res["frames"].values()]
        cat = lambda k: np.concatenate([r[k][h] for r, h in zip(res["tasks"], held)])  # noqa: E731
        y = np.concatenate([f["score"].to_numpy(float)[h] for f, h in zip(res["frames"].values(), held)])
        point = Prediction(cat("point_extrap"), cat("point_lower"), cat("point_upper"))
        out["baselines"] = compare_baselines(y, point, {"carry_forward": cat("baseline_pred"),
                                                        "prompt_trend": cat("trend_pred")},
                                             what=f"{args.dataset} point fit (prompts >= {cutoff:g} tokens)",
                                             level=0.9)
        out["baselines"]["carry_forward"]["what"] = ("each (model, task)'s score at its longest prompt below "
                                                     f"{cutoff:g} tokens, carried forward to the longer prompts")
        out["baselines"]["prompt_trend"]["what"] = ("each (model, task)'s straight line in ln(prompt length) through "
                                                    f"its longest prompts below {cutoff:g} tokens, extended")
        if spec.bayes:
            out["bayes"] = bayes_extrapolation(jax.random.fold_in(key, 1), res, spec)
            out["coverage_90"] = out["bayes"]["coverage_90"]
    out["warnings"] = _caught(records)
    if args.plot:
        from jaxscale.context_law.plot import plot_fit

        out["plot"] = str(plot_fit(res, args.plot))
    return out


def fit_handler(args) -> dict:
    """Handler of ``jaxscale context fit``."""
    if bool(args.csv) == bool(args.dataset):
        raise ValueError("give --csv PATH (your own table) or --dataset NAME (a bundled source), one of the two")
    return _fit_table(args) if args.csv else _fit_bundled(args)


def register(subparsers) -> None:
    """Add ``context fit | predict`` to the main CLI."""
    from jaxscale.context_law.spec import SOURCES

    p = subparsers.add_parser("context", help="context-aware scaling law (Montgomery et al. 2025)",
                              formatter_class=Formatter)
    sub = p.add_subparsers(dest="context_cmd", required=True)
    f = sub.add_parser("fit", help="fit the law per task on your table (--csv) or a bundled source (--dataset)",
                       description=_FIT_HELP, formatter_class=Formatter)
    add_table_args(f)
    f.add_argument("--dataset", default=None, choices=SOURCES, help="a bundled source instead of --csv")
    g = f.add_argument_group("columns of --csv")
    g.add_argument("--c-col", default=None, metavar="NAME",
                   help="training compute C in FLOPs (default 'C' unless --n-col/--d-col are given)")
    g.add_argument("--n-col", default=None, metavar="NAME", help="parameters N (with --d-col: C = 6 N D)")
    g.add_argument("--d-col", default=None, metavar="NAME", help="training tokens D (with --n-col)")
    g.add_argument("--n-pmt-col", default="n_pmt", metavar="NAME", help="prompt length in tokens")
    g.add_argument("--n-ctx-col", default="n_ctx", metavar="NAME", help="context limit of the model in tokens")
    g.add_argument("--score-col", default="score", metavar="NAME", help="score in [0, 1] (or [0, --score-scale])")
    g.add_argument("--chance-col", default=None, metavar="NAME",
                   help="chance floor g in [0, 0.99] (x --score-scale) (optional)")
    g.add_argument("--score-scale", type=float, default=1.0, metavar="S",
                   help="full scale of the score and chance columns: 100 for percentages (predictions, intervals, "
                        "errors and baselines come back on it; a saved model reads query tables on it)")
    g.add_argument("--task-col", default=None, metavar="NAME", help="task label: one law per task (optional)")
    g.add_argument("--n-items-col", default=None, metavar="NAME",
                   help="items behind each score (optional; for --likelihood binomial)")
    g.add_argument("--model-col", default=None, metavar="NAME",
                   help="model label (optional): the carry-forward baseline of --holdout follows each (model, task); "
                        "without it a model is a (compute, context limit) pair")
    _add_spec_args(f)
    f.add_argument("--seed", type=int, default=0, help="PRNG seed of DE, NUTS and predictive draws")
    f.add_argument("--cutoff", type=float, default=None,
                   help="--dataset only: train on prompts shorter than this many tokens (None: 10000)")
    f.add_argument("--plot", default=None, metavar="PNG",
                   help="P vs prompt length per n_ctx with the fitted law (first task)")
    add_output_args(f)
    add_json(f)
    f.set_defaults(func=fit_handler)
    add_predict_command(sub, "jaxscale.context_law", "context-law")


def demo_section(key, out_dir: Path, smoke: bool) -> dict:
    """Fit the context law to the many-shot ICL set (all tasks in one vmapped DE + L-BFGS program).

    ``smoke`` skips the extrapolation fit and uses one DE run per task instead of two.
    """
    import numpy as np

    from jaxscale.context_law.data import load_compute_table
    from jaxscale.context_law.evaluate import default_spec, evaluate_source
    from jaxscale.context_law.plot import plot_fit
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
              "see `jaxscale context fit --dataset babilong --decay` for the length-decay extension. "
              "Your own cells: `jaxscale context fit --csv cells.csv --task-col task --holdout EXPR`."]
    return {"title": "Context-aware scaling law", "markdown": "\n".join(lines), "summary": summary}
