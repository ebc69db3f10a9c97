"""Predictions of the descriptor MaGP integrating q(h): joint moments and joint draws (standardised).

Same contract as :mod:`jaxscale.learning_curves.magp_predict` (every restart at once; the
caller maps to original units); tasks without training rows use the pooled noise. Query points
are grid-indexed like training points (``Points.p`` into ``xgrid``).
"""
from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp

from jaxscale.gp import JITTER_LADDER, gp_condition, gp_condition_diag
from jaxscale.learning_curves.descriptors import DescTables
from jaxscale.learning_curves.magp_desc import (DescParams, _train_gram, desc_constrained, desc_cross, desc_diag,
                                               desc_gram)
from jaxscale.learning_curves.magp_predict import mixture_marginals
from jaxscale.learning_curves.problem import Points

__all__ = ["desc_joint_std", "desc_draws_std", "desc_joint_from_latents", "desc_marginal_from_latents"]


def _condition(p: DescParams, h, tables, observed, xgrid, train: Points, query: Points):
    c = desc_constrained(p, observed)
    Kx = desc_gram(c, h, tables, xgrid, train, query)
    if train.w is not None:
        Kx = Kx * train.w[:, None]
    return gp_condition(_train_gram(p, h, tables, xgrid, train, observed), Kx,
                        desc_gram(c, h, tables, xgrid, query, query), train.y, JITTER_LADDER[0])


def _latents(p: DescParams, key, n, dtype):
    D, Q = p.h_mean.shape
    return p.h_mean[None] + jnp.exp(p.log_h_std)[None] * jax.random.normal(key, (n, D, Q), dtype)


def desc_joint_from_latents(p: DescParams, hs, tables, observed, xgrid, train: Points, query: Points):
    """Moments of the equal-weight mixture over latent draws ``hs`` (n_h, D, Q) of one restart:
    ``(mean (M,), latent cov (M, M), noise_var (M,), jitter)`` (standardised units)."""
    n_h = hs.shape[0]
    M = query.x.shape[0]

    def body(carry, h):
        s1, s2, jm = carry
        m, C, j = _condition(p, h, tables, observed, xgrid, train, query)
        return (s1 + m, s2 + C + jnp.outer(m, m), jnp.maximum(jm, j)), None

    z = jnp.zeros((M,), train.y.dtype)
    (s1, s2, jm), _ = jax.lax.scan(body, (z, jnp.zeros((M, M), train.y.dtype), jnp.asarray(0.0, train.y.dtype)), hs)
    mean = s1 / n_h
    cov = s2 / n_h - jnp.outer(mean, mean)
    return mean, 0.5 * (cov + cov.T), desc_constrained(p, observed)["noise"][query.d], jm


def desc_marginal_from_latents(p: DescParams, hs, tables, observed, train: Points, query: Points):
    """:func:`desc_joint_from_latents` without the query covariance: ``(mean (M,), latent var
    (M,), noise_var (M,), jitter)``, the same numbers as its diagonal at ``N M`` memory (training
    points indexing ``train.x`` as their grid, as the predictions build them)."""
    c = desc_constrained(p, observed)

    def body(carry, h):
        s1, s2, jm = carry
        Kx = desc_cross(c, h, tables, train, query)
        if train.w is not None:
            Kx = Kx * train.w[:, None]
        m, v, j = gp_condition_diag(_train_gram(p, h, tables, train.x, train, observed), Kx,
                                    desc_diag(c, h, tables, query), train.y, JITTER_LADDER[0])
        return (s1 + m, s2 + v + m * m, jnp.maximum(jm, j)), None

    z = jnp.zeros(query.x.shape, train.y.dtype)
    (s1, s2, jm), _ = jax.lax.scan(body, (z, z, jnp.asarray(0.0, train.y.dtype)), hs)
    mean, var = mixture_marginals(s1, s2, hs.shape[0])
    return mean, var, c["noise"][query.d], jm


def _joint_one(p: DescParams, key, tables, observed, xgrid, train: Points, query: Points, n_h: int):
    return desc_joint_from_latents(p, _latents(p, key, n_h, train.y.dtype), tables, observed, xgrid, train, query)


@partial(jax.jit, static_argnames=("n_h",))
def desc_joint_std(params: DescParams, key, tables: DescTables, observed, xgrid, train: Points, query: Points,
                   n_h: int = 32):
    """``(mean (R,M), cov (R,M,M), noise_var (R,M), jitter (R,))`` in standardised units."""
    return jax.vmap(_joint_one, in_axes=(0, None, None, None, None, None, None, None))(
        params, key, tables, observed, xgrid, train, query, n_h)


def _draws_one(p: DescParams, key, tables, observed, xgrid, train: Points, query: Points, n_samples: int):
    kh, kf = jax.random.split(key)
    hs = _latents(p, kh, n_samples, train.y.dtype)
    M = query.x.shape[0]

    def one(args):
        h, k1 = args
        m, C, _ = _condition(p, h, tables, observed, xgrid, train, query)
        L = jnp.linalg.cholesky(C + 1e-9 * jnp.eye(M, dtype=C.dtype))
        return m + L @ jax.random.normal(k1, (M,), C.dtype)

    return jax.lax.map(one, (hs, jax.random.split(kf, n_samples)))


@partial(jax.jit, static_argnames=("n_samples",))
def desc_draws_std(params: DescParams, key, tables: DescTables, observed, xgrid, train: Points, query: Points,
                   n_samples: int = 100):
    """Joint posterior draws of the latent curves (standardised), ``(R, n_samples, M)``."""
    R = params.log_g_var.shape[0]
    keys = jax.random.split(key, R)
    return jax.vmap(_draws_one, in_axes=(0, 0, None, None, None, None, None, None))(
        params, keys, tables, observed, xgrid, train, query, n_samples)
