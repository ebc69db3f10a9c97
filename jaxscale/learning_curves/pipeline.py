"""End-to-end evaluation: fit, predict held-out curves, metrics (and a plot).

* :func:`evaluate_holdout`: any :class:`~jaxscale.learning_curves.frame.Data` (your own table) and a
  mask of held-out rows, through the contract (``fit`` on the other rows, ``predict`` the held-out).
* :func:`evaluate_model`: a bundled dataset and one of the paper's splits (the paper protocol).

Both report RMSE / MAE / NLPD (full, partial = last 3, last point of every held-out curve;
mean ± std over restarts) and the coverage of the 50 % and 90 % intervals (full, last).
"""
from __future__ import annotations

import time
import warnings
from pathlib import Path
from typing import NamedTuple

import jax
import numpy as np

from jaxscale._log import get_logger
from jaxscale.learning_curves.baselines import data_baselines, last_point_mask, problem_baselines
from jaxscale.learning_curves.core import (
    Spec,
    _numeric_labels,
    extrapolation,
    extrapolation_distance,
    extrapolation_summary,
    fit,
    fit_report,
    prediction_from_joint,
    prediction_from_marginals,
    restart_marginals,
    warn_extrapolation_of,
)
from jaxscale.learning_curves.diagnostics import adam_report, lbfgs_report, warn_report
from jaxscale.learning_curves.evaluate import evaluate_prediction, marginal_metrics
from jaxscale.learning_curves.frame import Data, curve_ids
from jaxscale.learning_curves.models import fit_model, predict_joint
from jaxscale.learning_curves.problem import LCProblem, make_problem
from jaxscale.learning_curves.spec import DESC_MODELS, MODEL_CHOICES

__all__ = ["evaluate_model", "evaluate_holdout", "heldout_details", "HeldoutDetails", "MODEL_CHOICES",
           "problem_fit_report", "problem_extrapolation"]

log = get_logger(__name__)


def _fit_predict(key, problem: LCProblem, model: str, restarts: int, steps: int, learning_rate: float,
                 nuts_warmup: int = 300, nuts_samples: int = 300, pad_to: int | None = None, lr_decay: bool = True):
    kf, kp = jax.random.split(key)
    if model.startswith("bnn"):
        from jaxscale.learning_curves.bnn import fit_predict_bnn

        return fit_predict_bnn(kf, problem, basis="orig" if model == "bnn_orig" else "lc", restarts=restarts,
                               num_warmup=nuts_warmup, num_samples=nuts_samples)
    fit_ = fit_model(kf, problem, model, restarts=restarts, steps=steps, learning_rate=learning_rate, pad_to=pad_to,
                     lr_decay=lr_decay)
    t0 = time.perf_counter()
    pred = jax.block_until_ready(predict_joint(kp, fit_, problem))
    return fit_, pred, fit_.fit_seconds, time.perf_counter() - t0


class HeldoutDetails(NamedTuple):
    """What a held-out report scores: the truth, the model's prediction and the naive baselines.

    Attributes:
      y: ``(M,)`` true values of the held-out rows.
      prediction: the model's :class:`jaxscale.Prediction` of those rows (restart mixture).
      baselines: ``name -> (M,)`` point predictions of the baselines (:mod:`.baselines`).
      info: how the baselines measured size, and their fallback counts.
      last: ``(M,)`` the final held-out point of every held-out curve.
    """

    y: np.ndarray
    prediction: object
    baselines: dict
    info: dict
    last: np.ndarray


def heldout_details(data: Data, held, prediction) -> HeldoutDetails:
    """The baselines of the held-out rows of your own table, beside the model's ``prediction``."""
    held = np.asarray(held, bool)
    train, test = data.rows(~held), data.rows(held)
    preds, info = data_baselines(train, test, full=data)
    return HeldoutDetails(np.asarray(test.y, float), prediction, preds, info,
                          last_point_mask(test.task, test.instance, test.x))


def _conv_block(report: dict) -> dict:
    return {"converged": report["converged"], "convergence": report}


def problem_fit_report(fit_) -> dict:
    """``{converged, reason, ...}`` of a bundled fit (:class:`~.models.LCFit`): Adam, L-BFGS or NUTS."""
    res = fit_.result
    if fit_.model in ("magp", *DESC_MODELS):
        return adam_report(res.history, res.ok, int(np.shape(res.history)[1]), fit_.model)
    if fit_.model == "dhgp":
        return lbfgs_report(res.converged, res.ok, 1000, "dhgp")
    diag = getattr(res, "diagnostics", None) or {}
    return {k: v for k, v in diag.items() if k != "warnings"} or {"converged": None, "reason": "not measured"}


def problem_extrapolation(problem: LCProblem, model: str) -> np.ndarray:
    """``(M,)`` distance of the held-out points of a bundled problem outside its training data
    (as :func:`.core.extrapolation`; ``magp_desc`` reads the ln sizes of the nanoGPT tables)."""
    tr, te = problem.train, problem.test
    f = problem.data.frame
    desc_tr = desc_q = None
    if model in DESC_MODELS and {"n_embd", "n_layer"} <= set(f.columns):
        sizes = np.log(f[["n_embd", "n_layer"]].to_numpy(float))
        desc_tr, desc_q = sizes[problem.split.train], sizes[problem.split.test]
    return extrapolation_distance((tr.x, tr.d, tr.r), (te.x, te.d, te.r), model, n_inst=problem.n_reps,
                                  instance_sizes=_numeric_labels(problem.data.replicate_labels),
                                  desc_train=desc_tr, desc_query=desc_q, has_task_descriptor=desc_tr is not None)


def _metric_block(ev: dict) -> dict:
    return {**ev["summary"], **ev["coverage"], "per_restart_rmse_full": ev["per_restart"]["rmse"]["full"]}


def evaluate_model(key, dataset="nanogpt_large", split="quad", model: str = "magp", *,
                   restarts: int = 10, steps: int = 600, learning_rate: float = 5e-2, leaky: bool = False,
                   holdout=None, plot: str | Path | None = None, nuts_warmup: int = 300,
                   nuts_samples: int = 300, pad_to: int | None = None, details: bool = False, lr_decay: bool = True):
    """Fit ``model`` on ``split`` of a bundled ``dataset``, predict the held-out curves, return metrics.

    ``dataset`` is a bundled name or an ``LCData``; ``split`` a split name or a ``Split`` (row masks).
    Returns a JSON-ready dict: rmse / mae / nlpd as ``{part: {mean, std}}`` for full / partial
    (last 3) / last, coverage_50 / coverage_90 as ``{full, last}``, fit_seconds (wall, incl.
    compile), predict_seconds, restart counts.
    Models: "magp", "dhgp", "magp_desc" (descriptor MaGP; nanoGPT datasets), "magp_law" (the
    law-informed descriptor MaGP, :mod:`.law_gp`; nanoGPT datasets), "bnn" / "bnn_orig"
    (NUTS with ``nuts_warmup`` / ``nuts_samples`` per chain; chains = ``restarts``). ``holdout``: the
    index held out by the ``leave_embd`` / ``leave_layer`` splits. ``pad_to``: pad the GP training
    set with inert points (shares compiled programs; see ``problem.pad_points``). Adam: ``steps`` steps
    at the peak ``learning_rate`` of :func:`~.magp.lr_schedule` (``lr_decay=False``: constant).

    The dict also carries the optimiser's ``converged`` and ``convergence`` (Adam / L-BFGS /
    NUTS diagnostics, warned when they fail) and ``extrapolation`` (how far the held-out points lie
    outside the training data, :func:`problem_extrapolation`; warned once). With ``details=True``
    the return value is ``(dict, HeldoutDetails)``: the truth, the restart-mixture prediction and
    the naive baselines of the held-out points, for a baseline comparison.
    """
    if model not in MODEL_CHOICES:
        raise ValueError(f"--model {model!r} is not one of {MODEL_CHOICES}")
    if restarts < 1 or steps < 1:
        raise ValueError(f"restarts ({restarts}) and steps ({steps}) must be >= 1")
    problem = make_problem(dataset, split, leaky=leaky, holdout=holdout)
    name = problem.data.name
    log.info("%s / %s / %s: %d training points, %d held-out points", name, problem.split.name, model,
             problem.train.x.shape[0], problem.test.x.shape[0])
    fit_, pred, fit_s, pred_s = _fit_predict(key, problem, model, restarts, steps, learning_rate,
                                             nuts_warmup, nuts_samples, pad_to, lr_decay)
    ev = evaluate_prediction(problem, pred)
    report = problem_fit_report(fit_)
    if model in ("magp", "dhgp", *DESC_MODELS):
        warn_report(report)
    dist = problem_extrapolation(problem, model)
    ok = np.asarray(fit_.result.ok)
    out = {
        "dataset": name, "split": problem.split.name, "model": model, "leaky": leaky,
        "restarts": int(restarts), "restarts_ok": int(ok.sum()),
        "excluded_restarts": np.flatnonzero(~ok).tolist(),
        "steps": int(steps) if model in ("magp", *DESC_MODELS) else None,
        "n_train": int(problem.train.x.shape[0]), "n_test": int(problem.test.x.shape[0]),
        "n_heldout_curves": int(len(np.unique(np.asarray(problem.test.c)))),
        **_metric_block(ev), **_conv_block(report), "extrapolation": extrapolation_summary(dist),
        "fit_seconds": float(fit_s), "predict_seconds": float(pred_s),
    }
    if np.any(dist > 0):
        from jaxscale.infer.prediction import warn_extrapolation

        from jaxscale.learning_curves.core import EXTRAPOLATION_UNIT

        inf = np.isinf(dist)
        what = f"{model} on {name} / {problem.split.name}"
        if inf.any():
            tasks = sorted({problem.data.task_labels[int(t)] for t in np.asarray(problem.test.d)[inf]})
            what += (f" ({int(inf.sum())} held-out point(s) of task(s) {tasks[:5]} with no training run: predicted "
                     "from the prior, distance inf)")
        warn_extrapolation(what, dist, EXTRAPOLATION_UNIT, stacklevel=2)
    if out["steps"] is None:
        out["steps_reason"] = f"{model} is not fitted by Adam steps"
    if plot:
        from jaxscale.learning_curves.plot import plot_heldout

        out["plot"] = str(plot_heldout(problem, pred, plot, title=f"{model} on {name} / {problem.split.name}"))
    if not details:
        return out
    prediction = prediction_from_joint(pred, level=0.9)._replace(extrapolation=dist)
    preds, info = problem_baselines(problem)
    te = problem.test
    return out, HeldoutDetails(np.asarray(problem.y_test, float), prediction, preds, info,
                               last_point_mask(te.d, te.r, te.x))


def _warn_unseen_tasks(data: Data, held, spec: Spec) -> None:
    """Before the fit: held-out tasks without a training row, for a model without descriptors, can
    only be predicted from the prior over their latent (the fit would take minutes to say so)."""
    if spec.model in DESC_MODELS:
        return
    unseen = sorted(set(np.asarray(data.task)[held].tolist()) - set(np.asarray(data.task)[~held].tolist()))
    if not unseen:
        return
    names = [data.task_labels[int(t)] for t in unseen]
    n_rows = int(np.isin(np.asarray(data.task)[held], unseen).sum())
    warnings.warn(f"{spec.model} (held-out rows): {len(unseen)} held-out task(s) ({', '.join(names[:5])}"
                  f"{', ...' if len(names) > 5 else ''}; {n_rows} rows) have no training row, so {spec.model} has "
                  "nothing but its prior to predict them from: the mean of the training tasks' curves, with an "
                  "interval that is not calibrated there. To predict a new size from what sets it, give its "
                  "descriptors: --model magp_law --descriptor-cols COLS (Spec(model='magp_law'), from_frame(..., "
                  "descriptor_cols=[...])), e.g. the parameter count", RuntimeWarning, stacklevel=3)


def evaluate_holdout(key, data: Data, held, spec: Spec = Spec(), *, level: float = 0.9):
    """Fit on the rows not in ``held``, predict the held-out rows, score them.

    Args:
      key: PRNG key (fit restarts; the prediction itself is deterministic).
      data: every row (training and held-out), e.g. ``from_frame(read_table(path), ...)``.
      held: ``(n,)`` boolean mask of held-out rows. Those with a finite target are scored; those
        without one (runs not trained yet, or configurations to compare) are predicted only.
      spec: the model :class:`Spec`.
      level: interval level of the returned :class:`jaxscale.Prediction`.

    Returns:
      ``(fit, prediction of the held-out rows, metrics dict)``; the prediction carries
      ``extrapolation`` (warned once when a row lies outside the training data) and the dict the
      optimiser's ``converged`` / ``convergence`` and an ``extrapolation`` summary. Score the
      naive baselines beside it with :func:`heldout_details`.
    """
    held = np.asarray(held, bool)
    if held.shape != (len(data),):
        raise ValueError(f"held must be a boolean mask of the {len(data)} rows, got shape {held.shape}")
    if not held.any():
        raise ValueError("no row is held out: nothing would be scored; give a hold-out expression")
    test = data.rows(held)
    y = np.asarray(test.y, float)
    scored = np.isfinite(y)
    _warn_unseen_tasks(data, held, spec)
    t0 = time.perf_counter()
    fitted = fit(key, data.rows(~held), spec)
    jax.block_until_ready(fitted.params)
    fit_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    mean, sd = restart_marginals(fitted, test, what=f"{spec.model} (held-out rows)")
    dist = extrapolation(fitted, test)
    warn_extrapolation_of(fitted, test, dist, what=f"{spec.model} (held-out rows)")
    pred = prediction_from_marginals(mean, sd, level)._replace(extrapolation=dist)
    pred_s = time.perf_counter() - t0
    curve = curve_ids(test)
    if scored.any():
        keep = np.flatnonzero(scored)
        metrics = _metric_block(marginal_metrics(y[keep], mean[:, keep], sd[:, keep] ** 2, curve[keep],
                                                 np.asarray(test.x)[keep]))
    else:
        metrics = {"metrics": None, "metrics_reason": "no held-out row has a loss (runs not trained yet): the rows "
                                                      "are predicted, and nothing is scored"}
    ok = np.asarray(fitted.ok)
    train_tasks = set(np.asarray(data.rows(~held).task).tolist())
    out = {
        "model": spec.model, "restarts": int(spec.restarts), "restarts_ok": int(ok.sum()),
        "excluded_restarts": np.flatnonzero(~ok).tolist(),
        "steps": int(spec.steps) if spec.model != "dhgp" else None,
        "n_train": int((~held).sum()), "n_test": int(held.sum()), "n_missing_truth": int((~scored).sum()),
        "n_heldout_curves": int(len(np.unique(curve))),
        "n_heldout_tasks_without_training_rows": int(len(set(np.asarray(test.task).tolist()) - train_tasks)),
        **metrics, **_conv_block(fit_report(fitted)), "extrapolation": extrapolation_summary(dist),
        "fit_seconds": float(fit_s), "predict_seconds": float(pred_s),
    }
    if out["steps"] is None:
        out["steps_reason"] = "dhgp is fitted by L-BFGS, not Adam steps"
    if 0 < out["n_missing_truth"] < len(y):
        out["scored_rows"] = (f"the {int(scored.sum())} held-out rows with a loss; the {out['n_missing_truth']} "
                              "without one (runs not trained yet) are predicted, not scored")
    return fitted, pred, out
