"""The learning-curve contract on a small table built here: from_frame -> fit -> predict ->
save/load, jit/vmap of the core, bad input, and the same through ``jaxscale lc`` on a CSV.

Every fit uses the same tiny setting (2 restarts x 40 Adam steps, 4 latent draws) and the same
training shapes, so the Python and the command-line paths share compiled programs.
"""
import importlib
import json
import warnings

import jax
import numpy as np
import pandas as pd
import pytest

import jaxscale
from jaxscale import learning_curves as lc
from tests.helpers import lc_runs

SPEC = lc.Spec(restarts=2, steps=40, n_h=4)
COLS = dict(task_col="width", instance_col="depth", x_col="step", y_col="loss")
HOLD = "width == 512 and depth == 8"


@pytest.fixture(scope="module")
def table():
    df = lc_runs()
    held = df.eval(HOLD).to_numpy()
    data = lc.from_frame(df, **COLS)
    return df, held, data


@pytest.fixture(scope="module")
def fitted(table):
    _, held, data = table
    return lc.fit(jax.random.key(0), data.rows(~held), SPEC)


def test_from_frame_arrays_and_labels(table):
    df, held, data = table
    assert len(data) == len(df) == 30 and data.task_labels == ("128", "256", "512")
    assert data.instance_labels == ("2", "8") and data.descriptors.shape == (30, 0)
    np.testing.assert_allclose(data.x, np.log(df["step"]))  # the models take ln(step)
    np.testing.assert_array_equal(data.y, df["loss"])  # rows never reordered
    assert dict(data.columns)["target"] == "loss"
    sub = jax.tree.map(lambda a: a[held], data)
    assert len(sub) == 5 and sub.task_labels == data.task_labels  # vocabularies are static
    logx = lc.from_frame(df.assign(step=np.log(df["step"])), **COLS, x_is_log=True)
    np.testing.assert_allclose(logx.x, data.x)


def test_fit_predict_save_load(table, fitted, tmp_path):
    df, held, data = table
    assert isinstance(fitted, lc.Fit) and fitted.spec == SPEC and np.asarray(fitted.ok).all()
    jax.jit(lambda f: f)(fitted)  # a pytree of arrays, names and the Spec static
    query = data.rows(held)
    pred = lc.predict(fitted, query, key=jax.random.key(1))
    assert isinstance(pred, jaxscale.Prediction) and pred.mean.shape == (5,) and pred.samples.shape == (256, 5)
    truth = np.asarray(query.y)
    assert np.all(np.asarray(pred.lower) < np.asarray(pred.mean)) and np.all(np.asarray(pred.mean) < np.asarray(pred.upper))
    assert np.abs(np.asarray(pred.mean) - truth).max() < 1.0  # a whole unseen curve, zero-shot
    # the interval is the mixture's: draws of the observations fall inside it about 90 % of the time
    s = np.asarray(pred.samples)
    inside = np.mean((s >= np.asarray(pred.lower)) & (s <= np.asarray(pred.upper)))
    assert 0.8 < inside < 0.97
    # a DataFrame query (no loss column needed) gives the same numbers; deterministic without a key
    again = lc.predict(fitted, df.loc[held, ["width", "depth", "step"]])
    np.testing.assert_array_equal(again.mean, pred.mean)
    assert again.samples is None
    # continuation of a training curve beyond its last step
    more = lc.predict(fitted, pd.DataFrame({"width": [128], "depth": [2], "step": [10240]}))
    assert np.isfinite(np.asarray(more.mean)).all()
    jaxscale.save(fitted, tmp_path / "m")
    loaded = jaxscale.load(tmp_path / "m")
    assert isinstance(loaded, lc.Fit) and loaded.columns == fitted.columns and loaded.spec == SPEC
    back = lc.predict(loaded, query, key=jax.random.key(1))
    for name in ("mean", "lower", "upper", "samples"):
        np.testing.assert_array_equal(getattr(back, name), getattr(pred, name))


def test_a_long_query_is_predicted_in_chunks(table, fitted, monkeypatch, caplog):
    """More rows than JOINT_MAX_ROWS (6,000 rows had held a 6 GB joint covariance for minutes): the
    same means and intervals from chunks of rows, no joint draws (logged when a key asked for them)."""
    core = importlib.import_module("jaxscale.learning_curves.core")
    _, _, data = table
    whole = lc.predict(fitted, data)
    monkeypatch.setattr(core, "JOINT_MAX_ROWS", 7)  # 30 rows: no joint draws
    monkeypatch.setattr(core, "MARGINAL_MAX_ROWS", 7)  # and chunks of 7, 7, 7, 7 and 2
    with caplog.at_level("INFO", logger="jaxscale"):
        chunked = lc.predict(fitted, data, key=jax.random.key(1))
    assert chunked.samples is None and "without joint draws" in caplog.text
    for name in ("mean", "lower", "upper", "extrapolation"):
        np.testing.assert_allclose(getattr(chunked, name), getattr(whole, name), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("model", ["magp", "magp_desc", "magp_law"])
def test_marginal_predictions_are_the_joint_diagonal(model):
    """predict without a key reads each row's marginal from a program without the (M, M) query
    covariance: its means and variances are the joint prediction's mean and diagonal, also for a
    width no training run had (descriptor models) and a long run of steps."""
    core = importlib.import_module("jaxscale.learning_curves.core")
    df = lc_runs()
    cols = dict(COLS, descriptor_cols=["params"]) if model != "magp" else COLS
    data = lc.from_frame(df, **cols)
    held = (df["width"] == 512).to_numpy() if model != "magp" else df.eval(HOLD).to_numpy()
    f = lc.fit(jax.random.key(0), data.rows(~held), SPEC._replace(model=model))  # magp: the programs of `fitted`
    joint = core.predict_restarts(f, data)
    marg = core.predict_marginals(f, data)
    np.testing.assert_allclose(marg.mean, joint.mean, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(marg.var, np.diagonal(np.asarray(joint.cov), axis1=-2, axis2=-1), rtol=1e-7,
                               atol=1e-12)
    np.testing.assert_allclose(marg.noise_var, joint.noise_var, rtol=1e-12)
    whole = core.prediction_from_joint(joint)
    pred = lc.predict(f, data)
    keyed = lc.predict(f, data, key=jax.random.key(1))  # the key adds joint draws, changes nothing else
    assert pred.samples is None and keyed.samples.shape == (f.spec.n_samples, len(df))
    for name in ("mean", "lower", "upper"):
        np.testing.assert_allclose(getattr(pred, name), getattr(whole, name), rtol=1e-9, atol=1e-12)
        np.testing.assert_array_equal(getattr(keyed, name), getattr(pred, name))


def test_a_long_holdout_is_scored_from_chunks(table, monkeypatch):
    """evaluate_holdout reads only each row's marginal: held-out rows beyond JOINT_MAX_ROWS are
    predicted in chunks and scored to the same numbers as one joint prediction."""
    core = importlib.import_module("jaxscale.learning_curves.core")
    _, held, data = table
    _, whole, m_whole = lc.evaluate_holdout(jax.random.key(0), data, held, SPEC)
    monkeypatch.setattr(core, "MARGINAL_MAX_ROWS", 3)
    assert held.sum() > 3
    _, chunked, m_chunked = lc.evaluate_holdout(jax.random.key(0), data, held, SPEC)
    for name in ("mean", "lower", "upper", "extrapolation"):
        np.testing.assert_allclose(getattr(chunked, name), getattr(whole, name), rtol=1e-9, atol=1e-12)
    for part in ("full", "last"):
        assert m_chunked["coverage_90"][part] == m_whole["coverage_90"][part]
        np.testing.assert_allclose(m_chunked["rmse"][part]["mean"], m_whole["rmse"][part]["mean"], rtol=1e-9)


def test_heldout_task_without_training_rows_is_warned_before_the_fit(table):
    """A held-out width with no training run: magp can only give its prior there (a user's 900-point
    fit took 8.5 min before the numbers showed it: MAE 1.25, coverage 0); the warning comes before the
    fit and names the descriptor model. A model with descriptors is not warned."""
    _, _, data = table
    held = np.asarray(data.task) == data.task_labels.index("512")
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        lc.evaluate_holdout(jax.random.key(0), data, held, SPEC)  # the programs of `fitted` (one row bucket)
    msgs = [str(w.message) for w in rec]
    first = next(i for i, m in enumerate(msgs) if "have no training row" in m)
    assert "1 held-out task(s) (512; 10 rows)" in msgs[first] and "--model magp_law --descriptor-cols" in msgs[first]
    assert not any("held-out rows" in m and "outside the training data" in m for m in msgs[:first])  # before the fit's


def test_fit_core_vmaps_over_keys(table, fitted):
    _, held, data = table
    train = data.rows(~held)
    keys = jax.random.split(jax.random.key(3), 3)
    batched = jax.jit(jax.vmap(lambda k: lc.fit_core(k, train, SPEC)))(keys)  # one program, not op by op
    single = jax.jit(lambda k, d: lc.fit_core(k, d, SPEC))  # one program for the three keys
    for i in range(3):
        one = single(keys[i], train)
        for a, b in zip(jax.tree.leaves(one.params), jax.tree.leaves(batched.params)):
            np.testing.assert_allclose(b[i], a, rtol=1e-6, atol=1e-8)
        np.testing.assert_allclose(batched.loss[i], one.loss, rtol=1e-6)
    # fit == fit_core on the rows padded to a bucket, plus host checks; padding changes only rounding
    from jaxscale.learning_curves.core import pad_data, row_bucket

    padded, w = pad_data(train, row_bucket(len(train)))
    assert len(padded) > len(train)
    core = jax.jit(lc.fit_core, static_argnames="spec")(jax.random.key(0), padded, SPEC, w)
    np.testing.assert_allclose(core.loss, fitted.loss, rtol=1e-10)
    np.testing.assert_allclose(single(jax.random.key(0), train).loss, fitted.loss, rtol=1e-6)


def test_bad_input_names_the_column(table, fitted):
    df, held, _ = table
    with pytest.raises(ValueError, match="'loss'"):
        lc.from_frame(df.assign(loss=df["loss"].where(df.index != 3)), **COLS)  # NaN target
    with pytest.raises(ValueError, match="missing column"):
        lc.from_frame(df.drop(columns="depth"), **COLS)
    with pytest.raises(ValueError, match="'step'"):
        lc.from_frame(df.assign(step=0), **COLS)  # steps must be > 0
    with pytest.raises(ValueError, match="share the same"):
        lc.from_frame(pd.concat([df, df.iloc[[4]]]), **COLS)  # duplicate (width, depth, step)
    with pytest.raises(ValueError, match="no rows"):
        lc.from_frame(df.iloc[:0], **COLS)
    with pytest.raises(ValueError, match="'width'.*unknown"):
        lc.predict(fitted, pd.DataFrame({"width": [4096], "depth": [2], "step": [10]}))
    with pytest.raises(ValueError, match="changes along the curve"):
        lc.from_frame(df.assign(lr=np.arange(len(df))), **COLS, descriptor_cols=["lr"])
    with pytest.raises(ValueError, match="descriptor"):
        lc.fit(jax.random.key(0), lc.from_frame(df, **COLS), lc.Spec(model="magp_desc"))


@pytest.mark.slow
def test_descriptor_model_predicts_an_unseen_task_from_any_columns():
    """magp_desc on descriptor columns of any name: the middle width has no training row at all, so its
    z-score constants come from the regression on the task descriptor (measured max error 0.27)."""
    df = lc_runs(1).rename(columns={"width": "w", "depth": "L"}).assign(wd=lambda f: f["w"], dd=lambda f: f["L"])
    data = lc.from_frame(df, task_col="w", instance_col="L", x_col="step", y_col="loss", descriptor_cols=["wd", "dd"])
    assert data.descriptor_levels == ("task", "instance")
    held = (df["w"] == 256).to_numpy()
    f = lc.fit(jax.random.key(0), data.rows(~held), lc.Spec(model="magp_desc", restarts=2, steps=40, n_h=4))
    p = lc.predict(f, data.rows(held))
    err = np.abs(np.asarray(p.mean) - np.asarray(data.y)[held])
    assert np.all(np.isfinite(err)) and err.max() < 0.5
    assert np.mean((np.asarray(data.y)[held] >= p.lower) & (np.asarray(data.y)[held] <= p.upper)) >= 0.8


def test_cli_evaluate_save_predict(table, tmp_path, capsys):
    from jaxscale.cli import main

    df, held, data = table
    csv = tmp_path / "runs.csv"
    df.to_csv(csv, index=False)
    base = ["--csv", str(csv), "--task-col", "width", "--instance-col", "depth", "--x-col", "step",
            "--y-col", "loss", "--restarts", "2", "--steps", "40", "--n-h", "4"]
    out_csv, model = tmp_path / "heldout.csv", tmp_path / "model"
    rc = main(["lc", "evaluate", *base, "--holdout", HOLD, "--predictions", str(out_csv), "--save", str(model),
               "--json"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert out["n_train"] == 25 and out["n_test"] == 5 and out["n_heldout_curves"] == 1
    for m in ("rmse", "mae", "nlpd"):
        assert set(out[m]) == {"full", "partial", "last"} and np.isfinite(out[m]["full"]["mean"])
    for c in ("coverage_50", "coverage_90"):
        assert set(out[c]) == {"full", "last"} and 0.0 <= out[c]["full"] <= 1.0
    assert out["rmse"]["full"]["mean"] < 1.0
    assert isinstance(out["converged"], bool) and out["convergence"]["reason"]
    b = out["baselines"]  # naive baselines scored on the same rows, all points and the final points
    assert {"nearest_curve", "size_trend", "model", "model_loses_to", "size"} <= set(b)
    assert b["size"] == "task axis: ln(task label); instance axis: ln(instance label)"
    for name in ("nearest_curve", "size_trend", "model"):
        assert b[name]["n"] == 5 and b[name]["last"]["n"] == 1 and np.isfinite(b[name]["mae"])
    assert out["extrapolation"]["max"] == 0.0  # width 512 and depth 8 both have training runs
    heldout = pd.read_csv(out_csv)  # the held-out rows with the model's prediction, then each baseline's
    assert len(heldout) == 5 and list(heldout.columns) == list(df.columns) + ["mean", "lower", "upper", "extrapolation",
                                                                             "nearest_curve", "size_trend"]
    for name in ("nearest_curve", "size_trend"):
        assert np.mean(np.abs(heldout[name] - heldout["loss"])) == pytest.approx(b[name]["mae"], rel=1e-12)
    # predict new rows with the saved model: the same numbers as the Python path
    new = tmp_path / "new.csv"
    df.loc[held, ["width", "depth", "step", "loss"]].to_csv(new, index=False)
    rc = main(["lc", "predict", "--model", str(model), "--csv", str(new), "--predictions",
               str(tmp_path / "p2.csv"), "--json"])
    assert rc == 0
    got = json.loads(capsys.readouterr().out)
    ref = lc.predict(jaxscale.load(model), pd.read_csv(new))
    np.testing.assert_array_equal(got["mean"], np.asarray(ref.mean))
    np.testing.assert_array_equal(got["lower"], np.asarray(ref.lower))
    assert got["score"]["n"] == 5 and got["score"]["coverage"] is not None
    p2 = pd.read_csv(tmp_path / "p2.csv")
    np.testing.assert_array_equal(p2["mean"], heldout["mean"])  # evaluate and predict agree
    # bad input exits with status 2 and names the column
    rc = main(["lc", "evaluate", *base[:-6], "--y-col", "nope", "--holdout", HOLD, "--json"])
    assert rc == 2 and "nope" in capsys.readouterr().err


def test_cli_evaluate_predicts_runs_not_trained_yet(table, tmp_path, capsys):
    """Held-out rows without a loss (a planned run, given by its configuration and steps) are
    predicted and written; the rows with a loss are scored, the others counted."""
    from jaxscale.cli import main

    df, _, _ = table
    plan = df[(df["width"] == 512) & (df["depth"] == 8)].assign(width=1024, loss=np.nan)
    csv = tmp_path / "runs.csv"
    pd.concat([df, plan]).to_csv(csv, index=False)
    base = ["--csv", str(csv), "--task-col", "width", "--instance-col", "depth", "--x-col", "step",
            "--y-col", "loss", "--restarts", "2", "--steps", "40", "--n-h", "4"]
    rc = main(["lc", "evaluate", *base, "--holdout", "width >= 512 and depth == 8", "--predictions",
               str(tmp_path / "p.csv"), "--json"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert out["n_test"] == 10 and out["n_missing_truth"] == 5
    assert "the 5 held-out rows with a loss" in out["scored_rows"]
    assert np.isfinite(out["mae"]["full"]["mean"]) and 0.0 <= out["coverage_90"]["full"] <= 1.0
    for name in ("nearest_curve", "size_trend", "model"):
        assert out["baselines"][name]["n"] == 5 and out["baselines"][name]["n_missing_truth"] == 5
    written = pd.read_csv(tmp_path / "p.csv")
    assert len(written) == 10 and written["loss"].isna().sum() == 5
    assert np.isfinite(written[["mean", "lower", "upper", "nearest_curve", "size_trend"]].to_numpy()).all()
    # only planned rows held out: predicted, nothing scored
    rc = main(["lc", "evaluate", *base, "--holdout", "width == 1024", "--save", str(tmp_path / "m"), "--json"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert out["n_missing_truth"] == out["n_test"] == 5 and out["metrics"] is None and out["baselines"] is None
    # a size the saved model never saw: refused, or, asked for, predicted (magp: from its prior, said so)
    new = tmp_path / "new.csv"
    plan.assign(width=2048).to_csv(new, index=False)
    rc = main(["lc", "predict", "--model", str(tmp_path / "m"), "--csv", str(new), "--json"])
    assert rc == 2 and "['2048'] unknown to the model" in capsys.readouterr().err
    with pytest.warns(UserWarning, match=r"\['2048'\] with no training run: magp predicts them from its prior"):
        rc = main(["lc", "predict", "--model", str(tmp_path / "m"), "--csv", str(new), "--handle-unknown", "prior",
                   "--json"])
    assert rc == 0
    got = json.loads(capsys.readouterr().out)
    assert np.isfinite(got["mean"]).all() and got["extrapolation"] == [None] * 5  # inf: the prior
    # eight new sizes: the warning names five in numeric order and counts the rest
    many = pd.concat([plan.assign(width=w) for w in (4096, 2048, 3072, 10240, 5120, 6144, 8192, 7168)])
    many.to_csv(new, index=False)
    with pytest.warns(UserWarning, match=r"40 row\(s\) of 8 task\(s\) \['2048', '3072', '4096', '5120', '6144'\] "
                                         r"\(\+3 more\) with no training run"):
        assert main(["lc", "predict", "--model", str(tmp_path / "m"), "--csv", str(new), "--handle-unknown", "prior",
                     "--json"]) == 0
    capsys.readouterr()


def test_predict_runs_the_fit_never_saw():
    """With handle_unknown="prior" a model predicts sizes and settings absent from its training table:
    the labels are appended to its vocabularies (a new task starts from the prior over its latent),
    the known rows' predictions do not move, and a DataFrame and a Data query give the same numbers."""
    df = lc_runs()
    kw = dict(**COLS, descriptor_cols=["params"])
    spec = lc.Spec(model="magp_law", restarts=2, steps=40, n_h=4)
    fit = lc.fit(jax.random.key(0), lc.from_frame(df[df["width"] < 512], **kw), spec)
    assert fit.task_labels == ("128", "256")
    new = df[df["width"] == 512].assign(depth=lambda d: d["depth"].replace({8: 4}),
                                        params=lambda d: 12 * d["depth"] * 512 ** 2)
    known = df[df["width"] == 256]
    with pytest.raises(ValueError, match=r"'width' has 10 row\(s\) with label\(s\) \['512'\] unknown.*"
                                         "handle_unknown='prior'"):
        lc.predict(fit, new)
    both = lc.predict(fit, pd.concat([known, new]), handle_unknown="prior")
    alone = lc.predict(fit, known)
    np.testing.assert_allclose(np.asarray(both.mean)[:10], np.asarray(alone.mean), rtol=1e-9)
    np.testing.assert_allclose(np.asarray(both.upper)[:10], np.asarray(alone.upper), rtol=1e-9)
    m, lo, hi = (np.asarray(a)[10:] for a in (both.mean, both.lower, both.upper))
    assert np.all(np.isfinite(m)) and np.all(lo < m) and np.all(m < hi)
    truth = new["loss"].to_numpy()
    assert np.abs(m - truth).max() < 0.5  # the law in params carries the unseen width
    d = np.asarray(both.extrapolation)[10:]
    # read through the law's descriptor, not the prior: 512 x 2 has the params of 256 x 8, 512 x 4 lies beyond
    assert np.all(d[:5] == 0) and np.all(np.isfinite(d[5:])) and np.all(d[5:] > 0)
    as_data = lc.predict(fit, lc.from_frame(pd.concat([known, new]), **kw), handle_unknown="prior")
    np.testing.assert_allclose(np.asarray(as_data.mean), np.asarray(both.mean), rtol=1e-12)
    ext, q = lc.core.with_labels(fit, new)
    assert ext.task_labels == ("128", "256", "512") and ext.instance_labels == ("2", "8", "4")
    assert np.shape(ext.eps_h)[1] == 3 and np.shape(ext.params.h_mean)[1] == 3


def test_curve_table_pads_ragged_curves(table):
    from jaxscale.learning_curves.law import curve_table, default_grid

    df, _, _ = table
    ragged = df.drop(index=[4])  # the last logged step of the first run is missing
    data = lc.from_frame(ragged, **COLS, params_col="params", tokens_per_step=1000)
    t = curve_table(data)
    assert t.index.shape == (6, 5) and t.n_padded == 1 and not t.valid[0, 4]
    assert np.all(np.diff(t.compute, axis=1) > 0)  # padded compute sits just above the last point
    np.testing.assert_array_equal(t.index[0, 3:], [3, 3])
    g = default_grid(t)
    final = 6.0 * ragged.groupby(["width", "depth"])["params"].first() * 1000 * ragged.groupby(["width", "depth"])["step"].max()
    assert g[0] == pytest.approx(final.min()) and g[-1] == pytest.approx(final.max())
    with pytest.raises(ValueError, match="compute"):
        curve_table(lc.from_frame(df, **COLS))


def test_cli_law_on_own_table(table, tmp_path, capsys):
    from jaxscale.cli import main

    df, held, _ = table
    csv = tmp_path / "runs.csv"
    df.to_csv(csv, index=False)
    rc = main(["lc", "law", "--csv", str(csv), "--task-col", "width", "--instance-col", "depth", "--x-col", "step",
               "--y-col", "loss", "--params-col", "params", "--tokens-per-step", "1000", "--holdout", HOLD,
               "--restarts", "2", "--steps", "40", "--n-h", "4", "--samples", "64", "--plot", str(tmp_path / "law.png"),
               "--json"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert out["samples"] == 64 and out["n_heldout_curves"] == 1 and out["grid"]["default"]
    assert out["plot"] == str(tmp_path / "law.png") and (tmp_path / "law.png").read_bytes()[:4] == b"\x89PNG"
    for k in ("b1", "b0", "abc"):
        assert set(out[k]) == {"mean", "std", "lo", "hi"} and np.isfinite(out[k]["mean"])
    assert out["gt"]["b1"] < 0 and out["n_padded_points"] == 0
    laws = out["baseline_laws"]  # the sceptic's law: the held-out rows filled by each baseline
    assert all(np.isfinite(laws[n]["abc"]) for n in ("nearest_curve", "size_trend"))
    assert laws["model_loses_to"] == [n for n in ("nearest_curve", "size_trend")
                                      if laws[n]["abc"] < out["abc_of_mean_law"]]
    assert out["grid"]["max"] == pytest.approx(6.0 * df["params"].max() * 1000 * df["step"].max())


@pytest.mark.slow
def test_cli_active_on_own_table(table, tmp_path, capsys):
    from jaxscale.cli import main

    df, _, _ = table
    csv = tmp_path / "runs.csv"
    df.to_csv(csv, index=False)
    rc = main(["lc", "active", "--csv", str(csv), "--task-col", "width", "--instance-col", "depth", "--x-col", "step",
               "--y-col", "loss", "--params-col", "params", "--tokens-per-step", "1000", "--holdout", "depth == 8",
               "--strategy", "uncertainty,smallest", "--seeds", "1", "--queries", "2", "--restarts", "2",
               "--steps", "5", "--cold-steps", "20", "--n-h", "2", "--samples", "32", "--json"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert out["n_candidates"] == 3 and out["candidates"] == [["128", "8"], ["256", "8"], ["512", "8"]]
    s = out["results"]["smallest"]
    assert s["queried"] == [[["128", "8"], ["256", "8"]]]  # cheapest candidate first
    assert len(s["abc_joint"]["mean"]) == 3 and s["abc_joint"]["mean"][-1] >= 0
    rc = main(["lc", "active", "--csv", str(csv), "--task-col", "width", "--instance-col", "depth", "--x-col", "step",
               "--y-col", "loss", "--params-col", "params", "--tokens-per-step", "1000", "--holdout", "step > 100",
               "--json"])
    assert rc == 2 and "whole curves" in capsys.readouterr().err


def test_runs_without_a_second_level(tmp_path, capsys):
    """A sweep exported one curve per run (a W&B export: run name, step, loss, its config) has no
    (task, instance) hierarchy. ``instance_col=None`` (CLI: ``--curve-col RUN``) reads every run as
    a task of its own, all sharing one instance: fit, held-out report, save and ``lc predict`` of
    a planned run (its query needs no instance column). The missing default instance column is
    refused with that fix; ``--curve-col`` with ``--task-col`` is refused."""
    from jaxscale.cli import main

    df = lc_runs(run=True).drop(columns=["width", "depth"])
    data = lc.from_frame(df, task_col="run", instance_col=None, x_col="step", y_col="loss",
                         descriptor_cols=("params",))
    assert data.instance_labels == (lc.frame.ONE_INSTANCE,) and np.all(np.asarray(data.instance) == 0)
    assert len(data.task_labels) == 6 and data.descriptor_levels == ("task",)
    with pytest.raises(ValueError, match=r"missing column\(s\) \['instance'\].*instance_col=None.*--curve-col RUN"):
        lc.from_frame(df, task_col="run", x_col="step", y_col="loss")
    with pytest.raises(ValueError, match=r"share the same \('run', 'step'\) point"):
        lc.from_frame(pd.concat([df, df.iloc[:1]]), task_col="run", instance_col=None, x_col="step", y_col="loss")
    # a W&B-style long log: other metrics on rows of their own, the loss empty there; keeping the last
    # row of each step would keep those, so the fix named is the --where that keeps the losses
    wandb = pd.concat([df, df.assign(loss=np.nan, lr=1e-3)], ignore_index=True)
    with pytest.raises(ValueError, match=r"share the same \('run', 'step'\) point .* 30 of them have no 'loss'.*"
                                         r"--where 'loss.notna\(\)'"):
        lc.from_frame(wandb, task_col="run", instance_col=None, x_col="step", y_col="loss", require_target=False)
    csv = tmp_path / "sweep.csv"
    df.to_csv(csv, index=False)
    base = ["--csv", str(csv), "--curve-col", "run", "--x-col", "step", "--y-col", "loss", "--model", "magp_law",
            "--descriptor-cols", "params", "--restarts", "2", "--steps", "100", "--n-h", "4"]
    rc = main(["lc", "evaluate", *base, "--holdout", "params > 2e7", "--save", str(tmp_path / "m"), "--json"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert out["n_test"] == 5 and np.isfinite(out["mae"]["full"]["mean"])
    assert set(out["baselines"]) >= {"nearest_curve", "size_trend", "model"}
    query = tmp_path / "plan.csv"
    df[df["run"] == "w512d8"].assign(run="planned", loss=np.nan).drop(columns="loss").to_csv(query, index=False)
    rc = main(["lc", "predict", "--model", str(tmp_path / "m"), "--csv", str(query), "--handle-unknown", "prior",
               "--json"])
    assert rc == 0
    got = json.loads(capsys.readouterr().out)
    truth = df.loc[df["run"] == "w512d8", "loss"].to_numpy()
    assert np.all(np.abs(np.asarray(got["mean"]) - truth) < 0.5), (got["mean"], truth)
    rc = main(["lc", "evaluate", *base, "--task-col", "width", "--holdout", "params > 2e7", "--json"])
    assert rc == 2 and "drop --task-col" in capsys.readouterr().err
