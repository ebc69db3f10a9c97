r"""The learning-curve contract: :class:`Spec`, :class:`Fit`, :func:`fit_core`, :func:`fit`, :func:`predict`.

``fit(key, data, spec)`` fits a hierarchical GP on **every row** of ``data`` (rows = observed
training points; see :mod:`jaxscale.learning_curves.frame` for the columns) and
``predict(fit, query)`` returns the joint predictive of any query rows: continuations of training
curves, or whole curves never observed, of known tasks and instances, and with
``handle_unknown="prior"`` of tasks and instances the training table never had (:func:`with_labels`).

Models (``Spec.model``):

* ``"magp"``: the MaGP of Schram et al. 2025 (:mod:`.magp`): tasks correlated through latent
  vectors ``h_d`` with a Gaussian ``q(h)``, instance deviations shared across tasks.
* ``"magp_desc"``: MaGP plus numeric configuration descriptors (:mod:`.magp_desc`); it can predict
  curves of a task without any training row from the task's descriptors.
* ``"magp_law"``: the law-informed model (:mod:`.law_gp`): a saturating power law in the
  descriptors and ``ln(step)`` fitted to the loss, and the descriptor MaGP on its residuals, so a
  larger, unseen size follows the law and the GP corrects it. Needs positive losses.
* ``"dhgp"``: the deep hierarchical GP baseline of Hensman et al. 2013 (:mod:`.dhgp`).

Preprocessing (all leak-free, from the training rows only): the models take ``x = ln(step)``
as is; the loss is z-scored per task (a task without training rows gets the pooled constants or,
for ``magp_desc``, constants regressed on its task descriptors; ``magp_law`` z-scores the residuals of
its law with one pair of constants for every task). Descriptors are log-transformed
(``Spec.log_descriptors``) and standardised over the training curves.

The prediction is the equal-weight mixture over the finite restarts of each restart's joint
Gaussian (``q(h)`` integrated by moment matching over ``Spec.n_h`` latent draws fixed at fit
time, so a fit predicts deterministically); ``lower``/``upper`` are the exact central interval
of that mixture for the OBSERVATION (latent + noise); ``samples`` are joint draws of the
observations when a key is given.
"""
from __future__ import annotations

import warnings
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from jaxscale._log import get_logger, heartbeat, progress
from jaxscale._pytree import pytree_dataclass, static_field
from jaxscale._registry import register_moved
from jaxscale.config import warn_if_float32
from jaxscale.gp import gaussian_nll
from jaxscale.infer import minimize_lbfgs, sharded_vmap
from jaxscale.infer.prediction import Prediction, check_fit, check_key, check_level, warn_extrapolation
from jaxscale.learning_curves import desc_predict, dhgp, law_gp, magp, magp_desc, magp_predict
from jaxscale.learning_curves.descriptors import DescTables
from jaxscale.learning_curves.diagnostics import adam_convergence, adam_report, lbfgs_report, warn_report
from jaxscale.learning_curves.frame import Data, _vocabulary, curve_ids, frame_kwargs, from_frame
from jaxscale.learning_curves.magp_predict import JointPrediction, Marginals
from jaxscale.learning_curves.problem import Points
from jaxscale.learning_curves.spec import (
    DESC_MODELS,
    GP_MAX_POINTS,
    GP_STEP_EXPONENT,
    GP_STEP_POINTS,
    GP_STEP_SECONDS,
    GP_WARN_POINTS,
    MODELS,
    Spec,
)

__all__ = ["MODELS", "Spec", "Fit", "fit_core", "fit", "predict", "predict_restarts", "predict_marginals",
           "prediction_from_joint", "prediction_from_marginals", "marginal_moments", "mixture_interval",
           "restart_marginals", "as_query", "check_codes", "n_hyperparameters", "fit_report", "extrapolation",
           "EXTRAPOLATION_UNIT", "warn_extrapolation_of", "extrapolation_distance", "extrapolation_summary"]


register_moved(Spec, __name__)  # defined here before it moved to .spec


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
      converged: ``(R,)`` whether each restart's optimiser converged (Adam: the negative ELBO
        stopped falling, see :mod:`.diagnostics`; L-BFGS: gradient tolerance met).
      law, law_cov: ``magp_law`` only: the fitted :class:`~.law_gp.CurveLaw` (the mean) and the
        covariance of its flat parameters; ``y_mean``/``y_std`` then z-score its residuals.
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
    converged: jax.Array | None = None
    law: "law_gp.CurveLaw | None" = None
    law_cov: jax.Array | None = None
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


def _task_scaler(d, y, n_tasks: int, w=None):
    """Per-task mean / std (ddof 0) with the pooled constants for tasks with < 1 (mean) / < 2 (std)
    rows; ``w``: 1 real row / 0 padding."""
    w = jnp.ones_like(y) if w is None else w
    y = y * w
    cnt = jax.ops.segment_sum(w, d, n_tasks)
    s1 = jax.ops.segment_sum(y, d, n_tasks)
    s2 = jax.ops.segment_sum(y * y, d, n_tasks)
    safe = jnp.maximum(cnt, 1.0)
    n = jnp.sum(w)
    pooled = jnp.sum(y) / n
    mean = jnp.where(cnt > 0, s1 / safe, pooled)
    var = jnp.where(cnt > 1, s2 / safe - (s1 / safe) ** 2, jnp.sum(y * y) / n - pooled**2)
    return mean, jnp.sqrt(jnp.maximum(var, 1e-12))


def _transform_descriptors(desc, spec: Spec):
    desc = jnp.asarray(desc, _float())
    return jnp.log(desc) if spec.log_descriptors else desc


def _descriptor_scaling(z, cid, n_curves: int, w=None):
    """Mean / std of every descriptor over the distinct curves present (each curve counted once;
    ``w``: 1 real row / 0 padding)."""
    w = jnp.ones(z.shape[0], z.dtype) if w is None else w
    cnt = jax.ops.segment_sum(w, cid, n_curves)
    present = (cnt > 0).astype(z.dtype)[:, None]
    per = jax.ops.segment_sum(z * w[:, None], cid, n_curves) / jnp.maximum(cnt, 1.0)[:, None]
    n = jnp.maximum(jnp.sum(present), 1.0)
    center = jnp.sum(per * present, 0) / n
    std = jnp.sqrt(jnp.sum(((per - center) ** 2) * present, 0) / n)
    return center, jnp.where(std > 0, std, 1.0)


def _tables(zs, d, r, levels: tuple, n_tasks: int, n_inst: int, w=None) -> DescTables:
    """Per-task, per-instance and per-curve descriptor tables from standardised rows (absent codes: 0;
    ``w``: 1 real row / 0 padding)."""
    w = jnp.ones(zs.shape[0], zs.dtype) if w is None else w

    def per(code, n, cols):
        if not cols:
            return jnp.zeros((n, 0), zs.dtype)
        v = zs[:, list(cols)]
        cnt = jax.ops.segment_sum(w, code, n)
        return jax.ops.segment_sum(v * w[:, None], code, n) / jnp.maximum(cnt, 1.0)[:, None]

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


def _points(x, d, r, n_inst: int, y, offset: int = 0, w=None) -> Points:
    n = x.shape[0]
    return Points(x, offset + jnp.arange(n), r, d, d * n_inst + r, y, w)


def row_bucket(n: int) -> int:
    """Padded row count: multiples of 16 up to 128, then 8 sizes per doubling (padding adds < 12.5 %
    rows), so tables of similar length reuse one compiled fit and prediction."""
    n = max(int(n), 1)
    step = 16 if n <= 128 else 1 << (n.bit_length() - 4)
    return -(-n // step) * step


def pad_data(data: Data, n: int) -> tuple[Data, jax.Array]:
    """``data`` with ``n - len(data)`` inert rows appended (codes 0, step 0, loss and descriptors 1),
    and the row weights (1 real / 0 padding)."""
    k = n - len(data)
    if k < 0:
        raise ValueError(f"cannot pad {len(data)} rows to {n}")
    # on the host (NumPy, then one transfer per array): eager device code would compile a small
    # program per operation and shape
    dt = _float()
    w = jax.device_put(np.concatenate([np.ones(len(data), dt), np.zeros(k, dt)]))
    if k == 0:
        return data, w

    def cat(a, v):
        if a is None:
            return None
        a = np.asarray(a)
        return jax.device_put(np.concatenate([a, np.full((k,) + a.shape[1:], v, a.dtype)]))

    return data.replace(task=cat(data.task, 0), instance=cat(data.instance, 0), x=cat(data.x, 0.0),
                        y=cat(data.y, 1.0), descriptors=cat(data.descriptors, 1.0), compute=cat(data.compute, 1.0),
                        row_id=None), w


# ----------------------------------------------------------------------------- fit
class _Prepared(NamedTuple):
    """What the restarts' optimiser needs and what the fit keeps besides its result (see
    :func:`fit_core`): the training points as the GP sees them, the descriptor tables (``None``
    for ``magp``), the z-score constants, the descriptor scaling, the scale regression, the law
    (``magp_law``) and the keys of the restarts and of the prediction draws."""

    x: jax.Array
    pts: Points
    tables: "magp_desc.DescTables | None"
    y_mean: jax.Array
    y_std: jax.Array
    center: jax.Array
    scale: jax.Array
    coef: jax.Array
    law: "law_gp.CurveLaw | None"
    law_cov: jax.Array | None
    k_fit: jax.Array
    k_h: jax.Array


def _prepare(key, data: Data, spec: Spec, w=None) -> _Prepared:
    D, R = data.n_tasks, data.n_instances
    dt = _float()
    x = jnp.asarray(data.x, dt)
    y = jnp.asarray(data.y, dt)
    d = jnp.asarray(data.task, jnp.int32)
    r = jnp.asarray(data.instance, jnp.int32)
    padded = w is not None
    w = jnp.ones_like(y) if w is None else jnp.asarray(w, dt)
    wp = w if padded else None  # Points without padding keep w=None (the unpadded Gram)
    y_mean, y_std = _task_scaler(d, y, D, w)
    pts = _points(x, d, r, R, (y - y_mean[d]) / y_std[d] * w, w=wp)
    k_fit, k_h = jax.random.split(key)
    k = data.descriptors.shape[1]
    center, scale = jnp.zeros((k,), dt), jnp.ones((k,), dt)
    n_task_desc = sum(lev == "task" for lev in data.descriptor_levels) if spec.model == "magp_desc" else 0
    law = law_cov = tables = None
    coef = jnp.zeros((1 + n_task_desc, 2), dt)
    if spec.model in DESC_MODELS:
        z = _transform_descriptors(data.descriptors, spec)
        center, scale = _descriptor_scaling(z, d * R + r, D * R, w)
        tables = _tables((z - center) / scale, d, r, data.descriptor_levels, D, R, w)
        if spec.model == "magp_law":
            cid = d * R + r
            law, law_cov, zr, mu, sd = law_gp.fit_law_residuals(jax.random.fold_in(k_h, 1), tables.curve[cid], x, y,
                                                                 cid, D * R, w)
            y_mean, y_std = jnp.full((D,), mu, dt), jnp.full((D,), sd, dt)
            pts = _points(x, d, r, R, zr, w=wp)
        if spec.model == "magp_desc":
            observed = jax.ops.segment_sum(w, d, D) > 0
            coef = _scale_regression(tables.task, y_mean, y_std, observed)
    elif spec.model not in MODELS:
        raise ValueError(f"unknown model {spec.model!r}; choose one of {MODELS}")
    return _Prepared(x, pts, tables, y_mean, y_std, center, scale, coef, law, law_cov, k_fit, k_h)


def _adam_problem(prep: _Prepared, data: Data, spec: Spec):
    """``(loss_fn, args, latent_shape, init)`` of the Adam models' ELBO (:func:`.magp.adam_elbo`)."""
    dt = prep.x.dtype
    if spec.model == "magp":
        D, q = data.n_tasks, spec.q
        return magp.magp_loss, (prep.x, prep.pts), (D, q), lambda k: magp.init_magp(k, D, q, dt)
    tables = prep.tables
    return (magp_desc.desc_loss, (tables, prep.x, prep.pts), (tables.task.shape[0], spec.q),
            lambda k: magp_desc.init_desc(k, tables, spec.q, dt))


def _finish(prep: _Prepared, params, loss, history, jit, converged, data: Data, spec: Spec) -> Fit:
    q = 0 if spec.model == "dhgp" else spec.q
    if history is not None:
        converged = adam_convergence(history)[0]
    leaves = [jnp.reshape(a, (spec.restarts, -1)) for a in jax.tree.leaves(params)]
    ok = jnp.isfinite(loss) & jnp.all(jnp.stack([jnp.all(jnp.isfinite(a), 1) for a in leaves]), 0)
    eps_h = jax.random.normal(prep.k_h, (spec.n_h, data.n_tasks, q), prep.x.dtype)
    return Fit(params, loss, history, jit, ok, data, prep.y_mean, prep.y_std, eps_h, prep.center, prep.scale,
               prep.coef, converged, prep.law, prep.law_cov, spec,
               data.task_labels, data.instance_labels, data.descriptor_names, data.descriptor_levels, data.x_is_log,
               data.columns)


def fit_core(key, data: Data, spec: Spec = Spec(), w=None) -> Fit:
    """The pure numerical fit: z-scoring, descriptor tables and the restarts' optimiser over arrays.

    No host-side checks or warnings (see :func:`fit`): jit-able with ``spec`` static, and
    ``jax.vmap(lambda k: fit_core(k, data, spec))(keys)`` equals separate calls. Restart ``i``
    starts from ``fold_in(k_fit, i)``, ``k_fit, k_h = split(key)``; ``k_h`` draws the fixed latent
    draws of the predictions. ``ok`` marks the restarts whose loss and parameters are finite.
    ``w``: ``(n,)`` 1 for a real row, 0 for an inert padding row (:func:`pad_data`); padding
    changes no number beyond rounding. The restarts' Adam steps run in one ``lax.scan`` here;
    :func:`fit` runs the same steps in chunks from the host (progress, checkpoints).
    """
    prep = _prepare(key, data, spec, w)
    if spec.model == "dhgp":
        x0 = dhgp.DHGPParams(jnp.zeros(3, prep.x.dtype), jnp.zeros(3, prep.x.dtype), jnp.zeros((), prep.x.dtype))
        res = minimize_lbfgs(dhgp.dhgp_loss, x0, prep.x, prep.pts, max_steps=spec.lbfgs_steps, tol=1e-6)
        jit1 = gaussian_nll(dhgp._gram(res.params, prep.x, prep.pts), prep.pts.y)[1]
        rep = lambda a: jnp.broadcast_to(a, (spec.restarts,) + jnp.shape(a))  # noqa: E731
        return _finish(prep, jax.tree.map(rep, res.params), rep(res.loss), None, rep(jit1),
                       rep(jnp.asarray(res.converged, bool)), data, spec)
    loss_fn, args, latent, init = _adam_problem(prep, data, spec)
    x0, krun, kfin = magp.restart_starts(prep.k_fit, spec.restarts, init)
    # restarts split over all devices (one CPU device: one after another), as in fit()
    params, loss, history, jit = sharded_vmap(
        lambda a: magp.adam_elbo(loss_fn, a[0], a[1], a[2], latent, spec.steps, spec.learning_rate, spec.n_mc,
                                 prep.x.dtype, *args, decay=spec.lr_decay), (x0, krun, kfin), linalg=True)
    return _finish(prep, params, loss, history, jit, None, data, spec)


_fit_core_jit = jax.jit(fit_core, static_argnames=("spec",))


def _check_spec(spec: Spec) -> None:
    if not isinstance(spec, Spec):
        raise ValueError(f"spec must be a learning_curves.Spec, got {type(spec).__name__}")
    if spec.model not in MODELS:
        raise ValueError(f"Spec.model {spec.model!r} is not one of {MODELS}")
    for name in ("restarts", "steps", "n_mc", "n_h", "n_samples", "lbfgs_steps"):
        if int(getattr(spec, name)) < 1:
            raise ValueError(f"Spec.{name} must be >= 1, got {getattr(spec, name)}")
    if spec.q < (0 if spec.model in DESC_MODELS else 1):
        raise ValueError(f"Spec.q (latent dimension) must be >= 1 for {spec.model}, got {spec.q}")
    if not spec.learning_rate > 0:
        raise ValueError(f"Spec.learning_rate must be > 0, got {spec.learning_rate}")


def _ids(data: Data, mask) -> str:
    """The first rows selected by ``mask`` as the user's row ids (file lines) when the data carries them."""
    pos = np.flatnonzero(np.asarray(mask))
    ids = pos if data.row_id is None else np.asarray(data.row_id)[pos]
    more = f" (+{len(ids) - 5} more)" if len(ids) > 5 else ""
    return "[" + ", ".join(str(int(i)) for i in ids[:5]) + "]" + more


def _column(data: Data, role: str, default: str) -> str:
    return dict(data.columns).get(role, default)


def check_codes(data: Data, what: str = "learning-curve data") -> None:
    """Array lengths agree; task / instance codes are integers inside their vocabularies.

    A code outside ``0 .. n - 1`` would be clamped or dropped by the array programs (and collide
    with another curve's id), so it is refused, naming the rows.
    """
    n = len(data)
    for name in ("task", "instance", "y", "descriptors", "compute", "row_id"):
        a = getattr(data, name)
        if a is not None and np.shape(a)[0] != n:
            shapes = {k: np.shape(getattr(data, k)) for k in ("x", "task", "instance", "y", "descriptors")}
            raise ValueError(f"{what}: arrays must have one entry per row; got {shapes} and {name}.shape="
                             f"{np.shape(a)}")
    for name, labels in (("task", data.task_labels), ("instance", data.instance_labels)):
        if len(set(labels)) != len(labels):
            raise ValueError(f"{what}: the {name} vocabulary {list(labels)[:10]} has duplicate labels")
        c = np.asarray(getattr(data, name))
        frac = c != np.round(c)
        out = (c < 0) | (c >= len(labels))
        bad = frac | out
        if bad.any():
            raise ValueError(f"{what}: {int(bad.sum())} {name} code(s) are not integers in 0..{len(labels) - 1} "
                             f"(the {len(labels)} {name} labels) at rows {_ids(data, bad)} (first: "
                             f"{float(c[bad][0]):g}); they would be clamped or collide with another curve. Build the "
                             "data with from_frame, or fix the codes")


def _duplicates(data: Data, what: str) -> None:
    key = pd.DataFrame({"t": np.asarray(data.task), "i": np.asarray(data.instance), "x": np.asarray(data.x)})
    dup = key.duplicated(keep=False).to_numpy()
    if dup.any():
        cols = tuple(_column(data, r, r) for r in ("task", "instance", "x"))
        raise ValueError(f"{what}: {int(dup.sum())} rows share the same {cols} point at rows {_ids(data, dup)}; a "
                         "curve has one value per step and a repeated row would be counted twice. Remove or average "
                         "the duplicates first")


def n_hyperparameters(data: Data, spec: Spec) -> int:
    """Hyper-parameters fitted by type-II maximum likelihood (the variational task latents,
    regularised by their prior, are not counted): MaGP ``4 + q + D`` (kernel variances and
    lengthscales, latent lengthscales, per-task noise); descriptor MaGP adds the size term (2) and
    one lengthscale per descriptor; the law-informed model adds its law (``4 + 2k`` for ``k``
    descriptors); DHGP ``7``."""
    D = data.n_tasks
    if spec.model == "dhgp":
        return 7
    k = data.descriptors.shape[1] if spec.model in DESC_MODELS else 0
    law = 4 + 2 * k if spec.model == "magp_law" else 0
    return 4 + spec.q + D + (2 + k if spec.model in DESC_MODELS else 0) + law


def _check_size(n: int, n_curves: int, spec: Spec) -> None:
    """On a CPU, warn when a GP fit of ``n`` points (``n_curves`` curves) will take long and refuse
    one that cannot fit in memory, naming the fix: fewer logged steps per run, or fewer runs."""
    if n <= GP_WARN_POINTS or jax.default_backend() != "cpu":
        return
    # points that fit in about 15 minutes at the measured cost per restart-step
    budget = 900.0 / (max(spec.restarts, 1) * max(spec.steps, 1) * GP_STEP_SECONDS)
    n_ok = max(int(GP_STEP_POINTS * budget ** (1 / GP_STEP_EXPONENT)), GP_WARN_POINTS)
    per_curve = min(n_ok // max(n_curves, 1), 50)
    if per_curve >= 8:
        fix = (f"keep a few dozen log-spaced steps per run: jaxscale.data.thin(df, by=[run columns], x_col=step, "
               f"per_curve={per_curve}) (CLI: --thin {per_curve}), or fewer runs (--where)")
    else:
        fix = (f"fit fewer runs (--where): {n_curves} curves are {8 * n_curves} points even at 8 logged steps each, "
               f"while about {n_ok} points fit in 15 minutes here (e.g. {max(n_ok // 10, 2)} runs at --thin 10); "
               f"a GP shares strength across tens of curves, not hundreds")
    if n > GP_MAX_POINTS:
        raise ValueError(f"fit: {n} training points: a {spec.model} fit factorises a {n} x {n} kernel matrix "
                         f"({8 * n * n / 1e9:.1f} GB per copy) at every optimiser step, more than a CPU fit can hold "
                         f"(limit {GP_MAX_POINTS}); {fix}")
    if spec.model == "dhgp":  # L-BFGS, not the Adam loop timed below
        return
    secs = spec.restarts * spec.steps * GP_STEP_SECONDS * (n / GP_STEP_POINTS) ** GP_STEP_EXPONENT
    warnings.warn(f"fit: {n} training points ({n_curves} curves): a {spec.model} fit's cost grows about as "
                  f"n^{GP_STEP_EXPONENT:g}; {spec.restarts} restarts x {spec.steps} Adam steps will take roughly "
                  f"{f'{secs / 3600:.0f} h' if secs > 5400 else f'{secs / 60:.0f} min'} on 2 "
                  f"CPU cores (about {GP_STEP_SECONDS * 1e3:.0f} ms per restart-step at {GP_STEP_POINTS} points). "
                  f"To go faster, {fix}"
                  + ("" if secs < 3600 or spec.ckpt_dir else "; to keep what an interrupted fit did, checkpoint it "
                     "(Spec(ckpt_dir=...); CLI: --ckpt-dir DIR, and the same command again resumes)"),
                  RuntimeWarning, stacklevel=4)


def _check_training(data: Data, spec: Spec) -> None:
    if not isinstance(data, Data):
        raise ValueError(f"fit takes a learning_curves.Data (from_frame), got {type(data).__name__}")
    what = "fit"
    check_codes(data, what)
    n = len(data)
    if n < 2:
        raise ValueError(f"fit needs at least 2 training rows, got {n}")
    y = np.asarray(data.y, float)
    ycol = _column(data, "target", "y")
    bad = ~np.isfinite(y)
    if bad.any():
        raise ValueError(f"fit: {int(bad.sum())} of {n} training rows have no finite target in {ycol!r} (rows "
                         f"{_ids(data, bad)}); fit on the rows with a loss value and predict the "
                         "others with predict(fit, rows)")
    _duplicates(data, what)
    _check_size(n, np.unique(curve_ids(data)).size, spec)
    need = n_hyperparameters(data, spec) + 1
    if n < need:
        raise ValueError(f"fit: {n} training points for {spec.model}, which fits {need - 1} hyper-parameters "
                         f"(with {data.n_tasks} task(s)); need at least {need} points. Add logged points or runs")
    if np.ptp(y) == 0:
        raise ValueError(f"fit: the target column {ycol!r} is constant ({y[0]:.6g}) on all {n} training rows; there "
                         "is no curve to learn. Check the column (--y-col) and the rows kept")
    task = np.asarray(data.task)
    tcol = _column(data, "task", "task")
    for t in np.unique(task):
        m = task == t
        if m.sum() >= 2 and np.ptp(y[m]) == 0:
            raise ValueError(f"fit: the target column {ycol!r} is constant ({y[m][0]:.6g}) within task {tcol!r} = "
                             f"{data.task_labels[int(t)]} at rows {_ids(data, m)}; its per-task scale is zero, so "
                             "the model cannot standardise it. Drop that task's rows or check the column")
    if spec.model == "magp_law" and np.any(y <= 0):
        bad = y <= 0
        raise ValueError(f"fit: model 'magp_law' fits a power law to the log of the target, but {int(bad.sum())} "
                         f"training row(s) have {ycol!r} <= 0 (rows {_ids(data, bad)}); use a positive loss column "
                         "or the model magp_desc")
    if spec.model in DESC_MODELS:
        if data.descriptors.shape[1] == 0:
            raise ValueError(f"model {spec.model!r} needs descriptor columns: from_frame(..., descriptor_cols=[...]) "
                             "(CLI: --descriptor-cols C1,C2), e.g. the width and depth of each run")
        desc = np.asarray(data.descriptors, float)
        for j, name in enumerate(data.descriptor_names):
            if np.ptp(desc[:, j]) == 0:
                raise ValueError(f"fit: descriptor column {name!r} is constant ({desc[0, j]:.6g}) on every training "
                                 "row; it carries no information about the configurations. Drop it from "
                                 "descriptor_cols (CLI --descriptor-cols)")
        if spec.log_descriptors:
            neg = desc <= 0
            if neg.any():
                j = int(np.flatnonzero(neg.any(0))[0])
                col = data.descriptor_names[j]
                raise ValueError(f"descriptor column {col!r} has {int(neg[:, j].sum())} value(s) <= 0 at rows "
                                 f"{_ids(data, neg[:, j])} but descriptors are log-transformed; pass "
                                 "Spec(log_descriptors=False) (CLI: --no-log-descriptors) or use positive sizes")


def fit_report(fit: "Fit") -> dict:
    """``{converged, n_converged, n_restarts, reason}`` of a fit's optimiser (see :mod:`.diagnostics`)."""
    spec = fit.spec
    if spec.model == "dhgp":
        return lbfgs_report(fit.converged, fit.ok, spec.lbfgs_steps, "dhgp")
    return adam_report(fit.history, fit.ok, spec.steps, spec.model)


_prepare_jit = jax.jit(_prepare, static_argnames=("spec",))
_finish_jit = jax.jit(_finish, static_argnames=("spec",))


@partial(jax.jit, static_argnames=("spec",))
def _starts_jit(prep: _Prepared, data: Data, spec: Spec):
    return magp.restart_starts(prep.k_fit, spec.restarts, _adam_problem(prep, data, spec)[3])


def _fit_adam(key, data: Data, spec: Spec, w, what: str, ckpt_dir, force_new: bool) -> Fit:
    """:func:`fit_core` of an Adam model with its steps driven from the host in chunks
    (:func:`.magp.adam_restarts`: a progress bar, and checkpoints in ``ckpt_dir``); the same
    numbers as the single program."""
    prep = _prepare_jit(key, data, spec, w)
    x0, krun, kfin = _starts_jit(prep, data, spec)
    loss_fn, args, latent, _ = _adam_problem(prep, data, spec)
    ckpt = None
    if ckpt_dir is not None:
        from jaxscale import __version__
        from jaxscale._checkpoint import Checkpoints, array_digest

        fingerprint = {"version": __version__, "what": "learning-curve fit", "spec": spec._asdict(),
                       "data": array_digest(data, w), "key": array_digest(key)}
        ckpt = Checkpoints(ckpt_dir, fingerprint, force_new, what,
                           fix="Choose a new folder (--ckpt-dir), or discard its checkpoints with --force-new "
                               "(Python: Spec(ckpt_force_new=True))")
    params, loss, history, jit = magp.adam_restarts(loss_fn, x0, krun, kfin, latent, spec.steps, spec.learning_rate,
                                                    spec.n_mc, args, decay=spec.lr_decay, desc=what, ckpt=ckpt)
    return jax.block_until_ready(_finish_jit(prep, params, loss, history, jit, None, data, spec))


def fit(key, data: Data, spec: Spec = Spec()) -> Fit:
    """Fit ``spec.model`` on every row of ``data`` (host checks, then :func:`fit_core` compiled).

    Refuses (``ValueError``, naming the column, rows and fix) before fitting: codes outside the
    vocabularies, duplicate points, a constant target (overall or within a task), fewer points
    than :func:`n_hyperparameters` + 1, and for ``magp_desc`` missing, constant or non-positive
    descriptors. Warns (``RuntimeWarning``) naming restarts that went non-finite (excluded from
    predictions), escalated Cholesky jitters, and an optimiser that did not converge
    (``Fit.converged``; :func:`fit_report`); raises ``ValueError`` when every restart failed.

    The Adam models (magp, magp_desc, magp_law) run their steps in chunks driven from the host: a
    progress bar on a terminal, and with ``spec.ckpt_dir`` a checkpoint after every chunk (the
    restarts' parameters, Adam states and loss history, beside a fingerprint of the spec, the
    data and the key). The same call again resumes from the last one; a folder written by another
    fit is refused naming what differs (``spec.ckpt_force_new``: discarded). The numbers equal
    :func:`fit_core`'s (one ``lax.scan``), resumed or not.

    Args:
      key: ``jax.random`` key: the restarts' starts and the latent draws stored for predictions.
      data: the training rows, e.g. ``from_frame(read_table(path), ...)`` (``data.rows(mask)``
        selects some).
      spec: the model and its optimiser (:class:`Spec`: ``model``, ``restarts``, ``steps``, ...).

    Returns:
      :class:`Fit`: every restart's hyper-parameters (``ok``: the finite ones), the training rows,
      and the report of :func:`fit_report` (``converged``).
    """
    check_key(key, "learning-curve fit: key")
    _check_spec(spec)
    _check_training(data, spec)
    warn_if_float32("learning-curve data")
    # names do not enter the numbers, and rows are padded to a bucket: compile once per bucket of
    # table lengths, whatever the table's labels and columns
    padded, w = pad_data(_canonical(data), row_bucket(len(data)))
    ckpt_dir, force_new = spec.ckpt_dir, spec.ckpt_force_new
    spec = spec._replace(ckpt_dir=None, ckpt_force_new=False)  # where to checkpoint changes no number
    what = f"{spec.model} fit ({spec.restarts} restarts on {len(data)} points)"
    with heartbeat(what):
        if spec.model == "dhgp":  # one L-BFGS program, no checkpoints
            if ckpt_dir is not None:
                raise ValueError("dhgp is fitted by one L-BFGS run, which keeps no checkpoints; leave out "
                                 "--ckpt-dir (Spec.ckpt_dir) or fit an Adam model (magp, magp_desc, magp_law)")
            out = jax.block_until_ready(_fit_core_jit(key, padded, spec, w))
        else:
            out = _fit_adam(key, padded, spec, w, what, ckpt_dir, force_new)
    ok = magp.report_fit_health(out.loss, out.params, out.jitter, spec.model, history=out.history)
    out = out.replace(ok=jnp.asarray(ok), train=data, task_labels=data.task_labels,
                      instance_labels=data.instance_labels, descriptor_names=data.descriptor_names,
                      x_is_log=data.x_is_log, columns=data.columns)
    warn_report(fit_report(out))
    _warn_law_without_floor(out)
    return out


def _warn_law_without_floor(fit: Fit) -> None:
    """``magp_law``: warn when the law's irreducible loss ``E`` went to (nearly) 0, as Chinchilla
    does: the runs do not show the loss levelling off, so the trend the GP follows far outside the
    runs keeps falling as a pure power law, below any floor a loss has."""
    if fit.law is None:
        return
    e = float(np.exp(np.asarray(fit.law.log_e)))
    y = np.asarray(fit.train.y, float)
    low = float(np.min(y[np.isfinite(y)]))
    if e < 1e-3 * low:
        col = _column(fit.train, "target", "loss")
        warnings.warn(f"magp_law fit: the law's irreducible {col} E = {e:.3g} went to 0 (the lowest training value is "
                      f"{low:.4g}): these runs do not show the loss levelling off, so far beyond them the trend keeps "
                      "falling as a pure power law and the predictions with it (their lower ends may reach 0); treat "
                      "long extrapolations with care, or add longer or larger runs", RuntimeWarning, stacklevel=3)


# ----------------------------------------------------------------------------- predict
def _remap(codes, labels_from: tuple, labels_to: tuple, what: str):
    if tuple(labels_from) == tuple(labels_to):
        return np.asarray(codes)
    index = {lab: i for i, lab in enumerate(labels_to)}
    unknown = sorted({labels_from[c] for c in np.asarray(codes) if labels_from[c] not in index})
    if unknown:
        raise ValueError(f"query {what} label(s) {unknown[:5]} are unknown to the model (it knows "
                         f"{list(labels_to)[:20]}); predict(..., handle_unknown='prior') predicts them (a new task "
                         "starts from the prior over its latent), or refit with those runs in the table")
    return np.asarray([index[labels_from[c]] for c in np.asarray(codes)], np.int32)


def as_query(fit: Fit, query) -> Data:
    """A query (DataFrame or Data) as :class:`Data` coded with the fit's vocabularies."""
    if isinstance(query, pd.DataFrame):
        return from_frame(query, **frame_kwargs(fit.columns), x_is_log=fit.x_is_log, require_target=False,
                          task_labels=fit.task_labels, instance_labels=fit.instance_labels,
                          descriptor_levels=fit.descriptor_levels, what="learning-curve query")
    if not isinstance(query, Data):
        raise ValueError(f"query must be a pandas DataFrame or a learning_curves.Data, got {type(query).__name__}")
    check_codes(query, "query")
    if tuple(query.descriptor_names) != tuple(fit.descriptor_names):
        raise ValueError(f"query descriptors {list(query.descriptor_names)} differ from the model's "
                         f"{list(fit.descriptor_names)}")
    task = _remap(query.task, query.task_labels, fit.task_labels, "task")
    inst = _remap(query.instance, query.instance_labels, fit.instance_labels, "instance")
    return query.replace(task=task, instance=inst, task_labels=fit.task_labels,
                         instance_labels=fit.instance_labels, descriptor_levels=fit.descriptor_levels)


def _new_labels(fit: Fit, query) -> tuple[tuple, tuple]:
    """Task and instance labels of ``query`` the fit never saw (in the order a table's vocabulary takes)."""
    if isinstance(query, Data):
        values = tuple(pd.Series([labels[c] for c in np.unique(np.asarray(codes))], dtype=object)
                       for codes, labels in ((query.task, query.task_labels), (query.instance, query.instance_labels)))
    elif isinstance(query, pd.DataFrame):
        kw = frame_kwargs(fit.columns)
        values = tuple(query[c].dropna() if c in query.columns else pd.Series([], dtype=object)
                       for c in (kw["task_col"], kw["instance_col"]))
    else:
        return (), ()
    return tuple(tuple(lab for lab in _vocabulary(v) if lab not in known) if len(v) else ()
                 for v, known in zip(values, (set(fit.task_labels), set(fit.instance_labels))))


def with_labels(fit: Fit, query) -> tuple[Fit, Data]:
    """``(fit, query as Data)``: the fit's vocabularies extended by the task and instance labels of the
    query it never saw, so that runs not in the training table (a new size, a new setting) are
    predicted like the tasks and instances of the table without training rows: a new task gets the
    prior over its latent, ``h ~ N(0, I)`` (the optimum of the ELBO for a task without rows), the
    pooled noise and z-score constants (``magp_law``: its one pair; ``magp_desc``: regressed on the
    task descriptors where the fit has them), and latent draws from a fixed key; a new instance needs
    no parameter. ``dhgp`` has per-task functions and refuses unknown labels."""
    new_t, new_r = _new_labels(fit, query)
    if not (new_t or new_r):
        return fit, as_query(fit, query)
    if fit.spec.model == "dhgp":
        raise ValueError(f"query label(s) {list(new_t + new_r)[:5]} are unknown to the model, and dhgp (a function per "
                         "task and curve) cannot predict runs of labels it never saw: fit magp, magp_desc or "
                         "magp_law, or refit with those runs in the table")
    D, Dn = len(fit.task_labels), len(new_t)
    p = fit.params
    rest, q = np.shape(p.h_mean)[0], np.shape(p.h_mean)[2]

    def grow(a, value, shape):  # new tasks on axis 1 (axis 0: restarts)
        return jnp.concatenate([jnp.asarray(a), jnp.full(shape, value, jnp.asarray(a).dtype)], 1)

    params = p._replace(h_mean=grow(p.h_mean, 0.0, (rest, Dn, q)), log_h_std=grow(p.log_h_std, 0.0, (rest, Dn, q)),
                        log_noise=grow(p.log_noise, float(np.log(magp.INIT_NOISE_VAR)), (rest, Dn)))
    if fit.spec.model == "magp_law":  # one pair of constants for the law's residuals
        mu, sd = float(np.asarray(fit.y_mean)[0]), float(np.asarray(fit.y_std)[0])
    else:  # the pooled constants of a task without training rows (see _task_scaler)
        y = np.asarray(fit.train.y, float)
        mu, sd = float(y.mean()), float(np.sqrt(max(np.mean(y * y) - y.mean() ** 2, 1e-24)))
    eps = jnp.asarray(fit.eps_h)
    extra = jax.random.normal(jax.random.fold_in(jax.random.key(0), D), (eps.shape[0], Dn, eps.shape[2]), eps.dtype)
    tasks, insts = fit.task_labels + new_t, fit.instance_labels + new_r
    fit = fit.replace(params=params, y_mean=jnp.concatenate([jnp.asarray(fit.y_mean), jnp.full((Dn,), mu)]),
                      y_std=jnp.concatenate([jnp.asarray(fit.y_std), jnp.full((Dn,), sd)]),
                      eps_h=jnp.concatenate([eps, extra], 1), task_labels=tasks, instance_labels=insts,
                      train=fit.train.replace(task_labels=tasks, instance_labels=insts))
    return fit, as_query(fit, query)


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
    def one(p):
        if model == "magp":
            return magp_predict.joint_from_latents(p, magp_predict.latent_draws(p, eps_h), xgrid, train, query)
        if model in DESC_MODELS:
            return desc_predict.desc_joint_from_latents(p, magp_predict.latent_draws(p, eps_h), tables, observed,
                                                        xgrid, train, query)
        return dhgp._joint_one(p, xgrid, train, query)

    # restarts one after another on a CPU device (see sharded_vmap's linalg), vmapped elsewhere
    return sharded_vmap(one, params, linalg=True)


def _marginal_std(params, eps_h, tables, observed, train: Points, query: Points, model: str):
    """:func:`_joint_std`'s means and the diagonal of its covariances (``magp`` and the descriptor
    models), without any ``(M, M)`` matrix."""
    def one(p):
        hs = magp_predict.latent_draws(p, eps_h)
        if model == "magp":
            return magp_predict.marginal_from_latents(p, hs, train, query)
        return desc_predict.desc_marginal_from_latents(p, hs, tables, observed, train, query)

    return sharded_vmap(one, params, linalg=True)


def _canonical(data: Data) -> Data:
    """``data`` with placeholder names: names do not enter the numbers, so programs compiled for one
    table are reused by any table of the same shapes (and descriptor levels)."""
    return data.replace(compute=None, row_id=None, task_labels=tuple(map(str, range(data.n_tasks))),
                        instance_labels=tuple(map(str, range(data.n_instances))),
                        descriptor_names=tuple(f"d{i}" for i in range(len(data.descriptor_names))),
                        x_is_log=False, tokens_per_step=None, columns=())


@partial(jax.jit, static_argnames=("regress", "marginal"))
def _predict_core(fit: Fit, tr: Data, w_tr, q: Data, w_q, observed, regress: bool, marginal: bool = False
                  ) -> JointPrediction | Marginals:
    """The numbers of :func:`predict_restarts` (``marginal``: of :func:`predict_marginals`) on
    padded training and query rows (weights ``w_tr``, ``w_q``: 1 real / 0 padding); ``fit`` holds
    the finite restarts only."""
    spec = fit.spec
    D, R = len(fit.task_labels), len(fit.instance_labels)
    dt = _float()
    d_tr, r_tr = jnp.asarray(tr.task, jnp.int32), jnp.asarray(tr.instance, jnp.int32)
    d_q, r_q = jnp.asarray(q.task, jnp.int32), jnp.asarray(q.instance, jnp.int32)
    y_mean, y_std = jnp.asarray(fit.y_mean, dt), jnp.asarray(fit.y_std, dt)
    x_tr, x_q = jnp.asarray(tr.x, dt), jnp.asarray(q.x, dt)
    y_tr = jnp.asarray(tr.y, dt)
    N, M = x_tr.shape[0], x_q.shape[0]
    query_pts = _points(x_q, d_q, r_q, R, jnp.zeros((M,), dt), offset=N)
    xgrid = jnp.concatenate([x_tr, x_q])
    tables = None
    mu_q, sd_q = y_mean[d_q], y_std[d_q]
    law_q = law_cov_q = 0.0
    if spec.model in DESC_MODELS:
        z = _transform_descriptors(jnp.concatenate([tr.descriptors, q.descriptors]), spec)
        zs = (z - jnp.asarray(fit.desc_center, dt)) / jnp.asarray(fit.desc_scale, dt)
        tables = _tables(zs, jnp.concatenate([d_tr, d_q]), jnp.concatenate([r_tr, r_q]), fit.descriptor_levels, D, R,
                         jnp.concatenate([w_tr, w_q]))
        if spec.model == "magp_law":
            zc_tr, zc_q = tables.curve[d_tr * R + r_tr], tables.curve[d_q * R + r_q]
            y_tr = y_tr - law_gp.law_value(fit.law, zc_tr, x_tr)
            law_q = law_gp.law_value(fit.law, zc_q, x_q)
            law_cov_q = (law_gp.law_prediction_var if marginal else law_gp.law_prediction_cov)(
                fit.law, jnp.asarray(fit.law_cov, dt), zc_q, x_q)
        if regress:  # magp_desc: z-score constants of tasks without training rows from their descriptors
            A = jnp.concatenate([jnp.ones((D, 1), dt), tables.task], 1)
            reg = A @ jnp.asarray(fit.scale_coef, dt)
            mean_d = jnp.where(observed, y_mean, reg[:, 0])
            std_d = jnp.where(observed, y_std, jnp.exp(reg[:, 1]))
            mu_q, sd_q = mean_d[d_q], std_d[d_q]
    train = _points(x_tr, d_tr, r_tr, R, (y_tr - y_mean[d_tr]) / y_std[d_tr] * w_tr, w=w_tr)
    if marginal:
        m, v, nv, _ = _marginal_std(fit.params, jnp.asarray(fit.eps_h, dt), tables, observed, train, query_pts,
                                    spec.model)
        return Marginals(m * sd_q + mu_q + law_q, v * sd_q**2 + law_cov_q, nv * sd_q**2)
    m, C, nv, _ = _joint_std(fit.params, jnp.asarray(fit.eps_h, dt), tables, observed, xgrid, train, query_pts,
                             spec.model)
    return JointPrediction(m * sd_q + mu_q + law_q, C * sd_q[:, None] * sd_q[None, :] + law_cov_q, nv * sd_q**2)


def _predict_padded(fit: Fit, q: Data, marginal: bool = False) -> JointPrediction | Marginals:
    """:func:`predict_restarts` before its rows are cut back: training and query rows padded to
    :func:`row_bucket` sizes, so one compiled program serves tables of similar length."""
    spec = fit.spec
    D = len(fit.task_labels)
    if spec.model in DESC_MODELS:
        _check_descriptor_consistency(fit, q)
    canon = _canonical(fit.train)
    tr, w_tr = pad_data(canon, row_bucket(len(canon)))
    qp, w_q = pad_data(_canonical(q), row_bucket(len(q)))
    observed = np.bincount(np.asarray(fit.train.task), minlength=D) > 0
    n_u = sum(lev == "task" for lev in fit.descriptor_levels)
    regress = bool(spec.model == "magp_desc" and n_u >= 1 and observed.sum() >= n_u + 1 and not observed.all())
    idx = np.flatnonzero(np.asarray(fit.ok))
    fc = fit.replace(params=jax.tree.map(lambda a: jax.device_put(np.asarray(a)[idx]), fit.params), train=None,
                     history=None, loss=None, jitter=None, ok=None, converged=None, task_labels=canon.task_labels,
                     instance_labels=canon.instance_labels, descriptor_names=canon.descriptor_names, x_is_log=False,
                     columns=())
    return _predict_core(fc, tr, w_tr, qp, w_q, jax.device_put(observed), regress, marginal)


def predict_restarts(fit: Fit, query) -> JointPrediction:
    """Per finite restart: joint predictive of the query rows in original units,
    ``JointPrediction(mean (R_ok, M), latent cov (R_ok, M, M), noise_var (R_ok, M))``."""
    q = as_query(fit, query)
    M = len(q)
    j = _predict_padded(fit, q)
    mean, cov, noise = (np.asarray(a) for a in j)  # cut back on the host
    return JointPrediction(*(jax.device_put(a) for a in (mean[:, :M], cov[:, :M, :M], noise[:, :M])))


#: Models whose marginal predictions skip the query covariance (:func:`predict_marginals`).
MARGINAL_MODELS = ("magp", *DESC_MODELS)


def predict_marginals(fit: Fit, query) -> Marginals:
    """Per finite restart: each query row's predictive mean, latent variance and noise variance in
    original units, ``Marginals((R_ok, M) x 3)``: the diagonal of :func:`predict_restarts` without
    its ``(M, M)`` covariances (``magp``, ``magp_desc``, ``magp_law``; ``dhgp`` takes the joint)."""
    q = as_query(fit, query)
    M = len(q)
    if fit.spec.model not in MARGINAL_MODELS:
        j = predict_restarts(fit, q)
        return Marginals(j.mean, jnp.diagonal(j.cov, axis1=-2, axis2=-1), j.noise_var)
    out = _predict_padded(fit, q, marginal=True)
    return Marginals(*(jax.device_put(np.asarray(a)[:, :M]) for a in out))


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
    # host-side preparation: eager device code would compile a small program per operation
    means, sds = np.atleast_2d(np.asarray(means)), np.atleast_2d(np.asarray(sds))
    qs = np.asarray(_mixture_quantile(means, np.maximum(sds, 1e-300),
                                      np.asarray([(1 - level) / 2, (1 + level) / 2], means.dtype)))
    return jax.device_put(qs[0]), jax.device_put(qs[1])


@partial(jax.jit, static_argnames=("n_samples",))
def _mixture_draws(key, mean, cov, noise, n_samples: int):
    R, M = mean.shape
    n_per = -(-n_samples // R)
    S = cov + jax.vmap(jnp.diag)(noise)
    L = jnp.linalg.cholesky(0.5 * (S + jnp.swapaxes(S, -1, -2)) + 1e-12 * jnp.eye(M, dtype=S.dtype))
    eps = jax.random.normal(key, (R, n_per, M), mean.dtype)
    draws = mean[:, None, :] + jnp.einsum("rmk,rsk->rsm", L, eps)
    return jnp.swapaxes(draws, 0, 1).reshape(n_per * R, M)[:n_samples]  # interleaved over restarts


def marginal_moments(joint: JointPrediction) -> tuple[np.ndarray, np.ndarray]:
    """Each restart's mean and observation variance (latent variance + noise) of every row of a
    :class:`JointPrediction`, ``(R, M)`` each (on the host; a single restart's ``(M, M)`` too)."""
    cov = np.asarray(joint.cov)
    cov = cov[None] if cov.ndim == 2 else cov
    var = np.maximum(np.diagonal(cov, axis1=-2, axis2=-1), 0.0) + np.atleast_2d(np.asarray(joint.noise_var))
    return np.atleast_2d(np.asarray(joint.mean)), var


def prediction_from_marginals(mean, sd, level: float, samples=None) -> Prediction:
    """The restart mixture of each row's marginals (means and observation sds, ``(R, M)`` each) as a
    :class:`jaxscale.Prediction`: the mixture mean and its central ``level`` interval."""
    lo, hi = mixture_interval(mean, sd, level)
    return Prediction(jax.device_put(np.mean(mean, 0)), lo, hi, samples)


def prediction_from_joint(joint: JointPrediction, *, key=None, level: float = 0.9, n_samples: int = 256
                          ) -> Prediction:
    """The restart mixture of a :class:`JointPrediction` as a :class:`jaxscale.Prediction` of the
    observations (latent + noise); joint draws when ``key`` is given."""
    mean, var = marginal_moments(joint)  # host-side: no small device program per operation
    samples = None
    if key is not None:
        samples = _mixture_draws(key, mean, joint.cov, joint.noise_var, int(n_samples))
    return prediction_from_marginals(mean, np.sqrt(var), level, samples)


#: How to read :func:`extrapolation` distances (the unit of the warning).
EXTRAPOLATION_UNIT = "training ranges (of ln step, of the descriptors or of numeric labels) outside the training data"


def _range_distance(values, lo, hi, width):
    """How far ``values`` lie outside ``[lo, hi]`` in units of ``width`` (0 inside)."""
    values = np.asarray(values, float)
    return np.maximum(np.maximum(values - hi, lo - values), 0.0) / width


def _numeric_labels(labels: tuple):
    """The labels as numbers (logs when all are > 0) or ``None`` when any is not a number."""
    try:
        v = np.asarray([float(lab) for lab in labels], float)
    except (TypeError, ValueError):
        return None
    if not np.all(np.isfinite(v)):
        return None
    return np.log(v) if np.all(v > 0) else v


def extrapolation(fit: Fit, query) -> np.ndarray:
    """``(n,)`` distance of each query row outside the training data (0 inside); ``inf`` for a row
    the model can only predict from its prior.

    The largest of:

    * **step**: how far ``ln(step)`` lies outside the range of the training rows' ``ln(step)``,
      in units of that range (a continuation to 10x the last training step of a curve logged
      from step 10 to 10 000 is ``ln 10 / ln 1000 = 1/3``);
    * **task without training rows**: ``inf`` for ``magp`` and ``dhgp``, which treat tasks as
      categories and return their prior for such a task; for ``magp_desc`` the distance of its
      task-level descriptors outside their training range, in units of that range (``inf`` when
      there is no task-level descriptor); ``magp_law`` reads any descriptor (its law predicts
      every configuration from them);
    * **descriptors** (``magp_desc``, every row): the same range distance for every descriptor
      column (log-transformed with ``Spec.log_descriptors``);
    * **instance without training rows** (``magp``, ``dhgp``: the model falls back to the task's
      shared curve): at least 1, more when the instance labels are numbers and this one lies
      further outside their training range (in ln units when all labels are > 0);
    * **curve without training rows** (``dhgp`` only, which shares no instance information
      across tasks): at least 1.

    Ranges of zero width count in units of 1 (ln units for steps).
    """
    q = as_query(fit, query)
    tr = fit.train
    spec = fit.spec
    desc_tr = desc_q = None
    if spec.model in DESC_MODELS and np.shape(q.descriptors)[1]:
        desc_tr, desc_q = np.asarray(tr.descriptors, float), np.asarray(q.descriptors, float)
        if spec.log_descriptors:
            desc_tr, desc_q = np.log(desc_tr), np.log(np.maximum(desc_q, 1e-300))
    return extrapolation_distance((tr.x, tr.task, tr.instance), (q.x, q.task, q.instance), spec.model,
                                  n_inst=len(fit.instance_labels), instance_sizes=_numeric_labels(fit.instance_labels),
                                  desc_train=desc_tr, desc_query=desc_q,
                                  has_task_descriptor="task" in fit.descriptor_levels
                                  or (spec.model == "magp_law" and len(fit.descriptor_levels) > 0))


def extrapolation_distance(train, query, model: str, *, n_inst: int, instance_sizes=None, desc_train=None,
                           desc_query=None, has_task_descriptor: bool = False) -> np.ndarray:
    """The distance of :func:`extrapolation` from arrays.

    Args:
      train, query: ``(x, task, instance)`` of the training and query rows (``x = ln(step)``).
      model: ``"magp"``, ``"magp_desc"``, ``"dhgp"`` (or a bundled baseline, read as ``"magp"``).
      n_inst: number of instance codes.
      instance_sizes: ``(n_inst,)`` numeric instance sizes (e.g. ln depth) or ``None``.
      desc_train, desc_query: descriptor values (already transformed) of the rows, for
        ``magp_desc``; ``has_task_descriptor``: one of them is task-level.
    """
    x_tr, d_tr, r_tr = (np.asarray(a) for a in train)
    x_q, d_q, r_q = (np.asarray(a) for a in query)
    x_tr, x_q = x_tr.astype(float), x_q.astype(float)
    n = len(x_q)
    lo, hi = float(x_tr.min()), float(x_tr.max())
    dist = _range_distance(x_q, lo, hi, hi - lo if hi > lo else 1.0)
    seen_t = np.isin(d_q, d_tr)
    seen_r = np.isin(r_q, r_tr)
    if model in DESC_MODELS and desc_query is not None and np.shape(desc_query)[1]:
        per_col = []
        for j in range(desc_query.shape[1]):
            a, b = desc_train[:, j].min(), desc_train[:, j].max()
            per_col.append(_range_distance(desc_query[:, j], a, b, b - a if b > a else 1.0))
        dist = np.maximum(dist, np.stack(per_col, 1).max(1))
        if not has_task_descriptor:
            dist = np.where(~seen_t, np.inf, dist)
        return dist
    dist = np.where(~seen_t, np.inf, dist)
    if instance_sizes is not None:
        lv = np.asarray(instance_sizes, float)[np.unique(r_tr)]
        a, b = lv.min(), lv.max()
        far = _range_distance(np.asarray(instance_sizes, float)[r_q], a, b, b - a if b > a else 1.0)
    else:
        far = np.zeros(n)
    dist = np.where(~seen_r, np.maximum(dist, np.maximum(1.0, far)), dist)
    if model == "dhgp":
        R = max(int(n_inst), 1)
        seen_c = np.isin(d_q.astype(np.int64) * R + r_q, d_tr.astype(np.int64) * R + r_tr)
        dist = np.where(~seen_c, np.maximum(dist, 1.0), dist)
    return dist


def warn_extrapolation_of(fit: Fit, query, dist, what: str = "learning-curve predict", stacklevel: int = 3) -> None:
    """One warning when any query row lies outside the training data, naming the rows of tasks the
    model can only predict from its prior (``inf``)."""
    dist = np.asarray(dist, float)
    if not np.any(dist > 0):
        return
    inf = np.isinf(dist)
    if inf.any():
        q = as_query(fit, query)
        codes = np.unique(np.asarray(q.task)[inf])  # in the vocabulary's order (numbers in numeric order)
        tasks = [fit.task_labels[int(t)] for t in codes]
        more = f" (+{len(tasks) - 5} more)" if len(tasks) > 5 else ""
        what = (f"{what} ({int(inf.sum())} row(s) of {len(tasks)} task(s) {tasks[:5]}{more} with no training run: "
                f"{fit.spec.model} "
                "predicts them from its prior, distance inf")
        what += ("; a model with descriptors of the runs predicts such tasks: magp_law, a scaling law in them with a "
                 "GP on its residuals (sizes beyond the training runs), or magp_desc; CLI: --model magp_law "
                 "--descriptor-cols COLS, e.g. the size columns)") if fit.spec.model not in DESC_MODELS else ")"
    warn_extrapolation(what, dist, EXTRAPOLATION_UNIT, stacklevel=stacklevel + 1)


def extrapolation_summary(dist) -> dict:
    """``{max, n_outside, n_rows}`` of extrapolation distances for a JSON report (``max`` is
    ``None`` with a ``max_reason`` when a row is infinitely far)."""
    dist = np.asarray(dist, float)
    out = {"max": float(dist.max()) if dist.size else 0.0, "n_outside": int(np.sum(dist > 0)), "n_rows": int(dist.size),
           "unit": EXTRAPOLATION_UNIT}
    if dist.size and np.isinf(dist).any():
        out["max"] = None
        out["max_reason"] = (f"{int(np.isinf(dist).sum())} row(s) belong to tasks without training rows, which the "
                             "model can only predict from its prior (infinitely far)")
        finite = dist[np.isfinite(dist)]
        out["max_finite"] = float(finite.max()) if finite.size else None
    return out


#: ``predict``'s choices for task / instance labels the fit never saw.
HANDLE_UNKNOWN = ("error", "prior")


def predict(fit: Fit, query, *, key=None, level: float = 0.9, handle_unknown: str = "error") -> Prediction:
    """Joint predictive of the query rows (a DataFrame read with the fit's columns, or a :class:`Data`).

    A task or instance label the fit never saw (a new size, a new learning rate): ``handle_unknown=
    "error"`` refuses it, listing the unknown and the known labels; ``"prior"`` appends it to the
    fit's vocabularies (:func:`with_labels`): a new task starts from the prior over its latent, so
    ``magp`` predicts it from its prior (distance ``inf``, warned) and ``magp_desc`` / ``magp_law``
    through its descriptors.

    Returns a :class:`jaxscale.Prediction`: ``mean`` (mixture mean over restarts) and the central
    ``level`` interval of the observation (latent + noise) per row; ``samples`` ``(Spec.n_samples,
    n)`` joint draws of the observations when ``key`` is given (and the query has at most
    :data:`JOINT_MAX_ROWS` rows). The mean and interval are deterministic (the latent draws
    integrating ``q(h)`` are stored in the fit) and the same with or without a key: each row's
    marginal (:func:`restart_marginals`, no covariance between query rows); only the joint draws
    need the ``(M, M)`` covariance, so a call without a key is several times faster on long queries.
    ``extrapolation`` holds :func:`extrapolation` of every row; one warning names the worst.
    The intervals widen with that distance as far as the GP itself widens them: the Matérn
    kernels in ln(step) revert to the prior away from the training steps, and a task without
    training rows gets the prior over its latent (``magp``, ``dhgp``) or the descriptor kernel's
    (``magp_desc``); ``magp_law`` adds the spread of its law's value from the law's parameter
    covariance, which grows where the law extrapolates. No other inflation is applied.

    Args:
      fit: a :class:`Fit` (from :func:`fit` or ``jaxscale.load``).
      query: the rows to predict: a DataFrame with the fit's columns (the target optional) or a
        :class:`Data`.
      key: ``jax.random`` key for joint draws (``samples``); ``None``: none, and each row's marginal.
      level: central interval level in (0, 1).
      handle_unknown: ``"error"`` or ``"prior"`` (see above).
    """
    check_fit(fit, Fit, "jaxscale.learning_curves")
    key = check_key(key, "learning-curve predict: key", optional=True)
    level = check_level(level)
    if handle_unknown not in HANDLE_UNKNOWN:
        raise ValueError(f"handle_unknown must be one of {HANDLE_UNKNOWN}, got {handle_unknown!r}")
    fit, q = with_labels(fit, query) if handle_unknown == "prior" else (fit, as_query(fit, query))
    samples = None
    if key is not None and len(q) <= JOINT_MAX_ROWS:  # the key adds joint draws and changes nothing else
        with heartbeat(f"learning-curve predict: joint draws of {len(q)} rows"):
            joint = jax.block_until_ready(predict_restarts(fit, q))
        samples = _mixture_draws(key, np.asarray(joint.mean), joint.cov, joint.noise_var, int(fit.spec.n_samples))
    elif key is not None:
        get_logger(__name__).info(
            "learning-curve predict: %d rows are more than %d: predicted row by row (the same intervals), "
            "without joint draws of all rows (predict fewer rows at a time to get them)", len(q), JOINT_MAX_ROWS)
    pred = prediction_from_marginals(*restart_marginals(fit, q), level, samples)
    dist = extrapolation(fit, q)
    warn_extrapolation_of(fit, q, dist)
    _warn_past_own_steps(fit, q)
    lo = np.asarray(pred.lower, float)
    if fit.spec.model == "magp_law" and (lo <= 0).any():  # its losses are > 0 (checked at fit time)
        warnings.warn(f"learning-curve predict: {int((lo <= 0).sum())} of {lo.size} lower ends are 0 or below (the "
                      f"smallest {lo.min():.4g}; worst extrapolation {np.max(dist):.3g}), though a loss is > 0: the "
                      "interval is symmetric in the loss, and so wide an interval says the model knows little there. "
                      "Read such ends as 0", UserWarning, stacklevel=2)
    return pred._replace(extrapolation=jnp.asarray(dist))


#: Most query rows predicted jointly (joint draws need the ``(M, M)`` covariance of all rows, and
#: 6,000 rows x 10 restarts had held 6 GB for minutes): a larger query, or one without a key, is
#: predicted from each row's marginal (the same intervals), without joint draws.
JOINT_MAX_ROWS = 2048

#: Most query rows in one program of :func:`restart_marginals` (an ``N x M`` cross covariance per
#: restart and latent draw; memory): a longer query is predicted in chunks of this many rows.
MARGINAL_MAX_ROWS = 8192


def restart_marginals(fit: Fit, q: Data, what: str = "learning-curve predict") -> tuple[np.ndarray, np.ndarray]:
    """Each restart's predictive mean and observation sd (latent + noise) of every query row,
    ``(R, M)`` each: all the marginal intervals and the held-out scores read. ``magp`` and the
    descriptor models skip the query covariance (:func:`predict_marginals`; chunks of
    :data:`MARGINAL_MAX_ROWS` rows); ``dhgp`` takes the diagonal of its joint prediction (chunks of
    :data:`JOINT_MAX_ROWS` rows). A progress line over the chunks, a heartbeat for one."""
    size = MARGINAL_MAX_ROWS if fit.spec.model in MARGINAL_MODELS else JOINT_MAX_ROWS

    def one(rows: Data):
        mg = predict_marginals(fit, rows)
        return np.asarray(mg.mean), np.sqrt(np.maximum(np.asarray(mg.var), 0.0) + np.asarray(mg.noise_var))

    if len(q) <= size:
        with heartbeat(f"{what} ({len(q)} rows)"):
            return one(q)
    means, sds = [], []
    # chunks of rows (memory), each one compiled program; a progress line every 30 s
    for start in progress(range(0, len(q), size), desc=f"{what} ({len(q)} rows in chunks of {size})"):
        m, sd = one(q.rows(np.arange(start, min(start + size, len(q)))))
        means.append(m)
        sds.append(sd)
    return np.concatenate(means, axis=1), np.concatenate(sds, axis=1)


def _warn_past_own_steps(fit: Fit, q: Data, stacklevel: int = 3) -> None:
    """Warn when a GP without a law is asked about steps beyond its own curve's last trained step (a
    run's continuation): its kernel in ln(step) reverts towards the mean there, so the predicted loss
    can turn up (the step distance of :func:`extrapolation` is small when other curves ran longer)."""
    if fit.spec.model == "magp_law":
        return
    tr = fit.train
    R = max(len(fit.instance_labels), 1)
    key_tr = np.asarray(tr.task, np.int64) * R + np.asarray(tr.instance, np.int64)
    last = pd.Series(np.asarray(tr.x, float)).groupby(key_tr).max()
    key_q = np.asarray(q.task, np.int64) * R + np.asarray(q.instance, np.int64)
    own = pd.Series(key_q).map(last).to_numpy(float)  # NaN: a curve without training rows
    past = np.isfinite(own) & (np.asarray(q.x, float) > own + 1e-12)
    if not past.any():
        return
    ratio = float(np.exp(np.max(np.asarray(q.x, float)[past] - own[past])))
    warnings.warn(f"learning-curve predict: {int(past.sum())} of {len(past)} query rows lie beyond their own curve's "
                  f"last trained step (up to {ratio:.3g}x it): {fit.spec.model} is a GP in ln(step) without a law, "
                  "which reverts towards its mean past the data, so the predicted loss can level off or turn up "
                  "there. For a run's continuation, lc extrapolate (a power law per run) or --model magp_law (a law "
                  "in size and step under the GP) follow the curve's trend", UserWarning, stacklevel=stacklevel)
