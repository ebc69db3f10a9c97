"""Context-aware scaling law of Montgomery et al. (2025, arXiv 2510.14919).

    P(C, n_pmt, n_ctx) = [1 - exp(-A (C/C_c)^alpha)] * [1 - exp(-B (n_pmt/n_c)^beta)] * S(n_pmt, n_ctx)

``A`` and ``C_c`` (and ``B`` and ``n_c``) are not separately identifiable (only the products
``A C_c^-alpha`` and ``B n_c^-beta`` enter the law), so it is computed from the identifiable
parameters::

    a = log A - alpha * log(C_c / C_REF),    b = log B - beta * log(n_c / N_REF)

with fixed normalisers ``C_REF = 1e22`` FLOPs and ``N_REF = 1e3`` tokens, so that
``A (C/C_c)^alpha = exp(a + alpha * log(C / C_REF))``.  Both saturating factors are evaluated in
log space as ``log(-expm1(-exp(z)))`` with series branches at both ends, so gradients stay finite.

Penalties ``S`` (all decreasing in ``n_pmt``, -> 1 well below ``n_ctx`` and -> 0 well above it):

* ``"none"``: S = 1 (the ablation).
* ``"step"``: paper-literal ``sigmoid(n_ctx - n_pmt)`` with a one-token width.
* ``"logistic"``: ``sigmoid((n_ctx - n_pmt) / (scale * n_ctx))``; ``scale`` is a relative width.
* ``"log_ratio"``: ``1 / (1 + (n_pmt / n_ctx)^scale)``; scale-free, ``scale`` is the steepness kappa.

Optional extras (all default off, giving the paper's law): a chance ``floor`` g so that
P = g + (1 - g) * law, and a length ``decay`` gamma >= 0 multiplying by (1 + n_pmt/N_REF)^-gamma
(our extension for distractor-filled prompts whose scores fall with length), and a cliff ``shift``
c so that the penalty uses an effective limit c * n_ctx.
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxscale._pytree import register_serializable

__all__ = [
    "C_REF",
    "N_REF",
    "PENALTIES",
    "ContextLawParams",
    "PaperContextParams",
    "paper_to_identifiable",
    "identifiable_to_paper",
    "log_saturation",
    "log_penalty",
    "log_context_law",
    "context_law",
    "context_compute",
]

C_REF = 1e22
N_REF = 1e3
PENALTIES = ("none", "step", "logistic", "log_ratio")


@register_serializable
class ContextLawParams(NamedTuple):
    """Identifiable 4-parameter form: a, alpha (compute), b, beta (prompt length)."""

    a: jax.Array
    alpha: jax.Array
    b: jax.Array
    beta: jax.Array


@register_serializable
class PaperContextParams(NamedTuple):
    """The paper's 6-parameter form (A, C_c, alpha, B, n_c, beta); C_c in FLOPs, n_c in tokens."""

    A: jax.Array
    C_c: jax.Array
    alpha: jax.Array
    B: jax.Array
    n_c: jax.Array
    beta: jax.Array


def paper_to_identifiable(p: PaperContextParams) -> ContextLawParams:
    """Collapse the 6-parameter form onto the 4 identifiable parameters (identical predictions)."""
    a = jnp.log(p.A) - p.alpha * (jnp.log(p.C_c) - jnp.log(C_REF))
    b = jnp.log(p.B) - p.beta * (jnp.log(p.n_c) - jnp.log(N_REF))
    return ContextLawParams(a, p.alpha, b, p.beta)


def identifiable_to_paper(p: ContextLawParams, C_c=C_REF, n_c=N_REF) -> PaperContextParams:
    """One member of the 6-parameter ridge for chosen normalisers C_c and n_c."""
    A = jnp.exp(p.a + p.alpha * (jnp.log(C_c) - jnp.log(C_REF)))
    B = jnp.exp(p.b + p.beta * (jnp.log(n_c) - jnp.log(N_REF)))
    return PaperContextParams(A, jnp.asarray(C_c, dtype=A.dtype), p.alpha, B,
                              jnp.asarray(n_c, dtype=B.dtype), p.beta)


def log_saturation(z):
    """log(1 - exp(-exp(z))), stable for all z with finite gradients.

    Small z: log(u) + log1p(-u/2 + ...) ~ z - u/2 (error < u^2/24 < 1e-18 for z < -20).
    Large z: log(1 - e^-u) ~ -e^-u (error < e^-2u, u > e^5).
    """
    z = jnp.asarray(z)
    mid = jnp.log(-jnp.expm1(-jnp.exp(jnp.clip(z, -20.0, 5.0))))
    lo = z - 0.5 * jnp.exp(jnp.minimum(z, -20.0))
    hi = -jnp.exp(-jnp.exp(jnp.clip(z, 5.0, 50.0)))  # exactly 0 in float64 beyond z = 7
    return jnp.where(z < -20.0, lo, jnp.where(z > 5.0, hi, mid))


def log_penalty(n_pmt, n_ctx, penalty: str = "logistic", scale=0.05, shift=1.0):
    """log S(n_pmt, n_ctx) for the penalty kinds in :data:`PENALTIES` (see module docstring).

    ``shift`` moves the cliff to ``shift * n_ctx`` (an effective context limit; 1 = the claimed one).
    """
    n_pmt = jnp.asarray(n_pmt)
    n_ctx = jnp.asarray(n_ctx) * shift
    if penalty == "none":
        return jnp.zeros(jnp.broadcast_shapes(n_pmt.shape, n_ctx.shape), dtype=jnp.result_type(n_pmt, n_ctx, float))
    if penalty == "step":
        return jax.nn.log_sigmoid(n_ctx - n_pmt)
    if penalty == "logistic":
        return jax.nn.log_sigmoid((n_ctx - n_pmt) / (scale * n_ctx))
    if penalty == "log_ratio":
        return -jax.nn.softplus(scale * (jnp.log(n_pmt) - jnp.log(n_ctx)))
    raise ValueError(f"penalty={penalty!r} is unknown; choose one of {PENALTIES}")


def log_context_law(params, log_C, n_pmt, n_ctx, *, penalty: str = "logistic", scale=0.05, decay=0.0,
                    shift=1.0):
    """log of the law without chance floor; ``params`` may be either parameter form."""
    if isinstance(params, PaperContextParams):
        params = paper_to_identifiable(params)
    log_C = jnp.asarray(log_C)
    n_pmt = jnp.asarray(n_pmt)
    log_n = jnp.log(n_pmt / N_REF)
    out = log_saturation(params.a + params.alpha * (log_C - jnp.log(C_REF)))
    out = out + log_saturation(params.b + params.beta * log_n)
    out = out + log_penalty(n_pmt, n_ctx, penalty, scale, shift)
    return out - decay * jnp.log1p(n_pmt / N_REF)


def context_law(params, C, n_pmt, n_ctx, *, penalty: str = "logistic", scale=0.05, floor=0.0, decay=0.0,
                shift=1.0, log_compute: bool = False):
    """P(C, n_pmt, n_ctx) in [floor, 1]; ``C`` in FLOPs (or log FLOPs with ``log_compute=True``).

    Evaluated directly as a product of ``-expm1(-exp(z))`` factors (fewer transcendentals than the
    log-space :func:`log_context_law`, which it matches to rounding; tiny P underflow to 0, not NaN).
    """
    if isinstance(params, PaperContextParams):
        params = paper_to_identifiable(params)
    log_C = jnp.asarray(C) if log_compute else jnp.log(jnp.asarray(C))
    n_pmt = jnp.asarray(n_pmt)
    z_c = params.a + params.alpha * (log_C - jnp.log(C_REF))
    z_n = params.b + params.beta * jnp.log(n_pmt / N_REF)
    # exp(z) overflows beyond z ~ 709 and its gradient turns NaN: the factor is exactly 1 past z = 4
    p = -jnp.expm1(-jnp.exp(jnp.minimum(z_c, 50.0))) * -jnp.expm1(-jnp.exp(jnp.minimum(z_n, 50.0)))
    if penalty != "none":
        p = p * jnp.exp(log_penalty(n_pmt, n_ctx, penalty, scale, shift))
    p = p * jnp.exp(-decay * jnp.log1p(n_pmt / N_REF))
    return floor + (1.0 - floor) * p


def context_compute(n_nonemb, n_ctx, d_pretrain=2.0e12, ext_steps=400, ext_seqs=64):
    """Paper's training compute C = 6 N_nonemb (D_pretrain + steps * seqs * n_ctx) in FLOPs.

    The extension run is 400 steps x 64 sequences x n_ctx tokens (also for the 4k controls);
    this reproduces all 12 rows of the paper's Table 1 to < 3e-5 relative.
    """
    n_nonemb = jnp.asarray(n_nonemb, dtype=jnp.float64 if jax.config.read("jax_enable_x64") else jnp.float32)
    return 6.0 * n_nonemb * (d_pretrain + ext_steps * ext_seqs * jnp.asarray(n_ctx, dtype=n_nonemb.dtype))
