"""Speed of the observational pillar (GSM8K CoT, the paper's headline post-training task).

* per-fit time after compile (goal <= 20 ms; the original scipy code takes 1.1 s here), with a
  same-script reference: scipy L-BFGS-B with finite-difference gradients on the same objective
  (what the original code runs);
* 1000 bootstrap refits in one vmapped program (goal <= 2 s): damped-Newton refits from the
  full-data optimum (:func:`jaxscale.observational.fit.fit_law_batch`);
* the contract on the same task as a user table: ``observational.fit`` (imputation + PCA + law in
  one compiled program) with and without 1000 bootstrap refits, and ``observational.predict`` of
  every model, first call (compile) and warm.

NUTS timing (goal <= 20 s) is in ``bench_observational_bayes.py``.

Writes JSON to benchmarks/results/bench_observational.json. Wall and CPU times are both
reported (the build machine is shared; wall times are noisy).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _timed(fn, repeat=1):
    w0, c0 = time.perf_counter(), time.process_time()
    for _ in range(repeat):
        out = fn()
    return out, (time.perf_counter() - w0) / repeat, (time.process_time() - c0) / repeat


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--task", default="gsm8k_cot")
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--boot", type=int, default=1000)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "bench_observational.json"))
    a = ap.parse_args(argv)

    import jax
    import jax.numpy as jnp
    from scipy.optimize import minimize

    from jaxscale.config import enable_x64
    from jaxscale.observational.fit import fit_law, fit_law_batch, start_theta
    from jaxscale.observational.pipeline import run_task
    from jaxscale.observational.tasks import get_task

    enable_x64()
    spec = get_task(a.task)
    r = run_task(spec)
    X, y = r.design.S_train[:, :3], r.design.y_train
    res = {"task": a.task, "n_train": int(len(y)), "machine": platform.platform(),
           "cpu_count": os.cpu_count()}

    # --- single fit: compile, then steady state
    def one():
        p, fr = fit_law(X, y, floor=spec.floor, loss=spec.loss)
        return fr.loss.block_until_ready()

    _, t_compile, _ = _timed(one)
    _, t_fit, c_fit = _timed(one, a.repeat)
    res["fit_first_call_s"] = t_compile
    res["fit_s"] = t_fit
    res["fit_cpu_s"] = c_fit

    # --- reference: scipy L-BFGS-B, finite differences, bounds on b (the original code's path)
    def obj(th):
        a0, b1, fl = th[0], th[1:-1], th[-1]
        pred = fl + (1 - fl) / (1 + np.exp(-(a0 + X @ b1)))
        return 0.5 * np.sum((pred - y) ** 2)

    th0 = np.array(start_theta(3))
    th0[-1] = 0.0
    bounds = [(None, None)] * 4 + [(0.0, 0.2)]
    ref, t_ref, c_ref = _timed(lambda: minimize(obj, th0, method="L-BFGS-B", bounds=bounds), 3)
    res["reference_scipy_fd_s"] = t_ref
    res["reference_scipy_fd_cpu_s"] = c_ref
    res["speedup_vs_reference"] = t_ref / t_fit
    res["original_code_s_quoted"] = 1.1

    # --- bootstrap refits, vmapped
    key = jax.random.key(0)
    idx = jax.random.randint(key, (a.boot, len(y)), 0, len(y))
    W = np.asarray(jax.vmap(lambda i: jnp.bincount(i, length=len(y)))(idx), float)
    theta_hat = fit_law(X, y, floor=spec.floor, loss=spec.loss)[1].params

    def boot():
        p, fr = fit_law_batch(X, y, W, floor=spec.floor, loss=spec.loss, theta0=theta_hat)
        res["bootstrap_converged"] = int(np.asarray(fr.converged).sum())
        return fr.loss.block_until_ready()

    _, t_bc, _ = _timed(boot)
    _, t_boot, c_boot = _timed(boot)
    res["bootstrap_n"] = a.boot
    res["bootstrap_first_call_s"] = t_bc
    res["bootstrap_s"] = t_boot
    res["bootstrap_cpu_s"] = c_boot

    # --- the contract: the same task as a user table
    import warnings

    from jaxscale import observational as obs

    warnings.simplefilter("ignore", RuntimeWarning)  # "imputed N cells": expected here
    data = obs.from_frame(r.design.prep.df, target_col=spec.column, metric_cols=list(spec.metrics),
                          lo=spec.lo, hi=spec.hi)
    train = obs.take_rows(data, np.asarray(r.design.train))
    cspec = obs.Spec(k=spec.k, floor=spec.floor, loss=spec.loss)
    for tag, sp in (("contract_fit", cspec), ("contract_fit_boot", cspec._replace(bootstrap=a.boot))):
        f, t_first, _ = _timed(lambda sp=sp: jax.block_until_ready(obs.fit(key, train, sp)))
        _, t_warm, c_warm = _timed(lambda sp=sp: jax.block_until_ready(obs.fit(key, train, sp)), 3)
        res[f"{tag}_first_call_s"], res[f"{tag}_s"], res[f"{tag}_cpu_s"] = t_first, t_warm, c_warm
    res["contract_mse_train"], res["pipeline_mse_train"] = float(f.mse_train), float(r.mse_train)
    p, t_first, _ = _timed(lambda: jax.block_until_ready(obs.predict(f, data, key=key)))
    _, t_warm, _ = _timed(lambda: jax.block_until_ready(obs.predict(f, data, key=key)), 3)
    res["contract_predict_first_call_s"], res["contract_predict_s"] = t_first, t_warm

    res["goals"] = {"fit_s": 0.020, "bootstrap_s": 2.0}
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2))
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
