"""Observational scaling laws (Ruan et al. 2024, arXiv 2405.10938 v3): exact reproduction.

Every hard number below is the paper's printed value, reproduced exactly by an independent
numpy/scipy re-implementation of the original code's procedure on the bundled CSVs ("reproduced"),
unless a comment says otherwise. "Printed digits" means: the value formatted the way the
paper prints it (2 decimals for coefficients, 2 significant digits for MSEs) must be equal.
"""
from __future__ import annotations

import functools

import jax
import numpy as np
import pytest

from jaxscale.observational import pipeline, splits, tasks
from jaxscale.observational.constants import BASE_METRICS
from jaxscale.observational.data import core_models
from jaxscale.observational.fit import SigmoidLaw
from jaxscale.observational.pca import explained_variance, fit_transform

jax.config.update("jax_enable_x64", True)  # conftest also does this; keeps the file standalone


def e1(v):
    """Two significant digits, as the paper prints MSEs."""
    return f"{v:.1e}"


@functools.lru_cache(maxsize=None)
def run(name, **kw):
    return pipeline.run_task(name, **kw)


@functools.lru_cache(maxsize=None)
def base(name, reg="flops"):
    return pipeline.run_baseline(name, reg)


def law_str(r):
    return f"{1 - r.floor:.2f}σ({r.slope:.2f}x{r.intercept:+.2f})+{r.floor:.2f}"


# ----------------------------------------------------------------------------- PCA (Fig. 2)
def test_core_set_and_explained_variance():
    df = core_models()
    assert len(df) == 77 and df["Model Family"].nunique() == 21  # the paper's core set
    B = df[list(BASE_METRICS)].to_numpy(float)
    assert int(np.isnan(B).sum()) == 6  # 6 of 616 cells missing
    ev = np.asarray(explained_variance(B))
    # reproduced (Fig. 2): 0.8016 / top-3 0.9670; individual 0.8016, 0.1190, 0.0463, 0.0136, 0.0113
    assert f"{ev[0]:.4f}" == "0.8016"
    assert f"{ev[:3].sum():.4f}" == "0.9670"
    np.testing.assert_allclose(ev, [0.8016, 0.1190, 0.0463, 0.0136, 0.0113], atol=5e-5)


def test_loadings_oriented():
    B = core_models()[list(BASE_METRICS)].to_numpy(float)
    _, pca, _ = fit_transform(B, np.ones(len(B), bool))
    want = np.array([  # reproduced loadings, largest-|loading| positive
        [.448, .344, .379, .242, .085, .552, .214, .347],
        [-.120, .301, .615, .303, -.194, -.433, .187, -.405],
        [-.317, .041, .101, .000, -.267, -.353, .094, .826]])
    np.testing.assert_allclose(np.asarray(pca.components[:3]), want, atol=5e-4)


def test_impute_uses_train_rows_only():
    B = core_models()[list(BASE_METRICS)].to_numpy(float)
    train = np.zeros(len(B), bool)
    train[:40] = True
    Bi, pca, S = fit_transform(B, train)
    B2 = B.copy()
    B2[~train] = np.where(np.isfinite(B2[~train]), 0.5, np.nan)  # change only test rows
    Bi2, pca2, S2 = fit_transform(B2, train)
    np.testing.assert_allclose(np.asarray(pca.components), np.asarray(pca2.components))
    np.testing.assert_allclose(np.asarray(S)[train], np.asarray(S2)[train])
    assert np.all((np.asarray(Bi) >= 0) & (np.asarray(Bi) <= 1))
    with pytest.raises(ValueError, match="training rows"):
        fit_transform(B, np.zeros(len(B), bool))


# ----------------------------------------------------------------------------- splits
def test_split_rules():
    spec = tasks.get_task("gsm8k_cot")
    prep = tasks.prepare(spec)
    df = prep.df
    # FLOPs <= 84 inclusive; missing FLOPs and pre-registered -> test (the original code's split_data)
    assert prep.train[df["Model"] == "meta-llama/Llama-2-7b-hf"].all()
    assert not prep.train[df["Model"] == "mistralai/Mistral-7B-v0.1"].any()
    assert not prep.train[df["Model"] == "google/gemma-2-2b"].any()  # C = 24 but pre-registered
    assert prep.train.sum() == 47
    assert list(splits.rank_top_split([0.1, 0.9, 0.5, 0.7], 0.5)) == [True, False, True, False]
    assert splits.aue([0.05, 0.1, 0.2], [1.0, 1.0, 3.0]) == pytest.approx(0.05 + 0.2)


# ----------------------------------------------------------------------------- hard reproductions
def test_agentbench_hard():
    r = run("agentbench")
    # paper, agents (reproduced): y = 0.99σ(1.00x − 5.52) + 0.01, MSE 3.7e-4 / 2.2e-4
    assert law_str(r) == "0.99σ(1.00x-5.52)+0.01"
    assert (e1(r.mse_train), e1(r.mse_test)) == ("3.7e-04", "2.2e-04")
    # PC coefficients (2.32, 0.79, −2.82), intercept −2.96
    np.testing.assert_allclose(np.asarray(r.params.slopes), [2.32, 0.79, -2.82], atol=6e-3)
    assert float(r.params.intercept) == pytest.approx(-2.96, abs=6e-3)
    pred = np.asarray(pipeline.predict(r.params, r.design.S_test[:, :3]))
    np.testing.assert_allclose(np.sort(pred)[::-1], [0.380, 0.252], atol=6e-4)  # GPT-4, Claude-2


def test_agentboard():
    r = run("agentboard")
    # paper (reproduced): y = 0.97σ(0.98x − 6.60) + 0.03, 2.9e-4 / 3.6e-3
    assert law_str(r) == "0.97σ(0.98x-6.60)+0.03"
    assert (e1(r.mse_train), e1(r.mse_test)) == ("2.9e-04", "3.6e-03")


def test_word_unscramble_hard():
    r = run("word_unscramble")
    # paper, emergent (reproduced): σ(2.00x − 6.11); 1.3e-4 / 4.0e-3; 44 train (31 test)
    assert (r.n_train, r.n_test) == (44, 31)
    assert (f"{r.slope:.2f}", f"{r.intercept:.2f}", r.floor) == ("2.00", "-6.11", 0.0)
    assert (e1(r.mse_train), e1(r.mse_test)) == ("1.3e-04", "4.0e-03")
    # Table C.1: logit Y = 6.74PC1 − 3.22PC2 − 1.37PC3 − 4.93 (our optimum within 0.02)
    np.testing.assert_allclose(np.asarray(r.params.slopes), [6.74, -3.22, -1.37], atol=0.025)


def test_gsm8k_cot_hard():
    r = run("gsm8k_cot")
    # paper, post-training (reproduced): σ(2.04x − 5.53); 3.1e-3 / 6.0e-3
    assert law_str(r) == "1.00σ(2.04x-5.53)+0.00"
    assert (e1(r.mse_train), e1(r.mse_test)) == ("3.1e-03", "6.0e-03")
    # Table C.1: 2.56PC1 + 4.64PC2 + 4.21PC3 − 2.50
    np.testing.assert_allclose(np.asarray(r.params.slopes), [2.56, 4.64, 4.21], atol=6e-3)


@pytest.mark.parametrize("name,law,mse_tr,mse_te", [
    # paper (reproduced): emergent, post-training, BBH, LB-v2
    ("arith_2dm", "1.00σ(2.22x-4.45)+0.00", "2.8e-03", "9.9e-03"),
    ("arith_3ds", "1.00σ(5.50x-8.92)+0.00", "6.5e-03", "1.3e-02"),
    ("ipa_bleu", "1.00σ(3.81x-8.78)+0.00", "5.8e-04", "8.2e-02"),
    ("arith_3da", None, "1.6e-02", "2.5e-02"),
    ("arith_2da", None, "2.4e-02", "3.4e-03"),
    ("gsm8k_naive", "1.00σ(1.09x-4.77)+0.00", "4.6e-05", "2.6e-03"),  # the paper's own numbers
    ("gsm8k_cot_sc", "1.00σ(2.19x-5.74)+0.00", "2.9e-03", "6.4e-03"),
    ("bbh_naive", "1.00σ(1.26x-4.87)+0.00", "4.1e-04", "3.0e-03"),
    ("bbh_cot", "1.00σ(1.62x-5.03)+0.00", "1.2e-03", "9.7e-03"),
    ("lbv2_math", "1.00σ(2.27x-9.33)+0.00", "6.6e-05", "2.2e-03"),
    ("lbv2_bbh", "1.00σ(1.19x-4.22)+0.00", "3.4e-04", "1.5e-03"),
])
def test_published_fits(name, law, mse_tr, mse_te):
    r = run(name)
    if law is not None:
        assert law_str(r) == law
    assert (e1(r.mse_train), e1(r.mse_test)) == (mse_tr, mse_te)


def test_gpqa_close():
    # paper, LB-v2: σ(1.84x − 7.70); 2.7e-4 / 8.3e-4. Our L-BFGS optimum: σ(1.83x − 7.69),
    # 2.73e-4 / 8.18e-4 (BFGS endpoint differs slightly) -> relative tolerance 3%.
    r = run("lbv2_gpqa")
    assert r.slope == pytest.approx(1.84, rel=1e-2) and r.intercept == pytest.approx(-7.70, rel=1e-2)
    assert r.mse_train == pytest.approx(2.7e-4, rel=3e-2) and r.mse_test == pytest.approx(8.3e-4, rel=3e-2)


@pytest.mark.parametrize("name,coef,mse_tr,mse_te", [
    # endpoints that differ from BFGS (scipy's BFGS stopped early on these non-convex problems): evaluate the published coefficients
    # Persian QA: the 2-decimal coefficients give 3.14e-3 (printed 3.2e-3): rounding, see below
    ("persian_qa", (2.86, 3.18, -0.19, -5.26), "1.8e-04", 3.2e-3),
    ("arith_3ds", (5.98, 8.74, 39.55, -4.68), "6.5e-03", "1.3e-02"),
    ("word_unscramble", (6.74, -3.22, -1.37, -4.93), "1.3e-04", "4.0e-03"),
    ("arith_2dm", (3.60, 4.24, 8.05, -2.68), "2.8e-03", "9.9e-03"),
])
def test_published_coefficients(name, coef, mse_tr, mse_te):
    dz = run(name).design
    r = pipeline.evaluate_params(dz, SigmoidLaw(coef[3], np.array(coef[:3]), 0.0))
    assert e1(r.mse_train) == mse_tr
    if isinstance(mse_te, float):  # rounded published coefficients: 3% relative
        assert r.mse_test == pytest.approx(mse_te, rel=3e-2)
    else:
        assert e1(r.mse_test) == mse_te


def test_persian_qa_forms():
    r = pipeline.evaluate_params(run("persian_qa").design,
                                 SigmoidLaw(-5.26, np.array([2.86, 3.18, -0.19]), 0.0))
    # paper: σ(2.32x − 8.43) on the Llama-2-equivalent axis; 40 train (27 test)
    assert (f"{r.slope:.2f}", f"{r.intercept:.2f}") == ("2.32", "-8.43")
    assert (r.n_train, r.n_test) == (40, 27)


@pytest.mark.parametrize("name,law,mse_tr,mse_te", [
    # paper, FLOPs baselines (reproduced; natural-log FLOPs as in the original code)
    ("word_unscramble", "1.00σ(1.04x-7.03)+0.00", "2.6e-04", "1.3e-02"),
    ("persian_qa", "1.00σ(0.57x-6.40)+0.00", "2.7e-04", "2.1e-02"),
    ("arith_3ds", "1.00σ(1.07x-4.67)+0.00", "9.1e-03", "6.3e-02"),
    ("arith_2dm", "1.00σ(0.50x-3.17)+0.00", "6.2e-03", "1.2e-01"),
    ("gsm8k_naive", "0.99σ(0.36x-4.46)+0.01", "4.6e-04", "8.9e-03"),
    ("gsm8k_cot", "0.99σ(0.58x-4.01)+0.01", "1.4e-02", "4.5e-02"),
    ("gsm8k_cot_sc", "0.98σ(0.68x-4.46)+0.02", "1.5e-02", "4.6e-02"),
    ("lbv2_gpqa", "1.00σ(0.55x-6.06)+0.00", "4.9e-04", "2.3e-03"),
    ("lbv2_math", "1.00σ(0.77x-7.15)+0.00", "2.5e-04", "1.3e-02"),
    ("lbv2_bbh", "1.00σ(0.19x-2.74)+0.00", "2.7e-03", "2.7e-02"),
])
def test_flops_baselines(name, law, mse_tr, mse_te):
    r = base(name)
    assert law_str(r) == law
    assert (e1(r.mse_train), e1(r.mse_test)) == (mse_tr, mse_te)


def test_size_baseline():
    # paper: model-size baseline test MSE WU 1.3e-1, 3ds 5.6e-1, 2dm 3.6e-1
    got = [e1(base(n, "size").mse_test) for n in ("word_unscramble", "arith_3ds", "arith_2dm")]
    assert got == ["1.3e-01", "5.6e-01", "3.6e-01"]


@pytest.mark.parametrize("name,want", [
    # paper, "Number of PCs" / agents "Varying K" (reproduced), test MSE for K = 1..4
    ("word_unscramble", ["3.8e-02", "7.3e-03", "4.0e-03", "2.3e-02"]),
    ("arith_3ds", ["3.6e-01", "3.5e-01", "1.3e-02", None]),  # K=4: BFGS endpoint differs
    ("arith_2dm", ["6.9e-02", "5.6e-02", "9.9e-03", "2.7e-02"]),
    ("gsm8k_cot", ["2.1e-02", "8.5e-03", "6.0e-03", "2.7e-02"]),
    ("gsm8k_cot_sc", ["2.3e-02", "9.3e-03", "6.4e-03", "2.5e-02"]),
    ("agentbench", ["5.7e-03", "2.6e-04", "2.2e-04", "1.0e-03"]),
    ("agentboard", ["2.0e-02", "1.3e-03", "3.6e-03", "1.8e-02"]),
])
def test_k_sweep(name, want):
    got = [e1(run(name, k=k).mse_test) for k in (1, 2, 3, 4)]
    assert [g if w is not None else None for g, w in zip(got, want)] == want


def test_without_preregistered():
    # paper: without the pre-registered models, CoT 4.7e-3, SC 5.6e-3
    got = [e1(run(n, prereg="exclude").mse_test) for n in ("gsm8k_cot", "gsm8k_cot_sc")]
    assert got == ["4.7e-03", "5.6e-03"]


def test_every_task_registered():
    names = set(tasks.task_names())
    assert {"word_unscramble", "persian_qa", "ipa_bleu", "arith_3ds", "arith_3da", "arith_2dm",
            "arith_2da", "gsm8k_naive", "gsm8k_cot", "gsm8k_cot_sc", "bbh_naive", "bbh_cot",
            "agentbench", "agentboard", "lbv2_gpqa", "lbv2_math", "lbv2_bbh"} <= names
    with pytest.raises(ValueError, match="unknown task"):
        tasks.get_task("nope")


def test_bootstrap_refits_match_lbfgs_and_flag_steep_fits(key):
    """1000 bootstraps run as damped-Newton refits from the optimum (benchmarks/bench_observational.py);
    each refit must land where the paper's L-BFGS fit from the original start lands."""
    from jaxscale.observational.fit import bootstrap_band, bootstrap_law, fit_law, fit_law_batch

    r = run("gsm8k_cot")
    X, y = r.design.S_train[:, :3], r.design.y_train
    params, res = bootstrap_law(key, X, y, 64, floor=True, loss="huber")
    assert bool(np.all(res.converged))
    W = np.zeros((3, len(y)))
    W[:] = np.asarray(jax.vmap(lambda k: jax.random.poisson(k, 1.0, (len(y),)))(jax.random.split(key, 3)))
    pb, _ = fit_law_batch(X, y, W, floor=True)
    for i in range(3):
        p1, f1 = fit_law(X, y, floor=True, w=W[i])
        assert bool(f1.converged)
        np.testing.assert_allclose(np.asarray(pb.slopes[i]), np.asarray(p1.slopes), rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(float(pb.floor[i]), float(p1.floor), atol=1e-6)
    band = bootstrap_band(params, res.converged, r.design.S_test[:, :3])
    assert band.shape == (2, r.n_test) and np.all(band[0] <= band[1])
    # the full-data fit lies inside its own bootstrap band for most held-out models
    from jaxscale.observational.fit import predict_np

    mid = predict_np(r.params, r.design.S_test[:, :3])
    assert np.mean((band[0] <= mid) & (mid <= band[1])) >= 0.9
    with pytest.raises(ValueError, match=r"W must be \(B, 47\)"):
        fit_law_batch(X, y, np.ones((2, 3)), floor=True)
