"""The bundled-problem API over the learning-curve models (paper reproductions): fit, joint
prediction and joint draws in original units. Your own tables go through
:mod:`jaxscale.learning_curves.core` (``from_frame -> fit -> predict``).

    problem = make_problem("nanogpt_large", "tri")          # leak-free z-score by default
    fit = fit_model(key, problem, "magp", restarts=10, steps=600)
    pred = predict_joint(key, fit, problem)                  # held-out points by default
    draws = sample_joint(key, fit, problem, n_samples=100)   # (R, S, M)

Only restarts that finished finite (``fit.ok``) are used by the predictors.
"""
from __future__ import annotations

import time
from typing import TYPE_CHECKING

import jax
import jax.numpy as jnp
import numpy as np

from jaxscale._pytree import pytree_dataclass, static_field
from jaxscale.learning_curves.dhgp import dhgp_draws_std, dhgp_joint_std, fit_dhgp
from jaxscale.learning_curves.magp import fit_magp
from jaxscale.learning_curves.magp_predict import JointPrediction, magp_draws_std, magp_joint_std
from jaxscale.learning_curves.problem import LCProblem, Points, pad_points
from jaxscale.learning_curves.preprocess import Scaler
from jaxscale.learning_curves.spec import DESC_MODELS, MODELS

if TYPE_CHECKING:  # annotations only
    from jaxscale.learning_curves.dhgp import DHGPFit
    from jaxscale.learning_curves.magp import MaGPFit
    from jaxscale.learning_curves.magp_desc import DescFit

__all__ = ["LCFit", "MODELS", "fit_model", "predict_joint", "sample_joint", "take_ok", "JointPrediction"]


@pytree_dataclass
class LCFit:
    """A fitted model of a bundled problem (:func:`fit_model`): the model's fit record, wall
    seconds, the training points used; the model name is a static field."""

    model: str = static_field()
    result: "MaGPFit | DHGPFit | DescFit" = None  # or bnn.BNNFit
    fit_seconds: float = 0.0
    train: Points | None = None  # training points used (padded if pad_to was given)


def fit_model(key, problem: LCProblem, model: str = "magp", *, restarts: int = 10, steps: int = 600,
              learning_rate: float = 5e-2, n_mc: int = 1, pad_to: int | None = None, lr_decay: bool = True) -> LCFit:
    """Fit ``model`` ("magp" | "dhgp" | "magp_desc") on the problem's training points (timed, blocking).

    "magp_desc" (descriptor MaGP, :mod:`magp_desc`) re-standardises tasks without training
    rows with descriptor-regressed constants (:func:`descriptors.regress_task_scaler`); the
    scaler it used is kept in ``fit.result.scaler`` and used by the predictors.

    ``pad_to``: pad the training set with inert points to this size so that problems of
    different sizes (splits, active-learning rounds) reuse one compiled program. ``steps`` Adam steps
    at the peak ``learning_rate`` of :func:`~.magp.lr_schedule` (``lr_decay=False``: constant; the
    original code ran 2000 steps at a constant 1e-2).
    """
    t0 = time.perf_counter()
    train = problem.train if pad_to is None else pad_points(problem.train, pad_to)
    if model == "magp":
        res = fit_magp(key, problem.xgrid, train, problem.n_tasks, restarts=restarts,
                       steps=steps, learning_rate=learning_rate, n_mc=n_mc, lr_decay=lr_decay)
    elif model == "dhgp":
        res = fit_dhgp(problem.xgrid, train, restarts=restarts)
    elif model == "magp_desc":
        from jaxscale.learning_curves.descriptors import descriptor_tables, regress_task_scaler, with_scaler
        from jaxscale.learning_curves.magp_desc import fit_magp_desc

        tables = descriptor_tables(problem)
        scaler = regress_task_scaler(problem, tables)
        train = with_scaler(problem, scaler).train
        train = train if pad_to is None else pad_points(train, pad_to)
        res = fit_magp_desc(key, problem.xgrid, train, tables, restarts=restarts, steps=steps,
                            learning_rate=learning_rate, n_mc=n_mc, lr_decay=lr_decay)._replace(scaler=scaler)
    elif model == "magp_law":
        res, train = _fit_law_problem(key, problem, restarts, steps, learning_rate, n_mc, pad_to, lr_decay)
    else:
        raise ValueError(f"unknown model {model!r}; choose one of {MODELS} (bnn: see jaxscale.learning_curves.bnn)")
    jax.block_until_ready(res.params)
    return LCFit(model, res, time.perf_counter() - t0, train)


def _fit_law_problem(key, problem: LCProblem, restarts, steps, learning_rate, n_mc, pad_to, lr_decay):
    """The law-informed model on a bundled problem: the law on the training losses, the descriptor
    MaGP on the residuals (one pair of z-score constants for every task)."""
    from jaxscale.learning_curves.descriptors import descriptor_tables
    from jaxscale.learning_curves.law_gp import fit_law_residuals
    from jaxscale.learning_curves.magp_desc import fit_magp_desc

    tables = descriptor_tables(problem)
    tr = problem.train
    y = jnp.asarray(problem.y_train)
    if pad_to is not None:  # pad first: the law fit then compiles once per padded size too
        y = jnp.concatenate([y, jnp.ones((pad_to - y.shape[0],), y.dtype)])
        tr = pad_points(tr, pad_to)
    k_law, k_gp = jax.random.split(key)
    law, law_cov, zr, mu, sd = fit_law_residuals(k_law, tables.curve[tr.c], tr.x, y, tr.c,
                                                 problem.n_tasks * problem.n_reps, tr.w)
    D = problem.n_tasks
    scaler = Scaler(np.full(D, float(mu)), np.full(D, float(sd)))
    train = tr._replace(y=zr)
    res = fit_magp_desc(k_gp, problem.xgrid, train, tables, restarts=restarts, steps=steps,
                        learning_rate=learning_rate, n_mc=n_mc, lr_decay=lr_decay)
    return res._replace(scaler=scaler, law=law, law_cov=law_cov), train


def _law_at(fit: LCFit, query: Points):
    """The fitted law at the query points and the covariance of its value there (0, 0 for models
    without a law)."""
    law = getattr(fit.result, "law", None)
    if law is None:
        return 0.0, 0.0
    from jaxscale.learning_curves.law_gp import law_prediction_cov, law_value

    z = fit.result.tables.curve[query.c]
    return law_value(law, z, query.x), law_prediction_cov(law, fit.result.law_cov, z, query.x)


def take_ok(fit: LCFit):
    """Parameters of the finite restarts only (leading axis R_ok)."""
    idx = np.flatnonzero(fit.result.ok)
    return jax.tree_util.tree_map(lambda a: jax.device_put(np.asarray(a)[idx]), fit.result.params)  # on the host


def _scaler(fit: LCFit, problem: LCProblem) -> Scaler:
    return getattr(fit.result, "scaler", None) or problem.scaler


def _to_original(scaler: Scaler, query: Points, mean, cov, noise, law_mean=0.0, law_cov=0.0) -> JointPrediction:
    """Standardised GP moments -> original units, plus the law's trend (on the host: eager device
    arithmetic would compile a small program per operation and shape)."""
    d = np.asarray(query.d)
    s, mu = np.asarray(scaler.std, float)[d], np.asarray(scaler.mean, float)[d]
    mean, cov, noise = (np.asarray(a) for a in (mean, cov, noise))
    return JointPrediction(*(jax.device_put(a) for a in (mean * s + mu + np.asarray(law_mean),
                                                         cov * s[:, None] * s[None, :] + np.asarray(law_cov),
                                                         noise * s**2)))


def predict_joint(key, fit: LCFit, problem: LCProblem, query: Points | None = None, *, n_h: int = 32) -> JointPrediction:
    """Joint predictive of ``query`` (default: the held-out points) in original units.

    Returns :class:`JointPrediction` with ``mean (R,M)``, latent ``cov (R,M,M)`` and per-point
    ``noise_var (R,M)``; MaGP integrates q(h) with ``n_h`` Monte-Carlo draws.
    """
    query = problem.test if query is None else query
    params = take_ok(fit)
    train = problem.train if fit.train is None else fit.train
    if fit.model == "magp":
        m, C, nv, _ = magp_joint_std(params, key, problem.xgrid, train, query, n_h=n_h)
    elif fit.model in DESC_MODELS:
        from jaxscale.learning_curves.desc_predict import desc_joint_std

        r = fit.result
        m, C, nv, _ = desc_joint_std(params, key, r.tables, jnp.asarray(r.observed), problem.xgrid, train, query,
                                     n_h=n_h)
    else:
        m, C, nv, _ = dhgp_joint_std(params, key, problem.xgrid, train, query)
    return _to_original(_scaler(fit, problem), query, m, C, nv, *_law_at(fit, query))


def sample_joint(key, fit: LCFit, problem: LCProblem, query: Points | None = None, *, n_samples: int = 100):
    """Joint posterior draws of the latent curves at ``query`` in original units: ``(R, S, M)``."""
    query = problem.test if query is None else query
    params = take_ok(fit)
    train = problem.train if fit.train is None else fit.train
    if fit.model in DESC_MODELS:
        from jaxscale.learning_curves.desc_predict import desc_draws_std

        r = fit.result
        z = desc_draws_std(params, key, r.tables, jnp.asarray(r.observed), problem.xgrid, train, query,
                           n_samples=n_samples)
    else:
        fn = magp_draws_std if fit.model == "magp" else dhgp_draws_std
        z = fn(params, key, problem.xgrid, train, query, n_samples=n_samples)
    sc = _scaler(fit, problem)
    s = jnp.asarray(sc.std)[query.d]
    draws = z * s + jnp.asarray(sc.mean)[query.d]
    if getattr(fit.result, "law", None) is None:
        return draws
    law_mean, law_cov = _law_at(fit, query)
    draws = draws + law_mean
    # the law's parameter uncertainty: one joint Gaussian draw per sample, shared by the restarts
    M = draws.shape[-1]
    L = jnp.linalg.cholesky(law_cov + 1e-12 * jnp.eye(M, dtype=law_cov.dtype))
    eps = jax.random.normal(jax.random.fold_in(key, 1), draws.shape[1:], draws.dtype)
    return draws + (eps @ L.T)[None]
