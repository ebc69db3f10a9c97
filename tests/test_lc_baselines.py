"""Right on new data: naive baselines beside every held-out report, the extrapolation distance of
``predict``, and a clean headline run without any warning."""
import json
import warnings

import jax
import numpy as np
import pandas as pd
import pytest

from jaxscale import learning_curves as lc
from jaxscale.learning_curves.baselines import last_point_mask, naive_baselines, size_tables
from jaxscale.learning_curves.core import extrapolation_distance
from tests.helpers import lc_runs


def test_nearest_curve_and_size_trend_by_hand():
    """2 tasks (sizes ln 1, ln 2) x 3 instances (ln 1, ln 2, ln 4); curve (task 1, instance 2) held out.
    Loss = size-dependent constant, 3 steps: every number below is computed by hand."""
    rows = []
    for d, t in enumerate((1.0, 2.0)):
        for r, i in enumerate((1.0, 2.0, 4.0)):
            for x in (0.0, 1.0, 2.0):
                rows.append((d, r, x, 10.0 / (t * i) + 0.1 * (2.0 - x)))
    a = np.asarray(rows)
    held = (a[:, 0] == 1) & (a[:, 1] == 2)
    size_t, size_i, how = size_tables(a[:, 0], a[:, 1], 2, 3, task_labels=("1", "2"), instance_labels=("1", "2", "4"))
    assert how == "task axis: ln(task label); instance axis: ln(instance label)"
    np.testing.assert_allclose(size_i[1], np.log([1.0, 2.0, 4.0]))
    tr, te = a[~held], a[held]
    preds, info = naive_baselines((tr[:, 0], tr[:, 1], tr[:, 2], tr[:, 3]), (te[:, 0], te[:, 1], te[:, 2]),
                                  size_t, size_i)
    # nearest: same task, instance ln 2 (distance ln 2) beats same instance, task ln 1 (distance ln 2 + tie-break)
    np.testing.assert_allclose(preds["nearest_curve"], 10.0 / (2 * 2) + 0.1 * (2.0 - te[:, 2]))
    # trend in ln loss through the two largest training sizes on each axis, averaged over the axes:
    # same task: only instances ln 1, ln 2 -> extrapolate to ln 4; same instance: only task ln 1 -> no line
    l1 = np.log(10.0 / 2 + 0.1 * (2 - te[:, 2]))
    l2 = np.log(10.0 / 4 + 0.1 * (2 - te[:, 2]))
    np.testing.assert_allclose(preds["size_trend"], np.exp(l2 + (l2 - l1)))
    assert info["n_trend_fallback"] == 0 and info["n_nearest_any_curve"] == 0
    np.testing.assert_array_equal(last_point_mask(te[:, 0], te[:, 1], te[:, 2]), te[:, 2] == 2.0)


def test_labels_that_are_names_give_no_trend_and_sizes_with_suffixes_do():
    """Languages (or any names) have no size: the trend falls back to the nearest curve on every
    point instead of drawing a line through the labels' alphabetical positions; "125M"-style labels
    are sizes."""
    rows = [(d, r, x, 10.0 / (1 + d + 2 * r) + 0.1 * (2.0 - x))
            for d in range(3) for r in range(3) for x in (0.0, 1.0, 2.0)]
    a = np.asarray(rows)
    held = (a[:, 0] == 2) & (a[:, 1] == 2)
    names = {"task_labels": ("de", "en", "fr"), "instance_labels": ("id", "jv", "ta")}
    tr, te = a[~held], a[held]
    train, query = (tr[:, 0], tr[:, 1], tr[:, 2], tr[:, 3]), (te[:, 0], te[:, 1], te[:, 2])
    size_t, size_i, how = size_tables(a[:, 0], a[:, 1], 3, 3, **names)
    assert how == ("task axis: position of the task label in the vocabulary; instance axis: position of the "
                   "instance label in the vocabulary")
    tt, ti, trend_how = size_tables(a[:, 0], a[:, 1], 3, 3, **names, positions=False)
    assert trend_how == ("task axis: none (task labels are names, not sizes); instance axis: none (instance labels "
                         "are names, not sizes)") and np.isnan(tt).all() and np.isnan(ti).all()
    preds, info = naive_baselines(train, query, size_t, size_i, (tt, ti))
    np.testing.assert_array_equal(preds["size_trend"], preds["nearest_curve"])
    assert info["n_trend_fallback"] == 3
    old, _ = naive_baselines(train, query, size_t, size_i)  # a line through the positions
    assert not np.allclose(old["size_trend"], old["nearest_curve"])
    st, si, how = size_tables(a[:, 0], a[:, 1], 3, 3, task_labels=("125M", "1.3B", "7b"),
                              instance_labels=("1", "2", "4"))
    np.testing.assert_allclose(st[:, 0], np.log([125e6, 1.3e9, 7e9]))
    assert how.startswith("task axis: ln(task label)")


def test_continuation_uses_other_curves_covering_the_step():
    """Held-out tail of one curve: the nearest curve that covers the step is used; with none, the
    curve's own last value (flat)."""
    tr = (np.array([0, 0, 1, 1, 1]), np.array([0, 0, 0, 0, 0]), np.array([0.0, 1.0, 0.0, 1.0, 2.0]),
          np.array([5.0, 4.0, 6.0, 5.0, 4.5]))
    size_t = np.array([[0.0], [1.0]])
    size_i = np.zeros((2, 1))
    preds, _ = naive_baselines(tr, (np.array([0, 0]), np.array([0, 0]), np.array([2.0, 3.0])), size_t, size_i)
    # x = 2: task 1 (same instance) covers it; x = 3: no curve does, so the own curve's last value
    np.testing.assert_allclose(preds["nearest_curve"], [4.5, 4.0])


def test_extrapolation_distance_rules():
    # task 0 has instances 0 and 1, task 1 only instance 0; ln(step) from 0 to 2
    train = (np.array([0.0, 1.0, 2.0, 0.0, 1.0, 2.0]), np.array([0, 0, 0, 1, 1, 1]), np.array([0, 1, 0, 0, 0, 0]))
    q = (np.array([1.0, 4.0, 1.0, 1.0, 1.0]), np.array([0, 0, 2, 1, 1]), np.array([1, 1, 0, 2, 1]))
    sizes = np.log([8.0, 16.0, 64.0])
    d = extrapolation_distance(train, q, "magp", n_inst=3, instance_sizes=sizes)
    # inside; one ln-step range beyond the last step; a task without runs (prior: inf); an instance
    # without runs (ln 64 lies 2 ranges of ln 8..16 beyond: max(1, 2)); an untrained curve of a known
    # task and a known instance (the zero-shot case): inside
    np.testing.assert_allclose(d, [0.0, 1.0, np.inf, 2.0, 0.0])
    dd = extrapolation_distance(train, q, "dhgp", n_inst=3, instance_sizes=sizes)
    np.testing.assert_allclose(dd, [0.0, 1.0, np.inf, 2.0, 1.0])  # dhgp shares no instance across tasks
    desc_tr = np.log(np.array([[1.0], [1.0], [1.0], [2.0], [2.0], [2.0]]))
    desc_q = np.log(np.array([[1.0], [1.0], [8.0], [2.0], [2.0]]))
    dm = extrapolation_distance(train, q, "magp_desc", n_inst=3, desc_train=desc_tr, desc_query=desc_q,
                                has_task_descriptor=True)
    np.testing.assert_allclose(dm, [0.0, 1.0, 2.0, 0.0, 0.0])  # ln 8 lies 2 ranges of ln 1..2 beyond


def test_predict_fills_extrapolation_and_warns_once():
    df = lc_runs(params=False)
    cols = dict(task_col="width", instance_col="depth", x_col="step", y_col="loss")
    data = lc.from_frame(df, **cols)
    held = (df["width"] == 512).to_numpy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a short fit is not converged
        f = lc.fit(jax.random.key(0), data.rows(~held), lc.Spec(restarts=1, steps=40, n_h=2))
    inside = lc.predict(f, df.loc[~held, ["width", "depth", "step"]].iloc[:3])
    np.testing.assert_array_equal(inside.extrapolation, 0.0)
    with pytest.warns(UserWarning, match=r"1 row\(s\) of 1 task\(s\) \['512'\] with no training run") as rec:
        far = lc.predict(f, pd.DataFrame({"width": [128, 512], "depth": [2, 2], "step": [2560 * 16, 10]}))
    assert len([r for r in rec if "outside the training data" in str(r.message)]) == 1
    np.testing.assert_allclose(far.extrapolation, [np.log(16) / np.log(256), np.inf])
    frame = far.to_frame(pd.DataFrame({"width": [128, 512]}))
    assert list(frame.columns)[-1] == "extrapolation"


@pytest.mark.slow
def test_clean_headline_run_warns_nothing(capsys):
    """``lc evaluate --dataset nanogpt_large --split tri --json`` with the default model, learning
    rate schedule and Adam steps (600), 2 restarts (the default is 10): no warning of any kind,
    converged, no held-out point outside the training data, and the model beats both naive baselines."""
    from jaxscale.cli import main

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rc = main(["lc", "evaluate", "--dataset", "nanogpt_large", "--split", "tri", "--restarts", "2", "--json"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert out["converged"] is True and out["extrapolation"]["n_outside"] == 0
    b = out["baselines"]
    assert b["model_loses_to"] == [] and b["model_loses_to_last"] == []
    assert b["model"]["mae"] < min(b["nearest_curve"]["mae"], b["size_trend"]["mae"])
    assert b["model"]["last"]["mae"] < min(b["nearest_curve"]["last"]["mae"], b["size_trend"]["last"]["mae"])


def test_a_model_that_loses_only_on_the_final_points_is_named_and_warned():
    from types import SimpleNamespace

    from jaxscale.cli.lc import baseline_report
    from jaxscale.infer import Prediction

    y = np.ones(4)
    model = Prediction(np.array([1.0, 1.0, 1.0, 1.5]), np.full(4, 0.5), np.full(4, 2.0))
    details = SimpleNamespace(y=y, prediction=model, last=np.array([False, False, False, True]), info={},
                              baselines={"size_trend": np.array([1.2, 1.2, 1.2, 1.0])})
    with pytest.warns(UserWarning,
                      match=r"final point .* model's MAE \(0.5\) is worse than .*size_trend \(0, 100 % lower\)"):
        out = baseline_report(details, "magp", 0.9)
    assert out["model_loses_to"] == [] and out["model_loses_to_last"] == ["size_trend"]
