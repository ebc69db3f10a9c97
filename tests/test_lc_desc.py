"""Descriptor MaGP ("magp_desc"): kernel, scaler for unseen tasks, accuracy, CLI.

Accuracy numbers measured with exactly the settings used here (2 restarts x 500 Adam steps,
lr 1e-2, key 0, n_h 16, training sets padded to 330 points so both fits share one compiled
program), leak-free z-scoring:

* nanoGPT-large Quad: magp_desc full-curve RMSE 0.062 (original MaGP 0.154, the paper code on this machine;
  aim: >= 20 % lower, i.e. <= 0.123).
* leave_embd (embedding 1600 held out, an unseen task): magp_desc 0.134, plain MaGP 0.489,
  DHGP 0.482 (benchmarks/bench_lc_splits.py has every holdout).
"""
import json
import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_enable_x64", True)

from jaxscale.learning_curves.descriptors import (  # noqa: E402
    descriptor_tables,
    observed_tasks,
    regress_task_scaler,
    with_scaler,
)
from jaxscale.learning_curves.evaluate import evaluate_prediction  # noqa: E402
from jaxscale.learning_curves.magp_desc import (  # noqa: E402
    DescKernel,
    DescParams,
    desc_constrained,
    desc_gram,
    init_desc,
    pooled_noise,
)
from jaxscale.learning_curves.models import fit_model, predict_joint, sample_joint  # noqa: E402
from jaxscale.learning_curves.problem import make_problem  # noqa: E402

PAD = 330
ORIG_MAGP_QUAD = 0.154  # original code on this machine
MAGP_EMBD4 = 0.489  # plain MaGP, same setting (benchmarks/results/bench_lc_splits.json, leave_embd4)


@pytest.fixture(scope="module")
def fits():
    key = jax.random.key(0)
    out = {}
    for name, split, hold in (("quad", "quad", None), ("embd4", "leave_embd", 4)):
        pr = make_problem("nanogpt_large", split, holdout=hold)
        f = fit_model(key, pr, "magp_desc", restarts=2, steps=500, pad_to=PAD)
        p = predict_joint(jax.random.key(1), f, pr, n_h=16)
        out[name] = dict(problem=pr, fit=f, pred=p, ev=evaluate_prediction(pr, p)["summary"])
    return out


def test_descriptor_tables_follow_the_hierarchy():
    pr = make_problem("nanogpt_large", "quad")
    t = descriptor_tables(pr)
    assert t.task.shape == (5, 1) and t.rep.shape == (6, 1) and t.curve.shape == (30, 1)
    np.testing.assert_allclose([t.task.mean(), t.task.std(), t.curve.mean(), t.curve.std()], [0, 1, 0, 1], atol=1e-12)
    assert np.all(np.diff(np.asarray(t.task[:, 0])) > 0) and np.all(np.diff(np.asarray(t.rep[:, 0])) > 0)
    # ln N grows with width and depth; curve id = d * R + r
    lnN = np.asarray(t.curve[:, 0]).reshape(5, 6)
    assert np.all(np.diff(lnN, axis=0) > 0) and np.all(np.diff(lnN, axis=1) > 0)
    ex = descriptor_tables(make_problem("nanogpt_large_exchanged", "t1"))
    # exchanged: tasks are depths, instances widths; the same standardised values
    np.testing.assert_allclose(ex.task, t.rep, atol=1e-12)
    np.testing.assert_allclose(ex.rep, t.task, atol=1e-12)
    np.testing.assert_allclose(np.sort(ex.curve[:, 0]), np.sort(t.curve[:, 0]), atol=1e-12)
    with pytest.raises(ValueError, match="n_embd / n_layer"):
        descriptor_tables(make_problem("multilingual_same_source_en", "extrapolate9"))


def test_desc_kernel_matches_gram_and_is_psd():
    pr = make_problem("nanogpt_large", "t1")
    t = descriptor_tables(pr)
    p = init_desc(jax.random.key(3), t)
    c = desc_constrained(p)
    h = p.h_mean
    tr = pr.train
    sub = tr._replace(**{f: getattr(tr, f)[::3] for f in ("x", "p", "r", "d", "c", "y")})
    K = jax.jit(desc_gram)(c, h, t, pr.xgrid, sub, sub)
    k = DescKernel(c, h, t)
    X = (sub.x, sub.r, sub.d, sub.c)
    np.testing.assert_allclose(k(X, X), K, atol=1e-13)
    assert np.linalg.eigvalsh(np.asarray(K)).min() > -1e-10
    # unseen-instance semantics: correlation decays with the depth distance (no indicator)
    assert isinstance(p, DescParams) and p.log_v_scale.shape == (1,)


def test_unseen_task_scaler_and_pooled_noise():
    pr = make_problem("nanogpt_large", "leave_embd", holdout=4)
    obs = observed_tasks(pr)
    assert obs.tolist() == [True, True, True, True, False]
    sc = regress_task_scaler(pr, descriptor_tables(pr))
    np.testing.assert_array_equal(sc.mean[:4], pr.scaler.mean[:4])
    # the regressed constants of the held-out task (1600) are close to its true (leaky) ones,
    # 6.361 / 2.844 (leaky constants); measured 6.290 / 2.856; the pooled fallback (6.752 / 2.978) is far
    assert abs(sc.mean[4] - 6.361) < 0.1 and abs(pr.scaler.mean[4] - 6.361) > 0.3
    assert abs(sc.std[4] - 2.844) < 0.03
    pr2 = with_scaler(pr, sc)
    np.testing.assert_allclose(np.asarray(pr2.train.y), np.asarray(pr.train.y), atol=1e-12)  # observed tasks unchanged
    noise = pooled_noise(jnp.array([1e-2, 4e-2, 1e-2, 4e-2, 7.0]), obs)
    assert float(noise[4]) == pytest.approx(2e-2) and float(noise[0]) == 1e-2
    assert regress_task_scaler(make_problem("nanogpt_large", "quad"), descriptor_tables(pr)) is not None


@pytest.mark.slow
def test_desc_meets_the_20_percent_aim_on_quad(fits):
    r = fits["quad"]["ev"]["rmse"]["full"]["mean"]
    assert r <= 0.8 * ORIG_MAGP_QUAD, r  # aim: >= 20 % below the original MaGP
    assert r <= 0.075, r  # measured 0.062 at 2 x 500 (this setting)
    assert fits["quad"]["ev"]["nlpd"]["full"]["mean"] < -1.0  # measured -1.46


@pytest.mark.slow
def test_desc_predicts_an_unseen_embedding(fits):
    d = fits["embd4"]["ev"]["rmse"]["full"]["mean"]
    assert d <= 0.16, d  # measured 0.134
    assert d < 0.5 * MAGP_EMBD4, d  # plain MaGP (categorical task) at the same setting: 0.489
    pred = fits["embd4"]["pred"]
    assert np.all(np.isfinite(np.asarray(pred.mean))) and np.all(np.asarray(pred.noise_var) > 0)
    fit = fits["embd4"]["fit"]
    assert fit.result.observed.tolist() == [True] * 4 + [False]
    # predictions use the descriptor-regressed scaler, not the pooled fallback
    assert fit.result.scaler.mean[4] != fits["embd4"]["problem"].scaler.mean[4]
    draws = np.asarray(sample_joint(jax.random.key(2), fit, fits["embd4"]["problem"], n_samples=50))
    assert draws.shape == (2, 50, 66) and np.all(np.isfinite(draws))
    assert np.abs(draws.mean(1) - np.asarray(pred.mean)).max() < 0.3


def test_cli_magp_desc_leave_embd_json_and_plot(tmp_path, capsys):
    from jaxscale.cli import main

    png = tmp_path / "desc.png"
    rc = main(["lc", "evaluate", "--model", "magp_desc", "--split", "leave_embd", "--leave-index", "2",
               "--restarts", "1", "--steps", "3", "--plot", str(png), "--json"])
    assert rc in (0, None)
    out = json.loads(capsys.readouterr().out)
    assert out["model"] == "magp_desc" and out["split"] == "leave_embd2" and out["steps"] == 3
    # the same keys as the magp output (pipeline.evaluate_model), plus the plot path
    assert set(out) == {"dataset", "split", "model", "leaky", "restarts", "restarts_ok", "excluded_restarts",
                        "steps", "n_train", "n_test", "n_heldout_curves", "rmse", "mae", "nlpd",
                        "coverage_50", "coverage_90", "per_restart_rmse_full", "fit_seconds", "predict_seconds",
                        "plot", "converged", "convergence", "extrapolation", "baselines", "scores_are"}
    assert out["converged"] is False and "Adam steps" in out["convergence"]["reason"]  # 3 steps
    assert out["extrapolation"]["n_outside"] == 0  # width 960 lies inside the descriptor range
    for k in ("rmse", "mae", "nlpd"):
        assert set(out[k]) == {"full", "partial", "last"} and np.isfinite(out[k]["full"]["mean"])
    assert {"fit_seconds", "predict_seconds", "restarts_ok", "n_heldout_curves"} <= set(out)
    assert out["n_heldout_curves"] == 6 and png.exists() and png.stat().st_size > 1000
    rc = main(["lc", "evaluate", "--model", "magp_desc", "--dataset", "bilingual_src_over_tgt_mBart_bleu",
               "--split", "zeroshot", "--json"])
    assert rc == 2 and "n_embd / n_layer" in capsys.readouterr().err
