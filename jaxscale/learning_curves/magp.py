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
``linalg``); the fits drive its Adam steps from the host in chunks of :data:`ADAM_CHUNK`
(:func:`adam_restarts`: a progress bar and checkpoints, the numbers of one ``lax.scan``).
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
           "report_fit_health", "adam_elbo", "adam_restarts", "lr_schedule", "ADAM_CHUNK"]

log = get_logger(__name__)

#: Every task's initial noise variance (z-scored units): where a task keeps it, a task without
#: training rows, and a task the fit never saw (``core.with_labels``), start and stay there.
INIT_NOISE_VAR = 1e-2
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
        log_noise=jnp.full((n_tasks,), jnp.log(INIT_NOISE_VAR), dtype),
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
    step = _adam_step(loss_fn, opt, n_mc, latent_shape, dtype, args)
    (x, _, jmax), hist = jax.lax.scan(step, (x0, opt.init(x0), jnp.asarray(0.0, dtype)),
                                      jax.random.split(krun, steps))
    if kfin is None:
        return x, hist[-1], hist, jmax
    final, jit = _final_loss(loss_fn, x, kfin, latent_shape, dtype, args)
    return x, final, hist, jnp.maximum(jmax, jit)


def _adam_step(loss_fn, opt, n_mc: int, latent_shape, dtype, args):
    """One Adam step of the ELBO: a fresh ``eps`` from the step's key, the loss and its gradient,
    the update; the carry also keeps the largest Cholesky jitter."""
    vg = jax.value_and_grad(loss_fn, has_aux=True)

    def step(carry, k):
        x, st, jmax = carry
        eps = jax.random.normal(k, (n_mc,) + latent_shape, dtype)
        (val, jit), g = vg(x, eps, *args)
        upd, st = opt.update(g, st, x)
        return (optax.apply_updates(x, upd), st, jnp.maximum(jmax, jit)), val

    return step


def _final_loss(loss_fn, x, kfin, latent_shape, dtype, args):
    """The fit's reported loss: the ELBO estimate with 16 latent draws from ``kfin``."""
    return loss_fn(x, jax.random.normal(kfin, (16,) + latent_shape, dtype), *args)


#: Adam steps per compiled chunk of a fit driven from the host (:func:`adam_restarts`); between
#: chunks the host moves the progress bar and writes the checkpoint (when asked).
ADAM_CHUNK = 50


def chunk_length(steps: int, near: int = ADAM_CHUNK) -> int:
    """The divisor of ``steps`` closest to ``near`` (ties: the larger), so that every chunk has the
    same length and one compiled program runs them all; ``near`` itself when no divisor lies within
    a factor 2 of it (a prime number of steps: one shorter last chunk, a second program)."""
    d = min((d for d in range(1, steps + 1) if steps % d == 0), key=lambda d: (abs(d - near), -d))
    return d if near // 2 <= d <= 2 * near or steps <= 2 * near else near


def _key_parts(keys):
    """``(raw key data, impl)`` of a key array (``impl`` None for legacy uint32 keys)."""
    if jax.dtypes.issubdtype(keys.dtype, jax.dtypes.prng_key):
        return jax.random.key_data(keys), str(jax.random.key_impl(keys))
    return keys, None


def _wrap(data, impl):
    return data if impl is None else jax.random.wrap_key_data(data, impl=impl)


@partial(jax.jit, static_argnames=("steps", "decay", "impl"))
def _adam_start(x0, krun, learning_rate, steps: int, decay: bool, impl):
    """The optimiser's first carry (parameters, Adam state, largest jitter) of every restart, and
    its per-step keys as raw key data ``(R, steps, ...)``: the keys of :func:`adam_elbo`'s scan,
    which the host then slices into chunks without compiling anything."""
    opt = optax.adam(lr_schedule(learning_rate, steps, decay))
    lead = jax.tree.leaves(x0)[0]
    carry = (x0, jax.vmap(opt.init)(x0), jnp.zeros(lead.shape[:1], lead.dtype))
    return carry, jax.vmap(lambda k: _key_parts(jax.random.split(_wrap(k, impl), steps))[0])(krun)


@partial(jax.jit, static_argnames=("loss_fn", "latent_shape", "steps", "n_mc", "decay", "impl"))
def _adam_chunk(carry, step_keys, learning_rate, args, loss_fn, latent_shape, steps: int, n_mc: int, decay: bool,
                impl):
    """:func:`adam_elbo`'s steps for the keys ``step_keys`` ``(R, chunk, ...)`` from ``carry`` (every
    restart's parameters, optimiser state and largest jitter); restarts split as in the fits."""
    opt = optax.adam(lr_schedule(learning_rate, steps, decay))
    step = _adam_step(loss_fn, opt, n_mc, latent_shape, carry[2].dtype, args)
    return sharded_vmap(lambda ck: jax.lax.scan(lambda c, k: step(c, _wrap(k, impl)), ck[0], ck[1]),
                        (carry, step_keys), linalg=True)


@partial(jax.jit, static_argnames=("loss_fn", "latent_shape", "impl"))
def _adam_final(x, kfin, jmax, args, loss_fn, latent_shape, impl):
    final, jit = sharded_vmap(lambda xk: _final_loss(loss_fn, xk[0], _wrap(xk[1], impl), latent_shape, jmax.dtype,
                                                     args), (x, kfin), linalg=True)
    return final, jnp.maximum(jmax, jit)


def restart_starts(key, restarts: int, init):
    """Restart ``i``'s key ``fold_in(key, i)`` split into ``(kinit, krun, kfin)`` (as every fit
    splits it) and its initial parameters ``init(kinit)``; batched over the restarts."""
    keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.arange(restarts))
    k = jax.vmap(lambda kk: jax.random.split(kk, 3))(keys)
    return jax.vmap(init)(k[:, 0]), k[:, 1], k[:, 2]


@partial(jax.jit, static_argnames=("restarts", "n_tasks", "q", "dtype"))
def _starts(key, restarts: int, n_tasks: int, q: int, dtype):
    return restart_starts(key, restarts, lambda k: init_magp(k, n_tasks, q, dtype))


def adam_restarts(loss_fn, x0, krun, kfin, latent_shape, steps: int, learning_rate, n_mc: int, args: tuple, *,
                  decay: bool = True, desc: str = "Adam", ckpt=None):
    """:func:`adam_elbo` for a batch of restarts (leading axis of ``x0``, ``krun``, ``kfin``), driven
    from the host in chunks of :func:`chunk_length` steps: the same keys, steps and numbers as one
    ``lax.scan``, with a progress bar between chunks and, given ``ckpt`` (a
    :class:`jaxscale._checkpoint.Checkpoints`), a checkpoint after each, from which a killed fit
    resumes. ``loss_fn`` must be the same function object every call (a static argument of the
    compiled chunk). Returns ``(x, final_loss, history (R, steps), max_jitter)``."""
    from jaxscale._log import progress

    run_data, impl = _key_parts(krun)
    fin_data, _ = _key_parts(kfin)
    carry, step_keys = _adam_start(x0, run_data, learning_rate, steps, decay, impl)
    step_keys = np.asarray(step_keys)  # sliced on the host: no program per chunk
    hist, done = [], 0
    if ckpt is not None and ckpt.latest() is not None:
        carry, more = ckpt.restore(carry, ("history",))
        done = int(ckpt.latest())
        hist = [np.asarray(more["history"], float)]
        log.info("%s: resumed at Adam step %d of %d (%s)", desc, done, steps, ckpt.folder)
    n = chunk_length(steps)
    bar = progress(total=steps, desc=f"{desc} (Adam steps)", initial=done)
    for i0 in range(done, steps, n):
        carry, h = _adam_chunk(carry, jax.device_put(step_keys[:, i0:i0 + n]), learning_rate, args, loss_fn,
                               tuple(latent_shape), steps, n_mc, decay, impl)
        h = np.asarray(h)
        hist.append(h)
        bar.update(n)
        bar.set_postfix(loss=f"{np.nanmean(h[:, -1]):.4g}")
        if ckpt is not None:
            ckpt.save(i0 + n, carry, history=np.concatenate(hist, axis=1))
    bar.close()
    x, _, jmax = carry
    final, jit = _adam_final(x, fin_data, jmax, args, loss_fn, tuple(latent_shape), impl)
    history = np.concatenate(hist, axis=1) if hist else np.zeros((np.shape(final)[0], 0))
    return x, final, jnp.asarray(history), jit


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
    x0, krun, kfin = _starts(key, restarts, n_tasks, q, train.y.dtype)
    what = f"MaGP fit ({restarts} restarts x {steps} Adam steps on {train.y.shape[0]} points)"
    with heartbeat(what):
        x, final, hist, jit = jax.block_until_ready(adam_restarts(
            magp_loss, x0, krun, kfin, (n_tasks, q), steps, learning_rate, n_mc, (xgrid, train), decay=lr_decay,
            desc=what))
    ok = report_fit_health(final, x, jit, history=hist)
    return MaGPFit(x, final, hist, jit, ok, np.arange(restarts))


def magp_kernel(params: MaGPParams, h) -> MaGPKernel:
    """The tinygp kernel of one restart for given task latents ``h`` (D, Q)."""
    c = magp_constrained(params)
    return MaGPKernel(c["g_var"], c["g_scale"], c["f_var"], c["f_scale"], h, c["h_scale"])
