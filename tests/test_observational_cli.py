"""CLI (`jaxscale obs ...`), user CSV validation, demo contract of the observational pillar."""
from __future__ import annotations

import argparse
import json
import re

import jax
import numpy as np
import pandas as pd
import pytest

from jaxscale.cli import main
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
    # paper (reproduced exactly): 0.99σ(1.00x − 5.52) + 0.01; MSE 3.7e-4 / 2.2e-4
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
    # the point fit sigma(2.04x - 5.53) (paper) lies inside its own bootstrap intervals
    assert b["slope_90"][0] < 2.04 < b["slope_90"][1]
    assert b["intercept_90"][0] < -5.53 < b["intercept_90"][1]
    assert 0 < b["mean_band_90_width"] < 0.5 and 0 <= b["mean_band_90_coverage"] <= 1
    args = _parser().parse_args(["obs", "fit", "--task", "gsm8k_cot", "--bootstrap", "3"])
    with pytest.raises(ValueError, match="bootstrap must be >= 10"):
        args.func(args)


def test_obs_fit_bayes(tmp_path):
    """``obs fit --bayes`` prints coverage_50 / coverage_90 beside the point fit.
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


def _main_json(argv, capsys):
    """Run ``jaxscale ...`` and return (exit code, parsed JSON or None, stderr)."""
    capsys.readouterr()
    rc = main(argv + ["--json"])
    cap = capsys.readouterr()
    return rc, (json.loads(cap.out) if rc == 0 else None), cap.err


def test_user_csv_matches_named_task(tmp_path, capsys):
    df = _user_table()
    path = tmp_path / "mine.csv"
    df.to_csv(path, index=False)
    # the paper's split: FLOPs <= 84 train, everything else (also unknown FLOPs) held out ->
    # the same data as gsm8k_cot without the pre-registered models: test MSE 4.7e-3, slope 2.04
    rc, out, _ = _main_json(["obs", "fit", "--csv", str(path), "--target-col", "cot",
                             "--holdout", "not (`FLOPs (1E21)` <= 84)"], capsys)
    assert rc == 0 and (out["n_train"], out["n_test"]) == (47, 28)
    assert f"{out['mse_test']:.1e}" == "4.7e-03"
    assert f"{out['slope']:.2f}" == "2.04"
    assert out["n_imputed"] == 2 and out["n_no_flops"] == 0  # 2 Falcon HumanEval cells
    # --cutoff: the 2 models without FLOPs (Mistral-7B, Mixtral) are left out and counted
    with pytest.warns(RuntimeWarning, match=r"2 row\(s\) without FLOPs"):
        rc, cut, _ = _main_json(["obs", "fit", "--csv", str(path), "--target", "cot", "--cutoff", "84"], capsys)
    assert rc == 0 and (cut["n_train"], cut["n_test"], cut["n_no_flops"]) == (47, 26, 2)
    assert cut["pc_coefficients"] == pytest.approx(out["pc_coefficients"], rel=1e-9)
    for key, value in cut.items():  # every null carries a reason
        if value is None:
            assert f"{key}_reason" in cut, key


def test_user_csv_validation(tmp_path, capsys):
    df = _user_table()

    def fails(frame, *extra, match):
        frame.to_csv(tmp_path / "t.csv", index=False)
        rc, _, err = _main_json(["obs", "fit", "--csv", str(tmp_path / "t.csv"), "--target-col", "cot",
                                 *extra], capsys)
        assert rc == 2, err
        assert re.search(match, err), err

    small = int(np.flatnonzero(df["FLOPs (1E21)"].to_numpy(float) < 10)[0])  # a training row
    bad = df.copy()
    bad.loc[small, "cot"] = np.nan
    line = small + 2  # file line of the row (header = line 1)
    fails(bad, "--cutoff", "84", match=rf"1 row\(s\) have no target at rows \[{line}\]")
    fails(df, "--target-col", "nope", match="missing column")
    bad = df.copy()
    bad.loc[5, "MMLU"] = 45.0
    fails(bad, "--cutoff", "84", match=r"'MMLU'.*outside \[0, 1\] at rows \[7\]")
    bad = df.copy()
    bad.loc[5, "MMLU"] = np.inf
    fails(bad, match=r"'MMLU' has 1 infinite value\(s\) at rows \[7\]")
    bad = df.copy()
    bad["ARC-C"] = 0.5
    fails(bad, "--cutoff", "84", match=r"'ARC-C' is constant")
    bad = df.copy()
    bad.loc[4, "FLOPs (1E21)"] = 0.0
    fails(bad, "--cutoff", "84", match=r"FLOPs column 'FLOPs \(1E21\)' has 1 non-positive .* rows \[6\]")
    bad = pd.concat([df, df.iloc[[0]]], ignore_index=True)
    fails(bad, match=rf"rows share the same \['Model'\] at rows \[2, {len(df) + 2}\]")
    fails(df, "--cutoff", "0.01", match="training rows")
    fails(df, "--cutoff", "84", "--holdout", "MMLU > 0.5", match="at most one")
    rc, _, err = _main_json(["obs", "fit", "--csv", str(tmp_path / "zzz.csv"), "--target-col", "cot"], capsys)
    assert rc == 2 and "does not exist" in err
    rc, _, err = _main_json(["obs", "fit"], capsys)
    assert rc == 2 and "exactly one" in err
    rc, _, err = _main_json(["obs", "fit", "--task", "agentbench", "--holdout", "x > 1"], capsys)
    assert rc == 2 and "--holdout work with --csv only" in err
    # --dedupe: the repeated model is dropped explicitly, counted and warned about
    bad = pd.concat([df, df.iloc[[0]]], ignore_index=True)
    bad.to_csv(tmp_path / "d.csv", index=False)
    with pytest.warns(RuntimeWarning, match="dropped 1 repeated model row"):
        rc, out, _ = _main_json(["obs", "fit", "--csv", str(tmp_path / "d.csv"), "--target-col", "cot",
                                 "--cutoff", "84", "--dedupe"], capsys)
    assert rc == 0 and out["n_duplicates_dropped"] == 1 and out["duplicate_rows_dropped"] == [len(df) + 2]
