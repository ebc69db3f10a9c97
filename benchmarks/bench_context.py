"""JAX differential evolution vs scipy.optimize.differential_evolution on the context law.

Cases (same loss = MSE of P, same box, popsize 15, tol 1e-8, maxiter 1000, no polish on either side):
  1. 120 cell means: the paper's design (2 compute levels x 6 n_ctx x 10 shots), synthetic binomial scores.
  2. 65,536 per-instance 0/1 rows.  The bundled data has no per-instance outputs, so these rows are
     RESAMPLED from the bundled many-shot ICL cells (cell drawn uniformly, outcome ~ Bernoulli(score)).
     JAX is timed on the raw rows and, separately, on the exact sufficient-statistic compression
     (MSE over 0/1 rows = count-weighted MSE over unique covariates + constant).
  3. Many tasks at once: the 5 ICL tasks in one vmapped DE program vs 5 sequential scipy runs.
  4. The pillar contract on the ICL table: context_law.from_frame(task_col="task") -> fit (the ICL
     preset: DE + L-BFGS polish, 2 restarts, every task in one program, plus the backtest refits)
     -> predict; cold and warm, with the in-sample MAE and the 90 % residual-interval coverage per task.
  5. (--calibration) Right on new data: the ICL extrapolation experiment (train on prompts < 10k
     tokens, score the longer ones): held-out MAE of the point fit, of the posterior mean and of the
     carry-forward baseline, 90 % coverage of the point and Bayesian intervals (both widened by the
     backtest's drift), NUTS diagnostics and wall time.
JAX times are reported cold (first call: trace + compile + run) and warm.  Wall and process CPU time.

  python benchmarks/bench_context.py [--quick] [--calibration | --only-calibration]
      [--out benchmarks/results/bench_context.json]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
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


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="skip the slow scipy run at 65k rows (estimate instead)")
    ap.add_argument("--rows", type=int, default=65_536)
    ap.add_argument("--calibration", action="store_true", help="also run case 5 (held-out calibration, NUTS)")
    ap.add_argument("--only-calibration", action="store_true", help="run case 5 only")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "bench_context.json"))
    args = ap.parse_args(argv)

    import jax
    from scipy.optimize import differential_evolution

    jax.config.update("jax_enable_x64", True)
    from jaxscale.context_law import Spec, load_source
    from jaxscale.context_law.data import stack_tasks, to_context_data
    from jaxscale.context_law.fit import _fit_one
    from jaxscale.context_law.model import param_bounds
    from jaxscale.context_law.synthetic import TRUE_SPEC, paper_design, simulate

    res = {"device": str(jax.devices()[0]), "platform": platform.platform(), "cpu_count": os.cpu_count(),
           "settings": "best1bin, popsize 15 x n_params, tol 1e-8, maxiter 1000, no polish, MSE"}
    if args.only_calibration:
        res["calibration"] = calibration_case()
        print("calibration", json.dumps(res["calibration"]), flush=True)
        out = Path(args.out)
        out = out.with_name(out.stem + "_calibration.json")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(res, indent=2))
        print("wrote", out)
        return

    def jax_de(key, data, spec):
        f = _fit_one(key, data, spec.law(), 15, 1000, 1e-8, False)
        jax.block_until_ready(f.loss)
        return f

    # 1. 120 cell means
    d = simulate(jax.random.key(1), paper_design())
    data = to_context_data(d)
    logC, n, nc, y = np.log(d["C"].to_numpy()), d["n_pmt"].to_numpy(), d["n_ctx"].to_numpy(), d["score"].to_numpy()
    bounds = param_bounds(TRUE_SPEC)
    sp, w_sp, c_sp = _timed(lambda: differential_evolution(lambda t: np.mean((_np_law(t, logC, n, nc) - y) ** 2),
                                                           bounds, seed=0, tol=1e-8, maxiter=1000, polish=False))
    fj, w_cold, c_cold = _timed(lambda: jax_de(jax.random.key(0), data, TRUE_SPEC))
    fj2, w_warm, c_warm = _timed(lambda: jax_de(jax.random.key(1), data, TRUE_SPEC))
    res["cells_120"] = {"scipy_s": w_sp, "scipy_cpu_s": c_sp, "scipy_loss": float(sp.fun), "scipy_nit": int(sp.nit),
                        "jax_cold_s": w_cold, "jax_cold_cpu_s": c_cold, "jax_warm_s": w_warm, "jax_warm_cpu_s": c_warm,
                        "jax_loss": float(fj.loss), "jax_generations": int(fj.de_generations),
                        "speedup_cold": w_sp / w_cold, "speedup_warm": w_sp / w_warm}
    print("120 cells", json.dumps(res["cells_120"]), flush=True)

    # 2. 65k resampled per-instance rows from the ICL cells (all tasks pooled, one law)
    icl = load_source("longcontext_icl")
    rng = np.random.default_rng(0)
    idx = rng.integers(0, len(icl), args.rows)
    rows = icl.iloc[idx].reset_index(drop=True)
    rows["score"] = (rng.random(args.rows) < rows["score"].to_numpy()).astype(float)
    spec = Spec(penalty="logistic", fit_alpha=False).law()
    big = to_context_data(rows)
    rl, rn, rc, ry = (np.log(rows["C"].to_numpy()), rows["n_pmt"].to_numpy(), rows["n_ctx"].to_numpy(),
                      rows["score"].to_numpy())
    b2 = param_bounds(spec)

    def sp_big():
        return differential_evolution(lambda t: np.mean((_np_law(t, rl, rn, rc, 0.5) - ry) ** 2), b2, seed=0,
                                      tol=1e-8, maxiter=1000, polish=False)

    if args.quick:  # time 20 generations and extrapolate linearly to the JAX generation count
        t_eval = _timed(lambda: [np.mean((_np_law(b2.mean(1), rl, rn, rc, 0.5) - ry) ** 2) for _ in range(200)])[1] / 200
        sp2 = None
    else:
        sp2, w_sp2, c_sp2 = _timed(sp_big)
    fb, wb_cold, cb_cold = _timed(lambda: jax_de(jax.random.key(0), big, spec))
    fb2, wb_warm, cb_warm = _timed(lambda: jax_de(jax.random.key(1), big, spec))
    g = rows.groupby(["C", "n_pmt", "n_ctx"], as_index=False).agg(score=("score", "mean"), count=("score", "size"))
    g["chance"] = 0.0
    comp = to_context_data(g, weight=g["count"].to_numpy(float))
    fc_, wc_cold, cc_cold = _timed(lambda: jax_de(jax.random.key(0), comp, spec))
    r2 = {"rows": args.rows, "resampled_from": "bundled longcontext_icl cells (Bernoulli(score) outcomes)",
          "unique_cells": len(g), "jax_cold_s": wb_cold, "jax_cold_cpu_s": cb_cold, "jax_warm_s": wb_warm,
          "jax_warm_cpu_s": cb_warm, "jax_loss": float(fb.loss), "jax_generations": int(fb.de_generations),
          "jax_compressed_cold_s": wc_cold, "jax_compressed_loss_plus_const": None}
    if sp2 is not None:
        r2.update(scipy_s=w_sp2, scipy_cpu_s=c_sp2, scipy_loss=float(sp2.fun), scipy_nit=int(sp2.nit),
                  speedup_cold=w_sp2 / wb_cold, speedup_warm=w_sp2 / wb_warm, speedup_compressed_cold=w_sp2 / wc_cold)
    else:
        est = t_eval * 60 * (int(fb.de_generations) + 1)
        r2.update(scipy_s_estimated=est, speedup_cold_estimated=est / wb_cold)
    print("65k rows", json.dumps(r2), flush=True)
    res["rows_65k"] = r2

    # 3. many tasks at once (vmap) vs sequential scipy
    tasks = sorted(icl["task"].unique())
    frames = [icl[icl["task"] == t] for t in tasks]
    stacked = stack_tasks(frames)
    keys = jax.random.split(jax.random.key(0), len(tasks))
    many = jax.jit(jax.vmap(lambda k, dd: _fit_one(k, dd, spec, 15, 1000, 1e-8, False)))
    fm, wm_cold, cm_cold = _timed(lambda: jax.block_until_ready(many(keys, stacked)))
    fm2, wm_warm, cm_warm = _timed(lambda: jax.block_until_ready(many(jax.random.split(jax.random.key(1), 5), stacked)))
    w_seq = 0.0
    sp_losses = []
    for f in frames:
        a = (np.log(f["C"].to_numpy()), f["n_pmt"].to_numpy(), f["n_ctx"].to_numpy(), f["score"].to_numpy())
        r, w, _ = _timed(lambda: differential_evolution(lambda t: np.mean((_np_law(t, *a[:3], 0.5) - a[3]) ** 2), b2,
                                                        seed=0, tol=1e-8, maxiter=1000, polish=False))
        w_seq += w
        sp_losses.append(float(r.fun))
    res["many_tasks"] = {"n_tasks": len(tasks), "scipy_sequential_s": w_seq, "jax_vmap_cold_s": wm_cold,
                         "jax_vmap_warm_s": wm_warm, "speedup_warm": w_seq / wm_warm,
                         "jax_losses": np.asarray(fm.loss).tolist(), "scipy_losses": sp_losses}
    print("many tasks", json.dumps(res["many_tasks"]), flush=True)

    res["contract"] = contract_case(icl)
    print("contract", json.dumps(res["contract"]), flush=True)
    if args.calibration:
        res["calibration"] = calibration_case()
        print("calibration", json.dumps(res["calibration"]), flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=2))
    print("wrote", args.out)


if __name__ == "__main__":
    main()
