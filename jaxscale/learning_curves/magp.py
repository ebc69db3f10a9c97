r"""MaGP: hierarchical latent-variable multi-output GP (Ma et al. 2023, as used by Schram et al. 2025).

Model in standardised units: ``y = f(x, r, d) + eps_d``,
``Cov f = k_H(h_d, h_d') [k_g(x,x') + 1[r=r'] k_f(x,x')]``, ``eps_d ~ N(0, sigma_d^2)``,
``h_d ~ N(0, I_Q)``: tasks d (upper level) are correlated through their latents ``h_d``; the
instance index r is shared across tasks, so an instance's deviation ``k_f`` learnt in one task
transfers to the others (the zero-shot mechanism).

Inference: an **exact** GP over the observed points (a few hundred) with a Gaussian
``q(h_d) = N(mu_d, diag s_d^2)``; the ELBO ``E_q[log N(y | 0, K(h) + S)] - KL(q || p)`` is
estimated with reparameterised samples of ``h`` (``n_mc`` per step) and maximised by Adam with a
held-then-decayed step size (:func:`lr_schedule`; the original uses a constant one and a sparse
variational bound; with this few points the exact GP is cheaper and has no inducing-point
approximation). Hyper-parameters are point estimates (type-II ML), as in the
original. Predictions integrate ``q(h)`` by Monte Carlo: the moments of the mixture over ``n_h``
draws of ``h``, jointly over all query points. All restarts run in one compiled program: vmapped
and split over the devices, or one after another on a single CPU device (``sharded_vmap``'s
``linalg``).
"""
from __future__ import annotations

import warnings
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxscale._log import get_logger, heartbeat
from jaxscale._pytree import register_serializable
from jaxscale.config import warn_if_float32
from jaxscale.gp import JITTER_LADDER, MaGPKernel, gaussian_nll, magp_gram
from jaxscale.infer.sharding import sharded_vmap
from jaxscale.learning_curves.problem import Points

__all__ = ["MaGPParams", "MaGPFit", "init_magp", "magp_loss", "fit_magp", "magp_constrained",
           "report_fit_health", "adam_elbo", "lr_schedule"]

log = get_logger(__name__)
NOISE_FLOOR = 1e-6


@register_serializable
class MaGPParams(NamedTuple):
    """Unconstrained MaGP parameters (logs of positive quantities). Leading restart axis when fitted."""

    log_g_var: jnp.ndarray  # ()
    log_g_scale: jnp.ndarray  # ()
    log_f_var: jnp.ndarray  # ()
    log_f_scale: jnp.ndarray  # ()
    log_h_scale: jnp.ndarray  # (Q,)
    h_mean: jnp.ndarray  # (D, Q) variational means of the task latents
    log_h_std: jnp.ndarray  # (D, Q) variational standard deviations (log)
    log_noise: jnp.ndarray  # (D,) per-task noise variance (log, above NOISE_FLOOR)


class MaGPFit(NamedTuple):
    """Result of :func:`fit_magp` (leading axis = restart)."""

    params: MaGPParams
    loss: jnp.ndarray  # (R,) final negative ELBO (MC estimate with 16 draws)
    history: jnp.ndarray  # (R, steps) negative ELBO estimate before each step
    jitter: jnp.ndarray  # (R,) largest jitter the Cholesky needed during the fit
    ok: np.ndarray  # (R,) bool, finite restarts (used by predictors)
    restart_ids: np.ndarray  # (R,) ids (= fold_in index of the key)


def magp_constrained(params: MaGPParams) -> dict:
    """Positive hyper-parameters of one restart."""
    e = jnp.exp
    return dict(g_var=e(params.log_g_var), g_scale=e(params.log_g_scale), f_var=e(params.log_f_var),
                f_scale=e(params.log_f_scale), h_scale=e(params.log_h_scale),
                h_std=e(params.log_h_std), noise=NOISE_FLOOR + e(params.log_noise))


def init_magp(key, n_tasks: int, q: int = 2, dtype=jnp.float64) -> MaGPParams:
    """Random initialisation of one restart (latent means ~ N(0, I); log hypers jittered)."""
    k = jax.random.split(key, 3)
    z = 0.3 * jax.random.normal(k[0], (5,), dtype)
    return MaGPParams(
        log_g_var=jnp.log(1.0) + z[0], log_g_scale=jnp.log(2.0) + z[1],
        log_f_var=jnp.log(0.1) + z[2], log_f_scale=jnp.log(2.0) + z[3],
        log_h_scale=jnp.log(1.0) + 0.2 * jax.random.normal(k[1], (q,), dtype),
        h_mean=jax.random.normal(k[2], (n_tasks, q), dtype),
        log_h_std=jnp.full((n_tasks, q), jnp.log(0.3), dtype),
        log_noise=jnp.full((n_tasks,), jnp.log(1e-2), dtype),
    )


def _gram(params: MaGPParams, h, xgrid, pts: Points):
    c = magp_constrained(params)
    K = magp_gram(xgrid, pts.p, pts.r, pts.d, pts.p, pts.r, pts.d, c["g_var"], c["g_scale"],
                  c["f_var"], c["f_scale"], h, c["h_scale"])
    if pts.w is None:
        return K + jnp.diag(c["noise"][pts.d])
    w = pts.w
    return K * (w[:, None] * w[None, :]) + jnp.diag(c["noise"][pts.d] * w + (1.0 - w))


def magp_loss(params: MaGPParams, eps, xgrid, pts: Points):
    """Negative ELBO with ``eps`` (S, D, Q) standard-normal draws of the task latents.

    Returns ``(loss, jitter_used)``.
    """
    std = jnp.exp(params.log_h_std)
    hs = params.h_mean[None] + std[None] * eps

    def one(h):
        return gaussian_nll(_gram(params, h, xgrid, pts), pts.y, JITTER_LADDER[0])

    nll, jit = jax.vmap(one)(hs)
    kl = 0.5 * jnp.sum(std**2 + params.h_mean**2 - 1.0 - 2.0 * params.log_h_std)
    return jnp.mean(nll) + kl - _pad_constant(pts), jnp.max(jit)


def _pad_constant(pts: Points):
    """NLL contribution of inert padding points (see ``pad_points``), removed from reported losses."""
    return 0.0 if pts.w is None else 0.5 * jnp.sum(1.0 - pts.w) * jnp.log(2.0 * jnp.pi)


#: Adam's schedule (``decay=True``): the full learning rate for this fraction of the steps, then a cosine
#: decay to :data:`FINAL_LR_FRACTION` of it at the last step. The ELBO is a Monte-Carlo estimate, so a
#: constant rate leaves the parameters jittering at a noise floor and moves log-scale parameters by at
#: most about one rate per step; a higher rate first and a decayed one last reach the 2000-step,
#: constant-1e-2 optimum in 600 steps (nanoGPT-large Quad / Tri / T1, 10 restarts: held-out full-curve
#: RMSE equal or lower, final negative ELBO within 0.1 %).
HOLD_FRACTION, FINAL_LR_FRACTION = 0.3, 0.02


def lr_schedule(learning_rate, steps: int, decay: bool = True):
    """Adam's step size as a function of the optimiser step ``count``: ``learning_rate`` held for
    :data:`HOLD_FRACTION` of ``steps``, then cosine-decayed to :data:`FINAL_LR_FRACTION` of it
    (``decay=False``: constant). ``learning_rate`` may be traced; ``steps`` is static."""
    if not decay:
        return lambda count: learning_rate
    hold = int(HOLD_FRACTION * steps)
    span = max(steps - 1 - hold, 1)

    def rate(count):
        t = jnp.clip((count - hold) / span, 0.0, 1.0)
        return learning_rate * (FINAL_LR_FRACTION + (1.0 - FINAL_LR_FRACTION) * 0.5 * (1.0 + jnp.cos(jnp.pi * t)))

    return rate


def adam_elbo(loss_fn, x0, krun, kfin, latent_shape, steps, learning_rate, n_mc, dtype, *args, decay=True):
    """Adam on a Monte-Carlo ELBO ``loss_fn(x, eps, *args) -> (loss, jitter)`` in one ``lax.scan``.

    Each step draws ``eps`` of shape ``(n_mc, *latent_shape)`` from the step's key (``krun`` split
    ``steps`` times); the final loss uses 16 draws from ``kfin`` (``kfin=None``: the last step's
    estimate instead). ``x0`` may be a fresh initialisation or a previous fit (warm start). The step
    size follows :func:`lr_schedule` (``decay=False``: constant ``learning_rate``).
    Returns ``(x, final_loss, history, max_jitter)``. The one optimiser loop of MaGP, the
    descriptor MaGP and the active-learning refits.
    """
    opt = optax.adam(lr_schedule(learning_rate, steps, decay))
    vg = jax.value_and_grad(loss_fn, has_aux=True)

    def step(carry, k):
        x, st, jmax = carry
        eps = jax.random.normal(k, (n_mc,) + latent_shape, dtype)
        (val, jit), g = vg(x, eps, *args)
        upd, st = opt.update(g, st, x)
        return (optax.apply_updates(x, upd), st, jnp.maximum(jmax, jit)), val

    (x, _, jmax), hist = jax.lax.scan(step, (x0, opt.init(x0), jnp.asarray(0.0, dtype)),
                                      jax.random.split(krun, steps))
    if kfin is None:
        return x, hist[-1], hist, jmax
    final, jit = loss_fn(x, jax.random.normal(kfin, (16,) + latent_shape, dtype), *args)
    return x, final, hist, jnp.maximum(jmax, jit)


def _fit_one(key, xgrid, pts: Points, n_tasks, q, steps, learning_rate, n_mc, decay):
    kinit, krun, kfin = jax.random.split(key, 3)
    x0 = init_magp(kinit, n_tasks, q, pts.y.dtype)
    return adam_elbo(magp_loss, x0, krun, kfin, (n_tasks, q), steps, learning_rate, n_mc,
                     pts.y.dtype, xgrid, pts, decay=decay)


@partial(jax.jit, static_argnames=("n_tasks", "q", "steps", "n_mc", "decay"))
def _fit_many(keys, xgrid, pts, n_tasks, q, steps, learning_rate, n_mc, decay=True):
    # restarts split over all devices (one CPU device: one after another)
    return sharded_vmap(lambda k: _fit_one(k, xgrid, pts, n_tasks, q, steps, learning_rate, n_mc, decay), keys,
                        linalg=True)


def report_fit_health(loss, params, jitter, what: str = "MaGP", history=None) -> np.ndarray:
    """Host-side checks after a compiled fit: warn naming NaN restarts and escalated jitters.

    ``history`` (``(R, steps)`` per-step losses, optional) lets the error name the first Adam step
    that went non-finite. Returns the boolean mask of usable (finite) restarts.
    """
    loss = np.asarray(loss)
    leaves = [np.asarray(l).reshape(loss.shape[0], -1) for l in jax.tree_util.tree_leaves(params)]
    ok = np.isfinite(loss) & np.all([np.all(np.isfinite(l), axis=1) for l in leaves], axis=0)
    if not ok.all():
        bad = np.flatnonzero(~ok).tolist()
        if not ok.any():
            from jaxscale.learning_curves.diagnostics import first_nonfinite_step

            step = first_nonfinite_step(history)
            at = "" if step is None else f" (first non-finite loss at Adam step {step})"
            snap = {k: float(np.asarray(v).reshape(loss.shape[0], -1)[0, 0])
                    for k, v in zip(getattr(params, "_fields", ()), params) if np.ndim(v) >= 1}
            raise ValueError(f"{what}: every restart went non-finite (restart ids {bad}){at}; parameters of "
                             f"restart {bad[0]} (first entries): {snap}. Lower the learning rate (--lr) or check "
                             "the data for constant or duplicated curves")
        warnings.warn(f"{what}: restart(s) {bad} went non-finite and are excluded from the "
                      f"mean over restarts ({int(ok.sum())} of {ok.size} kept)", RuntimeWarning, stacklevel=3)
    jitter = np.asarray(jitter)
    esc = np.flatnonzero(jitter > JITTER_LADDER[0] * 1.5)
    if esc.size:
        warnings.warn(f"{what}: kernel matrix not positive definite at jitter {JITTER_LADDER[0]:.0e}; "
                      f"escalated to jitter up to {jitter.max():.0e} in restart(s) {esc.tolist()}",
                      RuntimeWarning, stacklevel=3)
    return ok


def fit_magp(key, xgrid, train: Points, n_tasks: int, *, restarts: int = 10, steps: int = 600,
             learning_rate: float = 5e-2, q: int = 2, n_mc: int = 1, lr_decay: bool = True) -> MaGPFit:
    """Fit MaGP with ``restarts`` random restarts (restart i uses ``fold_in(key, i)``), each
    ``steps`` Adam steps at the peak ``learning_rate`` of :func:`lr_schedule` (``lr_decay=False``:
    constant, as the original code: 2000 steps at 1e-2).

    All restarts run as ONE compiled program (``jit(vmap(scan(adam)))``; ``jit(map(scan(adam)))`` on
    one CPU device).
    """
    warn_if_float32("MaGP inputs")
    if train.y.ndim != 1 or train.y.shape[0] < 2:
        raise ValueError(f"train.y must be a vector of >= 2 points, got shape {train.y.shape}")
    keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.arange(restarts))
    with heartbeat(f"MaGP fit ({restarts} restarts x {steps} Adam steps on {train.y.shape[0]} points)"):
        x, final, hist, jit = jax.block_until_ready(_fit_many(keys, xgrid, train, n_tasks, q, steps, learning_rate,
                                                              n_mc, lr_decay))
    ok = report_fit_health(final, x, jit, history=hist)
    return MaGPFit(x, final, hist, jit, ok, np.arange(restarts))


def magp_kernel(params: MaGPParams, h) -> MaGPKernel:
    """The tinygp kernel of one restart for given task latents ``h`` (D, Q)."""
    c = magp_constrained(params)
    return MaGPKernel(c["g_var"], c["g_scale"], c["f_var"], c["f_scale"], h, c["h_scale"])
