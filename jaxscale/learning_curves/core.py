r"""The learning-curve contract: :class:`Spec`, :class:`Fit`, :func:`fit_core`, :func:`fit`, :func:`predict`.

``fit(key, data, spec)`` fits a hierarchical GP on **every row** of ``data`` (rows = observed
training points; see :mod:`jaxscale.learning_curves.frame` for the columns) and
``predict(fit, query)`` returns the joint predictive of any query rows: continuations of training
curves, or whole curves never observed, of known tasks and instances.

Models (``Spec.model``):

* ``"magp"``: the MaGP of Schram et al. 2025 (:mod:`.magp`): tasks correlated through latent
  vectors ``h_d`` with a Gaussian ``q(h)``, instance deviations shared across tasks.
* ``"magp_desc"``: MaGP plus numeric configuration descriptors (:mod:`.magp_desc`); it can predict
  curves of a task without any training row from the task's descriptors.
* ``"dhgp"``: the deep hierarchical GP baseline of Hensman et al. 2013 (:mod:`.dhgp`).

Preprocessing (all leak-free, from the training rows only): the models take ``x = ln(step)``
as is; the loss is z-scored per task (a task without training rows gets the pooled constants or,
for ``magp_desc``, constants regressed on its task descriptors). Descriptors are log-transformed
(``Spec.log_descriptors``) and standardised over the training curves.

The prediction is the equal-weight mixture over the finite restarts of each restart's joint
Gaussian (``q(h)`` integrated by moment matching over ``Spec.n_h`` latent draws fixed at fit
time, so a fit predicts deterministically); ``lower``/``upper`` are the exact central interval
of that mixture for the OBSERVATION (latent + noise); ``samples`` are joint draws of the
observations when a key is given.
"""
from __future__ import annotations

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from jaxscale._pytree import pytree_dataclass, register_serializable, static_field
from jaxscale.config import warn_if_float32
from jaxscale.gp import gaussian_nll
from jaxscale.infer import minimize_lbfgs
from jaxscale.infer.prediction import Prediction, check_level
from jaxscale.learning_curves import desc_predict, dhgp, magp, magp_desc, magp_predict
from jaxscale.learning_curves.descriptors import DescTables
from jaxscale.learning_curves.frame import Data, from_frame, frame_kwargs
from jaxscale.learning_curves.magp_predict import JointPrediction
from jaxscale.learning_curves.problem import Points

__all__ = ["MODELS", "Spec", "Fit", "fit_core", "fit", "predict", "predict_restarts", "prediction_from_joint",
           "mixture_interval", "as_query"]

MODELS = ("magp", "magp_desc", "dhgp")


@register_serializable
class Spec(NamedTuple):
    """How to fit (every field has a default; the CLI reads its defaults from ``Spec()``).

    Attributes:
      model: ``"magp"`` | ``"magp_desc"`` | ``"dhgp"``.
      restarts: random restarts, all in one compiled program (DHGP is deterministic: repeats).
      steps: Adam steps per restart (magp, magp_desc).
      learning_rate: Adam learning rate.
      q: dimension of the task latents ``h_d`` (magp, magp_desc; 0 allowed for magp_desc).
      n_mc: latent draws per Adam step in the ELBO estimate.
      n_h: latent draws integrating ``q(h)`` in predictions (fixed at fit time).
      n_samples: joint draws returned by ``predict`` when it is given a key.
      log_descriptors: take ``ln`` of the descriptors (they must then be > 0) before standardising.
      lbfgs_steps: L-BFGS iterations of the DHGP fit.
    """

    model: str = "magp"
    restarts: int = 10
    steps: int = 2000
    learning_rate: float = 1e-2
    q: int = 2
    n_mc: int = 1
    n_h: int = 32
    n_samples: int = 256
    log_descriptors: bool = True
    lbfgs_steps: int = 1000


@pytree_dataclass
class Fit:
    """A fitted learning-curve model: everything :func:`predict` needs.

    Attributes:
      params: the model's parameters (``MaGPParams`` / ``DescParams`` / ``DHGPParams``), leading
        axis = restart.
      loss: ``(R,)`` final negative ELBO (MaGP models) or negative log marginal likelihood (DHGP).
      history: ``(R, steps)`` loss before every Adam step, or ``None`` (DHGP).
      jitter: ``(R,)`` largest diagonal jitter the Cholesky factors needed.
      ok: ``(R,)`` finite restarts (only these predict).
      train: the training rows (original units).
      y_mean, y_std: ``(D,)`` per-task z-score constants of the loss.
      eps_h: ``(n_h, D, Q)`` standard-normal draws integrating ``q(h)`` in predictions.
      desc_center, desc_scale: ``(k,)`` standardisation of the (log) descriptors.
      scale_coef: ``(1 + Pu, 2)`` least-squares coefficients of (mean, ln std) of the observed tasks
        on their task descriptors: the z-score constants of tasks without training rows
        (``magp_desc``).
    """

    params: "magp.MaGPParams | magp_desc.DescParams | dhgp.DHGPParams"
    loss: jax.Array
    history: jax.Array | None
    jitter: jax.Array
    ok: jax.Array
    train: Data
    y_mean: jax.Array
    y_std: jax.Array
    eps_h: jax.Array
    desc_center: jax.Array
    desc_scale: jax.Array
    scale_coef: jax.Array
    spec: Spec = static_field(default=Spec())
    task_labels: tuple = static_field(default=())
    instance_labels: tuple = static_field(default=())
    descriptor_names: tuple = static_field(default=())
    descriptor_levels: tuple = static_field(default=())
    x_is_log: bool = static_field(default=False)
    columns: tuple = static_field(default=())


# ----------------------------------------------------------------------------- preprocessing (jnp)
def _float():
    return jnp.result_type(float)


def _task_scaler(d, y, n_tasks: int):
    """Per-task mean / std (ddof 0) with the pooled constants for tasks with < 1 (mean) / < 2 (std) rows."""
    one = jnp.ones_like(y)
    cnt = jax.ops.segment_sum(one, d, n_tasks)
    s1 = jax.ops.segment_sum(y, d, n_tasks)
    s2 = jax.ops.segment_sum(y * y, d, n_tasks)
    safe = jnp.maximum(cnt, 1.0)
    mean = jnp.where(cnt > 0, s1 / safe, jnp.mean(y))
    var = jnp.where(cnt > 1, s2 / safe - (s1 / safe) ** 2, jnp.var(y))
    return mean, jnp.sqrt(jnp.maximum(var, 1e-12))


def _transform_descriptors(desc, spec: Spec):
    desc = jnp.asarray(desc, _float())
    return jnp.log(desc) if spec.log_descriptors else desc


def _descriptor_scaling(z, cid, n_curves: int):
    """Mean / std of every descriptor over the distinct curves present (each curve counted once)."""
    cnt = jax.ops.segment_sum(jnp.ones(z.shape[0], z.dtype), cid, n_curves)
    present = (cnt > 0).astype(z.dtype)[:, None]
    per = jax.ops.segment_sum(z, cid, n_curves) / jnp.maximum(cnt, 1.0)[:, None]
    n = jnp.maximum(jnp.sum(present), 1.0)
    center = jnp.sum(per * present, 0) / n
    std = jnp.sqrt(jnp.sum(((per - center) ** 2) * present, 0) / n)
    return center, jnp.where(std > 0, std, 1.0)


def _tables(zs, d, r, levels: tuple, n_tasks: int, n_inst: int) -> DescTables:
    """Per-task, per-instance and per-curve descriptor tables from standardised rows (absent codes: 0)."""
    def per(code, n, cols):
        if not cols:
            return jnp.zeros((n, 0), zs.dtype)
        v = zs[:, list(cols)]
        cnt = jax.ops.segment_sum(jnp.ones(v.shape[0], v.dtype), code, n)
        return jax.ops.segment_sum(v, code, n) / jnp.maximum(cnt, 1.0)[:, None]

    task_cols = tuple(i for i, lev in enumerate(levels) if lev == "task")
    inst_cols = tuple(i for i, lev in enumerate(levels) if lev == "instance")
    return DescTables(per(d, n_tasks, task_cols), per(r, n_inst, inst_cols),
                      per(d * n_inst + r, n_tasks * n_inst, tuple(range(zs.shape[1]))))


def _scale_regression(task_table, y_mean, y_std, observed):
    """Least squares of (mean, ln std) of the observed tasks on ``[1, u_d]``."""
    A = jnp.concatenate([jnp.ones((task_table.shape[0], 1), task_table.dtype), task_table], 1)
    w = observed.astype(A.dtype)[:, None]
    b = jnp.stack([y_mean, jnp.log(y_std)], 1)
    return jnp.linalg.lstsq(A * w, b * w)[0]


def _points(x, d, r, n_inst: int, y, offset: int = 0) -> Points:
    n = x.shape[0]
    return Points(x, offset + jnp.arange(n), r, d, d * n_inst + r, y)


# ----------------------------------------------------------------------------- fit
def fit_core(key, data: Data, spec: Spec = Spec()) -> Fit:
    """The pure numerical fit: z-scoring, descriptor tables and the restarts' optimiser over arrays.

    No host-side checks or warnings (see :func:`fit`): jit-able with ``spec`` static, and
    ``jax.vmap(lambda k: fit_core(k, data, spec))(keys)`` equals separate calls. Restart ``i``
    starts from ``fold_in(k_fit, i)``, ``k_fit, k_h = split(key)``; ``k_h`` draws the fixed latent
    draws of the predictions. ``ok`` marks the restarts whose loss and parameters are finite.
    """
    D, R = data.n_tasks, data.n_instances
    dt = _float()
    x = jnp.asarray(data.x, dt)
    y = jnp.asarray(data.y, dt)
    d = jnp.asarray(data.task, jnp.int32)
    r = jnp.asarray(data.instance, jnp.int32)
    y_mean, y_std = _task_scaler(d, y, D)
    pts = _points(x, d, r, R, (y - y_mean[d]) / y_std[d])
    k_fit, k_h = jax.random.split(key)
    keys = jax.vmap(lambda i: jax.random.fold_in(k_fit, i))(jnp.arange(spec.restarts))
    k = data.descriptors.shape[1]
    center, scale = jnp.zeros((k,), dt), jnp.ones((k,), dt)
    n_task_desc = sum(lev == "task" for lev in data.descriptor_levels) if spec.model == "magp_desc" else 0
    coef = jnp.zeros((1 + n_task_desc, 2), dt)
    history = None
    q = spec.q
    if spec.model == "magp":
        params, loss, history, jit = magp._fit_many(keys, x, pts, D, q, spec.steps, spec.learning_rate, spec.n_mc)
    elif spec.model == "magp_desc":
        z = _transform_descriptors(data.descriptors, spec)
        center, scale = _descriptor_scaling(z, d * R + r, D * R)
        tables = _tables((z - center) / scale, d, r, data.descriptor_levels, D, R)
        params, loss, history, jit = magp_desc._fit_many(keys, tables, x, pts, q, spec.steps, spec.learning_rate,
                                                         spec.n_mc)
        observed = jax.ops.segment_sum(jnp.ones_like(y), d, D) > 0
        coef = _scale_regression(tables.task, y_mean, y_std, observed)
    elif spec.model == "dhgp":
        q = 0
        x0 = dhgp.DHGPParams(jnp.zeros(3, dt), jnp.zeros(3, dt), jnp.zeros((), dt))
        res = minimize_lbfgs(dhgp.dhgp_loss, x0, x, pts, max_steps=spec.lbfgs_steps, tol=1e-6)
        jit1 = gaussian_nll(dhgp._gram(res.params, x, pts), pts.y)[1]
        rep = lambda a: jnp.broadcast_to(a, (spec.restarts,) + jnp.shape(a))  # noqa: E731
        params, loss, jit = jax.tree.map(rep, res.params), rep(res.loss), rep(jit1)
    else:
        raise ValueError(f"unknown model {spec.model!r}; choose one of {MODELS}")
    leaves = [jnp.reshape(a, (spec.restarts, -1)) for a in jax.tree.leaves(params)]
    ok = jnp.isfinite(loss) & jnp.all(jnp.stack([jnp.all(jnp.isfinite(a), 1) for a in leaves]), 0)
    eps_h = jax.random.normal(k_h, (spec.n_h, D, q), dt)
    return Fit(params, loss, history, jit, ok, data, y_mean, y_std, eps_h, center, scale, coef, spec,
               data.task_labels, data.instance_labels, data.descriptor_names, data.descriptor_levels, data.x_is_log,
               data.columns)


_fit_core_jit = jax.jit(fit_core, static_argnames=("spec",))


def _check_spec(spec: Spec) -> None:
    if not isinstance(spec, Spec):
        raise ValueError(f"spec must be a learning_curves.Spec, got {type(spec).__name__}")
    if spec.model not in MODELS:
        raise ValueError(f"Spec.model {spec.model!r} is not one of {MODELS}")
    for name in ("restarts", "steps", "n_mc", "n_h", "n_samples", "lbfgs_steps"):
        if int(getattr(spec, name)) < 1:
            raise ValueError(f"Spec.{name} must be >= 1, got {getattr(spec, name)}")
    if spec.q < (0 if spec.model == "magp_desc" else 1):
        raise ValueError(f"Spec.q (latent dimension) must be >= 1 for {spec.model}, got {spec.q}")
    if not spec.learning_rate > 0:
        raise ValueError(f"Spec.learning_rate must be > 0, got {spec.learning_rate}")


def _check_training(data: Data, spec: Spec) -> None:
    if not isinstance(data, Data):
        raise ValueError(f"fit takes a learning_curves.Data (from_frame), got {type(data).__name__}")
    n = len(data)
    if n < 2:
        raise ValueError(f"fit needs at least 2 training rows, got {n}")
    y = np.asarray(data.y, float)
    bad = ~np.isfinite(y)
    if bad.any():
        raise ValueError(f"fit: {int(bad.sum())} of {n} training rows have no finite target (positions "
                         f"{np.flatnonzero(bad)[:5].tolist()}); fit on the rows with a loss value and predict the "
                         "others with predict(fit, rows)")
    if spec.model == "magp_desc":
        if data.descriptors.shape[1] == 0:
            raise ValueError("model 'magp_desc' needs descriptor columns: from_frame(..., descriptor_cols=[...]) "
                             "(CLI: --descriptor-cols C1,C2), e.g. the width and depth of each run")
        if spec.log_descriptors:
            neg = np.asarray(data.descriptors) <= 0
            if neg.any():
                col = data.descriptor_names[int(np.flatnonzero(neg.any(0))[0])]
                raise ValueError(f"descriptor column {col!r} has {int(neg[:, list(data.descriptor_names).index(col)].sum())} "
                                 "value(s) <= 0 but descriptors are log-transformed; pass "
                                 "Spec(log_descriptors=False) (CLI: --no-log-descriptors) or use positive sizes")


def fit(key, data: Data, spec: Spec = Spec()) -> Fit:
    """Fit ``spec.model`` on every row of ``data`` (host checks, then :func:`fit_core` compiled).

    Warns (``RuntimeWarning``) naming restarts that went non-finite (excluded from predictions)
    and escalated Cholesky jitters; raises ``ValueError`` when every restart failed.
    """
    _check_spec(spec)
    _check_training(data, spec)
    warn_if_float32("learning-curve data")
    # names do not enter the numbers: compile once per shape, whatever the table's labels and columns
    canon = data.replace(compute=None, task_labels=tuple(map(str, range(data.n_tasks))),
                         instance_labels=tuple(map(str, range(data.n_instances))),
                         descriptor_names=tuple(f"d{i}" for i in range(len(data.descriptor_names))),
                         x_is_log=False, tokens_per_step=None, columns=())
    out = _fit_core_jit(key, canon, spec)
    ok = magp.report_fit_health(out.loss, out.params, out.jitter, spec.model)
    return out.replace(ok=jnp.asarray(ok), train=data, task_labels=data.task_labels,
                       instance_labels=data.instance_labels, descriptor_names=data.descriptor_names,
                       x_is_log=data.x_is_log, columns=data.columns)


# ----------------------------------------------------------------------------- predict
def _remap(codes, labels_from: tuple, labels_to: tuple, what: str):
    if tuple(labels_from) == tuple(labels_to):
        return np.asarray(codes)
    index = {lab: i for i, lab in enumerate(labels_to)}
    unknown = sorted({labels_from[c] for c in np.asarray(codes) if labels_from[c] not in index})
    if unknown:
        raise ValueError(f"query {what} label(s) {unknown[:5]} are unknown to the model (it knows "
                         f"{list(labels_to)[:20]}); refit with those runs in the table")
    return np.asarray([index[labels_from[c]] for c in np.asarray(codes)], np.int32)


def as_query(fit: Fit, query) -> Data:
    """A query (DataFrame or Data) as :class:`Data` coded with the fit's vocabularies."""
    if isinstance(query, pd.DataFrame):
        return from_frame(query, **frame_kwargs(fit.columns), x_is_log=fit.x_is_log, require_target=False,
                          task_labels=fit.task_labels, instance_labels=fit.instance_labels,
                          descriptor_levels=fit.descriptor_levels)
    if not isinstance(query, Data):
        raise ValueError(f"query must be a pandas DataFrame or a learning_curves.Data, got {type(query).__name__}")
    if tuple(query.descriptor_names) != tuple(fit.descriptor_names):
        raise ValueError(f"query descriptors {list(query.descriptor_names)} differ from the model's "
                         f"{list(fit.descriptor_names)}")
    task = _remap(query.task, query.task_labels, fit.task_labels, "task")
    inst = _remap(query.instance, query.instance_labels, fit.instance_labels, "instance")
    return query.replace(task=task, instance=inst, task_labels=fit.task_labels,
                         instance_labels=fit.instance_labels, descriptor_levels=fit.descriptor_levels)


def _check_descriptor_consistency(fit: Fit, query: Data) -> None:
    """Task-/instance-level descriptors of the query must agree with the training rows."""
    both = np.concatenate([np.asarray(fit.train.descriptors), np.asarray(query.descriptors)])
    codes = {"task": np.concatenate([np.asarray(fit.train.task), np.asarray(query.task)]),
             "instance": np.concatenate([np.asarray(fit.train.instance), np.asarray(query.instance)])}
    R = len(fit.instance_labels)
    codes["curve"] = codes["task"].astype(np.int64) * R + codes["instance"]
    for j, (name, level) in enumerate(zip(fit.descriptor_names, fit.descriptor_levels)):
        frame = pd.DataFrame({"c": codes[level], "v": both[:, j]})
        spread = frame.groupby("c")["v"].nunique()
        if (spread > 1).any():
            c = int(spread.index[(spread > 1).to_numpy()][0])
            lab = (fit.task_labels[c] if level == "task" else fit.instance_labels[c] if level == "instance"
                   else f"{fit.task_labels[c // R]}/{fit.instance_labels[c % R]}")
            raise ValueError(f"descriptor {name!r} is a {level}-level descriptor but takes several values for "
                             f"{level} {lab!r} across the training and query rows; fix the query's {name!r}")


@partial(jax.jit, static_argnames=("model",))
def _joint_std(params, eps_h, tables, observed, xgrid, train: Points, query: Points, model: str):
    if model == "magp":
        return jax.vmap(lambda p: magp_predict.joint_from_latents(
            p, magp_predict.latent_draws(p, eps_h), xgrid, train, query))(params)
    if model == "magp_desc":
        return jax.vmap(lambda p: desc_predict.desc_joint_from_latents(
            p, magp_predict.latent_draws(p, eps_h), tables, observed, xgrid, train, query))(params)
    return jax.vmap(lambda p: dhgp._joint_one(p, xgrid, train, query))(params)


def predict_restarts(fit: Fit, query) -> JointPrediction:
    """Per finite restart: joint predictive of the query rows in original units,
    ``JointPrediction(mean (R_ok, M), latent cov (R_ok, M, M), noise_var (R_ok, M))``."""
    q = as_query(fit, query)
    spec = fit.spec
    D, R = len(fit.task_labels), len(fit.instance_labels)
    dt = _float()
    tr = fit.train
    d_tr, r_tr = jnp.asarray(tr.task, jnp.int32), jnp.asarray(tr.instance, jnp.int32)
    d_q, r_q = jnp.asarray(q.task, jnp.int32), jnp.asarray(q.instance, jnp.int32)
    y_mean, y_std = jnp.asarray(fit.y_mean, dt), jnp.asarray(fit.y_std, dt)
    x_tr, x_q = jnp.asarray(tr.x, dt), jnp.asarray(q.x, dt)
    yz = (jnp.asarray(tr.y, dt) - y_mean[d_tr]) / y_std[d_tr]
    N, M = x_tr.shape[0], x_q.shape[0]
    train = _points(x_tr, d_tr, r_tr, R, yz)
    query_pts = _points(x_q, d_q, r_q, R, jnp.zeros((M,), dt), offset=N)
    xgrid = jnp.concatenate([x_tr, x_q])
    observed = np.bincount(np.asarray(tr.task), minlength=D) > 0
    tables = None
    mu_q, sd_q = y_mean[d_q], y_std[d_q]
    if spec.model == "magp_desc":
        _check_descriptor_consistency(fit, q)
        z = _transform_descriptors(np.concatenate([np.asarray(tr.descriptors), np.asarray(q.descriptors)]), spec)
        zs = (z - jnp.asarray(fit.desc_center, dt)) / jnp.asarray(fit.desc_scale, dt)
        tables = _tables(zs, jnp.concatenate([d_tr, d_q]), jnp.concatenate([r_tr, r_q]), fit.descriptor_levels, D, R)
        n_u = tables.task.shape[1]
        if n_u >= 1 and observed.sum() >= n_u + 1 and not observed.all():
            A = jnp.concatenate([jnp.ones((D, 1), dt), tables.task], 1)
            reg = A @ jnp.asarray(fit.scale_coef, dt)
            obs = jnp.asarray(observed)
            mean_d = jnp.where(obs, y_mean, reg[:, 0])
            std_d = jnp.where(obs, y_std, jnp.exp(reg[:, 1]))
            mu_q, sd_q = mean_d[d_q], std_d[d_q]
    idx = np.flatnonzero(np.asarray(fit.ok))
    params = jax.tree.map(lambda a: jnp.asarray(a)[idx], fit.params)
    m, C, nv, _ = _joint_std(params, jnp.asarray(fit.eps_h, dt), tables, jnp.asarray(observed), xgrid, train,
                             query_pts, spec.model)
    return JointPrediction(m * sd_q + mu_q, C * sd_q[:, None] * sd_q[None, :], nv * sd_q**2)


@partial(jax.jit, static_argnames=("iters",))
def _mixture_quantile(means, sds, probs, iters: int = 100):
    """Quantiles ``probs`` (P,) of per-column equal-weight Gaussian mixtures ``(R, M)`` by bisection."""
    lo = jnp.min(means - 40.0 * sds, 0)
    hi = jnp.max(means + 40.0 * sds, 0)
    lo, hi = jnp.broadcast_to(lo, probs.shape + lo.shape), jnp.broadcast_to(hi, probs.shape + hi.shape)

    def cdf(v):  # v (P, M)
        return jnp.mean(jax.scipy.stats.norm.cdf((v[:, None, :] - means[None]) / sds[None]), 1)

    def body(_, c):
        a, b = c
        mid = 0.5 * (a + b)
        below = cdf(mid) < probs[:, None]
        return jnp.where(below, mid, a), jnp.where(below, b, mid)

    a, b = jax.lax.fori_loop(0, iters, body, (lo, hi))
    return 0.5 * (a + b)


def mixture_interval(means, sds, level: float = 0.9):
    """Central ``level`` interval ``(lower, upper)`` of equal-weight Gaussian mixtures over the
    leading axis: ``means``, ``sds`` of shape ``(R, M)``."""
    level = check_level(level)
    means, sds = jnp.atleast_2d(jnp.asarray(means)), jnp.atleast_2d(jnp.asarray(sds))
    qs = _mixture_quantile(means, jnp.maximum(sds, 1e-300), jnp.asarray([(1 - level) / 2, (1 + level) / 2],
                                                                         means.dtype))
    return qs[0], qs[1]


@partial(jax.jit, static_argnames=("n_samples",))
def _mixture_draws(key, mean, cov, noise, n_samples: int):
    R, M = mean.shape
    n_per = -(-n_samples // R)
    S = cov + jax.vmap(jnp.diag)(noise)
    L = jnp.linalg.cholesky(0.5 * (S + jnp.swapaxes(S, -1, -2)) + 1e-12 * jnp.eye(M, dtype=S.dtype))
    eps = jax.random.normal(key, (R, n_per, M), mean.dtype)
    draws = mean[:, None, :] + jnp.einsum("rmk,rsk->rsm", L, eps)
    return jnp.swapaxes(draws, 0, 1).reshape(n_per * R, M)[:n_samples]  # interleaved over restarts


def prediction_from_joint(joint: JointPrediction, *, key=None, level: float = 0.9, n_samples: int = 256
                          ) -> Prediction:
    """The restart mixture of a :class:`JointPrediction` as a :class:`jaxscale.Prediction` of the
    observations (latent + noise); joint draws when ``key`` is given."""
    mean = jnp.asarray(joint.mean)
    sd = jnp.sqrt(jnp.maximum(jnp.diagonal(jnp.asarray(joint.cov), axis1=-2, axis2=-1), 0.0)
                  + jnp.asarray(joint.noise_var))
    lo, hi = mixture_interval(mean, sd, level)
    samples = None
    if key is not None:
        samples = _mixture_draws(key, mean, jnp.asarray(joint.cov), jnp.asarray(joint.noise_var), int(n_samples))
    return Prediction(jnp.mean(mean, 0), lo, hi, samples)


def predict(fit: Fit, query, *, key=None, level: float = 0.9) -> Prediction:
    """Joint predictive of the query rows (a DataFrame read with the fit's columns, or a :class:`Data`).

    Returns a :class:`jaxscale.Prediction`: ``mean`` (mixture mean over restarts) and the central
    ``level`` interval of the observation (latent + noise) per row; ``samples`` ``(Spec.n_samples,
    n)`` joint draws of the observations when ``key`` is given. Without a key the prediction is
    deterministic (the latent draws integrating ``q(h)`` are stored in the fit).
    """
    level = check_level(level)
    joint = predict_restarts(fit, query)
    return prediction_from_joint(joint, key=key, level=level, n_samples=fit.spec.n_samples)
