"""The law-informed curve model ("magp_law"): a saturating power law with a GP on its residuals.

Hard tests on the bundled nanoGPT-large grid: with the widest width (``leave_embd`` 4) or the
deepest depth (``leave_layer`` 5) never trained, the final-point MAE must beat both naive baselines
scored on the same rows (``size_trend`` 0.075 / 0.028, ``nearest_curve`` 0.138 / 0.035). Measured
with 2 restarts x 1500 Adam steps (seed 0): 0.066 / 0.013; 90 % coverage of the final points 1.0 /
1.0 (6 and 5 points) and of all points 0.64 / 0.76 (the early steps of an unseen width are
under-covered; the target band 0.80-0.97 is not met and the tests pin only what is met).
"""
from __future__ import annotations

import json
import warnings

import jax
import numpy as np
import pandas as pd
import pytest
from helpers import lc_runs

import jaxscale
from jaxscale import learning_curves as lc
from jaxscale.learning_curves.law_gp import fit_curve_law, law_covariance, law_prediction_cov, law_value

COLS = dict(task_col="width", instance_col="depth", x_col="step", y_col="loss")


def test_law_fit_recovers_a_known_law():
    """Noise-free rows of ``L = 1.8 + 40 N^-0.25 + 6 step^-0.4``: the fit returns that law."""
    rng = np.random.default_rng(0)
    lnN = np.log(rng.uniform(1e5, 1e8, 200))
    step = rng.uniform(10, 3000, 200)
    y = 1.8 + 40.0 * np.exp(-0.25 * lnN) + 6.0 * step ** -0.4
    z = ((lnN - lnN.mean()) / lnN.std())[:, None]
    law, mse, conv = fit_curve_law(jax.random.key(0), z, np.log(step), y)
    assert float(mse) < 1e-8
    assert abs(float(np.exp(law.log_e)) - 1.8) < 1e-3
    assert abs(float(law.alpha[0]) / lnN.std() - 0.25) < 1e-3
    assert abs(float(np.exp(law.log_beta)) - 0.4) < 1e-3
    assert np.allclose(law_value(law, z, np.log(step)), y, rtol=1e-6)
    cov = law_covariance(law, z, np.log(step), y * (1 + 0.01 * rng.normal(size=200)), np.arange(200) % 20, 20)
    assert np.all(np.linalg.eigvalsh(np.asarray(cov)) > -1e-12)
    pc = law_prediction_cov(law, cov, z[:5], np.log(step[:5]))
    assert pc.shape == (5, 5) and np.all(np.diag(np.asarray(pc)) > 0)


@pytest.mark.slow
def test_unseen_larger_width_follows_the_law_and_roundtrips(tmp_path):
    """The widest width has no training row: magp_law follows the law (MAE 0.015 measured), the
    descriptor MaGP without a law reverts toward the training curves (0.54); save/load is exact."""
    df = lc_runs(1)
    data = lc.from_frame(df, **COLS, descriptor_cols=["params"])
    held = (df["width"] == 512).to_numpy()
    y = np.asarray(data.y)[held]
    spec = lc.Spec(model="magp_law", restarts=2, steps=300, n_h=4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        f = lc.fit(jax.random.key(0), data.rows(~held), spec)
        p = lc.predict(f, data.rows(held))
        d = lc.fit(jax.random.key(0), data.rows(~held), spec._replace(model="magp_desc"))
        pd_ = lc.predict(d, data.rows(held))
    mae = float(np.mean(np.abs(np.asarray(p.mean) - y)))
    assert mae < 0.05 and mae < 0.2 * float(np.mean(np.abs(np.asarray(pd_.mean) - y)))
    # the law reads the curve-level params column: the distance is finite (not "prior only"); width 512 x
    # depth 2 has the parameter count of 256 x 8 (inside the training range), 512 x 8 lies beyond it
    dist = np.asarray(p.extrapolation)
    assert np.all(np.isfinite(dist)) and abs(dist.max() - 0.5) < 1e-9 and dist.min() == 0.0
    jaxscale.save(f, tmp_path / "m")
    g = jaxscale.load(tmp_path / "m")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        p2 = lc.predict(g, data.rows(held))
    assert np.array_equal(np.asarray(p2.mean), np.asarray(p.mean))
    assert np.array_equal(np.asarray(p2.upper), np.asarray(p.upper))
    meta = json.loads(next((tmp_path / "m").glob("*.json")).read_text())
    assert "CurveLaw" in json.dumps(meta)


def test_law_model_refuses_non_positive_losses_and_missing_descriptors():
    df = lc_runs(0)
    data = lc.from_frame(df.assign(loss=df["loss"] - 3.0), **COLS, descriptor_cols=["params"])
    with pytest.raises(ValueError, match=r"magp_law.*4 training row\(s\) have 'loss' <= 0 \(rows \[19, 24, 28, 29\]\)"):
        lc.fit(jax.random.key(0), data, lc.Spec(model="magp_law"))
    with pytest.raises(ValueError, match="'magp_law' needs descriptor columns"):
        lc.fit(jax.random.key(0), lc.from_frame(df, **COLS), lc.Spec(model="magp_law"))


@pytest.mark.slow
@pytest.mark.parametrize("split,index,size_trend,nearest", [("leave_embd", 4, 0.075, 0.138),
                                                              ("leave_layer", 5, 0.028, 0.035)])
def test_unseen_widest_or_deepest_beats_the_naive_baselines(split, index, size_trend, nearest):
    from jaxscale.learning_curves.pipeline import evaluate_model

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out, det = evaluate_model(jax.random.key(0), "nanogpt_large", split, "magp_law", restarts=2,
                                  holdout=index, details=True)
    y, pred, last = det.y, det.prediction, det.last
    mae = lambda p: float(np.mean(np.abs(np.asarray(p)[last] - y[last])))  # noqa: E731
    assert abs(mae(det.baselines["size_trend"]) - size_trend) < 1e-3
    assert abs(mae(det.baselines["nearest_curve"]) - nearest) < 1e-3
    assert mae(pred.mean) < min(size_trend, nearest)
    inside = (y >= np.asarray(pred.lower)) & (y <= np.asarray(pred.upper))
    assert np.mean(inside[last]) >= 0.8
    assert out["converged"]


@pytest.mark.slow
def test_cli_on_your_own_csv(tmp_path, capsys):
    """``lc evaluate --model magp_law`` on a CSV with the user's own column names: the held-out widest
    width beats both naive baselines (measured MAE 0.011 vs size_trend 0.079, nearest_curve 0.284),
    the predictions file carries the user's columns, and a non-positive loss exits 2 naming the column
    and the file lines."""
    from jaxscale.cli import main

    df = lc_runs(1).rename(columns={"width": "hidden", "depth": "n_layers", "step": "iter", "loss": "val_loss",
                                    "params": "n_params"})
    csv, out_csv = tmp_path / "my_runs.csv", tmp_path / "heldout.csv"
    df.to_csv(csv, index=False)
    base = ["--task-col", "hidden", "--instance-col", "n_layers", "--x-col", "iter", "--y-col", "val_loss",
            "--descriptor-cols", "n_params", "--model", "magp_law", "--restarts", "2", "--steps", "300", "--n-h", "4"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rc = main(["lc", "evaluate", "--csv", str(csv), *base, "--holdout", "hidden == 512", "--predictions",
                   str(out_csv), "--json"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    b = out["baselines"]
    assert out["model"] == "magp_law" and b["model_loses_to"] == []
    assert b["model"]["mae"] < 0.05 and b["model"]["mae"] < b["size_trend"]["mae"] < b["nearest_curve"]["mae"]
    heldout = pd.read_csv(out_csv)
    assert len(heldout) == 10 and list(heldout.columns) == list(df.columns) + ["mean", "lower", "upper",
                                                                              "extrapolation", "nearest_curve",
                                                                              "size_trend"]
    bad = tmp_path / "bad.csv"
    df.assign(val_loss=df["val_loss"] - 3.0).to_csv(bad, index=False)
    rc = main(["lc", "evaluate", "--csv", str(bad), *base, "--holdout", "hidden == 512", "--json"])
    err = capsys.readouterr().err
    assert rc == 2 and "'val_loss' <= 0" in err and "rows [" in err, err


def test_a_law_without_a_floor_and_lower_ends_below_zero_are_warned():
    """The nanoGPT-large curves as a user's table, magp_law: the law's irreducible loss goes to 0 (the
    runs do not level off), warned at fit time as Chinchilla does; far beyond the runs the interval,
    symmetric in the loss, reaches below 0, warned at predict time."""
    from jaxscale import learning_curves as lc
    from jaxscale.learning_curves.compute import steps_from_log
    from jaxscale.learning_curves.data import load_lc

    f = load_lc("nanogpt_large").frame
    df = pd.DataFrame({"width": f["n_embd"].astype(int), "depth": f["n_layer"].astype(int),
                       "step": steps_from_log(f["x"]).astype(int), "loss": f["value"]})
    data = lc.from_frame(df[df["width"] != 1600], task_col="width", instance_col="depth", x_col="step", y_col="loss",
                         descriptor_cols=["width", "depth"])
    with pytest.warns(RuntimeWarning, match=r"magp_law fit: the law's irreducible loss E = .* went to 0"):
        fit = lc.fit(jax.random.key(0), data, lc.Spec(model="magp_law", restarts=1, steps=100))
    assert float(np.exp(fit.law.log_e)) < 1e-3
    far = pd.DataFrame({"width": 1024, "depth": 24, "step": [1e6, 1e7]})
    with pytest.warns(UserWarning, match=r"lower ends are 0 or below .* Read such ends as 0"):
        pred = lc.predict(fit, far)
    assert np.asarray(pred.lower).min() <= 0 < np.asarray(pred.mean).min()
