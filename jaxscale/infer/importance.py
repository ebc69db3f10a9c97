"""Laplace importance sampling: posterior draws of many small independent problems in one program.

For each problem (a run, a task) with a handful of parameters, starting from its MAP and Laplace
covariance (e.g. from :func:`jaxscale.infer.map_laplace_batched`):

1. proposals from a defensive mixture of two multivariate Student-t (half with the scale, half
   with :data:`WIDE` times it), importance weights ``exp(-U(x)) / q(x)``, truncated at
   ``sqrt(n) x`` their mean (truncated importance sampling: a few huge weights cannot take over);
2. the next stage's proposal takes the weighted mean and 1.5 x the weighted covariance of these
   draws (moment matching: it follows a skewed or curved posterior that the Laplace
   approximation misses), for ``stages - 1`` stages;
3. ``num_draws`` draws resampled by the truncated weights of the last stage.

Every problem costs the same fixed number of potential evaluations, so, unlike a vectorised NUTS,
whose every draw waits for the longest trajectory of all its chains, the cost is linear in the
problems and the same for every one.

Whether the proposal fits the posterior is checked per problem:

* the Pareto ``k``-hat of the largest raw weights (a generalised Pareto fit of the tail, the
  estimator of Zhang and Stephens with the weakly informative adjustment used in PSIS):
  ``k < 0.5`` is good, ``0.5 <= k <= 0.7`` usable, ``k > 0.7`` means the posterior has mass the
  proposal misses (a second mode, a heavy tail) and the draws are unreliable;
* the effective sample size of the truncated weights, ``(sum w)^2 / sum w^2``.

The model enters as ``potential_fn(x, *args, *shared)`` (the negative log joint of ONE problem at
a flat unconstrained ``x``), as in :mod:`jaxscale.infer.batched_nuts`.
"""
from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from jaxscale._programs import light_jit
from jaxscale.infer.sharding import sharded_vmap

__all__ = ["laplace_importance", "pareto_khat", "tail_size", "K_HAT_MAX"]

#: Pareto k-hat above which the importance draws of a problem are unreliable.
K_HAT_MAX = 0.7


#: Scale of the wide half of the defensive mixture proposal, relative to the narrow half.
WIDE = 3.0


def tail_size(n: int) -> int:
    """Largest weights the Pareto fit uses: ``min(n / 5, 3 sqrt(n))``."""
    return int(min(n // 5, np.ceil(3 * np.sqrt(n))))


def _weights(key, potential_fn, mean, cov, args, shared, n_prop: int, df: int):
    """Proposals around ``mean``: ``(x, ln w)`` (``ln w`` shifted to max 0).

    The proposal is a defensive mixture: half the draws from a Student-t with scale ``cov``, half
    with scale ``WIDE**2 x cov`` (a skewed or long tail that the first misses is still reached);
    every draw is weighted by the mixture's density."""
    d = mean.shape[0]
    k_z, k_chi = jax.random.split(key)
    L = jnp.linalg.cholesky(cov + 1e-12 * jnp.eye(d))
    z = jax.random.normal(k_z, (n_prop, d), mean.dtype)
    # chi-square with df degrees of freedom as a sum of squared normals (a gamma draw is a
    # rejection loop, slow under vmap)
    chi = jnp.sum(jax.random.normal(k_chi, (n_prop, df), mean.dtype) ** 2, axis=1) / df
    scale = jnp.where(jnp.arange(n_prop) % 2 == 0, 1.0, WIDE)
    u = z / jnp.sqrt(chi)[:, None] * scale[:, None]
    x = mean + u @ L.T
    # ln q up to a constant shared by every draw of this stage (it cancels in the weights)
    m2 = jnp.sum(u * u, axis=1) / df
    log_q = jnp.logaddexp(-0.5 * (df + d) * jnp.log1p(m2),
                          -0.5 * (df + d) * jnp.log1p(m2 / WIDE ** 2) - d * jnp.log(WIDE))
    log_p = -jax.vmap(lambda xi: potential_fn(xi, *args, *shared))(x)
    lw = log_p - log_q
    lw = jnp.where(jnp.isfinite(lw), lw, -jnp.inf)
    return x, lw - jnp.max(lw)


def _truncate(lw, n_prop: int):
    w = jnp.exp(lw)
    return jnp.minimum(w, jnp.mean(w) * jnp.sqrt(n_prop))


def _one(key, potential_fn, x_map, cov, args, shared, n_prop: int, n_draws: int, df, n_tail: int, stages: int):
    d = x_map.shape[0]
    keys = jax.random.split(key, stages + 1)
    n_adapt = max(n_prop // 4, min(n_prop, 500))  # the earlier stages only estimate a mean and covariance

    def adapt(carry, k):
        # moment matching: the next proposal has the weighted mean and covariance of these draws
        mean, c = carry
        x, lw = _weights(k, potential_fn, mean, c, args, shared, n_adapt, df)
        w = _truncate(lw, n_adapt)
        w = w / jnp.sum(w)
        m = w @ x
        r = x - m
        c_new = 1.5 * (r * w[:, None]).T @ r + 1e-8 * jnp.eye(d)
        ok = jnp.all(jnp.isfinite(c_new))  # all weights zero: NaN moments, the proposal stays
        return (jnp.where(ok, m, mean), jnp.where(ok, c_new, c)), None

    (mean, c), _ = jax.lax.scan(adapt, (x_map, cov), keys[:stages - 1])
    x, lw = _weights(keys[stages - 1], potential_fn, mean, c, args, shared, n_prop, df)
    top = jax.lax.top_k(jnp.exp(lw), n_tail + 1)[0]  # raw weights, largest first (the Pareto fit's tail)
    w = _truncate(lw, n_prop)
    ess = jnp.sum(w) ** 2 / jnp.sum(w * w)
    idx = jax.random.choice(keys[stages], n_prop, (n_draws,), p=w / jnp.sum(w))
    return x[idx], ess, top


# light options on CPU: the program runs once per fit, and compiling it took longer than running it (20 runs
# of 30 points, 2 CPU cores: a cold fit 12.4 s -> 10.2 s, the same draws bit for bit, the warm fit unchanged)
@partial(light_jit, static_argnames=("potential_fn", "num_proposals", "num_draws", "batch", "stages", "df"))
def _run(key, potential_fn, x_map, cov, args, shared, *, df: int, num_proposals: int, num_draws: int, batch: int,
         stages: int):
    n = x_map.shape[0]
    keys = jax.random.split(key, n)
    n_tail = tail_size(num_proposals)

    def one(kxa):
        return _one(kxa[0], potential_fn, kxa[1], kxa[2], kxa[3:], shared, num_proposals, num_draws, df, n_tail, stages)

    if batch >= n:
        return sharded_vmap(one, (keys, x_map, cov, *args))
    # problems in groups of ``batch`` (each holds num_proposals x its points in memory at once)
    return jax.lax.map(one, (keys, x_map, cov, *args), batch_size=batch)


def laplace_importance(key, potential_fn, x_map, cov, args: tuple, shared: tuple = (), *, num_proposals: int = 4000,
                       num_draws: int = 2000, df: int = 4, stages: int = 3, max_elements: int = 2 ** 25):
    """Importance draws of every problem: ``(draws (P, num_draws, d), ess (P,), k_hat (P,))``.

    Args:
      key: PRNG key.
      potential_fn: negative log joint of one problem (a fixed function object: it is a static
        argument of the compiled program).
      x_map: ``(P, d)`` MAP of every problem.
      cov: ``(P, d, d)`` proposal scale (the Laplace covariance, positive definite).
      args: per-problem arguments of ``potential_fn`` (leading axis ``P``).
      shared: arguments shared by every problem.
      num_proposals: proposal draws per problem.
      num_draws: draws resampled per problem (with replacement, by the truncated weights).
      df: degrees of freedom of the Student-t proposal, an integer >= 1 (heavier tails than the
        normal Laplace approximation, so the weights stay bounded where the posterior is wider).
      stages: proposal stages: the first is centred at the MAP with the Laplace scale, each later
        one has the weighted mean and 1.5 x the weighted covariance of the previous stage's draws
        (moment matching, widened: the proposal follows a curved or skewed posterior and keeps
        tails heavier than it); the draws come from the last stage, the earlier stages use a
        quarter of ``num_proposals`` (at least 500).
      max_elements: problems are processed in groups whose proposals x points stay below this
        many numbers (memory), all groups in one compiled program.

    ``k_hat`` (:func:`pareto_khat`) above :data:`K_HAT_MAX` flags a problem whose draws are unreliable.
    """
    P = int(x_map.shape[0])
    per_point = max([int(np.prod(np.shape(a)[1:])) for a in jax.tree_util.tree_leaves(args)] + [1])
    batch = int(max(1, min(P, max_elements // max(1, num_proposals * per_point))))
    draws, ess, top = _run(key, potential_fn, jnp.asarray(x_map), jnp.asarray(cov), tuple(args), tuple(shared),
                           df=int(df), num_proposals=int(num_proposals),
                           num_draws=int(num_draws), batch=batch, stages=int(stages))
    return draws, np.asarray(ess), pareto_khat(np.asarray(top))


def pareto_khat(top: np.ndarray) -> np.ndarray:
    """Pareto shape ``k`` of the tail of each row of importance weights.

    ``top``: ``(P, m + 1)`` the ``m + 1`` largest weights of each problem, largest first. The
    exceedances of the ``m`` largest over the ``(m + 1)``-th are fitted by a generalised Pareto
    distribution (the profile-likelihood-weighted estimator of Zhang and Stephens, 2009, with a
    grid of ``30 + sqrt(m)`` points), and ``k`` is shrunk towards 0.5 as ``(m k + 5) / (m + 10)``
    (the weakly informative prior of Pareto-smoothed importance sampling). Rows whose ``m + 1``
    largest weights are all equal have no tail at all and get ``-inf``.
    """
    top = np.asarray(top, float)
    m = top.shape[1] - 1
    x = np.sort(top[:, :m] - top[:, m:], axis=1)  # ascending exceedances
    ok = x[:, -1] > 0
    x = np.where(ok[:, None], x, 1.0)
    M = 30 + int(np.sqrt(m))
    j = np.arange(1, M + 1)
    xstar = x[:, int(np.floor(m / 4 + 0.5)) - 1]
    xstar = np.maximum(xstar, 1e-300)
    theta = 1.0 / x[:, -1:] + (1.0 - np.sqrt(M / (j - 0.5)))[None] / (3.0 * xstar[:, None])  # (P, M)
    with np.errstate(divide="ignore", invalid="ignore"):
        kk = np.mean(np.log1p(-theta[:, :, None] * x[:, None, :]), axis=2)  # (P, M)
        ll = m * (np.log(-theta / kk) - kk - 1.0)
    ll = np.where(np.isfinite(ll), ll, -np.inf)
    wt = np.exp(ll - ll.max(axis=1, keepdims=True))
    wt /= wt.sum(axis=1, keepdims=True)
    th = np.sum(theta * wt, axis=1)
    k = np.mean(np.log1p(-th[:, None] * x), axis=1)
    k = (m * k + 5.0) / (m + 10.0)
    return np.where(ok, k, -np.inf)
