"""The context-aware law itself: compute table (paper Table 1), forms, penalties, stability, gradients."""
import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
from jax.test_util import check_grads

jax.config.update("jax_enable_x64", True)

from jaxscale.context_law.data import load_compute_table  # noqa: E402
from jaxscale.laws.context import (  # noqa: E402
    ContextLawParams,
    PaperContextParams,
    context_compute,
    context_law,
    identifiable_to_paper,
    log_context_law,
    log_penalty,
    log_saturation,
    paper_to_identifiable,
)

P4 = ContextLawParams(jnp.asarray(-1.0), jnp.asarray(0.7), jnp.asarray(-0.5), jnp.asarray(0.6))


def test_compute_table_all_12_rows():
    """C = 6 N_nonemb (2.0e12 + 400*64*n_ctx) vs paper Table 1 (compute_table.csv): < 3e-5 relative.

    Source: Table 1 of arXiv 2510.14919v1 (N = non-embedding parameters of Llama-2-7B/13B; the extension run is
    400 steps x 64 sequences x n_ctx tokens, also for the 4k controls).
    """
    t = load_compute_table()
    assert len(t) == 12
    C = np.asarray(context_compute(t["N_nonembedding"].to_numpy(float), t["n_ctx_tokens"].to_numpy(float)))
    rel = np.abs(C / t["C_reported"].to_numpy(float) - 1.0)
    assert rel.max() < 3e-5, rel
    # the derived extension tokens match the table's own column exactly
    np.testing.assert_allclose(400 * 64 * t["n_ctx_tokens"], t["D_extension_tokens_derived"], rtol=0)


def test_four_and_six_param_forms_identical():
    rng = np.random.default_rng(0)
    C = 10 ** rng.uniform(21, 25, 200)
    n = 10 ** rng.uniform(1, 5.3, 200)
    n_ctx = 2.0 ** rng.integers(12, 18, 200)
    for C_c, n_c in [(1e22, 1e3), (3.7e23, 250.0), (1e20, 1e5)]:
        p6 = identifiable_to_paper(P4, C_c=C_c, n_c=n_c)
        back = paper_to_identifiable(p6)
        np.testing.assert_allclose(np.asarray(back), np.asarray(P4), rtol=1e-12, atol=1e-12)
        for pen in ["none", "step", "logistic", "log_ratio"]:
            scale = 10.0 if pen == "log_ratio" else 0.05
            a = context_law(P4, C, n, n_ctx, penalty=pen, scale=scale)
            b = context_law(p6, C, n, n_ctx, penalty=pen, scale=scale)
            np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-300)
    # the literal 6-parameter formula (no log space) agrees where it does not underflow
    p6 = identifiable_to_paper(P4, C_c=2e23, n_c=4e3)
    lit = ((1 - np.exp(-p6.A * (C / p6.C_c) ** p6.alpha)) * (1 - np.exp(-p6.B * (n / p6.n_c) ** p6.beta)))
    np.testing.assert_allclose(context_law(p6, C, n, n_ctx, penalty="none"), lit, rtol=1e-9)


def test_penalties_shape_and_limits():
    n_ctx = 8192.0
    n = jnp.asarray([100.0, 4000.0, 8192.0, 9000.0, 20000.0, 1e5])
    for pen, scale in [("step", 1.0), ("logistic", 0.05), ("log_ratio", 20.0)]:
        S = np.exp(np.asarray(log_penalty(n, n_ctx, pen, scale)))
        assert np.all(np.diff(S) <= 0), pen  # decreasing in n_pmt
        assert S[0] > 0.999 and S[-1] < 1e-3, (pen, S)
        np.testing.assert_allclose(S[2], 0.5, atol=1e-12)  # midpoint at the limit
    assert np.exp(float(log_penalty(8193.0, n_ctx, "step"))) < 0.27  # one-token-wide step
    np.testing.assert_allclose(np.asarray(log_penalty(n, n_ctx, "none")), 0.0)
    # shift moves the cliff to shift * n_ctx
    np.testing.assert_allclose(float(log_penalty(2 * n_ctx, n_ctx, "logistic", 0.05, 2.0)), np.log(0.5))


def test_law_bounds_monotone_floor_and_decay():
    C = jnp.asarray([1e22, 1e23, 1e24])
    p = context_law(P4, C, 2000.0, 32768.0)
    assert np.all(np.diff(np.asarray(p)) > 0)  # increases with compute
    n = jnp.geomspace(10.0, 8000.0, 20)
    p = np.asarray(context_law(P4, 1e23, n, 32768.0))
    assert np.all(np.diff(p) > 0) and np.all((p > 0) & (p < 1))
    beyond = float(context_law(P4, 1e23, 40000.0, 32768.0, penalty="step"))
    assert beyond < 1e-100
    g = 0.25
    pf = np.asarray(context_law(P4, 1e23, n, 32768.0, floor=g))
    np.testing.assert_allclose(pf, g + (1 - g) * p, rtol=1e-12)
    # direct product form == exp(log-space form)
    lp = np.exp(np.asarray(log_context_law(P4, np.log(1e23), n, 32768.0, penalty="logistic", scale=0.1, decay=0.2)))
    np.testing.assert_allclose(np.asarray(context_law(P4, 1e23, n, 32768.0, scale=0.1, decay=0.2)), lp, rtol=1e-12)
    pd_ = np.asarray(context_law(P4, 1e23, n, 32768.0, decay=0.3))
    np.testing.assert_allclose(pd_, p * (1 + n / 1e3) ** -0.3, rtol=1e-12)


def test_log_saturation_stable_everywhere():
    z = jnp.asarray([-800.0, -50.0, -20.5, -19.5, -1.0, 0.0, 4.9, 5.1, 30.0, 800.0])
    v = np.asarray(log_saturation(z))
    zn = np.asarray(z)
    ok = np.abs(zn) < 700
    ref = np.log(-np.expm1(-np.exp(zn[ok])))
    np.testing.assert_allclose(v[ok], ref, rtol=1e-12, atol=1e-30)
    np.testing.assert_allclose(v[0], -800.0)  # underflow handled by the series branch
    g = np.asarray(jax.vmap(jax.grad(log_saturation))(z))
    assert np.all(np.isfinite(g))


def test_check_grads_on_law():
    theta = jnp.asarray([-1.0, 0.7, -0.5, 0.6])
    C = jnp.asarray([7.8e22, 1.5e23, 7.8e22])
    n = jnp.asarray([500.0, 7000.0, 9000.0])
    n_ctx = jnp.asarray([8192.0, 8192.0, 8192.0])

    def f(th, scale):
        return log_context_law(ContextLawParams(*th), jnp.log(C), n, n_ctx, penalty="logistic", scale=scale)

    check_grads(jax.jit(f), (theta, 0.1), order=2, modes=["rev"], rtol=1e-4)  # finite-difference noise at order 2

    def g(th):
        return context_law(ContextLawParams(*th), C, n, n_ctx, penalty="log_ratio", scale=12.0, decay=0.2)

    check_grads(jax.jit(g), (theta,), order=1, modes=["fwd", "rev"], rtol=1e-6)
