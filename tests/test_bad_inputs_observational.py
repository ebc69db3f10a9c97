"""Table 2 of the bad-input checklist, row by row, against the observational commands (``obs fit
--csv``, ``obs predict``; the sampling commands ``obs fit --bayes``, ``obs calibrate``, ``obs
family``; the named-task commands ``obs fit --task``, ``obs sweep``): each bad input exits with
status 2 and a message naming the column and the file lines (and the fix), or gives the documented
warning; nothing is dropped, clamped, merged or double-weighted silently.

The table is the bundled 75-model GSM8K CoT table (the paper's core models with their 8-shot CoT
score as ``cot``), written to a CSV by each test; file line = frame index + 2.

Rows of Table 2 that do not apply to the observational pillar:

* mismatched shapes: a CSV cannot hold columns of different lengths, and ``from_frame`` builds every
  array from one frame;
* non-PD kernel matrix: no GP in this pillar;
* no valid initial parameters: the point fit starts at the original code's fixed start (alpha 0,
  beta 0.03, floor ~0), always finite; NUTS starts at the MAP found from the point fit;
* warm-up / noisy early steps, down-sampled W&B logs: no learning curves here;
* leaderboard table changes over time: the bundled tables are pinned to one commit of the
  original repository; a user CSV has no revision to record (the JSON names the source file);
* same key, different execution mode: ``fit_core`` under ``vmap`` against ``fit`` is tested in
  ``test_observational_contract.py``;
* multiprocessing fork, several workers per GPU: the pillar starts no processes.
"""
import json
import re
import warnings

import numpy as np
import pandas as pd
import pytest

from jaxscale.cli import main
from tests.helpers import json_error

FLOPS = "FLOPs (1E21)"
METRICS = ["MMLU", "ARC-C", "HellaSwag", "Winograd", "TruthfulQA", "XWinograd", "HumanEval"]


@pytest.fixture(scope="module")
def table():
    from jaxscale.observational.data import core_models, obscaling_dir

    df = core_models()
    t = pd.read_csv(obscaling_dir() / "base_llm_post_training_eval.csv")
    df = df.merge(t[["Model", "gsm8k_cot_8_exact_match,flexible-extract"]], on="Model")
    df = df.rename(columns={"gsm8k_cot_8_exact_match,flexible-extract": "cot"})
    return df.drop(columns=["GSM8K", "prereg"]).dropna(subset=["cot"]).reset_index(drop=True)


def _run(capfd, argv):
    """``jaxscale ... --json``: (exit code, parsed JSON or None, stdout, stderr). ``capfd`` also
    catches what native code (LAPACK) prints on the file descriptors."""
    capfd.readouterr()
    rc = main(argv + ["--json"])
    cap = capfd.readouterr()
    out = json.loads(cap.out, parse_constant=lambda c: pytest.fail(f"non-strict JSON token {c}")) if rc == 0 else None
    return rc, out, cap.out, cap.err


def _fit(path, *extra):
    return ["obs", "fit", "--csv", str(path), "--target-col", "cot", *extra]


def _set(col, row, value):
    def edit(df):
        if isinstance(value, str):
            df[col] = df[col].astype(object)
        df.loc[row, col] = value
    return edit


def _assign(**cols):
    def edit(df):
        for c, v in cols.items():
            df[c] = v(df) if callable(v) else v
    return edit


def _first_small(df, below=10.0):
    """Index of the first row with FLOPs below ``below`` (a training row under --cutoff 84)."""
    return int(np.flatnonzero(df[FLOPS].to_numpy(float) < below)[0])


# (Table-2 row, case, edit of the table, extra CLI arguments, pieces of the message): exit 2
ERRORS = [
    ("NaN/inf", "inf benchmark cell", _set("MMLU", 5, np.inf), [], ["'MMLU'", "1 infinite", "rows [7]", "empty"]),
    ("NaN/inf", "-inf target", _set("cot", 3, -np.inf), [], ["'cot'", "1 infinite", "rows [5]", "empty"]),
    ("NaN/inf", "inf FLOPs", _set(FLOPS, 4, np.inf), ["--cutoff", "84"],
     ["'FLOPs (1E21)'", "infinite", "rows [6]", "empty"]),
    ("NaN/inf", "missing training target", lambda df: df.__setitem__(
        "cot", df["cot"].where(df.index != _first_small(df))), ["--cutoff", "84"],
     ["1 row(s) have no target at rows [{small}]", "(target column 'cot' is empty there)",
      "Leave them out: CLI --where \"cot.notna()\"", "--holdout \"cot.isna()\""]),
    ("missing column", "target column not in the file", lambda df: None, ["--target-col", "nope"],
     ["missing column(s) ['nope']", "present columns are ['Model'", "'nope' (target): --target-col NAME "
      "(target_col=...)"]),
    ("missing column", "benchmark column not in the file", lambda df: None, ["--metric-cols", "MMLU,nope"],
     ["missing column(s) ['nope']", "'nope' (benchmark): --metric-cols A,B,C (metric_cols=[...])"]),
    ("missing column", "FLOPs column not in the file", lambda df: None, ["--flops-col", "nope"],
     ["missing column(s) ['nope']", "'nope' (FLOPs): --flops-col NAME (flops_col=...)"]),
    ("NaN/inf", "text in a number column", _set("HumanEval", 8, "0.3x"), [], ["'HumanEval'", "non-numeric", "[10]"]),
    ("zero or negative compute", "zero FLOPs under --cutoff", _set(FLOPS, 4, 0.0), ["--cutoff", "84"],
     ["'FLOPs (1E21)'", "1 non-positive", "rows [6]", "leave unknown FLOPs empty"]),
    ("zero or negative compute", "negative FLOPs", _set(FLOPS, 9, -3.0), [],
     ["'FLOPs (1E21)'", "1 non-positive", "rows [11]", "leave unknown FLOPs empty"]),
    ("mixed units", "benchmark in percent", _assign(MMLU=lambda df: 100 * df["MMLU"]), [],
     ["'MMLU'", "outside [0, 1]", "as fractions", "--metric-scale 100"]),
    ("NaN/inf", "a model without any benchmark score", _assign(**{c: (lambda df, c=c: df[c].where(df.index != 4))
                                                                  for c in METRICS}), [],
     ["1 row(s) have no value in any benchmark column", "rows [6]", "--where \"MMLU.notna()\""]),
    ("mixed units", "target in percent", _assign(cot=lambda df: 100 * df["cot"]), [],
     ["'cot'", "outside [lo, hi]", "hi=100"]),
    ("duplicate rows", "repeated model", lambda df: df.loc.__setitem__(len(df), df.loc[0]), [],
     ["['Model']", "rows [2, 77]", "--dedupe"]),
    ("duplicate rows", "identical rows without a model column", lambda df: (
        df.loc.__setitem__(len(df), df.loc[0]), df.drop(columns=["Model"], inplace=True)), [],
     ["2 rows are identical", "rows [2, 77]", "--dedupe"]),
    ("single level", "constant benchmark column", _assign(**{"ARC-C": 0.5}), ["--cutoff", "84"],
     ["'ARC-C' is constant", "--metric-cols"]),
    ("single level", "one benchmark column", lambda df: None, ["--metric-cols", "MMLU"],
     ["at least 2 benchmark columns"]),
    ("fewer points than parameters + 1", "5 training rows", lambda df: None, ["--cutoff", "{cut5}"],
     ["5 training rows", "5 parameters", "need at least 6", "--cutoff"]),
    ("targets all 0 or 1", "every target 0", _assign(cot=0.0), ["--cutoff", "84"],
     ["target column 'cot' is constant", "47 training rows"]),
    ("targets all 0 or 1", "every target 1", _assign(cot=1.0), [],
     ["target column 'cot' is constant", "75 training rows"]),
    ("targets all 0 or 1", "every target at a bound", _assign(cot=lambda df: (df["MMLU"] > 0.5).astype(float)), [],
     ["'cot'", "at a bound", "lo", "hi"]),
    ("targets outside the domain", "target above hi", _set("cot", 6, 1.5), [],
     ["'cot'", "1 value(s) outside [lo, hi]", "rows [8]", "--hi"]),
    ("ill-conditioned", "k beyond the benchmarks' rank", _assign(copy=lambda df: df["MMLU"]),
     ["--metric-cols", "MMLU,copy", "--k", "2"], ["principal capability 2", "no variance", "--k"]),
]


@pytest.mark.parametrize("row, case, edit, extra, pieces", ERRORS, ids=[e[1] for e in ERRORS])
def test_fit_refuses_bad_tables(table, tmp_path, capfd, row, case, edit, extra, pieces):
    df = table.copy()
    small = _first_small(df) + 2
    cut5 = float(np.sort(df[FLOPS].dropna().to_numpy(float))[4])
    edit(df)
    path = tmp_path / "t.csv"
    df.to_csv(path, index=False)
    extra = [e.format(cut5=cut5) for e in extra]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # e.g. the rows without FLOPs under --cutoff
        rc, _, out, err = _run(capfd, _fit(path, *extra))
    assert rc == 2, (case, err)
    assert json_error(out), (case, out)  # stdout: only the error as JSON, no result, no LAPACK chatter
    for piece in pieces:
        assert piece.format(small=small) in err, (case, piece, err)


def test_predict_refuses_bad_query_rows(table, tmp_path, capfd):
    """Table 2 rows 'NaN/inf', 'zero compute' and 'unseen category' on ``obs predict``."""
    table.to_csv(tmp_path / "t.csv", index=False)
    assert _run(capfd, _fit(tmp_path / "t.csv", "--save", str(tmp_path / "m")))[0] == 0
    predict = ["obs", "predict", "--model", str(tmp_path / "m"), "--csv", str(tmp_path / "q.csv")]
    cases = [
        (_set("MMLU", 1, np.inf), ["'MMLU'", "1 infinite", "rows [3]"]),
        (_set(FLOPS, 0, 0.0), ["'FLOPs (1E21)'", "non-positive", "rows [2]"]),
        (lambda df: df.drop(columns=["HumanEval"], inplace=True), ["missing column(s) ['HumanEval']"]),
        (_assign(**{m: np.nan for m in METRICS}), ["no value in any benchmark column", "rows [2, 3", "--where"]),
    ]
    for edit, pieces in cases:
        q = table.drop(columns=["cot"]).head(4).copy()
        edit(q)
        q.to_csv(tmp_path / "q.csv", index=False)
        rc, _, out, err = _run(capfd, predict)
        assert rc == 2 and json_error(out), err
        for piece in pieces:
            assert piece in err, (piece, err)
    # a family the training table never had: the law does not use families, so it predicts
    q = table.drop(columns=["cot"]).head(4).assign(**{"Model Family": "never-seen"})
    q.to_csv(tmp_path / "q.csv", index=False)
    rc, res, _, err = _run(capfd, predict)
    assert rc == 0 and res["n"] == 4, err


def test_missing_cell_is_imputed_and_counted(table, tmp_path, capfd):
    df = table.copy()
    df.loc[[3, 9], "TruthfulQA"] = np.nan
    df.to_csv(tmp_path / "t.csv", index=False)
    n_missing = int(df[METRICS].isna().to_numpy().sum())
    assert n_missing == int(table[METRICS].isna().to_numpy().sum()) + 2
    with pytest.warns(RuntimeWarning, match=rf"imputed {n_missing} missing benchmark cell\(s\) of the 75 training rows"):
        rc, out, _, err = _run(capfd, _fit(tmp_path / "t.csv"))
    assert rc == 0 and out["n_imputed"] == n_missing, err


def test_rows_without_a_target_are_told_to_be_left_out_with_where(table, tmp_path, capfd):
    """A target column with empty cells and no --where: the error names the rows as file lines and
    leaves them out with --where first (holding them out is the way to predict them); both work."""
    df = table.copy()
    df.loc[[3, 20], "cot"] = np.nan
    df.to_csv(tmp_path / "t.csv", index=False)
    rc, _, out, err = _run(capfd, _fit(tmp_path / "t.csv"))
    assert rc == 2 and json_error(out), err
    said = json.loads(out)["error"]
    assert said.startswith("fit: 2 row(s) have no target at rows [5, 22] (target column 'cot' is empty there)"), said
    assert said.index('--where "cot.notna()"') < said.index('--holdout "cot.isna()"'), said
    assert "df[df['cot'].notna()]" in said, said
    rc, res, _, err = _run(capfd, _fit(tmp_path / "t.csv", "--where", "cot.notna()"))
    assert rc == 0 and res["n_train"] == 73 and res["n_rows"] == 73, err
    rc, res, _, err = _run(capfd, _fit(tmp_path / "t.csv", "--holdout", "cot.isna()"))
    assert rc == 0 and res["n_train"] == 73 and res["n_test"] == 2, err


def _scale_warnings(caught) -> list:
    return [str(w.message) for w in caught if "drop --hi" in str(w.message)]


def test_target_scale_warning_reads_the_held_out_rows_too(table, tmp_path, capfd):
    """A 0-10 score (--hi 10) whose training values all lie in [0, 1] but whose held-out rows go
    above 1: it is no fraction, so nothing advises hi=1 (which the table would refuse); a column
    with every value in [0, 1] is still warned about, counting the held-out rows."""
    held = table["MMLU"] > 0.6
    assert 0 < held.sum() < len(table)
    df = table.assign(score=np.where(held, 1.0 + 3.0 * table["cot"], table["cot"]))
    df.to_csv(tmp_path / "t.csv", index=False)
    args = ["--target-col", "score", "--metric-cols", ",".join(METRICS), "--holdout", "MMLU > 0.6"]
    fit = ["obs", "fit", "--csv", str(tmp_path / "t.csv"), *args]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rc, res, _, err = _run(capfd, fit + ["--hi", "10"])
    assert rc == 0 and res["n_test"] == held.sum(), err
    assert not _scale_warnings(caught), _scale_warnings(caught)
    rc, _, out, err = _run(capfd, fit)  # the advice would have failed: the held-out rows are above hi = 1
    assert rc == 2 and json_error(out) and "outside [lo, hi] = [0, 1]" in json.loads(out)["error"], err
    table.assign(score=table["cot"]).to_csv(tmp_path / "t.csv", index=False)  # fractions: warned about
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rc, _, _, err = _run(capfd, fit + ["--hi", "10"])
    said = _scale_warnings(caught)
    assert rc == 0 and len(said) == 1, (err, said)
    assert said[0].startswith(f"t.csv: every one of the {len(table)} values of target column 'score'"), said


def test_flops_in_the_wrong_unit_warn(table, tmp_path, capfd):
    """Table 2 'mixed units': raw FLOPs read with the default unit (1e21 FLOPs) are implausible."""
    df = table.assign(**{FLOPS: table[FLOPS] * 1e21})
    df.to_csv(tmp_path / "t.csv", index=False)
    with pytest.warns(UserWarning, match=r"'FLOPs \(1E21\)'.*implausible.*--flops-unit 1"):
        rc, _, _, err = _run(capfd, _fit(tmp_path / "t.csv"))
    assert rc == 0, err


def test_raw_flops_fit_in_log_space(table, tmp_path, capfd):
    """Table 2 'huge magnitudes': raw FLOPs (~1e25) with --flops-unit 1 give the same split and law."""
    table.to_csv(tmp_path / "a.csv", index=False)
    table.assign(flops=table[FLOPS] * 1e21).drop(columns=[FLOPS]).to_csv(tmp_path / "b.csv", index=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # rows without FLOPs under --cutoff
        a = _run(capfd, _fit(tmp_path / "a.csv", "--cutoff", "84"))[1]
        b = _run(capfd, _fit(tmp_path / "b.csv", "--flops-col", "flops", "--flops-unit", "1", "--cutoff", "8.4e22"))[1]
    assert (a["n_train"], a["n_test"]) == (b["n_train"], b["n_test"]) == (47, 26)
    assert b["pc_coefficients"] == pytest.approx(a["pc_coefficients"], rel=1e-9)
    assert b["extrapolation"]["max_flops_ratio"] == pytest.approx(a["extrapolation"]["max_flops_ratio"], rel=1e-9)
    # raw FLOPs with the cut-off in 1e21 units keep no training row: the error names the unit's fix
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rc, _, out, err = _run(capfd, _fit(tmp_path / "b.csv", "--flops-col", "flops", "--cutoff", "84"))
    assert rc == 2 and json_error(out) and "leaves no training row" in err and "--flops-unit 1" in err, err


def test_duplicates_dedupe_and_twins(table, tmp_path, capfd):
    """Table 2 'duplicate rows': --dedupe drops explicitly (counted, warned); the same scores under
    two model names are warned about (they would be weighted twice)."""
    df = pd.concat([table, table.iloc[[0]]], ignore_index=True)
    df.to_csv(tmp_path / "d.csv", index=False)
    with pytest.warns(RuntimeWarning, match=r"dropped 1 repeated model row\(s\) at rows \[77\]"):
        rc, out, _, _ = _run(capfd, _fit(tmp_path / "d.csv", "--dedupe"))
    assert rc == 0 and out["n_duplicates_dropped"] == 1 and out["n_train"] == 75
    df.loc[75, "Model"] = "a-renamed-copy"
    df.to_csv(tmp_path / "t.csv", index=False)
    with pytest.warns(UserWarning, match=r"rows \[2, 77\] have identical values .* different model names"):
        rc, _, _, err = _run(capfd, _fit(tmp_path / "t.csv"))
    assert rc == 0, err


def test_far_extrapolation_warns_with_ratio_and_widens(table, tmp_path, capfd):
    """Table 2 'far extrapolation': --cutoff 1 fits 6 small models and predicts models with up to
    ~4e4 x their compute: warned with the ratio, every prediction carries its distance, and the
    interval widens with it."""
    table.to_csv(tmp_path / "t.csv", index=False)
    C = table[FLOPS].to_numpy(float)
    ratio = np.nanmax(C) / C[C <= 1].max()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rc, out, _, err = _run(capfd, _fit(tmp_path / "t.csv", "--cutoff", "1", "--predictions",
                                           str(tmp_path / "p.csv")))
    assert rc == 0, err
    far = [str(w.message) for w in caught if "outside the training" in str(w.message)]
    assert len(far) == 1, [str(w.message) for w in caught]  # warned once
    assert f"{ratio:,.0f}x" in far[0] and "training s.d." in far[0]
    ext = out["extrapolation"]
    assert ext["max_flops_ratio"] == pytest.approx(ratio, rel=1e-9) and ext["n_outside"] > 50
    p = pd.read_csv(tmp_path / "p.csv")
    assert (p.loc[p["split"] == "train", "extrapolation"] == 0).all()
    held = p[p["split"] == "holdout"]
    width = held["upper"] - held["lower"]
    near, farther = held["extrapolation"] < held["extrapolation"].median(), held["extrapolation"] > 2
    inner = (p.loc[p["split"] == "train", "upper"] - p.loc[p["split"] == "train", "lower"]).mean()
    assert width[farther].mean() > 2 * inner and width[farther].mean() > width[near].mean()


def test_optimiser_not_converged_is_reported(table, tmp_path, capfd):
    table.to_csv(tmp_path / "t.csv", index=False)
    with pytest.warns(RuntimeWarning, match="did not converge.*maximum number of steps"):
        rc, out, _, err = _run(capfd, _fit(tmp_path / "t.csv", "--max-steps", "3"))
    assert rc == 0 and out["converged"] is False and out["reason"] == "maximum number of steps reached", err


def test_nan_inside_the_compiled_fit_is_caught(table, tmp_path, capfd, monkeypatch):
    """Table 2 'NaN produced inside jit': a non-finite law after the compiled core is an error."""
    import jax.numpy as jnp

    from jaxscale.observational import model

    core = model._core_jit

    def broken(key, data, spec):
        out, S = core(key, data, spec)
        return out.replace(law=out.law._replace(intercept=jnp.asarray(jnp.nan))), S

    monkeypatch.setattr(model, "_core_jit", broken)
    table.to_csv(tmp_path / "t.csv", index=False)
    rc, _, out, err = _run(capfd, _fit(tmp_path / "t.csv"))
    assert rc == 2 and json_error(out) and "non-finite" in err and "intercept" in err, err


def test_float32_is_warned(table):
    """Table 2 'float32 inputs': ``fit`` warns when JAX float64 is off (the CLI always turns it on)."""
    import jax

    import jaxscale
    from jaxscale import observational as obs

    jaxscale.enable_x64(False)
    try:
        data = obs.from_frame(table.assign(cot=0.0), target_col="cot")
        with pytest.warns(UserWarning, match="float64 is disabled"), pytest.raises(ValueError, match="constant"):
            obs.fit(jax.random.key(0), data)
    finally:
        jaxscale.enable_x64(True)


def test_mcmc_diagnostics_warn_in_calibrate(capfd):
    """Table 2 'MCMC diagnostics': one chain of a few draws (R-hat far above 1.01, a tiny ESS) is
    warned in ``obs calibrate`` (the same batched NUTS serves ``obs fit --bayes``)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rc, out, _, err = _run(capfd, ["obs", "calibrate", "--tasks", "agentboard", "--chains", "1",
                                       "--warmup", "20", "--samples", "20"])
    assert rc == 0, err
    msgs = " | ".join(str(w.message) for w in caught)
    assert "agentboard" in msgs and "1 chain" in msgs and "ESS" in msgs, msgs
    if out["rows"][0]["max_r_hat"] > 1.01:
        assert "R-hat" in msgs, msgs
    # the coverage check reads the same held-out models as coverage_90
    row = out["rows"][0]
    assert row["model_interval"]["coverage"] == pytest.approx(row["coverage_90"])
    assert row["model_interval"]["n"] == row["n_test"]


def test_nuts_diagnostic_messages():
    """The four NUTS checks, with counts and a remedy, whatever the number of chains."""
    from jaxscale.observational.bayes_nuts import nuts_warnings

    msg = nuts_warnings(dict(max_r_hat=1.10, min_ess=40.0, divergences=3, num_chains=1), "obs calibrate, task x")
    assert msg is not None
    for piece in ("obs calibrate, task x", "R-hat 1.10 > 1.01", "ESS 40 < 100", "3 divergent", "1 chain",
                  "--chains"):
        assert piece in msg, (piece, msg)
    assert nuts_warnings(dict(max_r_hat=1.002, min_ess=900.0, divergences=0, num_chains=4), "x") is None


def test_outputs_are_checked_before_any_work(table, tmp_path, capfd):
    table.to_csv(tmp_path / "t.csv", index=False)
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "keep.txt").write_text("keep")
    cases = [
        _fit(tmp_path / "t.csv", "--save", str(tmp_path / "m")),
        _fit(tmp_path / "t.csv", "--predictions", str(tmp_path / "no" / "p.csv")),
        ["obs", "fit", "--task", "gsm8k_cot", "--plot", str(tmp_path / "no" / "p.png")],
        ["obs", "sweep", "--task", "word_unscramble", "--plot", str(tmp_path / "no" / "s.png")],
        ["obs", "family", "--plot", str(tmp_path / "no" / "f.png")],
    ]
    for argv in cases:
        rc, _, out, err = _run(capfd, argv)
        assert rc == 2 and json_error(out) and re.search("does not exist|not empty", err), (argv, err)
    assert (tmp_path / "m" / "keep.txt").read_text() == "keep"


def test_heldout_report_has_the_flops_baseline(table, tmp_path, capfd):
    """Every held-out report scores the ln-FLOPs sigmoid on the same rows (those with FLOPs)."""
    table.to_csv(tmp_path / "t.csv", index=False)
    rc, out, _, err = _run(capfd, _fit(tmp_path / "t.csv", "--holdout", "not (`FLOPs (1E21)` <= 84)"))
    assert rc == 0, err
    b = out["baselines"]
    assert b["n_heldout_no_flops"] == 2 and b["ln_flops_sigmoid"]["n"] == out["n_test"] - 2 == 26
    assert b["ln_flops_sigmoid"]["model"]["n"] == 26 and b["model_loses_to"] == []
    assert b["ln_flops_sigmoid"]["model"]["mae"] < b["ln_flops_sigmoid"]["mae"]
    assert b["model"]["n"] == b["mean_score_sigmoid"]["n"]  # the model beside each baseline, on its rows
    # the mean-benchmark-score sigmoid needs no FLOPs: every held-out row, the rows of `holdout`
    assert b["mean_score_sigmoid"]["n"] == out["holdout"]["n"] == 28
    assert b["mean_score_sigmoid"]["mae"] > out["holdout"]["mae"]
    # the interval of the model is checked on the same rows as its held-out score
    check = b["model_interval"]
    assert check["n"] == 28 and check["coverage"] == out["holdout"]["coverage"] and check["level"] == 0.9
    assert check["verdict"] == "consistent", check


def test_benchmarks_in_percent_with_metric_scale(table, tmp_path, capfd):
    """A table whose benchmark columns are percentages: the error for the missing default columns
    lists the [0, 100] columns with --metric-scale 100; with it the fit is the fit of the fractions,
    and a saved model reads its query tables on the same scale."""
    frac = table.drop(columns=["FLOPs (1E21)"]).rename(columns={"MMLU": "mmlu", "ARC-C": "arc", "HellaSwag": "hs"})
    frac = frac[["Model", "mmlu", "arc", "hs", "cot"]]
    pct = frac.assign(**{c: 100 * frac[c] for c in ("mmlu", "arc", "hs")})
    frac.to_csv(tmp_path / "f.csv", index=False)
    pct.to_csv(tmp_path / "p.csv", index=False)
    rc, _, _, err = _run(capfd, _fit(tmp_path / "p.csv"))
    assert rc == 2 and "with every value in [0, 100]: ['mmlu', 'arc', 'hs']" in err
    assert "(CLI: --metric-cols mmlu,arc,hs --metric-scale 100)" in err
    args = ["--metric-cols", "mmlu,arc,hs", "--test-frac", "0.2"]
    rc, a, _, err = _run(capfd, _fit(tmp_path / "f.csv", *args))
    assert rc == 0, err
    rc, b, _, err = _run(capfd, _fit(tmp_path / "p.csv", *args, "--metric-scale", "100", "--save",
                                     str(tmp_path / "m")))
    assert rc == 0, err
    assert b["holdout"]["mae"] == pytest.approx(a["holdout"]["mae"], rel=1e-6)  # x * 100 / 100 rounds
    rc, _, _, err = _run(capfd, _fit(tmp_path / "f.csv", *args, "--save", str(tmp_path / "mf")))
    assert rc == 0, err
    pred = {}
    for model, csv in (("m", "p.csv"), ("mf", "f.csv")):
        rc, pred[model, csv], _, err = _run(capfd, ["obs", "predict", "--model", str(tmp_path / model), "--csv",
                                                    str(tmp_path / csv)])
        assert rc == 0, err
    np.testing.assert_allclose(pred["m", "p.csv"]["mean"], pred["mf", "f.csv"]["mean"], rtol=1e-6)
    # fractions given to a model of percentages: said, not read silently
    with pytest.warns(UserWarning, match=r"every benchmark value of the query table is at most 1.*metric_scale = 100"):
        rc, _, _, err = _run(capfd, ["obs", "predict", "--model", str(tmp_path / "m"), "--csv", str(tmp_path / "f.csv")])
    assert rc == 0, err


def test_table_without_flops_gets_the_mean_score_baseline_and_names_its_score_columns(table, tmp_path, capfd):
    """A leaderboard export (no FLOPs, its own benchmark names): the error lists the columns whose
    values all lie in [0, 1] as a ready --metric-cols; the held-out report still has a baseline."""
    t = table.drop(columns=["FLOPs (1E21)"]).rename(columns={"MMLU": "mmlu_pro", "ARC-C": "arc", "HellaSwag": "hs"})
    t = t[["Model", "mmlu_pro", "arc", "hs", "cot"]]
    t.to_csv(tmp_path / "t.csv", index=False)
    rc, _, _, err = _run(capfd, _fit(tmp_path / "t.csv", "--test-frac", "0.2"))
    assert rc == 2 and "found 0 of the default benchmark columns" in err
    assert "with every value in [0, 1]: ['mmlu_pro', 'arc', 'hs'] (CLI: --metric-cols mmlu_pro,arc,hs)" in err
    # two benchmarks and no --k: two principal capabilities (the default 3 would be refused)
    rc, out, _, err = _run(capfd, _fit(tmp_path / "t.csv", "--test-frac", "0.2", "--metric-cols", "mmlu_pro,arc"))
    assert rc == 0 and out["k"] == 2, err
    assert "selection on the outcome" in out["split_note"]
    b = out["baselines"]
    assert b["mean_score_sigmoid"]["n"] == out["holdout"]["n"] == out["n_test"] > 0
    assert b["mean_score_sigmoid"]["coverage"] is not None and "ln_flops_sigmoid" not in b
    assert "no FLOPs column: --flops-col" in b["ln_flops_sigmoid_reason"]
    assert b["model_loses_to"] == (["mean_score_sigmoid"] if b["mean_score_sigmoid"]["mae"] < out["holdout"]["mae"]
                                   else [])


def test_clean_headline_fits_warn_nothing(capfd):
    """The headline command on the bundled data with its default settings (and with the default-
    sized 1000-refit bootstrap): no warning of any kind, strict JSON, the paper's law."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rc, out, _, err = _run(capfd, ["obs", "fit", "--task", "gsm8k_cot"])
        assert rc == 0, err
        assert (f"{out['slope']:.2f}", f"{out['intercept']:.2f}") == ("2.04", "-5.53")
        assert out["converged"] and out["reason"] in ("gradient norm below tolerance",
                                                       "relative change of the objective below tolerance")
        assert out["baselines"]["model_loses_to"] == []
        rc, out, _, err = _run(capfd, ["obs", "fit", "--task", "gsm8k_cot", "--bootstrap", "1000"])
        assert rc == 0 and out["bootstrap"]["n_converged"] == 1000, err


def test_default_benchmarks_leave_out_the_target_and_a_listed_target_is_named():
    """``--target GSM8K`` on the bundled layout without ``--metric-cols``: the default benchmark
    columns are the others (a new user's first command; it used to stop on 'also listed'); a target
    the user lists among his benchmarks himself is still an error naming it."""
    from jaxscale.data import load
    from jaxscale.observational import model as obs

    df = load("obscaling_base")
    data = obs.from_frame(df, target_col="GSM8K")
    assert "GSM8K" not in data.metric_names and len(data.metric_names) == 7
    assert ("target", "GSM8K") in data.columns
    with pytest.raises(ValueError, match="target column 'GSM8K' is also listed as a benchmark"):
        obs.from_frame(df, target_col="GSM8K", metric_cols=["MMLU", "ARC-C", "GSM8K"])
