"""Table 2 of the bad-input checklist, row by row, against the NCPL commands that read a user's table
(``ncpl train`` and ``ncpl predict``): each bad input exits with status 2 and a message naming the
column and the file lines (1-based, header = line 1), or gives the documented warning; nothing is
dropped, clamped, merged or double-weighted silently. ``ncpl evaluate``, ``tune`` and ``curves``
read only the bundled runs (checked clean in ``test_ncpl_reliability.py``).

Rows of the table that do not apply to NCPL, and why:

* mixed units: ``N`` and ``D`` may be given in any unit (the Chinchilla baseline's ``A`` and ``B``
  absorb the scale, and config fields are standardised), so no unit is implausible;
* accuracy targets at 0 or 1: the target is a loss, not an accuracy;
* float32 / x64 disabled for GP/MCMC: no GP or MCMC; the heads train in float32 on purpose
  (frozen-encoder features), the baseline law in float64;
* non-PD kernel, undetermined covariance, MCMC diagnostics, no valid initial parameters: no
  kernel, no covariance-based interval, no sampler, no parameter-site initialisation (the
  ensemble's intervals come from its members and a backtest inside the training rows);
* warm-up steps of curves, W&B down-sampling: final-loss regression on a run table;
* multiprocessing fork, several workers per GPU: no worker processes.

"Leaderboard table changes over time" (refuse to mix revisions without a flag) maps to the
checkpoint fingerprint: a checkpoint folder written for other data, settings or seed is refused
unless ``--force-new`` (last test).
"""
import json

import numpy as np
import pandas as pd
import pytest

from jaxscale.cli import main
from tests.helpers import json_error

#: Tiny ensemble settings (the same everywhere, so the compiled programs are reused).
TINY = ["--members", "2", "--steps", "40", "--eval-every", "20", "--patience", "100", "--lr", "3e-3",
        "--batch-size", "16", "--width", "16"]
LAW = ["--target-col", "loss", "--n-col", "N", "--d-col", "D", "--exclude-cols", "run"]


def runs(n=36, seed=0, sizes=(2e7, 5e7, 1e8, 3e8)):
    """A sweep of N, D, learning rate and optimizer (the loss has a size/data trend, an LR valley and
    an optimizer offset); file lines are index + 2."""
    rng = np.random.default_rng(seed)
    N = np.resize(np.asarray(sizes), n)
    D = N * np.resize([10.0, 20.0, 40.0], n)
    lr = 10 ** rng.uniform(-3.5, -2.0, n)
    opt = np.resize(["adamw", "lion"], n)
    loss = 1.8 + 400 / N**0.34 + 400 / D**0.28 + 0.05 * (np.log10(lr) + 2.7) ** 2 + 0.02 * (opt == "lion")
    return pd.DataFrame({"run": [f"run-{i}" for i in range(n)], "N": N, "D": D, "lr": lr, "optimizer": opt,
                         "loss": loss + 0.002 * rng.normal(size=n)})


def _set(col, row, value):
    def f(df):
        if isinstance(value, str):
            df[col] = df[col].astype(object)
        df.loc[row, col] = value
    return f


def _single_size(df):
    df["N"] = 1e8


def _constant_target(df):
    df["loss"] = 3.1


def _constant_config(df):
    df["lr"], df["optimizer"], df["N"], df["D"] = 1e-3, "adamw", 1e8, 2e9


def _sentinel(df):  # a config column of parameter counts (not --n-col) with -1 for "unknown"
    df["params"] = df["N"]
    df.loc[3, "params"] = -1.0


def _duplicate(df):
    df.loc[1] = df.loc[0]


def _few(df):
    df.drop(index=range(5, len(df)), inplace=True)


def _nonpositive_loss(df):
    df.loc[7, "loss"] = -0.5


# (case, edit of the training table, extra flags, message pieces): `ncpl train` exits 2
TRAIN_ERRORS = [
    ("nan target", _set("loss", 4, np.nan), [], ["'loss'", "non-finite", "rows [6]"]),
    ("inf N", _set("N", 1, np.inf), [], ["'N'", "infinite", "rows [3]"]),
    ("negative N", _set("N", 2, -1.0), [], ["'N'", "non-positive", "rows [4]"]),
    ("zero D", _set("D", 2, 0.0), [], ["'D'", "non-positive", "rows [4]", "unknown"]),
    ("text in a number column", _set("lr", 3, "3e-4 (warm)"), [], ["'lr'", "rows [5]", "plain numbers"]),
    ("negative sentinel in a size-like config column", _sentinel, [], ["'params'", "rows [5]", "<= 0", "empty"]),
    ("duplicate run", _duplicate, [], ["2 rows", "rows [2, 3]", "--duplicates"]),
    ("single model size", _single_size, [], ["'N'", "need >= 2 distinct values", "--baseline none"]),
    ("fewer runs than parameters + 1", _few, [], ["5 training runs", "6", "Chinchilla"]),
    ("loss <= 0 under the law", _nonpositive_loss, [], ["'loss'", "rows [9]", "<= 0", "--baseline none"]),
    ("constant target", _constant_target, [], ["'loss'", "same value", "every training row"]),
    ("no configuration varies", _constant_config, ["--baseline", "none"], ["no configuration column varies"]),
    ("missing column", lambda df: df.drop(columns="D", inplace=True), [], ["missing column(s) ['D']"]),
    ("compute instead of tokens", lambda df: df.rename(columns={"D": "flops"}, inplace=True), [],
     ["missing column 'D' (training tokens D)", "'flops' looks like training compute",
      "df['D'] = df['flops'] / (6 * df['N'])"]),
]


@pytest.mark.parametrize("case, edit, flags, pieces", TRAIN_ERRORS, ids=[e[0] for e in TRAIN_ERRORS])
def test_train_refuses_bad_tables(tmp_path, capsys, case, edit, flags, pieces):
    df = runs()
    edit(df)
    df.to_csv(tmp_path / "runs.csv", index=False)
    rc = main(["ncpl", "train", "--csv", str(tmp_path / "runs.csv"), *LAW, *TINY, *flags, "--json"])
    captured = capsys.readouterr()
    assert rc == 2, (case, captured.err[-2000:])
    assert json_error(captured.out)
    for piece in pieces:
        assert piece in captured.err, (case, piece, captured.err)


def test_rows_are_file_lines_after_where(tmp_path, capsys):
    """--where keeps the file's line numbers in messages (not positions in the filtered table), and
    errors raised at fit time name the frame's labels too."""
    import jax

    from jaxscale import ncpl
    from jaxscale.data import read_table, where

    df = runs()
    df.loc[21, "loss"] = np.nan  # line 23; the --where drops lines 2, 6, 10, ...
    df.to_csv(tmp_path / "runs.csv", index=False)
    assert main(["ncpl", "train", "--csv", str(tmp_path / "runs.csv"), *LAW, *TINY, "--where", "N > 2e7",
                 "--json"]) == 2
    assert "rows [23]" in capsys.readouterr().err
    table = where(read_table(tmp_path / "runs.csv"), "N > 2e7")
    data = ncpl.from_frame(table, target_col="loss", n_col="N", d_col="D", exclude_cols=["run"],
                           require_target=False)
    with pytest.raises(ValueError, match=r"rows \[23\]"):
        ncpl.fit(jax.random.key(0), data, ncpl.Spec(members=1, steps=2, eval_every=1))


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """A tiny model trained (and saved) once for the prediction rows."""
    d = tmp_path_factory.mktemp("ncpl_model")
    runs().to_csv(d / "runs.csv", index=False)
    assert main(["ncpl", "train", "--csv", str(d / "runs.csv"), *LAW, *TINY, "--save", str(d / "m"), "--json"]) == 0
    return d / "m"


def _query(**cols):
    base = runs().iloc[:2].drop(columns=["loss"]).reset_index(drop=True)
    for k, v in cols.items():
        base[k] = v
    return base


# (case, query table, message pieces): `ncpl predict` exits 2
PREDICT_ERRORS = [
    ("nan D", _query(D=[2e9, np.nan]), ["'D'", "non-finite", "rows [3]"]),
    ("negative N", _query(N=[-5.0, 1e8]), ["'N'", "non-positive", "rows [2]"]),  # N before the log check
    ("unseen category", _query(optimizer=["sgd", "adamw"]),
     ["'optimizer'", "['sgd']", "rows [2]", "['adamw', 'lion']", "--handle-unknown"]),
    ("missing config column", _query().drop(columns=["lr"]), ["missing column(s) ['lr']"]),
    ("log-scaled field <= 0", _query(lr=[1e-3, 0.0]), ["'lr'", "rows [3]", "<= 0"]),
    # every training run had a learning rate and an optimizer: an empty cell is refused, not left out of the text
    ("empty numeric config cell", _query(lr=[np.nan, 1e-3]),
     ["'lr' is empty in 1 row(s) at rows [2]", "every training run had a value", "Fill in",
      '--where "lr.notna()", which leaves out 1 of 2 rows', "retrain"]),
    ("empty text config cell", _query(optimizer=[np.nan, "adamw"]),
     ["'optimizer' is empty in 1 row(s) at rows [2]", "every training run had a value", "optimizer.notna()"]),
    ("empty N", _query(N=[np.nan, 1e8]), ["'N'", "non-finite", "rows [2]", "N.notna()"]),
]


@pytest.mark.parametrize("case, query, pieces", PREDICT_ERRORS, ids=[e[0] for e in PREDICT_ERRORS])
def test_predict_refuses_bad_rows(model, tmp_path, capsys, case, query, pieces):
    query.to_csv(tmp_path / "new.csv", index=False)
    rc = main(["ncpl", "predict", "--model", str(model), "--csv", str(tmp_path / "new.csv"), "--json"])
    captured = capsys.readouterr()
    assert rc == 2, (case, captured.out[-500:])
    for piece in pieces:
        assert piece in captured.err, (case, piece, captured.err)


def test_empty_cell_the_model_never_saw_changes_no_prediction_silently(model, tmp_path, capsys):
    """A query row with an empty learning rate (every training run had one) is refused by the CLI
    (no predictions file), by predict and by extrapolation, naming the columns, the rows and the fix."""
    from jaxscale import load, ncpl

    q = _query(lr=[np.nan, np.nan], optimizer=[np.nan, "adamw"])
    q.to_csv(tmp_path / "new.csv", index=False)
    rc = main(["ncpl", "predict", "--model", str(model), "--csv", str(tmp_path / "new.csv"), "--predictions",
               str(tmp_path / "p.csv"), "--json"])
    err = capsys.readouterr().err
    assert rc == 2 and not (tmp_path / "p.csv").exists()
    assert "column 'lr' is empty in 2 row(s) at rows [2, 3]; column 'optimizer' is empty in 1 row(s) at rows [2]" \
        in err
    assert '--where "lr.notna() and optimizer.notna()", which leaves out 2 of 2 rows' in err
    fit = load(model)
    for call in (ncpl.predict, ncpl.extrapolation):
        with pytest.raises(ValueError, match=r"column 'lr' is empty in 2 row\(s\) at rows \[0, 1\]"):
            call(fit, q)
    assert np.isfinite(np.asarray(ncpl.predict(fit, _query()).mean)).all()  # filled in, it predicts


def test_empty_cells_learnt_in_training_are_predicted_and_reported(tmp_path, capsys):
    """Fields some training runs left empty are read as in training (the field left out of the
    text): held-out and query rows with such empty cells are predicted and counted (not warned: runs
    of different optimizers leave each other's fields empty)."""
    from jaxscale import load, ncpl

    df = runs()
    df["optimizer"] = df["optimizer"].astype(object)
    df.loc[[2, 9, 16], "lr"] = np.nan  # training runs without a learning rate (lines 4, 11, 18)
    df.loc[5, "optimizer"] = np.nan  # line 7
    df.loc[35, "lr"] = np.nan  # line 37, held out (N = 3e8)
    df.to_csv(tmp_path / "runs.csv", index=False)
    rc = main(["ncpl", "train", "--csv", str(tmp_path / "runs.csv"), *LAW, *TINY, "--holdout", "N == 3e8",
               "--save", str(tmp_path / "m"), "--json"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert out["missing_values"] == {"lr": 3, "optimizer": 1}
    assert out["holdout"]["missing_values"] == {"lr": 1} and out["holdout"]["ncpl"]["n"] == 9

    q = _query(lr=[np.nan, 1e-3], optimizer=["adamw", np.nan])
    q.to_csv(tmp_path / "new.csv", index=False)
    rc = main(["ncpl", "predict", "--model", str(tmp_path / "m"), "--csv", str(tmp_path / "new.csv"),
               "--predictions", str(tmp_path / "p.csv"), "--json"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert out["missing_values"] == {"lr": 1, "optimizer": 1} and out["rows_missing_values"] == [2, 3]
    p = pd.read_csv(tmp_path / "p.csv")
    assert p["n_missing"].tolist() == [1, 1] and np.isfinite(p[["mean", "lower", "upper"]].to_numpy()).all()
    fit = load(tmp_path / "m")
    empty = ncpl.model.missing_cells(fit, q)
    assert {c: empty[c].tolist() for c in empty} == {"N": [False, False], "D": [False, False], "lr": [True, False],
                                                     "optimizer": [False, True]}
    assert out["mean"] == pytest.approx(np.asarray(ncpl.predict(fit, q).mean).tolist())


def test_empty_cell_in_held_out_rows_is_refused_before_training(tmp_path, capsys, monkeypatch):
    from jaxscale import ncpl

    def no_fit(*a, **k):
        raise AssertionError("the ensemble was trained before the held-out rows were checked")

    monkeypatch.setattr(ncpl, "fit", no_fit)
    df = runs()
    df.loc[[31, 35], "lr"] = np.nan  # lines 33, 37, held out; every training run has a learning rate
    df.to_csv(tmp_path / "runs.csv", index=False)
    rc = main(["ncpl", "train", "--csv", str(tmp_path / "runs.csv"), *LAW, *TINY, "--holdout", "N == 3e8", "--json"])
    err = capsys.readouterr().err
    assert rc == 2 and "held-out rows: column 'lr' is empty in 2 row(s) at rows [33, 37]" in err
    assert "every training run had a value" in err


def test_unseen_category_opt_in_and_far_extrapolation_warn(model, tmp_path, capsys):
    q = _query(optimizer=["sgd", "adamw"], N=[1e8, 3e10], D=[2e9, 6e11])
    q.to_csv(tmp_path / "new.csv", index=False)
    with pytest.warns(UserWarning, match=r"2 of 2 queries lie outside the training data \(worst: 4.65"):
        rc = main(["ncpl", "predict", "--model", str(model), "--csv", str(tmp_path / "new.csv"),
                   "--handle-unknown", "encode", "--predictions", str(tmp_path / "p.csv"), "--json"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    p = pd.read_csv(tmp_path / "p.csv")
    assert p["extrapolation"].iloc[0] == pytest.approx(1.0)  # an unseen category counts as 1
    # judged against the training runs of its own optimizer: the largest 'adamw' run is N 1e8, D 4e9
    assert p["extrapolation"].iloc[1] == pytest.approx(np.log10(3e10 * 6e11 / (1e8 * 4e9)), abs=1e-6)
    assert out["extrapolation"] == pytest.approx(p["extrapolation"].tolist())  # per row, as every pillar's predict
    assert out["max_extrapolation"] == pytest.approx(p["extrapolation"].max())
    width = (p["upper"] - p["lower"]).to_numpy()
    assert width[1] > width[0]  # the far query's interval is wider


def test_unseen_category_in_held_out_rows_is_refused_before_training(tmp_path, capsys, monkeypatch):
    from jaxscale import ncpl

    def no_fit(*a, **k):
        raise AssertionError("the ensemble was trained before the held-out rows were checked")

    monkeypatch.setattr(ncpl, "fit", no_fit)
    df = pd.concat([runs(), runs(4, seed=3).assign(optimizer="sgd", run=lambda d: d.run + "x")], ignore_index=True)
    df.to_csv(tmp_path / "runs.csv", index=False)
    rc = main(["ncpl", "train", "--csv", str(tmp_path / "runs.csv"), *LAW, *TINY, "--holdout",
               "optimizer == 'sgd'", "--json"])
    err = capsys.readouterr().err
    assert rc == 2 and "held-out rows: column 'optimizer'" in err and "['sgd']" in err
    assert "rows [38, 39, 40, 41]" in err and "--handle-unknown" in err


def test_results_read_as_configuration_are_warned_and_settings_are_not():
    from jaxscale import ncpl

    df = runs()
    rng = np.random.default_rng(1)
    df["val_loss"] = df["loss"] + rng.normal(0, 0.05, len(df))  # another loss of the same runs
    df["tokens_seen_proxy"] = df["loss"] * 3.0 + 1.0  # a result under a neutral name
    df["z_loss"] = 1e-4  # a setting named like a loss
    with pytest.warns(UserWarning, match="2 column\\(s\\) read as configuration look like results") as rec:
        ncpl.from_frame(df, target_col="loss", n_col="N", d_col="D", exclude_cols=["run"])
    msg = next(str(w.message) for w in rec if "look like results" in str(w.message))
    assert "'val_loss' (named like a metric ('loss')" in msg and "'tokens_seen_proxy' (rank correlation +1.000" in msg
    assert "z_loss'" not in msg and "--exclude-cols val_loss,tokens_seen_proxy" in msg
    with pytest.warns(UserWarning, match="look like results") as rec:  # a name with a space: one shell word
        ncpl.from_frame(df.rename(columns={"val_loss": "smooth loss"}), target_col="loss", n_col="N", d_col="D",
                        exclude_cols=["run"])
    assert any("--exclude-cols 'smooth loss,tokens_seen_proxy'" in str(w.message) for w in rec)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ncpl.from_frame(df, target_col="loss", n_col="N", d_col="D",
                        exclude_cols=["run", "val_loss", "tokens_seen_proxy"])
        # named on purpose: no warning
        ncpl.from_frame(df, target_col="loss", n_col="N", d_col="D", exclude_cols=["run"],
                        num_cols=["val_loss", "tokens_seen_proxy", "z_loss", "lr"], text_cols=["optimizer"])


def test_heldout_rows_without_target_are_counted_and_warned(tmp_path, capsys):
    df = pd.concat([runs(), runs(4, seed=3, sizes=(1e9,)).assign(run=lambda d: d.run + "x")], ignore_index=True)
    df.loc[37, "loss"] = np.nan  # line 39, held out
    df.to_csv(tmp_path / "runs.csv", index=False)
    with pytest.warns(UserWarning, match=r"1 held-out row\(s\) have no 'loss' value \(rows \[39\]\)"):
        rc = main(["ncpl", "train", "--csv", str(tmp_path / "runs.csv"), *LAW, *TINY, "--holdout", "N >= 1e9",
                   "--json"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert out["holdout"]["n"] == 4 and out["holdout"]["n_missing_truth"] == 1
    assert out["holdout"]["ncpl"]["n"] == 3
    base = out["baselines"]["chinchilla_on_training_rows"]
    assert base["n"] == 3 and base["mae"] > 0
    # the model's and each baseline's scores count the row without a target as the hold-out does
    assert out["baselines"]["model"]["n_missing_truth"] == base["n_missing_truth"] == 1


def test_duplicates_explicit_policy_is_counted(tmp_path, capsys):
    df = runs()
    _duplicate(df)
    df.to_csv(tmp_path / "runs.csv", index=False)
    rc = main(["ncpl", "train", "--csv", str(tmp_path / "runs.csv"), *LAW, *TINY, "--duplicates", "first", "--json"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert out["duplicates"] == {"policy": "first", "n_dropped": 1, "rows_dropped": [3]}
    assert out["n_train"] == len(df) - 1


def test_non_finite_training_loss_names_the_step(tmp_path, capsys):
    runs().to_csv(tmp_path / "runs.csv", index=False)
    rc = main(["ncpl", "train", "--csv", str(tmp_path / "runs.csv"), *LAW, *TINY[:-6], "--batch-size", "16",
               "--width", "16", "--lr", "1e30", "--json"])
    err = capsys.readouterr().err
    assert rc == 2 and "non-finite training loss" in err and "learning rate" in err


def test_not_converged_is_reported_and_warned(tmp_path, capsys):
    runs().to_csv(tmp_path / "runs.csv", index=False)
    with pytest.warns(UserWarning, match="NCPL training did not converge"):
        rc = main(["ncpl", "train", "--csv", str(tmp_path / "runs.csv"), *LAW, "--members", "2", "--steps", "8",
                   "--eval-every", "2", "--patience", "100", "--lr", "1e-2", "--batch-size", "16", "--width", "16",
                   "--backtest-frac", "0", "--json"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert out["converged"] is False and "steps" in out["converged_reason"]


def test_huge_magnitudes_stay_finite(tmp_path, capsys):
    df = runs()
    df["N"], df["D"] = df["N"] * 1e6, df["D"] * 1e6  # N ~ 1e13, D ~ 1e16: log space throughout
    df.to_csv(tmp_path / "runs.csv", index=False)
    assert main(["ncpl", "train", "--csv", str(tmp_path / "runs.csv"), *LAW, *TINY, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert np.isfinite(out["train"]["mae"]) and out["law"]["E"] is not None


def test_stale_checkpoint_is_refused(tmp_path, capsys):
    runs().to_csv(tmp_path / "a.csv", index=False)
    runs(seed=5).to_csv(tmp_path / "b.csv", index=False)
    ck = ["--ckpt-dir", str(tmp_path / "ck")]
    assert main(["ncpl", "train", "--csv", str(tmp_path / "a.csv"), *LAW, *TINY, *ck, "--json"]) == 0
    capsys.readouterr()
    assert main(["ncpl", "train", "--csv", str(tmp_path / "b.csv"), *LAW, *TINY, *ck, "--json"]) == 2
    err = capsys.readouterr().err
    assert "--force-new" in err and "the table's values" in err
    assert main(["ncpl", "train", "--csv", str(tmp_path / "b.csv"), *LAW, *TINY, *ck, "--force-new", "--json"]) == 0


def test_baseline_law_without_a_floor_is_warned():
    """Runs whose loss shows no floor fit E -> 0: the law then falls as a pure power law beyond them,
    which the user is told (like a Chinchilla fit); the bundled-style runs above warn nothing."""
    import warnings

    import jax

    from jaxscale import ncpl
    from jaxscale.laws import chinchilla_floor_note
    from jaxscale.ncpl.model import _fit_law

    assert chinchilla_floor_note(1.7, 2.0) is None and "went to its bound 0" in chinchilla_floor_note(1e-9, 2.0)
    df = runs()
    df["loss"] = 300 / df["N"] ** 0.33 + 900 / df["D"] ** 0.3  # no irreducible loss
    with pytest.warns(RuntimeWarning, match=r"NCPL's Chinchilla baseline .* the irreducible loss E = .* went to "
                                            r"its bound 0 \(the lowest fitted loss is"):
        fit = _fit_law(ncpl.from_frame(df, target_col="loss", n_col="N", d_col="D", exclude_cols=["run"]))
    assert float(fit.params.E) < 1e-3
    # in a fit, the backtest's own law (fitted without the largest runs) is named as such, not as the model's
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ncpl.fit(jax.random.key(0), ncpl.from_frame(df, target_col="loss", n_col="N", d_col="D", exclude_cols=["run"]),
                 ncpl.Spec(members=1, steps=20, eval_every=10, width=8, depth=1))
    floor = [str(w.message) for w in caught if "went to its bound 0" in str(w.message)]
    assert len(floor) == 2 and floor[0].startswith("NCPL's Chinchilla baseline (fitted on the training rows")
    assert floor[1].startswith("the backtest's Chinchilla baseline (fitted on the training runs left after holding "
                               "out the 1 largest model size(s)"), floor
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _fit_law(ncpl.from_frame(runs(), target_col="loss", n_col="N", d_col="D", exclude_cols=["run"]))


def test_interval_on_few_validation_runs_is_warned_and_no_impossible_backtest_advised(tmp_path, capsys):
    """Five runs leave one validation run to set the interval's split-conformal scale: the fit warns
    (count, why, what helps) and records it in the JSON; predicting outside the training data then
    says the backtest needs more runs instead of advising --backtest-col, which could not run."""
    runs(5).to_csv(tmp_path / "runs.csv", index=False)
    with pytest.warns(UserWarning, match=r"NCPL: the 90 % interval's scale .* was set on 1 validation run\(s\) "
                                         r"carved from the 5 training runs .* fewer than 20: .*anywhere from about 5 "
                                         r"to 95 %.*add runs \(about 134 training runs"):
        rc = main(["ncpl", "train", "--csv", str(tmp_path / "runs.csv"), *LAW, "--baseline", "none", *TINY,
                   "--save", str(tmp_path / "m"), "--json"])
    assert rc == 0
    info = json.loads(capsys.readouterr().out)["info"]
    assert info["n_val"] == 1 and "1 validation run(s)" in info["interval_scale_note"]
    assert "Chinchilla baseline" in info["interval_scale_note"]  # --baseline none: the law is one way out
    _query(N=[1e8, 3e10], D=[2e9, 6e11]).to_csv(tmp_path / "new.csv", index=False)
    with pytest.warns(UserWarning, match="outside the training data") as rec:
        assert main(["ncpl", "predict", "--model", str(tmp_path / "m"), "--csv", str(tmp_path / "new.csv"),
                     "--json"]) == 0
    msg = next(str(w.message) for w in rec if "outside the training data" in str(w.message))
    assert "it has 5 training runs" in msg and "needs at least 30" in msg and "refit with backtest_col" not in msg


def test_calibration_note_threshold():
    """The note appears below MIN_CALIBRATION_RUNS validation runs only, and names the rank of the
    error that sets the scale."""
    from types import SimpleNamespace

    from jaxscale import ncpl
    from jaxscale.ncpl.model import MIN_CALIBRATION_RUNS, calibration_note

    def fake(n_val, baseline="law"):
        diag = SimpleNamespace(n_val=np.asarray(n_val), n_train=np.asarray(100))
        return SimpleNamespace(diagnostics=diag, spec=ncpl.Spec(), interval_scale=np.asarray(1.2), baseline=baseline)

    assert MIN_CALIBRATION_RUNS == 20 and calibration_note(fake(20)) is None
    note = calibration_note(fake(19))
    assert "19 validation run(s)" in note and "rank 18 of 19" in note and "Chinchilla baseline" not in note
    assert "the largest of their scaled errors" in calibration_note(fake(9, "none"))
