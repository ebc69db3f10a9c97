"""Runs in progress: the Bayesian saturating power law against scipy least squares per curve.

Every case is scored next to the baselines fitted on the same rows: scipy least squares per curve,
``last_value``, ``local_trend`` and, when some runs are finished, ``nearest_finished_run``.

Cases: the bundled nanoGPT-large curves and 30 of LossCast's nanochat runs cut at 10 / 25 / 50 % of
their last step (the early part is every point at step <= that fraction of the curve's last step;
the rest is predicted); the nanochat runs again with every second run finished (kept whole: the
interval is calibrated on them, ``--nanochat-finished-cuts``); and the multilingual few-shot split
``extrapolate9`` (last 9 of 20 points of the largest model's curves; the smaller models' curves are
finished runs; ``--multilingual`` picks the datasets); and the nanoGPT cuts again with the law-informed
hierarchical GP (``magp_law``, the runs' width and depth as descriptors, ``--gp-cuts``), and the nanochat
cuts with it (each run's depth, learning rate, weight decay and warm-down ratio, ``--nanochat-gp-cuts``; with
every second run finished, the GP's own interval, ``--nanochat-finished-gp-cuts``). Reported
per case: RMSLE, MAE and 90 % coverage on the predicted points, the calibration record, the
sampler's or optimiser's diagnostics, seconds.

``--sampler importance`` runs the power-law cases again with each run sampled on its own by Laplace
importance sampling (the case names end in ``, importance``); ``--sampler auto``, with the default
sampler (importance sampling, NUTS when a run fails the Pareto k-hat check; ``, auto``);
``--scale-runs 200,2000`` adds synthetic tables of that many runs (importance sampling; the joint
NUTS took more than 14 min on 200 such runs); ``--long-logs 100,250`` adds W&B-style logs of 12
runs with that many early points per run, each by NUTS and by ``auto``.

    OPENBLAS_NUM_THREADS=1 python benchmarks/bench_lc_extrapolate.py
    OPENBLAS_NUM_THREADS=1 python benchmarks/bench_lc_extrapolate.py --sampler importance --gp-cuts "" \
        --multilingual multilingual_same_source_en,multilingual_same_source_tl --scale-runs 200,2000
    OPENBLAS_NUM_THREADS=1 python benchmarks/bench_lc_extrapolate.py --sampler auto --gp-cuts "" \
        --multilingual multilingual_same_source_en,multilingual_same_source_id,multilingual_same_target_ta,\
multilingual_same_source_tl --long-logs 100,250
    OPENBLAS_NUM_THREADS=1 python benchmarks/bench_lc_extrapolate.py --cuts "" --nanochat-cuts "" \
        --nanochat-finished-cuts "" --multilingual "" --gp-cuts "" --wandb-logs 40

``--nanochat-mixed-cuts 0.1,0.25,0.5`` adds the nanochat runs with every second one finished and
the others cut at 10, 25 and 50 % in turn; ``--ncpl-curves 20000`` the NCPL table's 5,086 public loss
curves cut at step 20,000 (runs that end before it are finished; 313,604 rows).

``--wandb-logs 40`` adds a long log read without ``--thin`` (40 runs at every step, 170,000 rows),
by ``auto``, and again with every row in the noise prior's grid (the reference, before ``EB_ROWS``) and with
the predictive drawn at every row to predict (before ``PRED_GRID``);
the default case records ``fit_speedup_vs_every_row_grid`` and ``fit_speedup_vs_every_row_drawn``.
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time
import warnings
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import jax  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from jaxscale.config import enable_x64  # noqa: E402


def nanogpt_cut(fraction: float, descriptors: bool = False):
    """nanoGPT-large cut at ``fraction``; ``descriptors``: each run's width and depth (for the GP)."""
    from jaxscale.learning_curves import load_lc
    from jaxscale.learning_curves.extrapolate import TailData, cut_curves

    f = load_lc("nanogpt_large").frame
    x = np.exp(f["x"].to_numpy())  # the table holds ln(step)
    code = f["curve"].to_numpy()
    labels = tuple(np.unique(code))
    code = np.searchsorted(labels, code)
    d = TailData(code, x, f["value"].to_numpy(float), cut_curves(code, x, fraction), labels, np.arange(len(f)))
    if descriptors:
        d = d.replace(columns=(("descriptor", "n_embd"), ("descriptor", "n_layer")),
                      descriptors=f[["n_embd", "n_layer"]].to_numpy(float))
    return d


def nanochat_cut(fraction: float, n_runs: int = 30, every: int = 4, finished: bool = False,
                 descriptors: bool = False):
    """LossCast's nanochat runs: ``n_runs`` of the complete 200-point curves (evenly spaced in the
    sorted run ids), every ``every``-th logged step from step 10 (step 0 has no power law), cut at
    ``fraction`` of the last step. ``finished``: every second run is kept whole (a finished run,
    used to calibrate the interval); the others are cut. ``descriptors``: each run's configuration
    from the runs table (depth, matrix learning rate, weight decay, warm-down ratio; for the GP)."""
    from jaxscale.data.registry import load
    from jaxscale.learning_curves.extrapolate import TailData, cut_curves

    f = load("losscast_nanochat_curves")
    n = f.groupby("run_id")["step"].transform("size")
    f = f[(n == n.max()) & (f["step"] > 0)]
    runs = np.unique(f["run_id"].to_numpy())
    runs = runs[np.linspace(0, len(runs) - 1, n_runs).round().astype(int)]
    f = f[f["run_id"].isin(runs)].sort_values(["run_id", "step"])
    f = f[f.groupby("run_id").cumcount() % every == 0]
    labels = tuple(runs)
    code = np.searchsorted(labels, f["run_id"].to_numpy())
    x = f["step"].to_numpy(float)
    train = cut_curves(code, x, fraction) | (finished & (code % 2 == 1))
    d = TailData(code, x, f["loss"].to_numpy(float), train, labels, np.arange(len(f)))
    if descriptors:
        cols = dict(NANOCHAT_DESCRIPTORS)
        config = load("losscast_nanochat_runs").set_index("run_id").loc[f["run_id"], list(cols)]
        d = d.replace(columns=tuple(("descriptor", c) for c in cols.values()), descriptors=config.to_numpy(float))
    return d


def nanochat_mixed(fractions: list[float]):
    """:func:`nanochat_cut` with every second run finished and the runs in progress cut at each of
    ``fractions`` in turn: runs in progress extrapolated by different amounts."""
    from jaxscale.learning_curves.extrapolate import cut_curves

    d = nanochat_cut(1.0)
    code, x = np.asarray(d.curve), np.asarray(d.x)
    frac = np.asarray(fractions)[(code // 2) % len(fractions)]
    train = (code % 2 == 1) | np.any([(frac == f) & cut_curves(code, x, f) for f in fractions], axis=0)
    return d.replace(train=train)


def ncpl_curves(cutoff: float):
    """The NCPL table's 5,086 public Marin and StepLaw loss curves (313,604 rows with step > 0; runs
    of 2,383 to 1.5M steps) cut at step ``cutoff``: a run that ends before it is finished."""
    from jaxscale.data.registry import load
    from jaxscale.learning_curves.extrapolate import tail_from_frame

    f = load("ncpl_curves")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # warm-up bumps in some early parts
        return tail_from_frame(f[f["step"] > 0], curve_col="run_id", x_col="step", y_col="loss", cutoff=cutoff)


#: the nanochat runs' configuration columns the GP reads (runs table column -> short name)
NANOCHAT_DESCRIPTORS = (("model.n_layers", "depth"), ("optimizer.extra.matrix_lr", "matrix_lr"),
                        ("optimizer.weight_decay", "weight_decay"), ("schedule.warmdown_ratio", "warmdown_ratio"))


def multilingual(name: str):
    from jaxscale.learning_curves import load_lc, make_split
    from jaxscale.learning_curves.extrapolate import TailData

    d = load_lc(name)
    f = d.frame
    s = make_split(d, "extrapolate9")
    x = np.exp(f["x"].to_numpy())  # ln(time) in the table
    code = f["curve"].to_numpy()
    labels = tuple(np.unique(code))
    code = np.searchsorted(labels, code)
    return TailData(code, x, f["value"].to_numpy(float), ~s.test, labels, np.arange(len(f)))


def synthetic(n_runs: int, seed: int = 0):
    """``n_runs`` runs of 20 log-spaced steps 10..10,000 that follow ``E + A step^-a`` (``E`` in
    1.5..2.5, ``A`` in 2..6, ``a`` in 0.2..0.6) times 1 % log-normal noise, cut at step 1,000."""
    from jaxscale.learning_curves.extrapolate import tail_from_frame

    rng = np.random.default_rng(seed)
    steps = np.unique(np.geomspace(10, 10000, 20).round())
    E, A, a = 1.5 + rng.uniform(0, 1, n_runs), rng.uniform(2, 6, n_runs), rng.uniform(0.2, 0.6, n_runs)
    y = E[:, None] + A[:, None] * steps[None] ** -a[:, None]
    y = y * np.exp(0.01 * rng.standard_normal((n_runs, steps.size)))
    df = pd.DataFrame({"run": np.repeat([f"r{k}" for k in range(n_runs)], steps.size), "step": np.tile(steps, n_runs),
                       "loss": y.ravel()})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a few noisy early parts are non-monotone
        return tail_from_frame(df, curve_col="run", x_col="step", y_col="loss", cutoff=1000)


def long_logs(points: int, n_runs: int = 12, seed: int = 0):
    """A W&B-style log: ``n_runs`` runs of sizes 10M..1B logged to step 3,000, ``points`` early
    points per run (evenly spaced up to the cut at step 1,000, the same spacing after it),
    ``L = 1.8 + 30 (N / 1e7)^-0.1 step^-0.35`` times 1 % log-normal noise."""
    from jaxscale.learning_curves.extrapolate import tail_from_frame

    rng = np.random.default_rng(seed)
    steps = np.arange(1, 3001, max(1000 // points, 1), dtype=float)
    sizes = np.geomspace(1e7, 1e9, n_runs)
    y = 1.8 + 30 * (sizes[:, None] / 1e7) ** -0.1 * steps[None] ** -0.35
    y = y * np.exp(0.01 * rng.standard_normal(y.shape))
    df = pd.DataFrame({"run": np.repeat([f"r{k}" for k in range(n_runs)], steps.size),
                       "step": np.tile(steps, n_runs), "loss": y.ravel()})
    return tail_from_frame(df, curve_col="run", x_col="step", y_col="loss", cutoff=1000)


def wandb_logs(n_runs: int = 40, seed: int = 1):
    """A long W&B log read without ``--thin``: ``n_runs`` runs logged at every step to step 5,000
    (every fourth run stops at 2,000), ``L = E + A step^-a`` (``E`` in 1.8..2.4, ``A`` in 3..8, ``a``
    in 0.25..0.55) times 2 % log-normal noise, cut at step 1,500: 170,000 rows for 40 runs."""
    from jaxscale.learning_curves.extrapolate import tail_from_frame

    rng = np.random.default_rng(seed)
    E, A, a = 1.8 + rng.uniform(0, 0.6, n_runs), rng.uniform(3, 8, n_runs), rng.uniform(0.25, 0.55, n_runs)
    parts = []
    for r in range(n_runs):  # builds the table (runs of different lengths), no model work
        s = np.arange(1, (5000 if r % 4 else 2000) + 1, dtype=float)
        y = (E[r] + A[r] * s ** -a[r]) * np.exp(0.02 * rng.standard_normal(s.size))
        parts.append(pd.DataFrame({"run": f"run-{r:03d}", "step": s, "loss": y}))
    return tail_from_frame(pd.concat(parts), curve_col="run", x_col="step", y_col="loss", cutoff=1500)


#: Case-name marks of the reference runs of ``--wandb-logs``, in the same process as the default:
#: the noise prior's grid reads every row of every run (what it did before ``EB_ROWS``); the
#: predictive is drawn at every row to predict (what it did before ``PRED_GRID``). Each mark names
#: the module constant it lifts and the default's field that records the ratio of fit times.
EVERY_ROW = "every row in the noise prior's grid (reference)"
EVERY_ROW_DRAWN = "every row to predict drawn (reference)"
REFERENCES = {EVERY_ROW: ("EB_ROWS", "fit_speedup_vs_every_row_grid"),
              EVERY_ROW_DRAWN: ("PRED_GRID", "fit_speedup_vs_every_row_drawn")}


def main(argv=None):
    from jaxscale.learning_curves.extrapolate import ExtrapolateSpec, evaluate_tail
    from jaxscale.learning_curves.spec import SAMPLERS, Spec

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cuts", default="0.1,0.25,0.5")
    p.add_argument("--nanochat-cuts", default="0.1,0.25,0.5")
    p.add_argument("--nanochat-finished-cuts", default="0.25,0.5",
                   help="cuts of the nanochat case where every second run is finished (calibration)")
    p.add_argument("--nanochat-mixed-cuts", default="",
                   help="every second nanochat run finished, the others cut at these fractions in turn")
    p.add_argument("--ncpl-curves", default="", help="cutoff steps for the NCPL table's 5,086 loss curves")
    p.add_argument("--multilingual", default="multilingual_same_source_en")
    p.add_argument("--gp-cuts", default="0.1,0.25,0.5",
                   help="cuts of nanoGPT-large predicted by the law-informed GP (descriptors: width, depth)")
    p.add_argument("--nanochat-gp-cuts", default="",
                   help="cuts of the nanochat case predicted by the law-informed GP (descriptors: depth, matrix "
                        "learning rate, weight decay, warm-down ratio from the runs table), e.g. 0.1,0.25,0.5")
    p.add_argument("--nanochat-finished-gp-cuts", default="",
                   help="cuts of the nanochat case with every second run finished, by the law-informed GP (its "
                        "own interval: the finished runs inform the fit, they do not calibrate it), e.g. 0.25,0.5")
    p.add_argument("--gp-restarts", type=int, default=None, help="GP restarts (default: extrapolate_gp's)")
    p.add_argument("--gp-steps", type=int, default=None, help="GP Adam steps (default: extrapolate_gp's)")
    p.add_argument("--sampler", default="nuts", choices=["nuts", "importance", "auto"],
                   help="power-law sampler of the bundled cases (importance / auto: case names end in ', importance' "
                        "/ ', auto'; auto: importance sampling, NUTS when a run's k-hat > 0.7)")
    p.add_argument("--long-logs", default="",
                   help="W&B-style logs of 12 runs with this many early points per run (comma list, e.g. 100,250), "
                        "each by NUTS and by auto: the time of the default sampler on long logs")
    p.add_argument("--scale-runs", default="",
                   help="synthetic tables of this many runs (comma list, e.g. 200,2000), each by the importance "
                        "sampler: time and scores at scale")
    p.add_argument("--wandb-logs", default="",
                   help="long W&B logs of this many runs at every step to 5,000, cut at 1,500 (comma list, e.g. 40), "
                        "by auto, then again with every row in the noise prior's grid (the time of EB_ROWS) and with "
                        "the predictive drawn at every row to predict (the time of PRED_GRID)")
    p.add_argument("--warmup", type=int, default=500)
    p.add_argument("--samples", type=int, default=500)
    p.add_argument("--chains", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "bench_lc_extrapolate.json"))
    args = p.parse_args(argv)
    enable_x64()
    spec = ExtrapolateSpec(warmup=args.warmup, samples=args.samples, chains=args.chains, sampler=args.sampler)
    gp = Spec(model="magp_law", restarts=args.gp_restarts or Spec().restarts, steps=args.gp_steps or Spec().steps)
    cases = [(f"nanogpt_large cut {float(c):.0%}", lambda c=float(c): nanogpt_cut(c)) for c in args.cuts.split(",") if c]
    cases += [(f"nanogpt_large cut {float(c):.0%}, magp_law", lambda c=float(c): nanogpt_cut(c, descriptors=True))
              for c in args.gp_cuts.split(",") if c]
    cases += [(f"nanochat cut {float(c):.0%}", lambda c=float(c): nanochat_cut(c))
              for c in args.nanochat_cuts.split(",") if c]
    cases += [(f"nanochat cut {float(c):.0%}, magp_law", lambda c=float(c): nanochat_cut(c, descriptors=True))
              for c in args.nanochat_gp_cuts.split(",") if c]
    cases += [(f"nanochat cut {float(c):.0%}, 15 of 30 runs finished", lambda c=float(c): nanochat_cut(c, finished=True))
              for c in args.nanochat_finished_cuts.split(",") if c]
    cases += [(f"nanochat cut {float(c):.0%}, 15 of 30 runs finished, magp_law",
               lambda c=float(c): nanochat_cut(c, finished=True, descriptors=True))
              for c in args.nanochat_finished_gp_cuts.split(",") if c]
    if args.nanochat_mixed_cuts:
        fr = [float(c) for c in args.nanochat_mixed_cuts.split(",")]
        cases += [(f"nanochat, 15 of 30 runs finished, the others cut at {'/'.join(f'{c:.0%}' for c in fr)}",
                   lambda: nanochat_mixed(fr))]
    cases += [(f"{m} extrapolate9", lambda m=m: multilingual(m)) for m in args.multilingual.split(",") if m]
    if args.sampler != "nuts":
        cases = [(f"{n}, {args.sampler}", m) for n, m in cases if not n.endswith("magp_law")]
    cases += [(f"ncpl curves cut at step {int(float(c))}, auto", lambda c=float(c): ncpl_curves(c))
              for c in args.ncpl_curves.split(",") if c]
    cases += [(f"synthetic {int(k)} runs, importance", lambda k=int(k): synthetic(k))
              for k in args.scale_runs.split(",") if k]
    cases += [(f"long logs, 12 runs x {int(k)} early points, {smp}", lambda k=int(k): long_logs(k))
              for k in args.long_logs.split(",") if k for smp in ("nuts", "auto")]
    cases += [(f"wandb logs, {int(k)} runs x 5,000 steps cut at 1,500{ref}, auto", lambda k=int(k): wandb_logs(k))
              for k in args.wandb_logs.split(",") if k for ref in ("", *(f", {r}" for r in REFERENCES))]
    path = Path(args.out)
    rows = json.loads(path.read_text()) if path.exists() else {}
    X = importlib.import_module("jaxscale.learning_curves.extrapolate")
    defaults = {const: getattr(X, const) for const, _ in REFERENCES.values()}
    for name, make in cases:
        ref = next((r for r in REFERENCES if r in name), None)
        if ref is not None:
            setattr(X, REFERENCES[ref][0], 1 << 40)
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            t0 = time.perf_counter()
            model = "magp_law" if name.endswith("magp_law") else "powerlaw"
            case_spec = spec._replace(sampler=name.rsplit(", ", 1)[-1]) if name.endswith(SAMPLERS) else spec
            fit, _, rep = evaluate_tail(jax.random.key(args.seed), make(), case_spec, model=model, gp_spec=gp)
        for const, value in defaults.items():
            setattr(X, const, value)
        rep["seconds"] = time.perf_counter() - t0
        if ref is not None:  # the reference runs right after its default case: their ratio, same process
            default = rows[name.replace(f", {ref}", "")]
            default[REFERENCES[ref][1]] = rep["fit_seconds"] / default["fit_seconds"]
        rep["warnings"] = sorted({str(x.message)[:200] for x in w})
        rep["spec"] = case_spec._asdict() if model == "powerlaw" else gp._asdict()
        rows[name] = rep
        keys = ("score", "scipy_power_law", "last_value", "local_trend", "nearest_finished_run", "converged")
        print(name, json.dumps({k: rep[k] for k in keys if k in rep}), flush=True)
        path.write_text(json.dumps(rows, indent=1, default=float))


if __name__ == "__main__":
    main()
