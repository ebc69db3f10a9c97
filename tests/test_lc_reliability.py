"""No silently wrong result from bad input, stale state or degenerate data (learning curves).

* the internal builder of the bundled tables (``learning_curves.data.from_frame``) and the
  contract ``from_frame`` / ``fit`` refuse codes that would collide, be clamped or be dropped;
* ``lc active --out-dir`` writes strict JSON and output paths are checked before any fit;
* degenerate training data is refused before fitting.
"""
import json
import warnings

import jax
import numpy as np
import pandas as pd
import pytest

from jaxscale import learning_curves as lc
from jaxscale.learning_curves import data as lcdata
from tests.helpers import lc_runs

COLS = dict(task_col="width", instance_col="depth", x_col="step", y_col="loss")
SPEC = lc.Spec(restarts=1, steps=5, n_h=2)


def _tidy():
    """A tidy bundled-style frame: 2 tasks x 3 replicates x 4 points (index = file lines 2..25)."""
    rows = []
    for d in range(2):
        for r in range(3):
            for p in range(4):
                rows.append(dict(d=d, r=r, point=p, x=float(p), value=3.0 - 0.1 * p + 0.2 * d + 0.05 * r))
    f = pd.DataFrame(rows)
    f.index = pd.RangeIndex(2, len(f) + 2)
    return f


# ----------------------------------------------------------------------------- item 1: the builders
def test_bundled_builder_accepts_a_clean_frame():
    out = lcdata.from_frame("t", _tidy(), ("a", "b"), ("x", "y", "z"))
    assert len(out.frame) == 24 and out.frame["curve"].nunique() == 6


@pytest.mark.parametrize("col,row,value,match", [
    ("r", 5, 3, r"'r'.*\b7\b.*0\.\.2"),          # replicate index out of range: collides with the next task's curve
    ("r", 5, -1, r"'r'.*\b7\b"),                  # negative
    ("d", 9, 2, r"'d'.*\b11\b.*0\.\.1"),          # task index beyond the labels
    ("d", 9, 0.5, r"'d'.*\b11\b.*integer"),       # non-integer, would be truncated
])
def test_bundled_builder_refuses_bad_indices(col, row, value, match):
    f = _tidy()
    f[col] = f[col].astype(float)
    f.loc[row + 2, col] = value  # row position -> file line (index starts at 2)
    with pytest.raises(ValueError, match=match):
        lcdata.from_frame("t", f, ("a", "b"), ("x", "y", "z"))


def test_bundled_builder_refuses_short_labels_duplicates_and_empty():
    f = _tidy()
    with pytest.raises(ValueError, match=r"'r'.*3 replicate label|replicate_labels"):
        lcdata.from_frame("t", f, ("a", "b"), ("x", "y"))  # too few labels: curve ids would collide
    with pytest.raises(ValueError, match=r"share the same.*\b2\b.*\b26\b"):
        dup = pd.concat([f, f.iloc[[0]]])
        dup.index = pd.RangeIndex(2, len(dup) + 2)
        lcdata.from_frame("t", dup, ("a", "b"), ("x", "y", "z"))
    with pytest.raises(ValueError, match="no rows"):
        lcdata.from_frame("t", f.iloc[:0], ("a", "b"), ("x", "y", "z"))
    with pytest.raises(ValueError, match="labels.*unique|duplicate label"):
        lcdata.from_frame("t", f, ("a", "a"), ("x", "y", "z"))


def test_contract_refuses_duplicate_vocabulary_and_bad_codes():
    df = lc_runs()
    with pytest.raises(ValueError, match="duplicate label"):
        lc.from_frame(df, **COLS, task_labels=("128", "128", "256", "512"))
    data = lc.from_frame(df, **COLS)
    bad = data.replace(task=np.where(np.arange(len(data)) == 3, 7, np.asarray(data.task)).astype(np.int32))
    with pytest.raises(ValueError, match=r"task code.*0\.\.2"):
        lc.fit(jax.random.key(0), bad, SPEC)
    neg = data.replace(instance=np.where(np.arange(len(data)) == 3, -1, np.asarray(data.instance)).astype(np.int32))
    with pytest.raises(ValueError, match=r"instance code"):
        lc.fit(jax.random.key(0), neg, SPEC)
    twice = data.rows(np.r_[np.arange(len(data)), 4])  # the same row twice: double-weighted
    with pytest.raises(ValueError, match="share the same"):
        lc.fit(jax.random.key(0), twice, SPEC)


# ----------------------------------------------------------------------------- item 3: degenerate data
def test_degenerate_training_data_is_refused_before_fitting():
    df = lc_runs()
    with pytest.raises(ValueError, match=r"'loss'.*constant"):
        lc.fit(jax.random.key(0), lc.from_frame(df.assign(loss=2.0), **COLS), SPEC)
    one = df.assign(loss=np.where(df["width"] == 256, 2.0, df["loss"]))
    with pytest.raises(ValueError, match=r"'loss'.*constant.*'width' = 256.*\b10\b"):
        lc.fit(jax.random.key(0), lc.from_frame(one, **COLS), SPEC)
    few = lc.from_frame(df.iloc[:6], **COLS)  # 6 points, magp has 4 + q + tasks hyper-parameters
    with pytest.raises(ValueError, match=r"6 training points.*at least"):
        lc.fit(jax.random.key(0), few, SPEC)
    desc = lc.from_frame(df.assign(lr=0.1), **COLS, descriptor_cols=["width", "lr"])
    with pytest.raises(ValueError, match=r"'lr'.*constant"):
        lc.fit(jax.random.key(0), desc, lc.Spec(model="magp_desc", restarts=1, steps=5, n_h=2))


def test_law_needs_two_curves_and_positive_loss():
    from jaxscale.learning_curves.law import table_law

    df = lc_runs()
    one = df[(df["width"] == 128) & (df["depth"] == 2)]
    one = pd.concat([one.assign(step=one["step"] * k) for k in (1, 3, 9)]).reset_index(drop=True)
    data = lc.from_frame(one, **COLS, params_col="params", tokens_per_step=1000)
    with pytest.raises(ValueError, match="at least 2 curves"):
        table_law(jax.random.key(0), data, (one["step"] > 1000).to_numpy(), SPEC)
    neg = lc.from_frame(df.assign(loss=df["loss"] - 2.7), **COLS, params_col="params", tokens_per_step=1000)
    with pytest.raises(ValueError, match=r"'loss'.*> 0"):
        table_law(jax.random.key(0), neg, (df["width"] == 512).to_numpy(), SPEC)
    # a loss that rises with the model size at every step: the fitted compute law rises too; warned
    up = df.assign(loss=2.0 + 0.05 * np.log(df["params"]) + 0.001 * np.log(df["step"]))
    data = lc.from_frame(up, **COLS, params_col="params", tokens_per_step=1000)
    with pytest.warns(UserWarning, match=r"fitted slope b1 = .* says the loss rises with compute"):
        out = table_law(jax.random.key(0), data, (df["width"] == 512).to_numpy(), SPEC, n_samples=200)[2]
    assert out["b1"]["mean"] > 0


def test_bundled_problem_refuses_constant_task():
    d = lcdata.from_frame("t", _tidy().assign(value=1.0), ("a", "b"), ("x", "y", "z"))
    split = lc.Split("s", (d.frame["r"] < 2).to_numpy(), (d.frame["r"] == 2).to_numpy())
    with pytest.raises(ValueError, match="constant"):
        lc.make_problem(d, split)


# ----------------------------------------------------------------------------- item 2: outputs
def test_active_json_is_strict(tmp_path):
    from jaxscale.learning_curves.active import ActiveTrace, summarize_traces, write_active

    # an AbC that never falls below the thresholds: the cost to reach them is undefined
    t = ActiveTrace("random", [("a", "b")], np.array([1.0, 2.0]), np.array([0.5, 0.4]), np.zeros(2),
                    np.array([0.5, 0.4]), np.zeros(2), np.zeros(2))
    out = write_active({"results": summarize_traces([t])}, tmp_path / "al")
    text = (tmp_path / "al" / "active.json").read_text()
    parsed = json.loads(text, parse_constant=lambda c: pytest.fail(f"non-JSON token {c}"))
    r = parsed["results"]["random"]["pf_to_abc_0.1"]
    assert r["mean"] is None and "never" in r["mean_reason"] and r["per_seed"] == [None]
    assert out["files"][0].endswith("active.json")


def _active_argv(csv, *extra):
    return ["lc", "active", "--csv", str(csv), "--task-col", "width", "--instance-col", "depth", "--x-col", "step",
            "--y-col", "loss", "--params-col", "params", "--tokens-per-step", "1000", "--holdout", "depth == 8",
            "--strategy", "smallest", "--seeds", "1", "--queries", "1", "--json", *extra]


def test_output_paths_checked_before_fitting(tmp_path, capsys, monkeypatch):
    from jaxscale.cli import main
    from jaxscale.learning_curves import active, pipeline

    def boom(*a, **k):
        raise AssertionError("the fit ran before the output paths were checked")

    monkeypatch.setattr(active, "table_active", boom)
    monkeypatch.setattr(pipeline, "evaluate_holdout", boom)
    monkeypatch.setattr(pipeline, "evaluate_model", boom)
    csv = tmp_path / "runs.csv"
    lc_runs().to_csv(csv, index=False)
    full = tmp_path / "full"
    full.mkdir()
    (full / "old.json").write_text("{}")
    afile = tmp_path / "afile.txt"
    afile.write_text("x")
    assert main(_active_argv(csv, "--out-dir", str(full))) == 2
    assert "--out-dir" in capsys.readouterr().err
    assert main(_active_argv(csv, "--out-dir", str(afile / "sub"))) == 2
    assert "--out-dir" in capsys.readouterr().err
    assert main(["lc", "evaluate", "--dataset", "nanogpt_large", "--split", "tri", "--plot",
                 str(afile / "x.png"), "--json"]) == 2
    assert "--plot" in capsys.readouterr().err
    assert main(["lc", "evaluate", "--csv", str(csv), "--task-col", "width", "--instance-col", "depth", "--x-col",
                 "step", "--y-col", "loss", "--holdout", "width == 512", "--plot", str(afile / "x.png"),
                 "--json"]) == 2
    assert "--plot" in capsys.readouterr().err


def test_a_killed_fit_resumes_from_its_checkpoint(tmp_path, capsys):
    """``lc.fit`` with ``Spec(ckpt_dir=...)`` (CLI ``--ckpt-dir``) checkpoints the restarts' Adam
    steps after every chunk; a fit killed after a chunk resumes there and ends with the numbers of
    an uninterrupted fit (and of ``fit_core``'s single program); another fit's folder is refused
    naming the setting, ``ckpt_force_new`` discards it; the bundled path has no checkpoints."""
    import importlib

    from jaxscale.cli import main
    from jaxscale.learning_curves import magp

    data = lc.from_frame(lc_runs(1), **COLS)
    spec = lc.Spec(model="magp", restarts=2, steps=120, n_h=2)
    ref = lc.fit(jax.random.key(3), data, spec)
    folder = tmp_path / "ckpt"
    whole = lc.fit(jax.random.key(3), data, spec._replace(ckpt_dir=str(folder)))
    # chunks: a divisor of the steps near 50, else 50 and one shorter last chunk (a prime count)
    assert [magp.chunk_length(s) for s in (600, 120, 37, 211, 1001)] == [50, 60, 37, 50, 77]
    steps = sorted(int(p.stem.split("_")[1]) for p in folder.glob("step_*.npz"))
    n = magp.chunk_length(120)
    assert steps == [120 - n, 120] and (folder / "fingerprint.json").is_file()
    (folder / f"step_{120:09d}.npz").unlink()  # killed after the last-but-one chunk
    resumed = lc.fit(jax.random.key(3), data, spec._replace(ckpt_dir=str(folder)))
    for a, b, c in zip(jax.tree.leaves(ref.params), jax.tree.leaves(whole.params), jax.tree.leaves(resumed.params)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
        np.testing.assert_array_equal(np.asarray(a), np.asarray(c))
    np.testing.assert_array_equal(np.asarray(ref.history), np.asarray(resumed.history))
    assert resumed.spec.ckpt_dir is None  # where it was checkpointed is not part of the model
    C = importlib.import_module("jaxscale.learning_curves.core")
    padded, w = C.pad_data(C._canonical(data), C.row_bucket(len(data)))
    core = jax.jit(lc.fit_core, static_argnames="spec")(jax.random.key(3), padded, spec, w)
    np.testing.assert_allclose(np.asarray(core.loss), np.asarray(ref.loss), rtol=1e-12)
    with pytest.raises(ValueError, match=r"another run \(differs in: spec \(learning_rate"):
        lc.fit(jax.random.key(3), data, spec._replace(ckpt_dir=str(folder), learning_rate=1e-2))
    with pytest.raises(ValueError, match=r"another run \(differs in: the PRNG key \(--seed\)\);"):
        lc.fit(jax.random.key(4), data, spec._replace(ckpt_dir=str(folder)))
    lc.fit(jax.random.key(3), data, spec._replace(ckpt_dir=str(folder), learning_rate=1e-2, ckpt_force_new=True))
    with pytest.raises(ValueError, match="dhgp"):
        lc.fit(jax.random.key(3), data, lc.Spec(model="dhgp", ckpt_dir=str(tmp_path / "d")))
    assert main(["lc", "evaluate", "--dataset", "nanogpt_large", "--split", "tri", "--ckpt-dir",
                 str(tmp_path / "b"), "--json"]) == 2
    assert "--ckpt-dir needs --csv" in capsys.readouterr().err
    # the user's own CSV: the second run resumes from the first one's checkpoints, same JSON metrics
    csv = tmp_path / "my_runs.csv"
    lc_runs(1).to_csv(csv, index=False)
    cli = ["lc", "evaluate", "--csv", str(csv), "--task-col", "width", "--instance-col", "depth", "--x-col", "step",
           "--y-col", "loss", "--holdout", "width >= 256 and depth == 8", "--restarts", "2", "--steps", "100",
           "--ckpt-dir", str(tmp_path / "cli"), "--json"]
    outs, stamps = [], []
    for _ in range(2):
        assert main(cli) == 0
        outs.append(json.loads(capsys.readouterr().out))
        stamps.append({p.name: p.stat().st_mtime_ns for p in (tmp_path / "cli").glob("step_*.npz")})
    assert stamps[0] == stamps[1]  # the second run resumed at the last step: no chunk ran, nothing rewritten
    assert outs[0]["rmse"] == outs[1]["rmse"] and outs[0]["coverage_90"] == outs[1]["coverage_90"]
    assert sorted(p.name for p in (tmp_path / "cli").iterdir()) == ["fingerprint.json", "step_000000050.npz",
                                                                    "step_000000100.npz"]


def test_a_gp_asked_past_its_own_curves_last_step_says_it_reverts_to_its_mean():
    """Steps beyond a curve's last trained step lie inside the training range of ln(step) when other
    curves ran longer, so the extrapolation distance stays 0; a GP without a law reverts towards
    its mean there, which is warned (not for magp_law, whose law carries the trend)."""
    df = lc_runs()
    short = df[~((df["width"] == 512) & (df["depth"] == 8) & (df["step"] > 160))]
    fit = lc.fit(jax.random.key(0), lc.from_frame(short, **COLS), SPEC)
    q = df[(df["width"] == 512) & (df["depth"] == 8) & (df["step"] > 160)].drop(columns="loss")
    with pytest.warns(UserWarning, match=r"2 of 2 query rows lie beyond their own curve's last trained step \(up to "
                                         r"16x it\): magp is a GP in ln\(step\) without a law"):
        pred = lc.predict(fit, q)
    assert np.all(np.asarray(pred.extrapolation) == 0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        lc.predict(fit, short.drop(columns="loss").iloc[:5])  # inside its own curve: quiet
