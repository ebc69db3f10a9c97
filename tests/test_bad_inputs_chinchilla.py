"""Table 2 of the bad-input checklist, row by row, against the Chinchilla commands (fit, predict,
optimal): each bad input exits with status 2 and a message naming the column and the file lines,
or gives the documented warning; nothing is dropped, clamped, merged or double-weighted silently.

Rows of the table that do not apply to Chinchilla: unseen categories (no categorical inputs),
non-PD kernel (no GP), undetermined covariance (intervals come from bootstrap refits), MCMC
diagnostics (the CLI does not sample; `fit_bayes` goes through `jaxscale.infer.run_nuts`, tested
with it), no valid initial parameters (a fixed grid of starts), warm-up steps of curves, W&B
down-sampling, leaderboard revisions, execution modes, fork / workers per GPU (no such code).
"""
import json
import warnings

import numpy as np
import pandas as pd
import pytest

from jaxscale.cli import main
from tests.helpers import chinchilla_runs as runs
from tests.helpers import json_error

COLS = ["--n-col", "params", "--d-col", "tokens", "--loss-col", "val_loss"]


def _edit(df, fn):
    df = df.copy()
    fn(df)
    return df


def _set(col, row, value):
    def f(df):
        df[col] = df[col].astype(object) if isinstance(value, str) else df[col]
        df.loc[row, col] = value
    return f


def _two_datasets(df):  # the first 12 runs again on another dataset (the same N and D)
    df["data"] = ["c4"] * 13 + ["pile"] * 12
    for col in ("params", "tokens"):
        df.loc[13:, col] = df.loc[:11, col].to_numpy()


# (case, table edit, expected message pieces) -> exit 2; rows of the file are 1-based lines
ERRORS = [
    ("nan loss", _set("val_loss", 4, np.nan), ["'val_loss'", "non-finite", "rows [6]"]),
    ("inf tokens", _set("tokens", 0, np.inf), ["'tokens'", "infinite", "rows [2]"]),
    ("zero params", _set("params", 2, 0.0), ["'params'", "non-positive", "rows [4]", "> 0"]),
    ("negative loss", _set("val_loss", 7, -2.0), ["'val_loss'", "non-positive", "rows [9]"]),
    ("text in a number column", _set("params", 3, "1.2B"), ["'params'", "non-numeric", "rows [5]", "1.2e9"]),
    ("duplicate run", lambda df: df.loc.__setitem__((1, "tokens"), df.loc[0, "tokens"]),
     ["repeat the same (params, tokens) pair", "[2, 3]", "--agg"]),
    ("runs of two datasets", _two_datasets,
     ["repeat the same (params, tokens) pair", "differ in column 'data' (2 values: ['c4', 'pile'])",
      "--where \"data == 'c4'\""]),
    ("single model size", lambda df: df.assign(params=1e9, tokens=np.geomspace(1e9, 1e12, len(df))).pipe(
        lambda new: df.__setitem__(slice(None), new)),
     ["need >= 2 distinct values of 'params'"]),
    ("fewer runs than parameters + 1", lambda df: df.drop(index=range(5, 25), inplace=True),
     ["5 rows are fewer than 6 points for the law's 5 parameters", "add runs"]),
    ("missing column", lambda df: df.drop(columns="tokens", inplace=True),
     ["missing column(s) ['tokens']", "'tokens' (training tokens D): --d-col NAME (d_col=...)"]),
    ("compute instead of tokens", lambda df: df.__setitem__("tokens", 6 * df["params"] * df["tokens"]) or df.rename(
        columns={"tokens": "train FLOPs"}, inplace=True),
     ["missing column 'tokens' (training tokens D)", "'train FLOPs' looks like training compute",
      "df['D'] = df['train FLOPs'] / (6 * df['params'])"]),
    ("constant loss", lambda df: df.__setitem__("val_loss", 3.1), ["'val_loss'", "one value", "all 25 rows"]),
]


@pytest.mark.parametrize("case, edit, pieces", ERRORS, ids=[e[0] for e in ERRORS])
def test_fit_refuses_bad_tables(tmp_path, capsys, case, edit, pieces):
    path = tmp_path / "runs.csv"
    _edit(runs(), edit).to_csv(path, index=False)
    assert main(["chinchilla", "fit", "--csv", str(path), *COLS, "--json"]) == 2
    captured = capsys.readouterr()
    assert json_error(captured.out)  # no result: only the error, as JSON
    for piece in pieces:
        assert piece in captured.err, (case, piece, captured.err)


WRONG_NAMES = [("--n-col", "(parameters N): --n-col NAME (n_col=...)"),
               ("--d-col", "(training tokens D): --d-col NAME (d_col=...)"),
               ("--loss-col", "(final loss): --loss-col NAME (loss_col=...)")]


@pytest.mark.parametrize("flag, names", WRONG_NAMES, ids=[w[0] for w in WRONG_NAMES])
@pytest.mark.parametrize("extra", [[], ["--agg", "mean"], ["--holdout-top", "3"]], ids=["plain", "agg", "top"])
def test_a_column_not_in_the_file_names_its_option(tmp_path, capsys, flag, names, extra):
    """A column name that is not in the file: the message lists the file's columns and names the
    option that gives the name (CLI flag and Python keyword), also before --agg / --holdout-top."""
    path = tmp_path / "runs.csv"
    runs().to_csv(path, index=False)
    cols = list(COLS)
    cols[cols.index(flag) + 1] = "WRONG"
    assert main(["chinchilla", "fit", "--csv", str(path), *cols, *extra, "--json"]) == 2
    captured = capsys.readouterr()
    assert json_error(captured.out)
    said = json.loads(captured.out)["error"]
    assert said == (f"runs.csv: missing column(s) ['WRONG']; present columns are {list(runs().columns)}. Rename "
                    f"your columns, or pass the names of yours: 'WRONG' {names}."), said


def test_from_frame_names_the_keyword_of_a_wrong_column():
    """The Python path says the same: the keyword (and flag) of each missing column, each name once."""
    from jaxscale import chinchilla as ch

    df = runs()
    with pytest.raises(ValueError, match=r"missing column\(s\) \['loss'\]; present columns are \['params', "
                                         r".*'loss' \(final loss\): --loss-col NAME \(loss_col=\.\.\.\)\.$"):
        ch.from_frame(df, n_col="params", d_col="tokens")
    with pytest.raises(ValueError, match=r"missing column\(s\) \['x'\];.* 'x' \(training tokens D, final loss\): "
                                         r"--d-col NAME \(d_col=\.\.\.\), --loss-col NAME \(loss_col=\.\.\.\)\.$"):
        ch.from_frame(df, n_col="params", d_col="x", loss_col="x")
    with pytest.raises(ValueError, match=r"missing column\(s\) \['x'\];.*\(final loss\): --loss-col"):
        ch.aggregate(df, n_col="params", d_col="tokens", loss_col="x")


def test_predict_refuses_bad_rows_and_warns_far_extrapolation(tmp_path, capsys):
    path = tmp_path / "runs.csv"
    runs().to_csv(path, index=False)
    assert main(["chinchilla", "fit", "--csv", str(path), *COLS, "--save", str(tmp_path / "m"), "--json"]) == 0
    capsys.readouterr()
    bad = pd.DataFrame({"params": [1e8, -5.0], "tokens": [1e10, 1e10]})
    bad.to_csv(tmp_path / "new.csv", index=False)
    assert main(["chinchilla", "predict", "--model", str(tmp_path / "m"), "--csv", str(tmp_path / "new.csv"),
                 "--json"]) == 2
    assert "'params' has 1 non-positive value(s) at rows [3]" in capsys.readouterr().err
    far = pd.DataFrame({"params": [1e12], "tokens": [1e14]})  # 1.1e5 x the largest training compute
    far.to_csv(tmp_path / "far.csv", index=False)
    with pytest.warns(UserWarning, match=r"1 of 1 queries lie outside the training data \(worst: 5.05 decades"):
        assert main(["chinchilla", "predict", "--model", str(tmp_path / "m"), "--csv", str(tmp_path / "far.csv"),
                     "--predictions", str(tmp_path / "p.csv"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["n"] == 1 and pd.read_csv(tmp_path / "p.csv")["extrapolation"].iloc[0] == pytest.approx(5.046, abs=0.01)


def test_units_in_billions_warn(tmp_path, capsys):
    df = runs()
    df["params"] /= 1e9
    df.to_csv(tmp_path / "runs.csv", index=False)
    with pytest.warns(UserWarning, match="looks like millions or billions"):
        main(["chinchilla", "fit", "--csv", str(tmp_path / "runs.csv"), *COLS, "--json"])


def test_huge_magnitudes_fit_in_log_space(tmp_path, capsys):
    """N ~ 1e33 (a user's unusual units) reaches the same optimum: the grid moves to the data."""
    df = runs()
    df.to_csv(tmp_path / "a.csv", index=False)
    df.assign(params=df["params"] * 1e24).to_csv(tmp_path / "b.csv", index=False)
    got = []
    for name in ("a", "b"):
        assert main(["chinchilla", "fit", "--csv", str(tmp_path / f"{name}.csv"), *COLS, "--json"]) == 0
        got.append(json.loads(capsys.readouterr().out))
    assert got[1]["objective"] == pytest.approx(got[0]["objective"], rel=1e-6)
    for k in ("E", "B", "alpha", "beta"):
        assert got[1][k] == pytest.approx(got[0][k], rel=1e-4), k


def test_unwritable_and_existing_outputs_are_refused_before_fitting(tmp_path, capsys):
    runs().to_csv(tmp_path / "runs.csv", index=False)
    args = ["chinchilla", "fit", "--csv", str(tmp_path / "runs.csv"), *COLS, "--json"]
    assert main(args + ["--predictions", str(tmp_path / "no" / "such" / "p.csv")]) == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "p.csv").write_text("keep")
    assert main(args + ["--predictions", str(tmp_path / "p.csv")]) == 2
    assert "already exists" in capsys.readouterr().err and (tmp_path / "p.csv").read_text() == "keep"


def test_clean_bundled_fit_warns_nothing(capsys):
    """The headline command on clean data: no UserWarning and no RuntimeWarning."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        warnings.simplefilter("error", RuntimeWarning)
        assert main(["chinchilla", "fit", "--bootstrap", "200", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["converged"] and out["bootstrap_excluded"] == 0


def test_holdout_rows_without_a_loss_are_counted_not_refused(tmp_path, capsys):
    """A held-out row whose loss is missing has no truth to score: the model and its baseline are
    scored on the others and the row is counted (``n_missing_truth``), and ``--predictions``
    still predicts it; a training row without a loss is refused (the ``nan loss`` case above)."""
    df = runs()
    df.loc[24, "val_loss"] = np.nan  # the largest run, held out
    path = tmp_path / "runs.csv"
    df.to_csv(path, index=False)
    assert main(["chinchilla", "fit", "--csv", str(path), *COLS, "--holdout", "params > 1e9", "--predictions",
                 str(tmp_path / "p.csv"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["holdout"]["n"] == 4 and out["holdout"]["n_missing_truth"] == 1
    assert out["baselines"]["power_law_in_compute"]["n"] == 4
    pred = pd.read_csv(tmp_path / "p.csv")
    assert len(pred) == 25 and np.isfinite(pred["mean"]).all()


def test_aggregate_names_a_text_column_that_separates_the_repeats_and_not_a_sweep():
    from jaxscale import chinchilla as ch

    cols = dict(n_col="params", d_col="tokens", loss_col="val_loss")
    df = _edit(runs(), _two_datasets)
    with pytest.warns(UserWarning, match=r"merging 24 rows .* differ in column 'data' \(2 values"):
        merged, n = ch.aggregate(df, how="mean", **cols)
    assert n == 12 and len(merged) == 13
    sweep = df.drop(columns="data").assign(lr=np.resize([1e-3, 3e-3], len(df)))  # a numeric sweep: no hint
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        merged, n = ch.aggregate(sweep, how="min", **cols)
    assert n == 12
