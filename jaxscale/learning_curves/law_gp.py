r"""The law-informed curve model ("magp_law"): a saturating power law in size and step, and the
descriptor MaGP on what the law leaves over.

A GP alone reverts to its prior mean away from its data, so a curve of a size larger than every
training curve is predicted near the average training curve. Here the mean is a parametric
scaling law fitted to the training points,

.. math::

    L(z, x) = E + A\,e^{-\alpha^\top z} + B\,e^{\gamma^\top z - \beta (x - x_{\max})},

with ``z`` the curve's standardised (log) descriptors (nanoGPT: ``ln N``, so the size term is
``A' N^{-\alpha}``), ``x = ln(step)`` (so the step term is ``B' step^{-\beta}``) and
``x_max`` the largest training ``x``; ``E, A, B, \beta > 0``, ``\alpha`` and ``\gamma`` free:
``\gamma`` lets the step term depend on size (large models start slower relative to their final
loss than the additive law says). An unseen, larger
size follows the law, and the GP (:mod:`.magp_desc`, with its descriptor kernel) models the
residual ``y - L`` and keeps the per-configuration differences.

Fitting is two-stage (empirical Bayes for the mean): the law by least squares of ``ln y``
(L-BFGS from :data:`N_STARTS` starts ``vmap``ped in one program, the best kept; a small ridge on
``\alpha`` keeps collinear descriptors finite), then the GP's hyper-parameters on the
residuals, z-scored with ONE pair of constants for all tasks (a task without training rows needs
no constants of its own). The law's own uncertainty enters the prediction through the
cluster-robust (sandwich) covariance of its least-squares parameters, with the curves as
clusters (the points of one curve are not independent), mapped to the query points by the
delta method (:func:`law_prediction_cov`); it grows where the law extrapolates (larger sizes,
later steps), on top of the GP's own spread.
"""
from __future__ import annotations

from functools import partial
from typing import NamedTuple

import jax
import jax.flatten_util
import jax.numpy as jnp

from jaxscale._registry import register_serializable
from jaxscale.infer import minimize_lbfgs

__all__ = ["CurveLaw", "N_STARTS", "law_value", "fit_curve_law", "residual_constants", "law_covariance",
           "law_prediction_cov", "fit_law_residuals"]

#: Starting points of the law's least-squares fit (one compiled, vmapped program).
N_STARTS = 16
RIDGE = 1e-8


@register_serializable
class CurveLaw(NamedTuple):
    """Parameters of the saturating law (unconstrained) and its step reference ``x_ref``."""

    log_e: jnp.ndarray  # ()
    log_a: jnp.ndarray  # ()
    alpha: jnp.ndarray  # (P,) exponents on the standardised descriptors
    log_b: jnp.ndarray  # ()
    log_beta: jnp.ndarray  # ()
    gamma: jnp.ndarray  # (P,) size dependence of the step term
    x_ref: jnp.ndarray  # () largest training x (not fitted)


def law_value(law: CurveLaw, z, x):
    """``L(z, x)`` for rows ``z (n, P)``, ``x (n,)``."""
    return (jnp.exp(law.log_e) + jnp.exp(law.log_a - z @ law.alpha)
            + jnp.exp(law.log_b + z @ law.gamma - jnp.exp(law.log_beta) * (x - law.x_ref)))


def _objective(theta, z, x, ly, w, x_ref):
    law = CurveLaw(*theta, x_ref)
    r = jnp.log(law_value(law, z, x)) - ly
    return jnp.sum(w * r * r) / jnp.sum(w) + RIDGE * (jnp.sum(theta[2] ** 2) + jnp.sum(theta[5] ** 2))


def _starts(key, y, w, P, dtype):
    ymin = jnp.min(jnp.where(w > 0, y, jnp.inf))
    ymean = jnp.sum(w * y) / jnp.sum(w)
    k = jax.random.split(key, 6)
    u = lambda kk, lo, hi: jax.random.uniform(kk, (N_STARTS,), dtype, lo, hi)  # noqa: E731
    return (jnp.log(ymin * u(k[0], 0.3, 0.95)),
            jnp.log(ymean * u(k[1], 0.02, 0.5)),
            0.5 * jax.random.normal(k[2], (N_STARTS, P), dtype) + 0.3,
            jnp.log(ymean * u(k[3], 0.02, 0.5)),
            jnp.log(u(k[4], 0.1, 2.0)),
            0.1 * jax.random.normal(k[5], (N_STARTS, P), dtype))


@partial(jax.jit, static_argnames=("max_steps",))
def fit_curve_law(key, z, x, y, w=None, *, max_steps: int = 500):
    """Least-squares fit of the law to ``ln y`` over rows ``z (n, P)``, ``x (n,)``, ``y (n,) > 0``
    (``w``: 1 real / 0 padding). Returns ``(law, mean squared error of ln y, converged)`` of the best
    of :data:`N_STARTS` starts."""
    w = jnp.ones_like(y) if w is None else w
    ysafe = jnp.where(w > 0, y, 1.0)
    x_ref = jnp.max(jnp.where(w > 0, x, -jnp.inf))
    starts = _starts(key, ysafe, w, z.shape[1], y.dtype)
    ly = jnp.log(ysafe)
    res = jax.vmap(lambda t: minimize_lbfgs(_objective, t, z, x, ly, w, x_ref, max_steps=max_steps,
                                            tol=1e-10))(starts)
    loss = jnp.where(jnp.isfinite(res.loss), res.loss, jnp.inf)
    i = jnp.argmin(loss)
    theta = jax.tree.map(lambda a: a[i], res.params)
    return CurveLaw(*theta, x_ref), loss[i], res.converged[i]


def residual_constants(resid, w=None):
    """One (mean, std) of the residuals over the real rows, for every task."""
    w = jnp.ones_like(resid) if w is None else w
    n = jnp.sum(w)
    mu = jnp.sum(w * resid) / n
    sd = jnp.sqrt(jnp.sum(w * (resid - mu) ** 2) / n)
    return mu, jnp.maximum(sd, 1e-12)


def _theta(law: CurveLaw):
    return (law.log_e, law.log_a, law.alpha, law.log_b, law.log_beta, law.gamma)


def _flat_log_law(law: CurveLaw, z, x):
    """``ln L`` at rows as a function of the flat parameter vector (for Jacobians)."""
    flat, unravel = jax.flatten_util.ravel_pytree(_theta(law))

    def f(v):
        return jnp.log(law_value(CurveLaw(*unravel(v), law.x_ref), z, x))

    return f, flat


def law_covariance(law: CurveLaw, z, x, y, cluster, n_clusters: int, w=None):
    """Cluster-robust (sandwich) covariance ``(k, k)`` of the law's flat parameters at the fit.

    ``cluster`` ``(n,)`` gives each row's curve id in ``0 .. n_clusters - 1``; residuals of ln y
    within a curve may be correlated, across curves independent. Includes the small-sample factor
    ``G / (G - 1)`` with ``G`` the number of curves present.
    """
    w = jnp.ones_like(y) if w is None else w
    f, flat = _flat_log_law(law, z, x)
    J = jax.jacfwd(f)(flat) * w[:, None]  # (n, k)
    r = (f(flat) - jnp.log(jnp.where(w > 0, y, 1.0))) * w
    bread = jnp.linalg.pinv(J.T @ J, hermitian=True)
    score = jax.ops.segment_sum(J * r[:, None], cluster, n_clusters)  # (G, k)
    G = jnp.sum(jax.ops.segment_sum(w, cluster, n_clusters) > 0)
    meat = score.T @ score * G / jnp.maximum(G - 1.0, 1.0)
    cov = bread @ meat @ bread
    return 0.5 * (cov + cov.T)


def _value_jacobian(law: CurveLaw, z, x):
    """``(M, k)`` Jacobian of the law's value at query rows in its flat parameters, ``diag(L) J``
    with ``J`` that of ``ln L`` (the delta method's factor)."""
    f, flat = _flat_log_law(law, z, x)
    return jax.jacfwd(f)(flat) * jnp.exp(f(flat))[:, None]


def law_prediction_cov(law: CurveLaw, cov, z, x):
    """``(M, M)`` covariance of the law's value at query rows from its parameter covariance
    (delta method on ``ln L``: ``diag(L) J cov J^T diag(L)``)."""
    JL = _value_jacobian(law, z, x)
    return JL @ cov @ JL.T


def law_prediction_var(law: CurveLaw, cov, z, x):
    """``(M,)`` the diagonal of :func:`law_prediction_cov`, without the ``(M, M)`` matrix."""
    JL = _value_jacobian(law, z, x)
    return jnp.sum((JL @ cov) * JL, axis=1)


def fit_law_residuals(key, z, x, y, cluster, n_clusters: int, w=None):
    """The first stage of the law-informed model on training rows ``z (n, P)``, ``x (n,)``,
    ``y (n,) > 0`` with curve ids ``cluster``: the fitted law, its parameter covariance
    (:func:`law_covariance`) and the residuals ``y - L`` z-scored with one ``(mu, sd)``
    (:func:`residual_constants`). ``w``: 1 real row / 0 padding (padding rows: any ``y``, residual
    0), so that training sets of different sizes padded to one length share one compiled program.
    Returns ``(law, law_cov, z_resid, mu, sd)``."""
    w = jnp.ones_like(y) if w is None else w
    law, _, _ = fit_curve_law(key, z, x, y, w)
    law_cov = law_covariance(law, z, x, y, cluster, n_clusters, w)
    resid = y - law_value(law, z, x)
    mu, sd = residual_constants(resid, w)
    return law, law_cov, jnp.where(w > 0, (resid - mu) / sd, 0.0), mu, sd
