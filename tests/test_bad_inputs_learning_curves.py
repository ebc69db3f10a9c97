"""Table 2 (bad input or fault -> expected behaviour) for every ``jaxscale lc`` command.

Each row of the table is one bad input written into a CSV (from a small clean table of 3 widths x
2 depths x 5 steps), mapped to every command it applies to: ``evaluate``, ``law``, ``active``,
``predict`` (a saved model), ``extrapolate``. The documented outcome is either exit status 2 with a
message that names the column (and the file lines of the offending rows), or a warning.

Rows of Table 2 that do not apply to the learning-curve commands:

* all accuracy targets at 0 or 1 / log-link forms: the curve models take the target as it is
  (no link function); a constant target is refused (row ``constant_target``).
* undetermined covariance / ill-conditioned Jacobian: there is no least-squares Jacobian; the GP
  posterior covariance is exact.
* non-PD kernel matrix: not reachable from a table (duplicate points and constant targets are
  refused before fitting); the jitter escalation warns with the jitter used (``report_fit_health``).
* no valid initial parameters: restarts start from random unconstrained log-parameters; a restart
  that goes non-finite is the ``nan_in_fit`` row.
* logs of every step (a W&B export): a GP fit of more than 1,000 points on a CPU warns with its
  estimated time, above 20,000 it is refused; both name ``--thin K`` (at most K log-spaced steps
  per run, counted in the output; :func:`test_every_step_logged_warns_refuses_and_thins`).
* leaderboard revisions, execution modes, fork, workers per GPU: no adapter, no multiprocessing
  and no device sharding in these commands.
* reproducing a published law: golden tests in ``tests/test_lc_models_paper.py``.
* warm-up / noisy early steps: the GP models assume no monotonicity; ``--where "step >= S"`` is the
  explicit step minimum. ``extrapolate`` (a decreasing power law) warns on rising training parts
  (row ``rising_curve``).
"""
import contextlib
import io
import json
import re
import warnings

import jax
import numpy as np
import pandas as pd
import pytest

from jaxscale.cli import main
from tests.helpers import lc_runs, log_lines

COLS = ["--task-col", "width", "--instance-col", "depth", "--x-col", "step", "--y-col", "loss"]
TINY = ["--restarts", "1", "--steps", "5", "--n-h", "2"]
HOLD = "width == 512 and depth == 8"


def _cmd(name, csv, model_dir=None):
    if name == "evaluate":
        return ["lc", "evaluate", "--csv", csv, *COLS, *TINY, "--holdout", HOLD, "--json"]
    if name == "law":
        return ["lc", "law", "--csv", csv, *COLS, "--params-col", "params", "--tokens-per-step", "1000", *TINY,
                "--samples", "16", "--holdout", HOLD, "--json"]
    if name == "active":
        return ["lc", "active", "--csv", csv, *COLS, "--params-col", "params", "--tokens-per-step", "1000",
                "--holdout", "depth == 8", "--strategy", "smallest", "--seeds", "1", "--queries", "1",
                "--restarts", "1", "--steps", "2", "--cold-steps", "5", "--n-h", "2", "--samples", "16", "--json"]
    if name == "predict":
        return ["lc", "predict", "--model", str(model_dir), "--csv", csv, "--json"]
    if name == "extrapolate":
        return ["lc", "extrapolate", "--csv", csv, "--curve-col", "run", "--x-col", "step", "--y-col", "loss",
                "--cutoff", "700", "--warmup", "40", "--samples", "40", "--chains", "2", "--json"]
    raise AssertionError(name)


def _set(col, i, value):
    def f(df):
        df = df.copy()
        df[col] = df[col].astype(float) if isinstance(value, float) else df[col]
        df.loc[i, col] = value
        return df
    return f


def _dup(df):
    return pd.concat([df, df.iloc[[7]]], ignore_index=True)


def _few(df):
    keep = (((df["width"] == 128) & (df["depth"] == 2)) | ((df["width"] == 512) & (df["depth"] == 8))) & (df["step"] <= 160)
    return df[keep].reset_index(drop=True)


def _one_run(df):
    steps = np.geomspace(10, 20000, 20).round()
    return pd.DataFrame(dict(width=128, depth=2, step=steps, params=1e6, run="a", loss=2.0 + 5.0 / steps**0.3))


E, W, OK = "error", "warn", "ok"
# row id -> (how the CSV is made, {command: (outcome, [regex that the message must match])})
ROWS = {
    "nan_loss": (_set("loss", 7, np.nan), {c: (E, ["'loss'", r"\b9\b"]) for c in ("evaluate", "law", "active")}),
    "inf_step": (_set("step", 7, np.inf),
                 {c: (E, ["'step'", r"\b9\b"]) for c in ("evaluate", "law", "active", "predict", "extrapolate")}),
    "nan_params": (_set("params", 7, np.nan), {c: (E, ["'params'", r"\b9\b"]) for c in ("law", "active")}),
    "zero_step": (_set("step", 7, 0.0),
                  {c: (E, ["'step'", r"\b9\b"]) for c in ("evaluate", "law", "active", "predict", "extrapolate")}),
    "zero_params": (_set("params", 7, 0.0), {c: (E, ["'params'", r"\b9\b"]) for c in ("law", "active")}),
    "params_in_billions": (lambda d: d.assign(params=d["params"] / 1e9),
                           {c: (W, ["'params'.*(billion|implausib)"]) for c in ("law", "active")}),
    "step_already_log": (lambda d: d.assign(step=np.log(d["step"])),
                         {c: (W, ["'step'.*ln\\(step\\)"]) for c in ("evaluate", "law")}),
    "duplicate_rows": (_dup, {c: (E, ["share the same", r"\b9\b", r"\b32\b"])
                              for c in ("evaluate", "law", "active", "extrapolate")}),
    "single_curve": (_one_run, {"law": (E, ["curve", "(need|needs) at least 2"]),
                                "active": (E, ["curve"])}),
    "constant_descriptor": (lambda d: d.assign(lr=0.1), {"evaluate_desc": (E, ["'lr'", "constant"])}),
    "too_few_points": (_few, {c: (E, ["points|rows", "at least"]) for c in ("evaluate", "law")}),
    "constant_target": (lambda d: d.assign(loss=3.0), {c: (E, ["'loss'", "constant"])
                                                       for c in ("evaluate", "law", "active", "extrapolate")}),
    "loss_not_positive": (lambda d: d.assign(loss=d["loss"] - 2.7),
                          {c: (E, ["'loss'", r"> 0|positive"]) for c in ("law", "active", "extrapolate")}),
    "unseen_category": (lambda d: d.assign(width=d["width"].replace({512: 4096})),
                        {"predict": (E, ["'width'", "4096", "knows"])}),
    "huge_compute": (lambda d: d.assign(params=d["params"] * 1e15), {"law": (OK, [])}),
    "nan_in_fit": (lambda d: d, {"evaluate_lr": (E, ["non-finite", "restart", "step"])}),
    "not_converged": (lambda d: d, {"evaluate": (W, ["converge"])}),
    "far_extrapolation": (lambda d: d.assign(step=d["step"] * 1e4), {"predict": (W, ["outside the training data"])}),
    "unseen_task": (lambda d: d, {"evaluate_task": (W, ["outside the training data"])}),
    "mcmc_diagnostics": (lambda d: d, {"extrapolate_tiny": (W, ["R-hat|ESS|divergen|chains"])}),
    "few_draws": (lambda d: d, {"extrapolate_fewdraws": (W, ["only 5 importance draws per run.*at least 400"])}),
    "rising_curve": (lambda d: d.assign(loss=np.where(d["step"] <= 160, 8.0 - d["loss"], d["loss"])),
                     {"extrapolate": (W, ["rises|non-monotone|increas"])}),
}

CASES = [(row, cmd) for row, (_, cmds) in ROWS.items() for cmd in cmds]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A saved model of the clean table (for ``lc predict``)."""
    d = tmp_path_factory.mktemp("lcmodel")
    csv = d / "clean.csv"
    lc_runs(run=True).to_csv(csv, index=False)
    # the tests read only their own command's stdout
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        assert main([*_cmd("evaluate", str(csv)), "--save", str(d / "m")]) == 0
    return d / "m"


def _run(argv):
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        rc = main(argv)
    return rc, [str(x.message) for x in w]


@pytest.mark.parametrize("row,cmd", CASES, ids=[f"{r}-{c}" for r, c in CASES])
def test_table2(row, cmd, tmp_path, capsys, request):
    make, cmds = ROWS[row]
    outcome, patterns = cmds[cmd]
    df = make(lc_runs(run=True))
    csv = tmp_path / "runs.csv"
    df.to_csv(csv, index=False)
    base = cmd.split("_")[0]
    argv = _cmd(base, str(csv), request.getfixturevalue("model_dir") if base == "predict" else None)
    if cmd == "evaluate_desc":
        argv += ["--model", "magp_desc", "--descriptor-cols", "width,lr"]
    elif cmd == "evaluate_lr":
        argv += ["--lr", "1e6"]
    elif cmd == "evaluate_task":
        argv[argv.index("--holdout") + 1] = "width == 512"
    elif cmd == "extrapolate_tiny":
        argv[argv.index("--warmup") + 1:argv.index("--chains") + 2] = ["5", "--samples", "5", "--chains", "1",
                                                                       "--sampler", "nuts"]
    elif cmd == "extrapolate_fewdraws":  # the default sampler keeps importance draws on this clean table
        argv[argv.index("--samples") + 1:argv.index("--chains") + 2] = ["5", "--chains", "1"]
    rc, warned = _run(argv)
    cap = capsys.readouterr()
    if outcome == E:
        assert rc == 2, f"expected exit 2, got {rc}; stderr: {cap.err[-800:]}"
        for p in patterns:
            assert re.search(p, cap.err), f"{p!r} not in: {cap.err[-800:]}"
        if "--json" in argv:  # the same message, as the command's one JSON object on stdout
            assert json.loads(cap.out)["error"] in cap.err
    else:
        assert rc == 0, cap.err[-1500:]
        json.loads(cap.out)  # strict JSON on stdout
        for p in patterns:
            assert any(re.search(p, m) for m in warned), f"no warning matching {p!r}; got {warned}"
    if row == "huge_compute":
        out = json.loads(cap.out)
        assert np.isfinite(out["b1"]["mean"]) and np.isfinite(out["gt"]["b1"])


def test_mismatched_shapes_python():
    from jaxscale import learning_curves as lc

    data = lc.from_frame(lc_runs(run=True), task_col="width", instance_col="depth", x_col="step", y_col="loss")
    with pytest.raises(ValueError, match=r"30 rows.*\(29,\)"):
        lc.evaluate_holdout(jax.random.key(0), data, np.zeros(29, bool))


def test_float32_warns():
    from jaxscale import learning_curves as lc

    data = lc.from_frame(lc_runs(run=True), task_col="width", instance_col="depth", x_col="step", y_col="loss")
    with jax.enable_x64(False):
        with pytest.warns(UserWarning, match="float64"):
            lc.fit(jax.random.key(0), data, lc.Spec(restarts=1, steps=2, n_h=2))


def _dense(steps: int) -> pd.DataFrame:
    """The 6 runs of :func:`lc_runs` logged at every step 1..``steps`` (a W&B export)."""
    rows = []
    for (w, d), g in lc_runs(run=True).groupby(["width", "depth"]):
        s = np.arange(1, steps + 1)
        n = float(g["params"].iloc[0])
        rows.append(pd.DataFrame(dict(width=w, depth=d, step=s, params=n, run=f"w{w}d{d}",
                                      loss=1.8 + 40.0 / n ** 0.25 + 6.0 / s ** 0.4)))
    return pd.concat(rows, ignore_index=True)


def test_thin_keeps_log_spaced_steps_of_every_run():
    from jaxscale.data import thin

    df = _dense(3000)
    df.index = pd.RangeIndex(2, len(df) + 2)  # file lines
    out = thin(df, ["width", "depth"], "step", 30)
    per = out.groupby("run")["step"]
    assert (per.count() <= 30).all() and (per.count() >= 25).all()  # grid points at steps 1, 2, 3 coincide
    assert (per.min() == 1).all() and (per.max() == 3000).all()
    s = np.sort(out.loc[out["run"] == "w128d2", "step"].to_numpy())
    assert np.all(np.diff(np.log(s))[-10:] < 0.35)  # evenly spread in log(step): ratio 3000^(1/29) ~ 1.32
    assert out.index.isin(df.index).all() and out.index.is_monotonic_increasing  # lines kept, order kept
    odd = df.copy()
    odd.loc[100, "step"] = np.nan  # named by validation later, not hidden by the thinning
    odd.loc[200, "step"] = odd.loc[199, "step"]  # a repeated step: both rows kept
    kept = thin(odd, ["width", "depth"], "step", 30)
    assert {100, 199, 200} <= set(kept.index)
    assert len(thin(lc_runs(), ["width", "depth"], "step", 5)) == 30  # runs of <= K rows are kept whole
    with pytest.raises(ValueError, match="at least 2 rows per curve"):
        thin(df, "run", "step", 1)
    with pytest.raises(ValueError, match=r"\['steps'\] not in the table"):
        thin(df, "run", "steps", 10)


def _wandb_chart(path):
    """A W&B chart "Export CSV": Step, then '<run> - train/loss' with __MIN/__MAX siblings per run;
    one run logs every second step, two stop early (empty cells after their last step)."""
    steps = np.arange(10, 2010, 10)
    cols = {"Step": steps}
    for i, (run, end) in enumerate([("crisp-sun-12", 2000), ("lucky-dew-3", 2000), ("bold-fire-7", 1000),
                                     ("calm-wave-9", 500)]):
        y = np.where(steps <= end, 2.0 + (3.0 + 0.3 * i) * (steps / 10.0) ** -0.35, np.nan)
        if i == 1:
            y[::2] = np.nan
        cols[f"{run} - train/loss"], cols[f"{run} - train/loss__MIN"] = y, 0.99 * y
        cols[f"{run} - train/loss__MAX"] = 1.01 * y
    pd.DataFrame(cols).to_csv(path, index=False)


def test_wandb_chart_export_is_read_as_one_row_per_run_and_logged_step(tmp_path, capsys):
    """The wide layout of a W&B chart export becomes the long table the commands read (run, the
    x-axis column, the metric), keeping the file lines; empty cells are steps a run did not log
    and the __MIN/__MAX bounds are not data. A table of another layout is left alone."""
    from jaxscale.data import read_table
    from jaxscale.data.table import wandb_long

    _wandb_chart(tmp_path / "chart.csv")
    wide = read_table(tmp_path / "chart.csv")
    long = wandb_long(wide)
    assert list(long.columns) == ["run", "Step", "train/loss"] and long["train/loss"].notna().all()
    assert long.groupby("run", sort=False).size().to_dict() == {"crisp-sun-12": 200, "lucky-dew-3": 100,
                                                                  "bold-fire-7": 100, "calm-wave-9": 50}
    assert long.attrs["wandb"]["n_unlogged"] == 4 * 200 - 450 and long.attrs["wandb"]["bounds_left_out"] == 8
    row = long[(long["run"] == "bold-fire-7") & (long["Step"] == 1000)]
    assert row.index.tolist() == [101]  # line 101 of the file holds step 1000
    assert wandb_long(lc_runs()) is None
    assert wandb_long(pd.DataFrame({"Step": [1, 2], "a - loss": [1.0, 0.9], "notes": ["x", "y"]})) is None

    fast = ["--cutoff", "400", "--sampler", "importance", "--samples", "100", "--chains", "2", "--json"]
    with log_lines("jaxscale.cli") as lines:
        rc = main(["lc", "extrapolate", "--csv", str(tmp_path / "chart.csv"), "--x-col", "Step", "--y-col",
                   "train/loss", *fast])
        out = json.loads(capsys.readouterr().out)
        assert any("W&B chart export" in m and "--curve-col run --x-col Step --y-col train/loss" in m
                   for m in lines), lines
        # without the names: the export's only step column and only metric are used, and said
        assert main(["lc", "extrapolate", "--csv", str(tmp_path / "chart.csv"), *fast]) == 0
        assert json.loads(capsys.readouterr().out)["score"] == out["score"]
        assert any("read with --x-col Step (not 'step'), --y-col train/loss (not 'loss')" in m for m in lines), lines
    assert rc == 0 and out["n_curves"] == 4 and out["n_tail"] == 450 - 40 - 20 - 40 - 40
    assert out["score"]["rmsle"] < out["last_value"]["rmsle"]


def test_every_step_logged_warns_refuses_and_thins(tmp_path, capsys, monkeypatch):
    """A W&B-style export (every step of 6 runs) through ``lc evaluate``: above the warning size a
    CPU fit warns with its estimated time and names --thin; above the limit it is refused before
    fitting (exit 2, the same fix); with --thin K it fits at most K rows per run and says how many
    it kept. The thresholds are lowered here (the real ones: 1,000 and 20,000 points)."""
    from jaxscale.learning_curves import core

    monkeypatch.setattr(core, "GP_WARN_POINTS", 100)
    monkeypatch.setattr(core, "GP_MAX_POINTS", 400)
    csv = tmp_path / "wandb_export.csv"
    _dense(90).to_csv(csv, index=False)  # 540 rows, 450 of them training points
    rc, _ = _run(_cmd("evaluate", str(csv)))
    out, err = capsys.readouterr()
    assert rc == 2 and "450 training points" in err and "--thin 50" in err and "limit 400" in err, err
    rc, msgs = _run(_cmd("evaluate", str(csv))[:-1] + ["--thin", "30", "--json"])
    res = json.loads(capsys.readouterr().out)
    assert rc == 0 and res["thinned"] == {"per_curve": 30, "n_read": 540, "n_kept": res["thinned"]["n_kept"]}
    assert 6 * 20 <= res["thinned"]["n_kept"] <= 6 * 30  # held-out run included
    assert any("training points" in m and "on 2 CPU cores" in m and "--thin 50" in m for m in msgs), msgs


def test_many_runs_are_told_to_fit_fewer_runs_not_to_thin():
    """Hundreds of runs (a sweep) are too many curves for a GP whatever the thinning: the cost
    warning then asks for fewer runs and says how many points fit; a few runs are told --thin."""
    from jaxscale import learning_curves as lc
    from jaxscale.learning_curves import core

    spec = lc.Spec(model="magp_law")
    with pytest.warns(RuntimeWarning, match=r"10099 training points \(590 curves\).* roughly \d+ h .*fit fewer "
                                            r"runs \(--where\): 590 curves are 4720 points .* about 1000 points fit "
                                            r"in 15 minutes here \(e.g. 100 runs at --thin 10\)"):
        core._check_size(10099, 590, spec)
    with pytest.warns(RuntimeWarning, match=r"\(CLI: --thin 33\), or fewer runs \(--where\); to keep what an "
                                            r"interrupted fit did.*--ckpt-dir"):
        core._check_size(3000, 30, spec)  # hours: checkpoints named
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        core._check_size(3000, 30, spec._replace(ckpt_dir="ck"))
    assert len(rec) == 1 and "--ckpt-dir" not in str(rec[0].message)
    with pytest.raises(ValueError, match=r"limit 20000.*fit fewer runs"):
        core._check_size(25000, 590, spec)


def test_step_zero_is_named_as_the_loss_before_training(tmp_path):
    """W&B and nanoGPT logs start at step 0 (the loss before training): the error says so and names
    the --where that leaves those rows out, not 'if 0 means unknown'."""
    from jaxscale import learning_curves as lc

    df = pd.DataFrame({"run": np.repeat(["a", "b"], 5), "step": np.tile([0, 10, 20, 30, 40], 2),
                       "loss": np.tile([10.0, 5.0, 4.0, 3.5, 3.2], 2)})
    for call in (lambda: lc.from_frame(df, task_col="run", instance_col=None, x_col="step", y_col="loss"),
                 lambda: lc.tail_from_frame(df, curve_col="run", x_col="step", y_col="loss", cutoff=25)):
        with pytest.raises(ValueError, match=r"'step' has 2 non-positive .*A step of 0 is the loss before any "
                                             r"training.*--where \"step > 0\""):
            call()
    df.loc[0, "step"] = -1
    with pytest.raises(ValueError, match="If 0 means 'unknown'"):
        lc.from_frame(df, task_col="run", instance_col=None, x_col="step", y_col="loss")


def test_metrics_on_separate_rows_name_the_where_that_keeps_the_loss_rows():
    """A log that writes the loss and another metric on alternate rows (a W&B history export) leaves
    the loss empty on half the rows: the error counts them and names the --where that works."""
    from jaxscale import learning_curves as lc

    steps = np.arange(1, 41)
    df = pd.DataFrame({"Name": np.repeat(["a", "b"], 40), "_step": np.tile(steps, 2),
                       "train/loss": np.tile(np.where(steps % 2 == 0, 3.0 + 5.0 * steps ** -0.5, np.nan), 2)})
    with pytest.raises(ValueError, match=r"30 missing.*--where '`train/loss`.notna\(\)'"):
        lc.tail_from_frame(df, curve_col="Name", x_col="_step", y_col="train/loss", cutoff=30)
    kept = df.query("`train/loss`.notna()")
    data = lc.tail_from_frame(kept, curve_col="Name", x_col="_step", y_col="train/loss", cutoff=30)
    assert int(np.asarray(data.train).sum()) == 30


def test_a_column_not_in_the_table_names_its_option():
    """A wrong column name is answered with the option that names it (CLI flag and Python keyword)."""
    from jaxscale import learning_curves as lc
    from jaxscale.learning_curves.extrapolate import tail_from_frame

    df = pd.DataFrame({"run": ["a"] * 5, "width": 64, "depth": 2, "step": [1, 2, 4, 8, 16], "val_loss": 3.0})
    with pytest.raises(ValueError, match=r"missing column\(s\) \['loss'\].*"
                                         r"'loss' \(loss\): --y-col NAME \(y_col=\.\.\.\)"):
        lc.from_frame(df, task_col="width", instance_col="depth", x_col="step", y_col="loss")
    with pytest.raises(ValueError,
                       match=r"'size' \(descriptor\): --descriptor-cols C1,C2 \(descriptor_cols=\[\.\.\.\]\)"):
        tail_from_frame(df, curve_col="run", x_col="step", y_col="val_loss", cutoff=4, descriptor_cols=["size"])
    with pytest.raises(ValueError, match=r"'name' \(run\): --curve-col NAME \(curve_col=\.\.\.\)"):
        tail_from_frame(df, curve_col="name", x_col="step", y_col="val_loss", cutoff=4)
