"""Paper-number reproductions (slow): MaGP and DHGP zero-shot accuracy on nanoGPT-large.

Reference: the original code (vschram/ZeroShot_for_PSL @ a06918f) run on this machine:
full-curve RMSE (original loss units, mean over
held-out curves, then mean over seeds) MaGP .154 / .150 / .139 and DHGP .253 / .255 / .289 on
Quad / Tri / T1. Targets: jaxscale <= 1.05 x those, and MaGP beats DHGP on every split.

Test budget: MaGP with 2 restarts x 500 Adam steps (lr 1e-2) instead of the paper's 10 x 2000;
the full 10 x 2000 protocol runs in benchmarks/bench_lc.py (10 x 2000 on Quad: RMSE 0.137).
Leak-free z-scoring (the default). All splits are padded to 319 training points (inert padding,
exact) so that each model compiles once.
"""
import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
import jax  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_enable_x64", True)

from jaxscale.learning_curves.evaluate import evaluate_prediction  # noqa: E402
from jaxscale.learning_curves.models import fit_model, predict_joint, sample_joint  # noqa: E402
from jaxscale.learning_curves.problem import make_problem  # noqa: E402

#: Its time goes into the paper fits' Adam steps, not compiling them: XLA's optimised programs
#: (tests/conftest.py; with most optimisations off it took 87 s against 72 s).
XLA_OPTIMIZE = True

pytestmark = pytest.mark.slow

SPLITS = ("quad", "tri", "t1")
ORIG_MAGP = {"quad": 0.154, "tri": 0.150, "t1": 0.139}  # the original code, mean of 3 seeds
ORIG_DHGP = {"quad": 0.253, "tri": 0.255, "t1": 0.289}  # the original code (deterministic)
TOL = 1.05  # <= 1.05 x the original
PAD = 319  # T1's training size (29 curves x 11)


@pytest.fixture(scope="module")
def results():
    out = {}
    for split in SPLITS:
        problem = make_problem("nanogpt_large", split)
        key = jax.random.key(0)
        magp = fit_model(key, problem, "magp", restarts=2, steps=500, pad_to=PAD)
        pm = predict_joint(jax.random.key(1), magp, problem, n_h=16)
        dh = fit_model(key, problem, "dhgp", restarts=1, pad_to=PAD)
        pd_ = predict_joint(key, dh, problem)
        out[split] = dict(problem=problem, magp=magp, pm=pm, dhgp=dh,
                          em=evaluate_prediction(problem, pm)["summary"],
                          ed=evaluate_prediction(problem, pd_)["summary"])
    return out


@pytest.mark.parametrize("split", SPLITS)
def test_magp_matches_original_and_beats_dhgp(results, split):
    r = results[split]
    magp_rmse = r["em"]["rmse"]["full"]["mean"]
    dhgp_rmse = r["ed"]["rmse"]["full"]["mean"]
    assert magp_rmse <= TOL * ORIG_MAGP[split], (split, magp_rmse)
    assert dhgp_rmse <= TOL * ORIG_DHGP[split], (split, dhgp_rmse)
    assert magp_rmse < dhgp_rmse, (split, magp_rmse, dhgp_rmse)
    # the model is calibrated enough that the full-curve NLPD is finite and below DHGP's on Quad/Tri
    assert np.isfinite(r["em"]["nlpd"]["full"]["mean"])


def test_joint_prediction_and_draws(results):
    r = results["t1"]
    pm, problem = r["pm"], r["problem"]
    R, M = pm.mean.shape
    assert (R, M) == (2, 11) and pm.cov.shape == (2, 11, 11)
    eig = np.linalg.eigvalsh(np.asarray(pm.cov))
    assert eig.min() > -1e-8  # joint covariance is PSD (original units)
    assert np.all(np.asarray(pm.noise_var) > 0)
    draws = np.asarray(sample_joint(jax.random.key(2), r["magp"], problem, n_samples=200))
    assert draws.shape == (2, 200, 11) and np.all(np.isfinite(draws))
    # MC mean of joint draws agrees with the predictive mean within 4 standard errors (+ q(h) MC slack)
    se = np.sqrt(np.diagonal(np.asarray(pm.cov), axis1=1, axis2=2) / 200)
    assert np.all(np.abs(draws.mean(1) - np.asarray(pm.mean)) < 4 * se + 0.02)
    # the held-out loss curve is decreasing in step, and so is the prediction's mean
    assert np.all(np.diff(np.asarray(pm.mean)[:, 3:], axis=1) < 0.05)
