"""Table 2 of the bad-input checklist, row by row, through the context-law commands.

Every case writes a CSV, runs ``jaxscale context fit --csv`` or ``jaxscale context predict`` through
``main([...])`` and asserts the documented outcome: exit code 2 with a message naming the column and
the file lines (header = line 1, so data row ``i`` of the frame below is line ``i + 2``), or exit 0
with the documented warning in the JSON ``warnings`` (``fit``) or as a Python warning (``predict``).

Rows of the table that do not apply to these commands, and why:

* float32 inputs / x64 disabled: the command line always enables float64 (``jaxscale.cli.main``);
  the Python ``fit`` warns through ``jaxscale.config.warn_if_float32``.
* non-PD kernel matrix: the context law has no kernel.
* NaN produced inside jit: a valid CSV cannot produce one (every input is checked finite and
  positive first); ``fit`` still checks the loss of every task after the compiled stage and raises
  naming the task.
* undetermined covariance / ill-conditioned Jacobian: the point-fit interval uses the residual
  scale, not a covariance; under-determined designs are refused up front (rows below).
* no valid initial parameters: NUTS starts at the point fit, which is inside the priors' support.
* mismatched shapes: one CSV gives columns of one length; the Python ``fit`` checks the arrays
  of a hand-built ``Data`` (``test_python_shapes``).
* warm-up steps in learning curves, down-sampled W&B logs, leaderboard revisions, fork / several
  workers per GPU: not inputs of this pillar.
* optimiser not converged on a bundled source (``fit --dataset``): ``tests/test_context_cli.py``
  (``test_dataset_not_converged_is_reported_and_warned``); a clean bundled fit warns nothing
  (``test_clean_bundled_fit_has_no_warning``).
* same key, different execution mode: documented in ``fit_core`` (vmap over keys equals separate
  calls; ``tests/test_context_law_contract.py``).
* reproducing a published law: golden tests in ``tests/test_context_law.py`` and
  ``tests/test_context_fit.py``.
"""
import json
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

from jaxscale.cli import main
from jaxscale.context_law.model import predict_law
from jaxscale.context_law.synthetic import TRUE_SPEC, TRUE_THETA

FAST = ["--popsize", "5", "--maxiter", "30", "--restarts", "1", "--no-polish"]


def _base() -> pd.DataFrame:
    """2 tasks x 3 compute levels x 2 context limits x 5 prompt lengths (60 rows), binomial scores."""
    rows = []
    for task in ("arith", "qa"):
        for C in (1e21, 1e22, 1e23):
            for n_ctx in (4096.0, 16384.0):
                for n_pmt in (200.0, 1000.0, 3000.0, 8000.0, 20000.0):
                    rows.append(dict(model=f"m{C:.0e}-{int(n_ctx)}", task=task, C=C, N=1e9, D=C / 6e9,
                                     n_ctx=n_ctx, n_pmt=n_pmt, chance=0.0))
    df = pd.DataFrame(rows)
    p = np.asarray(predict_law(TRUE_SPEC, jnp.asarray(TRUE_THETA), np.log(df["C"].to_numpy()),
                               df["n_pmt"].to_numpy(), df["n_ctx"].to_numpy()))
    df["score"] = np.asarray(jax.random.binomial(jax.random.key(1), 200, jnp.asarray(p))) / 200.0
    return df


def _set(col, row, value):
    def f(df):
        df = df.copy()
        df[col] = df[col].astype(object) if isinstance(value, str) else df[col]
        df.loc[row, col] = value
        return df
    return f


def _where(cond, **values):
    def f(df):
        df = df.copy()
        m = cond(df)
        for c, v in values.items():
            df.loc[m, c] = v(df.loc[m]) if callable(v) else v
        return df
    return f


def _dup(df):
    df = df.copy()
    df.iloc[5] = df.iloc[4]  # line 7 repeats line 6 (same shape as the base table)
    return df


def _k_with_one_long(df):
    """n_ctx in thousands of tokens, one model's limit 1M tokens (1024): the largest value passes 256."""
    df = df.copy()
    df["n_ctx"] = df["n_ctx"] / 1024
    df.loc[df["model"] == "m1e+21-4096", "n_ctx"] = 1024.0
    return df


NC = ["--n-col", "N", "--d-col", "D"]
# (id, Table 2 row, command, table change, extra args, expected)
#   expected: ("error", [patterns in stderr]) | ("warn", [patterns in a warning]) | ("ok", check(json))
CASES = [
    ("nan_score", "NaN/inf in score", "fit", _set("score", 3, np.nan), [],
     ("error", ["'score'", "NaN", "[5]"])),
    ("inf_C", "NaN/inf in C", "fit", _set("C", 7, np.inf), [], ("error", ["'C'", "infinite", "[9]"])),
    ("nan_n_pmt", "NaN/inf in prompt length", "fit", _set("n_pmt", 0, np.nan), [], ("error", ["'n_pmt'", "[2]"])),
    ("nan_N", "NaN/inf in N", "fit", _set("N", 10, np.nan), NC, ("error", ["'N'", "[12]"])),
    ("inf_C_predict", "NaN/inf in C", "predict", _set("C", 7, np.inf), [], ("error", ["'C'", "[9]"])),
    ("nan_score_predict", "NaN in score (a query's truth is optional)", "predict", _set("score", 3, np.nan), [],
     ("ok", lambda r: r["score"]["n_missing_truth"] == 1 and r["score"]["n"] == 59)),
    ("zero_C", "zero compute", "fit", _set("C", 4, 0.0), [], ("error", ["'C'", "non-positive", "[6]", "unknown"])),
    ("neg_n_ctx", "negative context limit", "fit", _set("n_ctx", 2, -4096.0), [],
     ("error", ["'n_ctx'", "non-positive", "[4]"])),
    ("zero_D", "zero tokens", "fit", _set("D", 1, 0.0), NC, ("error", ["'D'", "non-positive", "[3]"])),
    ("zero_n_pmt_predict", "zero prompt length", "predict", _set("n_pmt", 1, 0.0), [],
     ("error", ["'n_pmt'", "[3]"])),
    ("text_N", "non-numeric N ('7B')", "fit", _set("N", 6, "7B"), NC, ("error", ["'N'", "non-numeric", "[8]"])),
    ("N_in_billions", "mixed units: N in billions", "fit", _where(lambda d: d.index >= 0, N=7.0,
                                                                    D=lambda d: d["C"] / 42.0), NC,
     ("warn", ["'N'", "billions"])),
    ("C_not_flops", "mixed units: C not in FLOPs", "fit", _where(lambda d: d.index >= 0,
                                                                 C=lambda d: d["C"] / 1e18), [],
     ("warn", ["'C'", "FLOPs"])),
    ("n_ctx_in_k", "mixed units: n_ctx in thousands", "predict", _where(lambda d: d.index >= 0,
                                                                      n_ctx=lambda d: d["n_ctx"] / 1024), [],
     ("warn", ["'n_ctx'", "thousands"])),
    ("n_ctx_in_k_one_long", "mixed units: n_ctx in thousands, one 1M-token model", "fit", _k_with_one_long, [],
     ("warn", ["'n_ctx'", "median of 16", "thousands", "largest 1024"])),
    ("fraction_score_percent", "score as fractions read with --score-scale 100", "fit", None,
     ["--score-scale", "100"],
     ("warn", ["'score'", "at most 1", "60 rows", "Drop score_scale=100 (--score-scale 100)"])),
    ("missing_column", "missing column (other name)", "fit", lambda d: d.rename(columns={"n_pmt": "prompt_len"}), [],
     ("error", ["missing column(s) ['n_pmt']", "--n-pmt-col NAME", "'prompt_len'"])),
    ("past_limit_predict", "prompt far past the context limit", "predict",
     _where(lambda d: (d["n_ctx"] == 4096.0) & (d["n_pmt"] == 20000.0), n_pmt=4096.0 * 128), [],
     ("warn", ["longer than their model's context limit", "n_pmt / n_ctx = 128", "out of range"])),
    ("percent_score", "score in percent (outside [0, 1])", "fit", _where(lambda d: d.index >= 0,
                                                                        score=lambda d: d["score"] * 100), [],
     ("error", ["'score'", "outside", "looks like percent", "--score-scale 100"])),
    ("duplicate_row", "duplicate rows", "fit", _dup, [], ("warn", ["duplicate", "[6, 7]"])),
    ("one_compute", "single value of C (alpha fitted)", "fit", _where(lambda d: d.index >= 0, C=1e22), [],
     ("error", ["alpha", "one compute level", "--no-fit-alpha"])),
    ("one_compute_holdout", "single value of C after --holdout", "fit", None,
     ["--holdout", "C > 2e21"], ("error", ["alpha", "one compute level", "'C'"])),
    ("one_prompt", "single prompt length", "fit", _where(lambda d: d.index >= 0, n_pmt=1000.0), [],
     ("error", ["'n_pmt'", "one prompt length", "beta"])),
    ("few_rows", "fewer rows than parameters + 1", "fit", None, ["--where", "task == 'qa' and n_pmt > 500 and n_pmt < 5000 and C < 2e22 and n_ctx < 5000"],
     ("error", ["task 'qa'", "4 training rows", "5 free parameters", "--no-fit-scale"])),
    ("all_zero", "all accuracy targets 0 (one task)", "fit", _where(lambda d: d["task"] == "qa", score=0.0),
     ["--task-col", "task"], ("error", ["task 'qa'", "'score'", "constant", "30"])),
    ("all_one", "all accuracy targets 1", "fit", _where(lambda d: d.index >= 0, score=1.0), [],
     ("error", ["'score'", "constant", "60"])),
    ("chance_range", "chance floor outside its domain", "fit", _set("chance", 9, 0.999), ["--chance-col", "chance"],
     ("error", ["'chance'", "outside", "[11]"])),
    ("unknown_task", "unseen category at predict", "predict", _set("task", 0, "poetry"), [],
     ("error", ["'task'", "poetry", "[2]", "arith"])),
    ("missing_task", "missing category label", "fit", _set("task", 3, None), ["--task-col", "task"],
     ("error", ["'task'", "missing", "[5]"])),
    ("huge_C", "huge magnitudes (C ~ 1e27)", "fit", _where(lambda d: d.index >= 0, C=lambda d: d["C"] * 1e4), [],
     ("ok", lambda r: r["mae_in"] is not None and np.isfinite(r["mae_in"]))),
    ("not_converged", "optimiser not converged", "fit", None, ["--maxiter", "3"],
     ("warn", ["maxiter=3", "without meeting"])),
    ("mcmc_diagnostics", "MCMC: one chain, ESS < 100 per chain (+ beta likelihood at 0/1 scores)", "fit", None,
     ["--bayes", "--likelihood", "beta", "--num-chains", "1", "--num-warmup", "20", "--num-samples", "20"],
     ("ok", lambda r: (any("1 chain" in w and "R-hat" in w for w in r["warnings"])
                       and any("min ESS" in w for w in r["warnings"])
                       and any("likelihood='beta'" in w and "moved to" in w for w in r["warnings"])
                       and r["bayes"]["num_chains"] == 1 and r["bayes"]["min_ess"] < 100))),
    ("far_extrapolation", "far extrapolation", "predict", _where(lambda d: d.index >= 0,
                                                                 n_pmt=lambda d: d["n_pmt"] * 100), [],
     ("warn", ["outside the training data", "decades"])),
]


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """A saved model of the base table (tiny DE) for the predict rows."""
    d = tmp_path_factory.mktemp("ctx_model")
    csv = d / "base.csv"
    _base().to_csv(csv, index=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rc = main(["context", "fit", "--csv", str(csv), "--task-col", "task", *FAST, "--save", str(d / "m"), "--json"])
    assert rc == 0
    return d / "m"


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_table2(case, model, tmp_path, capsys):
    name, _row, command, change, extra, (kind, expect) = case
    df = _base() if change is None else change(_base())
    csv = tmp_path / "t.csv"
    df.to_csv(csv, index=False)
    if command == "fit":
        args = ["context", "fit", "--csv", str(csv), *FAST, *extra, "--json"]
        if "--task-col" not in extra and "task" in df and name not in ("all_one", "one_compute", "one_prompt"):
            args[4:4] = ["--task-col", "task"]
    else:
        args = ["context", "predict", "--model", str(model), "--csv", str(csv), *extra, "--json"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rc = main(args)
    out, err = capsys.readouterr()
    if kind == "error":
        assert rc == 2, (name, out[-500:])
        for pat in expect:
            assert pat in err, (name, pat, err)
        return
    assert rc == 0, (name, err)
    res = json.loads(out)
    if kind == "ok":
        assert expect(res), (name, res)
        return
    texts = list(res.get("warnings", [])) + [str(w.message) for w in caught]
    hit = [t for t in texts if all(p in t for p in expect)]
    assert hit, (name, expect, texts)


def test_outputs_checked_before_fitting(tmp_path, capsys):
    """Existing --predictions / non-empty --save / unwritable --plot are refused before any fit."""
    csv = tmp_path / "t.csv"
    _base().to_csv(csv, index=False)
    taken = tmp_path / "p.csv"
    taken.write_text("x\n")
    full = tmp_path / "full"
    full.mkdir()
    (full / "f").write_text("x")
    for extra, pat in ((["--predictions", str(taken)], "--predictions"), (["--save", str(full)], "--save"),
                       (["--plot", str(tmp_path / "no" / "x.png")], "--plot")):
        rc = main(["context", "fit", "--csv", str(csv), "--where", "C > 1e99", *extra, "--json"])
        assert rc == 2 and pat in capsys.readouterr().err, extra
    rc = main(["context", "fit", "--dataset", "longcontext_icl", "--plot", str(tmp_path / "no" / "x.png"), "--json"])
    assert rc == 2 and "--plot" in capsys.readouterr().err


def test_python_shapes():
    """A hand-built Data whose arrays disagree in length is refused with every shape printed."""
    from jaxscale import context_law as cl

    data = cl.from_frame(_base(), task_col="task")
    bad = data.replace(n_pmt=data.n_pmt[:-1])
    with pytest.raises(ValueError, match="n_pmt.*59"):
        cl.fit(jax.random.key(0), bad, cl.Spec(popsize=5, maxiter=5, restarts=1, polish=False))


def _one_task_eight_prompts() -> pd.DataFrame:
    """One model, one task (banking77 many-shot ICL, Llama-2-7B, 4k context) at 8 prompt lengths."""
    n_pmt = [39, 196, 391, 978, 1251, 1955, 2503, 2933]
    score = [0.2684, 0.338, 0.3684, 0.4028, 0.4128, 0.4528, 0.492, 0.5164]
    return pd.DataFrame({"model": "meta-llama/Llama-2-7b-hf", "n_params": 6.74e9, "train_tokens": 2e12,
                         "n_ctx": 4096, "n_pmt": n_pmt, "task": "banking77", "score": score})


def test_few_residual_dof_and_empty_backtest_are_warned(tmp_path, capsys):
    """5 training rows for 4 free parameters (alpha fixed) leave 1 residual degree of freedom, and
    no task keeps enough rows for the backtest: both are warned, and the JSON says the drift was not
    learnt (backtest_rows 0, drift_reason)."""
    csv = tmp_path / "ctx.csv"
    _one_task_eight_prompts().to_csv(csv, index=False)
    rc = main(["context", "fit", "--csv", str(csv), "--n-col", "n_params", "--d-col", "train_tokens",
               "--task-col", "task", "--model-col", "model", "--no-fit-alpha", "--holdout", "n_pmt >= 1900",
               *FAST, "--json"])
    assert rc == 0
    res = json.loads(capsys.readouterr().out)  # its "warnings" are the Python warnings the command caught
    dof = [w for w in res["warnings"] if "degree(s) of freedom" in w]
    assert len(dof) == 1 and "[task 'banking77']: 5 training rows for 4 free parameters ['a', 'b', 'beta', " \
        "'log_scale'] leave 1 residual degree(s) of freedom, fewer than 5" in dof[0]
    assert "95 % upper confidence bound" in dof[0] and "--no-fit-scale" in dof[0] and "--no-fit-alpha" not in dof[0]
    empty = [w for w in res["warnings"] if "had no rows" in w]
    assert len(empty) == 1 and "task 'banking77' has 5 training rows in all" in empty[0] and "do not widen" in empty[0]
    assert res["backtest_rows"] == 0 and res["drift_per_decade"] == 0 and "backtest refit" in res["drift_reason"]
    assert res["tasks"][0]["backtest_rows"] == 0


def test_enough_rows_warn_no_dof_and_backtest_off_is_said():
    """30 rows per task: no degrees-of-freedom warning; a backtest turned off is named as such, not
    warned as one that had no rows."""
    from jaxscale import context_law as cl

    spec = cl.Spec(popsize=5, maxiter=30, restarts=1, polish=False)
    data = cl.from_frame(_base(), task_col="task")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit = cl.fit(jax.random.key(0), data, spec._replace(backtest_frac=0.0))
    said = [str(w.message) for w in caught]
    assert not [m for m in said if "degree(s) of freedom" in m or "had no rows" in m], said
    assert fit.drift_reason.startswith("the backtest is off (Spec.backtest_frac = 0")
