"""The one contract of the observational pillar on a small synthetic table:
from_frame -> fit -> predict -> save / load, pytree behaviour, vmap of fit_core, bad input, and the
command line (fit --csv ... --save, then predict --model)."""
from __future__ import annotations

import json
import warnings

import jax
import numpy as np
import pandas as pd
import pytest

import jaxscale
from jaxscale import observational as obs
from jaxscale.cli import main

METRICS = ["bench_a", "bench_b", "bench_c", "bench_d"]
SPEC = obs.Spec(k=2, bootstrap=12)  # tiny bootstrap: intervals from refits + residual noise


def _table(n=40, seed=0) -> pd.DataFrame:
    """Models of 4 families: benchmark accuracies driven by a latent ability that grows with
    log compute; the target is a floored sigmoid of the ability plus noise."""
    rng = np.random.default_rng(seed)
    log_c = rng.uniform(-1.0, 2.5, n)
    fam = np.array(["Llama-2", "alpha", "beta", "gamma"])[np.arange(n) % 4]
    ability = 1.2 * log_c - 1.0 + 0.3 * (fam == "beta") + 0.2 * rng.normal(size=n)
    df = pd.DataFrame({m: 1 / (1 + np.exp(-(0.8 + 0.3 * j) * ability + 0.4 * j + 0.15 * rng.normal(size=n)))
                       for j, m in enumerate(METRICS)})
    df["target"] = np.clip(0.05 + 0.95 / (1 + np.exp(-(1.5 * ability - 1.5))) + 0.02 * rng.normal(size=n), 0, 1)
    df["FLOPs (1E21)"] = 10.0**log_c
    df["Model"] = [f"model-{i}" for i in range(n)]
    df["Model Family"] = fam
    df.loc[3, "bench_b"] = np.nan  # one missing cell: imputed
    return df


@pytest.fixture(scope="module")
def table():
    return _table()


def test_contract_round_trip(table, tmp_path):
    data = obs.from_frame(table, target_col="target", metric_cols=METRICS)
    assert isinstance(data, obs.Data) and data.scores.shape == (40, 4)
    assert dict(data.columns)["target"] == "target" and data.family_labels[0] == "Llama-2"
    np.testing.assert_array_equal(np.asarray(data.row), table.index.to_numpy())
    train = table["FLOPs (1E21)"].to_numpy() <= 30
    with pytest.warns(RuntimeWarning, match="imputed 1 missing benchmark cell"):
        fit = obs.fit(jax.random.key(0), obs.take_rows(data, train), SPEC)
    assert isinstance(fit, obs.Fit) and bool(fit.converged) and int(fit.n_train) == train.sum()
    assert fit.boot.slopes.shape == (12, 2) and bool(np.all(fit.boot_ok))
    query = table.drop(columns=["target"])  # a query needs no target
    pred = obs.predict(fit, query, key=jax.random.key(1))
    assert pred.mean.shape == (40,) and pred.samples.shape == (1008, 40)  # the 12 refits in turn, 84 times
    assert np.all(pred.lower < pred.upper)
    ext = np.asarray(pred.extrapolation)  # 0 on every training row, > 0 beyond the training box
    assert ext.shape == (40,) and np.all(ext[train] == 0) and ext[~train].max() > 0
    assert float(fit.kappa) > 0 and int(fit.n_backtest) == int(np.ceil(0.25 * train.sum()))
    assert np.mean((pred.lower <= pred.mean) & (pred.mean <= pred.upper)) > 0.9
    held = ~train
    rmse = float(np.sqrt(np.mean((np.asarray(pred.mean)[held] - table["target"].to_numpy()[held]) ** 2)))
    assert rmse < 0.1  # the law extrapolates the synthetic scaling
    with pytest.raises(ValueError, match="pass key"):
        obs.predict(fit, query)
    # the same prediction from a Data query
    same = obs.predict(fit, obs.from_frame(query, target_col=None, metric_cols=METRICS), key=jax.random.key(1))
    np.testing.assert_array_equal(same.upper, pred.upper)
    # save / load: identical predictions
    jaxscale.save(fit, tmp_path / "model")
    back = jaxscale.load(tmp_path / "model")
    assert isinstance(back, obs.Fit) and back.spec == SPEC and back.columns == fit.columns
    again = obs.predict(back, query, key=jax.random.key(1))
    for a, b in zip(pred[:3], again[:3]):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    # a pytree: passes through jit unchanged
    same_fit = jax.jit(lambda f: f)(fit)
    np.testing.assert_array_equal(np.asarray(same_fit.law.slopes), np.asarray(fit.law.slopes))
    assert same_fit.spec == fit.spec
    # the law on the reference family's equivalent-FLOPs axis (10 Llama-2 rows with FLOPs)
    axis = obs.reference_axis(fit, data)
    assert axis["n_ref"] == 10 and axis["slope"] > 0 and axis["reason"] is None


def test_fit_core_vmaps_over_keys():
    # 128 rows: fit() then runs fit_core on these very arrays (no padding), one program for both tests
    table = _table(n=128, seed=2)
    data = obs.from_frame(table, target_col="target", metric_cols=METRICS)
    keys = jax.random.split(jax.random.key(3), 3)
    many = jax.jit(jax.vmap(lambda k: obs.fit_core(jax.random.split(k)[0], data, SPEC)))(keys)  # fit's key use
    for i in range(3):
        with pytest.warns(RuntimeWarning, match="imputed"):
            single = obs.fit(keys[i], data, SPEC)
        np.testing.assert_allclose(np.asarray(many.boot.slopes[i]), np.asarray(single.boot.slopes), rtol=1e-5,
                                   atol=1e-8)
        np.testing.assert_allclose(np.asarray(many.law.slopes[i]), np.asarray(single.law.slopes), rtol=1e-5)
        np.testing.assert_allclose(np.asarray(many.resid_sd[i]), np.asarray(single.resid_sd), rtol=1e-5)
    # different keys draw different bootstrap resamples; the point fit does not depend on the key
    assert not np.allclose(np.asarray(many.boot.slopes[0]), np.asarray(many.boot.slopes[1]))
    np.testing.assert_allclose(np.asarray(many.law.slopes[0]), np.asarray(many.law.slopes[2]), rtol=1e-12)


def test_bad_input_names_the_column(table):
    bad = table.copy()
    bad.loc[7, "bench_c"] = 1.7
    with pytest.raises(ValueError, match=r"'bench_c' has 1 value\(s\) outside \[0, 1\] at rows \[7\]"):
        obs.from_frame(bad, target_col="target", metric_cols=METRICS)
    bad = table.astype({"bench_a": object})
    bad.loc[2, "bench_a"] = "0.5x"
    with pytest.raises(ValueError, match="'bench_a' has 1 non-numeric"):
        obs.from_frame(bad, target_col="target", metric_cols=METRICS)
    with pytest.raises(ValueError, match=r"missing column\(s\) \['nope'\]"):
        obs.from_frame(table, target_col="target", metric_cols=METRICS[:3] + ["nope"])
    with pytest.raises(ValueError, match=r"'target' has 1 value\(s\) outside \[lo, hi\]"):
        obs.from_frame(table.assign(target=table["target"].where(table.index != 5, 2.0)), target_col="target",
                       metric_cols=METRICS)
    data = obs.from_frame(table.assign(target=table["target"].where(table.index != 9)), target_col="target",
                          metric_cols=METRICS)
    with pytest.raises(ValueError, match=r"1 row\(s\) have no target at rows \[9\]"):
        obs.fit(jax.random.key(0), data, SPEC)
    with pytest.raises(ValueError, match="Spec.k = 5"):
        obs.fit(jax.random.key(0), obs.from_frame(table, target_col="target", metric_cols=METRICS),
                obs.Spec(k=5))


def _json(argv, capsys):
    capsys.readouterr()
    assert main(argv + ["--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_cli_fit_save_predict(table, tmp_path, capsys):
    path, new = tmp_path / "runs.csv", tmp_path / "new.csv"
    table.to_csv(path, index=False)
    fresh = _table(n=6, seed=1).drop(columns=["target"])
    fresh.to_csv(new, index=False)
    with pytest.warns(RuntimeWarning):
        out = _json(["obs", "fit", "--csv", str(path), "--target-col", "target",
                     "--metric-cols", ",".join(METRICS), "--k", "2", "--bootstrap", "12",
                     "--holdout", "`FLOPs (1E21)` > 30", "--predictions", str(tmp_path / "out.csv"),
                     "--save", str(tmp_path / "model")], capsys)
    n_held = int((table["FLOPs (1E21)"] > 30).sum())
    assert (out["n_train"], out["n_test"], out["n_imputed"]) == (40 - n_held, n_held, 1)
    assert out["holdout"]["n"] == n_held and out["holdout"]["rmse"] < 0.1 and 0 <= out["holdout"]["coverage"] <= 1
    assert out["mse_test"] == pytest.approx(out["holdout"]["rmse"] ** 2, rel=1e-9)
    assert out["bootstrap"] == {"n": 12, "n_converged": 12} and out["slope"] > 0
    for key, value in out.items():
        if value is None:
            assert f"{key}_reason" in out, key
    pred_file = pd.read_csv(tmp_path / "out.csv")
    assert len(pred_file) == 40 and {"mean", "lower", "upper", "split", "Model"} <= set(pred_file.columns)
    assert (pred_file["split"] == "holdout").sum() == n_held
    # each baseline's value on the held-out rows (empty on the others), in the target's units, as scored
    for name in ("mean_score_sigmoid", "ln_flops_sigmoid"):
        assert (pred_file[name].notna() == (pred_file["split"] == "holdout")).all()
        mae = (pred_file[name] - pred_file["target"]).abs().mean()
        assert mae == pytest.approx(out["baselines"][name]["mae"], rel=1e-12)
    # the saved model predicts new rows; same numbers as the Python path
    out2 = _json(["obs", "predict", "--model", str(tmp_path / "model"), "--csv", str(new),
                  "--predictions", str(tmp_path / "p2.csv")], capsys)
    assert out2["n"] == 6 and "score" not in out2  # the new rows carry no target
    p2 = pd.read_csv(tmp_path / "p2.csv")
    ref = obs.predict(jaxscale.load(tmp_path / "model"), fresh, key=jax.random.key(0))
    for col in ("mean", "lower", "upper"):
        np.testing.assert_allclose(p2[col].to_numpy(), np.asarray(getattr(ref, col)), rtol=1e-12)


def test_point_interval_widens_only_outside_the_box():
    """Inside the training box the point fit's interval is the normal one, mean ± z sd; outside,
    the logit noise kappa * d widens it (computed exactly, no draws)."""
    from scipy.special import expit, ndtri

    from jaxscale.observational.model import _mixture_interval

    z, floor, sd = np.array([-2.0, 0.0, 1.5]), 0.1, 0.03
    lo, hi = _mixture_interval(z, floor, sd, np.zeros(3), 0.9)
    mu = floor + (1 - floor) * expit(z)
    np.testing.assert_allclose(lo, mu - ndtri(0.95) * sd, atol=1e-12)
    np.testing.assert_allclose(hi, mu + ndtri(0.95) * sd, atol=1e-12)
    lo2, hi2 = _mixture_interval(z, floor, sd, np.full(3, 0.8), 0.9)
    assert np.all(hi2 - lo2 > hi - lo + 0.05) and np.all((lo2 >= 0) & (hi2 <= 1))


def _far_query(table):
    """The held-out rows of a FLOPs <= 30 split, the most capable of them with bench_a left empty."""
    held = table[table["FLOPs (1E21)"] > 30].drop(columns=["target"])
    top = held["bench_a"].idxmax()
    return held, top, held.assign(bench_a=held["bench_a"].where(held.index != top))


def test_predict_warns_about_and_counts_imputed_query_cells(table, tmp_path, capsys):
    """An empty benchmark cell of a query row is imputed: warned once with the row (the frame's
    label), the column, the count and the fix; counted in the JSON and per row in --predictions."""
    path = tmp_path / "runs.csv"
    table.to_csv(path, index=False)
    with pytest.warns(RuntimeWarning, match="imputed 1 missing"):  # the training table's own empty cell
        _json(["obs", "fit", "--csv", str(path), "--target-col", "target", "--metric-cols", ",".join(METRICS),
               "--k", "2", "--cutoff", "30", "--save", str(tmp_path / "model")], capsys)
    fit = jaxscale.load(tmp_path / "model")
    full, top, query = _far_query(table)
    with pytest.warns(UserWarning, match=rf"1 empty benchmark cell\(s\) in 1 of the {len(query)} rows were imputed "
                                         rf".* at rows \[{top}\], cells per column \{{'bench_a': 1\}}.*give the "
                                         r"missing value\(s\), or refit without the benchmark"):
        pred = obs.predict(fit, query)
    mask = obs.imputed_cells(fit, query)
    assert mask.sum() == 1 and mask[list(query.index).index(top), 0]
    moved = np.asarray(pred.mean) != np.asarray(obs.predict(fit, full).mean)
    assert moved.sum() == 1 and moved[list(query.index).index(top)]  # only that row reads the imputed score
    query.to_csv(tmp_path / "q.csv", index=False)
    out = _json(["obs", "predict", "--model", str(tmp_path / "model"), "--csv", str(tmp_path / "q.csv"),
                 "--predictions", str(tmp_path / "p.csv")], capsys)
    assert (out["n_imputed"], out["n_rows_imputed"], out["imputed_columns"]) == (1, 1, {"bench_a": 1})
    p = pd.read_csv(tmp_path / "p.csv")
    assert p["n_imputed"].tolist() == [int(i == top) for i in query.index]
    np.testing.assert_allclose(p["mean"], np.asarray(pred.mean), rtol=1e-12)
    # obs fit: the held-out row's imputed cell is warned about too, and every row's count is in the file
    table.assign(bench_a=table["bench_a"].where(table.index != top)).to_csv(path, index=False)
    with pytest.warns(UserWarning, match=rf"obs fit \(rows not fitted\): 1 empty benchmark cell\(s\) in 1 of the "
                                         rf"{len(query)} rows .* at rows \[{top + 2}\]"):
        out = _json(["obs", "fit", "--csv", str(path), "--target-col", "target", "--metric-cols",
                     ",".join(METRICS), "--k", "2", "--cutoff", "30", "--predictions", str(tmp_path / "f.csv")],
                    capsys)
    f = pd.read_csv(tmp_path / "f.csv")
    assert f["n_imputed"].sum() == out["n_imputed"] + out["n_imputed_predicted"] == 2
    assert f.loc[top, "n_imputed"] == 1 and f.loc[3, "n_imputed"] == 1  # row 3: the training row's empty cell


def _said(call) -> str:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        call()
    return " | ".join(str(w.message) for w in caught)


def test_from_frame_warns_when_fractions_are_read_as_percentages(table):
    """Fractions read with metric_scale=100 and hi=100 (CLI --metric-scale 100 --hi 100): both
    read as scores out of 100 and warned about by from_frame, on every row of the table; the same
    table given in percentages is quiet, and fit does not warn again."""
    data = None

    def read(df):
        nonlocal data
        data = obs.from_frame(df, target_col="target", metric_cols=METRICS, metric_scale=100, hi=100)

    said = _said(lambda: read(table))
    assert f"every benchmark column {METRICS} has no value above 1 on the 40 rows of the table, but metric_scale = " \
           "100" in said and "fit with metric_scale=1 (drop --metric-scale)" in said, said
    assert "every one of the 40 values of target column 'target' (every row of the table that has one) lies in " \
           "[0, 1]" in said and "fit with hi=1 (drop --hi)" in said, said
    said = _said(lambda: obs.fit(jax.random.key(0), obs.take_rows(data, np.arange(30)), obs.Spec(k=2)))
    assert "drop --" not in said, said
    pct = table.assign(**{c: 100 * table[c] for c in METRICS + ["target"]})
    said = _said(lambda: read(pct))
    assert "no value above 1" not in said and "lies in [0, 1]" not in said, said


def test_scale_warnings_read_the_held_out_rows_too(table):
    """A target on a 0-10 scale (hi=10) and benchmarks in percent (metric_scale=100) whose training
    rows all lie at most at 1 but whose held-out rows go above it: they are no fractions, so neither
    from_frame nor fit advises dropping the scale (which the held-out rows would refuse)."""
    held = np.arange(len(table)) >= 30
    df = table.assign(target=np.where(held, 1 + 3 * table["target"], table["target"]),
                      **{c: np.where(held, 50 * table[c], table[c]) for c in METRICS})
    read = dict(target_col="target", metric_cols=METRICS, metric_scale=100, hi=10)
    data = None

    def both():
        nonlocal data
        data = obs.from_frame(df, **read)
        obs.fit(jax.random.key(0), obs.take_rows(data, ~held), obs.Spec(k=2))

    said = _said(both)
    assert "drop --" not in said, said
    with pytest.raises(ValueError, match=r"'target' has 10 value\(s\) outside \[lo, hi\] = \[0, 1\]"):
        obs.from_frame(df, **{**read, "hi": 1})  # the advice would have been refused


def test_fit_warns_when_few_residual_degrees_of_freedom():
    """6 rows for a law of 4 parameters (k = 2, floor) leave 2 residual degrees of freedom: warned
    with the counts, the chi-square bound of the residual s.d. and the fix; 40 rows are quiet."""
    from scipy.stats import chi2

    data = obs.from_frame(_table(n=6, seed=4), target_col="target", metric_cols=METRICS)
    bound = np.sqrt(2 / chi2.ppf(0.05, 2))
    with pytest.warns(UserWarning, match=rf"6 training rows for a law with 4 parameters \(k = 2, floor\) leave 2 "
                                         rf"residual degree\(s\) of freedom, fewer than 5 .* bound is {bound:.3g}x the "
                                         r"estimate.*Add models, lower k"):
        obs.fit(jax.random.key(0), data, obs.Spec(k=2))
    data = obs.from_frame(_table(), target_col="target", metric_cols=METRICS)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        obs.fit(jax.random.key(0), data, obs.Spec(k=2))
    assert not [w for w in caught if "residual degree" in str(w.message)]


def test_kappa_source_says_when_the_backtest_did_not_move_kappa(table):
    """The backtest's future rows (largest FLOPs) placed in the middle of the capability range:
    none lies outside the others' box, its likelihood is flat in kappa, and kappa is the prior's
    median 0.25, said as such (not as learnt)."""
    from jaxscale.observational.model import kappa_source
    from jaxscale.observational.report import extrapolation_summary

    t = table.copy()
    middle = t[METRICS].mean(axis=1).rank().between(16, 25).to_numpy()  # 10 of 40: the backtest's future
    t["FLOPs (1E21)"] = np.where(middle, 1e3 + np.arange(40), 1.0 + np.arange(40))
    data = obs.from_frame(t, target_col="target", metric_cols=METRICS)
    with pytest.warns(RuntimeWarning, match="imputed"):
        fit = obs.fit(jax.random.key(0), data, obs.Spec(k=1))
    assert (int(fit.n_backtest), int(fit.n_backtest_outside), float(fit.kappa)) == (10, 0, 0.25)
    source = kappa_source(fit)
    assert source.startswith("prior median: the backtest of 10 training rows did not move it (none of them lies")
    pred = obs.predict(fit, data)
    assert extrapolation_summary(fit, data, pred, np.ones(40, bool))["kappa_source"] == source
    # the other cases, on the same fit
    assert kappa_source(fit.replace(n_backtest=jax.numpy.asarray(0))) == ("prior median: too few training rows "
                                                                          "for the backtest")
    moved = fit.replace(n_backtest_outside=jax.numpy.asarray(3))
    assert kappa_source(moved).startswith("prior median: the backtest of 10 training rows (3 of them outside")
    assert kappa_source(moved.replace(kappa=jax.numpy.asarray(0.4))) == ("backtest of 10 training rows (3 of them "
                                                                         "outside the capability box of the others)")
    assert kappa_source(fit.replace(kappa=None)) is None


def test_holdout_reason_names_held_out_rows_without_target(table, tmp_path, capsys):
    """--holdout given, but its rows have no target: the reason says so (not 'give --holdout')."""
    held = (table["FLOPs (1E21)"] > 30).to_numpy()
    table.assign(target=table["target"].where(~held)).to_csv(tmp_path / "t.csv", index=False)
    argv = ["obs", "fit", "--csv", str(tmp_path / "t.csv"), "--target-col", "target", "--metric-cols",
            ",".join(METRICS), "--k", "2"]
    with pytest.warns(RuntimeWarning, match="imputed"):
        out = _json(argv + ["--holdout", "`FLOPs (1E21)` > 30"], capsys)
    assert out["holdout"] is None and out["n_test"] == held.sum()
    assert out["holdout_reason"].startswith(f"the {held.sum()} held-out row(s) have no target value (column "
                                            "'target' is empty there)")
    with pytest.warns(RuntimeWarning, match="imputed"):  # no split: every row with a target is fitted
        out = _json(argv + ["--where", "target.notna()"], capsys)
    assert out["holdout_reason"] == "no split given, every row is fitted (give --holdout, --cutoff or --test-frac)"


def test_a_query_may_repeat_a_model(table):
    """Repeated models are refused in a table to fit (weighted twice) but predicted in a query,
    each copy as the original."""
    data = obs.from_frame(table, target_col="target", metric_cols=METRICS)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = obs.fit(jax.random.key(0), data, obs.Spec(k=2))
    with pytest.raises(ValueError, match="repeated model would be weighted twice"):
        obs.from_frame(pd.concat([table, table.iloc[[5]]]), target_col="target", metric_cols=METRICS)
    q = pd.concat([table.iloc[[5, 6]], table.iloc[[5]]])
    pred = obs.predict(fit, q)
    assert float(pred.mean[0]) == float(pred.mean[2]) and float(pred.upper[0]) == float(pred.upper[2])


def test_bootstrap_predict_draws_each_row_with_its_own_key(table, tmp_path, capsys):
    """A row's predictive draws depend on the key and the row alone: `obs predict` with the saved
    model gives the intervals `obs fit --predictions` wrote for the same rows (same seed)."""
    data = obs.from_frame(table, target_col="target", metric_cols=METRICS)
    train = table["FLOPs (1E21)"].to_numpy() <= 30
    with pytest.warns(RuntimeWarning, match="imputed"):
        fit = obs.fit(jax.random.key(0), obs.take_rows(data, train), SPEC)
    full = obs.predict(fit, data, key=jax.random.key(0), warn_imputed=False)
    rows = np.flatnonzero(~train)[::-2]
    part = obs.predict(fit, table.iloc[rows].drop(columns=["target"]), key=jax.random.key(0))
    for name in ("lower", "upper"):  # the same draws: equal up to XLA's last-bit rounding
        np.testing.assert_allclose(np.asarray(getattr(part, name)), np.asarray(getattr(full, name))[rows],
                                   rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(np.asarray(part.samples), np.asarray(full.samples)[:, rows], rtol=1e-12, atol=1e-12)
    # through the command line: fit --predictions --save, then predict --model on some of the rows
    path, query = tmp_path / "runs.csv", tmp_path / "query.csv"
    table.to_csv(path, index=False)
    table.iloc[rows].drop(columns=["target"]).to_csv(query, index=False)
    with pytest.warns(RuntimeWarning):
        _json(["obs", "fit", "--csv", str(path), "--target-col", "target", "--metric-cols", ",".join(METRICS),
               "--k", "2", "--bootstrap", "12", "--holdout", "`FLOPs (1E21)` > 30",
               "--predictions", str(tmp_path / "fit.csv"), "--save", str(tmp_path / "model")], capsys)
    again = _json(["obs", "predict", "--model", str(tmp_path / "model"), "--csv", str(query)], capsys)
    written = pd.read_csv(tmp_path / "fit.csv")
    for name in ("mean", "lower", "upper"):
        np.testing.assert_allclose(np.asarray(again[name]), written[name].to_numpy()[rows], rtol=1e-12, atol=1e-12)


def _coverage_case(n: int, covered: int):
    from jaxscale import Prediction

    y = np.linspace(0.2, 0.8, n)
    lo, hi = y - 0.05, y + 0.05
    lo[covered:] = y[covered:] + 0.01  # the last rows lie below their interval
    return y, Prediction(y + 0.002 * np.cos(np.arange(n)), lo, hi)


def test_heldout_coverage_check_flags_too_narrow_by_a_binomial_test():
    """9 of 14 held-out rows inside a 90 % interval (P = 0.009 for a calibrated one) and 33 of 46
    are too narrow, and warned; the general rule alone called both consistent. 13 of 14 is fine."""
    from functools import partial

    from jaxscale.cli._common import check_interval
    from jaxscale.metrics import coverage_check

    interval_check = partial(check_interval, independent=True)  # obs's held-out rows: each another model

    for n, k, p in ((14, 9, 0.0092), (46, 33, 0.00042)):
        assert coverage_check(k / n, n, 0.9)["verdict"] == "consistent"  # what the report said before
        y, pred = _coverage_case(n, k)
        with pytest.warns(UserWarning, match=rf"covered {100 * k / n:.3g} % of the held-out rows \({k} of {n}; .* "
                                             r"it is too narrow here, the real uncertainty is larger"):
            check = interval_check(y, pred, 0.9, what="obs fit (held-out rows)")
        assert check["verdict"] == "too narrow" and (check["covered"], check["n"]) == (k, n)
        assert check["p_covered_at_most"] == pytest.approx(p, rel=0.02)
        assert check["coverage"] < check["expected"][0]
    y, pred = _coverage_case(14, 13)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check = interval_check(y, pred, 0.9, what="m")
    assert check["verdict"] == "consistent" and check["expected"][0] <= 13 / 14
    # too wide still comes from the general rule (here: every one of 60 rows, 25x wider than the errors)
    y, pred = _coverage_case(60, 60)
    with pytest.warns(UserWarning, match="too wide here"):
        assert interval_check(y, pred, 0.9, what="m")["verdict"] == "too wide"
    y[3] = np.nan  # rows without a truth are not scored
    with pytest.warns(UserWarning):
        assert interval_check(y, pred, 0.9, what="m")["n"] == 59


@pytest.mark.slow
def test_bayesian_predict_draws_each_row_with_its_own_key(table, tmp_path):
    """The posterior predictive too: some rows of the table, through a saved model, get the draws
    and intervals of the fit's own prediction of them."""
    data = obs.from_frame(table, target_col="target", metric_cols=METRICS)
    train = table["FLOPs (1E21)"].to_numpy() <= 30
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # short chains: the sampler's diagnostics say so
        fit = obs.fit(jax.random.key(0), obs.take_rows(data, train),
                      obs.Spec(k=2, bayes=True, num_warmup=50, num_samples=50, num_chains=2))
        full = obs.predict(fit, data, key=jax.random.key(0), warn_imputed=False)
        jaxscale.save(fit, tmp_path / "m")
        rows = np.flatnonzero(~train)[::-2]
        part = obs.predict(jaxscale.load(tmp_path / "m"), table.iloc[rows].drop(columns=["target"]),
                           key=jax.random.key(0))
    for name in ("mean", "lower", "upper"):
        np.testing.assert_allclose(np.asarray(getattr(part, name)), np.asarray(getattr(full, name))[rows],
                                   rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(np.asarray(part.samples), np.asarray(full.samples)[:, rows], rtol=1e-12, atol=1e-12)
