"""The command-line face: every leaf command has --json and a --help that shows its defaults; every
fitting command takes the user's own table; every pillar has `predict`."""
import argparse
import warnings

import numpy as np
import pytest

from jaxscale.cli import build_parser
from jaxscale.cli._common import Formatter

FITTING = {  # group -> commands that fit a model on a table (and save it / write predictions)
    "chinchilla": ("fit",),
    "lc": ("evaluate", "law"),
    "obs": ("fit",),
    "context": ("fit",),
    "ncpl": ("train",),
}


def _leaves(parser, path=()):
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield path, parser
        return
    for name, child in subs[0].choices.items():
        yield from _leaves(child, path + (name,))


LEAVES = dict(_leaves(build_parser()))


@pytest.mark.parametrize("path", sorted(LEAVES), ids=" ".join)
def test_leaf_has_json_and_help_with_defaults(path):
    p = LEAVES[path]
    assert "--json" in p._option_string_actions, path
    assert issubclass(p.formatter_class, argparse.ArgumentDefaultsHelpFormatter), path
    undocumented = [a.option_strings[0] for a in p._actions
                    if a.option_strings and a.help in (None, "") and a.default is not argparse.SUPPRESS]
    assert not undocumented, f"{' '.join(path)}: options without help (their default is not shown): {undocumented}"
    text = p.format_help()
    assert "(default:" in text or len(p._actions) <= 2


@pytest.mark.parametrize("group", sorted(FITTING))
def test_every_fitting_command_takes_your_table_and_every_group_predicts(group):
    for cmd in FITTING[group]:
        p = LEAVES[(group, cmd)]
        for opt in ("--csv", "--where", "--holdout", "--predictions", "--save"):
            assert opt in p._option_string_actions, f"{group} {cmd} lacks {opt}"
    if group == "lc":  # active learning refits a model per round: it takes the table, writes --out-dir
        p = LEAVES[("lc", "active")]
        for opt in ("--csv", "--where", "--holdout", "--out-dir"):
            assert opt in p._option_string_actions, f"lc active lacks {opt}"
    pred = LEAVES[(group, "predict")]
    for opt in ("--model", "--csv", "--predictions", "--json"):
        assert opt in pred._option_string_actions, f"{group} predict lacks {opt}"


def test_formatter_is_the_shared_one():
    assert all(issubclass(p.formatter_class, Formatter) for p in LEAVES.values())


def test_demo_output_safety(tmp_path, capsys):
    """`demo` refuses to clobber a folder, rejects unknown sections before any work, and writes
    strict JSON; --overwrite replaces a previous report."""
    import json

    from jaxscale.cli import main

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "README.md").write_text("my notes")
    assert main(["demo", "--out", str(mine), "--only", "chinchilla", "--smoke", "--json"]) == 2
    assert "exists and is not empty" in capsys.readouterr().err
    assert (mine / "README.md").read_text() == "my notes"
    with pytest.raises(SystemExit):  # argparse rejects a typo before anything runs
        main(["demo", "--out", str(tmp_path / "r"), "--only", "chinchila"])
    assert "invalid choice: 'chinchila'" in capsys.readouterr().err
    out = tmp_path / "report"
    assert main(["demo", "--out", str(out), "--only", "chinchilla", "--smoke", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["failed"] == [] and set(res["sections"]) == {"chinchilla"}
    json.loads((out / "summary.json").read_text(), parse_constant=lambda c: pytest.fail(f"non-strict JSON {c}"))
    assert (out / "chinchilla_fit.png").stat().st_size > 1000
    assert main(["demo", "--out", str(out), "--only", "chinchilla", "--smoke", "--overwrite", "--json"]) == 0
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folders left


def test_bench_times_compile_and_run_on_this_device(capsys):
    import json

    from jaxscale.cli import main

    assert main(["bench", "--quick", "--only", "context_law", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["device_count"] >= 1 and out["device_kind"]
    rows = out["workloads"]["context_law"]["sizes"]
    assert [r["size"] for r in rows] == [120, 1200]
    assert all(r["first_s"] >= r["run_s"] > 0 for r in rows)  # the second call reuses the compiled program
    assert isinstance(out["workloads"]["context_law"]["run_time_exponent"], float)
    assert main(["bench", "--only", "nope", "--json"]) == 2


def test_persistent_compilation_cache(tmp_path):
    """The command line stores compiled programs in JAXSCALE_CACHE_DIR; JAXSCALE_NO_CACHE=1 opts out."""
    import os
    import subprocess
    import sys

    base = dict(os.environ, JAXSCALE_CACHE_DIR=str(tmp_path / "cache"), JAXSCALE_NO_CACHE="0")
    cmd = [sys.executable, "-m", "jaxscale", "obs", "fit", "--task", "gsm8k_cot", "--json"]
    res = subprocess.run(cmd, env=base, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    assert any((tmp_path / "cache").iterdir())
    off = dict(base, JAXSCALE_CACHE_DIR=str(tmp_path / "off"), JAXSCALE_NO_CACHE="1")
    res = subprocess.run(cmd, env=off, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0 and not (tmp_path / "off").exists()


#: Every --help to check: the top level, each command group, each leaf command.
HELP_PATHS = sorted({()} | {path[:1] for path in LEAVES} | set(LEAVES))


@pytest.mark.parametrize("path", HELP_PATHS, ids=lambda p: " ".join(p) or "jaxscale")
def test_help_imports_no_jax(path):
    """`jaxscale [group [command]] --help` stays fast: it imports neither JAX nor pandas (the
    defaults and choices it shows come from the pillars' light `spec` modules)."""
    import subprocess
    import sys

    code = ("import sys\nfrom jaxscale.cli import main\n"
            f"try:\n    main({list(path) + ['--help']!r})\nexcept SystemExit:\n    pass\n"
            "print([m for m in ('jax', 'pandas', 'flax', 'numpyro') if m in sys.modules], file=sys.stderr)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stderr.strip().splitlines()[-1] == "[]", f"jaxscale {' '.join(path)} --help imports: {res.stderr}"


def test_version_prints_the_package_version_without_jax():
    import subprocess
    import sys

    from jaxscale import __version__

    code = ("import sys\nfrom jaxscale.cli import main\ntry:\n    main(['--version'])\nexcept SystemExit:\n    pass\n"
            "print([m for m in ('jax', 'pandas') if m in sys.modules], file=sys.stderr)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.stdout.strip() == f"jaxscale {__version__}" and res.stderr.strip().splitlines()[-1] == "[]", res


def test_light_choices_match_the_library():
    """The jax-free copies of choices shown by --help equal the library's own."""
    from jaxscale.context_law import spec as context_spec
    from jaxscale.laws import context as context_law_form

    assert context_spec.PENALTIES == context_law_form.PENALTIES


def test_errors_go_to_stderr_and_with_json_also_as_one_json_object(tmp_path, capsys):
    """Bad input exits 2 with the message on stderr; with ``--json`` stdout carries it as the one
    JSON object ``{"error": ...}`` (a script reading stdout always gets one object), otherwise
    stdout stays empty."""
    import json

    from jaxscale.cli import main

    argv = ["chinchilla", "fit", "--csv", str(tmp_path / "missing.csv")]
    assert main(argv) == 2
    cap = capsys.readouterr()
    assert cap.out == "" and "missing.csv" in cap.err
    assert main(argv + ["--json"]) == 2
    cap = capsys.readouterr()
    assert json.loads(cap.out) == {"error": cap.err.strip().removeprefix("error: ")}
    # a command-line mistake too (argparse exits 2): an unknown option names the command's --help
    for bad, said in ((["--holdout-frac", "3"], "unrecognized arguments: --holdout-frac 3 (the options of a command: "
                                                "jaxscale chinchilla fit --help)"),
                      (["--level", "x"], "argument --level: 'x' is not a number; e.g. --level 0.9 for a 90 % "
                                         "interval"),
                      (["--level", "1.5"], "argument --level: 1.5 is not in (0, 1); e.g. --level 0.9 for a 90 % "
                                           "interval")):
        with pytest.raises(SystemExit) as exc:
            main(argv + bad + ["--json"])
        cap = capsys.readouterr()
        assert exc.value.code == 2 and json.loads(cap.out) == {"error": said} and said in cap.err
        with pytest.raises(SystemExit):
            main(argv + bad)
        assert capsys.readouterr().out == ""


def test_run_as_a_command_the_packages_warnings_come_without_source_lines(capsys):
    """``jaxscale ...`` (argv from the command line) shows the package's warnings as
    ``[jaxscale] warning: ...``; other packages' keep Python's form (file and line)."""
    import io
    import os

    from jaxscale.cli import _show_warning

    out = io.StringIO()
    here = os.path.join("site-packages", "jaxscale", "cli", "chinchilla.py")
    _show_warning(UserWarning("2 of 2 queries lie outside"), UserWarning, here, 107, out)
    _show_warning(RuntimeWarning("R-hat 1.2"), RuntimeWarning, here, 9, out)
    _show_warning(UserWarning("other"), UserWarning, os.path.join("numpy", "core.py"), 3, out, "x = 1")
    lines = out.getvalue().splitlines()
    assert lines[:2] == ["[jaxscale] warning: 2 of 2 queries lie outside",
                         "[jaxscale] warning (RuntimeWarning): R-hat 1.2"]
    assert lines[2] == f"{os.path.join('numpy', 'core.py')}:3: UserWarning: other"


def test_an_infinite_truth_is_not_scored_and_is_said():
    """A held-out row whose target is inf (a run that diverged) is no missing value: it is counted
    apart and warned, and the other rows are scored."""
    from jaxscale.cli._common import score
    from jaxscale.infer.prediction import Prediction

    y = np.array([2.0, np.nan, np.inf, 3.0])
    pred = Prediction(np.array([2.1, 2.0, 2.0, 2.9]), np.full(4, 1.5), np.full(4, 3.5))
    with pytest.warns(UserWarning, match=r"1 scored row\(s\) have an infinite target value"):
        out = score(y, pred)
    assert (out["n"], out["n_missing_truth"], out["n_infinite_truth"]) == (2, 1, 1)
    assert out["mae"] == pytest.approx(0.1) and out["coverage"] == 1.0


def test_baseline_warning_gives_the_gap_and_calls_a_small_one_a_tie():
    """A baseline with a lower MAE is always listed and warned; the warning says by how much, and
    below 1 % it calls the difference a tie instead of advising the baseline."""
    import numpy as np

    from jaxscale import Prediction
    from jaxscale.cli._common import compare_baselines

    y = np.array([1.0, 2.0, 3.0, 4.0])
    model = Prediction(y + 0.100, y, y + 0.2)
    with pytest.warns(UserWarning, match=r"near \(0\.0995, 0\.5 % lower\); a difference this small is a tie"):
        out = compare_baselines(y, model, {"near": y + 0.0995, "far": y + 0.2}, what="m")
    assert out["model_loses_to"] == ["near"]
    with pytest.warns(UserWarning, match=r"better \(0\.05, 50 % lower\); prefer the baseline here"):
        out = compare_baselines(y, model, {"better": y - 0.05}, what="m")
    assert out["model_loses_to"] == ["better"] and out["compared_on"] == "mae"
    # judged on the log error instead (losses of runs in progress): 5 % too high everywhere beats
    # 0.1 too high, whose MAE is lower but whose relative error is 10 % on the smallest loss
    rel = Prediction(y * 1.05, y, y * 1.1)
    with pytest.warns(UserWarning, match=r"model's MAE \(0\.125\) is worse than .* plus \(0\.1, 20 % lower\)"):
        assert compare_baselines(y, rel, {"plus": y + 0.1}, what="m")["model_loses_to"] == ["plus"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = compare_baselines(y, rel, {"plus": y + 0.1}, what="m", metric="rmsle")
    assert out["model_loses_to"] == [] and out["compared_on"] == "rmsle"
    assert out["model"]["rmsle"] == pytest.approx(np.log(1.05)) and out["plus"]["rmsle"] > out["model"]["rmsle"]
    with pytest.raises(ValueError, match="metric='mse' is unknown"):
        compare_baselines(y, rel, {}, what="m", metric="mse")


def test_coverage_check_accepts_what_a_calibrated_interval_shows():
    """A 90 % interval is consistent at 80-97 % coverage on many rows (miss rates 0.3x-2x the
    nominal 10 %), more loosely on few rows (two binomial standard errors)."""
    from jaxscale.metrics import coverage_check

    big = coverage_check(0.9, 10**6, 0.9)
    assert big["verdict"] == "consistent" and big["expected"] == pytest.approx([0.8, 0.97], abs=1e-3)
    assert coverage_check(0.22, 268157, 0.9)["verdict"] == "too narrow"
    assert coverage_check(1.0, 500, 0.9)["verdict"] == "too wide"
    assert coverage_check(1.0, 5, 0.9)["verdict"] == "consistent"  # 5 rows all inside: no evidence
    assert coverage_check(0.0, 3, 0.9)["verdict"] == "too narrow"
    few = coverage_check(0.75, 30, 0.9)
    assert few["verdict"] == "consistent" and few["expected"][0] == pytest.approx(0.8 - 2 * np.sqrt(0.09 / 30))
    with pytest.raises(ValueError, match="level must lie in"):
        coverage_check(0.5, 10, 90.0)
    # every one of 60 rows covered, by an interval 9x wider than the errors (2.44x when calibrated):
    # the coverage alone is within the range of 60 correlated rows, the width is not
    wide = coverage_check(1.0, 60, 0.9, width_ratio=22.0)
    assert wide["verdict"] == "too wide" and wide["width_ratio_calibrated"] == pytest.approx(2.439, abs=1e-3)
    assert coverage_check(1.0, 60, 0.9, width_ratio=5.0)["verdict"] == "consistent"  # within 3x
    assert coverage_check(1.0, 12, 0.9, width_ratio=22.0)["verdict"] == "consistent"  # too few rows
    assert coverage_check(0.95, 60, 0.9, width_ratio=22.0)["verdict"] == "consistent"  # misses some
    from jaxscale.cli._common import check_interval
    from jaxscale.infer.prediction import Prediction

    y = np.linspace(2.0, 3.0, 60)
    pred = Prediction(y + 0.01, y - 1.0, y + 1.0)
    with pytest.warns(UserWarning, match=r"covered 100 % .* too wide here, .* its median half-width is 100x the "
                                         r"median error \(a calibrated one: about 2.44x\)"):
        assert check_interval(y, pred, 0.9, what="m")["verdict"] == "too wide"


def test_held_out_coverage_far_below_the_level_is_warned_and_reported():
    """With ``level``, ``compare_baselines`` checks the model's interval on the scored rows: one
    that covers 20 % of 200 rows at 90 % is warned as too narrow and reported under
    ``model_interval``; a point prediction (no interval) is not checked."""
    from jaxscale import Prediction
    from jaxscale.cli._common import compare_baselines

    y = np.linspace(1.0, 2.0, 200)
    inside = np.arange(200) % 5 == 0  # 20 % of the rows inside the interval
    lo = np.where(inside, y - 0.1, y + 0.05)
    model = Prediction(y + 0.01, lo, lo + 0.2)
    with pytest.warns(UserWarning, match=r"m: the model's 90 % interval covered 20 % of the held-out rows \(200 "
                                         r"scored; a calibrated one would cover about 76-100 % of them\): it is too "
                                         r"narrow here"):
        out = compare_baselines(y, model, {"far": y + 0.5}, what="m", level=0.9)
    assert out["model_interval"]["verdict"] == "too narrow" and out["model_interval"]["coverage"] == 0.2
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        point = compare_baselines(y, Prediction(y + 0.01, np.full(200, np.nan), np.full(200, np.nan)),
                                  {"far": y + 0.5}, what="m", level=0.9)
        calibrated = compare_baselines(y, Prediction(y, y - 0.1, y + 0.1), {"far": y + 0.5}, what="m", level=0.95)
    assert "model_interval" not in point and calibrated["model_interval"]["verdict"] == "consistent"


def test_predictions_file_holds_baselines_and_names_a_replaced_column(tmp_path):
    import pandas as pd

    from jaxscale.cli._common import baseline_columns, write_predictions
    from jaxscale.infer.prediction import Prediction

    frame = pd.DataFrame({"x": [1.0, 2.0, 3.0], "mean": [5.0, 6.0, 7.0]})  # the user's own 'mean' column
    pred = Prediction(np.array([1.0, 2.0, 3.0]), np.array([0.0, 1.0, 2.0]), np.array([2.0, 3.0, 4.0]))
    held = np.array([False, True, True])
    cols = baseline_columns(3, held, {"trend": np.array([7.0, 8.0]), "law": Prediction(*[np.array([9.0, 9.5])] * 3)})
    with pytest.warns(UserWarning, match=r"column\(s\) \['mean'\] hold jaxscale's values in p.csv"):
        write_predictions(tmp_path / "p.csv", frame, pred, extra={"heldout": held, **cols})
    out = pd.read_csv(tmp_path / "p.csv")
    assert list(out.columns) == ["x", "mean", "lower", "upper", "heldout", "trend", "law"]
    assert out["mean"].tolist() == [1.0, 2.0, 3.0]
    assert out["trend"].isna().tolist() == [True, False, False] and out["trend"].tolist()[1:] == [7.0, 8.0]
    assert out["law"].tolist()[1:] == [9.0, 9.5]
    with warnings.catch_warnings():  # no clash, no warning
        warnings.simplefilter("error")
        write_predictions(tmp_path / "q.csv", frame[["x"]], pred)


def test_a_model_of_another_pillar_is_refused_with_the_command_that_reads_it(tmp_path, capsys):
    import json

    from jaxscale.cli import main
    from tests.helpers import chinchilla_runs

    csv = tmp_path / "runs.csv"
    chinchilla_runs().to_csv(csv, index=False)
    assert main(["chinchilla", "fit", "--csv", str(csv), "--n-col", "params", "--d-col", "tokens", "--loss-col",
                 "val_loss", "--save", str(tmp_path / "law"), "--json"]) == 0
    capsys.readouterr()
    assert main(["lc", "predict", "--model", str(tmp_path / "law"), "--csv", str(csv), "--json"]) == 2
    err = json.loads(capsys.readouterr().out)["error"]
    assert "not a jaxscale.learning_curves model: predict with it by jaxscale chinchilla predict --model" in err


@pytest.mark.parametrize("argv, said", [
    (["ncpl", "train", "--ckpt-dir", "CKPT"], "interrupted; the same command again resumes from the last "
                                              "checkpoint in CKPT"),
    (["chinchilla", "fit"], "interrupted (this command keeps no checkpoints: run it again to start over)")])
def test_ctrl_c_ends_with_one_line_and_one_json_object(tmp_path, capsys, monkeypatch, argv, said):
    """Ctrl-C during a command: exit status 130, one line on stderr (no traceback) saying whether
    the same command resumes, and with --json the one object {"error": ...} on stdout."""
    import json

    import jaxscale.data
    from jaxscale.cli import main

    def interrupt(path):
        raise KeyboardInterrupt

    monkeypatch.setattr(jaxscale.data, "read_table", interrupt)
    ck = str(tmp_path / "ck")
    argv = [a.replace("CKPT", ck) for a in argv] + ["--csv", str(tmp_path / "runs.csv"), "--json"]
    assert main(argv) == 130
    cap = capsys.readouterr()
    assert json.loads(cap.out) == {"error": said.replace("CKPT", ck)}
    assert cap.err.strip().splitlines() == [f"error: {said.replace('CKPT', ck)}"]


def test_an_existing_plot_is_replaced_and_said(tmp_path):
    """--plot replaces an existing figure (unlike --predictions and --save), and says so on stderr."""
    from jaxscale.cli._common import check_outputs
    from tests.helpers import log_lines

    png = tmp_path / "fit.png"
    png.write_bytes(b"old")
    with log_lines("jaxscale.cli") as lines:
        check_outputs(argparse.Namespace(plot=str(png), predictions=None))
    assert lines == [f"--plot {png} exists: the new figure replaces it"]
    with log_lines("jaxscale.cli") as lines:
        check_outputs(argparse.Namespace(plot=str(tmp_path / "new.png"), predictions=None))
    assert lines == []
