"""Chinchilla fit at growing table sizes: wall time and peak memory, each size in a fresh process.

The 4,500-start screening and the bootstrap run in chunks (``chinchilla.fit.chunk_size``) so memory
grows with rows + starts rather than rows x starts. Synthetic runs from a known law (1% noise).

Usage: python benchmarks/bench_chinchilla_scale.py [--sizes 2000,20000,200000] [--n-boot 200]
Writes benchmarks/results/bench_chinchilla_scale.json.
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

__all__: list[str] = []

_CHILD = r"""
import json, resource, sys, time
import numpy as np, jax
jax.config.update("jax_enable_x64", True)
from jaxscale import chinchilla as ch
import pandas as pd
n, n_boot = int(sys.argv[1]), int(sys.argv[2])
rng = np.random.default_rng(0)
N = np.exp(rng.uniform(np.log(1e7), np.log(1e10), n)); D = np.exp(rng.uniform(np.log(1e9), np.log(1e12), n))
L = (1.7 + 400 / N**0.34 + 1500 / D**0.3) * np.exp(0.01 * rng.normal(size=n))
df = pd.DataFrame({"N": N, "D": D, "loss": L})
t0 = time.perf_counter()
fit = ch.fit(jax.random.key(0), ch.from_frame(df), ch.Spec(n_boot=n_boot))
jax.block_until_ready(fit.theta)
wall = time.perf_counter() - t0
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # MiB (Linux: KiB)
print(json.dumps({"rows": n, "n_boot": n_boot, "wall_s_incl_compile": wall, "peak_rss_mib": peak,
                  "alpha": float(fit.params.alpha), "beta": float(fit.params.beta),
                  "converged": bool(fit.converged), "boot_ok": int(len(fit.boot_theta)) if n_boot else 0}))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="2000,20000,200000")
    ap.add_argument("--n-boot", type=int, default=200)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "bench_chinchilla_scale.json"))
    args = ap.parse_args()
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", JAXSCALE_PROGRESS="0")
    rows = []
    for n in (int(s) for s in args.sizes.split(",")):
        res = subprocess.run([sys.executable, "-c", _CHILD, str(n), str(args.n_boot)], env=env,
                             capture_output=True, text=True)
        if res.returncode != 0:
            rows.append({"rows": n, "error": res.stderr[-2000:]})
        else:
            rows.append(json.loads(res.stdout.strip().splitlines()[-1]))
        print(rows[-1], file=sys.stderr)
    out = {"benchmark": "chinchilla_fit_scale", "true": {"alpha": 0.34, "beta": 0.30},
           "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "loadavg_1min": os.getloadavg()[0]},
           "rows": rows, "date": time.strftime("%Y-%m-%d")}
    Path(args.out).write_text(json.dumps(out, indent=1))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
