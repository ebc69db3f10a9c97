"""Optimiser starts batched (vmap: every start runs as long as the slowest) against one after
another (``multistart(uneven=True)`` on one CPU device: each start to its own stop), in one run.

Workloads: the 48-start Chinchilla least-squares fit of NCPL's baseline on the TRAIN rows of Marin
and StepLaw (units as given, as ``ncpl evaluate --model chinchilla_refit``), and the polish of the
32 best screened starts of the Chinchilla fit on Epoch's data. Each is compiled first, then timed
warm (best of ``--repeats``); the JSON has both times, their ratio and the best objective of each
(they must agree).

    python benchmarks/bench_uneven_starts.py
Writes benchmarks/results/bench_uneven_starts.json.
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import time
from pathlib import Path

__all__: list[str] = []


def _best_time(fn, repeats: int) -> tuple[float, object]:
    import jax

    out = jax.block_until_ready(fn())  # compile
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        out = jax.block_until_ready(fn())
        times.append(time.perf_counter() - t)
    return min(times), out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "bench_uneven_starts.json"))
    args = ap.parse_args(argv)

    from jaxscale.config import enable_x64
    enable_x64()
    import jax
    import jax.numpy as jnp
    import numpy as np

    from jaxscale import chinchilla
    from jaxscale.data import load
    from jaxscale.infer import bucket, minimize_lbfgs, multistart
    from jaxscale.ncpl import pipeline as pl
    from jaxscale.ncpl.dataset import select

    bl = importlib.import_module("jaxscale.ncpl.baselines")
    cf = importlib.import_module("jaxscale.chinchilla.fit")
    workloads = {}
    df = pl.runs_frame()
    grid = jnp.asarray(np.array(np.meshgrid([0.0, 1.5, 3.0], [-1.0, 0.5], [0.0, 0.8], [0.2, 0.5],
                                            [0.2, 0.5])).reshape(5, -1).T)
    for source in ("marin", "steplaw"):
        tr = select(df, source, "train")
        pad = np.zeros(bucket(len(tr)) - len(tr))
        cols = [jnp.asarray(np.concatenate([np.log(tr[c].to_numpy(float)), pad]))
                for c in ("N_million", "D_billion", "final_loss")]
        w = jnp.asarray(np.concatenate([np.ones(len(tr)), pad]))
        workloads[f"ncpl_law_{source}_train ({len(tr)} runs, 48 starts)"] = (
            lambda u, cols=cols, w=w: jax.jit(lambda x0: multistart(
                minimize_lbfgs, bl._refit_loss, x0, *cols, w, max_steps=bl.LAW_STEPS, uneven=u)), grid)
    d = chinchilla.from_frame(load("epoch_chinchilla"))
    d = cf.take_rows(d, ~cf._exclusion(d, chinchilla.EPOCH_SPEC.exclude_top_loss))
    padded = cf.pad_rows(d, bucket(d.n))
    spec = chinchilla.EPOCH_SPEC
    screened = cf.chunked_vmap(lambda x0: minimize_lbfgs(
        cf.huber_objective, x0, cf._as_screen_dtype(padded), spec.huber_delta, max_steps=spec.screen_steps,
        tol=1e-10, ftol=0.0, max_linesearch_steps=cf.SCREEN_LINESEARCH_STEPS),
        cf._as_screen_dtype(cf.start_grid(d)), padded.n)
    loss = jnp.where(jnp.isfinite(screened.loss), screened.loss, jnp.inf)
    top = screened.params[jnp.argsort(loss)[:spec.polish_top]].astype(padded.log_N.dtype)
    workloads[f"chinchilla_polish_epoch ({d.n} runs, {spec.polish_top} starts)"] = (
        lambda u: jax.jit(lambda x0: multistart(minimize_lbfgs, cf.huber_objective, x0, padded, spec.huber_delta,
                                                max_steps=spec.max_steps, tol=1e-10, ftol=1e-13, uneven=u)), top)
    rows = {}
    for name, (make, x0) in workloads.items():
        t_v, r_v = _best_time(lambda f=make(False): f(x0), args.repeats)
        t_m, r_m = _best_time(lambda f=make(True): f(x0), args.repeats)
        steps = np.asarray(r_m.n_steps)
        rows[name] = {"vmap_s": t_v, "uneven_s": t_m, "speedup": t_v / t_m,
                      "best_objective_vmap": float(np.nanmin(np.asarray(r_v.loss))),
                      "best_objective_uneven": float(np.nanmin(np.asarray(r_m.loss))),
                      "steps_min_max": [int(steps.min()), int(steps.max())]}
        print(f"{name}: vmap {t_v:.2f} s, uneven {t_m:.2f} s ({t_v / t_m:.1f}x)", flush=True)
    out = {"benchmark": "uneven_starts", "device": str(jax.devices()[0]), "machine": {
        "cpus": os.cpu_count(), "platform": platform.platform(), "loadavg": list(os.getloadavg())},
        "repeats": args.repeats, "workloads": rows}
    Path(args.out).write_text(json.dumps(out, indent=1))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
