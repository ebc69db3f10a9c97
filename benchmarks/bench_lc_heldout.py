"""Curve models against the naive baselines on held-out nanoGPT-large curves.

For each case (split, model): the final-point MAE of the model (restart-mixture mean), of the
``nearest_curve`` and ``size_trend`` baselines (:mod:`jaxscale.learning_curves.baselines`), the
90 % interval coverage of the final points and of all points, convergence and extrapolation.

    OPENBLAS_NUM_THREADS=1 python benchmarks/bench_lc_heldout.py --restarts 2 --steps 1500
    python benchmarks/bench_lc_heldout.py --cases leave_embd:4:magp,leave_layer:5:magp_desc
"""
from __future__ import annotations

import argparse
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

from jaxscale.config import enable_x64  # noqa: E402

DEFAULT = "leave_embd:4:magp,leave_embd:4:magp_desc,leave_layer:5:magp,leave_layer:5:magp_desc,tri::magp"


def _mae(y, p, m):
    return float(np.mean(np.abs(np.asarray(p)[m] - y[m])))


def run_case(key, split, index, model, restarts, steps):
    from jaxscale.learning_curves.pipeline import evaluate_model

    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        t0 = time.perf_counter()
        out, det = evaluate_model(key, "nanogpt_large", split, model, restarts=restarts, steps=steps,
                                  holdout=index, details=True)
        secs = time.perf_counter() - t0
    y, pred, last = det.y, det.prediction, det.last
    inside = (y >= np.asarray(pred.lower)) & (y <= np.asarray(pred.upper))
    row = {"split": out["split"], "model": model, "restarts": restarts, "steps": steps,
           "n_heldout_curves": out["n_heldout_curves"], "n_points": int(len(y)),
           "mae_last": {"model": _mae(y, pred.mean, last),
                        **{k: _mae(y, v, last) for k, v in det.baselines.items()}},
           "mae_all": {"model": _mae(y, pred.mean, np.ones_like(last)),
                       **{k: _mae(y, v, np.ones_like(last)) for k, v in det.baselines.items()}},
           "coverage_90_last": float(np.mean(inside[last])), "coverage_90_all": float(np.mean(inside)),
           "mean_interval_width_last": float(np.mean((np.asarray(pred.upper) - np.asarray(pred.lower))[last])),
           "converged": out["converged"], "extrapolation": out["extrapolation"], "baseline_size": det.info["size"],
           "seconds": secs, "warnings": sorted({str(x.message)[:160] for x in w})}
    return row


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cases", default=DEFAULT, help="split:index:model, comma-separated")
    p.add_argument("--restarts", type=int, default=2)
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "bench_lc_heldout.json"))
    args = p.parse_args(argv)
    enable_x64()
    path = Path(args.out)
    rows = json.loads(path.read_text()) if path.exists() else {}
    for case in args.cases.split(","):
        split, index, model = case.split(":")
        row = run_case(jax.random.key(args.seed), split, int(index) if index else None, model, args.restarts,
                       args.steps)
        rows[f"{row['split']}/{model}/{args.restarts}x{args.steps}"] = row
        print(json.dumps(row, indent=1), flush=True)
        path.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
