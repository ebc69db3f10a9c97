"""The contract on Chinchilla: from_frame -> fit -> predict -> save/load, jit/vmap, and the CLI on a
CSV this test writes (fit with hold-out, predictions, save; predict; optimal)."""
import dataclasses
import json
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

import jaxscale
from jaxscale import chinchilla as ch
from jaxscale.cli import main
from tests.helpers import chinchilla_runs as runs

# a small grid of runs from a known law, with 1% log-normal noise
TRUE = dict(E=1.7, A=400.0, B=1500.0, alpha=0.34, beta=0.30)
SMALL = ch.Spec(screen_steps=20, polish_top=8)


COLS = dict(n_col="params", d_col="tokens", loss_col="val_loss")


@pytest.fixture(scope="module")
def fitted():
    data = ch.from_frame(runs(), **COLS)
    return data, ch.fit(jax.random.key(0), data, SMALL._replace(n_boot=64))


def test_contract_round_trip(fitted, tmp_path):
    data, fit = fitted
    assert fit.columns == (("N", "params"), ("D", "tokens"), ("target", "val_loss"))
    assert bool(fit.converged)
    for i, name in ((3, "alpha"), (4, "beta")):  # the truth lies inside the bootstrap range of each exponent
        lo, hi = np.percentile(np.asarray(fit.boot_theta)[:, i], [2.5, 97.5])
        assert lo < TRUE[name] < hi, (name, lo, hi)
    query = runs(seed=1)
    pred = ch.predict(fit, query)
    y = query["val_loss"].to_numpy()
    assert np.mean(np.abs(np.asarray(pred.mean) - y)) < 0.05
    assert np.all(np.asarray(pred.lower) < np.asarray(pred.mean)) and np.all(np.asarray(pred.mean) < np.asarray(pred.upper))
    cover = np.mean((y >= np.asarray(pred.lower)) & (y <= np.asarray(pred.upper)))
    assert cover >= 0.7, cover  # 90% intervals on 25 fresh runs of the same law
    jaxscale.save(fit, tmp_path / "m")
    back = jaxscale.load(tmp_path / "m")
    assert isinstance(back, ch.Fit) and back.spec == fit.spec and back.columns == fit.columns
    pred2 = ch.predict(back, query)
    for a, b in zip(pred[:3], pred2[:3]):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    key = jax.random.key(3)
    s1, s2 = ch.predict(fit, query, key=key), ch.predict(back, query, key=key)
    np.testing.assert_array_equal(np.asarray(s1.samples), np.asarray(s2.samples))
    # the refits in turn, each draw with its own residual noise, until there are >= 1,000 draws
    reps = -(-1000 // len(fit.boot_theta))
    assert s1.samples.shape == (reps * len(fit.boot_theta), len(query))


def test_many_rows_are_predicted_in_chunks_without_keeping_the_draws(fitted, monkeypatch, caplog):
    """Draws x rows beyond MAX_DRAW_CELLS (1,000 draws x 200,000 rows had allocated 12.8 GB and
    failed): the interval comes from draws in chunks of rows, ``samples`` is None and a log says so;
    without a key the normal interval is the same numbers in chunks."""
    import importlib

    pr = importlib.import_module("jaxscale.chinchilla.predict")  # the package exports a predict function
    _, fit = fitted
    query, key = runs(seed=1), jax.random.key(3)
    whole, plain = ch.predict(fit, query, key=key), ch.predict(fit, query)
    monkeypatch.setattr(pr, "MAX_DRAW_CELLS", 3 * 1024)  # 1,024 draws: 3 rows per chunk
    with caplog.at_level("INFO", logger="jaxscale"):
        chunked = ch.predict(fit, query, key=key)
    assert chunked.samples is None and "draws are not returned" in caplog.text
    np.testing.assert_array_equal(np.asarray(chunked.mean), np.asarray(whole.mean))
    for a, b in ((chunked.lower, whole.lower), (chunked.upper, whole.upper)):  # other draws, same quantiles
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=0.01)
    for a, b in zip(ch.predict(fit, query)[:3], plain[:3]):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-12)


def test_fit_is_a_pytree_and_core_vmaps(fitted):
    data, fit = fitted
    same = jax.jit(lambda f: f)(fit)
    assert same.spec == fit.spec and float(same.objective) == pytest.approx(float(fit.objective))
    keys = jax.random.split(jax.random.key(1), 3)
    starts = ch.start_grid()[::45]  # 100 of the 4,500 grid starts keep this test quick
    datas = [ch.from_frame(runs(seed=s), **COLS) for s in range(3)]
    batch = jax.tree_util.tree_map(lambda *a: jnp.stack(a), *datas)
    # one program over 3 keys x 3 datasets of the same shape equals 3 separate calls
    many = jax.jit(jax.vmap(lambda k, d: ch.fit_core(k, d, SMALL, starts)))(keys, batch)
    core = jax.jit(ch.fit_core, static_argnames="spec")
    for i in range(3):
        one = core(keys[i], datas[i], SMALL, starts)
        np.testing.assert_allclose(np.asarray(many.params[i]), np.asarray(one.params), rtol=1e-6, atol=1e-8)
        assert float(many.loss[i]) == pytest.approx(float(one.loss), rel=1e-9)


def test_bad_input_names_the_column_and_rows():
    df = runs()
    df.loc[3, "tokens"] = -1.0
    with pytest.raises(ValueError, match=r"'tokens' has 1 non-positive value\(s\) at rows \[3\]"):
        ch.from_frame(df, **COLS)
    dup = pd.concat([runs().iloc[:3], runs().iloc[:1]])
    with pytest.raises(ValueError, match="repeat the same.*--agg mean"):
        ch.from_frame(dup, **COLS)
    merged, n = ch.aggregate(dup, how="mean", **COLS)
    assert n == 1 and len(merged) == 3


def test_optimal_allocation_is_the_constrained_minimum(fitted):
    _, fit = fitted
    C = 1e21
    res = ch.optimal(fit, [C])
    n, d = float(res["N"].mean[0]), float(res["D"].mean[0])
    assert 6 * n * d == pytest.approx(C, rel=1e-9)
    grid = np.geomspace(n / 10, n * 10, 2001)
    p = fit.params
    loss = float(p.E) + float(p.A) / grid ** float(p.alpha) + float(p.B) / (C / 6 / grid) ** float(p.beta)
    assert grid[np.argmin(loss)] == pytest.approx(n, rel=0.01)
    assert float(res["N"].lower[0]) < n < float(res["N"].upper[0])
    # an optimum far beyond the training runs says how far, and warns (as predict does)
    with pytest.warns(UserWarning, match=r"Chinchilla optimal: 1 of 1 queries lie outside the training data"):
        far = ch.optimal(fit, [C * 1e6])
    assert float(np.asarray(far["extrapolation"])[0]) > float(np.asarray(res["extrapolation"])[0]) + 1.0


def test_cli_csv_holdout_predictions_save_predict_optimal(tmp_path, capsys):
    path = tmp_path / "runs.csv"
    runs().to_csv(path, index=False)
    base = ["chinchilla", "fit", "--csv", str(path), "--n-col", "params", "--d-col", "tokens",
            "--loss-col", "val_loss", "--bootstrap", "32", "--json"]
    assert main(base + ["--holdout-top", "4", "--predictions", str(tmp_path / "p.csv"),
                        "--save", str(tmp_path / "m")]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["holdout"]["n"] == 4 and out["holdout"]["mae"] < 0.1 and 0 <= out["holdout"]["coverage"] <= 1
    assert out["excluded_rows"] == [] and out["n_points"] == 21 and out["exclude_top_loss"] == 0
    assert out["holdout"]["max_extrapolation_decades"] > 0
    # the naive baseline is scored on the same rows (here it is close: MAE 0.058 vs 0.060, and says so)
    assert out["baselines"]["power_law_in_compute"]["n"] == 4
    assert out["baselines"]["model_loses_to"] in ([], ["power_law_in_compute"])
    check = out["baselines"]["model_interval"]  # the 90 % interval, checked on the same 4 rows
    assert check["n"] == 4 and check["coverage"] == out["holdout"]["coverage"] and check["level"] == 0.9
    pred = pd.read_csv(tmp_path / "p.csv")
    assert list(pred.columns) == ["params", "tokens", "val_loss", "mean", "lower", "upper", "extrapolation", "heldout",
                                  "power_law_in_compute"]
    assert len(pred) == 25 and pred["heldout"].sum() == 4
    # the baseline's value on the held-out rows (empty on the others) is the one the JSON scored
    law = pred["power_law_in_compute"]
    assert law.notna().to_numpy().tolist() == pred["heldout"].tolist()
    mae = (law - pred["val_loss"]).abs().mean()
    assert mae == pytest.approx(out["baselines"]["power_law_in_compute"]["mae"], rel=1e-12)
    # a saved model predicts new rows: CLI and Python agree exactly
    new = runs(seed=5).iloc[:6]
    new.to_csv(tmp_path / "new.csv", index=False)
    assert main(["chinchilla", "predict", "--model", str(tmp_path / "m"), "--csv", str(tmp_path / "new.csv"),
                 "--predictions", str(tmp_path / "p2.csv"), "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    fit = jaxscale.load(tmp_path / "m")
    py = ch.predict(fit, new, key=jax.random.key(0))
    np.testing.assert_array_equal(np.asarray(got["mean"]), np.asarray(py.mean))
    np.testing.assert_array_equal(pd.read_csv(tmp_path / "p2.csv")["upper"].to_numpy(), np.asarray(py.upper))
    assert got["score"]["n"] == 6
    # the same rows predicted by `fit --predictions` and by `predict` agree (same seed)
    np.testing.assert_allclose(pred["mean"].to_numpy()[:6], np.asarray(py.mean), rtol=1e-12)
    assert main(["chinchilla", "optimal", "--model", str(tmp_path / "m"), "--compute", "1e20,1e22", "--json"]) == 0
    opt = json.loads(capsys.readouterr().out)["optima"]
    assert [o["compute"] for o in opt] == [1e20, 1e22] and opt[1]["N"] > opt[0]["N"]
    assert opt[0]["N_lower"] < opt[0]["N"] < opt[0]["N_upper"]
    # outputs are checked before fitting: an existing --save folder is refused
    assert main(base + ["--save", str(tmp_path / "m")]) == 2
    assert "exists and is not empty" in capsys.readouterr().err


def test_cli_where_agg_and_holdout_expr(tmp_path, capsys):
    df = pd.concat([runs(), runs(seed=9).iloc[:5]])  # five repeated (N, D) runs
    path = tmp_path / "runs.csv"
    df.to_csv(path, index=False)
    args = ["chinchilla", "fit", "--csv", str(path), "--n-col", "params", "--d-col", "tokens", "--loss-col",
            "val_loss", "--json"]
    assert main(args) == 2
    assert "repeat the same (params, tokens) pair" in capsys.readouterr().err
    assert main(args + ["--agg", "min", "--where", "params > 5e7", "--holdout", "tokens >= 3e11"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["n_merged"] == 0  # the repeats were all at params = 3e7, filtered out by --where
    assert out["holdout"]["n"] == 4 and out["n_points"] == 16
    assert main(args + ["--agg", "mean", "--holdout", "tokens > 1e99"]) == 2
    assert "selects none" in capsys.readouterr().err


def test_extrapolation_is_measured_warned_and_widens_intervals(fitted):
    _, fit = fitted
    inside = runs().iloc[:3]
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # no warning inside the training box
        p_in = ch.predict(fit, inside)
    np.testing.assert_array_equal(np.asarray(p_in.extrapolation), 0.0)
    far = pd.DataFrame({"params": [3e9, 3e10, 3e11], "tokens": [3e11, 3e12, 3e13]})
    with pytest.warns(UserWarning, match=r"2 of 3 queries lie outside .*worst: 4 decades"):
        p_far = ch.predict(fit, far)
    # the largest training run, then 10x and 100x its N and D: 100x and 10,000x its compute
    np.testing.assert_allclose(np.asarray(p_far.extrapolation), [0.0, 2.0, 4.0], atol=1e-9)
    width = np.log(np.asarray(p_far.upper) / np.asarray(p_far.lower))
    assert width[2] > width[1] > width[0]
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        ch.predict(fit, far)
    assert "no bootstrap refits" not in str(rec[0].message)  # this fit has refits
    # without refits (and without a growth of the noise): the law's own uncertainty, linearised at the fit,
    # still widens the interval with the distance; a model saved without theta_cov has the noise alone
    plain_fit = dataclasses.replace(fit, boot_theta=None, kappa=jnp.asarray(0.0))
    with pytest.warns(UserWarning, match=r"rest on the model's assumptions; this fit has no bootstrap refits, so the "
                                         r"interval holds the residual noise and the law's own uncertainty by a "
                                         r"linear approximation .* --bootstrap 200"):
        p_plain = ch.predict(plain_fit, far)
    w_plain = np.log(np.asarray(p_plain.upper) / np.asarray(p_plain.lower))
    assert w_plain[2] > w_plain[1] > w_plain[0], w_plain
    with pytest.warns(UserWarning, match=r"holds the residual noise and leaves out the law's own uncertainty"):
        p_old = ch.predict(dataclasses.replace(plain_fit, theta_cov=None), far)
    w_old = np.log(np.asarray(p_old.upper) / np.asarray(p_old.lower))
    np.testing.assert_allclose(w_old, w_old[0]) and np.testing.assert_array_less(w_old, w_plain + 1e-12)
    # with a growth learnt by the backtest, the note says the noise widens with the distance
    with pytest.warns(UserWarning, match=r"holds the residual noise, widened with the distance \(x \(1 \+ 0.5 d\)"):
        ch.predict(dataclasses.replace(fit, boot_theta=None, kappa=jnp.asarray(0.5)), far)
    from jaxscale.cli.chinchilla import _interval_kind

    assert "x (1 + 0.5 d) at d decades" in _interval_kind(dataclasses.replace(fit, boot_theta=None, kappa=0.5))
    plain = _interval_kind(dataclasses.replace(fit, boot_theta=None, kappa=0.0))
    assert plain.startswith("residual noise + the law's own uncertainty linearised at the fit (Student-t);")
    assert _interval_kind(dataclasses.replace(plain_fit, theta_cov=None)).startswith("residual noise (Student-t);")


def test_units_look_like_billions_warns():
    df = runs()
    df["params"] = df["params"] / 1e9
    with pytest.warns(UserWarning, match=r"'params' has median .* \(largest 3; .* below 10000\); parameter counts"):
        ch.from_frame(df, **COLS)
    # in millions, with one run that passes the floor (a 16B model: 16183): the median still tells
    df = runs()
    df["params"] = np.where(df["params"] == df["params"].max(), 1.6183e4, df["params"] / 1e6)
    with pytest.warns(UserWarning, match=r"'params' has median .* \(largest 16183; \d+ of \d+ rows below 10000\)"):
        ch.from_frame(df, **COLS)


@pytest.mark.slow
def test_epoch_top_compute_holdout_is_calibrated():
    """Prediction intervals cover 80-97% of the 25 highest-compute Epoch runs when fitted on the
    rest (Epoch's method, 200 refits; the noise scale grows with the extrapolation distance as a
    backtest inside the training rows measured). Baseline: a power law in compute."""
    from jaxscale.chinchilla.predict import power_law_baseline
    from jaxscale.data import load

    df = load("epoch_chinchilla")
    c = (df["N"] * df["D"]).to_numpy()
    held = np.zeros(len(df), bool)
    held[np.argsort(c)[-25:]] = True
    data = ch.from_frame(df[~held])
    fit = ch.fit(jax.random.key(0), data, ch.EPOCH_SPEC._replace(n_boot=200))
    with pytest.warns(UserWarning, match="outside the training data"):
        pred = ch.predict(fit, df[held], key=jax.random.key(1))
    y = df["loss"][held].to_numpy()
    cover = float(np.mean((y >= np.asarray(pred.lower)) & (y <= np.asarray(pred.upper))))
    assert 0.80 <= cover <= 0.97, cover
    base = power_law_baseline(ch.take_rows(data, ~np.asarray(fit.excluded)), ch.from_frame(df[held]))
    assert np.mean(np.abs(np.asarray(pred.mean) - y)) < np.mean(np.abs(np.asarray(base.mean) - y))


def test_large_tables_screen_starts_on_a_subset_and_polish_on_every_row():
    """Screening ranks the starts on ``screen_rows`` evenly spaced real rows (padding never picked);
    the polished optimum on every row is the same as screening on all of them."""
    from jaxscale.chinchilla.fit import pad_rows, screening_rows

    data = ch.from_frame(runs(), **COLS)  # 25 rows
    padded = pad_rows(data, 40)  # 15 rows of weight 0 at the end
    sub = screening_rows(padded, 10)
    assert sub.n == 10 and np.all(np.asarray(sub.weights) == 1.0)
    np.testing.assert_array_equal(np.asarray(sub.log_N), np.asarray(data.log_N)[(np.arange(10) * 25) // 10])
    few = screening_rows(pad_rows(data.replace(weights=jnp.where(jnp.arange(25) < 6, 1.0, 0.0)), 40), 10)
    assert float(np.sum(np.asarray(few.weights))) == 6.0  # fewer real rows than the subset: each once
    assert screening_rows(data, 25) is data
    full = ch.fit(jax.random.key(0), data, SMALL)
    subset = ch.fit(jax.random.key(0), data, SMALL._replace(screen_rows=8))  # two stages: subset, then every row
    # the same optimum: the objective to 1e-10, the parameters to the optimiser's own precision along
    # the flat direction of e (1.8e-6 apart since the starts are screened in single precision)
    np.testing.assert_allclose(float(subset.objective), float(full.objective), rtol=1e-10)
    np.testing.assert_allclose(np.asarray(subset.theta), np.asarray(full.theta), rtol=1e-5, atol=1e-8)


def test_a_table_barely_larger_than_the_law_is_warned(tmp_path, capsys):
    """Six runs for five parameters leave one degree of freedom: the law passes through them and its
    residual scale says nothing about a new run; warned with the fix. Holding out a run from such a
    table names the held-out rows as the reason it cannot be fitted."""
    from jaxscale.cli import main

    df = runs().iloc[[0, 3, 7, 12, 18, 24]]
    with pytest.warns(UserWarning, match=r"6 runs for the law's 5 parameters leave 1 residual degree\(s\) of "
                                         r"freedom.*95 % upper"):
        ch.fit(jax.random.key(0), ch.from_frame(df, **COLS), ch.Spec())
    path = tmp_path / "six.csv"
    df.to_csv(path, index=False)
    argv = ["chinchilla", "fit", "--csv", str(path), "--n-col", "params", "--d-col", "tokens", "--loss-col",
            "val_loss", "--holdout-top", "1", "--json"]
    assert main(argv) == 2
    assert "--holdout-top 1 leaves 5 of the table's 6 rows to fit: the law's 5 parameters need at least 6" in (
        capsys.readouterr().err)
