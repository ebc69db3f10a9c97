"""``jaxscale ncpl``: train on your own runs, predict, evaluate on the bundled NCPL splits, tune,
curves (configuration-to-performance law); and the NCPL section of ``jaxscale demo``. Handlers
return JSON-serialisable dicts; logs go to stderr."""
from __future__ import annotations

import argparse
import math
import time
import warnings
from pathlib import Path

__all__ = ["register", "cmd_evaluate", "cmd_train", "cmd_predict", "cmd_tune", "cmd_curves", "demo_section"]


def _key(seed: int):
    import jax

    return jax.random.key(seed)


def _with_reasons(metrics: dict, why: str) -> dict:
    """Give every NaN metric (JSON null) a ``<name>_reason``."""
    out = dict(metrics)
    for k, v in metrics.items():
        if isinstance(v, float) and not math.isfinite(v):
            out[f"{k}_reason"] = why
    return out


def _metrics(y, pred, lo=None, hi=None, level: float = 0.9) -> dict:
    """MAE, RMSE, Spearman (+ ``coverage_<level%>`` of the interval when bounds are given)."""
    from jaxscale.ncpl.dataset import regression_metrics

    out = _with_reasons(regression_metrics(y, pred, lo, hi), "Spearman needs more than 2 rows")
    if "coverage_90" in out and round(100 * level) != 90:
        out[f"coverage_{round(100 * level)}"] = out.pop("coverage_90")
    return out


def cmd_evaluate(args) -> dict:
    from jaxscale.cli._common import check_outputs
    from jaxscale.ncpl import pipeline as pl

    check_outputs(args)
    if args.all:
        rows = pl.evaluate_table(_key(args.seed), args.preset)
        return {"rows": [_with_reasons(r, "Spearman needs more than 2 rows") for r in rows]}
    if args.model != "ncpl":
        return pl.evaluate(args.source, args.split, args.model, preset=args.preset)  # the baselines draw nothing
    from jaxscale.cli._common import compare_baselines
    from jaxscale.ncpl import baselines as bl
    from jaxscale.ncpl.dataset import select

    df = pl.runs_frame()
    model = pl.ncpl_model(_key(args.seed), args.preset, df=df)
    out = pl.evaluate(args.source, args.split, "ncpl", df=df, fitted=model)
    test = select(df, args.source, args.split)
    p = pl.predict_quiet(model, test)
    law = bl.fit_chinchilla_refit(select(df, args.source, "train"))
    out["baselines"] = compare_baselines(
        test["final_loss"], p, {"chinchilla_on_training_rows": bl.predict_chinchilla_refit(law, test),
                                "chinchilla_ncpl_column": bl.chinchilla_column(test)},
        what=f"NCPL ({args.source} {args.split})", level=0.9)
    out["baselines"]["chinchilla_on_training_rows"]["law"] = _law_dict(law)
    out["converged"], out["converged_reason"] = bool(model.info["converged"]), model.info["converged_reason"]
    if args.plot:
        out["plot"] = str(pl.scatter_plot(test, p.mean, p.lower, p.upper, args.plot,
                                          f"NCPL {args.source} {args.split}"))
    return out


def _cols(values) -> list | None:
    """Comma-separated and/or repeated column lists -> one list (``None`` when absent)."""
    from jaxscale.cli._common import split_list

    if values is None:
        return None
    if isinstance(values, str):
        values = [values]
    return [c for v in values for c in (split_list(v) or [])]


def _spec(args):
    from jaxscale.ncpl import Spec

    return Spec(members=args.members, steps=args.steps, lr=args.lr, batch_size=args.batch_size,
                eval_every=args.eval_every, patience=args.patience, val_frac=args.val_frac,
                baseline=args.baseline, max_tokens=args.max_tokens, width=args.width, depth=args.depth,
                ckpt_every=args.ckpt_every, ckpt_dir=args.ckpt_dir, backtest_frac=args.backtest_frac,
                ckpt_force_new=args.force_new, backtest_col=args.backtest_col)


def _law_dict(law) -> dict:
    import numpy as np

    return {k: float(np.asarray(v)) for k, v in law._asdict().items()}


def _num_cols(args) -> list | None:
    """``--num-cols`` plus ``--linear-cols`` (numeric fields never log-scaled)."""
    from jaxscale.ncpl.serialize import NumField

    num = _cols(args.num_cols)
    linear = _cols(getattr(args, "linear_cols", None))
    if not linear:
        return num
    out = [c for c in (num or []) if c not in linear]
    return out + [NumField(str(c).replace("_", " "), c, False) for c in linear]


def _labels(index, mask, limit: int = 20) -> list:
    import numpy as np

    return [int(i) if isinstance(i, (int, np.integer)) else str(i) for i in np.asarray(index)[mask][:limit]]


def _dedupe(df, train_rows, args, frame_kwargs):
    """Apply ``--duplicates`` to the training rows: ``(df, train_rows, report)``."""
    import numpy as np

    from jaxscale import ncpl
    from jaxscale.ncpl.data import duplicate_rows

    if args.duplicates == "error":
        return df, train_rows, None
    data = ncpl.from_frame(df[train_rows], duplicates="keep", **frame_kwargs)
    used = list(dict.fromkeys(list(data.text_cols) + list(data.num_cols) +
                              [c for c in (args.n_col, args.d_col, args.baseline_col, args.target_col) if c]))
    sub = df[train_rows]
    dup_all = duplicate_rows(sub, used)
    later = sub.duplicated(subset=used, keep="first").to_numpy()
    if args.duplicates == "keep":
        return df, train_rows, {"policy": "keep", "n_rows_repeated": int(dup_all.sum()),
                                "rows": _labels(sub.index, dup_all)}
    drop = np.zeros(len(df), bool)
    drop[np.flatnonzero(train_rows)[later]] = True
    report = {"policy": "first", "n_dropped": int(drop.sum()), "rows_dropped": _labels(df.index, drop)}
    return df[~drop], train_rows[~drop], report


def cmd_train(args) -> dict:
    import numpy as np
    import pandas as pd

    from jaxscale import ncpl
    from jaxscale.cli._common import (
        check_outputs,
        read_input,
        save_fit,
        write_predictions,
    )
    from jaxscale.data import holdout_mask
    from jaxscale.data.validate import require_columns
    from jaxscale.ncpl.data import missing_counts
    from jaxscale.ncpl.model import check_known_values, check_missing_values, missing_cells, query_data
    from jaxscale.ncpl.pipeline import extrapolation_summary

    check_outputs(args)
    if args.holdout and args.split_col:
        raise ValueError("give --holdout EXPR or --split-col S (with --train-value), not both")
    df = read_input(args)
    target = args.target_col
    require_columns(df, [target], "--csv (--target-col)")
    exclude = _cols(args.exclude_cols) or []
    if args.config_cols:  # only these columns are configuration
        keep = set(_cols(args.config_cols))
        require_columns(df, sorted(keep), "--csv (--config-cols)")
        exclude += [c for c in df.columns if c not in keep and c != target and c not in exclude]
    if args.split_col:
        require_columns(df, [args.split_col], "--csv (--split-col)")
        labels = df[args.split_col].astype(str)
        train_rows = (labels == args.train_value).to_numpy()
        if not train_rows.any():
            raise ValueError(f"--split-col {args.split_col!r} has no rows equal to --train-value {args.train_value!r}; "
                             f"values seen: {sorted(labels.unique())[:10]}")
        if args.split_col not in exclude:
            exclude.append(args.split_col)
    else:
        train_rows = ~holdout_mask(df, args.holdout, min_train=3)
    frame_kwargs = dict(target_col=target, text_cols=_cols(args.text_cols), num_cols=_num_cols(args),
                        exclude_cols=exclude, n_col=args.n_col, d_col=args.d_col, baseline_col=args.baseline_col,
                        group_cols=_cols(args.group_cols), max_tokens=args.max_tokens)
    df, train_rows, dup_report = _dedupe(df, train_rows, args, frame_kwargs)
    train_df = df[train_rows]
    data = ncpl.from_frame(train_df, duplicates="keep" if args.duplicates != "error" else "error", **frame_kwargs)
    spec = _spec(args)
    # a held-out value the training rows never had would stop the scoring after the whole fit
    scored_what = "held-out rows" if args.holdout else f"rows outside --train-value {args.train_value!r}"
    check_known_values(data, df[~train_rows], args.handle_unknown, scored_what)
    # so would an empty cell in a field every training run has (or an empty N, D)
    check_missing_values(data, df[~train_rows], scored_what)
    t0 = time.perf_counter()
    fit = ncpl.fit(_key(args.seed), data, spec)
    seconds = time.perf_counter() - t0
    query = query_data(fit, df)  # read (and tokenised) once for the prediction and its empty cells
    pred = ncpl.predict(fit, query, level=args.level, handle_unknown=args.handle_unknown)
    empty = missing_cells(fit, query)
    mean, lower, upper = (np.asarray(a, float) for a in (pred.mean, pred.lower, pred.upper))
    y = pd.to_numeric(df[target], errors="coerce").to_numpy(float)

    out = {
        "n_rows": int(len(df)), "n_train": int(train_rows.sum()), "target": target,
        "text_fields": list(data.text_cols), "numeric_fields": list(data.num_cols),
        "log_scaled": [c for c, lg in zip(data.num_cols, data.num_log) if lg],
        "skipped_columns": {c: r for c, r in _skipped(train_df, args, exclude, data).items()},
        "missing_values": missing_counts(data), "baseline": fit.baseline,
        "spec": {k: v for k, v in spec._asdict().items() if v is not None},
        "fit_seconds": seconds, "info": fit.info, "level": args.level,
        "converged": bool(fit.info["converged"]), "converged_reason": fit.info["converged_reason"],
    }
    if dup_report is not None:
        out["duplicates"] = dup_report
    if fit.law is not None:
        out["law"] = _law_dict(fit.law)
    else:
        out["law"] = None
        out["law_reason"] = {"column": f"the baseline is the column {args.baseline_col!r}",
                             "none": "no Chinchilla baseline (no --n-col/--d-col, or --baseline none)"}[fit.baseline]
    out["train"] = _metrics(y[train_rows], mean[train_rows], lower[train_rows], upper[train_rows], args.level)
    base_cols = {}  # each baseline's value on the scored rows, for --predictions
    if args.split_col:
        labels = df[args.split_col].astype(str).to_numpy()
        out["splits"] = {}
        for value in sorted(set(labels)):
            rows = labels == value
            if value == args.train_value:
                out["splits"][value] = _metrics(y[rows], mean[rows], lower[rows], upper[rows], args.level)
                continue
            entry = _scored(fit, data, train_df, df, rows, y, pred, args, f"split {value!r}", base_cols, empty)
            entry["n_rows"] = entry.pop("n")
            metrics = entry.pop("ncpl") or {"n": 0, "mae": None, "mae_reason": entry.pop("ncpl_reason", "")}
            out["splits"][value] = {**metrics, **entry}
    if args.holdout:
        out["holdout"] = _scored(fit, data, train_df, df, ~train_rows, y, pred, args, "held-out", base_cols, empty)
        out["baselines"] = out["holdout"].pop("baselines")
        if "baselines_reason" in out["holdout"]:
            out["baselines_reason"] = out["holdout"].pop("baselines_reason")
    out["extrapolation"] = extrapolation_summary(np.asarray(pred.extrapolation)[~train_rows]) if (~train_rows).any() \
        else extrapolation_summary(np.zeros(0))
    if args.predictions:
        out["predictions"] = write_predictions(args.predictions, df, pred,
                                               extra={"fit_row": train_rows, **base_cols})
    if args.plot:
        from jaxscale import plotting

        fig = plotting.plot_parity(y, mean, lower, upper, train_rows, base_cols, title=f"NCPL: {target}",
                                   what=target)
        out["plot"] = str(plotting.save(fig, args.plot))
    saved = save_fit(args, fit)
    if saved:
        out["saved"] = saved
    return out


def _skipped(train_df, args, exclude, data) -> dict:
    """Columns the field inference left out, with the reason (not the ones you excluded)."""
    from jaxscale.ncpl import infer_fields

    if args.text_cols and args.num_cols:
        return {}
    roles = [c for c in (args.target_col, args.baseline_col) if c]
    _, _, skipped = infer_fields(train_df, exclude=list(exclude) + roles, text_cols=_cols(args.text_cols),
                                 num_cols=_num_cols(args))
    return skipped


def _law_on_training_rows(fit, data):
    """The Chinchilla law of the training rows (``(params, None)``) or ``(None, reason)``."""
    import numpy as np

    from jaxscale.ncpl.baselines import fit_chinchilla_law_info

    if fit.law is not None:
        return fit.law, None
    if data.N is None or data.D is None:
        return None, "give --n-col and --d-col to compare with a Chinchilla law fitted on the training rows"
    N, D, y = (np.asarray(a, float) for a in (data.N, data.D, data.y))
    if np.unique(N).size < 2 or np.unique(D).size < 2 or N.size < 6 or not np.all(y > 0):
        return None, "the training rows cannot fit a Chinchilla law (need >= 6 runs, >= 2 N and D, losses > 0)"
    return fit_chinchilla_law_info(N, D, y).params, None


def _scored(fit, data, train_df, df, rows, y, pred, args, what: str, base_cols: dict, empty=None) -> dict:
    """NCPL and its naive baselines (the Chinchilla law fitted on the training rows ``train_df``; the
    mean of the training targets; the nearest training run in configuration) scored on ``rows`` of
    ``df``; rows without a target are counted and warned about; empty config cells (of ``empty``,
    the frame of :func:`jaxscale.ncpl.model.missing_cells`; read as in training) are counted. Each
    baseline's value on ``rows`` (those without a target too) goes into ``base_cols``, a column of
    ``df``'s length per baseline (NaN elsewhere)."""
    import numpy as np

    from jaxscale.cli._common import baseline_columns, compare_baselines
    from jaxscale.infer.prediction import Prediction
    from jaxscale.laws import chinchilla
    from jaxscale.ncpl.baselines import nearest_run
    from jaxscale.ncpl.pipeline import extrapolation_summary

    ok = rows & np.isfinite(y)
    miss = rows & ~np.isfinite(y)
    out = {"n": int(rows.sum()), "n_missing_truth": int(miss.sum())}
    if miss.any():
        out["rows_missing_truth"] = _labels(df.index, miss)
        warnings.warn(f"NCPL train: {int(miss.sum())} {what} row(s) have no {args.target_col!r} value (rows "
                      f"{_labels(df.index, miss, 5)}{' ...' if miss.sum() > 5 else ''}); they are predicted but not "
                      "scored", UserWarning, stacklevel=3)
    if empty is not None:  # read as in training (the runs of mixed optimizers leave each other's fields empty)
        out["missing_values"] = _empty_counts(empty[rows])
    out["extrapolation"] = extrapolation_summary(np.asarray(pred.extrapolation)[rows])
    base = {"mean_of_training_rows": np.full(int(rows.sum()), float(np.mean(np.asarray(data.y, float)))),
            "nearest_training_run": nearest_run(train_df, df[rows], data.y, data.num_cols, data.num_log, data.text_cols,
                                                [c for r, c in data.columns if r in ("n", "d")])}
    law, why = _law_on_training_rows(fit, data)
    if law is not None:
        n, d = (df[c].to_numpy(float)[rows] for c in (args.n_col, args.d_col))
        base = {"chinchilla_on_training_rows": np.asarray(chinchilla(law, n, d, xp=np), float), **base}
    for name, values in baseline_columns(len(df), rows, base).items():
        base_cols[name] = np.where(rows, values, base_cols.get(name, np.full(len(df), np.nan)))
    if not ok.any():
        why = f"no {what} row has a target value"
        out.update(ncpl=None, ncpl_reason=why, chinchilla=None, chinchilla_reason=why, baselines=None,
                   baselines_reason=why)
        return out
    mean, lower, upper = (np.asarray(a, float) for a in (pred.mean, pred.lower, pred.upper))
    out["ncpl"] = _metrics(y[ok], mean[ok], lower[ok], upper[ok], args.level)
    if law is not None:
        out["chinchilla"] = _metrics(y[ok], base["chinchilla_on_training_rows"][ok[rows]])
        out["chinchilla"]["law"] = _law_dict(law)
    else:
        out["chinchilla"], out["chinchilla_reason"] = None, why
    # every scored row, those without a target too: counted in n_missing_truth as in the other scores
    out["baselines"] = compare_baselines(y[rows], Prediction(mean[rows], lower[rows], upper[rows]), base,
                                         what=f"NCPL ({what} rows)", level=args.level)
    out["baselines"]["nearest_training_run"]["what"] = (
        "the loss of the training run nearest in configuration: numeric fields standardised over the training "
        "runs (log10 where NCPL reads them so, and N and D), 1 for every differing text value")
    if law is None:
        out["baselines"]["chinchilla_on_training_rows"] = None
        out["baselines"]["chinchilla_on_training_rows_reason"] = why
    return out


def _empty_counts(empty) -> dict:
    """``{column: rows}`` of the config fields empty in some rows of ``empty`` (a boolean frame)."""
    return {str(c): int(k) for c, k in empty.sum(axis=0).items() if k}


def cmd_predict(args) -> dict:
    """``ncpl predict``: load ``--model``, predict ``--csv`` rows (scored when they have the target)."""
    import jax
    import numpy as np
    import pandas as pd

    from jaxscale import ncpl
    from jaxscale.cli._common import check_outputs, read_input, score, write_predictions, wrong_model
    from jaxscale.io import load
    from jaxscale.ncpl import model as ncpl_model

    check_outputs(args)
    fit = load(args.model)
    if not isinstance(fit, ncpl.Fit):
        raise wrong_model(args.model, fit, "jaxscale.ncpl")
    df = read_input(args)
    query = ncpl_model.query_data(fit, df)  # read (and tokenised) once for the prediction and its empty cells
    pred = ncpl.predict(fit, query, key=jax.random.key(args.seed), level=args.level,
                        handle_unknown=args.handle_unknown)
    empty = ncpl_model.missing_cells(fit, query)  # predict has refused those the model cannot read
    n_empty = empty.to_numpy(bool).sum(1)
    out = {"model": str(args.model), "n": int(len(df)), "level": args.level,
           "mean": pred.mean, "lower": pred.lower, "upper": pred.upper,  # per row, as every pillar's predict
           "extrapolation": pred.extrapolation, "max_extrapolation": float(np.max(np.asarray(pred.extrapolation))),
           "missing_values": _empty_counts(empty)}
    if n_empty.any():
        out["rows_missing_values"] = _labels(df.index, n_empty > 0)
    target = dict(fit.columns).get("target")
    if target and target in df.columns:
        out["score"] = score(pd.to_numeric(df[target], errors="coerce"), pred)
    if args.predictions:
        out["predictions"] = write_predictions(args.predictions, df, pred, extra={"n_missing": n_empty})
    return out


def cmd_tune(args) -> dict:
    import numpy as np

    from jaxscale.ncpl import pipeline as pl
    from jaxscale.ncpl.tune import largest_cell, tune_cell

    df = pl.runs_frame()
    model = pl.ncpl_model(_key(args.seed), args.preset, df=df)
    cell = args.cell or largest_cell(df, args.source)
    far = []

    def predict(frame):  # the candidate grid lies outside the training runs by design: reported, not warned
        p = pl.predict_quiet(model, frame)
        far.append(float(np.max(np.asarray(p.extrapolation))) if len(frame) else 0.0)
        return p.mean

    out = tune_cell(predict, df, cell)
    out["max_extrapolation"] = max(far) if far else 0.0
    if not args.with_grid:
        out.pop("grid")
    return out


def cmd_curves(args) -> dict:
    from jaxscale.ncpl.curve_model import curve_evaluation

    if args.plot_dir:
        d = Path(args.plot_dir)
        if d.exists() and (not d.is_dir() or any(d.iterdir())) and not args.overwrite:
            raise ValueError(f"--plot-dir {d} exists and is not empty; choose a new folder or pass --overwrite")
        if not d.exists() and not d.parent.exists():
            raise ValueError(f"--plot-dir {d}: folder {d.parent} does not exist")
    return curve_evaluation(_key(args.seed), preset=args.preset, plot_dir=args.plot_dir)


def register(subparsers) -> argparse.ArgumentParser:
    """Add the ``ncpl`` command (train | predict | evaluate | tune | curves) to the main CLI."""
    from jaxscale.cli._common import (
        Formatter,
        add_output_args,
        add_predict_command,
        add_table_args,
        interval_level,
    )
    from jaxscale.ncpl.spec import BASELINES, HANDLE_UNKNOWN, Spec

    spec = Spec()
    p = subparsers.add_parser("ncpl", help="NCPL: predict a run's loss from its whole configuration",
                              formatter_class=Formatter)
    sub = p.add_subparsers(dest="ncpl_cmd", required=True)

    t = sub.add_parser("train", aliases=["fit"], help="train NCPL on your own runs (one row per run)",
                       formatter_class=Formatter,
                       description="Train an NCPL ensemble on your own run table: one row per run, config columns "
                                   "(text or numbers), the target loss, optional N/D for a Chinchilla baseline. "
                                   "`jaxscale ncpl fit` is the same command, named like the other pillars' fits.")
    add_table_args(t)
    t.add_argument("--target-col", "--target", dest="target_col", default="final_loss",
                   help="column to predict (final loss)")
    t.add_argument("--exclude-cols", action="append", metavar="A,B",
                   help="columns that are not configuration (ids, notes, other metrics)")
    t.add_argument("--text-cols", action="append", metavar="A,B", help="config columns read as text")
    t.add_argument("--num-cols", action="append", metavar="A,B", help="config columns read as numbers")
    t.add_argument("--linear-cols", action="append", metavar="A,B",
                   help="numeric config columns never log10-scaled (e.g. a signed or zero-valued setting)")
    t.add_argument("--config-cols", nargs="+", metavar="COL",
                   help="only these columns are configuration (none: every column not otherwise used)")
    t.add_argument("--n-col", help="parameter count column (with --d-col: Chinchilla baseline)")
    t.add_argument("--d-col", help="training tokens column")
    t.add_argument("--baseline-col", help="a column subtracted from the target (e.g. your own law's prediction)")
    t.add_argument("--baseline", choices=list(BASELINES), default=spec.baseline,
                   help="auto: the --baseline-col if given, else a Chinchilla law on the training rows if N and D "
                        "are given, else none")
    t.add_argument("--split-col", help="alternative to --holdout: column whose --train-value rows are the training set")
    t.add_argument("--train-value", default="train", help="value of --split-col marking training rows")
    t.add_argument("--group-cols", nargs="+", metavar="COL",
                   help="columns whose combinations are held out together for early stopping (none: random rows)")
    t.add_argument("--members", type=int, default=spec.members, help="ensemble members")
    t.add_argument("--steps", type=int, default=spec.steps, help="AdamW steps per member")
    t.add_argument("--lr", type=float, default=spec.lr, help="peak learning rate (warm-up, then linear decay)")
    t.add_argument("--batch-size", type=int, default=spec.batch_size,
                   help="runs per step (more than the training rows: all of them)")
    t.add_argument("--eval-every", type=int, default=spec.eval_every, help="steps between validations (divides --steps)")
    t.add_argument("--patience", type=int, default=spec.patience, help="validations without improvement before stopping")
    t.add_argument("--val-frac", type=float, default=spec.val_frac, help="fraction of validation cells")
    t.add_argument("--width", type=int, default=spec.width, help="hidden width of the head's MLP")
    t.add_argument("--depth", type=int, default=spec.depth, help="hidden layers of the head's MLP")
    t.add_argument("--max-tokens", type=int, default=spec.max_tokens, help="longest serialised configuration")
    t.add_argument("--level", type=interval_level, default=0.9, help="central interval level of the predictions")
    t.add_argument("--backtest-frac", type=float, default=spec.backtest_frac,
                   help="share of the training runs (the largest) held out to learn predictions and interval "
                        "growth outside the training data (needs --n-col/--d-col or --backtest-col; 0: off)")
    t.add_argument("--backtest-col", default=None, metavar="COL",
                   help="numeric config column whose largest values the backtest holds out: the field your "
                        "queries extrapolate in, e.g. a depth (none: the largest N, with --n-col/--d-col)")
    t.add_argument("--duplicates", choices=["error", "first", "keep"], default="error",
                   help="training rows repeating another row in every used column: refuse, keep the first "
                        "copy (counted in the JSON), or keep all (weighted twice, counted)")
    t.add_argument("--handle-unknown", choices=list(HANDLE_UNKNOWN), default="error",
                   help="a text value of a scored/predicted row never seen in training: refuse, write it into "
                        "the text (encode), or leave the field out (ignore)")
    t.add_argument("--ckpt-dir", default=spec.ckpt_dir,
                   help="checkpoint folder; an interrupted run resumes; a folder of another run is refused")
    t.add_argument("--ckpt-every", type=int, default=spec.ckpt_every,
                   help="steps between checkpoints with --ckpt-dir (0: every validation)")
    t.add_argument("--force-new", action="store_true",
                   help="discard the checkpoints of another run in --ckpt-dir and start over")
    t.add_argument("--seed", type=int, default=0, help="PRNG seed (validation cells, initialisation, batches)")
    t.add_argument("--plot", default=None, metavar="PNG",
                   help="write a PNG of predicted against true loss: the training rows, the scored rows with their "
                        "interval, and the baselines' predictions of them")
    add_output_args(t)
    t.set_defaults(func=cmd_train)

    pr = add_predict_command(sub, "jaxscale.ncpl", "NCPL")
    pr.add_argument("--handle-unknown", choices=list(HANDLE_UNKNOWN), default="error",
                    help="a text value never seen in training: refuse, write it into the text (encode), or leave "
                         "the field out (ignore); such rows count as 1 unit outside the training data")
    pr.set_defaults(func=cmd_predict)

    e = sub.add_parser("evaluate", help="metrics of a model on an official NCPL split (bundled runs)",
                       formatter_class=Formatter)
    e.add_argument("--source", choices=["marin", "steplaw"], default="marin", help="run source")
    e.add_argument("--split", choices=["id", "ood", "train"], default="ood",
                   help="official split: id = held-out sweeps of the <= 430M models, ood = larger models")
    e.add_argument("--model", choices=["ncpl", "xgboost", "chinchilla", "chinchilla_refit"], default="ncpl",
                   help="model to score")
    e.add_argument("--preset", choices=["default", "small"], default="default",
                   help="NCPL ensemble size: default 5 members x 1000 steps, small 3 x 400")
    e.add_argument("--all", action="store_true", help="every model x source x split")
    e.add_argument("--plot", help="PNG path for a true-vs-predicted scatter (ncpl only)")
    e.add_argument("--seed", type=int, default=0, help="PRNG seed of the NCPL fit")
    e.set_defaults(func=cmd_evaluate)

    u = sub.add_parser("tune", help="pick LR (x batch size) for a held-out (size, budget) cell (bundled runs)",
                       formatter_class=Formatter)
    u.add_argument("--source", choices=["marin", "steplaw"], default="steplaw", help="run source")
    u.add_argument("--cell", help="cell key 'source|size_tag|optimizer|D' (default: the largest OOD cell)")
    u.add_argument("--preset", choices=["default", "small"], default="default",
                   help="NCPL ensemble size: default 5 members x 1000 steps, small 3 x 400")
    u.add_argument("--with-grid", action="store_true", help="include the predicted loss on the whole LR (x BS) grid")
    u.add_argument("--seed", type=int, default=0, help="PRNG seed of the NCPL fit")
    u.set_defaults(func=cmd_tune)

    c = sub.add_parser("curves", help="train the loss-curve model and report curve MAE on ID/OOD (bundled runs)",
                       formatter_class=Formatter)
    c.add_argument("--preset", choices=["default", "small"], default="small",
                   help="curve ensemble size: small 3 members x 400 steps, default 5 x 1500")
    c.add_argument("--plot-dir", help="folder for curve PNGs (new or empty)")
    c.add_argument("--overwrite", action="store_true", help="write into a non-empty --plot-dir")
    c.add_argument("--seed", type=int, default=0, help="PRNG seed of the curve fit")
    c.set_defaults(func=cmd_curves)
    return p


def demo_section(key, out_dir: Path, smoke: bool) -> dict:
    """Train a stage-1 ensemble on cached frozen-MiniLM features (~30-60 s on 2 cores), evaluate
    ID/OOD per source with the baselines, save a true-vs-predicted scatter; return the report."""
    import numpy as np
    import pandas as pd

    from jaxscale.ncpl import baselines as bl
    from jaxscale.ncpl import dataset as ds
    from jaxscale.ncpl import pipeline as pl
    from jaxscale.ncpl.model import Spec, fit_ncpl
    from jaxscale.ncpl.serialize import ncpl_fields

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    df = pl.runs_frame()
    train = pd.concat([ds.select(df, s, "train") for s in ds.SOURCES])
    text, num = ncpl_fields()
    members, steps = (2, 200) if smoke else (3, 400)
    model = fit_ncpl(key, train, text, num, spec=Spec(members=members, steps=steps, lr=3e-3, eval_every=100,
                                                      patience=100))
    rows, frames, preds = [], [], []
    for s in ds.SOURCES:
        tr = ds.select(df, s, "train")
        xgb = bl.fit_xgboost(tr, n_trees=300 if smoke else 600)
        for sp in ("id", "ood"):
            te = ds.select(df, s, sp)
            p = pl.predict_quiet(model, te)
            r = ds.regression_metrics(te.final_loss, p.mean, p.lower, p.upper)
            rows.append(dict(source=s, split=sp, ncpl=r["mae"], coverage_90=r["coverage_90"],
                             xgboost=ds.regression_metrics(te.final_loss, bl.predict_xgboost(xgb, te))["mae"],
                             chinchilla=ds.regression_metrics(te.final_loss, bl.chinchilla_column(te))["mae"]))
            if sp == "ood":
                frames.append(te)
                preds.append(p)
    ood = pd.concat(frames)
    cat = lambda f: np.concatenate([np.asarray(getattr(p, f)) for p in preds])  # noqa: E731
    png = pl.scatter_plot(ood, cat("mean"), cat("lower"), cat("upper"), out_dir / "ncpl_ood_scatter.png",
                          "NCPL (small) on OOD runs, 90% intervals")
    lines = ["| source | split | NCPL MAE | 90% cov. | XGBoost MAE | Chinchilla MAE |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['source']} | {r['split']} | {r['ncpl']:.4f} | {r['coverage_90']:.2f} | {r['xgboost']:.4f} | "
              f"{r['chinchilla']:.4f} |" for r in rows]
    secs = time.perf_counter() - t0
    md = (f"A {members}-member NCPL ensemble ({steps} stage-1 steps on frozen all-MiniLM-L6-v2 features, "
          f"{model.info['stage1_seconds']:.0f} s) predicts the residual of the final loss over the per-source "
          "Chinchilla law from the serialised run configuration. Final-loss MAE on the official NCPL splits "
          "(OOD = models > 430M parameters, never seen in training):\n\n" + "\n".join(lines) +
          f"\n\n![true vs predicted]({png.name})\n\nPublished NCPL (Qwen3-1.7B) OOD MAE: 0.0168 / 0.0223 "
          f"(Marin / StepLaw). Demo time {secs:.0f} s; full-scale numbers: `benchmarks/bench_ncpl.py`.\n")
    summary = {"rows": rows, "seconds": secs, "members": members, "steps": steps}
    return {"title": "NCPL: configuration-to-loss regression", "markdown": md, "summary": summary}
