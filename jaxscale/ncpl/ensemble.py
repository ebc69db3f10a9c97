"""Deep ensembles of NCPL heads: members initialised and applied with ``vmap`` over keys.

Each member predicts a Gaussian (mean, log-std) of the standardised residual; the ensemble is
the equal-weight mixture, summarised by its mean and variance (mean of member variances plus the
variance of member means) and a central Gaussian interval.
"""
from __future__ import annotations

from functools import lru_cache
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxscale.ncpl.head import HeadConfig, NCPLHead

__all__ = ["Members", "init_members", "apply_member", "predict_members", "mixture", "Z90"]

Z90 = 1.6448536269514722  # standard normal 95% quantile -> central 90% interval


class Members(NamedTuple):
    graphdef: object  # nnx GraphDef of one head (static)
    params: object  # nnx.State with a leading member axis on every leaf


def init_members(key, cfg: HeadConfig, n_members: int) -> Members:
    """``n_members`` independently initialised heads, stacked along a leading axis."""
    if n_members < 1:
        raise ValueError(f"n_members must be >= 1, got {n_members}")
    graphdef, init = _init_fn(cfg)
    return Members(graphdef, init(jax.random.split(key, n_members)))


@lru_cache(maxsize=32)
def _init_fn(cfg: HeadConfig):
    """(graphdef, compiled vmapped initialiser) of one head configuration (compiled once)."""
    graphdef, _ = nnx.split(nnx.eval_shape(lambda: NCPLHead(cfg, rngs=nnx.Rngs(0))))

    def one(k):
        return nnx.split(NCPLHead(cfg, rngs=nnx.Rngs(params=k)))[1]

    return graphdef, jax.jit(jax.vmap(one))


def apply_member(graphdef, params, pooled, ctx, text_id, values, present):
    """One member's (mean, log_std) of the standardised residual (features per unique text)."""
    return nnx.merge(graphdef, params)(pooled, ctx, text_id, values, present)


def predict_members(members: Members, pooled, ctx, text_id, values, present, chunk: int = 4096):
    """(M, n) member means and log-stds for runs given by ``text_id``/``values``/``present``.

    ``pooled``/``ctx`` are shared (U, H)/(U, F, H) features, or per member (M, U, H)/(M, U, F, H)
    (after stage 2, when every member has its own fine-tuned encoder). Rows are padded to a
    power-of-two bucket so different table sizes reuse few compilations.
    """
    per_member = np.ndim(pooled) == 3
    axes = (None, 0, 0 if per_member else None, 0 if per_member else None, None, None, None)
    f = _apply_fn(axes)
    n = len(text_id)
    mus, lss = [], []
    for s in range(0, n, chunk):
        e = min(s + chunk, n)
        size = max(256, 1 << int(np.ceil(np.log2(e - s))))
        pad = lambda a: np.concatenate([a, np.zeros((size - (e - s),) + a.shape[1:], a.dtype)])  # noqa: E731
        mu, ls = f(members.graphdef, members.params, jnp.asarray(pooled), jnp.asarray(ctx),
                   jnp.asarray(pad(np.asarray(text_id[s:e]))), jnp.asarray(pad(np.asarray(values[s:e]))),
                   jnp.asarray(pad(np.asarray(present[s:e]))))
        mus.append(np.asarray(mu)[:, : e - s])
        lss.append(np.asarray(ls)[:, : e - s])
    return np.concatenate(mus, 1), np.concatenate(lss, 1)


_FNS = {}


def _apply_fn(axes):
    if axes not in _FNS:
        _FNS[axes] = jax.jit(jax.vmap(apply_member, in_axes=axes), static_argnums=0)
    return _FNS[axes]


def mixture(mu, log_std):
    """Mean and std of the equal-weight Gaussian mixture over the member axis 0."""
    mu, log_std = np.asarray(mu, float), np.asarray(log_std, float)
    mean = mu.mean(0)
    var = np.mean(np.exp(2 * log_std), 0) + mu.var(0)
    return mean, np.sqrt(var)
