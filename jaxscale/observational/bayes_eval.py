"""Held-out calibration of the Bayesian law over the named tasks (one batched NUTS run).

For each task: 50% / 90% central predictive-interval coverage of the held-out (test) models,
test MSE of the Bayesian point prediction and of the point fit, and NUTS diagnostics.

The Bayesian point prediction (``point``) defaults to the posterior mode (MAP) of the law. With the
censored-normal likelihood the MAP is the prior-regularised least-squares fit, so it keeps the
point fit's accuracy; the posterior median and mean of μ are reported next to it (``ratios``).
On tasks whose training scores barely leave the floor (OLL-v2 GPQA) or whose sigmoid is steep
(3-digit addition), μ at the held-out models has a long right tail, so the posterior mean moves
away from the least-squares curve: that is real uncertainty, and the intervals carry it.
"""
from __future__ import annotations

import time

import jax
import numpy as np

from . import bayes
from .bayes_nuts import fit_bayes_batched

__all__ = ["task_inputs", "stack_results", "fit_results", "calibrate", "split_order",
           "POINT_ESTIMATES"]

POINT_ESTIMATES = ("median", "mean", "plugin", "mode")


def split_order(design):
    """The task's own split variable on its training rows (larger = later, the backtest's
    "future"): FLOPs for cut-off splits, the target y for rank-top splits."""
    if design.spec.split == "cutoff":
        return np.asarray(design.flops, float)[np.asarray(design.train, bool)]
    return np.asarray(design.y_train, float)


def stack_results(results, likelihood="extrap") -> bayes.BayesData:
    """:class:`bayes.BayesData` of point-fit results (``pipeline`` results; each carries its task
    spec in ``design.spec``): the target's support (:func:`tasks.target_bounds`), item counts
    (required by the binomial likelihoods) and the backtest's split order (:func:`split_order`)."""
    from .tasks import target_bounds

    specs = [r.design.spec for r in results]
    n_items = [bayes.ITEM_COUNTS.get(s.name, 0) for s in specs]
    if likelihood in ("binomial", "betabinomial"):
        missing = [s.name for s, c in zip(specs, n_items) if c == 0]
        if missing:
            raise ValueError(f"likelihood {likelihood!r} needs item counts; none known for "
                             f"{missing}. Tasks with counts: {sorted(bayes.ITEM_COUNTS)}; use "
                             "likelihood 'extrap'")
    return bayes.stack_tasks([r.design for r in results], [s.k for s in specs],
                             [s.floor for s in specs], bounds=[target_bounds(s) for s in specs],
                             n_items=n_items, order=[split_order(r.design) for r in results])


def fit_results(key, results, *, likelihood="extrap", **nuts) -> list:
    """The Bayesian law for point-fit ``results`` (one batched NUTS program, see
    :func:`bayes_nuts.fit_bayes_batched`, which takes ``nuts``), started at the point fits with
    their training RMS residual as the noise scale. One :class:`bayes.BayesFit` per result."""
    data = stack_results(results, likelihood)
    s0 = [max(float(np.sqrt(r.mse_train)), 1e-3) for r in results]
    nuts.setdefault("names", [r.design.spec.name for r in results])
    return fit_bayes_batched(key, data, points=[r.params for r in results], s0=s0,
                             likelihood=likelihood, **nuts)


def task_inputs(names, likelihood="extrap"):
    """Point fits of the named tasks, their specs and their stacked :class:`bayes.BayesData`."""
    from .pipeline import run_task
    from .tasks import get_task

    pts = [run_task(n) for n in names]
    specs = [get_task(n) for n in names]
    return pts, specs, stack_results(pts, likelihood)


def calibrate(key, names=None, *, likelihood="extrap", priors=bayes.PRIORS, num_warmup=300,
              num_samples=500, num_chains=4, point="mode", warn=True) -> dict:
    """Run the Bayesian law on ``names`` (default: all tasks) and score the held-out models.

    With ``warn``, every task whose NUTS diagnostics fail (R-hat > 1.01, ESS < 100 per chain,
    divergences, fewer than 2 chains) is warned about by name.

    Returns dict(rows=[per-task dict], pooled=dict(coverage_50, coverage_90, n_test,
    n_ratio_ok, max_ratio), seconds, settings, fits). Each row also holds ``heldout``: the
    held-out targets ``y``, the Bayesian ``mean`` (the point estimate) and 90% ``lower`` /
    ``upper``, and ``baseline``: the ln-FLOPs sigmoid's prediction (NaN without FLOPs), all on the
    normalised target, so that callers can score the baseline on the same rows.
    """
    from .tasks import task_names

    if point not in POINT_ESTIMATES:
        raise ValueError(f"point must be one of {POINT_ESTIMATES}, got {point!r}")
    names = list(task_names() if names is None else names)
    from .pipeline import run_task
    from .tasks import get_task

    pts, specs = [run_task(n) for n in names], [get_task(n) for n in names]
    t0 = time.perf_counter()
    fits = fit_results(key, pts, likelihood=likelihood, num_warmup=num_warmup,
                       num_samples=num_samples, num_chains=num_chains, priors=priors, warn=warn,
                       what="obs calibrate")
    seconds = time.perf_counter() - t0
    rows = []
    for i, (n, p, s, f) in enumerate(zip(names, pts, specs, fits)):
        dz = p.design
        pr = bayes.predictive(jax.random.fold_in(key, 1000 + i), f, dz.S_test[:, : s.k])
        cov = bayes.coverage(dz.y_test, pr["q"])
        mse_b = float(np.mean((pr[point] - dz.y_test) ** 2))
        dg = f.posterior.diagnostics
        rows.append(dict(task=n, n_train=p.n_train, n_test=p.n_test, **cov, mse_bayes=mse_b,
                         mse_point=p.mse_test, ratio=mse_b / p.mse_test,
                         ratios={k: float(np.mean((pr[k] - dz.y_test) ** 2)) / p.mse_test
                                 for k in POINT_ESTIMATES},
                         max_r_hat=dg["max_r_hat"], min_ess=dg["min_ess"],
                         divergences=dg["divergences"], mean_num_steps=dg["mean_num_steps"],
                         kappa_median=None if f.kappa is None else float(np.median(f.kappa))))
        if f.kappa is None:
            rows[-1]["kappa_median_reason"] = f"likelihood {likelihood!r} has no extrapolation discrepancy"
        from .pipeline import task_heldout

        base = task_heldout(p)
        rows[-1]["heldout"] = dict(y=np.asarray(dz.y_test, float), mean=np.asarray(pr[point], float),
                                   lower=np.asarray(pr["q"][0], float), upper=np.asarray(pr["q"][3], float),
                                   baseline=base["baseline"], n_train_no_flops=base["n_train_no_flops"],
                                   baseline_reason=base["reason"])
    n = np.array([r["n_test"] for r in rows], float)
    ratios = np.array([r["ratio"] for r in rows])
    pooled = dict(n_test=int(n.sum()),
                  coverage_50=float(np.sum(n * [r["coverage_50"] for r in rows]) / n.sum()),
                  coverage_90=float(np.sum(n * [r["coverage_90"] for r in rows]) / n.sum()),
                  n_ratio_ok=int(np.sum(ratios <= 1.2)), max_ratio=float(ratios.max()),
                  n_ratio_ok_by_point={k: int(sum(r["ratios"][k] <= 1.2 for r in rows))
                                       for k in POINT_ESTIMATES},
                  max_r_hat=float(max(r["max_r_hat"] for r in rows)),
                  divergences=int(sum(r["divergences"] for r in rows)))
    settings = dict(likelihood=likelihood, priors=priors._asdict(), num_warmup=num_warmup,
                    num_samples=num_samples, num_chains=num_chains, point=point)
    return dict(rows=rows, pooled=pooled, seconds=seconds, settings=settings, fits=fits)


def format_table(res: dict) -> str:
    """Plain-text coverage table."""
    pt = res["settings"]["point"]
    lines = [f"{'task':16s} {'n':>3s} {'c50':>5s} {'c90':>5s} {'mse_bayes':>9s} {'mse_point':>9s} "
             f"{'ratio':>5s} {'r_med':>5s} {'r_mean':>6s} {'rhat':>5s} {'steps':>5s}   (ratio: {pt})"]
    for r in res["rows"]:
        lines.append(f"{r['task']:16s} {r['n_test']:3d} {r['coverage_50']:5.2f} {r['coverage_90']:5.2f} "
                     f"{r['mse_bayes']:9.2e} {r['mse_point']:9.2e} {r['ratio']:5.2f} "
                     f"{r['ratios']['median']:5.2f} {r['ratios']['mean']:6.2f} "
                     f"{r['max_r_hat']:5.3f} {r['mean_num_steps']:5.1f}")
    p = res["pooled"]
    by = ", ".join(f"{k} {v}" for k, v in p["n_ratio_ok_by_point"].items())
    lines.append(f"pooled n={p['n_test']} c50={p['coverage_50']:.3f} c90={p['coverage_90']:.3f} "
                 f"ratio<=1.2: {p['n_ratio_ok']}/{len(res['rows'])} (max {p['max_ratio']:.2f}; "
                 f"by estimate: {by}) max R-hat {p['max_r_hat']:.3f} divergences {p['divergences']}")
    return "\n".join(lines)


__all__.append("format_table")
