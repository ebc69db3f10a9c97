"""MaGP predictions integrating q(h): marginal and joint moments, joint posterior draws.

All functions work on every restart at once (leading axis R of ``fit.params``) and return
**original units** when given the problem's scaler (``predict_joint``/``sample_joint``).
"""
from __future__ import annotations

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxscale.gp import JITTER_LADDER, gp_condition, gp_condition_diag
from jaxscale.learning_curves.magp import MaGPParams, _gram, magp_constrained, magp_kernel
from jaxscale.learning_curves.problem import Points

__all__ = ["JointPrediction", "Marginals", "magp_joint_std", "magp_draws_std", "latent_draws", "joint_from_latents",
           "marginal_from_latents"]


class JointPrediction(NamedTuple):
    """Joint predictive of query points, per restart (leading axis R).

    ``cov`` is the latent-function covariance; ``noise_var`` the per-point observation noise
    (add ``diag(noise_var)`` for predictive distributions of observations).
    """

    mean: jnp.ndarray  # (R, M)
    cov: jnp.ndarray  # (R, M, M)
    noise_var: jnp.ndarray  # (R, M)


class Marginals(NamedTuple):
    """Marginal predictive of query points, per restart (leading axis R): :class:`JointPrediction`
    with the latent variance ``var`` of each point in place of the covariance."""

    mean: jnp.ndarray  # (R, M)
    var: jnp.ndarray  # (R, M)
    noise_var: jnp.ndarray  # (R, M)


def mixture_marginals(s1, s2, n_h: int):
    """Mean and variance of an equal-weight mixture from the sums over its ``n_h`` components of
    their means (``s1``) and of their variances plus squared means (``s2``)."""
    mean = s1 / n_h
    return mean, s2 / n_h - mean * mean


def _query_tuple(q: Points):
    return (q.x, q.r, q.d)


def _cross(k, Xtr, Xq, train: Points):
    K = k(Xtr, Xq)
    return K if train.w is None else K * train.w[:, None]


def latent_draws(params, eps):
    """Draws of the task latents ``h = mu + s * eps`` from standard-normal ``eps`` (n, D, Q)."""
    return params.h_mean[None] + jnp.exp(params.log_h_std)[None] * eps


def joint_from_latents(params: MaGPParams, hs, xgrid, train: Points, query: Points):
    """Moments of the equal-weight mixture over the latent draws ``hs`` (n_h, D, Q) of one restart:
    ``(mean (M,), latent cov (M, M), noise_var (M,), jitter)`` (standardised units)."""
    n_h = hs.shape[0]
    M = query.x.shape[0]
    Xtr, Xq = _query_tuple(train), _query_tuple(query)

    def body(carry, h):
        s1, s2, jm = carry
        k = magp_kernel(params, h)
        m, C, j = gp_condition(_gram(params, h, xgrid, train), _cross(k, Xtr, Xq, train), k(Xq, Xq), train.y,
                               JITTER_LADDER[0])
        return (s1 + m, s2 + C + jnp.outer(m, m), jnp.maximum(jm, j)), None

    z = jnp.zeros((M,), train.y.dtype)
    (s1, s2, jm), _ = jax.lax.scan(body, (z, jnp.zeros((M, M), train.y.dtype), z[0] if M else 0.0), hs)
    mean = s1 / n_h
    cov = s2 / n_h - jnp.outer(mean, mean)
    noise = magp_constrained(params)["noise"][query.d]
    return mean, 0.5 * (cov + cov.T), noise, jm


def marginal_from_latents(params: MaGPParams, hs, train: Points, query: Points):
    """:func:`joint_from_latents` without the query covariance: ``(mean (M,), latent var (M,),
    noise_var (M,), jitter)``, the same numbers as its diagonal at ``N M`` memory (training
    points indexing ``train.x`` as their grid, as the predictions build them)."""
    Xtr, Xq = _query_tuple(train), _query_tuple(query)

    def body(carry, h):
        s1, s2, jm = carry
        k = magp_kernel(params, h)
        m, v, j = gp_condition_diag(_gram(params, h, train.x, train), _cross(k, Xtr, Xq, train),
                                    jax.vmap(k.evaluate)(Xq, Xq), train.y, JITTER_LADDER[0])
        return (s1 + m, s2 + v + m * m, jnp.maximum(jm, j)), None

    z = jnp.zeros(query.x.shape, train.y.dtype)
    (s1, s2, jm), _ = jax.lax.scan(body, (z, z, jnp.asarray(0.0, train.y.dtype)), hs)
    mean, var = mixture_marginals(s1, s2, hs.shape[0])
    return mean, var, magp_constrained(params)["noise"][query.d], jm


def _joint_one(params: MaGPParams, key, xgrid, train: Points, query: Points, n_h: int):
    D, Q = params.h_mean.shape
    eps = jax.random.normal(key, (n_h, D, Q), train.y.dtype)
    return joint_from_latents(params, latent_draws(params, eps), xgrid, train, query)


@partial(jax.jit, static_argnames=("n_h",))
def magp_joint_std(params: MaGPParams, key, xgrid, train: Points, query: Points, n_h: int = 32):
    """Joint predictive moments in standardised units for every restart.

    Returns ``(mean (R,M), cov (R,M,M), noise_var (R,M), jitter (R,))``. The same ``n_h``
    latent draws (from ``key``) are used for every restart's own q(h).
    """
    return jax.vmap(_joint_one, in_axes=(0, None, None, None, None, None))(params, key, xgrid, train, query, n_h)


def _draws_one(params: MaGPParams, key, xgrid, train: Points, query: Points, n_samples: int):
    D, Q = params.h_mean.shape
    std = jnp.exp(params.log_h_std)
    kh, kf = jax.random.split(key)
    hs = params.h_mean[None] + std[None] * jax.random.normal(kh, (n_samples, D, Q), train.y.dtype)
    Xtr, Xq = _query_tuple(train), _query_tuple(query)
    M = query.x.shape[0]

    def one(args):
        h, k1 = args
        k = magp_kernel(params, h)
        m, C, _ = gp_condition(_gram(params, h, xgrid, train), _cross(k, Xtr, Xq, train), k(Xq, Xq), train.y,
                               JITTER_LADDER[0])
        L = jnp.linalg.cholesky(C + 1e-9 * jnp.eye(M, dtype=C.dtype))
        return m + L @ jax.random.normal(k1, (M,), C.dtype)

    return jax.lax.map(one, (hs, jax.random.split(kf, n_samples)))


@partial(jax.jit, static_argnames=("n_samples",))
def magp_draws_std(params: MaGPParams, key, xgrid, train: Points, query: Points, n_samples: int = 100):
    """Joint posterior draws of the latent curves (standardised), ``(R, n_samples, M)``.

    Each draw samples ``h ~ q(h)`` and then ``f | h, y`` jointly over all query points.
    """
    R = params.log_g_var.shape[0]
    keys = jax.random.split(key, R)
    return jax.vmap(_draws_one, in_axes=(0, 0, None, None, None, None))(params, keys, xgrid, train, query, n_samples)
