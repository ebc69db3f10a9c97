"""``jaxscale ncpl ...``: evaluate / train / tune / curves for the NCPL pillar.

Handlers return JSON-serialisable dicts (the main CLI prints them); logs go to stderr.
"""
from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["register", "cmd_evaluate", "cmd_train", "cmd_tune", "cmd_curves"]


def _key(seed: int):
    import jax

    return jax.random.key(seed)


def cmd_evaluate(args) -> dict:
    from jaxscale.config_regression import pipeline as pl

    if args.all:
        rows = pl.evaluate_table(_key(args.seed), args.preset)
        return {"rows": rows}
    out = pl.evaluate(args.source, args.split, args.model, _key(args.seed), args.preset)
    if args.plot and args.model == "ncpl":
        from jaxscale.config_regression.dataset import select
        from jaxscale.config_regression.model import predict_ncpl

        df = pl.runs_frame()
        test = select(df, args.source, args.split)
        p = predict_ncpl(pl.ncpl_model(_key(args.seed), args.preset, df=df), test)
        out["plot"] = str(pl.scatter_plot(test, p.mean, p.lo, p.hi, args.plot,
                                          f"NCPL {args.source} {args.split}"))
    return out


def cmd_train(args) -> dict:
    import numpy as np
    import pandas as pd

    from jaxscale.config_regression.dataset import regression_metrics, require_columns
    from jaxscale.config_regression.model import fit_ncpl, predict_ncpl, save_model
    from jaxscale.config_regression.serialize import NumField
    from jaxscale.config_regression.train import TrainConfig

    path = Path(args.csv)
    if not path.exists():
        raise ValueError(f"--csv {path} does not exist")
    df = pd.read_csv(path)
    cols = [args.target, args.split_col] + ([args.baseline_col] if args.baseline_col else [])
    require_columns(df, cols, path.name)
    labels = df[args.split_col].astype(str)
    if not (labels == args.train_value).any():
        raise ValueError(f"--split-col {args.split_col!r} has no rows equal to --train-value {args.train_value!r}; "
                         f"values seen: {sorted(labels.unique())[:10]}")
    config_cols = args.config_cols or [c for c in df.columns if c not in cols]
    require_columns(df, config_cols, path.name)
    text_fields, num_fields = [], []
    for c in config_cols:
        num = pd.to_numeric(df[c], errors="coerce")
        if num.notna().sum() >= max(1, int(0.9 * df[c].notna().sum())) and df[c].notna().any():
            pos = num.dropna()
            num_fields.append(NumField(c.replace("_", " "), c, bool((pos > 0).all() and pos.max() / max(pos.min(), 1e-300) > 100)))
            df[c] = num
        else:
            text_fields.append((c.replace("_", " "), c))
    train = df[labels == args.train_value].copy()
    group_cols = args.group_cols
    if not group_cols:  # no cell structure given: hold out random rows
        train["_row"] = np.arange(len(train))
        group_cols = ["_row"]
    every = min(100, args.steps)
    tcfg = TrainConfig(steps=args.steps, lr=args.lr, batch_size=min(args.batch_size, max(len(train) // 2, 2)),
                       eval_every=every, ckpt_dir=args.ckpt_dir,
                       ckpt_every=(max(args.ckpt_every // every, 1) * every) if args.ckpt_dir else 0)
    model = fit_ncpl(_key(args.seed), train, tuple(text_fields), tuple(num_fields), target=args.target,
                     baseline=args.baseline_col, n_members=args.members, tcfg=tcfg,
                     group_cols=group_cols)
    out = {"n_train": int(len(train)), "text_fields": [t[1] for t in text_fields],
           "numeric_fields": [f.column for f in num_fields], "info": model.info, "splits": {}}
    for value in sorted(labels.unique()):
        sub = df[labels == value]
        p = predict_ncpl(model, sub)
        out["splits"][value] = regression_metrics(sub[args.target], p.mean, p.lo, p.hi)
    if args.save:
        out["saved"] = str(save_model(model, args.save))
    return out


def cmd_tune(args) -> dict:
    from jaxscale.config_regression import pipeline as pl
    from jaxscale.config_regression.model import predict_ncpl
    from jaxscale.config_regression.tune import largest_cell, tune_cell

    df = pl.runs_frame()
    model = pl.ncpl_model(_key(args.seed), args.preset, df=df)
    cell = args.cell or largest_cell(df, args.source)
    out = tune_cell(lambda f: predict_ncpl(model, f).mean, df, cell)
    if not args.with_grid:
        out.pop("grid")
    return out


def cmd_curves(args) -> dict:
    from jaxscale.config_regression.curve_model import curve_evaluation

    return curve_evaluation(_key(args.seed), preset=args.preset, plot_dir=args.plot_dir)


def register(subparsers) -> argparse.ArgumentParser:
    """Add the ``ncpl`` command (evaluate | train | tune | curves) to the main CLI."""
    p = subparsers.add_parser("ncpl", help="NCPL configuration-to-loss regression (pillar 4)")
    sub = p.add_subparsers(dest="ncpl_cmd", required=True)

    e = sub.add_parser("evaluate", help="metrics of a model on an official NCPL split")
    e.add_argument("--source", choices=["marin", "steplaw"], default="marin")
    e.add_argument("--split", choices=["id", "ood", "train"], default="ood")
    e.add_argument("--model", choices=["ncpl", "xgboost", "chinchilla", "chinchilla_refit"], default="ncpl")
    e.add_argument("--preset", choices=["default", "small"], default="default")
    e.add_argument("--all", action="store_true", help="every model x source x split")
    e.add_argument("--plot", help="PNG path for a true-vs-predicted scatter (ncpl only)")
    e.add_argument("--seed", type=int, default=0)
    e.set_defaults(func=cmd_evaluate)

    t = sub.add_parser("train", help="train NCPL on your own run log CSV")
    t.add_argument("--csv", required=True)
    t.add_argument("--target", required=True, help="column to predict (e.g. final loss)")
    t.add_argument("--split-col", required=True, help="column whose --train-value rows are the training set")
    t.add_argument("--train-value", default="train")
    t.add_argument("--config-cols", nargs="+", help="config columns (default: all other columns)")
    t.add_argument("--baseline-col", help="optional column subtracted from the target (e.g. a Chinchilla fit)")
    t.add_argument("--group-cols", nargs="+", help="columns defining held-out cells of the carved validation set")
    t.add_argument("--members", type=int, default=5)
    t.add_argument("--steps", type=int, default=1000)
    t.add_argument("--lr", type=float, default=2e-3)
    t.add_argument("--batch-size", type=int, default=256)
    t.add_argument("--save", help="path to pickle the trained model")
    t.add_argument("--ckpt-dir", help="orbax checkpoint folder; an interrupted run resumes from it")
    t.add_argument("--ckpt-every", type=int, default=200, help="steps between checkpoints (with --ckpt-dir)")
    t.add_argument("--seed", type=int, default=0)
    t.set_defaults(func=cmd_train)

    u = sub.add_parser("tune", help="pick LR (x batch size) for a held-out (size, budget) cell")
    u.add_argument("--source", choices=["marin", "steplaw"], default="steplaw")
    u.add_argument("--cell", help="cell key 'source|size_tag|optimizer|D' (default: the largest OOD cell)")
    u.add_argument("--preset", choices=["default", "small"], default="default")
    u.add_argument("--with-grid", action="store_true")
    u.add_argument("--seed", type=int, default=0)
    u.set_defaults(func=cmd_tune)

    c = sub.add_parser("curves", help="train the loss-curve model and report curve MAE on ID/OOD")
    c.add_argument("--preset", choices=["default", "small"], default="small")
    c.add_argument("--plot-dir", help="folder for curve PNGs")
    c.add_argument("--seed", type=int, default=0)
    c.set_defaults(func=cmd_curves)
    return p
