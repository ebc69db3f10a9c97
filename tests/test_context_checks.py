"""The context law's checks of what a user hands it: scores on the wrong scale, token columns in
thousands, missing columns, fitted parameters held at an end of their range, and queries further
past the context limit than any training row."""
import json
import warnings

import jax
import numpy as np
import pandas as pd
import pytest

from jaxscale import context_law as cl
from jaxscale.cli import main
from jaxscale.context_law.fit import bound_messages, params_at_bounds


def _said(fn, *args, **kw):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = fn(*args, **kw)
    return out, [str(w.message) for w in caught]


def _cells(n_ctx=(4096.0, 131072.0, 1048576.0), n_pmt=(4096.0, 16384.0, 65536.0, 131072.0)) -> pd.DataFrame:
    """One model per context limit (compute rising with it), every prompt length; scores in [0, 1]."""
    rows = [dict(model=f"m{i}", C=1e22 * 4 ** i, n_ctx=c, n_pmt=p, score=round(0.9 / (1 + p / c) * (1 - 0.01 * i), 3))
            for i, c in enumerate(n_ctx) for p in n_pmt]
    return pd.DataFrame(rows)


# --- scores on the wrong scale -----------------------------------------------------------------

def test_fractions_read_as_percent_are_warned():
    df = _cells()
    _, said = _said(cl.from_frame, df, score_scale=100)
    hit = [m for m in said if "at most 1" in m]
    assert len(hit) == 1, said
    assert "'score'" in hit[0] and f"largest {df['score'].max():g}" in hit[0] and f"{len(df)} rows" in hit[0]
    assert "Drop score_scale=100 (--score-scale 100)" in hit[0]
    _, said = _said(cl.from_frame, df.assign(score=df["score"] * 100), score_scale=100)  # percent: fine
    assert not [m for m in said if "at most 1" in m], said
    _, said = _said(cl.from_frame, df)  # fractions read as fractions: fine
    assert said == []


# --- token columns in thousands ----------------------------------------------------------------

def test_context_limit_in_thousands_is_caught_on_most_rows_not_the_largest():
    """A table in thousands of tokens with one 1M-context model: its largest limit (1024) is above
    256 tokens, the median (128) is not."""
    df = _cells(n_ctx=(4.0, 128.0, 128.0, 1024.0))
    _, said = _said(cl.from_frame, df)
    hit = [m for m in said if "'n_ctx'" in m]
    assert len(hit) == 1 and "median of 128" in hit[0] and "12 of 16 rows below 256" in hit[0], said
    assert "largest 1024" in hit[0] and "thousands of tokens" in hit[0] and "4k -> 4096" in hit[0]


def test_context_limit_in_thousands_with_mostly_long_limits_is_caught_by_the_prompt_ratio():
    """Limits of 512k and 1M tokens written as 512 and 1024 pass the median check; prompts of 4k-128k
    tokens are then 4-256 times the limit on most rows, which no real table has."""
    df = _cells(n_ctx=(512.0, 1024.0, 1024.0))
    _, said = _said(cl.from_frame, df)
    hit = [m for m in said if "different units" in m]
    assert len(hit) == 1, said
    assert "'n_pmt'" in hit[0] and "'n_ctx'" in hit[0] and "more than 16 times" in hit[0]
    assert not [m for m in said if "median of" in m]  # one warning for one mistake


def test_prompt_lengths_in_thousands_are_caught():
    df = _cells(n_pmt=(4.0, 16.0, 64.0, 128.0))
    _, said = _said(cl.from_frame, df)
    hit = [m for m in said if "'n_pmt'" in m and "median" in m]
    assert len(hit) == 1 and "thousands of tokens" in hit[0], said


def test_tokens_in_tokens_are_not_warned():
    """The synthetic cells and the three bundled tables (prompts from 25 tokens, limits from 4k, rows
    up to 31 times past the limit) raise no unit warning."""
    _, said = _said(cl.from_frame, _cells())
    assert said == []
    for source in cl.SOURCES:
        df = cl.load_source(source)
        df = df[df["n_pmt"].notna()]
        _, said = _said(cl.from_frame, df, c_col="C", task_col="task")
        assert not [m for m in said if "looks like" in m], (source, said)


# --- missing columns ---------------------------------------------------------------------------

def test_missing_columns_name_the_option_that_sets_each():
    df = _cells().rename(columns={"C": "flops", "n_pmt": "prompt_len", "n_ctx": "ctx_len", "score": "acc"})
    with pytest.raises(ValueError) as err:
        cl.from_frame(df)
    msg = str(err.value)
    assert "missing column(s) ['C', 'n_pmt', 'n_ctx', 'score']" in msg and "'prompt_len'" in msg  # present ones
    for option in ("--c-col NAME (c_col=...)", "--n-col and --d-col", "--n-pmt-col NAME (n_prompt_col=...)",
                   "--n-ctx-col NAME (n_ctx_col=...)", "--score-col NAME (score_col=...)"):
        assert option in msg, (option, msg)
    with pytest.raises(ValueError, match=r"missing column\(s\) \['D'\].*'D' \(training tokens\): --d-col NAME"):
        cl.from_frame(df.assign(N=1e9), n_col="N", d_col="D", n_prompt_col="prompt_len", n_ctx_col="ctx_len",
                      score_col="acc")
    data = cl.from_frame(df, c_col="flops", n_prompt_col="prompt_len", n_ctx_col="ctx_len", score_col="acc")
    assert len(data) == len(df)


def test_cli_missing_columns_name_the_flags(tmp_path, capsys):
    csv = tmp_path / "cells.csv"
    _cells().rename(columns={"n_pmt": "prompt_len"}).to_csv(csv, index=False)
    assert main(["context", "fit", "--csv", str(csv), "--json"]) == 2
    err = capsys.readouterr().err
    assert "missing column(s) ['n_pmt']" in err and "--n-pmt-col NAME" in err and "'prompt_len'" in err


# --- parameters at an end of their range -------------------------------------------------------

def test_params_at_bounds_tells_harmful_ends_from_harmless_ones():
    spec = cl.Spec(decay=True)  # a, alpha, b, beta, log_scale, gamma
    theta = np.array([[0.0, 0.5, 1.0, 1.0, 0.0, 0.3],                 # the widest cliff allowed
                      [0.0, 0.5, 1.0, 1.0, np.log(1e-3), 0.0],        # sharpest cliff, no decay: harmless
                      [10.0, 0.5, 1.0, 3.0, -2.0, 0.3]])               # a and beta at their upper ends
    hits = params_at_bounds(spec, theta)
    assert hits[0] == {"log_scale": {"end": "upper", "range": [np.log(1e-3), 0.0], "warned": True}}
    assert {k: (v["end"], v["warned"]) for k, v in hits[1].items()} == {"log_scale": ("lower", False),
                                                                      "gamma": ("lower", False)}
    assert set(hits[2]) == {"a", "beta"}
    msgs = bound_messages(spec, theta, "fit", ["t0", "t1", "t2"])
    assert len(msgs) == 3  # log_scale (t0), a (t2), beta (t2); t1's ends are harmless
    wide = [m for m in msgs if m.startswith("fit: log_scale")][0]
    assert "scale = 1" in wide and "upper end" in wide and "1 of 3 task(s) ['t0']" in wide and "--decay" in wide
    log_ratio = cl.Spec(penalty="log_ratio")
    kappa = params_at_bounds(log_ratio, [0.0, 0.5, 1.0, 1.0, np.log(200.0)])[0]["log_scale"]
    assert kappa["end"] == "upper" and not kappa["warned"]  # the sharpest cliff allowed
    assert bound_messages(log_ratio, [0.0, 0.5, 1.0, 1.0, 0.0], "fit")[0].count("as gradual as allowed") == 1


@pytest.fixture(scope="module")
def babilong():
    """Two BABILong tasks (qa4, qa5; 74 rows each), fitted with the default law and one DE run: their
    scores fall gradually with length, and the cliff's width ends at its upper bound in both."""
    df = cl.load_source("babilong")
    df = df[df["task"].isin(["qa4", "qa5"])].reset_index(drop=True)
    data = cl.from_frame(df, c_col="C", task_col="task")
    fit, said = _said(cl.fit, jax.random.key(0), data, cl.Spec(restarts=1))
    return df, fit, said


def test_cliff_width_at_its_bound_is_warned_and_reported(babilong):
    _, fit, said = babilong
    hit = [m for m in said if "log_scale" in m]
    assert len(hit) == 1, said
    assert "upper end of its allowed range [-6.91, 0]" in hit[0] and "2 of 2 task(s) ['qa4', 'qa5']" in hit[0]
    assert "as wide as allowed" in hit[0] and "--decay" in hit[0] and "--penalty log_ratio" in hit[0]
    for row in cl.task_summary(fit):
        assert row["params"]["scale"] == pytest.approx(1.0, abs=1e-3)
        assert row["at_bound"]["log_scale"]["end"] == "upper" and row["at_bound"]["log_scale"]["warned"]


def test_bundled_fit_reports_parameters_at_their_bounds(capsys):
    """``--dataset babilong`` (its preset, one DE run per fit): the JSON lists every in-distribution
    and extrapolation fit whose cliff width ends at its bound, and one warning names those fits."""
    rc = main(["context", "fit", "--dataset", "babilong", "--restarts", "1", "--json"])
    assert rc == 0
    res = json.loads(capsys.readouterr().out)
    wide = [t["task"] for t in res["tasks"] if "log_scale" in t["at_bound"]]
    wide_out = [t["task"] for t in res["tasks"] if "log_scale" in t["extrap_at_bound"]]
    assert wide, res["tasks"]
    hit = [m for m in res["warnings"] if m.startswith("babilong fit: log_scale")]
    assert len(hit) == 1 and f"{len(wide) + len(wide_out)} of 10 fit(s)" in hit[0], res["warnings"]
    assert all(f"'{t}'" in hit[0] for t in wide)


# --- queries past the context limit ------------------------------------------------------------

def test_queries_past_the_limit_beyond_the_training_rows_are_named(babilong):
    df, fit, _ = babilong
    ratio = (df["n_pmt"] / df["n_ctx"]).max()
    q = pd.DataFrame({"task": "qa4", "C": df["C"].iloc[0], "n_ctx": 4096.0,
                      "n_pmt": [2000.0, 8000.0, 4096.0 * 128]}, index=[10, 11, 12])
    pred, said = _said(cl.predict, fit, q)
    hit = [m for m in said if "longer than their model's context limit" in m]
    assert len(hit) == 1, said
    assert "1 of 3 queries" in hit[0] and "rows [12]" in hit[0] and "n_pmt / n_ctx = 128" in hit[0]
    assert ratio == 31.25 and "training rows of its task reach 31." in hit[0]
    assert float(pred.mean[2]) < 1e-6  # the law's cliff, unchanged
    _, said = _said(cl.predict, fit, df)  # the training rows, some up to 31x past their limit
    assert not [m for m in said if "context limit" in m], said
