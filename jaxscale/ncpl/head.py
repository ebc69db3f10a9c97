"""The NCPL head: number-token MLP + field contexts from the encoder + regression MLP.

Inputs per run: the encoder's mean-pooled text state (H,), the encoder's state at each numeric
field's placeholder token (F, H) — the field's "key" in context of the text fields — and the
standardised values (F,). Number tokens follow the paper: ``v -> W2 relu(W1 v + b1) + b2``
(1 -> 2d -> d, one MLP shared by all fields). Each field token = projected context + number
embedding; tokens of absent fields are zeroed. The head concatenates the field tokens and the
projected text state and predicts the standardised residual mean and log-std.
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from jaxscale._registry import register_serializable

__all__ = ["HeadConfig", "NCPLHead", "text_features"]


@register_serializable
class HeadConfig(NamedTuple):
    n_fields: int
    enc_dim: int = 384
    d_field: int = 32
    d_text: int = 32
    width: int = 256
    depth: int = 2


class NCPLHead(nnx.Module):
    def __init__(self, cfg: HeadConfig, *, rngs: nnx.Rngs):
        self.cfg = cfg
        self.ctx_proj = nnx.Linear(cfg.enc_dim, cfg.d_field, rngs=rngs)
        self.txt_proj = nnx.Linear(cfg.enc_dim, cfg.d_text, rngs=rngs)
        self.num1 = nnx.Linear(1, 2 * cfg.d_field, rngs=rngs)
        self.num2 = nnx.Linear(2 * cfg.d_field, cfg.d_field, rngs=rngs)
        dims = [cfg.n_fields * cfg.d_field + cfg.d_text] + [cfg.width] * cfg.depth
        self.body = nnx.List([nnx.Linear(a, b, rngs=rngs) for a, b in zip(dims[:-1], dims[1:])])
        self.out = nnx.Linear(cfg.width, 2, rngs=rngs,
                              kernel_init=nnx.initializers.normal(1e-3))

    def number_tokens(self, values):
        """(..., F) values -> (..., F, d) number-token embeddings."""
        return self.num2(jax.nn.relu(self.num1(values[..., None])))

    def __call__(self, pooled, ctx, text_id, values, present):
        """Unique-text pooled (U, H) and ctx (U, F, H); per-run text_id (B,), values/present (B, F)
        -> (mean, log_std), each (B,). Projections run on the U unique texts before the gather."""
        ctx_p = self.ctx_proj(ctx)[text_id]
        txt_p = self.txt_proj(pooled)[text_id]
        tok = (ctx_p + self.number_tokens(values)) * present[..., None]
        x = jnp.concatenate([tok.reshape(tok.shape[0], -1), txt_p], -1)
        for layer in self.body:
            x = jax.nn.gelu(layer(x))
        o = self.out(x)
        return o[:, 0], o[:, 1]


def text_features(hidden, mask, num_pos):
    """From encoder states (U, T, H), mask (U, T), placeholder positions (U, F):
    mean-pooled text (U, H) and field contexts (U, F, H) (zeros for absent fields)."""
    m = mask[..., None].astype(hidden.dtype)
    pooled = jnp.sum(hidden * m, 1) / jnp.maximum(jnp.sum(m, 1), 1.0)
    idx = jnp.maximum(num_pos, 0)
    ctx = jnp.take_along_axis(hidden, idx[..., None], axis=1)
    ctx = ctx * (num_pos >= 0)[..., None].astype(hidden.dtype)
    return pooled, ctx
