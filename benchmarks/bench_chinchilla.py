"""Benchmark: jaxscale's Chinchilla fit (4,500 L-BFGS starts) + 4,000 bootstrap refits vs
scipy.optimize.minimize (L-BFGS-B) from the same 4,500 starts, in one run.

Writes benchmarks/results/bench_chinchilla.json with wall and CPU seconds, the ratio, and
both optima. Usage: python benchmarks/bench_chinchilla.py [--scipy-starts N] [--n-boot N]
(--scipy-starts < 4500 times a subset and extrapolates linearly, flagged in the JSON).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)

import numpy as np  # noqa: E402

from jaxscale import chinchilla as ch  # noqa: E402
from jaxscale.data import load  # noqa: E402
from jaxscale.laws import chinchilla_theta_to_params  # noqa: E402


def _timed(fn):
    w, c = time.perf_counter(), time.process_time()
    out = fn()
    jax.block_until_ready(out)
    return out, time.perf_counter() - w, time.process_time() - c


def scipy_fit(starts: np.ndarray, data: ch.ChinchillaData):
    from scipy.optimize import minimize
    from scipy.special import huber, logsumexp

    logN, logD, logL = map(np.asarray, (data.log_N, data.log_D, data.log_loss))

    def objective(t):
        a, b, e, al, be = t
        pred = logsumexp([a - al * logN, b - be * logD, np.full_like(logN, e)], axis=0)
        return np.sum(huber(1e-3, pred - logL))

    best = None
    for s in starts:
        r = minimize(objective, s, method="L-BFGS-B")
        if best is None or r.fun < best.fun:
            best = r
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scipy-starts", type=int, default=4500)
    ap.add_argument("--n-boot", type=int, default=4000)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "bench_chinchilla.json"))
    args = ap.parse_args()
    df = load("epoch_chinchilla")
    key = jax.random.key(0)
    all_rows = ch.from_frame(df)

    res, fit_wall, fit_cpu = _timed(lambda: ch.fit(key, all_rows, ch.EPOCH_SPEC))
    _, fit2_wall, fit2_cpu = _timed(lambda: ch.fit(key, all_rows, ch.EPOCH_SPEC))  # compiled
    data = ch.take_rows(all_rows, ~np.asarray(res.excluded))
    (theta_b, n_excl), boot_wall, boot_cpu = _timed(
        lambda: ch.bootstrap(key, data, res.theta, n_boot=args.n_boot))
    boot = ch.params_dict(chinchilla_theta_to_params(theta_b))
    ours_total = fit_wall + boot_wall

    starts = np.asarray(ch.start_grid())
    idx = np.linspace(0, len(starts) - 1, args.scipy_starts).astype(int)
    sp, sp_wall, sp_cpu = _timed(lambda: scipy_fit(starts[idx], data))
    scale = len(starts) / len(idx)
    sp_wall_full, sp_cpu_full = sp_wall * scale, sp_cpu * scale

    p = ch.params_dict(res.params)
    out = {
        "benchmark": "chinchilla_epoch_fit",
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "jax": jax.__version__, "device": str(jax.devices()[0]),
                    "loadavg_1min": os.getloadavg()[0]},
        "jaxscale": {
            "fit_wall_s_incl_compile": fit_wall, "fit_cpu_s_incl_compile": fit_cpu,
            "fit_wall_s_compiled": fit2_wall, "fit_cpu_s_compiled": fit2_cpu,
            "bootstrap_n": int(len(theta_b)), "bootstrap_wall_s": boot_wall,
            "bootstrap_cpu_s": boot_cpu, "grid_plus_bootstrap_wall_s": ours_total,
            "params": {k: float(v) for k, v in p.items()}, "objective": float(res.objective),
            "bootstrap_90": {k: [float(np.percentile(v, 5)), float(np.percentile(v, 95))]
                             for k, v in boot.items()},
        },
        "scipy_lbfgsb": {
            "starts_timed": int(len(idx)), "extrapolated_to_4500": bool(len(idx) < len(starts)),
            "grid_wall_s": sp_wall_full, "grid_cpu_s": sp_cpu_full,
            "params": {"E": float(np.exp(sp.x[2])), "A": float(np.exp(sp.x[0])),
                       "B": float(np.exp(sp.x[1])), "alpha": float(sp.x[3]), "beta": float(sp.x[4])},
            "objective": float(sp.fun),
        },
        "ratio_scipy_grid_over_jaxscale_grid_wall": sp_wall_full / fit_wall,
        "ratio_scipy_grid_over_jaxscale_grid_plus_4000_bootstraps_wall": sp_wall_full / ours_total,
        "goal": "grid + bootstraps <= 30 s wall on 2 cores",
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
