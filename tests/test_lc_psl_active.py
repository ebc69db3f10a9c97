"""Active learning loop and acquisition functions, with a synthetic stand-in model."""
import re

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

from jaxscale.learning_curves.active import (
    RoundPrediction,
    run_active,
    summarize_traces,
    uncertainty_scores,
    variance_reduction_scores,
)
from jaxscale.learning_curves.compute import load_nanogpt_curves


@pytest.fixture(scope="module")
def data():
    return load_nanogpt_curves().flat()


def _stand_in(truth, scale=0.04):
    """Synthetic 'model': truth + a fixed bias that shrinks with the number of observed curves."""
    K, P = truth.shape
    x = np.arange(P)
    kp = np.exp(-0.5 * (x[:, None] - x[None]) ** 2 / 4.0)
    bias = np.random.default_rng(1).normal(0, 1, (K, P)) @ np.linalg.cholesky(kp).T

    def fit(key, observed, warm):
        s = scale * (1.0 - observed.mean())
        mean = truth + s * bias
        chol = np.linalg.cholesky(np.kron(np.eye(K), kp) * s**2 + 1e-12 * np.eye(K * P))
        rm = mean[None] + 0.5 * s * np.asarray(jax.random.normal(key, (4, K, P)))
        return RoundPrediction(rm, mean.reshape(-1), chol, warm=(warm or 0) + 1)

    return fit


def test_acquisitions():
    rm = jnp.zeros((3, 4, 2)).at[:, 1].set(jnp.array([[0.0, 0], [1, 1], [2, 2]]))
    s = uncertainty_scores(rm, jnp.array([True, True, False, True]))
    assert int(jnp.argmax(s)) == 1 and s[2] == -jnp.inf
    assert float(s[1]) == pytest.approx(2.0 / 3.0)  # population variance of (0, 1, 2)
    # b1 depends only on curve 2 -> only curve 2 has a positive expected reduction
    key = jax.random.key(0)
    y = jax.random.normal(key, (2000, 3, 2))
    b1 = 0.5 * y[:, 2, 0]
    r = variance_reduction_scores(b1, y, jnp.ones(3), jnp.array([True, True, True]))
    assert float(r[2]) == pytest.approx(float(jnp.var(b1)), rel=1e-6)
    assert float(r[0]) < 0.01 * float(r[2]) and float(r[1]) < 0.01 * float(r[2])


def test_run_active_all_strategies(data):
    labels, L, C = data
    fit = _stand_in(L)
    traces = []
    for i, strategy in enumerate(("uncertainty", "random", "smallest", "largest", "ours")):
        t = run_active(jax.random.key(i), fit, labels, L, C, strategy, n_queries=4, n_samples=256)
        assert len(t.queried) == 4 and len(set(t.queried)) == 4
        assert all(lab[1] != 8 for lab in t.queried)  # 8-layer curves are the start set
        assert np.all(np.diff(t.cum_pf) > 0) and t.abc_joint_mean.shape == (5,)
        traces.append(t)
    small, large = traces[2], traces[3]
    assert small.queried[0] == (512, 10) and large.queried[0] == (1600, 48)
    s = summarize_traces(traces)
    assert set(s) == {"uncertainty", "random", "smallest", "largest", "ours"}
    assert len(s["ours"]["abc_joint"]["mean"]) == 5


def test_run_active_to_completion_reaches_zero(data):
    labels, L, C = data
    t = run_active(jax.random.key(0), _stand_in(L), labels, L, C, "largest", n_queries=30, n_samples=64)
    assert len(t.queried) == 25 and t.abc_joint_mean[-1] == 0.0
    assert t.cum_pf[-1] == pytest.approx(5.233e5, rel=1e-3)
    with pytest.raises(ValueError, match="strategy"):
        run_active(jax.random.key(0), _stand_in(L), labels, L, C, "greedy")


def test_cli_registration_and_plots(data, tmp_path):
    import argparse

    from jaxscale.cli.lc import register
    from jaxscale.learning_curves.frontier import LawParams
    from jaxscale.learning_curves.heldout import SPLITS, split_heldout
    from jaxscale.learning_curves.plot import plot_active, plot_curves, plot_law_fan

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    a = parser.parse_args(["lc", "law", "--split", "quad", "--samples", "50"])
    assert a.split == "quad" and a.samples == 50 and a.rule == "interp" and callable(a.func)
    a = parser.parse_args(["lc", "active", "--strategy", "ours,random"])
    assert a.queries == 25 and callable(a.func)
    assert len(SPLITS["quad"]) == 12 and len(SPLITS["tri"]) == 10 and SPLITS["t1"] == ((1600, 48),)
    with pytest.raises(ValueError, match="split"):
        split_heldout("square")

    labels, L, C = data
    held = SPLITS["t1"]
    i = labels.index(held[0])
    plot_curves(tmp_path / "c.png", labels, L, C, held, L[i], np.eye(11) * 1e-3)
    rng = np.random.default_rng(0)
    plot_law_fan(tmp_path / "f.png", -0.054 + 0.002 * rng.normal(size=100), 3.44 + 0.05 * rng.normal(size=100),
                 LawParams(-0.0541, 3.44))
    summ = {"ours": {"abc_joint": {"mean": [0.3, 0.1], "std": [0.1, 0.05]}, "cum_pf": {"mean": [1e4, 2e4]}}}
    plot_active(tmp_path / "a.png", summ)
    assert all((tmp_path / f).stat().st_size > 1000 for f in ("c.png", "f.png", "a.png"))


@pytest.mark.slow
def test_model_adapters_tiny_fit(data):
    """The MaGP wired into `lc law` (predict_heldout) and `lc active` (round_predictor), tiny fits."""
    from jaxscale.learning_curves.active import round_predictor
    from jaxscale.learning_curves.heldout import SPLITS, predict_heldout
    from jaxscale.learning_curves.psl import make_problem, probabilistic_law, summarize

    labels, L, C = data
    pred = predict_heldout(jax.random.key(0), "nanogpt_large", SPLITS["t1"], restarts=1, steps=30, n_h=2)
    assert pred.held_labels == ((1600, 48),) and pred.restart_means.shape == (1, 1, 11)
    assert pred.mean.shape == (1, 11) and pred.cov.shape == (1, 11, 11)
    pr = make_problem(labels, L, C, pred.held_labels, rule="nearest")
    s = summarize(probabilistic_law(jax.random.key(1), pr, pred.mean, pred.cov, n_samples=64), pr.gt)
    assert np.isfinite(s["abc"]["mean"])

    fit = round_predictor("nanogpt_large", labels, restarts=2, steps=5, cold_steps=40, n_h=2)
    t = run_active(jax.random.key(0), fit, labels, L, C, "uncertainty", n_queries=1, n_samples=32)
    assert len(t.queried) == 1 and np.all(np.isfinite(t.abc_joint_mean))


@pytest.mark.slow
def test_law_informed_round_predictor(data):
    """``lc active --model magp_law`` on the bundled grid: every round refits the law on the observed
    curves (padded to a bucket) and predicts all curves jointly; two rounds of one compiled size
    (5 and 6 curves of 11 points, both padded to 110 points)."""
    from jaxscale.learning_curves.active import round_predictor

    labels, L, C = data
    fit = round_predictor("nanogpt_large", labels, model="magp_law", restarts=1, cold_steps=30, n_h=2, bucket=110)
    t = run_active(jax.random.key(0), fit, labels, L, C, "ours", n_queries=1, n_samples=32)
    assert len(t.queried) == 1 and t.queried[0] not in [lab for lab in labels if lab[1] == 8]
    assert np.all(np.isfinite(t.abc_joint_mean)) and np.all(t.b1_joint_std > 0)
    with pytest.raises(ValueError, match="supports models"):
        round_predictor("nanogpt_large", labels, model="dhgp")


@pytest.mark.slow
def test_padded_law_fit_is_the_unpadded_fit():
    """Inert padding rows (weight 0) leave the law, its covariance and the residuals unchanged, so
    active-learning rounds of different sizes share one compiled law fit."""
    from jaxscale.learning_curves.law_gp import fit_law_residuals

    rng = np.random.default_rng(0)
    n, G = 60, 6
    z = rng.normal(size=(n, 1))
    x = rng.uniform(1, 8, n)
    y = 1.8 + np.exp(0.5 - 0.3 * z[:, 0]) + np.exp(1.0 - 0.4 * x) + rng.normal(0, 0.01, n)
    cl = np.arange(n) % G
    a = fit_law_residuals(jax.random.key(0), z, x, y, cl, G)
    pad = lambda v, fill: np.concatenate([v, np.full((20,) + v.shape[1:], fill)])  # noqa: E731
    w = pad(np.ones(n), 0.0)
    b = fit_law_residuals(jax.random.key(0), pad(z, 0.0), pad(x, 0.0), pad(y, 1.0), pad(cl, -1), G, w)
    for u, v in zip(jax.tree.leaves(a[0]) + list(a[1:2]) + list(a[3:]), jax.tree.leaves(b[0]) + list(b[1:2]) +
                    list(b[3:])):
        np.testing.assert_allclose(np.asarray(u), np.asarray(v), rtol=1e-4, atol=1e-8)  # L-BFGS stopping tolerance
    np.testing.assert_allclose(np.asarray(b[2])[:n], np.asarray(a[2]), rtol=1e-4, atol=1e-6)
    assert np.all(np.asarray(b[2])[n:] == 0)


@pytest.mark.slow
def test_active_on_your_own_csv_with_the_law_model(tmp_path, capsys):
    """``lc active --csv ... --model magp_law --descriptor-cols params``: the law-informed model refitted
    on the user's own observed runs each round; the candidates are the held-out runs; no descriptor
    columns -> a clear error naming the option."""
    import json
    import sys

    sys.path.insert(0, str(__import__("pathlib").Path(__file__).parent))
    from helpers import lc_runs

    from jaxscale.cli import main

    csv = tmp_path / "my_runs.csv"
    lc_runs(1).to_csv(csv, index=False)
    base = ["lc", "active", "--csv", str(csv), "--task-col", "width", "--instance-col", "depth", "--x-col", "step",
            "--y-col", "loss", "--params-col", "params", "--tokens-per-step", "1000", "--model", "magp_law",
            "--holdout", "width >= 256 and depth == 8", "--strategy", "ours", "--seeds", "1",
            "--restarts", "1", "--cold-steps", "40", "--samples", "32", "--json"]
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main(base + ["--descriptor-cols", "params"]) == 0
    # the refits are set by --cold-steps: no per-refit message sends the user to --steps
    assert not any("CLI --steps" in str(w.message) for w in caught)
    out = json.loads(capsys.readouterr().out)
    assert out["model"] == "magp_law" and out["n_candidates"] == 2
    assert out["abc_range"]["source"] == "the compute grid" and out["abc_range"]["c_max"] == out["grid"]["max"]
    r = out["results"]["ours"]
    assert sorted(map(tuple, r["queried"][0])) == [("256", "8"), ("512", "8")]  # every candidate, once
    assert np.all(np.isfinite(r["abc_joint"]["mean"])) and r["abc_joint"]["mean"][-1] == 0.0
    assert main(base) == 2
    assert "--descriptor-cols" in capsys.readouterr().err


def test_recommend_ranks_runs_not_trained_yet(tmp_path, capsys):
    """``lc active --recommend``: the candidates' loss cells are empty (runs not trained yet); one fit
    on the finished runs ranks them by expected Var(b1) reduction per PetaFLOP; the ranking, the
    cheapest candidate and the law are in the JSON; a missing loss OUTSIDE the candidates is refused
    naming the column and the file line; ``lc law`` accepts the same table (no ground truth)."""
    import json
    import warnings

    from jaxscale.cli import main
    from tests.helpers import lc_runs

    df = lc_runs(1)
    cand = (df.width >= 256) & (df.depth == 8)
    df.loc[cand, "loss"] = np.nan
    csv = tmp_path / "planned.csv"
    df.to_csv(csv, index=False)
    cols = ["--csv", str(csv), "--task-col", "width", "--instance-col", "depth", "--x-col", "step", "--y-col", "loss",
            "--params-col", "params", "--tokens-per-step", "1000", "--holdout", "width >= 256 and depth == 8"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # the fit setting of the replay test below (same table, same hold-out): one compiled cold fit for both
        assert main(["lc", "active", *cols, "--recommend", "--restarts", "1", "--cold-steps", "40", "--n-h", "2",
                     "--samples", "200", "--plot", str(tmp_path / "next.png"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["plot"] == str(tmp_path / "next.png") and (tmp_path / "next.png").stat().st_size > 10_000
    assert sorted(tuple(f["curve"]) for f in out["finished"]) == [("128", "2"), ("128", "8"), ("256", "2"),
                                                                 ("512", "2")]
    r = out["ranking"]
    assert out["n_candidates"] == 2 and sorted(tuple(x["curve"]) for x in r) == [("256", "8"), ("512", "8")]
    assert [x["rank"] for x in r] == [1, 2] and out["next"] == r[0]["curve"]
    assert r[0]["var_b1_reduction_per_pf"] >= r[1]["var_b1_reduction_per_pf"] >= 0
    for x in r:  # a reduction of Var(b1) is a share of it; its cost is the run's final compute (12 d w^2 * 6 * 1000 * 2560)
        assert 0 <= x["var_b1_reduction_fraction"] <= 1
        w, d = map(int, x["curve"])
        np.testing.assert_allclose(x["cost_pf"], 6 * 12 * d * w * w * 1000 * 2560 / 1e15, rtol=1e-9)
        f = x["final_loss"]
        assert f["lo"] < f["mean"] < f["hi"]
    assert out["smallest_first"]["curve"] == ["256", "8"]
    assert out["law"]["b1"]["std"] > 0
    # the same table through lc law: the candidates are predicted, nothing is scored
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["lc", "law", *cols, "--restarts", "1", "--steps", "30", "--samples", "32", "--predictions",
                     str(tmp_path / "planned_pred.csv"), "--json"]) == 0
    law = json.loads(capsys.readouterr().out)
    assert law["gt"] is None and law["baselines"] is None and np.isfinite(law["b1"]["mean"])
    planned = pd.read_csv(tmp_path / "planned_pred.csv")  # the candidates' rows: the model's and each baseline's loss
    assert len(planned) == cand.sum() and planned["loss"].isna().all()
    assert np.isfinite(planned[["mean", "nearest_curve", "size_trend"]].to_numpy()).all()
    for name in ("nearest_curve", "size_trend"):  # the trend line's law needs no truth; its AbC does
        b = law["baseline_laws"][name]
        assert np.isfinite(b["b1"]) and "abc" not in b
        assert b["b1_in_model_band"] == (law["b1"]["lo"] <= b["b1"] <= law["b1"]["hi"])
    assert "model_loses_to" not in law["baseline_laws"]
    # a finished run with a missing loss: named as in the file (row 3 is line 5)
    df.loc[3, "loss"] = np.nan
    df.to_csv(csv, index=False)
    assert main(["lc", "active", *cols, "--recommend", "--json"]) == 2
    err = capsys.readouterr().err
    assert "'loss'" in err and re.search(r"\b5\b", err) and "--holdout" in err
    # a run in progress (some steps logged, the rest planned) is not a candidate: the error names the curve
    # and the command that predicts the rest of a run
    df.loc[3, "loss"] = 2.9
    df.loc[cand & (df.step <= 40), "loss"] = 3.0
    df.to_csv(csv, index=False)
    assert main(["lc", "active", *[c if c != "width >= 256 and depth == 8" else "loss.isna()" for c in cols],
                 "--recommend", "--json"]) == 2
    err = capsys.readouterr().err
    assert "whole curves" in err and "lc extrapolate" in err
    # --plot draws the recommendation; the replay has its own plot
    assert main(["lc", "active", *cols, "--plot", str(tmp_path / "x.png"), "--json"]) == 2
    assert "--recommend" in capsys.readouterr().err
    # without --csv: a clear error naming what to give
    assert main(["lc", "active", "--recommend", "--json"]) == 2
    assert "--csv" in capsys.readouterr().err



def test_active_replay_resumes_from_its_checkpoint(tmp_path, capsys, monkeypatch):
    """``lc active --csv ... --out-dir D``: every finished strategy x seed is checkpointed in D. The same
    command with one more strategy runs only that one and returns the earlier trajectory unchanged
    (as a fresh run of both gives it); other settings are refused naming what differs, and
    ``--overwrite`` discards that checkpoint instead."""
    import json

    from jaxscale.cli import main
    from jaxscale.learning_curves.active import CHECKPOINT
    from tests.helpers import lc_runs

    csv = tmp_path / "my_runs.csv"
    lc_runs(1).to_csv(csv, index=False)
    out = tmp_path / "active"
    base = ["lc", "active", "--csv", str(csv), "--task-col", "width", "--instance-col", "depth", "--x-col", "step",
            "--y-col", "loss", "--params-col", "params", "--tokens-per-step", "1000",
            "--holdout", "width >= 256 and depth == 8", "--seeds", "1", "--restarts", "1", "--cold-steps", "40",
            "--steps", "10", "--n-h", "2", "--samples", "32", "--json"]

    def run(*extra):
        assert main(base + list(extra)) == 0
        return json.loads(capsys.readouterr().out)

    from jaxscale import _log
    from tests.helpers import log_lines

    monkeypatch.setattr(_log, "HEARTBEAT_SECONDS", 0.0)  # a batch job's progress lines, every one
    monkeypatch.delenv("JAXSCALE_PROGRESS", raising=False)
    with log_lines("jaxscale") as lines:
        first = run("--strategy", "largest", "--out-dir", str(out))
    assert first["resumed_trajectories"] == 0 and (out / CHECKPOINT).is_file()
    assert any(t.startswith("active learning: trajectories (strategy x seed): 1/1 after") for t in lines), lines
    # a killed run leaves its finished trajectories: run again with one more strategy
    both = run("--strategy", "largest,smallest", "--out-dir", str(out))
    assert both["resumed_trajectories"] == 1
    assert both["results"]["largest"] == first["results"]["largest"]
    assert both["seconds_per_strategy"]["largest"] == first["seconds_per_strategy"]["largest"]
    fresh = run("--strategy", "largest,smallest", "--out-dir", str(tmp_path / "fresh"))
    assert fresh["resumed_trajectories"] == 0
    for s in ("largest", "smallest"):
        assert fresh["results"][s]["queried"] == both["results"][s]["queried"]
        np.testing.assert_allclose(fresh["results"][s]["abc_joint"]["mean"], both["results"][s]["abc_joint"]["mean"],
                                   rtol=1e-9)
    # other settings: refused before any fit, naming the setting; --overwrite starts again
    assert main(base[:-3] + ["--samples", "16", "--json", "--strategy", "largest", "--out-dir", str(out)]) == 2
    err = capsys.readouterr().err
    assert "another run" in err and "n_samples" in err and "--overwrite" in err
    # another seed too (its trajectories would have been run again and the folder's replaced)
    assert main(base + ["--strategy", "largest", "--out-dir", str(out), "--seed", "1"]) == 2
    assert "differs in: the PRNG key (--seed) [0, 0] -> [0, 1]" in capsys.readouterr().err
    again = run("--strategy", "largest", "--out-dir", str(out), "--samples", "16", "--overwrite")
    assert again["resumed_trajectories"] == 0 and again["samples"] == 16


@pytest.mark.slow
def test_law_of_your_own_table_is_the_bundled_law_at_the_same_range(tmp_path, capsys):
    """The bundled nanoGPT-large grid written as a user's CSV (width, depth, step, loss, flops) and
    given to ``lc law --csv`` with the bundled grid and ``--abc-range 1e15,1e20`` gives the bundled
    ``lc law --split quad`` numbers (ground-truth law, joint-draw and restart-mean AbC); the AbC of
    a user table integrates over its compute grid unless told otherwise, and the JSON says which."""
    import json
    import warnings

    import pandas as pd

    from jaxscale import learning_curves as lc
    from jaxscale.cli import main
    from jaxscale.learning_curves.compute import point_compute, steps_from_log

    f = lc.make_problem("nanogpt_large", "quad").data.frame
    step = steps_from_log(f["x"].to_numpy(float))
    csv = tmp_path / "runs.csv"
    pd.DataFrame({"width": f["n_embd"], "depth": f["n_layer"], "step": step, "loss": f["value"],
                  "flops": point_compute(f["n_layer"].to_numpy(float), f["n_embd"].to_numpy(float), step)}
                 ).to_csv(csv, index=False)
    model = ["--model", "magp", "--restarts", "1", "--steps", "50", "--samples", "500", "--json"]
    user = ["lc", "law", "--csv", str(csv), "--task-col", "width", "--instance-col", "depth", "--x-col", "step",
            "--y-col", "loss", "--compute-col", "flops", "--holdout", "width >= 768 and depth >= 24",
            "--grid-min", "1e18", "--grid-max", "1e20", *model]

    def run(argv):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            rc = main(argv)
        out = capsys.readouterr().out
        assert rc == 0, out
        return json.loads(out)

    mine = run([*user, "--abc-range", "1e15,1e20"])
    bundled = run(["lc", "law", "--dataset", "nanogpt_large", "--split", "quad", *model])
    assert mine["n_heldout_curves"] == 12
    assert bundled["abc_range"]["source"] == "the paper's range" and mine["abc_range"]["source"] == "given"
    for k in ("c_min", "c_max"):
        assert mine["abc_range"][k] == bundled["abc_range"][k]
    for k in ("b1", "b0"):
        assert mine["gt"][k] == pytest.approx(bundled["gt"][k], rel=1e-9)
    for block in (lambda o: o["abc"], lambda o: o["restart_means"]["abc"]):
        assert block(mine)["mean"] == pytest.approx(block(bundled)["mean"], rel=1e-6)
    assert mine["abc"]["mean"] > 0.1  # the fit is short: a wide area over the wide range
    # the same table without --abc-range: the area over the grid's own range (1e18 .. 1e20) is smaller
    grid = run(user)
    assert grid["abc_range"]["source"] == "the compute grid" and grid["abc_range"]["c_min"] == pytest.approx(1e18)
    assert grid["abc"]["mean"] < mine["abc"]["mean"]
    # a malformed range is refused before anything is fitted; the bundled law keeps the paper's range
    assert main([*user, "--abc-range", "1e20,1e15"]) == 2
    assert "0 < C_min < C_max" in capsys.readouterr().err
    assert main(["lc", "law", "--split", "quad", "--abc-range", "1e15,1e20", "--json"]) == 2
    assert "the paper's range" in capsys.readouterr().err
