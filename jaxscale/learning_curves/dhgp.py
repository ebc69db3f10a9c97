r"""DHGP baseline (Hensman, Lawrence & Rattray 2013): exact GP with the three-level
hierarchy ``k_cluster + 1[d=d'] k_task + 1[curve=curve'] k_curve`` (all Matérn-3/2), one
Gaussian noise, type-II ML by L-BFGS from GPy's defaults (all variances and lengthscales 1).

It is deterministic (no random initialisation), so "restarts" are one fit repeated; the
std over restarts is 0, as in the original code. A held-out curve gets only the cluster + task
components: unlike MaGP it cannot share an instance's information across tasks.
"""
from __future__ import annotations

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxscale._pytree import register_serializable
from jaxscale.config import warn_if_float32
from jaxscale.gp import JITTER_LADDER, DHGPKernel, dhgp_gram, gaussian_nll, gp_condition
from jaxscale.infer import minimize_lbfgs
from jaxscale.learning_curves.magp import _pad_constant, report_fit_health
from jaxscale.learning_curves.problem import Points

__all__ = ["DHGPParams", "DHGPFit", "dhgp_loss", "fit_dhgp", "dhgp_joint_std", "dhgp_draws_std"]

NOISE_FLOOR = 1e-6


@register_serializable
class DHGPParams(NamedTuple):
    """Unconstrained DHGP parameters: log variances / lengthscales of (cluster, task, curve), log noise."""

    log_var: jnp.ndarray  # (3,)
    log_scale: jnp.ndarray  # (3,)
    log_noise: jnp.ndarray  # ()


class DHGPFit(NamedTuple):
    """Result of :func:`fit_dhgp` (leading axis = restart, all identical)."""

    params: DHGPParams
    loss: jnp.ndarray  # (R,)
    n_steps: jnp.ndarray  # (R,)
    converged: jnp.ndarray  # (R,)
    jitter: jnp.ndarray  # (R,)
    ok: np.ndarray
    restart_ids: np.ndarray


def _gram(params: DHGPParams, xgrid, pts: Points):
    K = dhgp_gram(xgrid, pts.p, pts.d, pts.c, pts.p, pts.d, pts.c, jnp.exp(params.log_var), jnp.exp(params.log_scale))
    noise = NOISE_FLOOR + jnp.exp(params.log_noise)
    if pts.w is None:
        return K + noise * jnp.eye(pts.y.shape[0], dtype=K.dtype)
    w = pts.w
    return K * (w[:, None] * w[None, :]) + jnp.diag(noise * w + (1.0 - w))


def dhgp_loss(params: DHGPParams, xgrid, pts: Points):
    """Negative log marginal likelihood."""
    return gaussian_nll(_gram(params, xgrid, pts), pts.y, JITTER_LADDER[0])[0] - _pad_constant(pts)


def fit_dhgp(xgrid, train: Points, *, restarts: int = 1, max_steps: int = 1000) -> DHGPFit:
    """Fit DHGP by L-BFGS (``jaxscale.infer.minimize_lbfgs``) from GPy's default initialisation."""
    warn_if_float32("DHGP inputs")
    dt = train.y.dtype
    x0 = DHGPParams(jnp.zeros(3, dt), jnp.zeros(3, dt), jnp.zeros((), dt))
    res = minimize_lbfgs(dhgp_loss, x0, xgrid, train, max_steps=max_steps, tol=1e-6)
    jit = gaussian_nll(_gram(res.params, xgrid, train), train.y)[1]
    rep = lambda a: jnp.broadcast_to(a, (restarts,) + jnp.shape(a))  # noqa: E731
    params = jax.tree_util.tree_map(rep, res.params)
    loss = rep(res.loss)
    ok = report_fit_health(loss, params, rep(jit), "DHGP")
    return DHGPFit(params, loss, rep(res.n_steps), rep(res.converged), rep(jit), ok, np.arange(restarts))


def _kernel(params: DHGPParams) -> DHGPKernel:
    return DHGPKernel(jnp.exp(params.log_var), jnp.exp(params.log_scale))


def _joint_one(params: DHGPParams, xgrid, train: Points, query: Points):
    k = _kernel(params)
    Xtr, Xq = (train.x, train.d, train.c), (query.x, query.d, query.c)
    Kx = k(Xtr, Xq) if train.w is None else k(Xtr, Xq) * train.w[:, None]
    m, C, j = gp_condition(_gram(params, xgrid, train), Kx, k(Xq, Xq), train.y, JITTER_LADDER[0])
    noise = jnp.full(query.x.shape, NOISE_FLOOR + jnp.exp(params.log_noise))
    return m, C, noise, j


@jax.jit
def dhgp_joint_std(params: DHGPParams, key, xgrid, train: Points, query: Points):
    """Joint predictive moments (standardised) per restart; ``key`` unused (exact Gaussian)."""
    del key
    return jax.vmap(_joint_one, in_axes=(0, None, None, None))(params, xgrid, train, query)


@partial(jax.jit, static_argnames=("n_samples",))
def dhgp_draws_std(params: DHGPParams, key, xgrid, train: Points, query: Points, n_samples: int = 100):
    """Joint posterior draws of the latent curves (standardised), ``(R, n_samples, M)``."""
    m, C, _, _ = dhgp_joint_std(params, key, xgrid, train, query)
    M = m.shape[-1]
    L = jnp.linalg.cholesky(C + 1e-9 * jnp.eye(M, dtype=C.dtype))
    z = jax.random.normal(key, (m.shape[0], n_samples, M), m.dtype)
    return m[:, None, :] + jnp.einsum("rij,rsj->rsi", L, z)
