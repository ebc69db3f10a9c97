"""Held-out prediction of whole learning curves.

:func:`predict_heldout` fits a curve model on every curve except the held-out labels and returns the
joint predictive of the held-out curves in original loss units: the input of the probabilistic
scaling law (:mod:`.psl`) and of active learning (:mod:`.active`).
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

__all__ = ["SPLITS", "HeldoutPrediction", "split_heldout", "predict_heldout", "heldout_problem", "frame_labels"]

_EMBD = (512, 768, 960, 1024, 1600)
_LAYERS = (8, 10, 12, 24, 32, 48)
#: Held-out curves of the paper's nanoGPT-large splits as (n_embd, n_layer) labels (the original
#: code's ``Missing_Quad_d4_r3`` / ``Missing_Tri_d4`` / ``Missing_Tri_d1``).
SPLITS = {
    "quad": tuple((e, l) for e in (768, 960, 1024, 1600) for l in (24, 32, 48)),
    "tri": ((768, 48), (960, 32), (960, 48), (1024, 24), (1024, 32), (1024, 48),
            (1600, 12), (1600, 24), (1600, 32), (1600, 48)),
    "t1": ((1600, 48),),
}


class HeldoutPrediction(NamedTuple):
    """A fitted model's predictions of held-out curves (original loss units, curve-major)."""

    held_labels: tuple
    restart_means: np.ndarray  # (restarts, K_held, P)
    mean: np.ndarray  # (M,) or (S, M) joint predictive mean(s), M = K_held * P
    cov: np.ndarray  # (M, M) or (S, M, M)
    fit_seconds: float
    warm: object = None


def split_heldout(split: str) -> tuple:
    """Held-out (n_embd, n_layer) curves of a named nanoGPT-large split."""
    key = split.lower()
    if key not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of {sorted(SPLITS)}")
    return SPLITS[key]


def heldout_problem(dataset: str, held_labels, name: str, leaky: bool = False):
    """The issue-4 problem holding out whole curves given as (n_embd, n_layer); ``leaky=True`` uses the
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


def predict_heldout(key, dataset: str, held_labels, model: str = "magp", restarts: int = 10, steps: int = 2000,
                    warm=None, n_h: int = 32, leaky: bool = False) -> HeldoutPrediction:
    """Fit ``model`` on every curve except ``held_labels`` and predict the held-out curves jointly.

    Uses the curve-model API (``models.fit_model`` / ``models.predict_joint``; leak-free z-scoring). The
    joint predictive is an equal-weight mixture over the finite restarts, each the q(h)-integrated
    moment-matched Gaussian of the latent curves (no observation noise) in original units.
    """
    import jax

    from jaxscale.learning_curves.models import fit_model, predict_joint

    problem = heldout_problem(dataset, held_labels, "psl", leaky=leaky)
    k_fit, k_pred = jax.random.split(key)
    fit = fit_model(k_fit, problem, model, restarts=restarts, steps=steps)
    pred = predict_joint(k_pred, fit, problem, n_h=n_h)
    labels, P = frame_labels(problem.data.frame.loc[problem.split.test])
    mean = np.asarray(pred.mean, dtype=np.float64)
    cov = np.asarray(pred.cov, dtype=np.float64)
    return HeldoutPrediction(labels, mean.reshape(mean.shape[0], len(labels), P), mean, cov, fit.fit_seconds)
