"""PCA imputation (hard-EM, rank 1) and principal capabilities (paper §3.2 and App. B.3).

Everything is fitted on training rows only; test rows reuse the frozen transform.
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import export as jax_export

from jaxscale import _programs as programs
from jaxscale._pytree import register_serializable

__all__ = [
    "ImputeState",
    "PCAState",
    "fit_impute",
    "apply_impute",
    "fit_pca",
    "project",
    "explained_variance",
    "fit_transform",
]


@register_serializable
class ImputeState(NamedTuple):
    """Frozen imputation transform: z-score (mu, sd) and the rank-r PCA (mean m, components V)."""

    mu: jax.Array  # (T,)
    sd: jax.Array  # (T,)
    m: jax.Array  # (T,) mean of the completed z-matrix at the last iteration
    V: jax.Array  # (r, T) top right singular vectors at the last iteration


@register_serializable
class PCAState(NamedTuple):
    """Mean-centred PCA: ``S = (B - mean) @ components.T``."""

    mean: jax.Array  # (T,)
    components: jax.Array  # (n_components, T), largest-|loading| positive
    explained_variance_ratio: jax.Array  # (n_components,)
    singular_values: jax.Array  # (n_components,)


# a traced program returning a PCAState can be kept on disk (jaxscale._programs)
jax_export.register_namedtuple_serialization(PCAState, serialized_name="jaxscale.observational.PCAState")


def _rank_r(Z, rank, rows):
    m = (rows[:, None] * Z).sum(axis=0) / rows.sum()
    _, _, Vt = jnp.linalg.svd(rows[:, None] * (Z - m), full_matrices=False)
    return m, Vt[:rank]


def _rows(B, rows):
    return jnp.ones(B.shape[0], B.dtype) if rows is None else jnp.asarray(rows, B.dtype)


def fit_impute(B, observed, rows=None, rank: int = 1, n_iter: int = 1000):
    """Hard-impute EM on the training rows.

    B: (M, T) scores (missing entries may hold anything, e.g. NaN); observed: (M, T) bool;
    rows: optional (M,) 0/1 mask of the rows to fit on (padding / train rows; others ignored).
    Returns (B_imputed clipped to [0, 1], ImputeState).
    """
    B = jnp.asarray(B)
    r = _rows(B, rows)
    obs = jnp.asarray(observed, bool)
    wobs = obs * r[:, None]
    Bz = jnp.where(obs, B, 0.0)
    n_obs = wobs.sum(axis=0)
    mu = (wobs * Bz).sum(axis=0) / n_obs
    sd = jnp.sqrt((wobs * (Bz - mu) ** 2).sum(axis=0) / n_obs)
    Z0 = jnp.where(obs, (Bz - mu) / sd, 0.0)

    def body(_, carry):
        Z, _, _ = carry
        m, V = _rank_r(Z, rank, r)
        R = m + (Z - m) @ V.T @ V
        return jnp.where(obs, Z, R), m, V

    m0, V0 = _rank_r(Z0, rank, r)
    Z, m, V = jax.lax.fori_loop(0, n_iter, body, (Z0, m0, V0))
    out = jnp.clip(Z * sd + mu, 0.0, 1.0)
    return out, ImputeState(mu, sd, m, V)


def apply_impute(state: ImputeState, B, observed, n_iter: int = 1000):
    """Impute rows with the frozen training transform (fixed-point iterations, rows independent)."""
    B = jnp.asarray(B)
    obs = jnp.asarray(observed, bool)
    Z0 = jnp.where(obs, (jnp.where(obs, B, 0.0) - state.mu) / state.sd, 0.0)
    P = state.V.T @ state.V

    def body(_, Z):
        R = state.m + (Z - state.m) @ P
        return jnp.where(obs, Z, R)

    Z = jax.lax.fori_loop(0, n_iter, body, Z0)
    return jnp.clip(Z * state.sd + state.mu, 0.0, 1.0)


def fit_pca(B, n_components: int = 5, rows=None) -> PCAState:
    """PCA with mean-centring only (on ``rows``); each component flipped so its largest-|loading| > 0."""
    B = jnp.asarray(B)
    r = _rows(B, rows)
    mean = (r[:, None] * B).sum(axis=0) / r.sum()
    _, s, Vt = jnp.linalg.svd(r[:, None] * (B - mean), full_matrices=False)
    lam = s**2
    ratio = lam / lam.sum()
    comps = Vt[:n_components]
    idx = jnp.argmax(jnp.abs(comps), axis=1)
    sign = jnp.sign(comps[jnp.arange(comps.shape[0]), idx])
    comps = comps * sign[:, None]
    return PCAState(mean, comps, ratio[:n_components], s[:n_components])


def project(state: PCAState, B, k: int | None = None):
    """Principal-capability scores S = (B - mean) γᵀ, first ``k`` components."""
    S = (jnp.asarray(B) - state.mean) @ state.components.T
    return S if k is None else S[:, :k]


def explained_variance(B, n_components: int = 5):
    """Explained-variance ratios of the imputed, mean-centred PCA of all rows of ``B`` (NaN = missing)."""
    B = np.asarray(B, float)
    return fit_transform(B, np.ones(B.shape[0], bool))[1].explained_variance_ratio[:n_components]


def _fit_transform(B, obs, train):
    Bi_tr, imp = fit_impute(B, obs, train)
    Bi_all = apply_impute(imp, B, obs)
    Bi = jnp.where(train[:, None] > 0, Bi_tr, Bi_all)
    pca = fit_pca(Bi, min(5, B.shape[1]), train)
    return Bi, pca, project(pca, Bi)


def _pad_rows(n: int) -> int:
    return max(128, -(-n // 64) * 64)


def fit_transform(B, train):
    """Impute + PCA fitted on the rows where ``train`` is True (NaN = missing), applied to all rows.

    Rows are zero-padded to a fixed bucket (128, then multiples of 64) so that every task with
    the same number of metrics shares one compiled program.
    Returns (B_imputed, PCAState, S) with all rows in input order and all (<= 5) components
    (``B_imputed`` and ``S`` as numpy arrays).
    """
    B = np.asarray(B, float)
    train = np.asarray(train, bool)
    n, t = B.shape
    if train.sum() < 3:
        raise ValueError(f"fit_transform: need >= 3 training rows, got {int(train.sum())}")
    if t < 2:
        raise ValueError(f"fit_transform: need >= 2 benchmark columns, got {t}")
    obs = np.isfinite(B)
    bad = np.flatnonzero((obs & train[:, None]).sum(axis=0) < 2)
    if bad.size:
        raise ValueError(f"fit_transform: benchmark column(s) {bad.tolist()} have < 2 observed "
                         "training values; drop those columns or add models")
    npad = _pad_rows(n)
    Bp = np.zeros((npad, t))
    Bp[:n] = np.where(obs, B, 0.0)
    op = np.ones((npad, t), bool)
    op[:n] = obs
    tp = np.zeros(npad)
    tp[:n] = train
    Bi, pca, S = programs.call("obs_fit_transform", _fit_transform, (Bp, op, tp))
    return np.asarray(Bi)[:n], pca, np.asarray(S)[:n]
