"""JAX differential evolution vs scipy.optimize.differential_evolution on the context law.

Cases (same loss = MSE of P, same box, popsize 15, tol 1e-8, maxiter 1000, no polish on either side):
  1. 120 cell means: the paper's design (2 compute levels x 6 n_ctx x 10 shots), synthetic binomial scores.
  2. 65,536 per-instance 0/1 rows.  The bundled data has no per-instance outputs, so these rows are
     RESAMPLED from the bundled many-shot ICL cells (cell drawn uniformly, outcome ~ Bernoulli(score)).
     JAX runs the library path (``fit_law``), which fits each repeated cell once (MSE over 0/1 rows =
     count-weighted MSE over the unique cells + the within-cell sum of squares, so the same loss);
     scipy runs on the rows as given.  For reference also: scipy on the same compressed cells, and
     JAX on the raw rows (``fit_core`` without compression; warm time and loss).
  3. Many tasks at once: the 5 ICL tasks in one vmapped DE program (``fit_many``) vs 5 sequential scipy runs.
  4. The pillar contract on the ICL table: context_law.from_frame(task_col="task") -> fit (the ICL
     preset: DE + L-BFGS polish, 2 restarts, every task in one program, plus the backtest refits)
     -> predict; cold and warm, with the in-sample MAE and the 90 % residual-interval coverage per task.
  5. (--calibration) Right on new data: the ICL extrapolation experiment (train on prompts < 10k
     tokens, score the longer ones): held-out MAE of the point fit, of the posterior mean and of the
     carry-forward baseline, 90 % coverage of the point and Bayesian intervals (both widened by the
     backtest's drift), NUTS diagnostics and wall time.

Every case runs in its own fresh Python process with the persistent compilation cache off
(``JAXSCALE_NO_CACHE=1`` and ``jax_enable_compilation_cache=False``), so "cold" is the first call
in that process: trace + compile + run, after the imports and the data preparation (neither
timed, for either library).  "warm" is a second call with the same key (same work).  Cases 1 and 2
alternate scipy and JAX processes ``--repeats`` times and report medians.  Wall and process CPU time;
the ratios in the JSON are scipy / JAX wall times (> 1: JAX faster).

  python benchmarks/bench_context.py [--quick] [--repeats 3] [--cases cells120,rows65k,many,contract]
      [--calibration | --only-calibration]
      [--out benchmarks/results/bench_context.json]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np


def _np_law(th, logC, n, nc, alpha_fixed=None):
    if alpha_fixed is None:
        a, alpha, b, beta, ls = th
    else:
        a, b, beta, ls = th
        alpha = alpha_fixed
    fc = -np.expm1(-np.exp(a + alpha * (logC - np.log(1e22))))
    fn = -np.expm1(-np.exp(b + beta * np.log(n / 1e3)))
    z = (nc - n) / (np.exp(ls) * nc)
    return fc * fn * 0.5 * (1 + np.tanh(0.5 * z))


def _timed(fn):
    w, c = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - w, time.process_time() - c


def contract_case(icl) -> dict:
    """Case 4: from_frame -> fit -> predict on the bundled ICL cells (chance floor, task column)."""
    import jax

    from jaxscale import context_law as cl

    data = cl.from_frame(icl, chance_col="chance", task_col="task")
    spec = cl.PRESETS["longcontext_icl"]
    fit, w_cold, c_cold = _timed(lambda: jax.block_until_ready(cl.fit(jax.random.key(0), data, spec)))
    _, w_warm, c_warm = _timed(lambda: jax.block_until_ready(cl.fit(jax.random.key(1), data, spec)))
    pred, w_pred, _ = _timed(lambda: jax.block_until_ready(cl.predict(fit, data)))
    y, codes = np.asarray(data.y), np.asarray(data.task)
    err = np.abs(np.asarray(pred.mean) - y)
    inside = (y >= np.asarray(pred.lower)) & (y <= np.asarray(pred.upper))
    return {"rows": len(data), "tasks": list(fit.task_labels), "fit_cold_s": w_cold, "fit_cold_cpu_s": c_cold,
            "fit_warm_s": w_warm, "fit_warm_cpu_s": c_warm, "predict_s": w_pred,
            "converged": np.asarray(fit.converged).tolist(),
            "mae_in": {t: float(err[codes == i].mean()) for i, t in enumerate(fit.task_labels)},
            "coverage_90_in": {t: float(inside[codes == i].mean()) for i, t in enumerate(fit.task_labels)}}


def calibration_case() -> dict:
    """Case 5: the bundled ICL extrapolation experiment, point fit and NUTS (the CLI's --dataset)."""
    import jax

    from jaxscale.context_law.evaluate import bayes_extrapolation, default_spec, evaluate_source, source_report

    spec = default_spec("longcontext_icl")
    key = jax.random.key(0)
    res, w_point, c_point = _timed(lambda: evaluate_source(key, "longcontext_icl", spec))
    rep = source_report(res)
    out, w_bayes, c_bayes = _timed(lambda: bayes_extrapolation(jax.random.fold_in(key, 1), res, spec))
    return {"point_s": w_point, "point_cpu_s": c_point, "bayes_s": w_bayes, "bayes_cpu_s": c_bayes,
            "mae_out_point": out["mae_out"]["point_fit"], "mae_out_posterior_mean": out["mae_out"]["posterior_mean"],
            "mae_out_carry_forward": out["mae_out"]["carry_forward_baseline"], "n_out": out["mae_out"]["n"],
            "coverage_90_point": rep["coverage_90_point"], "drift_point": rep["drift"]["tau"],
            "coverage_90_bayes": out["coverage_90"], "coverage_90_bayes_rows": out["coverage_90_rows"],
            "drift_bayes": out["drift"]["tau"], "nuts": out["diagnostics"]}


def _jax_setup():
    """x64 on, the persistent compilation cache off, and a counter of XLA compilations."""
    import jax

    jax.config.update("jax_enable_x64", True)
    jax.config.update("jax_enable_compilation_cache", False)
    stats = {"n": 0, "s": 0.0}

    def listen(event, duration, **_):
        if event == "/jax/core/compile/backend_compile_duration":
            stats["n"] += 1
            stats["s"] += duration

    jax.monitoring.register_event_duration_secs_listener(listen)
    return jax, stats


def _cold_warm(fn, stats) -> dict:
    """First call (cold: trace + compile + run) and a second one (warm) of ``fn``."""
    stats["n"], stats["s"] = 0, 0.0
    out, w_cold, c_cold = _timed(fn)
    n, s = stats["n"], stats["s"]
    out2, w_warm, c_warm = _timed(fn)
    return {"out": out, "out2": out2, "cold_s": w_cold, "cold_cpu_s": c_cold, "warm_s": w_warm, "warm_cpu_s": c_warm,
            "cold_compiles": n, "cold_compile_s": s}


def _cells120():
    import jax

    from jaxscale.context_law.data import to_context_data
    from jaxscale.context_law.synthetic import paper_design, simulate

    d = simulate(jax.random.key(1), paper_design())
    return d, to_context_data(d)


def _rows65k(n_rows: int):
    from jaxscale.context_law import load_source
    from jaxscale.context_law.data import to_context_data

    icl = load_source("longcontext_icl")
    rng = np.random.default_rng(0)
    rows = icl.iloc[rng.integers(0, len(icl), n_rows)].reset_index(drop=True)
    rows["score"] = (rng.random(n_rows) < rows["score"].to_numpy()).astype(float)
    return rows, to_context_data(rows)


_DE = dict(tol=1e-8, maxiter=1000, polish=False)


def worker_cells120_scipy(args) -> dict:
    from scipy.optimize import differential_evolution

    from jaxscale.context_law.model import param_bounds
    from jaxscale.context_law.synthetic import TRUE_SPEC

    _jax_setup()  # the same float64 data as the JAX run
    d, _ = _cells120()
    logC, n, nc, y = np.log(d["C"].to_numpy()), d["n_pmt"].to_numpy(), d["n_ctx"].to_numpy(), d["score"].to_numpy()
    b = param_bounds(TRUE_SPEC)
    r = _cold_warm(lambda: differential_evolution(lambda t: np.mean((_np_law(t, logC, n, nc) - y) ** 2), b, seed=0,
                                                  **_DE), {"n": 0, "s": 0.0})
    return {"cold_s": r["cold_s"], "cold_cpu_s": r["cold_cpu_s"], "warm_s": r["warm_s"], "loss": float(r["out"].fun),
            "nit": int(r["out"].nit)}


def _jax_fit(jax, data, spec, key):
    import warnings

    from jaxscale.context_law.fit import fit_law

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the bundled designs' weak-design notes
        return jax.block_until_ready(fit_law(key, data, spec, popsize=15, restarts=1, **_DE))


def worker_cells120_jax(args) -> dict:
    jax, stats = _jax_setup()
    from jaxscale.context_law.fit import fit_law  # noqa: F401  (imported before the clock, like scipy's)
    from jaxscale.context_law.synthetic import TRUE_SPEC

    _, data = _cells120()
    key = jax.block_until_ready(jax.random.key(0))
    r = _cold_warm(lambda: _jax_fit(jax, data, TRUE_SPEC, key), stats)
    f = r["out"]
    return {"cold_s": r["cold_s"], "cold_cpu_s": r["cold_cpu_s"], "warm_s": r["warm_s"], "warm_cpu_s": r["warm_cpu_s"],
            "cold_compiles": r["cold_compiles"], "cold_compile_s": r["cold_compile_s"], "loss": float(f.loss),
            "generations": int(f.de_generations), "device": str(jax.devices()[0])}


def _icl_spec():
    from jaxscale.context_law import Spec

    return Spec(penalty="logistic", fit_alpha=False)


def worker_rows65k_scipy(args) -> dict:
    from scipy.optimize import differential_evolution

    from jaxscale.context_law.model import param_bounds

    _jax_setup()
    rows, _ = _rows65k(args.rows)
    rl, rn, rc, ry = (np.log(rows["C"].to_numpy()), rows["n_pmt"].to_numpy(), rows["n_ctx"].to_numpy(),
                      rows["score"].to_numpy())
    b2 = param_bounds(_icl_spec())
    out = {}
    if args.quick:  # time the loss and extrapolate to scipy's generation count on the cells (same optimum)
        t_eval = _timed(lambda: [np.mean((_np_law(b2.mean(1), rl, rn, rc, 0.5) - ry) ** 2) for _ in range(50)])[1] / 50
    else:
        sp, w, c = _timed(lambda: differential_evolution(lambda t: np.mean((_np_law(t, rl, rn, rc, 0.5) - ry) ** 2),
                                                         b2, seed=0, **_DE))
        out.update(cold_s=w, cold_cpu_s=c, loss=float(sp.fun), nit=int(sp.nit))
    g = rows.groupby(["C", "n_pmt", "n_ctx"], as_index=False).agg(score=("score", "mean"), count=("score", "size"),
                                                                  ss=("score", lambda v: float(((v - v.mean()) ** 2).sum())))
    gl, gn, gc, gy, gw = (np.log(g["C"].to_numpy()), g["n_pmt"].to_numpy(), g["n_ctx"].to_numpy(),
                          g["score"].to_numpy(), g["count"].to_numpy(float))
    ss, W = float(g["ss"].sum()), gw.sum()
    spc, wc, _ = _timed(lambda: differential_evolution(
        lambda t: (np.sum(gw * (_np_law(t, gl, gn, gc, 0.5) - gy) ** 2) + ss) / W, b2, seed=0, **_DE))
    out.update(compressed_s=wc, compressed_loss=float(spc.fun), compressed_nit=int(spc.nit), unique_cells=len(g))
    if args.quick:
        out.update(cold_s_estimated=t_eval * 60 * (int(spc.nit) + 1))
    return out


def worker_rows65k_jax(args) -> dict:
    jax, stats = _jax_setup()
    from jaxscale.context_law.fit import fit_core

    _, big = _rows65k(args.rows)
    spec = _icl_spec()
    key = jax.block_until_ready(jax.random.key(0))
    r = _cold_warm(lambda: _jax_fit(jax, big, spec, key), stats)
    f = r["out"]
    out = {"cold_s": r["cold_s"], "cold_cpu_s": r["cold_cpu_s"], "warm_s": r["warm_s"], "warm_cpu_s": r["warm_cpu_s"],
           "cold_compiles": r["cold_compiles"], "cold_compile_s": r["cold_compile_s"], "loss": float(f.loss),
           "generations": int(f.de_generations), "theta": np.asarray(f.theta).tolist()}
    if not args.quick:  # the raw rows, no compression (compile first, then time a run)
        raw = lambda: jax.block_until_ready(fit_core(key, big, spec._replace(popsize=15, restarts=1, **_DE)))  # noqa: E731
        _, w_first, _ = _timed(raw)
        fr, w, c = _timed(raw)
        out.update(raw_first_s=w_first, raw_warm_s=w, raw_warm_cpu_s=c, raw_loss=float(fr.loss),
                   raw_generations=int(fr.de_generations), raw_theta=np.asarray(fr.theta).tolist())
    return out


def worker_many(args) -> dict:
    """Case 3: the 5 ICL tasks in one vmapped program (fit_many) vs 5 sequential scipy runs."""
    import warnings

    from scipy.optimize import differential_evolution

    jax, stats = _jax_setup()
    from jaxscale.context_law import load_source
    from jaxscale.context_law.data import stack_tasks
    from jaxscale.context_law.fit import fit_many
    from jaxscale.context_law.model import param_bounds

    icl = load_source("longcontext_icl")
    spec = _icl_spec()
    tasks = sorted(icl["task"].unique())
    frames = [icl[icl["task"] == t] for t in tasks]
    stacked = stack_tasks(frames)
    key = jax.block_until_ready(jax.random.key(0))

    def many():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            return jax.block_until_ready(fit_many(key, stacked, spec, popsize=15, restarts=1, **_DE))

    r = _cold_warm(many, stats)
    b2 = param_bounds(spec)
    w_seq, sp_losses = 0.0, []
    for f in frames:
        a = (np.log(f["C"].to_numpy()), f["n_pmt"].to_numpy(), f["n_ctx"].to_numpy(), f["score"].to_numpy())
        res, w, _ = _timed(lambda: differential_evolution(lambda t: np.mean((_np_law(t, *a[:3], 0.5) - a[3]) ** 2),
                                                          b2, seed=0, **_DE))
        w_seq += w
        sp_losses.append(float(res.fun))
    return {"n_tasks": len(tasks), "scipy_sequential_s": w_seq, "jax_vmap_cold_s": r["cold_s"],
            "jax_vmap_warm_s": r["warm_s"], "jax_cold_compiles": r["cold_compiles"],
            "speedup_cold": w_seq / r["cold_s"], "speedup_warm": w_seq / r["warm_s"],
            "jax_losses": np.asarray(r["out"].loss).tolist(), "scipy_losses": sp_losses}


def worker_contract(args) -> dict:
    _jax_setup()
    from jaxscale.context_law import load_source

    return contract_case(load_source("longcontext_icl"))


def worker_calibration(args) -> dict:
    _jax_setup()
    return calibration_case()


def _spawn(name: str, args) -> dict:
    """Run worker ``name`` in a fresh process (persistent compilation cache off); its JSON result."""
    env = {k: v for k, v in os.environ.items() if k not in ("JAX_COMPILATION_CACHE_DIR",)}
    env.update(JAXSCALE_NO_CACHE="1", JAXSCALE_PROGRESS="0")
    cmd = [sys.executable, __file__, "--worker", name, "--rows", str(args.rows)] + (["--quick"] if args.quick else [])
    res = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"worker {name} failed ({res.returncode}):\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def _median(runs: list, field: str):
    vals = [r[field] for r in runs if field in r]
    return float(np.median(vals)) if vals else None


def _pair(args, name: str, repeats: int) -> dict:
    """Alternate scipy and JAX processes ``repeats`` times; medians, ratios and every run."""
    sp, jx = [], []
    for _ in range(repeats):
        sp.append(_spawn(name + "_scipy", args))
        jx.append(_spawn(name + "_jax", args))
    out = {}
    for field in ("cold_s", "cold_cpu_s", "warm_s", "compressed_s", "cold_s_estimated"):
        v = _median(sp, field)
        if v is not None:
            out["scipy_" + field] = v
    for field in ("cold_s", "cold_cpu_s", "warm_s", "warm_cpu_s", "cold_compiles", "cold_compile_s", "raw_warm_s"):
        v = _median(jx, field)
        if v is not None:
            out["jax_" + field] = v
    for k in ("loss", "nit", "compressed_loss", "unique_cells"):
        if k in sp[0]:
            out["scipy_" + k] = sp[0][k]
    for k in ("loss", "generations", "raw_loss", "raw_generations", "theta", "raw_theta", "device"):
        if k in jx[0]:
            out["jax_" + k] = jx[0][k]
    scipy_s = out.get("scipy_cold_s", out.get("scipy_cold_s_estimated"))
    out["speedup_cold"] = scipy_s / out["jax_cold_s"]
    out["speedup_warm"] = scipy_s / out["jax_warm_s"]
    out["runs"] = {"scipy": sp, "jax": jx}
    return out


WORKERS = {name[len("worker_"):]: fn for name, fn in list(globals().items()) if name.startswith("worker_")}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="skip the slow scipy and raw-row JAX runs at 65k rows "
                    "(scipy's time is then estimated from its loss time)")
    ap.add_argument("--rows", type=int, default=65_536)
    ap.add_argument("--repeats", type=int, default=3, help="fresh-process repeats of the 120-cell case (medians)")
    ap.add_argument("--repeats-65k", type=int, default=1, help="fresh-process repeats of the 65k-row case")
    ap.add_argument("--calibration", action="store_true", help="also run case 5 (held-out calibration, NUTS)")
    ap.add_argument("--only-calibration", action="store_true", help="run case 5 only")
    ap.add_argument("--cases", default="cells120,rows65k,many,contract",
                    help="comma-separated cases to run (cells120, rows65k, many, contract)")
    ap.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "bench_context.json"))
    args = ap.parse_args(argv)
    if args.worker:
        print(json.dumps(WORKERS[args.worker](args)), flush=True)
        return

    res = {"platform": platform.platform(), "cpu_count": os.cpu_count(), "loadavg_1min_start": os.getloadavg()[0],
           "settings": "best1bin, popsize 15 x n_params, tol 1e-8, maxiter 1000, no polish, MSE",
           "cold": "first call in a fresh process, persistent compilation cache off (JAXSCALE_NO_CACHE=1), "
                   "imports and data preparation not timed; warm: second call, same key",
           "command": "python benchmarks/bench_context.py " + " ".join(sys.argv[1:] if argv is None else argv)}
    if args.only_calibration:
        res["calibration"] = _spawn("calibration", args)
        print("calibration", json.dumps(res["calibration"]), flush=True)
        out = Path(args.out)
        out = out.with_name(out.stem + "_calibration.json")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(res, indent=2))
        print("wrote", out)
        return

    cases = args.cases.split(",")
    if "cells120" in cases:
        res["cells_120"] = _pair(args, "cells120", args.repeats)
        print("120 cells", json.dumps({k: v for k, v in res["cells_120"].items() if k != "runs"}), flush=True)
    if "rows65k" in cases:
        res["rows_65k"] = r2 = _pair(args, "rows65k", args.repeats_65k)
        r2.update(rows=args.rows, resampled_from="bundled longcontext_icl cells (Bernoulli(score) outcomes)")
        if "scipy_compressed_s" in r2:
            r2["speedup_cold_vs_scipy_compressed"] = r2["scipy_compressed_s"] / r2["jax_cold_s"]
        print("65k rows", json.dumps({k: v for k, v in r2.items() if k != "runs"}), flush=True)
    res["targets"] = {}
    if "cells_120" in res:
        res["targets"]["cells_120_cold_at_least_scipy"] = res["cells_120"]["speedup_cold"] >= 1.0
    if "rows_65k" in res:
        res["targets"]["rows_65k_cold_at_least_10x_scipy"] = res["rows_65k"]["speedup_cold"] >= 10.0
    if "many" in cases:
        res["many_tasks"] = _spawn("many", args)
        print("many tasks", json.dumps(res["many_tasks"]), flush=True)
    if "contract" in cases:
        res["contract"] = _spawn("contract", args)
        print("contract", json.dumps(res["contract"]), flush=True)
    if args.calibration:
        res["calibration"] = _spawn("calibration", args)
        print("calibration", json.dumps(res["calibration"]), flush=True)
    res["loadavg_1min_end"] = os.getloadavg()[0]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=2))
    print("wrote", args.out)


if __name__ == "__main__":
    main()
