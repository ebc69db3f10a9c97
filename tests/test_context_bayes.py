"""Bayesian context law (numpyro NUTS through jaxscale.infer.run_nuts) on the paper's 2-compute-level design."""
import warnings

import jax
import numpy as np
import pytest

jax.config.update("jax_enable_x64", True)

from jaxscale.context_law.data import to_context_data  # noqa: E402
from jaxscale.context_law.bayes import coverage, fit_bayes, predictive_bands  # noqa: E402
from jaxscale.context_law.synthetic import TRUE_SPEC, TRUE_THETA, paper_design, simulate  # noqa: E402


@pytest.fixture(scope="module")
def posterior():
    d = simulate(jax.random.key(1), paper_design())
    # extrapolation split: fit on prompts < 10k tokens, predict the longer ones
    train = d["n_pmt"].to_numpy() < 10_000
    data = to_context_data(d, weight=train.astype(float))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # ESS of the deterministic site p past the cliff
        bf = fit_bayes(jax.random.key(2), data, TRUE_SPEC, likelihood="binomial", n_items=d["n_items"].to_numpy(),
                       n_correct=d["n_correct"].to_numpy(), init_theta=TRUE_THETA, num_warmup=200, num_samples=200)
    bands = predictive_bands(jax.random.key(3), bf, "binomial", d["n_items"].to_numpy())
    return d, train, bf, bands


@pytest.mark.slow
def test_alpha_posterior_wide_at_two_compute_levels(posterior):
    """With only C(7B) and C(13B) (ratio 1.96), alpha rests on two numbers: its 90 % interval is several
    times wider than beta's (10 prompt lengths) and covers the truth."""
    _, _, bf, _ = posterior
    lo, hi = np.quantile(bf.theta, [0.05, 0.95], axis=0)
    w = hi - lo
    assert w[1] > 3 * w[3], w  # alpha vs beta
    assert w[1] > 0.08, w
    assert lo[1] <= TRUE_THETA[1] <= hi[1]
    assert bf.posterior.diagnostics["divergences"] <= 5


@pytest.mark.slow
def test_predictive_bands_cover_extrapolated_points(posterior):
    d, train, bf, bands = posterior
    assert np.all(bands["lo"] <= bands["hi"])
    cov_out = coverage(d["score"].to_numpy(), bands, ~train)
    cov_in = coverage(d["score"].to_numpy(), bands, train)
    assert 0.8 <= cov_out <= 1.0, cov_out  # nominal 0.90 on the held-out (>= 10k tokens) cells
    assert 0.8 <= cov_in <= 1.0, cov_in


def test_binomial_needs_counts():
    d = simulate(jax.random.key(0), paper_design())
    with pytest.raises(ValueError, match="needs n_items and n_correct"):
        fit_bayes(jax.random.key(0), to_context_data(d), TRUE_SPEC, likelihood="binomial")
    with pytest.raises(ValueError, match="likelihood"):
        fit_bayes(jax.random.key(0), to_context_data(d), TRUE_SPEC, likelihood="poisson")

