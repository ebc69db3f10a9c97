"""The NCPL contract on small tables this file builds itself: from_frame -> fit -> predict ->
save/load, the pure core under jit/vmap, input errors, and the command line end to end."""
import json
import warnings

import jax
import numpy as np
import pandas as pd
import pytest

import jaxscale
from jaxscale import ncpl

#: ``fit_core`` is checked against ``fit`` to 1e-6 in float32: XLA's optimised compile of the two
#: programs agrees that closely; with most optimisations off they differ by up to 1.4e-5 relative
#: after the training steps (tests/conftest.py).
XLA_OPTIMIZE = True

SPEC = ncpl.Spec(members=2, steps=50, eval_every=25, patience=100, lr=3e-3, batch_size=16, width=32)
#: The same settings on the command line (so the CLI test reuses the compiled programs).
CLI_SPEC = ["--members", "2", "--steps", "50", "--eval-every", "25", "--patience", "100", "--lr", "3e-3",
            "--batch-size", "16", "--width", "32"]


def _runs(n=36, seed=0, sizes=(2e7, 5e7, 1e8, 3e8)):
    """Synthetic sweep: Chinchilla-like size/data effect, a quadratic LR valley, optimizer offset."""
    rng = np.random.default_rng(seed)
    N = rng.choice(sizes, n)
    D = N * rng.choice([10.0, 20.0, 40.0], n)
    lr = 10 ** rng.uniform(-3.5, -2.0, n)
    opt = rng.choice(["adamw", "lion"], n)
    loss = 1.8 + 400 / N**0.34 + 400 / D**0.28 + 0.05 * (np.log10(lr) + 2.7) ** 2 + 0.02 * (opt == "lion")
    return pd.DataFrame({"run": [f"run-{i}" for i in range(n)], "N": N, "D": D, "lr": lr, "optimizer": opt,
                         "loss": loss})


@pytest.fixture(scope="module")
def trained():
    df = _runs()
    data = ncpl.from_frame(df, target_col="loss", n_col="N", d_col="D", exclude_cols=["run"])
    fit = ncpl.fit(jax.random.key(0), data, SPEC)
    return df, data, fit


def test_from_frame_roles_and_rows(trained):
    df, data, _ = trained
    assert data.text_cols == ("optimizer",) and data.num_cols == ("N", "D", "lr")
    assert data.num_log == (True, True, True)  # positive and spanning >= 10x
    assert data.values.shape == (len(df), 3) and data.codes.shape == (len(df), 1)
    np.testing.assert_array_equal(data.y, df["loss"])  # row i of the frame is row i of the arrays
    assert data.vocab == (("adamw", "lion"),)
    assert ("target", "loss") in data.columns and ("n", "N") in data.columns
    sub = jax.tree.map(lambda a: a[:5], data)  # rows select as a pytree
    assert sub.n_rows == 5 and sub.columns == data.columns
    q = ncpl.from_frame(df.drop(columns=["loss"]), target_col="loss", require_target=False, n_col="N", d_col="D",
                        exclude_cols=["run"])
    assert np.isnan(q.y).all()


def test_fit_predict_save_load_identical(trained, tmp_path):
    df, data, fit = trained
    assert fit.baseline == "law" and fit.law is not None
    assert fit.history.shape == (2, 2) and float(fit.interval_scale) > 0  # may narrow an over-wide ensemble
    pred = ncpl.predict(fit, df)
    assert isinstance(pred, jaxscale.Prediction)
    assert pred.samples.shape == (2, len(df))
    assert np.all(np.asarray(pred.lower) < np.asarray(pred.mean)) and np.all(np.asarray(pred.mean) < np.asarray(pred.upper))
    mae = float(np.mean(np.abs(np.asarray(pred.mean) - df["loss"].to_numpy())))
    assert mae < df["loss"].std()  # learns the sweep
    wide = ncpl.predict(fit, data, level=0.99)  # a Data query works too
    np.testing.assert_allclose(wide.mean, pred.mean)
    assert np.all(np.asarray(wide.upper) > np.asarray(pred.upper))
    # same rows without the target column
    q = ncpl.predict(fit, df.drop(columns=["loss"]))
    np.testing.assert_array_equal(q.mean, pred.mean)

    jaxscale.save(fit, tmp_path / "m")
    back = jaxscale.load(tmp_path / "m")
    assert isinstance(back, ncpl.Fit) and back.spec == fit.spec and back.columns == fit.columns
    again = ncpl.predict(back, df)
    for a, b in zip(pred[:3], again[:3]):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    same = jax.jit(lambda f: f)(fit)
    assert same.head == fit.head and same.vocab == fit.vocab


def test_fit_core_is_pure_and_matches_fit(trained):
    _, data, fit = trained
    key = jax.random.key(0)
    batch = ncpl.prepare(key, data, SPEC)
    keys = jax.random.split(jax.random.key(1), 3)
    core = jax.jit(lambda k: ncpl.fit_core(k, batch, SPEC))
    one = [core(k) for k in keys]
    many = jax.vmap(lambda k: ncpl.fit_core(k, batch, SPEC))(keys)
    for i in range(3):  # batched float32 matmuls round differently; 50 Adam steps amplify that a little
        for a, b in zip(jax.tree.leaves(one[i]), jax.tree.leaves(jax.tree.map(lambda x, i=i: x[i], many))):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=2e-3, atol=2e-4)
    assert not np.allclose(jax.tree.leaves(one[0])[0], jax.tree.leaves(one[1])[0])  # keys matter
    # fit runs the same steps host-driven (in jitted chunks): the same parameters (no early stop
    # with this patience)
    params, hist = core(key)
    assert hist.shape == (2, SPEC.members)
    assert jax.tree.structure(params) == jax.tree.structure(fit.params)
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(fit.params)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-7)


def test_bad_input_names_the_column():
    df = _runs(12)
    bad = df.copy()
    bad["lr"] = bad["lr"].astype(object)
    bad.loc[3, "lr"] = "fast"
    with pytest.raises(ValueError, match="'lr'"):
        ncpl.from_frame(bad, target_col="loss", text_cols=["optimizer"], num_cols=["lr"])
    with pytest.raises(ValueError, match="missing column.*'loss_x'"):
        ncpl.from_frame(df, target_col="loss_x")
    neg = df.copy()
    neg.loc[2, "N"] = -1.0
    with pytest.raises(ValueError, match="'N'"):
        ncpl.from_frame(neg, target_col="loss", n_col="N", d_col="D", exclude_cols=["run"])
    nan = df.copy()
    nan.loc[1, "loss"] = np.nan
    with pytest.raises(ValueError, match="'loss'.*non-finite"):
        ncpl.from_frame(nan, target_col="loss", exclude_cols=["run"])
    long = df.copy()
    long["command"] = "python train.py " + " ".join(f"--flag{i}=value{i}" for i in range(60))
    with pytest.raises(ValueError, match=r"'command'.*--exclude-cols command.*--max-tokens 512\) fits these runs"):
        ncpl.from_frame(long, target_col="loss", exclude_cols=["run"])
    assert ncpl.from_frame(long, target_col="loss", exclude_cols=["run"], max_tokens=512).n_rows == len(long)
    longer = long.assign(command=long["command"] + " " + long["command"])  # beyond the encoder's 512 positions
    with pytest.raises(ValueError, match="--exclude-cols command") as err:
        ncpl.from_frame(longer, target_col="loss", exclude_cols=["run"])
    assert "Or raise the limit" not in str(err.value)
    with pytest.raises(ValueError, match=r"baseline='law'\) needs N and D"):
        ncpl.fit(jax.random.key(0), ncpl.from_frame(df, target_col="loss", exclude_cols=["run"]),
                 SPEC._replace(baseline="law"))


def test_cli_train_holdout_predictions_save_then_predict(tmp_path, capsys):
    from jaxscale.cli import main
    from jaxscale.data import read_table

    # 36 training runs (as in the fixture) and 8 larger held-out ones
    df = pd.concat([_runs(36, seed=1), _runs(8, seed=2, sizes=(1e9,))], ignore_index=True)
    csv, new = tmp_path / "runs.csv", tmp_path / "new.csv"
    df.to_csv(csv, index=False)
    df.drop(columns=["loss"]).iloc[:6].to_csv(new, index=False)
    p1, p2, model = tmp_path / "p1.csv", tmp_path / "p2.csv", tmp_path / "model"
    rc = main(["ncpl", "train", "--csv", str(csv), "--target-col", "loss", "--n-col", "N", "--d-col", "D",
               "--exclude-cols", "run", "--holdout", "N >= 1e9", *CLI_SPEC, "--predictions", str(p1),
               "--save", str(model), "--json"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    held = int((df["N"] >= 1e9).sum())
    assert out["n_train"] == len(df) - held and out["baseline"] == "law"
    assert out["holdout"]["n"] == held
    for name in ("ncpl", "chinchilla"):
        m = out["holdout"][name]
        assert m["n"] == held and np.isfinite(m["mae"]) and m["rmse"] >= m["mae"]
    assert 0.0 <= out["holdout"]["ncpl"]["coverage_90"] <= 1.0
    pred1 = pd.read_csv(p1)
    assert len(pred1) == len(df)
    bases = ["chinchilla_on_training_rows", "mean_of_training_rows", "nearest_training_run"]
    assert list(pred1.columns) == [*df.columns, "mean", "lower", "upper", "extrapolation", "fit_row", *bases]
    fit_rows = pred1["fit_row"].to_numpy(bool)
    assert (pred1["extrapolation"][fit_rows] == 0).all() and (pred1["extrapolation"][~fit_rows] > 0).all()
    assert set(out["baselines"]) >= {*bases, "model_loses_to"}
    for name in bases:  # each baseline's value on the held-out rows (empty on the fitted ones), as scored
        assert (pred1[name].notna() == ~fit_rows).all()
        mae = (pred1[name] - pred1["loss"]).abs().mean()
        assert mae == pytest.approx(out["baselines"][name]["mae"], rel=1e-12)
    assert pred1["fit_row"].sum() == len(df) - held

    rc = main(["ncpl", "predict", "--model", str(model), "--csv", str(new), "--predictions", str(p2), "--json"])
    assert rc == 0
    out2 = json.loads(capsys.readouterr().out)
    python = ncpl.predict(jaxscale.load(model), read_table(new))
    np.testing.assert_array_equal(out2["mean"], np.asarray(python.mean))
    np.testing.assert_array_equal(pd.read_csv(p2)["upper"], np.asarray(python.upper))
    np.testing.assert_allclose(out2["mean"], pred1["mean"].iloc[:6], rtol=1e-12)

    # bad input: exit code 2 and a message naming the column
    rc = main(["ncpl", "train", "--csv", str(csv), "--target-col", "nope", "--json"])
    assert rc == 2 and "nope" in capsys.readouterr().err


def test_nearest_run_baseline():
    """The sceptic's first guess on a run table: the loss of the training run nearest in configuration
    (standardised numbers, log10 where read so; 1 per differing text value)."""
    from jaxscale.ncpl.baselines import nearest_run

    train = pd.DataFrame({"lr": [1e-4, 1e-3, 1e-2, 1e-3], "width": [256, 256, 256, 1024],
                          "opt": ["adamw", "adamw", "adamw", "lion"], "N": [1e8, 1e8, 1e8, 4e8]})
    y = np.array([3.0, 2.8, 2.9, 2.5])
    query = pd.DataFrame({"lr": [2e-3, 8e-3, 1e-3, 1e-3], "width": [256, 256, 1024, 256],
                          "opt": ["adamw", "adamw", "lion", "lion"], "N": [1e8, 1e8, 4e8, 1e8]})
    got = nearest_run(train, query, y, ["lr", "width"], [True, False], ["opt"], ["N"])
    np.testing.assert_array_equal(got, [2.8, 2.9, 2.5, 2.8])  # lr in decades; one text mismatch < a size step
    assert nearest_run(train, query.assign(lr=np.nan), y, ["lr", "width"], [True, False])[0] == 2.8  # at the mean
    assert np.all(nearest_run(train, query, y, [], []) == y.mean())  # nothing to compare: the training mean
    # an empty text cell is a value of its own: it matches the training run that left it empty too
    gap = train.assign(opt=["adamw", None, "adamw", "lion"])
    got = nearest_run(gap, query.assign(opt=[None, "adamw", "lion", None]), y, ["lr", "width"], [True, False], ["opt"])
    np.testing.assert_array_equal(got, [2.8, 2.9, 2.5, 2.8])


def test_fit_without_sizes_says_its_interval_does_not_widen():
    """Without N and D there is no backtest, so the interval does not grow outside the training
    data; the extrapolation warning says so."""
    df = _runs(36)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # N and D read as config look like results
        fit = ncpl.fit(jax.random.key(0), ncpl.from_frame(df, target_col="loss", exclude_cols=["run"]), SPEC)
    assert int(np.asarray(fit.extrap.n_backtest)) == 0
    query = df.head(3).assign(lr=1.0)
    with pytest.warns(UserWarning, match="outside the training data.*had no backtest.*does not widen.*"
                                         "backtest_col='lr' \\(CLI --backtest-col lr\\)"):
        plain = ncpl.predict(fit, query)
    # the field the queries extrapolate in names the backtest's held-out runs: its largest values
    data = ncpl.from_frame(df, target_col="loss", exclude_cols=["run", "N", "D"])
    for col, why in [("optimizer", "read as text"), ("nope", "not a configuration column")]:
        with pytest.raises(ValueError, match=f"backtest_col='{col}'.*{why}.*numeric configuration columns are "
                                             r"\['lr'\]"):
            ncpl.fit(jax.random.key(0), data, SPEC._replace(backtest_col=col))
    along = ncpl.fit(jax.random.key(0), data, SPEC._replace(backtest_col="lr"))
    held = int(np.asarray(along.extrap.n_backtest))
    assert held == 8 and "8 largest value(s) of 'lr'" in along.backtest_rule  # whole values up to 20 % of 36
    assert float(np.asarray(along.extrap.backtest_max_distance)) > 0
    assert np.isfinite(float(np.asarray(along.extrap.backtest_coverage)))
    reach = float(np.asarray(along.extrap.backtest_max_distance))
    with pytest.warns(UserWarning, match=r"worst: 2.09 decades of 'lr'.*growth was learnt on held-out runs at most "
                                         rf"{reach:.3g} out \(the runs with the 8 largest.*\); 3 of the queries lie "
                                         "further, up to 2.09, where that growth is extrapolated"):
        ncpl.predict(along, query)
    assert np.all(np.asarray(plain.extrapolation) > 0)
