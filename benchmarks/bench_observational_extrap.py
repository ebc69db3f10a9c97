"""Held-out interval coverage of the observational law on the paper's own splits, through the
contract (``from_frame -> fit -> predict``), and the ln-FLOPs sigmoid baseline beside it.

For every named task whose raw target lies inside its declared ``[lo, hi]`` (so that
``from_frame`` takes it as a user table; the chance-normalised BBH columns and the Persian QA
scores below chance do not), the task's table is fitted on its training rows with the task's
settings (k, link, loss), and every held-out row is predicted:

* ``point``: the point fit's interval (residual noise, plus the extrapolation discrepancy
  ``kappa * distance`` on the capability when the fit carries a ``kappa``);
* ``boot``: ``--boot`` bootstrap refits (same, per refit);
* the 90% interval's held-out coverage and mean width (normalised target), the test MSE, the
  largest extrapolation distance of a held-out row (training s.d. of the principal-capability
  scores outside the training box) and the backtest's ``kappa``;
* the ln-FLOPs sigmoid (same link and loss, fitted on the training rows' ln FLOPs) on the
  held-out rows that have FLOPs, with the model's MAE on the same rows.

Writes JSON to benchmarks/results/bench_observational_extrap.json (``--out``; ``--label`` names
the run, e.g. before / after a change: runs with other labels in the file are kept).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

DEFAULT_TASKS = ("gsm8k_cot", "gsm8k_naive", "gsm8k_cot_sc", "word_unscramble", "arith_3ds", "arith_3da",
                 "arith_2dm", "arith_2da", "ipa_bleu", "lbv2_math", "lbv2_gpqa", "lbv2_bbh", "agentbench",
                 "agentboard")


def _coverage(y, lo, hi):
    return float(np.mean((y >= lo) & (y <= hi)))


def run_one(name: str, boot: int, seed: int) -> dict:
    import jax

    from jaxscale import observational as obs
    from jaxscale.observational import data as D
    from jaxscale.observational.tasks import get_task, prepare

    spec = get_task(name)
    prep = prepare(spec)
    df = prep.df.copy()
    raw = df[spec.column].to_numpy(float)
    if np.any(raw < spec.lo) or np.any(raw > spec.hi):
        return dict(task=name, skipped=f"raw target outside [lo, hi] = [{spec.lo:g}, {spec.hi:g}] "
                                       "(from_frame refuses it)")
    df.index = np.arange(2, len(df) + 2)  # file lines, as read_table would give
    flops_col = D.FLOPS if D.FLOPS in df.columns else None
    data = obs.from_frame(df, target_col=spec.column, metric_cols=list(spec.metrics), lo=spec.lo, hi=spec.hi,
                          flops_col=flops_col, model_col="Model", family_col=D.FAMILY, what=name)
    train = np.asarray(prep.train, bool)
    held = ~train
    y = np.asarray(data.y, float)[held]
    out = dict(task=name, n_train=int(train.sum()), n_test=int(held.sum()))
    for label, b in (("point", 0), ("boot", boot)):
        ospec = obs.Spec(k=spec.k, floor=spec.floor, loss=spec.loss, bootstrap=b)
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fit = obs.fit(jax.random.key(seed), obs.take_rows(data, train), ospec)
            pred = obs.predict(fit, obs.take_rows(data, held), key=jax.random.key(seed + 1), level=0.9)
        scale = fit.hi - fit.lo
        m, lo, hi = ((np.asarray(v, float) - fit.lo) / scale for v in (pred.mean, pred.lower, pred.upper))
        row = dict(coverage_90=_coverage(y, lo, hi), width_90=float(np.mean(hi - lo)),
                   mse_test=float(np.mean((m - y) ** 2)), seconds=time.perf_counter() - t0)
        ext = getattr(pred, "extrapolation", None)
        if ext is not None:
            ext = np.asarray(ext, float)
            row["max_extrapolation"] = float(np.max(ext))
            row["n_outside"] = int(np.sum(ext > 0))
            far = ext > np.median(ext)
            if far.any() and (~far).any():
                row["coverage_90_far_half"] = _coverage(y[far], lo[far], hi[far])
                row["coverage_90_near_half"] = _coverage(y[~far], lo[~far], hi[~far])
        if getattr(fit, "kappa", None) is not None:
            row["kappa"] = float(fit.kappa)
        out[label] = row
    try:
        from jaxscale.observational.model import flops_baseline
    except ImportError:
        return out
    bp, info = flops_baseline(obs.take_rows(data, train), obs.take_rows(data, held), fit.spec, level=0.9)
    if bp is not None and np.isfinite(np.asarray(bp.mean, float)).any():
        has = np.isfinite(np.asarray(bp.mean, float))
        mb = (np.asarray(bp.mean, float) - fit.lo) / (fit.hi - fit.lo)
        mm = (np.asarray(pred.mean, float) - fit.lo) / (fit.hi - fit.lo)
        out["ln_flops"] = dict(n=int(has.sum()), mae_baseline=float(np.mean(np.abs(mb[has] - y[has]))),
                               mae_model=float(np.mean(np.abs(mm[has] - y[has]))),
                               mse_baseline=float(np.mean((mb[has] - y[has]) ** 2)),
                               mse_model=float(np.mean((mm[has] - y[has]) ** 2)))
    else:
        out["ln_flops"] = dict(reason=info.get("reason", "no held-out row has FLOPs"))
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", default=",".join(DEFAULT_TASKS))
    ap.add_argument("--boot", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--label", default="current")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "bench_observational_extrap.json"))
    a = ap.parse_args(argv)

    from jaxscale.config import enable_x64

    enable_x64()
    rows = [run_one(t.strip(), a.boot, a.seed) for t in a.tasks.split(",") if t.strip()]
    for r in rows:
        if "skipped" in r:
            print(f"{r['task']:16s} skipped: {r['skipped']}")
            continue
        p, b = r["point"], r["boot"]
        extra = f" kappa {p['kappa']:.3f}" if "kappa" in p else ""
        base = r.get("ln_flops", {})
        bl = (f" | ln-FLOPs MAE {base['mae_baseline']:.4f} vs model {base['mae_model']:.4f} (n={base['n']})"
              if "mae_baseline" in base else "")
        print(f"{r['task']:16s} n={r['n_train']}/{r['n_test']} point c90 {p['coverage_90']:.2f} w {p['width_90']:.3f} "
              f"| boot c90 {b['coverage_90']:.2f} w {b['width_90']:.3f} | mse {p['mse_test']:.2e}{extra}{bl}")
    done = [r for r in rows if "skipped" not in r]
    pooled = {}
    for label in ("point", "boot"):
        n = np.array([r["n_test"] for r in done], float)
        pooled[label] = dict(coverage_90=float(np.sum(n * [r[label]["coverage_90"] for r in done]) / n.sum()),
                             n_test=int(n.sum()))
    print("pooled", json.dumps(pooled))
    path = Path(a.out)
    runs = json.loads(path.read_text()) if path.exists() else {}
    runs[a.label] = dict(rows=rows, pooled=pooled, boot=a.boot, seed=a.seed)
    from jaxscale._json import to_jsonable

    path.write_text(json.dumps(to_jsonable(runs), indent=1, allow_nan=False))
    print(f"wrote {path} ({a.label})")


if __name__ == "__main__":
    main()
