"""End-to-end point pipeline: split -> impute + PCA (train only) -> fit -> f-equivalent axis -> MSE."""
from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp
import numpy as np

from . import data as _data
from .fit import LawParams, fequiv_axis, fit_law, ln_regressor, mse
from .pca import PCAState, fit_transform
from .tasks import Prepared, TaskSpec, get_task, prepare

__all__ = ["Design", "TaskResult", "design", "run_task", "run_baseline", "evaluate_params"]


class Design(NamedTuple):
    """PC design of a prepared task: scores for train/test rows (all 5 PCs) and the PCA."""

    prep: Prepared
    S_train: np.ndarray
    S_test: np.ndarray
    y_train: np.ndarray
    y_test: np.ndarray
    pca: PCAState
    ref_S: np.ndarray  # PC scores of the reference-family rows (train and test)
    ref_flops: np.ndarray


class TaskResult(NamedTuple):
    """Point-fit outcome; ``slope``/``intercept`` are on the log10 reference-equivalent FLOPs axis."""

    name: str
    params: LawParams
    mse_train: float
    mse_test: float
    slope: float
    intercept: float
    floor: float
    n_train: int
    n_test: int
    converged: bool
    design: Design


def design(prep: Prepared) -> Design:
    """Impute and PCA on the training rows of ``prep``; project every row."""
    spec = prep.spec
    B = prep.df[list(spec.metrics)].to_numpy(float)
    tr = prep.train
    _, pca, S_all = fit_transform(B, tr)
    S_all = np.asarray(S_all)
    S_tr, S_te = S_all[tr], S_all[~tr]
    ref = (prep.df[_data.FAMILY] == spec.ref_family).to_numpy()
    y = prep.df["y"].to_numpy(float)
    return Design(prep, S_tr, S_te, y[tr], y[~tr], pca, S_all[ref],
                  prep.df[_data.FLOPS].to_numpy(float)[ref])


def evaluate_params(dz: Design, params: LawParams, k: int | None = None) -> TaskResult:
    """Train/test MSE and the f-equivalent form of given coefficients (e.g. published ones)."""
    spec = dz.prep.spec
    k = spec.k if k is None else k
    params = LawParams(*(jnp.asarray(p, jnp.float64) for p in params))
    w, c = fequiv_axis(params, dz.ref_S[:, :k], dz.ref_flops) if len(dz.ref_S) >= 2 else (
        float("nan"), float("nan"))
    return TaskResult(spec.name, params, mse(params, dz.S_train[:, :k], dz.y_train),
                      mse(params, dz.S_test[:, :k], dz.y_test), w, c, float(params.floor),
                      len(dz.y_train), len(dz.y_test), True, dz)


def run_task(name_or_spec, **overrides) -> TaskResult:
    """Run one named experiment (or a :class:`TaskSpec`) with the paper's settings."""
    spec = name_or_spec if isinstance(name_or_spec, TaskSpec) else get_task(name_or_spec, **overrides)
    dz = design(prepare(spec))
    params, res = fit_law(dz.S_train[:, : spec.k], dz.y_train, floor=spec.floor, loss=spec.loss)
    out = evaluate_params(dz, params, spec.k)
    return out._replace(converged=bool(res.converged))


def run_baseline(name_or_spec, regressor: str = "flops", **overrides) -> TaskResult:
    """Compute baseline: same link and loss on ``ln(FLOPs)`` or ``ln(size)`` (note §4.7).

    Test rows without the regressor are dropped (as in the original code).
    """
    spec = name_or_spec if isinstance(name_or_spec, TaskSpec) else get_task(name_or_spec, **overrides)
    prep = prepare(spec)
    col = {"flops": _data.FLOPS, "size": _data.SIZE}[regressor]
    v = prep.df[col].to_numpy(float)
    y = prep.df["y"].to_numpy(float)
    ok = np.isfinite(v)
    tr, te = prep.train & ok, ~prep.train & ok
    X = ln_regressor(np.where(ok, v, 1.0))
    params, res = fit_law(X[tr], y[tr], floor=spec.floor, loss=spec.loss)
    dz = Design(prep, X[tr], X[te], y[tr], y[te], None, X[:0], v[:0])
    return TaskResult(spec.name + f":{regressor}", params, mse(params, X[tr], y[tr]),
                      mse(params, X[te], y[te]), float(params.slopes[0]), float(params.intercept),
                      float(params.floor), int(tr.sum()), int(te.sum()), bool(res.converged), dz)


__all__.append("predict")
