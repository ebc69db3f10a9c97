"""``jaxscale chinchilla``: fit L(N, D) = E + A/N^alpha + B/D^beta (Epoch's method) to bundled or
your own runs; and the Chinchilla section of ``jaxscale demo``."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

__all__ = ["register", "fit_handler", "demo_section"]


def fit_handler(args) -> dict:
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



def register(sub) -> None:
    """Add ``chinchilla fit``."""
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
    f.set_defaults(func=fit_handler)


def demo_section(key, out_dir: Path, smoke: bool) -> dict:
    """Chinchilla refit on Epoch's data, with bootstrap intervals and a plot."""
    from jaxscale import chinchilla as ch
    from jaxscale.data import load
    from jaxscale.plotting import plot_chinchilla, save

    df = load("epoch_chinchilla")
    res = ch.fit(df)
    n_boot = 200 if smoke else 4000
    boot = ch.bootstrap(key, df, n_boot=n_boot, theta0=res.theta)
    params = {k: float(v) for k, v in ch.params_dict(res.params).items()}
    ci = {k: [float(np.percentile(v, 5)), float(np.percentile(v, 95))] for k, v in boot.items()
          if k != "n_excluded"}
    mask = np.zeros(len(df), bool)
    mask[list(res.excluded_rows)] = True
    fig = plot_chinchilla(df["N"], df["D"], df["loss"], params, mask, boot)
    save(fig, out_dir / "chinchilla_fit.png")
    epoch = {"E": 1.8172, "A": 478.0, "B": 2142.0, "alpha": 0.3473, "beta": 0.3671}
    rows = "\n".join(
        f"| {k} | {params[k]:.4g} | [{ci[k][0]:.4g}, {ci[k][1]:.4g}] | {epoch[k]:.4g} |" for k in params
    )
    md = (
        "Epoch AI's replication method (Huber δ=1e-3 on log loss, 4,500 L-BFGS starts, 5 "
        f"highest-loss points excluded) on the 245 extracted points; {len(boot['E'])} converged "
        f"bootstrap refits of {n_boot} ({boot['n_excluded']} excluded), all vmapped.\n\n| param | fit | 90% bootstrap interval | Epoch (scipy re-run) |\n"
        "|---|---|---|---|\n" + rows + "\n\n![Chinchilla fit](chinchilla_fit.png)\n"
    )
    return {"title": "Chinchilla (Epoch replication)", "markdown": md,
            "summary": {"params": params, "bootstrap_90": ci, "n_boot": int(len(boot["E"]))}}


