"""Held-out prediction of whole learning curves.

:func:`predict_heldout` fits a curve model on every curve except the held-out labels and returns the
joint predictive of the held-out curves in original loss units: the input of the probabilistic
scaling law (:mod:`.psl`) and of active learning (:mod:`.active`).
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from jaxscale.learning_curves.spec import MODELS, SPLITS
from jaxscale.metrics import ABC_RANGE_DEFAULT

__all__ = ["SPLITS", "HeldoutPrediction", "split_heldout", "predict_heldout", "heldout_problem", "frame_labels",
           "bundled_law", "baseline_laws"]


class HeldoutPrediction(NamedTuple):
    """A fitted model's predictions of held-out curves (original loss units, curve-major)."""

    held_labels: tuple
    restart_means: np.ndarray  # (restarts, K_held, P)
    mean: np.ndarray  # (M,) or (S, M) joint predictive mean(s), M = K_held * P
    cov: np.ndarray  # (M, M) or (S, M, M)
    fit_seconds: float
    warm: object = None
    noise_var: np.ndarray | None = None  # (S, M) observation noise variance per restart
    convergence: dict | None = None  # the optimiser's report (see learning_curves.diagnostics)


def split_heldout(split: str) -> tuple:
    """Held-out (n_embd, n_layer) curves of a named nanoGPT-large split."""
    key = split.lower()
    if key not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of {sorted(SPLITS)}")
    return SPLITS[key]


def heldout_problem(dataset: str, held_labels, name: str, leaky: bool = False):
    """The bundled problem holding out whole curves given as (n_embd, n_layer); ``leaky=True`` uses the
    original's z-score constants over all curves of a task (held-out curves leak in)."""
    from jaxscale.learning_curves.data import load_lc
    from jaxscale.learning_curves.problem import make_problem as lc_make_problem
    from jaxscale.learning_curves.splits import curve_mask_split

    data = load_lc(dataset)
    f = data.frame
    pairs = {}
    for e, l, d, r in zip(f["n_embd"], f["n_layer"], f["d"], f["r"]):
        pairs[(int(e), int(l))] = (int(d), int(r))
    missing = [h for h in held_labels if tuple(h) not in pairs]
    if missing:
        raise ValueError(f"curves {missing} are not in dataset {dataset!r}")
    split = curve_mask_split(data, name, {pairs[tuple(h)] for h in held_labels})
    return lc_make_problem(data, split, leaky=leaky)


def frame_labels(frame):
    """(n_embd, n_layer) of each curve in frame order, and the points per curve."""
    lab = list(zip(frame["n_embd"].astype(int), frame["n_layer"].astype(int)))
    order = list(dict.fromkeys(lab))
    counts = {o: lab.count(o) for o in order}
    P = counts[order[0]]
    if any(c != P for c in counts.values()) or lab != [o for o in order for _ in range(P)]:
        raise ValueError("held-out rows are not whole curves in curve-major order; cannot reshape to (curves, points)")
    return tuple(order), P


def predict_heldout(key, dataset: str, held_labels, model: str = "magp", restarts: int = 10, steps: int = 600,
                    warm=None, n_h: int = 32, leaky: bool = False, learning_rate: float = 5e-2,
                    lr_decay: bool = True) -> HeldoutPrediction:
    """Fit ``model`` on every curve except ``held_labels`` and predict the held-out curves jointly.

    Uses the curve-model API (``models.fit_model`` / ``models.predict_joint``; leak-free z-scoring). The
    joint predictive is an equal-weight mixture over the finite restarts, each the q(h)-integrated
    moment-matched Gaussian of the latent curves (no observation noise) in original units.
    """
    import jax

    from jaxscale.learning_curves.models import fit_model, predict_joint

    from jaxscale.learning_curves.diagnostics import warn_report
    from jaxscale.learning_curves.pipeline import problem_fit_report

    problem = heldout_problem(dataset, held_labels, "psl", leaky=leaky)
    k_fit, k_pred = jax.random.split(key)
    fit = fit_model(k_fit, problem, model, restarts=restarts, steps=steps, learning_rate=learning_rate,
                    lr_decay=lr_decay)
    report = problem_fit_report(fit)
    warn_report(report)
    pred = predict_joint(k_pred, fit, problem, n_h=n_h)
    labels, P = frame_labels(problem.data.frame.loc[problem.split.test])
    mean = np.asarray(pred.mean, dtype=np.float64)
    cov = np.asarray(pred.cov, dtype=np.float64)
    return HeldoutPrediction(labels, mean.reshape(mean.shape[0], len(labels), P), mean, cov, fit.fit_seconds,
                             noise_var=np.asarray(pred.noise_var, np.float64), convergence=report)


def baseline_laws(problem, preds: dict, shape, b1_band=None) -> dict:
    """``{name: {b1, b0, abc}}``: the law (and its AbC) of the frontier with the held-out curves
    replaced by each naive baseline's prediction (``preds``: name -> held-out points, curve-major,
    reshaped to ``shape`` = (curves, points)); values <= 0 are floored at 1e-3 x the smallest
    observed loss, as the model's draws are. With ``b1_band = (lo, hi)`` (the model's band of b1)
    each entry also says ``b1_in_model_band``."""
    from jaxscale.learning_curves.psl import restart_law

    floor = 1e-3 * float(np.min(np.asarray(problem.observed)))
    out = {}
    for name, b in preds.items():
        r = restart_law(problem, np.maximum(np.asarray(b, np.float64).reshape((1, *shape)), floor))
        out[name] = {"b1": float(r.law.b1[0]), "b0": float(r.law.b0[0]), "abc": float(r.abc[0])}
        if b1_band is not None:
            out[name]["b1_in_model_band"] = bool(b1_band[0] <= out[name]["b1"] <= b1_band[1])
    return out


def bundled_law(key, dataset: str = "nanogpt_large", split: str = "tri", *, model: str = "magp", restarts: int = 10,
                steps: int = 600, leaky: bool = False, rule: str = "interp", n_samples: int = 1000,
                tokens_per_step: float | None = None, level: float = 0.9, details: bool = False,
                learning_rate: float = 5e-2, lr_decay: bool = True):
    """The paper's probabilistic law on a bundled nanoGPT grid: fit on the split's training curves,
    draw ``n_samples`` joint samples of the held-out curves, one law per draw and one per restart's
    mean, AbC against the law of the true curves. ``rule="both"`` adds the nearest-C rule. Each rule's
    ``baseline_laws`` holds the law and AbC of the true curves with the held-out ones replaced by each
    naive baseline (``nearest_curve``, ``size_trend``): the sceptic's law beside the model's.

    The dict carries the optimiser's ``converged`` / ``convergence``. With ``details=True`` the
    return value is ``(dict, HeldoutDetails)``: truth, restart-mixture prediction and naive
    baselines of the held-out points (:func:`.pipeline.heldout_details` for bundled problems)."""
    import time

    import jax

    from jaxscale.learning_curves.baselines import BASELINE_LAWS_NOTE, problem_baselines
    from jaxscale.learning_curves.compute import TOKENS_PER_STEP, load_nanogpt_curves
    from jaxscale.learning_curves.law import abc_range_info
    from jaxscale.learning_curves.psl import make_problem, probabilistic_law, restart_law, summarize

    if model not in MODELS:
        raise ValueError(f"the bundled law supports the curve models {MODELS}, got {model!r}")
    if n_samples < 1:
        raise ValueError(f"n_samples must be >= 1, got {n_samples}")
    held = split_heldout(split)
    tps = TOKENS_PER_STEP if tokens_per_step is None else tokens_per_step
    labels, L, C = load_nanogpt_curves(dataset, tokens_per_step=tps).flat()
    k_fit, k_draw = jax.random.split(key)
    pred = predict_heldout(k_fit, dataset, held, model=model, restarts=restarts, steps=steps, leaky=leaky,
                           learning_rate=learning_rate, lr_decay=lr_decay)
    out = {"dataset": dataset, "split": split, "model": model, "rule": rule, "leaky": leaky,
           "restarts": restarts, "steps": steps, "fit_seconds": pred.fit_seconds,
           "converged": pred.convergence["converged"], "convergence": pred.convergence,
           "abc_range": abc_range_info(*ABC_RANGE_DEFAULT, "the paper's range")}
    t0 = time.perf_counter()
    lc_problem = heldout_problem(dataset, held, "psl", leaky=leaky)  # the naive baselines' rows (and details)
    base, base_info = problem_baselines(lc_problem)
    for r in ([rule] if rule != "both" else ["interp", "nearest"]):
        problem = make_problem(labels, L, C, pred.held_labels, rule=r)
        s = summarize(probabilistic_law(k_draw, problem, pred.mean, pred.cov, n_samples=n_samples), problem.gt,
                      level=level)
        m = summarize(restart_law(problem, pred.restart_means), problem.gt, level=level)
        block = {k: s[k] for k in ("b1", "b0", "abc", "abc_of_mean_law", "gt", "gt_in_band_b1", "gt_in_band_b0",
                                   "n_samples")}
        block["restart_means"] = {k: m[k] for k in ("b1", "b0", "abc", "abc_of_mean_law", "gt_in_band_b1")}
        laws = baseline_laws(problem, base, pred.restart_means.shape[1:], b1_band=(s["b1"]["lo"], s["b1"]["hi"]))
        block["baseline_laws"] = {**laws, "size": base_info["size"], "note": BASELINE_LAWS_NOTE}
        if r == rule or (rule == "both" and r == "interp"):
            out.update(block)
        else:
            out[r] = block
    out["psl_seconds"] = time.perf_counter() - t0
    if not details:
        return out
    from jaxscale.learning_curves.baselines import last_point_mask
    from jaxscale.learning_curves.core import prediction_from_joint
    from jaxscale.learning_curves.magp_predict import JointPrediction
    from jaxscale.learning_curves.pipeline import HeldoutDetails

    prediction = prediction_from_joint(JointPrediction(pred.mean, pred.cov, pred.noise_var), level=level)
    te = lc_problem.test
    return out, HeldoutDetails(np.asarray(lc_problem.y_test, float), prediction, base, base_info,
                               last_point_mask(te.d, te.r, te.x))
