"""CLI wiring of ``jaxscale context fit`` (cheap checks; the full fits run in the demo / benchmarks)."""
import argparse

import pytest

from jaxscale.cli.context import register, spec_from_args
from jaxscale.context_law import PRESETS, Spec
from jaxscale.context_law.evaluate import default_spec


def _parser():
    p = argparse.ArgumentParser()
    register(p.add_subparsers(dest="cmd"))
    return p


def test_register_adds_context_fit():
    args = _parser().parse_args(["context", "fit", "--dataset", "babilong", "--penalty", "log_ratio", "--decay",
                                 "--bayes", "--json"])
    assert args.dataset == "babilong" and args.penalty == "log_ratio" and args.decay and args.bayes
    assert callable(args.func)


def test_flags_default_to_spec_and_override_presets():
    args = _parser().parse_args(["context", "fit", "--csv", "x.csv"])
    assert spec_from_args(args) == Spec()  # the CLI's defaults are Spec()'s
    for field in Spec._fields:
        assert getattr(args, field) == getattr(Spec(), field), field
    # a bundled preset keeps its own form unless a flag is given explicitly
    args = _parser().parse_args(["context", "fit", "--dataset", "longcontext_icl", "--restarts", "2",
                                 "--no-fit-shift"])
    spec = spec_from_args(args, default_spec("longcontext_icl"))
    assert spec == PRESETS["longcontext_icl"]._replace(fit_shift=False)
    assert spec.fit_alpha is False  # from the preset, although Spec().fit_alpha is True


def test_bad_dataset_and_penalty():
    with pytest.raises(SystemExit):
        _parser().parse_args(["context", "fit", "--dataset", "mmlu"])
    with pytest.raises(SystemExit):
        _parser().parse_args(["context", "fit", "--dataset", "ruler", "--penalty", "sigmoid"])
    with pytest.raises(ValueError, match="penalty"):
        default_spec("ruler", penalty="sigmoid")
    with pytest.raises(ValueError, match="dataset"):
        default_spec("mmlu")


def _run(argv, capsys):
    import json
    import warnings as w

    from jaxscale.cli import main

    with w.catch_warnings(record=True) as caught:
        w.simplefilter("always")
        rc = main(argv)
    out = capsys.readouterr().out
    return rc, (json.loads(out) if rc == 0 else None), [str(c.message) for c in caught]


def test_dataset_not_converged_is_reported_and_warned(capsys):
    """--dataset: a DE stopped at --maxiter is in the JSON (converged, reason) and in the warnings."""
    rc, res, _ = _run(["context", "fit", "--dataset", "longcontext_icl", "--maxiter", "3", "--popsize", "5",
                       "--restarts", "1", "--no-polish", "--json"], capsys)
    assert rc == 0 and res["converged"] is False
    assert all(t["converged"] is False and "maxiter=3" in t["reason"] for t in res["tasks"])
    assert all(t["extrap_converged"] is False and t["backtest_converged"] is False for t in res["tasks"])
    assert any("maxiter=3" in m and "without meeting" in m for m in res["warnings"])


@pytest.mark.slow
def test_clean_bundled_fit_has_no_warning(capsys):
    """The headline command with its default settings: converged everywhere, no warning at all, the
    carry-forward baseline beside the model on the held-out (>= 10k token) prompts, and the point
    fit's 90 % interval (widened by the backtest's drift) covering them."""
    rc, res, caught = _run(["context", "fit", "--dataset", "longcontext_icl", "--json"], capsys)
    assert rc == 0
    assert res["warnings"] == [] and [m for m in caught if "longcontext_icl" in m or "context" in m] == []
    assert res["converged"] is True
    base = res["baselines"]
    assert base["model_loses_to"] == [] and base["model"]["mae"] < base["carry_forward"]["mae"]
    assert res["drift"]["tau"] > 0 and res["drift"]["tasks_used"] == 5
    assert 0.8 <= res["coverage_90_point"] <= 1.0
    assert len(res["design_notes"]) > 0  # no row past the limit below 10k tokens: reported, not warned


@pytest.mark.slow
def test_your_table_that_loses_to_carrying_scores_forward_is_told_what_to_try(tmp_path, capsys):
    """The many-shot ICL results as a user's CSV (its 135 rows without a published D given the 2e12
    tokens the bundled preset assumes), long prompts (>= 10k tokens) held out: the paper's law (the
    CLI's default) loses to carrying each model's score forward and to its trend in ln(prompt length)
    (measured MAE 0.173 against 0.150 and 0.148) and the warning names --fit-shift; with it the
    model wins (0.129), as the bundled preset does."""
    import pandas as pd

    from jaxscale.data.registry import data_dir

    df = pd.read_csv(data_dir("context_law") / "longcontext_icl_results.csv")
    df["train_tokens"] = df["train_tokens"].fillna(2e12)
    csv = tmp_path / "icl.csv"
    df.to_csv(csv, index=False)
    argv = ["context", "fit", "--csv", str(csv), "--n-col", "n_params", "--d-col", "train_tokens", "--task-col", "task",
            "--holdout", "n_pmt >= 10000", "--no-fit-alpha", "--json"]
    rc, res, _ = _run(argv, capsys)
    base = res["baselines"]
    assert rc == 0 and res["n_holdout"] == 70 and base["model_loses_to"] == ["carry_forward", "prompt_trend"]
    assert base["model"]["mae"] == pytest.approx(res["mae_out"]) and base["model"]["n"] == base["carry_forward"]["n"]
    assert any("worse than the naive baseline" in m and "try --fit-shift" in m for m in res["warnings"])
    rc, res, _ = _run([*argv, "--fit-shift"], capsys)
    base = res["baselines"]
    assert rc == 0 and base["model_loses_to"] == [] and base["model"]["mae"] < base["carry_forward"]["mae"]
    assert not any("try --fit-shift" in m for m in res["warnings"])
