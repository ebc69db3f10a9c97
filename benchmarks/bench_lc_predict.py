"""Learning-curve predictions of planned runs: each row's marginal vs the joint over all rows.

``lc.predict`` reads each query row's mean and interval from its marginal (N x M cross
covariances); the joint prediction (every restart's M x M query covariance per latent draw) is
only built for joint draws. This benchmark fits a law-informed GP on the bundled nanoGPT-large
curves (the largest width held out) and predicts M planned rows (unseen widths, dense steps) both
ways in the same process: first call (compile + run) and second call (run) of each, the ratio, and
the largest difference of the means and variances (they must agree).

    OPENBLAS_NUM_THREADS=1 python benchmarks/bench_lc_predict.py
    python benchmarks/bench_lc_predict.py --rows 256,1024 --restarts 2 --steps 200
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

COLS = dict(task_col="width", instance_col="depth", x_col="step", y_col="loss", descriptor_cols=["params"])


def runs() -> pd.DataFrame:
    """The bundled nanoGPT-large curves as a user's table: width, depth, step, params, loss."""
    from jaxscale.learning_curves.compute import steps_from_log
    from jaxscale.learning_curves.data import load_lc

    f = load_lc("nanogpt_large").frame
    width, depth = f["n_embd"].astype(int), f["n_layer"].astype(int)
    return pd.DataFrame({"width": width, "depth": depth, "step": steps_from_log(f["x"]).astype(int),
                         "params": 12 * depth * width**2, "loss": f["value"]})


def planned(df: pd.DataFrame, rows: int) -> pd.DataFrame:
    """``rows`` planned points: the held-out width and a wider one, every depth, evenly spaced steps."""
    depths = sorted(df["depth"].unique())
    widths = [1600, 2048]
    per = -(-rows // (len(depths) * len(widths)))
    steps = np.unique(np.round(np.geomspace(1, df["step"].max(), per)).astype(int))
    steps = np.unique(np.concatenate([steps, np.arange(1, per + 1) * 7]))[:per]
    q = pd.DataFrame([dict(width=w, depth=d, step=int(s), params=12 * d * w**2)
                      for w in widths for d in depths for s in steps])
    return q.iloc[:rows].reset_index(drop=True)


def _timed(fn, *args):
    t0 = time.perf_counter()
    out = jax.block_until_ready(fn(*args))
    return out, time.perf_counter() - t0


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", default="256,1024,2048", help="query sizes, comma-separated")
    p.add_argument("--restarts", type=int, default=4)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "bench_lc_predict.json"))
    args = p.parse_args(argv)
    enable_x64()
    from jaxscale import learning_curves as lc

    core = importlib.import_module("jaxscale.learning_curves.core")
    df = runs()
    train = df[df["width"] != 1600]
    spec = lc.Spec(model="magp_law", restarts=args.restarts, steps=args.steps)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t0 = time.perf_counter()
        fit = lc.fit(jax.random.key(args.seed), lc.from_frame(train, **COLS), spec)
        fit_s = time.perf_counter() - t0
    out = {"device": jax.devices()[0].device_kind, "n_devices": jax.device_count(), "model": spec.model,
           "restarts": spec.restarts, "steps": spec.steps, "n_h": spec.n_h, "train_points": len(train),
           "fit_seconds": fit_s, "cases": []}
    for m in (int(r) for r in args.rows.split(",")):
        grown, query = core.with_labels(fit, planned(df, m))  # unseen widths: as handle_unknown="prior"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            marg, marg_first = _timed(core.predict_marginals, grown, query)
            _, marg_second = _timed(core.predict_marginals, grown, query)
            joint, joint_first = _timed(core.predict_restarts, grown, query)
            _, joint_second = _timed(core.predict_restarts, grown, query)
        jvar = np.diagonal(np.asarray(joint.cov), axis1=-2, axis2=-1)
        row = {"rows": m, "marginal_first_s": marg_first, "marginal_second_s": marg_second,
               "joint_first_s": joint_first, "joint_second_s": joint_second,
               "speedup_second": joint_second / marg_second, "speedup_first": joint_first / marg_first,
               "max_abs_diff_mean": float(np.max(np.abs(np.asarray(marg.mean) - np.asarray(joint.mean)))),
               "max_rel_diff_var": float(np.max(np.abs(np.asarray(marg.var) - jvar) / np.maximum(jvar, 1e-300)))}
        out["cases"].append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)
    Path(args.out).write_text(json.dumps(out, indent=1))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
