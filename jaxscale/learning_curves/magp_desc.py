r"""MaGP with continuous configuration descriptors ("magp_desc").

Plain MaGP treats tasks and instances as categories, so an unseen task (width) or an unseen
instance (depth) falls back to the prior. Here the covariance also sees standardised numeric
descriptors of the configurations, in three tables (see
:mod:`jaxscale.learning_curves.descriptors` for the bundled nanoGPT ones and
:mod:`jaxscale.learning_curves.core` for any descriptor columns of a user's table): ``u_d`` per
task, ``v_r`` per instance and ``s_c`` per curve (nanoGPT: ln width, ln depth, ln N)::

    k = k_H([h_d, u_d], [h_d', u_d']) * [k_g(x,x') + k_R(v_r, v_r') k_f(x,x')] + k_S(s_c, s_c') k_n(x,x')

* ``k_H``: unit-variance ARD-RBF over the latent ``h_d`` (Q dims, Gaussian ``q(h)``, as MaGP)
  concatenated with ``u_d``. ``q = 0`` drops the latents (a deterministic descriptor kernel).
* ``k_R``: unit-variance ARD-RBF on ``v_r``; it replaces the indicator ``1[r = r']`` (which it
  approaches as its lengthscale goes to 0). Without instance descriptors (``v`` has 0 columns)
  the indicator itself is used, as in MaGP.
* ``k_S k_n``: a size term shared by all tasks: an ARD-RBF on ``s_c`` times a Matérn-3/2 in x.
* ``k_g``, ``k_f``, ``k_n``: Matérn-3/2 with their own variance and lengthscale.

Sums and products of PSD kernels: PSD. Per-task noise; a task without training rows uses the
geometric mean of the observed tasks' noise (``pooled_noise``). Inference exactly as
:mod:`jaxscale.learning_curves.magp`: exact GP, ELBO with reparameterised ``h`` draws, Adam
in chunks of ``lax.scan`` (:func:`~.magp.adam_restarts`), restarts in ONE compiled program (vmapped;
mapped on one CPU device).
"""
from __future__ import annotations

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import tinygp

from jaxscale._log import heartbeat
from jaxscale._pytree import register_serializable
from jaxscale.config import warn_if_float32
from jaxscale.gp import JITTER_LADDER, gather2, gaussian_nll, matern32, rbf_ard
from jaxscale.learning_curves.descriptors import DescTables
from jaxscale.learning_curves.magp import (
    INIT_NOISE_VAR,
    _pad_constant,
    adam_restarts,
    report_fit_health,
    restart_starts,
)
from jaxscale.learning_curves.problem import Points

__all__ = ["DescParams", "DescFit", "DescKernel", "init_desc", "desc_constrained", "desc_gram",
           "desc_loss", "fit_magp_desc", "pooled_noise"]

NOISE_FLOOR = 1e-6


@register_serializable
class DescParams(NamedTuple):
    """Unconstrained parameters of the descriptor MaGP (leading restart axis when fitted)."""

    log_g_var: jnp.ndarray  # ()
    log_g_scale: jnp.ndarray  # ()
    log_f_var: jnp.ndarray  # ()
    log_f_scale: jnp.ndarray  # ()
    log_n_var: jnp.ndarray  # () size-term variance
    log_n_scale: jnp.ndarray  # () size-term x lengthscale
    log_h_scale: jnp.ndarray  # (Q,)
    log_u_scale: jnp.ndarray  # (Pu,) task-descriptor lengthscales
    log_v_scale: jnp.ndarray  # (Pv,) instance-descriptor lengthscales
    log_s_scale: jnp.ndarray  # (Ps,) curve-descriptor lengthscales (nanoGPT: ln N, Ps = 1)
    h_mean: jnp.ndarray  # (D, Q)
    log_h_std: jnp.ndarray  # (D, Q)
    log_noise: jnp.ndarray  # (D,)


class DescFit(NamedTuple):
    """Result of :func:`fit_magp_desc` (leading axis = restart), with the tables it used."""

    params: DescParams
    loss: jnp.ndarray  # (R,) final negative ELBO (16-draw MC estimate)
    history: jnp.ndarray  # (R, steps)
    jitter: jnp.ndarray  # (R,)
    ok: np.ndarray  # (R,) finite restarts
    restart_ids: np.ndarray
    tables: DescTables
    observed: np.ndarray  # (D,) tasks with training rows
    scaler: object = None  # the Scaler the training targets were standardised with (set by fit_model)
    law: object = None  # the mean's CurveLaw of the law-informed model (set by fit_model), else None
    law_cov: object = None  # covariance of the law's flat parameters (law-informed model)


def desc_constrained(p: DescParams, observed=None) -> dict:
    """Positive hyper-parameters of one restart; noise of unobserved tasks pooled (see module doc)."""
    e = jnp.exp
    noise = NOISE_FLOOR + e(p.log_noise)
    if observed is not None:
        noise = pooled_noise(noise, observed)
    return dict(g_var=e(p.log_g_var), g_scale=e(p.log_g_scale), f_var=e(p.log_f_var), f_scale=e(p.log_f_scale),
                n_var=e(p.log_n_var), n_scale=e(p.log_n_scale), h_scale=e(p.log_h_scale),
                u_scale=e(p.log_u_scale), v_scale=e(p.log_v_scale), s_scale=e(p.log_s_scale), noise=noise)


def pooled_noise(noise, observed):
    """Replace the noise of unobserved tasks by the geometric mean over observed tasks."""
    obs = jnp.asarray(observed, bool)
    gm = jnp.exp(jnp.sum(jnp.where(obs, jnp.log(noise), 0.0)) / jnp.maximum(jnp.sum(obs), 1))
    return jnp.where(obs, noise, gm)


def init_desc(key, tables: DescTables, q: int = 2, dtype=jnp.float64) -> DescParams:
    """Random initialisation of one restart (as ``init_magp`` plus descriptor lengthscales)."""
    D, Pu = tables.task.shape
    Pv = tables.rep.shape[1]
    k = jax.random.split(key, 3)
    z = 0.3 * jax.random.normal(k[0], (9,), dtype)
    return DescParams(
        log_g_var=jnp.log(1.0) + z[0], log_g_scale=jnp.log(2.0) + z[1],
        log_f_var=jnp.log(0.1) + z[2], log_f_scale=jnp.log(2.0) + z[3],
        log_n_var=jnp.log(0.05) + z[4], log_n_scale=jnp.log(2.0) + z[5],
        log_h_scale=jnp.log(1.0) + 0.2 * jax.random.normal(k[1], (q,), dtype),
        log_u_scale=jnp.full((Pu,), jnp.log(1.0), dtype) + z[6],
        log_v_scale=jnp.full((Pv,), jnp.log(0.5), dtype) + z[7],
        log_s_scale=jnp.full((tables.curve.shape[1],), jnp.log(1.0), dtype) + z[8],
        h_mean=jax.random.normal(k[2], (D, q), dtype),
        log_h_std=jnp.full((D, q), jnp.log(0.3), dtype),
        log_noise=jnp.full((D,), jnp.log(INIT_NOISE_VAR), dtype),
    )


def _label_k(c: dict, h, tables: DescTables):
    """The kernels' factors over tasks (D, D), instances (R, R) and curves (C, C)."""
    z = jnp.concatenate([h, tables.task], axis=1)
    sc = jnp.concatenate([c["h_scale"], c["u_scale"]])
    kh = rbf_ard(z[:, None, :], z[None, :, :], 1.0, sc)
    kr = _instance_k(tables.rep, c["v_scale"])
    ks = rbf_ard(tables.curve[:, None, :], tables.curve[None, :, :], 1.0, c["s_scale"])
    return kh, kr, ks


def _tables_k(c: dict, h, tables: DescTables, xgrid):
    kh, kr, ks = _label_k(c, h, tables)
    xa, xb = xgrid[:, None], xgrid[None, :]
    kg = matern32(xa, xb, c["g_var"], c["g_scale"])
    kf = matern32(xa, xb, c["f_var"], c["f_scale"])
    kn = matern32(xa, xb, c["n_var"], c["n_scale"])
    return kh, kr, ks, kg, kf, kn


def _instance_k(rep, scales):
    """(R, R) RBF on instance descriptors; the indicator 1[r = r'] when there are none (0 columns)."""
    if rep.shape[1] == 0:
        return jnp.eye(rep.shape[0], dtype=rep.dtype)
    return rbf_ard(rep[:, None, :], rep[None, :, :], 1.0, scales)


def desc_gram(c: dict, h, tables: DescTables, xgrid, P1: Points, P2: Points):
    """Latent covariance between two point sets (grid-indexed gathers, see ``magp_gram``)."""
    kh, kr, ks, kg, kf, kn = _tables_k(c, h, tables, xgrid)
    i, j = P1.p, P2.p
    kx = gather2(kg, i, j) + gather2(kr, P1.r, P2.r) * gather2(kf, i, j)
    return gather2(kh, P1.d, P2.d) * kx + gather2(ks, P1.c, P2.c) * gather2(kn, i, j)


def desc_cross(c: dict, h, tables: DescTables, P1: Points, P2: Points):
    """:func:`desc_gram` from the points' own steps ``x``: no step tables over a shared grid, so a
    cross covariance of N x M points costs N M kernel evaluations, not (N + M)^2."""
    kh, kr, ks = _label_k(c, h, tables)
    x1, x2 = P1.x[:, None], P2.x[None, :]
    kx = (matern32(x1, x2, c["g_var"], c["g_scale"])
          + gather2(kr, P1.r, P2.r) * matern32(x1, x2, c["f_var"], c["f_scale"]))
    return gather2(kh, P1.d, P2.d) * kx + gather2(ks, P1.c, P2.c) * matern32(x1, x2, c["n_var"], c["n_scale"])


def desc_diag(c: dict, h, tables: DescTables, P: Points):
    """The diagonal of ``desc_gram(c, h, tables, xgrid, P, P)``: each point's prior variance."""
    kh, kr, ks = (jnp.diagonal(k) for k in _label_k(c, h, tables))
    return kh[P.d] * (c["g_var"] + kr[P.r] * c["f_var"]) + ks[P.c] * c["n_var"]


def _train_gram(p: DescParams, h, tables, xgrid, pts: Points, observed=None):
    c = desc_constrained(p, observed)
    K = desc_gram(c, h, tables, xgrid, pts, pts)
    if pts.w is None:
        return K + jnp.diag(c["noise"][pts.d])
    w = pts.w
    return K * (w[:, None] * w[None, :]) + jnp.diag(c["noise"][pts.d] * w + (1.0 - w))


def desc_loss(p: DescParams, eps, tables: DescTables, xgrid, pts: Points):
    """Negative ELBO with ``eps`` (S, D, Q) standard-normal latent draws: ``(loss, jitter)``."""
    std = jnp.exp(p.log_h_std)
    hs = p.h_mean[None] + std[None] * eps

    def one(h):
        return gaussian_nll(_train_gram(p, h, tables, xgrid, pts), pts.y, JITTER_LADDER[0])

    nll, jit = jax.vmap(one)(hs)
    kl = 0.5 * jnp.sum(std**2 + p.h_mean**2 - 1.0 - 2.0 * p.log_h_std)
    return jnp.mean(nll) + kl - _pad_constant(pts), jnp.max(jit)


@partial(jax.jit, static_argnames=("restarts", "q", "dtype"))
def _starts(key, tables: DescTables, restarts: int, q: int, dtype):
    return restart_starts(key, restarts, lambda k: init_desc(k, tables, q, dtype))


def fit_magp_desc(key, xgrid, train: Points, tables: DescTables, *, restarts: int = 10, steps: int = 600,
                  learning_rate: float = 5e-2, q: int = 2, n_mc: int = 1, lr_decay: bool = True) -> DescFit:
    """Fit the descriptor MaGP (restart i uses ``fold_in(key, i)``; one compiled program); Adam as in
    :func:`~.magp.fit_magp`."""
    warn_if_float32("MaGP-desc inputs")
    if train.y.ndim != 1 or train.y.shape[0] < 2:
        raise ValueError(f"train.y must be a vector of >= 2 points, got shape {train.y.shape}")
    D = tables.task.shape[0]
    w = np.ones(train.y.shape[0]) if train.w is None else np.asarray(train.w)
    observed = np.bincount(np.asarray(train.d)[w > 0], minlength=D) > 0
    x0, krun, kfin = _starts(key, tables, restarts, q, train.y.dtype)
    what = f"descriptor MaGP fit ({restarts} restarts x {steps} Adam steps on {train.y.shape[0]} points)"
    with heartbeat(what):
        x, final, hist, jit = jax.block_until_ready(adam_restarts(
            desc_loss, x0, krun, kfin, (D, q), steps, learning_rate, n_mc, (tables, xgrid, train), decay=lr_decay,
            desc=what))
    ok = report_fit_health(final, x, jit, "MaGP-desc", history=hist)
    return DescFit(x, final, hist, jit, ok, np.arange(restarts), tables, observed)


class DescKernel(tinygp.kernels.Kernel):
    """The descriptor-MaGP covariance on single points ``X = (x, r, d, c)`` for fixed ``h``."""

    c: dict
    h: jnp.ndarray
    tables: DescTables

    def evaluate(self, X1, X2):
        x1, r1, d1, c1 = X1
        x2, r2, d2, c2 = X2
        c, t = self.c, self.tables
        z1 = jnp.concatenate([self.h[d1], t.task[d1]])
        z2 = jnp.concatenate([self.h[d2], t.task[d2]])
        kh = rbf_ard(z1, z2, 1.0, jnp.concatenate([c["h_scale"], c["u_scale"]]))
        kr = (rbf_ard(t.rep[r1], t.rep[r2], 1.0, c["v_scale"]) if t.rep.shape[1]
              else jnp.where(r1 == r2, 1.0, 0.0))
        ks = rbf_ard(t.curve[c1], t.curve[c2], 1.0, c["s_scale"])
        kg = matern32(x1, x2, c["g_var"], c["g_scale"])
        kf = matern32(x1, x2, c["f_var"], c["f_scale"])
        kn = matern32(x1, x2, c["n_var"], c["n_scale"])
        return kh * (kg + kr * kf) + ks * kn
