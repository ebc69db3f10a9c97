"""Compute, frontier, law, AbC and the Monte-Carlo probabilistic law."""
import json
import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest


from jaxscale.learning_curves.compute import (
    curve_cost_pf,
    load_nanogpt_curves,
    point_compute,
    total_params,
)
from jaxscale.learning_curves.frontier import (
    fit_law,
    ground_truth_law,
    law_from_loss,
    make_plan,
)
from jaxscale.learning_curves.psl import (
    joint_draws,
    laws_from_draws,
    make_problem,
    probabilistic_law,
    restart_law,
    sample_mesh,
    summarize,
)
from jaxscale.metrics import abc_loglinear

QUAD = [(e, l) for e in (768, 960, 1024, 1600) for l in (24, 32, 48)]
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def curves():
    return load_nanogpt_curves("nanogpt_large")


@pytest.fixture(scope="module")
def flat(curves):
    return curves.flat()


def _synthetic_cov(n_held, P=11, scale=0.03):
    x = np.arange(P)
    k = np.exp(-0.5 * (x[:, None] - x[None]) ** 2 / 4.0)
    return np.kron(np.eye(n_held), k) * scale**2


# ----------------------------------------------------------------------------- compute
def test_total_params_and_compute_float64(curves):
    # 1600 x 48 -> 1.557 B, 512 x 8 -> 51.4 M (vocab 50257, block 1024)
    assert total_params(8, 512) == 51_430_400
    assert total_params(48, 1600) == 1_556_764_800
    assert curves.compute.dtype == np.float64
    # 8e19 FLOPs exceeds int64 (9.2e18): must be exact float64, not overflowed
    c = point_compute(48, 1600, 17479)
    assert c == pytest.approx(6 * 1_556_764_800 * 491_520 * 17479, rel=1e-15)
    assert curves.compute.max() == pytest.approx(8.02476e19, rel=1e-5)
    assert curves.loss.shape == (5, 6, 11)
    np.testing.assert_array_equal(curves.steps, [1, 2, 7, 20, 54, 148, 403, 1096, 2980, 8103, 17479])
    # all 30 curves ~5.2e5 PF under the same assumption
    assert curve_cost_pf(curves.compute).sum() == pytest.approx(5.23e5, rel=0.01)
    with pytest.raises(ValueError, match="tokens_per_step"):
        point_compute(8, 512, 1, tokens_per_step=0)
    with pytest.raises(ValueError, match="steps"):
        point_compute(8, 512, [0, 1])


def test_laws_helper_agrees():
    from jaxscale.laws import nanogpt_total_params

    assert float(nanogpt_total_params(48, 1600, vocab_size=50257)) == total_params(48, 1600)


# ----------------------------------------------------------------------------- frontier + law
def test_ground_truth_law_nearest(flat):
    # HARD: all 30 nanoGPT-large curves, nearest-C rule, 100-point grid 1e18..1e20, C = 6 N T step
    # (T = 491,520): ln L = -0.0541 ln C + 3.440 (the paper reports -0.056, 3.51 from its unpublished compute).
    _, L, C = flat
    gt = ground_truth_law(L, C, rule="nearest")
    assert abs(gt.b1 - (-0.0541)) < 5e-4 and round(gt.b1, 4) == -0.0541
    assert abs(gt.b0 - 3.440) < 5e-3


def _numpy_interp_law(L, C, clamp):
    g = np.logspace(18, 20, 100)
    vals = []
    for c, l in zip(C, L):
        v = np.exp(np.interp(np.log(g), np.log(c), np.log(l)))
        if not clamp:
            v = np.where((g >= c[0]) & (g <= c[-1]), v, np.inf)
        vals.append(v)
    f = np.min(vals, 0)
    ok = np.isfinite(f)
    return np.polyfit(np.log(g[ok]), np.log(f[ok]), 1)


def test_interp_rule_matches_numpy_reference(flat):
    _, L, C = flat
    for clamp, ref in ((False, (-0.05833, 3.6390)), (True, (-0.05787, 3.6189))):
        gt = ground_truth_law(L, C, rule="interp", extrapolate="clamp" if clamp else "mask")
        b1, b0 = _numpy_interp_law(L, C, clamp)
        assert gt.b1 == pytest.approx(b1, abs=1e-12) and gt.b0 == pytest.approx(b0, abs=1e-10)
        assert gt.b1 == pytest.approx(ref[0], abs=1e-5) and gt.b0 == pytest.approx(ref[1], abs=1e-4)


def test_fit_law_is_polyfit_and_vmaps(flat, key):
    u = np.linspace(40, 46, 50)
    y = jax.random.normal(key, (7, 50)) * 0.01 - 0.05 * u + 3.4
    law = jax.jit(jax.vmap(fit_law, in_axes=(None, 0)))(jnp.asarray(u), y)
    for i in range(7):
        b1, b0 = np.polyfit(u, np.asarray(y[i]), 1)
        assert float(law.b1[i]) == pytest.approx(b1, abs=1e-12)
        assert float(law.b0[i]) == pytest.approx(b0, abs=1e-10)
    # batched law_from_loss == vmapped law_from_loss
    _, L, C = flat
    plan = make_plan(C, rule="interp")
    loss = jnp.asarray(L)[None] * jnp.exp(0.01 * jax.random.normal(key, (4,) + L.shape))
    a = jax.jit(law_from_loss)(plan, loss)
    b = jax.jit(jax.vmap(law_from_loss, in_axes=(None, 0)))(plan, loss)
    np.testing.assert_allclose(a.b1, b.b1, atol=1e-14)


def test_plan_validation(flat):
    _, L, C = flat
    with pytest.raises(ValueError, match="rule"):
        make_plan(C, rule="linear")
    with pytest.raises(ValueError, match="increase"):
        make_plan(C[:, ::-1])
    with pytest.raises(ValueError, match="covered"):
        make_plan(C, grid=np.logspace(21, 22, 10))


# ----------------------------------------------------------------------------- AbC
def _shoelace_abc(b1, b0, g1, g0, u0=np.log(1e15), u1=np.log(1e20), n=20001):
    """Area between two lines by the shoelace formula on the polygon under |difference|."""
    dm, db = b1 - g1, b0 - g0
    u = np.linspace(u0, u1, n)
    if dm != 0 and u0 < -db / dm < u1:
        u = np.sort(np.append(u, -db / dm))  # the kink of |d|, so the polygon is exact
    d = np.abs(dm * u + db)
    xs = np.concatenate([u, [u1, u0]])
    ys = np.concatenate([d, [0.0, 0.0]])
    return 0.5 * abs(np.dot(xs, np.roll(ys, -1)) - np.dot(ys, np.roll(xs, -1)))


def test_abc_closed_form_equals_polygon_area():
    rng = np.random.default_rng(0)
    g1, g0 = -0.0541, 3.440
    cases = [(-0.0541, 3.44), (-0.043, 2.957), (-0.059, 3.636)]  # identical, paper-like Quad/T1
    cases += [(g1 + rng.normal(0, 0.005), g0 + rng.normal(0, 0.2)) for _ in range(20)]
    n_cross = 0
    for b1, b0 in cases:
        dm, db = b1 - g1, b0 - g0
        n_cross += dm != 0 and np.log(1e15) < -db / dm < np.log(1e20)
        closed = float(abc_loglinear(b1, b0, g1, g0))
        assert closed == pytest.approx(_shoelace_abc(b1, b0, g1, g0), rel=1e-9, abs=1e-12)
    assert n_cross >= 3  # both branches exercised


# ----------------------------------------------------------------------------- probabilistic law
@pytest.fixture(scope="module")
def quad(flat):
    labels, L, C = flat
    return make_problem(labels, L, C, QUAD, rule="nearest")


def _held_truth(flat, held):
    labels, L, _ = flat
    return L[[labels.index(h) for h in held]]


def test_restart_law_of_truth_is_ground_truth(flat, quad):
    truth = _held_truth(flat, QUAD)
    res = restart_law(quad, np.stack([truth, truth]))
    np.testing.assert_allclose(res.law.b1, quad.gt.b1, atol=1e-13)
    np.testing.assert_allclose(res.abc, 0.0, atol=1e-10)
    assert quad.gt.b1 == pytest.approx(-0.054056, abs=1e-6)


def test_baseline_laws_fill_the_held_out_curves(flat, quad):
    """The sceptic's law beside the model's: the law of the frontier with the held-out curves replaced by
    a baseline's prediction. Filled with the true curves it is the ground truth (AbC 0); filled with
    every held-out curve 10 % too low it lies lower and has a positive AbC; values <= 0 are floored."""
    from jaxscale.learning_curves.heldout import baseline_laws

    truth = _held_truth(flat, QUAD)
    laws = baseline_laws(quad, {"truth": truth.ravel(), "low": 0.9 * truth.ravel(),
                                 "zero": np.zeros(truth.size)}, truth.shape)
    assert laws["truth"]["b1"] == pytest.approx(quad.gt.b1, abs=1e-13) and laws["truth"]["abc"] < 1e-10
    u = np.log(1e19)  # inside the compute grid: the law of lowered curves lies lower there
    assert laws["low"]["b0"] + laws["low"]["b1"] * u < quad.gt.b0 + quad.gt.b1 * u and laws["low"]["abc"] > 0.01
    assert np.isfinite(laws["zero"]["abc"])


def test_a_law_that_loses_to_a_baseline_law_says_so():
    from jaxscale.cli.lc import compare_baseline_laws

    block = {"abc_of_mean_law": 0.18, "baseline_laws": {"nearest_curve": {"abc": 0.66}, "size_trend": {"abc": 0.12},
                                                        "size": "ln(params)", "note": "..."}}
    with pytest.warns(UserWarning, match=r"size_trend \(0\.12\).*no better than the trend line"):
        compare_baseline_laws(block, "magp_law on nanogpt_large / quad (law)")
    assert block["baseline_laws"]["model_loses_to"] == ["size_trend"]
    block = {"abc_of_mean_law": 0.05, "baseline_laws": {"size_trend": {"abc": 0.12}}}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        compare_baseline_laws(block, "x")
    assert caught == [] and block["baseline_laws"]["model_loses_to"] == []


def test_draws_match_bruteforce_numpy(flat, quad, key):
    """Merged frontier+fit per draw equals a plain NumPy loop over draws (nearest rule)."""
    labels, L, C = flat
    truth = _held_truth(flat, QUAD)
    cov = _synthetic_cov(len(QUAD))
    chol = jnp.linalg.cholesky(jnp.asarray(cov))
    draws = jax.jit(joint_draws, static_argnums=3)(key, jnp.asarray(truth.reshape(-1)), chol, 5)
    draws = draws[0].reshape(5, len(QUAD), 11)
    res = jax.jit(laws_from_draws)(quad.plan, quad.observed, draws, quad.gt.b1, quad.gt.b0)
    obs_idx = [labels.index(o) for o in quad.observed_labels]
    held_idx = [labels.index(h) for h in QUAD]
    g = np.logspace(18, 20, 100)
    for r in range(5):
        Lr = np.concatenate([L[obs_idx], np.asarray(draws[r])])
        Cr = np.concatenate([C[obs_idx], C[held_idx]])
        idx = np.abs(Cr[:, :, None] - g[None, None]).argmin(1)
        f = np.take_along_axis(Lr, idx, 1).min(0)
        b1, b0 = np.polyfit(np.log(g), np.log(f), 1)
        assert float(res.law.b1[r]) == pytest.approx(b1, abs=1e-12)
        assert float(res.abc[r]) == pytest.approx(_shoelace_abc(b1, b0, quad.gt.b1, quad.gt.b0), rel=1e-8)


def test_probabilistic_law_summary_and_mixture(flat, quad, key):
    truth = _held_truth(flat, QUAD).reshape(-1)
    cov = _synthetic_cov(len(QUAD))
    res = probabilistic_law(key, quad, truth, cov, n_samples=1000)
    assert res.law.b1.shape == (1000,) and res.abc.shape == (1000,)
    s = summarize(res, quad.gt)
    assert s["gt_in_band_b1"] and 0 < s["abc"]["mean"] < 0.3 and s["b1"]["std"] > 0
    # tiny covariance -> every draw is the ground truth
    tiny = probabilistic_law(key, quad, truth, cov * 1e-16, n_samples=1000)  # same compiled program
    np.testing.assert_allclose(tiny.law.b1, quad.gt.b1, atol=1e-8)
    # equal-weight mixture of two components: draws split evenly (interleaved)
    mix = probabilistic_law(key, quad, np.stack([truth, truth * 1.05]), np.stack([cov * 1e-16] * 2), n_samples=10)
    b1 = np.asarray(mix.law.b1)
    assert np.allclose(b1[0::2], quad.gt.b1, atol=1e-8) and not np.allclose(b1[1::2], quad.gt.b1, atol=1e-4)
    with pytest.raises(ValueError, match="holds out"):
        probabilistic_law(key, quad, truth[:-1], cov[:-1, :-1], n_samples=10)


def test_sharded_equals_single_device(flat, quad):
    """8 forced host devices (subprocess) give the same draws' laws as one device."""
    script = textwrap.dedent(
        """
        import json, jax, numpy as np
        jax.config.update("jax_enable_x64", True)
        assert jax.device_count() == 8, jax.devices()
        from jaxscale.learning_curves.compute import load_nanogpt_curves
        from jaxscale.learning_curves.psl import make_problem, probabilistic_law, sample_mesh
        labels, L, C = load_nanogpt_curves().flat()
        held = [(e, l) for e in (768, 960, 1024, 1600) for l in (24, 32, 48)]
        pr = make_problem(labels, L, C, held, rule="nearest")
        truth = L[[labels.index(h) for h in held]].reshape(-1)
        x = np.arange(11); k = np.exp(-0.5 * (x[:, None] - x[None]) ** 2 / 4.0)
        cov = np.kron(np.eye(len(held)), k) * 0.03 ** 2
        out = {}
        for n_dev in (8, 1):
            r = probabilistic_law(jax.random.key(3), pr, truth, cov, n_samples=1000,
                                  mesh=sample_mesh(jax.devices()[:n_dev]))
            assert len(r.law.b1.sharding.device_set) == n_dev
            out[n_dev] = [np.asarray(r.law.b1).tolist(), np.asarray(r.abc).tolist()]
        print(json.dumps(out))
        """
    )
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8", JAX_PLATFORMS="cpu",
               PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""), OPENBLAS_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    np.testing.assert_allclose(out["8"][0], out["1"][0], rtol=0, atol=1e-14)
    np.testing.assert_allclose(out["8"][1], out["1"][1], rtol=0, atol=1e-12)
    # and the same numbers as this (single-device) process
    truth = _held_truth(flat, QUAD).reshape(-1)
    here = probabilistic_law(jax.random.key(3), quad, truth, _synthetic_cov(len(QUAD)), n_samples=1000,
                             mesh=sample_mesh(jax.devices()[:1]))
    np.testing.assert_allclose(np.asarray(here.law.b1), out["8"][0], rtol=0, atol=1e-13)
