"""Fast tests of the learning-curve loaders, splits, kernels, linear algebra and metrics."""
import os
import sys
import warnings

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_enable_x64", True)

from jaxscale.gp import (  # noqa: E402
    DHGPKernel,
    MaGPKernel,
    cholesky_escalate,
    dhgp_gram,
    gather2,
    gaussian_nll,
    magp_gram,
    tri_inv,
)
from jaxscale.learning_curves.data import load_lc  # noqa: E402
from jaxscale.learning_curves.evaluate import curve_metrics  # noqa: E402
from jaxscale.learning_curves.magp import report_fit_health  # noqa: E402
from jaxscale.learning_curves.problem import make_problem  # noqa: E402
from jaxscale.learning_curves.splits import make_split  # noqa: E402


def _held(data, split):
    f = data.frame.loc[split.test]
    return set(zip(f["n_embd"].astype(int), f["n_layer"].astype(int)))


@pytest.fixture(scope="module")
def large():
    return load_lc("nanogpt_large")


def test_loader_shapes(large):
    assert len(large.frame) == 330 and large.frame["curve"].nunique() == 30
    assert large.task_labels == ("512", "768", "960", "1024", "1600")
    assert large.frame.groupby("curve").size().eq(11).all()
    ex = load_lc("nanogpt_large_exchanged")
    assert len(ex.task_labels) == 6 and len(ex.replicate_labels) == 5
    # the exchanged file holds the same 30 curves 
    a = large.frame.sort_values(["n_embd", "n_layer", "point"])["value"].to_numpy()
    b = ex.frame.sort_values(["n_embd", "n_layer", "point"])["value"].to_numpy()
    np.testing.assert_allclose(a, b)
    assert len(load_lc("nanogpt_small").frame) == 3 * 44
    bil = load_lc("bilingual_tgt_over_src_mBart_bleu")
    assert bil.frame["curve"].nunique() == 30  # 36 minus the empty diagonal
    ml = load_lc("multilingual_same_source_en")
    assert len(ml.frame) == 3 * 100 and ml.replicate_labels == ("id", "jv", "ms", "ta", "tl")


def test_paper_splits(large):
    quad = make_split(large, "quad")
    assert _held(large, quad) == {(e, l) for e in (768, 960, 1024, 1600) for l in (24, 32, 48)}
    tri = make_split(large, "tri")
    assert _held(large, tri) == {(768, 48), (960, 32), (960, 48), (1024, 24), (1024, 32), (1024, 48),
                                 (1600, 12), (1600, 24), (1600, 32), (1600, 48)}
    assert _held(large, make_split(large, "t1")) == {(1600, 48)}
    assert quad.train.sum() == 18 * 11 and tri.train.sum() == 20 * 11
    ex = load_lc("nanogpt_large_exchanged")
    assert _held(ex, make_split(ex, "tri")) == _held(large, tri)
    assert _held(ex, make_split(ex, "t1")) == {(1600, 48)}
    assert _held(ex, make_split(ex, "quad")) == {(e, l) for e in (768, 960, 1024, 1600) for l in (12, 24, 32, 48)}
    bil = load_lc("bilingual_src_over_tgt_mBart_bleu")
    z = make_split(bil, "zeroshot")
    f = bil.frame.loc[z.test]
    assert f["curve"].nunique() == 6 and ((f["r"] - f["d"]) % 6 == 1).all()
    ml = load_lc("multilingual_same_target_en")
    s = make_split(ml, "extrapolate9")
    assert s.test.sum() == 5 * 9 and set(ml.frame.loc[s.test, "point"]) == set(range(11, 20))
    with pytest.raises(ValueError, match="split 'zeroshot' is not defined"):
        make_split(large, "zeroshot")


def test_scaler_leaky_and_leak_free():
    leaky = make_problem("nanogpt_large", "quad", leaky=True)
    # per-task z-score constants of nanogpt_large over all values of the row
    np.testing.assert_allclose(leaky.scaler.mean, [7.032, 6.774, 6.624, 6.579, 6.361], atol=6e-4)
    np.testing.assert_allclose(leaky.scaler.std, [3.037, 2.995, 2.937, 2.920, 2.844], atol=6e-4)
    free = make_problem("nanogpt_large", "quad")
    f = free.data.frame
    rows = free.split.train & (f["d"] == 1).to_numpy()
    assert free.scaler.mean[1] == pytest.approx(f.loc[rows, "value"].mean())
    assert free.scaler.mean[0] == pytest.approx(leaky.scaler.mean[0])  # task 512 is complete
    np.testing.assert_allclose(np.asarray(free.train.y) * free.scaler.std[np.asarray(free.train.d)]
                               + free.scaler.mean[np.asarray(free.train.d)], free.y_train)


@jax.jit
def _kernel_cases():
    xg = jnp.linspace(0.0, 9.8, 11)
    p = jnp.tile(jnp.arange(11), 6)
    r = jnp.repeat(jnp.arange(3), 22)
    d = jnp.repeat(jnp.arange(2), 33)
    h = jnp.array([[0.0, 1.0], [1.0, -0.5]])
    hs = jnp.array([1.0, 2.0])
    k = MaGPKernel(1.1, 2.0, 0.3, 1.5, h, hs)
    a = k((xg[p], r, d), (xg[p], r, d)) - magp_gram(xg, p, r, d, p, r, d, 1.1, 2.0, 0.3, 1.5, h, hs)
    v, s = jnp.array([1.0, 0.5, 0.2]), jnp.array([1.0, 2.0, 3.0])
    c = d * 3 + r
    b = DHGPKernel(v, s)((xg[p], d, c), (xg[p], d, c)) - dhgp_gram(xg, p, d, c, p, d, c, v, s)
    X = (jnp.array([1.0, 1.0, 1.0]), jnp.array([0, 0, 1]), jnp.array([0, 1, 1]))
    return jnp.abs(a).max(), jnp.abs(b).max(), k(X, X)


def test_tinygp_kernels_match_fast_grams():
    da, db, K = _kernel_cases()
    assert float(da) < 1e-14 and float(db) < 1e-14
    # hierarchy semantics: the same instance r in another task shares k_f (scaled by k_H)
    assert K[0, 1] > K[0, 2] > 0 and K[1, 2] < K[1, 1]


@pytest.mark.parametrize("m", [11, 80])  # one-hot products (small table) and the plain gather (large)
def test_gather2_equals_the_gather_with_its_gradient(m):
    rng = np.random.default_rng(0)
    table = jnp.asarray(rng.normal(size=(m, m)))
    i1, i2 = jnp.asarray(rng.integers(0, m, 50)), jnp.asarray(rng.integers(0, m, 30))
    w = jnp.asarray(rng.normal(size=(50, 30)))
    np.testing.assert_array_equal(gather2(table, i1, i2), table[i1[:, None], i2[None, :]])
    g = jax.grad(lambda t: jnp.sum(w * gather2(t, i1, i2)))(table)
    g_ref = jax.grad(lambda t: jnp.sum(w * t[i1[:, None], i2[None, :]]))(table)
    np.testing.assert_allclose(g, g_ref, rtol=1e-12, atol=1e-12)
    stacked = jnp.stack([table, 2 * table])  # leading axes broadcast (the DHGP's three tables)
    np.testing.assert_array_equal(gather2(stacked, i1, i1)[1], 2 * table[i1[:, None], i1[None, :]])


def test_gaussian_nll_value_and_custom_gradient():
    x = jnp.linspace(0, 5, 40)
    y = jnp.sin(x)

    def kmat(t):
        return jnp.exp(t[0]) * jnp.exp(-0.5 * (x[:, None] - x[None, :]) ** 2 / jnp.exp(t[1])) + 0.05 * jnp.eye(40)

    def ref(t):
        K = kmat(t) + 1e-8 * jnp.eye(40)
        return -jax.scipy.stats.multivariate_normal.logpdf(y, jnp.zeros(40), K)

    t = jnp.array([0.2, -0.3])
    got = lambda t: gaussian_nll(kmat(t), y)[0]  # noqa: E731
    v1, g1 = jax.jit(jax.value_and_grad(got))(t)
    v2, g2 = jax.jit(jax.value_and_grad(ref))(t)
    assert float(v1) == pytest.approx(float(v2), rel=1e-10)
    np.testing.assert_allclose(g1, g2, rtol=1e-7)
    L = jnp.linalg.cholesky(kmat(t))
    np.testing.assert_allclose(jax.jit(tri_inv)(L) @ L, jnp.eye(40), atol=1e-9)


def test_jitter_escalation_and_nan_restarts_are_reported():
    v = jnp.ones((5, 1))
    K = v @ v.T  # rank one: not PD at jitter 1e-8 in general
    K = K - 1e-7 * jnp.eye(5)
    L, j = jax.jit(cholesky_escalate)(K)
    assert np.all(np.isfinite(L)) and float(j) >= 1e-6
    params = {"a": jnp.array([[1.0], [jnp.nan], [0.5]])}
    with pytest.warns(RuntimeWarning) as rec:
        ok = report_fit_health(jnp.array([1.0, 2.0, 3.0]), params, jnp.array([1e-8, 1e-8, 1e-5]), "MaGP")
    msgs = " | ".join(str(w.message) for w in rec)
    assert ok.tolist() == [True, False, True]
    assert "restart(s) [1]" in msgs and "excluded" in msgs
    assert "jitter" in msgs and "1e-05" in msgs and "[2]" in msgs
    with pytest.raises(ValueError, match="every restart"):
        report_fit_health(jnp.array([jnp.nan]), {"a": jnp.zeros((1, 1))}, jnp.array([1e-8]))


def test_curve_metrics_parts():
    # two curves of 4 points; prediction off by 1 on the first curve's earliest point only
    y = np.zeros(8)
    mean = np.zeros((1, 8))
    mean[0, 0] = 1.0
    x = np.tile(np.arange(4.0), 2)
    c = np.repeat([3, 7], 4)
    m = curve_metrics(y, mean, np.ones((1, 8)), c, x)
    assert m["rmse"]["full"][0] == pytest.approx(0.5 * np.sqrt(0.25))
    assert m["rmse"]["partial"][0] == 0.0 and m["mae"]["last"][0] == 0.0
    assert m["nlpd"]["last"][0] == pytest.approx(0.5 * np.log(2 * np.pi))


def test_cli_registers_lc_evaluate():
    import argparse

    from jaxscale.cli import lc as cli

    p = argparse.ArgumentParser()
    cli.register(p.add_subparsers(dest="cmd"))
    a = p.parse_args("lc evaluate --dataset nanogpt_large --split tri --model dhgp --restarts 3".split())
    assert a.func is cli.evaluate_handler and a.restarts == 3 and not a.leaky
    from jaxscale.learning_curves.pipeline import evaluate_model

    with pytest.raises(ValueError, match="--model 'gp'"):
        evaluate_model(jax.random.key(0), model="gp")
    with pytest.raises(ValueError, match="restarts"):
        evaluate_model(jax.random.key(0), restarts=0)


def test_padding_is_inert():
    from jaxscale.learning_curves.dhgp import DHGPParams, dhgp_loss
    from jaxscale.learning_curves.problem import pad_points

    pr = make_problem("nanogpt_large", "t1")
    sub = pr.train._replace(**{f: getattr(pr.train, f)[:40] for f in ("x", "p", "r", "d", "c", "y")})
    p = DHGPParams(jnp.array([0.5, -1.0, -2.0]), jnp.array([1.0, 0.5, 0.2]), jnp.array(-3.0))
    f = jax.jit(dhgp_loss)
    assert float(f(p, pr.xgrid, pad_points(sub, 64))) == pytest.approx(float(f(p, pr.xgrid, sub)), abs=1e-6)  # jitter on pads
    with pytest.raises(ValueError, match="smaller"):
        pad_points(sub, 10)


OTHER_SPLITS = [  # (dataset, split, held-out curves, held-out points)
    ("nanogpt_small", "quad", 9, 99), ("nanogpt_small", "tri", 6, 66), ("nanogpt_small", "t1", 1, 11),
    ("nanogpt_large_exchanged", "quad", 16, 176), ("nanogpt_large_exchanged", "t1", 1, 11),
    ("bilingual_src_over_tgt_mBart_bleu", "zeroshot", 6, 90), ("bilingual_tgt_over_src_mBart_bleu", "zeroshot", 6, 89),
    ("multilingual_same_source_en", "extrapolate9", 5, 45),
]


def test_other_splits_build_fit_and_predict():
    """Every other split builds with the held-out counts of the paper code; short MaGP fits (2 restarts x 3
    steps, padded to 384 points) on the non-nanoGPT families predict finite held-out values (the
    nanoGPT ones share the Quad/Tri/T1 code path). Full protocol: benchmarks/bench_lc_splits.py."""
    from jaxscale.learning_curves.models import fit_model, predict_joint

    for ds, split, n_curves, n_pts in OTHER_SPLITS:
        pr = make_problem(ds, split)
        c = np.asarray(pr.test.c)
        assert (len(np.unique(c)), c.size) == (n_curves, n_pts), (ds, split)
        assert pr.train.x.shape[0] + n_pts == len(pr.data.frame)
        if ds.startswith("nanogpt") or ds.startswith("bilingual_tgt"):  # same code / compiled shapes
            continue
        f = fit_model(jax.random.key(0), pr, "magp", restarts=2, steps=3, pad_to=384)
        p = predict_joint(jax.random.key(1), f, pr, n_h=2)
        assert p.mean.shape == (2, n_pts) and np.all(np.isfinite(np.asarray(p.mean))), (ds, split)
        assert np.all(np.isfinite(np.asarray(p.cov))) and np.all(np.asarray(p.noise_var) > 0)


def test_adam_schedule_holds_then_decays_and_can_stay_constant():
    """The default Adam step size: the peak for the first 30% of the steps, then a cosine decay to
    2% of it at the last step; ``decay=False`` keeps it constant (the original code's optimiser)."""
    from jaxscale.learning_curves.magp import adam_elbo, lr_schedule

    rate = jax.jit(jax.vmap(lr_schedule(0.05, 600)))(jnp.arange(600))
    np.testing.assert_allclose(rate[:180], 0.05)
    assert abs(float(rate[-1]) - 0.001) < 1e-12 and np.all(np.diff(np.asarray(rate)) <= 1e-15)
    np.testing.assert_allclose(jax.vmap(lr_schedule(0.05, 600, decay=False))(jnp.arange(600)), 0.05)

    # Adam on a noisy quadratic (64 seeds): the decayed rate ends nearer the optimum than the
    # constant one, which keeps jittering at its noise floor (RMS error 0.031 vs 0.082)
    def loss(x, eps):
        return jnp.sum((x - 1.0 + 0.3 * eps[0]) ** 2), 0.0

    keys = jax.random.split(jax.random.key(0), 64)
    err = [float(jnp.sqrt(jnp.mean((jax.vmap(lambda k: adam_elbo(
        loss, jnp.zeros(3), k, None, (3,), 400, 0.05, 1, jnp.float64, decay=d)[0])(keys) - 1.0) ** 2)))
        for d in (True, False)]
    assert err[0] < 0.5 * err[1], err
