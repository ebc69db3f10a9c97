"""End-to-end point pipeline of a named task: split -> impute + PCA (train only) -> fit ->
f-equivalent axis -> MSE.

:func:`run_task` reproduces one experiment of the paper with its own settings and returns a
:class:`TaskResult`, a pytree (arrays and numbers as leaves; the task's name and
:class:`~jaxscale.observational.tasks.TaskSpec` are static), so results pass through ``jax.jit``.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxscale._pytree import pytree_dataclass, static_field

from . import data as _data
from .fit import SigmoidLaw, fequiv_axis, fit_law, ln_regressor, mse, predict, predict_np
from .pca import PCAState, fit_transform
from .tasks import Prepared, TaskSpec, get_task, prepare

__all__ = ["Design", "TaskResult", "design", "run_task", "run_baseline", "evaluate_params", "predict",
           "task_heldout"]


@pytree_dataclass
class Design:
    """PC design of a prepared task: scores of the train/test rows (all <= 5 PCs) and the PCA.

    Attributes:
      S_train, S_test: ``(n_train, C)``, ``(n_test, C)`` PC scores (for a compute baseline: the
        ``(., 1)`` regressor ``ln(FLOPs)`` or ``ln(size)``).
      y_train, y_test: normalised targets of those rows.
      train: ``(n,)`` training mask over the rows of the prepared table (:attr:`prep`).
      flops: ``(n,)`` FLOPs (1E21) of every row of the prepared table (NaN = unknown).
      pca: the training PCA (``None`` for a compute baseline).
      ref_S, ref_flops: PC scores and FLOPs of the reference-family rows (train and test).
      spec: the task (static).
    """

    S_train: jax.Array
    S_test: jax.Array
    y_train: jax.Array
    y_test: jax.Array
    train: jax.Array
    flops: jax.Array
    pca: PCAState | None
    ref_S: jax.Array
    ref_flops: jax.Array
    spec: TaskSpec = static_field()

    @property
    def prep(self) -> Prepared:
        """The task's table and train mask, rebuilt from the bundled data (:func:`tasks.prepare`)."""
        return prepare(self.spec)


@pytree_dataclass
class TaskResult:
    """Point-fit outcome; ``slope``/``intercept`` are on the log10 reference-equivalent FLOPs axis."""

    name: str = static_field()
    params: SigmoidLaw
    mse_train: float
    mse_test: float
    slope: float
    intercept: float
    floor: float
    n_train: int
    n_test: int
    converged: bool
    design: Design
    reason: int | None = None  # optimiser stop code (jaxscale.infer.reason_text); None: not fitted here


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
    flops = prep.df[_data.FLOPS].to_numpy(float)
    return Design(S_tr, S_te, y[tr], y[~tr], np.asarray(tr, bool), flops, pca, S_all[ref], flops[ref],
                  spec=spec)


def evaluate_params(dz: Design, params: SigmoidLaw, k: int | None = None) -> TaskResult:
    """Train/test MSE and the f-equivalent form of given coefficients (e.g. published ones)."""
    spec = dz.spec
    k = spec.k if k is None else k
    params = SigmoidLaw(*(jnp.asarray(p, jnp.float64) for p in params))
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
    return out.replace(converged=bool(res.converged), reason=int(res.reason))


def run_baseline(name_or_spec, regressor: str = "flops", **overrides) -> TaskResult:
    """Compute baseline: same link and loss on ``ln(FLOPs)`` or ``ln(size)`` (paper §4, Fig. 4a: the
    original code uses the natural log although its axis label says log10).

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
    dz = Design(X[tr], X[te], y[tr], y[te], tr, prep.df[_data.FLOPS].to_numpy(float), None, X[:0], v[:0],
                spec=spec)
    return TaskResult(spec.name + f":{regressor}", params, mse(params, X[tr], y[tr]),
                      mse(params, X[te], y[te]), float(params.slopes[0]), float(params.intercept),
                      float(params.floor), int(tr.sum()), int(te.sum()), bool(res.converged), dz)


def task_heldout(result) -> dict:
    """A named task's held-out rows with the ln-FLOPs sigmoid baseline beside the law.

    The baseline is the task's link and loss on ``ln FLOPs`` (the paper's compute baseline),
    fitted on the training rows that have FLOPs; held-out rows without FLOPs get NaN (score the
    baseline, and the law beside it, on the rows with FLOPs). All values on the normalised target.

    Returns:
      dict(y, model, baseline (n_test,) arrays, n_train_no_flops, n_test_no_flops, law (the
      baseline's ``slope``, ``intercept``, ``floor`` on ln FLOPs (1E21), ``converged``) or
      ``None``, reason (why there is no baseline, else ``None``)).
    """
    dz = result.design
    spec = dz.spec
    k = int(np.asarray(result.params.slopes).shape[0])
    C = np.asarray(dz.flops, float)
    train = np.asarray(dz.train, bool)
    y_all = dz.prep.df["y"].to_numpy(float)
    Ct, Cte = C[train], C[~train]
    ok = np.isfinite(Ct)
    out = dict(y=np.asarray(dz.y_test, float), model=predict_np(result.params, np.asarray(dz.S_test)[:, :k]),
               baseline=np.full(len(Cte), np.nan), n_train_no_flops=int((~ok).sum()),
               n_test_no_flops=int((~np.isfinite(Cte)).sum()), law=None, reason=None)
    n_par = 2 + int(spec.floor)
    if ok.sum() < n_par + 1 or not np.isfinite(Cte).any():
        out["reason"] = (f"task {spec.name}: {int(ok.sum())} training and {int(np.isfinite(Cte).sum())} held-out "
                         f"model(s) have FLOPs ({_data.FLOPS}); the ln-FLOPs baseline needs >= {n_par + 1} and >= 1")
        return out
    law, res = fit_law(ln_regressor(Ct[ok]), y_all[train][ok], floor=spec.floor, loss=spec.loss)
    has = np.isfinite(Cte)
    out["baseline"][has] = predict_np(law, ln_regressor(Cte[has]))
    out["law"] = dict(slope=float(np.asarray(law.slopes)[0]), intercept=float(law.intercept), floor=float(law.floor),
                      converged=bool(res.converged))
    return out
