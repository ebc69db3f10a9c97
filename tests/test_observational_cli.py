"""CLI (`jaxscale obs ...`), user CSV validation, demo contract of the observational pillar."""
from __future__ import annotations

import argparse

import jax
import numpy as np
import pandas as pd
import pytest

from jaxscale.cli import obs as cli
from jaxscale.observational.data import core_models

jax.config.update("jax_enable_x64", True)


def _parser():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="command")
    cli.register(sub)
    return p


def test_obs_fit_task():
    args = _parser().parse_args(["obs", "fit", "--task", "agentbench"])
    out = args.func(args)
    assert {"mse_train", "mse_test", "slope", "intercept", "floor"} <= set(out)
    # note §5.2 [repro =]: 0.99σ(1.00x − 5.52) + 0.01; 3.7e-4 / 2.2e-4
    assert (f"{out['slope']:.2f}", f"{out['intercept']:.2f}", f"{out['floor']:.2f}") == ("1.00", "-5.52", "0.01")
    assert f"{out['mse_test']:.1e}" == "2.2e-04"


def test_obs_sweep_and_subsets_cli(tmp_path):
    p = _parser()
    args = p.parse_args(["obs", "sweep", "--task", "word_unscramble", "--plot", str(tmp_path / "s.png")])
    out = args.func(args)
    assert len(out["rows"]) == 12 and out["aue_pc"] < out["aue_flops"]
    assert (tmp_path / "s.png").stat().st_size > 10_000
    args = p.parse_args(["obs", "sweep", "--task", "word_unscramble", "--ratios", "0.5,1.5"])
    with pytest.raises(ValueError, match=r"test ratios must lie in \(0, 1\)"):
        args.func(args)
    args = p.parse_args(["obs", "subsets", "--budget", "2"])
    with pytest.raises(ValueError, match="budget must be >= 3"):
        args.func(args)


def test_obs_fit_bootstrap():
    args = _parser().parse_args(["obs", "fit", "--task", "gsm8k_cot", "--bootstrap", "200"])
    b = args.func(args)["bootstrap"]
    assert b["n"] == 200 and b["n_converged"] == 200
    # the point fit sigma(2.04x - 5.53) (note §5.2) lies inside its own bootstrap intervals
    assert b["slope_90"][0] < 2.04 < b["slope_90"][1]
    assert b["intercept_90"][0] < -5.53 < b["intercept_90"][1]
    assert 0 < b["mean_band_90_width"] < 0.5 and 0 <= b["mean_band_90_coverage"] <= 1
    args = _parser().parse_args(["obs", "fit", "--task", "gsm8k_cot", "--bootstrap", "3"])
    with pytest.raises(ValueError, match="bootstrap must be >= 10"):
        args.func(args)


def test_obs_fit_bayes(tmp_path):
    """Issue 6 item 7: ``obs fit --bayes`` prints coverage_50 / coverage_90 beside the point fit.
    Same NUTS shapes as the demo's smoke run (one compile per test session)."""
    args = _parser().parse_args(["obs", "fit", "--task", "gsm8k_cot", "--bayes", "--warmup", "150",
                                 "--samples", "150", "--plot", str(tmp_path / "b.png")])
    out = args.func(args)
    assert out["likelihood"] == "extrap" and out["nuts"]["max_r_hat"] < 1.1
    assert 0 <= out["coverage_50"] <= out["coverage_90"] <= 1 and out["coverage_90"] >= 0.8
    # the MAP keeps the point fit's accuracy (measured 1.02x); posterior median measured 1.04x
    assert out["mse_test_bayes"] <= 1.2 * out["mse_test"]
    assert out["mse_test_bayes_median"] <= 1.2 * out["mse_test"]
    assert (tmp_path / "b.png").stat().st_size > 10_000


def test_obs_tasks_and_select():
    p = _parser()
    args = p.parse_args(["obs", "tasks"])
    names = [t["name"] for t in args.func(args)["tasks"]]
    assert "gsm8k_cot" in names and len(names) >= 17
    args = p.parse_args(["obs", "select", "--budget", "8", "--pool", "le7b"])
    out = args.func(args)
    assert out["selections"][0]["objective"] == pytest.approx(-10.51, abs=5e-3)
    with pytest.raises(ValueError, match="budget"):
        a = p.parse_args(["obs", "select", "--budget", "2"])
        a.func(a)


def _user_table():
    df = core_models()
    t = pd.read_csv(__import__("jaxscale.observational.data", fromlist=["x"]).obscaling_dir()
                    / "base_llm_post_training_eval.csv")
    df = df.merge(t[["Model", "gsm8k_cot_8_exact_match,flexible-extract"]], on="Model")
    df = df.rename(columns={"gsm8k_cot_8_exact_match,flexible-extract": "cot"})
    return df.drop(columns=["GSM8K"]).dropna(subset=["cot"]).reset_index(drop=True)


def test_user_csv_matches_named_task(tmp_path):
    df = _user_table()
    path = tmp_path / "mine.csv"
    df.to_csv(path, index=False)
    out = cli.run_fit(csv=str(path), target="cot", cutoff=84.0)
    # same data as gsm8k_cot without pre-registered models -> note §5.2: test MSE 4.7e-3
    assert f"{out['mse_test']:.1e}" == "4.7e-03"
    assert f"{out['slope']:.2f}" == "2.04"


def test_user_csv_validation(tmp_path):
    df = _user_table()
    bad = df.copy()
    bad.loc[3, "cot"] = np.nan
    bad.to_csv(tmp_path / "a.csv", index=False)
    with pytest.raises(ValueError, match="'cot'.*non-finite"):
        cli.run_fit(csv=str(tmp_path / "a.csv"), target="cot", cutoff=84.0)
    with pytest.raises(ValueError, match="missing column"):
        cli.run_fit(csv=str(tmp_path / "a.csv"), target="nope", cutoff=84.0)
    bad = df.copy()
    bad.loc[5, "MMLU"] = 45.0
    bad.to_csv(tmp_path / "b.csv", index=False)
    with pytest.raises(ValueError, match="'MMLU'.*outside"):
        cli.run_fit(csv=str(tmp_path / "b.csv"), target="cot", cutoff=84.0)
    df.to_csv(tmp_path / "c.csv", index=False)
    with pytest.raises(ValueError, match="training rows"):
        cli.run_fit(csv=str(tmp_path / "c.csv"), target="cot", cutoff=0.01)
    with pytest.raises(ValueError, match="not found"):
        cli.run_fit(csv=str(tmp_path / "zzz.csv"), target="cot")
    with pytest.raises(ValueError, match="exactly one"):
        cli.run_fit()
