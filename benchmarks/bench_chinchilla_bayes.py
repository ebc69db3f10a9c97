"""Benchmark: the Bayesian Chinchilla fit (NUTS) with a dense mass matrix against a diagonal one
(the default, the reference), in one run, on two tables.

* ``epoch``: the 245 Epoch rows (a well-identified posterior);
* ``small``: 25 synthetic runs (5 sizes x 5 token counts of ``L = 1.7 + 400 / N^0.34 + 1500 /
  D^0.30``, 2 % log-normal noise; seeds 0, 1, ...: a new table per seed), the size of a user's own
  sweep, whose posterior is wide and curved.

Both samplers run at ``fit_bayes``'s defaults (4 chains x 500 warm-up + 500 draws) from the same
seeds. Each call compiles its own programs (numpyro builds them per call), so the seconds are what
a user waits for. Records per table and seed the seconds, the largest R-hat, the smallest effective
sample size, divergences and the posterior medians of ``alpha`` and ``beta``; then per table the
ratio of the mean seconds and of the mean ESS per second (dense over diagonal).

Usage: python benchmarks/bench_chinchilla_bayes.py [--seeds 3] [--out PATH]
"""
from __future__ import annotations

import argparse
import inspect
import json
import os
import platform
import time
import warnings
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("JAXSCALE_PROGRESS", "0")

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from jaxscale import chinchilla as ch  # noqa: E402
from jaxscale.data import load  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "bench_chinchilla_bayes.json"))
    args = ap.parse_args()

    frame = load("epoch_chinchilla")
    point = ch.fit(jax.random.key(0), ch.from_frame(frame))
    epoch = ch.take_rows(ch.from_frame(frame), ~np.asarray(point.excluded))
    rows = []
    for table in ("epoch", "small"):
        for dense in (False, True):  # the reference first
            for seed in range(args.seeds):
                data = epoch if table == "epoch" else small_table(seed)
                rows.append(dict(table=table, **sample(seed, data, dense)))
                print(json.dumps(rows[-1]), flush=True)

    def mean(table, mass, f):
        return float(np.mean([f(r) for r in rows if r["table"] == table and r["mass"] == mass]))

    def ess_per_s(r):
        return r["min_ess"] / r["seconds"]

    ratios = {t: {"speedup_seconds": mean(t, "diagonal", lambda r: r["seconds"]) / mean(t, "dense", lambda r: r["seconds"]),
                  "ratio_min_ess_per_second": mean(t, "dense", ess_per_s) / mean(t, "diagonal", ess_per_s),
                  "max_r_hat": {m: max(r["max_r_hat"] for r in rows if r["table"] == t and r["mass"] == m)
                                for m in ("diagonal", "dense")}}
              for t in ("epoch", "small")}
    out = {"benchmark": "chinchilla fit_bayes, dense vs diagonal mass matrix",
           "tables": {"epoch": f"epoch_chinchilla, {int(np.sum(np.asarray(epoch.weights) > 0))} rows kept by the "
                               "point fit",
                      "small": "25 synthetic runs per seed (see the module docstring)"},
           "settings": {k: v.default for k, v in inspect.signature(ch.fit_bayes).parameters.items()
                        if k in ("num_warmup", "num_samples", "num_chains")},
           "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                       "device": str(jax.devices()[0].device_kind)},
           "runs": rows, "dense_over_diagonal": ratios}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(ratios))


def small_table(seed: int):
    rng = np.random.default_rng(seed)
    N = np.repeat([3e7, 1e8, 3e8, 1e9, 3e9], 5)
    D = np.tile([3e9, 1e10, 3e10, 1e11, 3e11], 5)
    L = (1.7 + 400 / N ** 0.34 + 1500 / D ** 0.30) * np.exp(0.02 * rng.normal(size=N.size))
    return ch.from_frame(pd.DataFrame({"N": N, "D": D, "loss": L}))


def sample(seed: int, data, dense: bool) -> dict:
    t = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        post = ch.fit_bayes(jax.random.key(seed), data, dense_mass=dense)
    d = post.diagnostics
    return {"mass": "dense" if dense else "diagonal", "seed": seed,
            "seconds": time.perf_counter() - t, "max_r_hat": float(d["max_r_hat"]),
            "min_ess": float(d["min_ess"]), "divergences": int(d["divergences"]),
            "alpha_median": float(np.median(post.samples["alpha"])),
            "beta_median": float(np.median(post.samples["beta"])),
            "warnings": [str(w.message) for w in caught]}


if __name__ == "__main__":
    main()
