"""Fitting the context law: real many-shot ICL accuracy, scipy agreement, synthetic recovery, bad input."""
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

jax.config.update("jax_enable_x64", True)

from jaxscale.context_law import Spec as LawSpec, fit_many, load_source  # noqa: E402
from jaxscale.context_law.data import stack_tasks, to_context_data, validate_frame  # noqa: E402
from jaxscale.context_law.fit import fit_law  # noqa: E402
from jaxscale.context_law.model import predict_law as predict  # noqa: E402
from jaxscale.context_law.synthetic import TRUE_SPEC, TRUE_THETA, paper_design, simulate  # noqa: E402

ICL_SPEC = LawSpec(penalty="logistic", fit_alpha=False, fit_shift=True)


@pytest.fixture(scope="module")
def icl():
    df = load_source("longcontext_icl")
    tasks = sorted(df["task"].unique())
    frames = [df[df["task"] == t] for t in tasks]
    fit = fit_many(jax.random.key(0), stack_tasks(frames, chance_floor=True), ICL_SPEC, restarts=4)
    maes = {}
    for i, (t, f) in enumerate(zip(tasks, frames)):
        p = np.asarray(predict(ICL_SPEC, fit.theta[i], np.log(f["C"].to_numpy()), f["n_pmt"].to_numpy(),
                               f["n_ctx"].to_numpy(), f["chance"].to_numpy()))
        maes[t] = float(np.mean(np.abs(p - f["score"].to_numpy())))
    return dict(tasks=tasks, frames=frames, fit=fit, maes=maes)


@pytest.mark.slow
def test_icl_logistic_mae_per_task(icl):
    """Many-shot ICL (Bertsch et al. 2024), one fit per task pooled over 7 models, logistic penalty with
    fitted width and fitted effective limit, chance floor 1/n_labels.

    Reference: a plain scipy DE fit with a logistic penalty reached MAE 0.047-0.052 per task.
    Ours (2026-11-22): banking77 0.047, clinic150 0.036, nlu 0.026, trec 0.056, trecfine 0.045.
    trec is the one task above 0.052 (6 labels, saturates at ~0.8-0.9 after ~300 tokens while
    Mistral-7B-v0.1 declines with shots): the law cannot follow both shapes with one curve.
    """
    m = icl["maes"]
    assert np.mean(list(m.values())) <= 0.045, m  # reference mean ~0.050
    assert sum(v <= 0.050 for v in m.values()) >= 4, m
    assert max(m.values()) <= 0.058, m


@pytest.mark.slow
def test_agrees_with_scipy_de_plus_minimize(icl):
    """Same task (nlu), same loss (MSE incl. floor), same box: scipy differential_evolution + L-BFGS-B
    (polish) vs JAX DE + L-BFGS.  Stated tolerance: losses within 0.5 % and predictions within 0.01."""
    from scipy.optimize import differential_evolution

    from jaxscale.context_law.model import param_bounds

    i = icl["tasks"].index("nlu")
    f = icl["frames"][i]
    logC, n, nc, y, g = (np.log(f["C"].to_numpy()), f["n_pmt"].to_numpy(), f["n_ctx"].to_numpy(),
                         f["score"].to_numpy(), f["chance"].to_numpy())

    def law_np(th):  # independent numpy implementation of the same model (alpha fixed at 0.5)
        a, b, beta, log_s, log_c = th
        fc = -np.expm1(-np.exp(a + 0.5 * (logC - np.log(1e22))))
        fn = -np.expm1(-np.exp(b + beta * np.log(n / 1e3)))
        S = 0.5 * (1 + np.tanh(0.5 * (np.exp(log_c) * nc - n) / (np.exp(log_s) * np.exp(log_c) * nc)))
        return g + (1 - g) * fc * fn * S

    res = differential_evolution(lambda th: np.mean((law_np(th) - y) ** 2), param_bounds(ICL_SPEC), seed=0,
                                 tol=1e-8, maxiter=1000, polish=True)
    ours = float(icl["fit"].loss[i])
    assert abs(ours - res.fun) <= 5e-3 * res.fun, (ours, res.fun)
    p_jax = np.asarray(predict(ICL_SPEC, icl["fit"].theta[i], logC, n, nc, g))
    assert np.max(np.abs(p_jax - law_np(res.x))) < 0.01


@pytest.mark.slow
def test_icl_posterior_mean_beats_point_fit(icl):
    """Many-shot ICL, task trec (the hardest for the point fit): the posterior mean under a Laplace
    likelihood (jaxscale.infer.run_nuts, same law) has lower in-distribution MAE than the DE + L-BFGS MSE
    point fit (measured 2026-11-22: 0.0533 vs 0.0555)."""
    from jaxscale.context_law.bayes import fit_bayes

    i = icl["tasks"].index("trec")
    f = icl["frames"][i]
    data = to_context_data(f, chance_floor=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        bf = fit_bayes(jax.random.key(1), data, ICL_SPEC, likelihood="laplace", init_theta=np.asarray(icl["fit"].theta[i]),
                       num_warmup=200, num_samples=200)
    mae_post = np.abs(bf.p.mean(0) - f["score"].to_numpy()).mean()
    assert mae_post < icl["maes"]["trec"], (mae_post, icl["maes"]["trec"])


@pytest.fixture(scope="module")
def synthetic():
    d = simulate(jax.random.key(1), paper_design())
    data = to_context_data(d)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the 2-compute-level warning is expected here
        fit = fit_law(jax.random.key(0), data, TRUE_SPEC, restarts=2)
        fit0 = fit_law(jax.random.key(0), data, TRUE_SPEC._replace(penalty="none"), restarts=2, polish=False)
    return d, data, fit, fit0


@pytest.mark.slow
def test_synthetic_recovery_paper_design(synthetic):
    """2 compute levels x 6 n_ctx x 10 shots, 250 binomial items per cell: DE + L-BFGS recovers the truth."""
    d, data, fit, _ = synthetic
    assert len(d) == 120
    th = np.asarray(fit.theta)
    np.testing.assert_allclose(th[:4], TRUE_THETA[:4], atol=0.12)  # a, alpha, b, beta
    assert abs(th[4] - TRUE_THETA[4]) < 0.5  # log relative width of the cliff
    p = np.asarray(predict(TRUE_SPEC, fit.theta, data.log_C, data.n_pmt, data.n_ctx))
    assert np.max(np.abs(p - d["p_true"].to_numpy())) < 0.03


@pytest.mark.slow
def test_synthetic_ablation_sign_pattern(synthetic):
    """Paper (AR): with penalty 0.010 / 0.014 (<= / > n_ctx), without 0.019 / 0.104: dropping the penalty
    raises MAE in both subsets and far more beyond the limit."""
    d, data, fit, fit0 = synthetic
    b = d["beyond_ctx"].to_numpy()
    y = d["score"].to_numpy()
    p1 = np.asarray(predict(TRUE_SPEC, fit.theta, data.log_C, data.n_pmt, data.n_ctx))
    p0 = np.asarray(predict(TRUE_SPEC._replace(penalty="none"), fit0.theta, data.log_C, data.n_pmt, data.n_ctx))
    le1, gt1 = np.abs(p1 - y)[~b].mean(), np.abs(p1 - y)[b].mean()
    le0, gt0 = np.abs(p0 - y)[~b].mean(), np.abs(p0 - y)[b].mean()
    assert le0 > le1 and gt0 > gt1
    assert (gt0 - gt1) > 2 * (le0 - le1)
    assert le1 < 0.03 and gt1 < 0.03


def _frame(**over):
    df = pd.DataFrame(dict(C=[1e23, 1e23, 2e23], n_pmt=[100.0, 1000.0, 5000.0], n_ctx=[4096.0] * 3,
                           score=[0.2, 0.5, 0.6]))
    for k, v in over.items():
        df[k] = v
    return df


def test_bad_input_messages():
    with pytest.raises(ValueError, match="n_pmt"):
        validate_frame(_frame(n_pmt=[100.0, 0.0, 5.0]))
    with pytest.raises(ValueError, match="n_ctx"):
        validate_frame(_frame(n_ctx=[4096.0, -1.0, 4096.0]))
    with pytest.raises(ValueError, match="score.*outside"):
        validate_frame(_frame(score=[0.2, 1.3, 0.5]))
    with pytest.raises(ValueError, match="penalty"):
        LawSpec(penalty="sigmoid").check()
    one_level = to_context_data(_frame(C=[1e23] * 3))
    with pytest.raises(ValueError, match="alpha .*underdetermined.*one compute level"):
        fit_law(jax.random.key(0), one_level, LawSpec())
    two = to_context_data(_frame())
    from jaxscale.context_law import check_identifiability

    with pytest.warns(UserWarning, match="only 2 compute levels"):
        check_identifiability(two, LawSpec(fit_scale=False))
    within = to_context_data(_frame(n_pmt=[100.0, 1000.0, 3000.0]))
    with pytest.warns(UserWarning, match="no row has n_pmt > n_ctx"):
        check_identifiability(within, LawSpec(fit_alpha=False))


def test_repeated_cells_fit_once_with_the_same_result():
    """Rows repeating a cell (same C, n_pmt, n_ctx, floor) with different 0/1 outcomes are fitted as one
    weighted cell plus the within-cell sum of squares: the loss at any theta, and the DE + L-BFGS fit,
    equal those of the rows as given (up to rounding)."""
    from jaxscale.context_law.fit import compress, fit_core
    from jaxscale.context_law.model import mse_loss

    mse_loss = jax.jit(mse_loss, static_argnums=1)  # one program per shape, not op by op

    d = simulate(jax.random.key(1), paper_design())
    rng = np.random.default_rng(3)
    rows = d.iloc[rng.integers(0, 40, 128)].reset_index(drop=True)  # ~3 copies of each of 40 cells
    rows["score"] = (rng.random(len(rows)) < rows["score"].to_numpy()).astype(float)
    raw = to_context_data(rows, weight=rng.choice([0.0, 1.0, 2.5], len(rows)))  # weights (0 = left out) add up
    spec = TRUE_SPEC._replace(popsize=6, maxiter=60, restarts=2, fit_alpha=False)
    cells, offset = compress(raw, spec)
    n_cells = len(rows[np.asarray(raw.weight) > 0].drop_duplicates(["C", "n_pmt", "n_ctx"]))
    assert int(np.sum(np.asarray(cells.weight) > 0)) == n_cells <= 40 and len(cells.y) == (32 if n_cells <= 32 else 48)
    np.testing.assert_allclose(float(jnp.sum(cells.weight)), float(jnp.sum(raw.weight)), rtol=1e-14)
    for theta in ([-1.0, -0.5, 0.6, -3.0], [0.5, 0.2, 1.5, -1.0], [3.0, -2.0, 0.1, -6.0]):
        np.testing.assert_allclose(float(mse_loss(jnp.asarray(theta), spec, cells, offset)),
                                   float(mse_loss(jnp.asarray(theta), spec, raw)), rtol=1e-12)
    # padded with weight-0 rows to the raw length, the cells run in the same compiled program as the rows
    padded = cells._replace(**{f: jnp.concatenate([getattr(cells, f), jnp.full(128 - len(cells.y), 0.0 if f == "weight" else
                                                                                 getattr(cells, f)[0])])
                               for f in cells._fields})
    merged = fit_core(jax.random.key(5), padded, spec, offset)
    rowwise = fit_core(jax.random.key(5), raw, spec)  # the rows as given, no merging
    # the DE's accept/reject steps compare losses equal up to rounding, so its end point may move in
    # the last digits (measured: 2e-6 relative); the polished optimum is the same
    np.testing.assert_allclose(float(merged.de_loss), float(rowwise.de_loss), rtol=1e-4)
    np.testing.assert_allclose(float(merged.loss), float(rowwise.loss), rtol=1e-10)
    np.testing.assert_allclose(np.asarray(merged.theta), np.asarray(rowwise.theta), rtol=1e-5, atol=1e-8)
    # the absolute error merges only rows that also share the score (their weights add)
    mae = spec._replace(loss="mae")
    cells_mae, zero = compress(raw, mae)
    assert float(zero) == 0.0 and set(np.unique(np.asarray(cells_mae.y))) <= {0.0, 1.0}
    np.testing.assert_allclose(float(mse_loss(jnp.asarray([-1.0, -0.5, 0.6, -3.0]), mae, cells_mae, zero)),
                               float(mse_loss(jnp.asarray([-1.0, -0.5, 0.6, -3.0]), mae, raw)), rtol=1e-12)
