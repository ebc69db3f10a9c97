"""Bayesian observational law (numpyro): ONE batched NUTS run over all 17 named tasks.

Issue-6 targets: 90% predictive intervals cover 80–97% of held-out models pooled over tasks;
Bayesian point prediction no worse than 1.2x the point fit's test MSE on every task.
Default likelihood ``"extrap"``: heteroscedastic truncated normal + an extrapolation discrepancy
δ ~ N(0, (κΔ)²) on the capability of models beyond the training data, κ identified by a
leave-future-out backtest inside the training set (lower 75% / top 25% by the split variable).
Measured (seed 0, 4 chains x (150 + 150)): pooled c90 0.808 (old "hetero": 0.786), c50 0.538
(0.502); ratio <= 1.2 on 5/17 tasks (old: 5/17) -> the MSE target is still missed (xfail).
"""
from __future__ import annotations

import jax
import numpy as np
import pytest

from jaxscale.observational import bayes, bayes_eval, tasks
from jaxscale.observational.fit import LawParams, predict

jax.config.update("jax_enable_x64", True)

N_WARM, N_DRAW = 150, 150


@pytest.fixture(scope="module")
def calib():
    return bayes_eval.calibrate(jax.random.key(0), likelihood="extrap", num_warmup=N_WARM,
                                num_samples=N_DRAW, num_chains=4)


@pytest.mark.slow
def test_calibration_table(calib):
    print("\n" + bayes_eval.format_table(calib))
    rows, p = calib["rows"], calib["pooled"]
    assert len(rows) == 17 and p["n_test"] == 504
    # achieved (seed 0): pooled c50 0.538, c90 0.808 (old "hetero" 0.50 / 0.786); regression margins
    assert 0.45 <= p["coverage_50"] <= p["coverage_90"] <= 0.97
    assert p["coverage_90"] >= 0.77
    # the large-test-set tasks where the posterior median matches the point fit (ratio <= 1.2;
    # measured 0.99, 0.92, 0.79)
    ok = {r["task"] for r in rows if r["ratio"] <= 1.2}
    assert {"arith_3ds", "arith_3da", "gsm8k_naive"} <= ok
    for r in rows:
        assert np.isfinite(r["mse_bayes"]) and r["kappa_median"] > 0


@pytest.mark.slow
@pytest.mark.xfail(reason="issue-6 MSE target not met: posterior-median ratio <= 1.2 on 5/17 tasks "
                          "(pooled c90 0.808 is inside 0.80-0.97)", strict=False)
def test_issue_targets(calib):
    p = calib["pooled"]
    assert 0.80 <= p["coverage_90"] <= 0.97
    assert p["n_ratio_ok"] == 17


@pytest.mark.slow
def test_prior_link_floor_arviz(calib):
    names = [r["task"] for r in calib["rows"]]
    fits = calib["fits"]
    f3 = fits[names.index("arith_3ds")]
    # the steep L-BFGS-B optimum has coefficients ~1e2 (note §4.5); the posterior stays moderate
    assert np.abs(np.median(f3.slopes, axis=0)).max() < 100
    for n, f in zip(names, fits):
        assert f.floor.min() >= 0 and f.floor.max() <= 0.2
        if not tasks.get_task(n).floor:
            assert np.all(f.floor == 0)
    # same link function as the point fit (fit.predict = laws.sigmoid_link)
    f = fits[names.index("gsm8k_cot")]
    from jaxscale.observational.pipeline import run_task

    dz = run_task("gsm8k_cot").design
    S = dz.S_test[:, :3]
    mu, _ = bayes.mu_draws(f, S)
    p = LawParams(f.intercept[0], f.slopes[0], f.floor[0])
    np.testing.assert_allclose(mu[0], np.asarray(predict(p, S)), rtol=1e-12)
    # extrapolation distance: 0 on every training row, > 0 for some held-out (larger) models
    d_tr, _ = bayes.extrap_distance(f, dz.S_train[:, :3])
    d_te, _ = bayes.extrap_distance(f, S)
    assert d_tr.max() <= 1e-9 and np.median(d_te.max(1)) > 0
    idata = f.posterior.to_arviz()
    assert {"alpha", "beta", "floor", "s0", "sz", "kappa"} <= set(idata.posterior.data_vars)
    d = f.posterior.diagnostics
    assert d["num_chains"] == 4 and d["num_samples"] == N_DRAW and d["max_r_hat"] < 1.2


def test_backtest_split_is_training_only():
    """The backtest's lower/top parts partition the TRAINING rows by the split variable."""
    from jaxscale.observational.pipeline import run_task

    r = run_task("gsm8k_cot")
    order = bayes_eval.split_order(r.design)
    assert order.shape == r.design.y_train.shape  # FLOPs of the training rows only
    data = bayes.stack_tasks([r.design], [3], [True], order=[order])
    n = len(order)
    top = np.asarray(data.top[0])
    top = top[top >= 0].astype(int)
    low = np.flatnonzero(np.asarray(data.lower[0]) > 0)
    assert len(top) == int(np.ceil(bayes.TOP_FRAC * n)) and len(low) + len(top) == n
    assert order[top].min() >= order[low].max()
    assert np.asarray(data.train[0]).sum() == n  # no test row enters the model


def test_item_counts_are_exact():
    """Raw accuracy x n is an integer for every model (GSM8K: scores rounded to 3 decimals)."""
    from jaxscale.observational.tasks import prepare

    for name, n in bayes.ITEM_COUNTS.items():
        spec = tasks.get_task(name)
        y = prepare(spec).df["y"].to_numpy(float)
        k = n * (spec.lo + (spec.hi - spec.lo) * y)
        tol = 0.5e-3 * n + 1e-6 if name.startswith("gsm8k") else 1e-6
        assert np.abs(k - np.round(k)).max() <= tol, name


def test_bad_inputs():
    with pytest.raises(ValueError, match="needs item counts"):
        bayes_eval.task_inputs(["agentbench"], likelihood="binomial")
    with pytest.raises(ValueError, match="training rows"):
        class D:
            S_train = np.zeros((3, 3))
            y_train = np.zeros(3)
        bayes.stack_tasks([D()], [3], [False])
    with pytest.raises(ValueError, match="order"):
        class E:
            S_train = np.random.default_rng(0).normal(size=(8, 3))
            y_train = np.linspace(0, 1, 8)
        bayes.stack_tasks([E()], [3], [False], order=[np.arange(5.0)])
