"""End-to-end evaluation of one (dataset, split, model): fit, predict held-out curves, metrics, plot."""
from __future__ import annotations

import time
from pathlib import Path

import jax
import numpy as np

from jaxscale._log import get_logger
from jaxscale.learning_curves.evaluate import evaluate_prediction
from jaxscale.learning_curves.models import fit_model, predict_joint
from jaxscale.learning_curves.problem import LCProblem, make_problem

__all__ = ["evaluate_model", "MODEL_CHOICES"]

log = get_logger(__name__)
MODEL_CHOICES = ("magp", "dhgp", "magp_desc", "bnn", "bnn_orig")

def _fit_predict(key, problem: LCProblem, model: str, restarts: int, steps: int, learning_rate: float,
                 nuts_warmup: int = 300, nuts_samples: int = 300, pad_to: int | None = None):
    kf, kp = jax.random.split(key)
    if model.startswith("bnn"):
        from jaxscale.learning_curves.bnn import fit_predict_bnn

        return fit_predict_bnn(kf, problem, basis="orig" if model == "bnn_orig" else "lc", restarts=restarts,
                               num_warmup=nuts_warmup, num_samples=nuts_samples)
    fit = fit_model(kf, problem, model, restarts=restarts, steps=steps, learning_rate=learning_rate, pad_to=pad_to)
    t0 = time.perf_counter()
    pred = jax.block_until_ready(predict_joint(kp, fit, problem))
    return fit, pred, fit.fit_seconds, time.perf_counter() - t0


def evaluate_model(key, dataset: str = "nanogpt_large", split: str = "quad", model: str = "magp", *,
                   restarts: int = 10, steps: int = 2000, learning_rate: float = 1e-2, leaky: bool = False,
                   holdout=None, plot: str | Path | None = None, nuts_warmup: int = 300,
                   nuts_samples: int = 300, pad_to: int | None = None) -> dict:
    """Fit ``model`` on ``split`` of ``dataset``, predict the held-out curves, return metrics.

    Returns a JSON-ready dict: rmse / mae / nlpd as ``{part: {mean, std}}`` for full / partial
    (last 3) / last, fit_seconds (wall, incl. compile), predict_seconds, restart counts.
    Models: "magp", "dhgp", "magp_desc" (descriptor MaGP; nanoGPT datasets), "bnn" / "bnn_orig"
    (NUTS with ``nuts_warmup`` / ``nuts_samples`` per chain; chains = ``restarts``). ``pad_to``: pad
    the GP training set with inert points (shares compiled programs; see ``problem.pad_points``).
    """
    if model not in MODEL_CHOICES:
        raise ValueError(f"--model {model!r} is not one of {MODEL_CHOICES}")
    if restarts < 1 or steps < 1:
        raise ValueError(f"restarts ({restarts}) and steps ({steps}) must be >= 1")
    problem = make_problem(dataset, split, leaky=leaky, holdout=holdout)
    log.info("%s / %s / %s: %d training points, %d held-out points", dataset, problem.split.name, model,
             problem.train.x.shape[0], problem.test.x.shape[0])
    fit, pred, fit_s, pred_s = _fit_predict(key, problem, model, restarts, steps, learning_rate,
                                            nuts_warmup, nuts_samples, pad_to)
    ev = evaluate_prediction(problem, pred)
    ok = np.asarray(fit.result.ok)
    out = {
        "dataset": dataset, "split": problem.split.name, "model": model, "leaky": leaky,
        "restarts": int(restarts), "restarts_ok": int(ok.sum()),
        "excluded_restarts": np.flatnonzero(~ok).tolist(),
        "steps": int(steps) if model in ("magp", "magp_desc") else None,
        "n_train": int(problem.train.x.shape[0]), "n_test": int(problem.test.x.shape[0]),
        "n_heldout_curves": int(len(np.unique(np.asarray(problem.test.c)))),
        **ev["summary"],
        "per_restart_rmse_full": ev["per_restart"]["rmse"]["full"],
        "fit_seconds": float(fit_s), "predict_seconds": float(pred_s),
    }
    if plot:
        from jaxscale.learning_curves.plot import plot_heldout

        out["plot"] = str(plot_heldout(problem, pred, plot, title=f"{model} on {dataset} / {problem.split.name}"))
    return out
