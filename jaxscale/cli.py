"""Command line: ``jaxscale <command> ... [--json]``.

Every leaf command returns a JSON-serialisable dict; with ``--json`` it is printed as one
JSON object on stdout, otherwise as readable lines. Logs and progress go to stderr. Bad
input exits with status 2 and ``error: <message>`` on stderr.
"""
from __future__ import annotations

import argparse
import importlib
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

__all__ = ["main", "build_parser", "to_jsonable"]

PILLARS = ("learning_curves", "observational", "context_law", "config_regression")


def to_jsonable(obj):
    """Convert numpy/jax scalars and arrays (recursively) to plain Python; NaN/inf -> None."""
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "shape") and hasattr(obj, "dtype"):
        arr = np.asarray(obj)
        return to_jsonable(arr.item() if arr.ndim == 0 else arr.tolist())
    if isinstance(obj, (np.floating, float)):
        v = float(obj)
        return v if math.isfinite(v) else None
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.bool_,)):
        return bool(obj)
    return obj


def _add_json(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")


def _datasets(args) -> dict:
    from jaxscale.data import list_datasets

    rows = list_datasets()
    return {"datasets": [{"name": r["name"], "rows": r["rows"], "columns": r["columns"],
                          "description": r["description"]} for r in rows]}


def _chinchilla_fit(args) -> dict:
    import jax

    from jaxscale import chinchilla as ch
    from jaxscale.data import load, read_runs_csv

    if args.csv:
        df = read_runs_csv(args.csv, {"N": args.n_col, "D": args.d_col, "loss": args.loss_col},
                           positive=("N", "D", "loss"), key=("N", "D"))
        source = str(args.csv)
    else:
        if args.dataset != "epoch_chinchilla":
            raise ValueError(f"--dataset must be epoch_chinchilla (or use --csv); got {args.dataset!r}")
        df = load("epoch_chinchilla")[["N", "D", "loss"]]
        source = "epoch_chinchilla"
    t0 = time.perf_counter()
    res = ch.fit(df, exclude_top_loss=args.exclude_top_loss)
    out = {k: float(v) for k, v in ch.params_dict(res.params).items()}
    out.update(
        source=source, objective=res.objective, converged=res.converged, n_starts=res.n_starts,
        n_points=res.n_points, excluded_rows=list(res.excluded_rows),
        fit_seconds=time.perf_counter() - t0,
    )
    if args.bootstrap:
        t0 = time.perf_counter()
        boot = ch.bootstrap(jax.random.key(args.seed), df, n_boot=args.bootstrap,
                            exclude_top_loss=args.exclude_top_loss, theta0=res.theta)
        out["bootstrap"] = {
            k: {"p5": float(np.percentile(v, 5)), "p50": float(np.percentile(v, 50)),
                "p95": float(np.percentile(v, 95))}
            for k, v in boot.items() if k != "n_excluded"
        }
        out["bootstrap_n"] = int(len(boot["E"]))
        out["bootstrap_excluded"] = boot["n_excluded"]
        out["bootstrap_seconds"] = time.perf_counter() - t0
    return out


def _demo(args) -> dict:
    from jaxscale.demo import run_demo

    return run_demo(Path(args.out), seed=args.seed, smoke=args.smoke, only=args.only)


def build_parser() -> argparse.ArgumentParser:
    """The full parser, with every installed pillar's commands registered."""
    parser = argparse.ArgumentParser(prog="jaxscale", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("datasets", help="list the bundled datasets")
    _add_json(p)
    p.set_defaults(func=_datasets)

    p = sub.add_parser("chinchilla", help="Chinchilla L(N, D) = E + A/N^alpha + B/D^beta")
    csub = p.add_subparsers(dest="action", required=True)
    f = csub.add_parser("fit", help="fit by Epoch's method (Huber on log loss, 4,500 starts, L-BFGS)")
    f.add_argument("--dataset", default="epoch_chinchilla")
    f.add_argument("--csv", help="your own runs (one row per run)")
    f.add_argument("--n-col", default="N", help="CSV column with parameter counts")
    f.add_argument("--d-col", default="D", help="CSV column with training tokens")
    f.add_argument("--loss-col", default="loss", help="CSV column with final loss")
    f.add_argument("--exclude-top-loss", type=int, default=5,
                   help="leave out this many highest-loss points (Epoch: 5)")
    f.add_argument("--bootstrap", type=int, default=0, help="number of bootstrap refits")
    f.add_argument("--seed", type=int, default=0)
    _add_json(f)
    f.set_defaults(func=_chinchilla_fit)

    p = sub.add_parser("demo", help="run the headline of every pillar and write a report")
    p.add_argument("--out", default="report")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--smoke", action="store_true", help="tiny settings (for tests)")
    p.add_argument("--only", nargs="*", default=None, help="sections to run (default: all)")
    _add_json(p)
    p.set_defaults(func=_demo)

    for pillar in PILLARS:
        try:
            mod = importlib.import_module(f"jaxscale.{pillar}.cli")
        except ModuleNotFoundError as exc:
            if exc.name in (f"jaxscale.{pillar}", f"jaxscale.{pillar}.cli"):
                continue
            raise
        mod.register(sub)
    _add_json_everywhere(parser)
    return parser


def _add_json_everywhere(parser: argparse.ArgumentParser) -> None:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                if any(isinstance(a, argparse._SubParsersAction) for a in child._actions):
                    _add_json_everywhere(child)
                elif "--json" not in child._option_string_actions:
                    _add_json(child)


def _print_human(result, indent: int = 0) -> None:
    pad = "  " * indent
    for k, v in result.items():
        if isinstance(v, dict):
            print(f"{pad}{k}:")
            _print_human(v, indent + 1)
        elif isinstance(v, list) and v and isinstance(v[0], dict):
            print(f"{pad}{k}:")
            for item in v:
                print(f"{pad}  - " + ", ".join(f"{a}={b}" for a, b in item.items() if not isinstance(b, (list, dict))))
        else:
            print(f"{pad}{k}: {v}")


def main(argv=None) -> int:
    """Entry point of the ``jaxscale`` command."""
    from jaxscale.config import enable_x64

    enable_x64()
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        result = args.func(args)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    result = to_jsonable(result)
    if getattr(args, "json", False):
        print(json.dumps(result))
    else:
        _print_human(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
