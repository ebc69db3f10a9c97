r"""Power laws, saturating power laws, Chinchilla, and compute helpers.

Every law is a pure function ``law(params, inputs)``. Exponentials of large numbers are
formed in log space (``N**-alpha = exp(-alpha * log N)``), so ``N ~ 1e12`` or
``C ~ 1e25`` never overflow, and everything is differentiable.
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxscale._pytree import register_serializable

__all__ = [
    "ChinchillaParams",
    "PowerLawParams",
    "SaturatingPowerLawParams",
    "chinchilla",
    "chinchilla_log_lse",
    "chinchilla_theta_to_params",
    "chinchilla_params_to_theta",
    "chinchilla_admissible",
    "chinchilla_squared_exponents",
    "chinchilla_sqrt_exponents",
    "chinchilla_floor_note",
    "chinchilla_exponent_notes",
    "LARGE_EXPONENT",
    "chinchilla_optimal",
    "power_law",
    "saturating_power_law",
    "compute_6nd",
    "nanogpt_total_params",
]


@register_serializable
class ChinchillaParams(NamedTuple):
    """Parameters of :math:`L(N, D) = E + A/N^\alpha + B/D^\beta`."""

    E: jnp.ndarray
    A: jnp.ndarray
    B: jnp.ndarray
    alpha: jnp.ndarray
    beta: jnp.ndarray


@register_serializable
class PowerLawParams(NamedTuple):
    """Parameters of :math:`y = a x^{-b}`."""

    a: jnp.ndarray
    b: jnp.ndarray


@register_serializable
class SaturatingPowerLawParams(NamedTuple):
    """Parameters of :math:`y = E + A x^{-\alpha}`."""

    E: jnp.ndarray
    A: jnp.ndarray
    alpha: jnp.ndarray


def chinchilla(params: ChinchillaParams, N, D, xp=jnp):
    r"""Chinchilla loss :math:`L(N, D) = E + A N^{-\alpha} + B D^{-\beta}`.

    Args:
      params: :class:`ChinchillaParams` (constrained, positive values).
      N: parameter counts (any shape broadcastable with ``D``).
      D: training tokens.
      xp: ``jax.numpy`` (jit-able) or ``numpy`` (host-side bookkeeping: eager device code would
        compile a small program per operation; the parameters are then taken as NumPy floats too).

    Returns:
      The predicted loss, with the broadcast shape of ``N`` and ``D``.

    Example:
      >>> import jax.numpy as jnp
      >>> p = ChinchillaParams(1.69, 406.4, 410.7, 0.34, 0.28)
      >>> round(float(chinchilla(p, 70e9, 1.4e12)), 3)
      1.937
    """
    if xp is np:  # a JAX leaf would send every operation below to the device
        params = type(params)(*(np.asarray(v, float) for v in params))
    N = xp.asarray(N)
    D = xp.asarray(D)
    return (
        params.E
        + params.A * xp.exp(-params.alpha * xp.log(N))
        + params.B * xp.exp(-params.beta * xp.log(D))
    )


def chinchilla_log_lse(theta, log_N, log_D, xp=jnp):
    r"""Log-loss of Chinchilla in the log-sum-exp form used by Hoffmann et al. and Epoch.

    :math:`\log L = \mathrm{LSE}(a - \alpha \log N,\; b - \beta \log D,\; e)` with
    :math:`A = e^a, B = e^b, E = e^e`.

    Args:
      theta: array ``(..., 5)`` ordered ``(a, b, e, alpha, beta)``.
      log_N: natural log of parameter counts, shape ``(n,)``.
      log_D: natural log of tokens, shape ``(n,)``.
      xp: ``jax.numpy`` (jit-able) or ``numpy`` (host-side bookkeeping).

    Returns:
      ``log L`` with shape ``(n,)`` (broadcast with any leading axes of ``theta``).
    """
    theta = xp.asarray(theta)
    a, b, e, alpha, beta = (theta[..., i, None] for i in range(5))
    t1 = a - alpha * xp.asarray(log_N)
    t2 = b - beta * xp.asarray(log_D)
    t3 = xp.broadcast_to(e, xp.shape(t1))
    m = xp.maximum(xp.maximum(t1, t2), t3)
    if xp is jnp:
        m = jax.lax.stop_gradient(m)
    return m + xp.log(xp.exp(t1 - m) + xp.exp(t2 - m) + xp.exp(t3 - m))


def chinchilla_theta_to_params(theta) -> ChinchillaParams:
    """Map the ``(a, b, e, alpha, beta)`` vector of :func:`chinchilla_log_lse` to parameters.

    A NumPy ``theta`` gives NumPy parameters (host-side bookkeeping compiles nothing); anything
    else gives JAX arrays.
    """
    xp = np if isinstance(theta, np.ndarray) else jnp
    theta = xp.asarray(theta)
    return ChinchillaParams(
        E=xp.exp(theta[..., 2]),
        A=xp.exp(theta[..., 0]),
        B=xp.exp(theta[..., 1]),
        alpha=theta[..., 3],
        beta=theta[..., 4],
    )


def chinchilla_admissible(theta):
    """Whether ``(a, b, e, alpha, beta)`` vectors ``(..., 5)`` have both exponents >= 0, i.e. a loss
    that does not grow with N or D. A fit with a negative exponent can match noise at the edge of
    the runs slightly better (e.g. ``B D^+12`` with ``B ~ 1e-147`` bending the last few runs) and
    then explodes beyond them, so fitters prefer admissible candidates. Works on NumPy and JAX arrays.
    """
    return (theta[..., 3] >= 0) & (theta[..., 4] >= 0)


def chinchilla_squared_exponents(v):
    """``(a, b, e, u, w)`` -> ``(a, b, e, u^2, w^2)``: a parameterisation whose exponents cannot go
    negative (fits that must stay :func:`chinchilla_admissible` optimise ``v``). NumPy in, NumPy
    out; anything else gives JAX arrays (jit- and grad-able)."""
    xp = np if isinstance(v, np.ndarray) else jnp
    return xp.concatenate([v[..., :3], xp.square(v[..., 3:])], axis=-1)


def chinchilla_sqrt_exponents(theta):
    """Inverse of :func:`chinchilla_squared_exponents`: ``(a, b, e, alpha, beta)`` ->
    ``(a, b, e, sqrt(alpha), sqrt(beta))``, the start of a fit with the exponents kept >= 0 (an
    exponent below 1e-6, negative included, starts at sqrt(1e-6), where the gradient of the square
    does not vanish). NumPy in, NumPy out; anything else gives JAX arrays."""
    xp = np if isinstance(theta, np.ndarray) else jnp
    return xp.concatenate([theta[..., :3], xp.sqrt(xp.maximum(theta[..., 3:], 1e-6))], axis=-1)


def chinchilla_floor_note(E, lowest_loss) -> str | None:
    """What to tell a user whose fitted irreducible loss ``E`` went to 0 (below 1e-3 x the lowest
    fitted loss), else ``None``: the runs do not show the loss levelling off, so the law keeps
    falling as a pure power law beyond them."""
    E, lowest_loss = float(E), float(lowest_loss)
    if not E < 1e-3 * lowest_loss:
        return None
    return (f"the irreducible loss E = {E:.3g} went to its bound 0 (the lowest fitted loss is {lowest_loss:.4g}): "
            "these runs do not show the loss levelling off, so the law keeps falling as a pure power law far "
            "beyond them; treat long extrapolations with care, or add runs at larger N and D")


#: Exponents above this are warned as a term that acts only on the smallest runs (fitted exponents
#: of language models lie around 0.1-1; Epoch's grid of starts stops at 2).
LARGE_EXPONENT = 3.0


def chinchilla_exponent_notes(theta, log_n, log_d, n_name: str = "N", d_name: str = "D") -> list[str]:
    """What to tell a user whose fitted exponents the runs do not pin down: an exponent < 0 (the loss
    grows with that size), ~0 (the term is not identified) or above :data:`LARGE_EXPONENT` (the term
    fits at most the smallest runs). ``theta`` is ``(a, b, e, alpha, beta)`` in the units of the
    runs' ``ln N`` / ``ln D`` (``log_n``, ``log_d``); the names are the user's columns."""
    theta = np.asarray(theta, float)
    notes = []
    for i, (name, col, coef, logs) in enumerate((("alpha", n_name, "A", log_n), ("beta", d_name, "B", log_d))):
        x = float(theta[3 + i])
        if x < 0:
            notes.append(f"the exponent {name} = {x:.3g} is negative: no start with non-negative exponents fitted "
                         f"these runs, and the best fit has the loss grow with {col}. Predictions beyond the runs' "
                         f"{col} follow that growth and are not meaningful; add runs that vary {col}")
        elif x < 1e-3:
            notes.append(f"the exponent {name} = {x:.3g} went to 0: the loss barely changes with {col} in these runs, "
                         "so that term is not identified")
        elif x > LARGE_EXPONENT:
            logs = np.asarray(logs, float)
            big = (f" ({coef} = e^{theta[i]:.4g} is beyond the float range, reported as null)"
                   if theta[i] > np.log(np.finfo(float).max) else "")
            edge = np.exp((theta[i] + np.log(100.0)) / x)  # where the term falls to 0.01
            notes.append(f"the exponent {name} = {x:.3g} is implausibly large{big}: the {col} term adds less than 0.01 "
                         f"to the loss beyond {col} ~ {edge:.3g} (the runs span {np.exp(logs.min()):.4g}-"
                         f"{np.exp(logs.max()):.4g}), so it fits at most the smallest runs; beyond them the law is E + "
                         f"the other term. Add runs that vary {col} to pin it down")
    return notes


def chinchilla_params_to_theta(params: ChinchillaParams):
    """Inverse of :func:`chinchilla_theta_to_params`. NumPy parameters give a NumPy vector
    (host-side bookkeeping compiles nothing); anything else gives a JAX array."""
    xp = np if all(isinstance(v, np.ndarray | np.generic | float) for v in params) else jnp
    return xp.stack(
        [xp.log(params.A), xp.log(params.B), xp.log(params.E), xp.asarray(params.alpha), xp.asarray(params.beta)],
        axis=-1,
    )


def chinchilla_optimal(theta, compute):
    """``(N*, D*, L*)`` minimising the law at fixed compute ``C = 6 N D`` (closed form).

    ``theta`` is ``(a, b, e, alpha, beta)``; every output has the shape of ``compute``. NumPy
    ``theta`` and ``compute`` give NumPy outputs (computed on the host); otherwise JAX arrays
    (jit- and vmap-able).
    """
    host = isinstance(theta, np.ndarray) and isinstance(compute, np.ndarray)
    xp = np if host else jnp
    theta = xp.asarray(theta)
    # in logs throughout: A = e^a or B = e^b can exceed the float range (a law whose D term is a
    # cliff at small D, beta ~ 150, has b ~ 2500) while the optimum itself is finite
    a, b, e, alpha, beta = (theta[..., i] for i in range(5))
    log_c = xp.log(xp.asarray(compute) / 6.0)
    s = alpha + beta
    log_n = (xp.log(alpha) + a - xp.log(beta) - b) / s + (beta / s) * log_c
    log_d = log_c - log_n
    # the law at the optimum (log-sum-exp); the parameters' leading axes broadcast against the budgets
    log_l = xp.logaddexp(xp.logaddexp(a - alpha * log_n, b - beta * log_d), e)
    return xp.exp(log_n), xp.exp(log_d), xp.exp(log_l)


def power_law(params: PowerLawParams, x):
    r"""Pure power law :math:`y = a x^{-b}`, formed as :math:`\exp(\log a - b \log x)`."""
    return jnp.exp(jnp.log(params.a) - params.b * jnp.log(jnp.asarray(x)))


def saturating_power_law(params: SaturatingPowerLawParams, x):
    r"""Saturating power law :math:`y = E + A x^{-\alpha}` (irreducible term ``E``)."""
    return params.E + jnp.exp(jnp.log(params.A) - params.alpha * jnp.log(jnp.asarray(x)))


def compute_6nd(N, D):
    """Training compute ``C = 6 N D`` in FLOPs, in floating point (no integer overflow).

    Integers are promoted to the default float type first; with x64 on this is float64.
    """
    N = jnp.asarray(N, dtype=jnp.result_type(float))
    D = jnp.asarray(D, dtype=jnp.result_type(float))
    return 6.0 * N * D


def nanogpt_total_params(n_layer, n_embd, vocab_size: int = 50257, block_size: int = 1024):
    r"""Total parameter count of a nanoGPT model, as nanoGPT's ``transformer_sizing`` counts it.

    :math:`N = d (V + T) + L (12 d^2 + 2 d) + d`: token and position embeddings (the head is
    tied), ``12 d^2`` weights per block plus its two LayerNorm gains, and the final LayerNorm.
    This is the helper the zero-shot learning-curve paper used (1600 x 48 -> 1.557 B,
    512 x 8 -> 51.4 M). Computed in floating point, so ``6 * N * tokens`` cannot overflow: with
    JAX arrays (or tracers) in the default float type, with anything else in NumPy float64.

    Example:
      >>> int(nanogpt_total_params(8, 512))
      51430400
    """
    if isinstance(n_layer, jax.Array) or isinstance(n_embd, jax.Array):
        L = jnp.asarray(n_layer, dtype=jnp.result_type(float))
        d = jnp.asarray(n_embd, dtype=jnp.result_type(float))
    else:
        L = np.asarray(n_layer, dtype=np.float64)
        d = np.asarray(n_embd, dtype=np.float64)
    return d * (vocab_size + block_size) + L * (12.0 * d * d + 2.0 * d) + d
