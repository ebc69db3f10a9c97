"""The pillar contract of context_law on a small synthetic table: from_frame -> fit -> predict ->
save / load, jit / vmap of the core, bad input, and the same through the command line."""
import json
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

import jaxscale
from jaxscale import context_law as cl
from jaxscale.cli import main
from jaxscale.context_law.model import predict_law
from jaxscale.context_law.synthetic import TRUE_SPEC, TRUE_THETA

# tiny optimiser settings: one compiled DE program, no polish, a couple of seconds warm
SPEC = cl.Spec(popsize=5, maxiter=30, restarts=1, polish=False)
FLAGS = ["--popsize", "5", "--maxiter", "30", "--restarts", "1", "--no-polish"]
HOLDOUT = "C >= 1e24"


def _frame() -> pd.DataFrame:
    """2 tasks x 4 compute levels x 2 context limits x 5 prompt lengths, binomial scores (200 items)."""
    rows = []
    for task in ("arith", "qa"):
        for C in (1e21, 1e22, 1e23, 1e24):
            for n_ctx in (4096.0, 16384.0):
                for n_pmt in (200.0, 1000.0, 3000.0, 8000.0, 20000.0):
                    rows.append(dict(model=f"m{C:.0e}-{int(n_ctx)}", task=task, C=C, n_ctx=n_ctx, n_pmt=n_pmt))
    df = pd.DataFrame(rows)
    theta = {"arith": TRUE_THETA, "qa": TRUE_THETA + np.array([0.5, 0.0, -0.3, 0.1, 0.0])}
    p = np.concatenate([np.asarray(predict_law(TRUE_SPEC, jnp.asarray(theta[t]), np.log(g["C"].to_numpy()),
                                               g["n_pmt"].to_numpy(), g["n_ctx"].to_numpy()))
                        for t, g in df.groupby("task", sort=True)])
    k = np.asarray(jax.random.binomial(jax.random.key(1), 200, jnp.asarray(p)))
    df["score"] = k / 200.0
    return df


@pytest.fixture(scope="module")
def table():
    df = _frame()
    held = df.eval(HOLDOUT).to_numpy()
    data = cl.from_frame(df, task_col="task")
    train = jax.tree_util.tree_map(lambda a: a[~held], data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # 30 generations: DE does not converge (reported)
        fit = cl.fit(jax.random.key(0), train, SPEC)
    return df, held, data, train, fit


def test_contract_roundtrip(table, tmp_path):
    df, held, data, train, fit = table
    assert len(data) == len(df) == 80 and data.task_labels == ("arith", "qa")
    assert dict(data.columns)["target"] == "score" and dict(fit.columns)["task"] == "task"
    assert fit.theta.shape == (2, 5) and fit.sigma.shape == (2,) and np.all(np.asarray(fit.sigma) > 0)
    assert not np.any(np.asarray(fit.converged))  # 30 generations < what tol=1e-8 needs
    pred = cl.predict(fit, df)  # a DataFrame query, read with the fit's columns
    assert pred.samples is None and pred.mean.shape == (80,)
    assert np.all(pred.lower <= pred.mean) and np.all(pred.mean <= pred.upper)
    assert np.all(pred.upper > pred.lower) and np.all((pred.lower >= 0) & (pred.upper <= 1))
    assert float(jnp.mean(jnp.abs(pred.mean - data.y)[~held])) < 0.05
    q = cl.predict(fit, data)  # a Data query gives the same
    np.testing.assert_array_equal(np.asarray(q.mean), np.asarray(pred.mean))
    no_score = cl.predict(fit, df.drop(columns=["score"]).iloc[::-1])  # target optional, any row order
    np.testing.assert_array_equal(np.asarray(no_score.mean), np.asarray(pred.mean)[::-1])
    jaxscale.save(fit, tmp_path / "m")
    back = jaxscale.load(tmp_path / "m")
    assert isinstance(back, cl.Fit) and back.spec == SPEC and back.task_labels == fit.task_labels
    again = cl.predict(back, df)
    for a, b in zip(pred[:3], again[:3]):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    same = jax.jit(lambda f: f)(fit)
    np.testing.assert_array_equal(np.asarray(same.theta), np.asarray(fit.theta))


def test_scores_in_percent_with_score_scale(table, tmp_path, capsys):
    """A table in percent (RULER, BABILong) is read with score_scale=100: the law is fitted on fractions
    and every number comes back in percent; a saved model reads its queries in percent."""
    df, held, data, train, fit = table
    pct = df.assign(score=df["score"] * 100, chance=np.where(df["task"] == "qa", 25.0, 0.0))
    with pytest.raises(ValueError, match=r"'score' has .* outside \[0.0, 1.0\].*--score-scale 100"):
        cl.from_frame(pct, task_col="task")
    d100 = cl.from_frame(pct, task_col="task", chance_col="chance", score_scale=100)
    d1 = cl.from_frame(pct.assign(score=df["score"], chance=pct["chance"] / 100), task_col="task", chance_col="chance")
    np.testing.assert_allclose(np.asarray(d100.y), np.asarray(d1.y), rtol=1e-12)
    np.testing.assert_allclose(np.asarray(d100.floor), np.asarray(d1.floor), rtol=1e-12)
    assert d100.score_scale == 100.0
    with pytest.raises(ValueError, match="score_scale must be the positive full scale"):
        cl.from_frame(pct, task_col="task", score_scale=0)
    f100 = cl.fit(jax.random.key(0), cl.from_frame(pct.loc[~held], task_col="task", score_scale=100), SPEC)
    assert f100.score_scale == 100.0
    np.testing.assert_allclose(np.asarray(f100.theta), np.asarray(fit.theta), rtol=1e-6)
    p100, p1 = cl.predict(f100, pct), cl.predict(fit, df)
    for a, b in zip(p100[:3], p1[:3]):
        np.testing.assert_allclose(np.asarray(a), 100 * np.asarray(b), rtol=1e-6)
    assert cl.task_summary(f100)[0]["sigma"] == pytest.approx(100 * cl.task_summary(fit)[0]["sigma"], rel=1e-6)
    jaxscale.save(f100, tmp_path / "m")
    back = jaxscale.load(tmp_path / "m")
    assert back.score_scale == 100.0
    np.testing.assert_allclose(np.asarray(cl.predict(back, pct).mean), np.asarray(p100.mean), rtol=1e-12)
    with pytest.warns(UserWarning, match="every value of 'score' is at most 1.*multiply them by 100"):
        cl.predict(back, df)
    res = {}
    for name, frame, extra in [("pct", pct.drop(columns=["chance"]), ["--score-scale", "100"]), ("frac", df, [])]:
        csv = tmp_path / f"{name}.csv"
        frame.to_csv(csv, index=False)
        rc = main(["context", "fit", "--csv", str(csv), "--task-col", "task", "--holdout", HOLDOUT, *FLAGS, *extra,
                   "--json"])
        assert rc == 0
        res[name] = json.loads(capsys.readouterr().out)
    res, ref = res["pct"], res["frac"]
    assert res["score_scale"] == 100.0 and ref["score_scale"] == 1.0
    for k in ("mae_in", "mae_out", "drift_per_decade"):
        assert res[k] == pytest.approx(100 * ref[k], rel=1e-6), k
    assert res["coverage_90"] == ref["coverage_90"]
    assert res["baselines"]["carry_forward"]["mae"] == pytest.approx(100 * ref["baselines"]["carry_forward"]["mae"],
                                                                     rel=1e-9)


def test_fit_core_vmaps_over_keys(table):
    _, _, _, train, _ = table
    one = jax.tree_util.tree_map(lambda a: a[np.asarray(train.task) == 0], train)
    keys = jax.random.split(jax.random.key(3), 3)
    many = jax.vmap(lambda k: cl.fit_core(k, one, SPEC))(keys)
    for i in range(3):
        single = cl.fit_core(keys[i], one, SPEC)
        np.testing.assert_allclose(np.asarray(many.theta[i]), np.asarray(single.theta), rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(float(many.loss[i]), float(single.loss), rtol=1e-9)


def test_fit_core_on_several_tasks_warns_that_it_pools_them(table):
    _, _, _, train, _ = table
    assert np.unique(np.asarray(train.task)).size > 1
    with pytest.warns(UserWarning, match=r"fit_core: one law is fitted to the pooled rows of \d+ tasks .* fit\(\) "
                                         "fits one law per task"):
        cl.fit_core(jax.random.key(0), train, SPEC)


def test_bad_input_names_the_column():
    df = _frame()
    bad = df.copy()
    bad.loc[3, "score"] = 1.3
    with pytest.raises(ValueError, match="'score'.*outside"):
        cl.from_frame(bad)
    bad = df.copy()
    bad.loc[5, "n_pmt"] = 0.0
    with pytest.raises(ValueError, match="'n_pmt'.*non-positive"):
        cl.from_frame(bad)
    with pytest.raises(ValueError, match="missing column.*'tokens'"):
        cl.from_frame(df, n_col="N", d_col="tokens")
    with pytest.raises(ValueError, match="either c_col"):
        cl.from_frame(df.assign(N=1.0, D=1.0), c_col="C", n_col="N", d_col="D")
    bad = df.copy()
    bad.loc[2, "task"] = None
    with pytest.raises(ValueError, match="'task'.*missing task label"):
        cl.from_frame(bad, task_col="task")
    with pytest.raises(ValueError, match="penalty"):
        cl.Spec(penalty="sigmoid").check()
    one = cl.from_frame(df[df["C"] == 1e22], task_col="task")
    with pytest.raises(ValueError, match="alpha .*underdetermined"):
        cl.fit(jax.random.key(0), one, SPEC)
    query = cl.from_frame(df.drop(columns=["score"]), score_col=None)
    with pytest.raises(ValueError, match="score column 'score' is missing"):
        cl.fit(jax.random.key(0), query.replace(columns=(("target", "score"),)), SPEC)


def test_compute_from_n_and_d():
    df = _frame().assign(N=1e9)
    df["D"] = df["C"] / (6 * df["N"])
    a = cl.from_frame(df, n_col="N", d_col="D")
    b = cl.from_frame(df)
    np.testing.assert_allclose(np.asarray(a.log_C), np.asarray(b.log_C), rtol=1e-13)
    assert dict(a.columns)["n"] == "N" and "c" not in dict(a.columns)


def test_cli_fit_then_predict(table, tmp_path, capsys):
    df, held, data, train, fit = table
    csv = tmp_path / "cells.csv"
    df.to_csv(csv, index=False)
    out_csv, model = tmp_path / "pred.csv", tmp_path / "model"
    rc = main(["context", "fit", "--csv", str(csv), "--task-col", "task", "--holdout", HOLDOUT, *FLAGS,
               "--predictions", str(out_csv), "--save", str(model), "--json"])
    assert rc == 0
    res = json.loads(capsys.readouterr().out)
    assert res["n_rows"] == 80 and res["n_holdout"] == int(held.sum()) == 20
    assert 0 <= res["mae_in"] < 0.05 and res["mae_out"] is not None and 0 <= res["coverage_90"] <= 1
    assert [t["task"] for t in res["tasks"]] == ["arith", "qa"]
    assert all(t["converged"] is False and "maxiter=30" in t["reason"] for t in res["tasks"])
    assert res["converged"] is False and any("maxiter" in w for w in res["warnings"])
    assert res["spec"] == SPEC._asdict()
    written = pd.read_csv(out_csv)
    assert len(written) == 80 and list(written.columns) == list(df.columns) + ["mean", "lower", "upper",
                                                                               "extrapolation", "heldout",
                                                                               "carry_forward", "prompt_trend"]
    assert written["heldout"].sum() == 20
    # the baseline's value on the held-out rows (empty on the others) is the one the JSON scored
    base = written["carry_forward"]
    assert base.notna().tolist() == written["heldout"].tolist()
    mae = (base - written["score"]).abs().mean()
    assert mae == pytest.approx(res["baselines"]["carry_forward"]["mae"], rel=1e-12)
    ref = cl.predict(fit, df)  # the CLI fitted the same rows with the same key and spec
    np.testing.assert_allclose(written["mean"], np.asarray(ref.mean), rtol=1e-12)

    new = df.loc[held].drop(columns=["score"])
    new_csv, p2 = tmp_path / "new.csv", tmp_path / "p2.csv"
    new.to_csv(new_csv, index=False)
    rc = main(["context", "predict", "--model", str(model), "--csv", str(new_csv), "--predictions", str(p2),
               "--json"])
    assert rc == 0
    res2 = json.loads(capsys.readouterr().out)
    python = cl.predict(jaxscale.load(model), new)
    for name in ("mean", "lower", "upper"):
        np.testing.assert_array_equal(np.asarray(res2[name]), np.asarray(getattr(python, name)))
        np.testing.assert_array_equal(pd.read_csv(p2)[name].to_numpy(), np.asarray(getattr(python, name)))

    rc = main(["context", "fit", "--csv", str(csv), "--score-col", "acc", "--json"])
    assert rc == 2
    assert "acc" in capsys.readouterr().err


@pytest.mark.slow
def test_bayesian_fit_predicts_draws_and_round_trips(table, tmp_path):
    """Spec(bayes=True): NUTS per task after the point fit; predict draws from the posterior predictive
    (a key is required) and a saved model gives identical draws."""
    df, held, data, train, _ = table
    spec = SPEC._replace(bayes=True, num_warmup=60, num_samples=60, num_chains=1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")  # short chains: the sampler's diagnostics must say so
        fit = cl.fit(jax.random.key(0), train, spec)
    said = [str(w.message) for w in caught]
    assert any("1 chain" in m and "R-hat" in m for m in said), said  # fewer than 2 chains
    assert any("min ESS" in m for m in said), said  # 60 draws: ESS < 100 per chain
    assert fit.posterior.theta.shape == (60, 2, 5) and fit.posterior.noise.shape == (60, 2)
    assert int(fit.posterior.num_chains) == 1 and float(fit.posterior.min_ess) < 100
    assert fit.posterior.drift.shape == (2,) and float(fit.posterior.drift[0]) >= 0
    with pytest.raises(ValueError, match="needs a key"):
        cl.predict(fit, df)
    pred = cl.predict(fit, df, key=jax.random.key(1))
    assert pred.samples.shape == (60, 80)
    assert np.all(pred.lower <= pred.upper) and np.all(pred.upper > pred.lower)
    jaxscale.save(fit, tmp_path / "b")
    again = cl.predict(jaxscale.load(tmp_path / "b"), df, key=jax.random.key(1))
    for a, b in zip(pred, again):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    summary = cl.task_summary(fit)
    assert set(summary[0]["posterior_90"]) == set(fit.param_names)


def test_degenerate_designs_are_refused():
    """Constant score, one prompt length, fewer rows than parameters + 1: errors naming the column,
    the task, the count and the fix, before any fitting."""
    df = _frame()
    spec = SPEC._replace(backtest_frac=0.0)
    flat = df.assign(score=np.where(df["task"] == "qa", 0.0, df["score"]))
    with pytest.raises(ValueError, match=r"task 'qa'.*column 'score' is constant \(0\) in all 40 training rows"):
        cl.fit(jax.random.key(0), cl.from_frame(flat, task_col="task"), spec)
    one = df[df["n_pmt"] == 1000.0]
    with pytest.raises(ValueError, match=r"column 'n_pmt' has one prompt length \(1000 tokens\).*underdetermined"):
        cl.fit(jax.random.key(0), cl.from_frame(one, task_col="task"), spec)
    few = df[(df["task"] == "qa") & df["n_pmt"].isin([1000.0, 3000.0]) & (df["n_ctx"] == 16384.0)
             & (df["C"] <= 1e22)]
    assert len(few) == 4
    with pytest.raises(ValueError, match=r"4 training rows of task 'qa' for 5 free parameters.*at least 6.*"
                                         r"--no-fit-scale"):
        cl.fit(jax.random.key(0), cl.from_frame(few, task_col="task"), spec)
    with pytest.raises(ValueError, match=r"one compute level \(column 'N' x 'D'"):
        cl.fit(jax.random.key(0), cl.from_frame(df[df["C"] == 1e22].assign(N=1e9, D=1e22 / 6e9), n_col="N",
                                                d_col="D"), spec)
    query = cl.from_frame(df.iloc[7:], score_col=None)
    with pytest.raises(ValueError, match=r"missing for 73 training row\(s\) \(rows \[7, 8, 9"):
        cl.fit(jax.random.key(0), query.replace(columns=(("target", "score"),)), SPEC)


def test_extrapolation_distance_and_widening(table):
    """predict fills Prediction.extrapolation (decades outside the task's training cells, 0 inside),
    warns once with the worst value, and the interval widens with it at the backtest's drift."""
    df, held, data, train, fit = table
    assert fit.box.shape == (2, 5) and fit.drift.shape == (2,) and float(fit.drift[0]) > 0
    assert int(np.sum(np.asarray(fit.backtest_rows))) > 0
    with pytest.warns(UserWarning, match="20 of 80 queries lie outside the training data") as rec:
        pred = cl.predict(fit, df)
    assert len([w for w in rec if "outside the training data" in str(w.message)]) == 1
    d = np.asarray(pred.extrapolation)
    np.testing.assert_allclose(d[~held], 0.0, atol=1e-12)
    np.testing.assert_allclose(d[held], 1.0, atol=1e-9)  # C = 1e24 vs the largest training C 1e23
    half = np.asarray(pred.upper - pred.lower)
    flat = cl.predict(fit.replace(drift=jnp.zeros(2)), df)  # no drift: residual noise only
    inner = (np.asarray(flat.lower) > 0) & (np.asarray(flat.upper) < 1)
    assert np.all(half[held & inner] > np.asarray(flat.upper - flat.lower)[held & inner])
    np.testing.assert_allclose(half[~held], np.asarray(flat.upper - flat.lower)[~held])
    from jaxscale.context_law.extrapolation import distance

    box = np.asarray(fit.box)[0]
    np.testing.assert_allclose(float(distance(box, np.log(1e22), 10 ** box[1] * 10.0, 1e9)), 1.0)  # 10x longer


def test_carry_forward_baseline():
    """Each (model, task)'s score at its longest training prompt not longer than the query's."""
    from jaxscale.context_law.baseline import carry_forward

    df = pd.DataFrame({"model": ["a", "a", "a", "b", "b", "c"], "task": "t", "C": 1e22, "n_ctx": 8192.0,
                       "n_pmt": [100.0, 1000.0, 5000.0, 100.0, 5000.0, 5000.0],
                       "score": [0.1, 0.4, 0.9, 0.2, 0.7, 0.5]})
    data = cl.from_frame(df)
    train = np.array([True, True, False, True, False, False])
    base, fallback = carry_forward(data, train, df["model"].to_numpy())
    np.testing.assert_allclose(np.asarray(base.mean), [0.1, 0.4, 0.4, 0.2, 0.2, (0.1 + 0.4 + 0.2) / 3])
    assert fallback == 1  # model c has no training row: the task's mean training score
    merged, _ = carry_forward(data, train)  # without model labels, a and b share (C, n_ctx): one model
    np.testing.assert_allclose(np.asarray(merged.mean)[2], 0.4)


def test_prompt_trend_baseline():
    """Each (model, task)'s line in ln(prompt length) through its longest training prompts, extended;
    one training length: carried forward; no training row: the task's mean (a fallback)."""
    from jaxscale.context_law.baseline import prompt_trend

    df = pd.DataFrame({"model": ["a", "a", "a", "a", "a", "b", "b", "c"], "task": "t", "C": 1e22, "n_ctx": 65536.0,
                       "n_pmt": [100.0, 1000.0, 2000.0, 2000.0, 8000.0, 1000.0, 8000.0, 8000.0],
                       "score": [0.9, 0.8, 0.65, 0.75, 0.2, 0.5, 0.3, 0.5]})
    data = cl.from_frame(df)
    train = np.array([True, True, True, True, False, True, False, False])
    base, fallback = prompt_trend(data, train, df["model"].to_numpy())
    # model a: its last octave is 1000 (0.8) and 2000 (0.7, two rows averaged): -0.1 per ln 2
    a_8000 = 0.7 - 0.1 * np.log(8000 / 2000) / np.log(2.0)
    np.testing.assert_allclose(np.asarray(base.mean)[[4, 6, 7]], [a_8000, 0.5, np.mean([0.9, 0.8, 0.65, 0.75, 0.5])])
    assert fallback == 1
    far = prompt_trend(cl.from_frame(df.assign(n_pmt=df["n_pmt"] * [1, 1, 1, 1, 1e6, 1, 1, 1])), train,
                       df["model"].to_numpy())[0]
    assert float(np.asarray(far.mean)[4]) == 0.0  # clipped to the score's range


def test_cli_holdout_reports_baseline_and_extrapolation(table, tmp_path, capsys):
    df, held, *_ = table
    csv = tmp_path / "cells.csv"
    df.to_csv(csv, index=False)
    rc = main(["context", "fit", "--csv", str(csv), "--task-col", "task", "--model-col", "model",
               "--holdout", HOLDOUT, *FLAGS, "--predictions", str(tmp_path / "p.csv"), "--json"])
    assert rc == 0
    res = json.loads(capsys.readouterr().out)
    base = res["baselines"]["carry_forward"]
    assert base["n"] == 20 and base["mae"] > 0 and base["fallback_rows"] == 20  # held-out models are new
    assert isinstance(res["baselines"]["model_loses_to"], list)
    assert res["extrapolation_max"] == pytest.approx(1.0) and res["drift_per_decade"] > 0
    assert any("outside the training data" in w for w in res["warnings"])
    written = pd.read_csv(tmp_path / "p.csv")
    assert written.loc[written["heldout"], "extrapolation"].min() > 0
    assert (written.loc[~written["heldout"], "extrapolation"] == 0).all()


def test_plot_draws_every_task_with_the_tables_column_names(table):
    """One panel per task (the held-out rows as crosses), axes named by the table's columns."""
    import matplotlib.pyplot as plt

    from jaxscale.context_law.plot import plot_task

    df, held, data, train, fit = table
    fig = plot_task(fit, data, heldout=held)
    panels = [ax for ax in fig.axes if ax.has_data()]
    assert [ax.get_title() for ax in panels] == ["arith", "qa"]
    assert panels[0].get_ylabel() == "score" and "n_pmt" in panels[0].get_xlabel()
    assert panels[0].get_legend().get_texts()[0].get_text() == "n_ctx = 4096"
    plt.close(fig)
    one = plot_task(fit, data, "qa", heldout=held)
    assert one.axes[0].get_title().startswith("qa: law at median compute, 90 % band")
    plt.close(one)


def _fake_posterior(fit, S=64, drift=0.004):
    """A posterior of ``S`` draws around the point fit (no NUTS): enough to exercise predict's draws."""
    shape = (S,) + tuple(np.shape(fit.theta))
    theta = jnp.asarray(fit.theta) + 0.02 * jax.random.normal(jax.random.key(7), shape)
    T = shape[1]
    return cl.Posterior(theta, jnp.full((S, T), 0.03), jnp.asarray(1.001), jnp.asarray(0), jnp.asarray(500.0),
                        jnp.asarray(4), jnp.full((T,), drift))


def test_bayesian_drift_is_reported_on_the_score_scale(table):
    """posterior_summary and task_summary give the Bayesian drift on the table's score scale, like
    the point fit's drift: percent for a table read with score_scale=100, for every task."""
    df, held, data, train, fit = table
    pct = fit.replace(posterior=_fake_posterior(fit, drift=0.004), score_scale=100.0)
    summary = cl.posterior_summary(pct)
    assert summary["drift_per_decade"] == pytest.approx(0.4, rel=1e-12)
    assert summary["divergences"] == 0 and summary["num_chains"] == 4 and summary["min_ess"] == 500.0
    rows = cl.task_summary(pct)
    assert [r["bayes_drift_per_decade"] for r in rows] == pytest.approx([0.4, 0.4], rel=1e-12)
    assert rows[0]["drift_per_decade"] == pytest.approx(100 * float(fit.drift[0]), rel=1e-12)
    frac = cl.posterior_summary(fit.replace(posterior=_fake_posterior(fit, drift=0.004)))
    assert frac["drift_per_decade"] == pytest.approx(0.004, rel=1e-12)
    assert cl.posterior_summary(fit) == {}


def test_bayesian_predict_draws_each_row_with_its_own_key(table, tmp_path):
    """A row's posterior-predictive draws depend on the key and the row alone: predicting some rows
    of the table, in another order, or through a saved model gives the same draws and intervals."""
    df, held, data, train, fit = table
    bayes = fit.replace(posterior=_fake_posterior(fit))
    key = jax.random.key(3)
    full = cl.predict(bayes, data, key=key)  # the fit's own rows, as `context fit` predicts them
    rows = np.flatnonzero(held)[::-3]
    jaxscale.save(bayes, tmp_path / "m")
    for query in (df.iloc[rows], df.iloc[rows].drop(columns=["score"])):
        for model in (bayes, jaxscale.load(tmp_path / "m")):
            part = cl.predict(model, query, key=key)
            for name in ("mean", "lower", "upper"):  # the same draws: equal up to XLA's last-bit rounding
                np.testing.assert_allclose(np.asarray(getattr(part, name)), np.asarray(getattr(full, name))[rows],
                                           rtol=1e-12, atol=1e-15)
            np.testing.assert_allclose(np.asarray(part.samples), np.asarray(full.samples)[:, rows], rtol=1e-12,
                                       atol=1e-15)
    other = cl.predict(bayes, df.iloc[rows], key=jax.random.key(4))
    assert not np.array_equal(np.asarray(other.samples), np.asarray(full.samples)[:, rows])
    # distinct rows draw differently
    s = np.asarray(full.samples)
    assert not np.array_equal(s[:, 0] - np.mean(s[:, 0]), s[:, 1] - np.mean(s[:, 1]))


def test_divergence_advice_names_the_setting_a_context_fit_has():
    """The sampler's generic advice is rewritten with the Spec field and the command-line flag."""
    from jaxscale.context_law.bayes import nuts_advice

    generic = "6 divergent transitions: raise target_accept_prob (e.g. 0.95) or reparameterise the model"
    msg = nuts_advice(generic, cl.Spec())
    assert msg.startswith("6 divergent transitions: raise the target acceptance from 0.8"), msg
    assert "Spec(target_accept=0.95)" in msg and "--target-accept 0.95" in msg and "target_accept_prob" not in msg
    assert "--target-accept 0.975" in nuts_advice(generic, cl.Spec(target_accept=0.95))
    assert "--num-samples" in nuts_advice("min ESS 50 < 400 (100 per chain; site 'a'): draw more samples", cl.Spec())
    assert "--num-warmup" in nuts_advice("max R-hat 1.050 > 1.01 (site 'a'): chains disagree; run longer, "
                                         "reparameterise, or tighten priors", cl.Spec())
    with pytest.raises(ValueError, match=r"target_accept=1.0 must be in \(0, 1\)"):
        cl.Spec(target_accept=1.0).check()
    from jaxscale.cli.context import spec_from_args
    from jaxscale.cli import build_parser

    args = build_parser().parse_args(["context", "fit", "--csv", "x.csv", "--bayes", "--target-accept", "0.95"])
    assert spec_from_args(args).target_accept == 0.95


@pytest.mark.slow
def test_cli_bayes_in_percent_reports_drift_in_percent_and_predict_repeats_the_fit(table, tmp_path, capsys):
    """`context fit --bayes --score-scale 100`: `bayes.drift_per_decade` is in percent, as each task's
    `bayes_drift_per_decade` and the point fit's `drift_per_decade`; `context predict` with the saved
    model gives the intervals the fit wrote for the same rows."""
    df, held, data, train, fit = table
    csv, pred_csv, model = tmp_path / "pct.csv", tmp_path / "pred.csv", tmp_path / "model"
    df.assign(score=df["score"] * 100).to_csv(csv, index=False)
    rc = main(["context", "fit", "--csv", str(csv), "--task-col", "task", "--holdout", HOLDOUT, *FLAGS,
               "--score-scale", "100", "--bayes", "--num-warmup", "40", "--num-samples", "40", "--num-chains", "2",
               "--predictions", str(pred_csv), "--save", str(model), "--json"])
    assert rc == 0
    res = json.loads(capsys.readouterr().out)
    back = jaxscale.load(model)
    tau = float(np.asarray(back.posterior.drift)[0])
    assert res["bayes"]["drift_per_decade"] == pytest.approx(100 * tau, rel=1e-12)
    assert [t["bayes_drift_per_decade"] for t in res["tasks"]] == pytest.approx([100 * tau] * 2, rel=1e-12)
    assert not any("target_accept_prob" in w for w in res["warnings"]), res["warnings"]
    written = pd.read_csv(pred_csv)
    rows = np.flatnonzero(held)[::-2]
    query = tmp_path / "query.csv"
    df.iloc[rows].drop(columns=["score"]).to_csv(query, index=False)
    rc = main(["context", "predict", "--model", str(model), "--csv", str(query), "--json"])
    assert rc == 0
    again = json.loads(capsys.readouterr().out)
    for name in ("mean", "lower", "upper"):
        np.testing.assert_allclose(np.asarray(again[name]), written[name].to_numpy()[rows], rtol=1e-12, atol=1e-12)
