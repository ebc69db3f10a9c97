"""``jaxscale bench``: each pillar's headline fit on whatever JAX device is present (CPU, GPU, TPU).

For every workload and problem size the fit runs twice on fresh synthetic data of the same shape:
the first call pays compilation, the second reuses the compiled program, so ``compile_s`` is the
difference and ``run_s`` the second call. The persistent compilation cache of the command line is
off here, so ``compile_s`` is a cold compile whatever ran on the machine before. The growth of the
run time with problem size is fitted as an exponent (``run_s ~ size^exponent``). The JSON names the
device kind and count, so the same command gives comparable numbers on a laptop, a GPU and a TPU
slice.

Workloads (synthetic data from known laws, so nothing is downloaded):

* ``chinchilla``: Epoch's 4,500-start fit, 1e3 / 1e4 / 1e5 runs (``--quick``: 1e2 / 1e3);
* ``learning_curves``: MaGP on 10 / 20 / 30 training curves of 11 points (2 restarts);
* ``observational``: PCA + sigmoid law with 200 bootstrap refits, 100 / 1,000 / 10,000 models;
* ``context_law``: DE + L-BFGS of one task, 120 / 1,200 / 12,000 cells;
* ``ncpl``: the text-encoder head ensemble on 250 / 1,000 runs (``--quick``: 100 / 250).
"""
from __future__ import annotations

import time

import numpy as np

from jaxscale.cli._common import Formatter, split_list

__all__ = ["register", "bench_handler", "WORKLOADS", "run_workload"]


def _timed(fn):
    import jax

    t0 = time.perf_counter()
    out = fn()
    jax.block_until_ready(jax.tree_util.tree_leaves(out))
    return time.perf_counter() - t0


# ------------------------------------------------------------------------------------- workloads
def _chinchilla(size: int, seed: int):
    import jax
    import pandas as pd

    from jaxscale import chinchilla as ch

    rng = np.random.default_rng(seed)
    N = np.exp(rng.uniform(np.log(1e7), np.log(1e10), size))
    D = np.exp(rng.uniform(np.log(1e9), np.log(1e12), size))
    L = (1.7 + 400 / N**0.34 + 1500 / D**0.3) * np.exp(0.01 * rng.normal(size=size))
    data = ch.from_frame(pd.DataFrame({"N": N, "D": D, "loss": L}))
    return lambda: ch.fit(jax.random.key(seed), data, ch.Spec(backtest_frac=0.0)).theta


def _learning_curves(size: int, seed: int):
    import jax
    import pandas as pd

    from jaxscale import learning_curves as lc

    rng = np.random.default_rng(seed)
    widths = np.arange(1, 6)
    depths = np.arange(1, size // 5 + 2)
    rows = []
    for w in widths:
        for d in depths[: max(1, size // len(widths))]:
            steps = np.geomspace(100, 10_000, 11)
            loss = 2.0 + (w * d) ** -0.3 + 3.0 * steps ** -0.25 + 0.01 * rng.normal(size=steps.size)
            rows += [dict(task=int(w), instance=int(d), x=float(s), y=float(v)) for s, v in zip(steps, loss)]
    data = lc.from_frame(pd.DataFrame(rows))
    spec = lc.Spec(restarts=2, steps=200)
    return lambda: jax.tree_util.tree_leaves(lc.fit(jax.random.key(seed), data, spec))


def _observational(size: int, seed: int):
    import jax
    import pandas as pd

    from jaxscale import observational as obs

    rng = np.random.default_rng(seed)
    cap = rng.normal(size=size)
    bench = {f"b{i}": 1 / (1 + np.exp(-(cap * (0.8 + 0.1 * i) + 0.2 * rng.normal(size=size)))) for i in range(6)}
    target = 1 / (1 + np.exp(-(1.5 * cap - 0.5))) + 0.02 * rng.normal(size=size)
    df = pd.DataFrame({**bench, "target": np.clip(target, 0, 1), "Model": [f"m{i}" for i in range(size)]})
    data = obs.from_frame(df, target_col="target", metric_cols=list(bench), flops_col=None, family_col=None)
    spec = obs.Spec(k=2, bootstrap=200)
    return lambda: jax.tree_util.tree_leaves(obs.fit(jax.random.key(seed), data, spec))


def _context_law(size: int, seed: int):
    import jax
    import pandas as pd

    from jaxscale import context_law as cl

    rng = np.random.default_rng(seed)
    n_models = 6
    per = max(size // n_models, 4)
    N = np.repeat(np.geomspace(1e9, 7e10, n_models), per)
    n_ctx = np.repeat(rng.choice([4096.0, 8192.0, 32768.0], n_models), per)
    n_pmt = np.tile(np.geomspace(100, 60_000, per), n_models)
    logit = 0.3 * np.log(N / 1e9) - 0.4 * np.log(n_pmt / 1e3) - 3 * np.maximum(n_pmt / n_ctx - 1, 0)
    score = np.clip(1 / (1 + np.exp(-logit)) + 0.02 * rng.normal(size=logit.size), 0, 1)
    df = pd.DataFrame({"N": N, "D": 2e12, "n_pmt": n_pmt, "n_ctx": n_ctx, "score": score})
    data = cl.from_frame(df, n_col="N", d_col="D")
    spec = cl.Spec(restarts=1, maxiter=300)
    return lambda: jax.tree_util.tree_leaves(cl.fit(jax.random.key(seed), data, spec))


def _ncpl(size: int, seed: int):
    import jax
    import pandas as pd

    from jaxscale import ncpl

    rng = np.random.default_rng(seed)
    N = np.exp(rng.uniform(np.log(1e7), np.log(1e9), size))
    D = N * rng.uniform(5, 50, size)
    lr = np.exp(rng.uniform(np.log(1e-4), np.log(1e-2), size))
    opt = rng.choice(["adamw", "lion"], size)
    loss = 1.8 + 300 / N**0.33 + 900 / D**0.3 + 0.05 * np.log(lr / 3e-3) ** 2 + 0.01 * rng.normal(size=size)
    df = pd.DataFrame({"N": N, "D": D, "lr": lr, "optimizer": opt, "loss": loss})
    data = ncpl.from_frame(df, target_col="loss", n_col="N", d_col="D")
    spec = ncpl.Spec(members=2, steps=200, eval_every=100)
    return lambda: jax.tree_util.tree_leaves(ncpl.fit(jax.random.key(seed), data, spec))


#: workload -> (builder(size, seed) -> zero-argument fit, sizes, quick sizes)
WORKLOADS = {
    "chinchilla": (_chinchilla, (1000, 10_000, 100_000), (100, 1000)),
    "learning_curves": (_learning_curves, (10, 20, 30), (10, 20)),
    "observational": (_observational, (100, 1000, 10_000), (100, 1000)),
    "context_law": (_context_law, (120, 1200, 12_000), (120, 1200)),
    "ncpl": (_ncpl, (250, 1000), (100, 250)),
}


def run_workload(name: str, sizes, seed: int = 0) -> dict:
    """Time one workload at each size: first call (compile + run) and second call (run)."""
    builder = WORKLOADS[name][0]
    rows = []
    for size in sizes:
        first = _timed(builder(size, seed))
        second = _timed(builder(size, seed + 1))  # fresh data of the same shape: compiled programs reused
        rows.append({"size": int(size), "first_s": first, "run_s": second, "compile_s": max(first - second, 0.0)})
    out = {"sizes": rows}
    if len(rows) >= 2:
        x, y = np.log([r["size"] for r in rows]), np.log([max(r["run_s"], 1e-9) for r in rows])
        out["run_time_exponent"] = float(np.polyfit(x, y, 1)[0])
    else:
        out["run_time_exponent"], out["run_time_exponent_reason"] = None, "one size only"
    return out


def bench_handler(args) -> dict:
    """Handler of ``jaxscale bench``."""
    import os
    import platform
    import warnings

    import jax

    from jaxscale._programs import set_program_dir

    names = split_list(args.only) or list(WORKLOADS)
    unknown = sorted(set(names) - set(WORKLOADS))
    if unknown:
        raise ValueError(f"unknown workload(s) {unknown}; choose from {list(WORKLOADS)}")
    # compile_s is a cold compile: the persistent caches of the command line (compiled and traced
    # programs) would otherwise make it depend on what ran before on this machine
    jax.config.update("jax_enable_compilation_cache", False)
    set_program_dir(None)
    dev = jax.devices()
    out = {"device_kind": dev[0].device_kind, "platform": dev[0].platform, "device_count": len(dev),
           "jax": jax.__version__, "host": platform.platform(), "cpus": os.cpu_count(),
           "loadavg_1min": os.getloadavg()[0], "quick": bool(args.quick),
           "compilation_cache": "off (compile_s is a cold compile in this process)", "workloads": {}}
    for name in names:
        _, sizes, quick = WORKLOADS[name]
        with warnings.catch_warnings():  # synthetic data: the fits' advice is not the point here
            warnings.simplefilter("ignore")
            out["workloads"][name] = run_workload(name, quick if args.quick else sizes, seed=args.seed)
    return out


def register(sub) -> None:
    """Add ``bench``."""
    p = sub.add_parser("bench", help="time each pillar's headline fit on this device (compile vs run, growth)",
                       formatter_class=Formatter, description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="smaller sizes (a minute or two on a laptop CPU)")
    p.add_argument("--only", default=None, help=f"comma-separated workloads among {', '.join(WORKLOADS)}")
    p.add_argument("--seed", type=int, default=0, help="seed of the synthetic data")
    p.set_defaults(func=bench_handler)
