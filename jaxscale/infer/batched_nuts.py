"""Batched NUTS: many independent posteriors (tasks, datasets) x chains in ONE compiled program.

For each problem: (1) MAP by damped Newton on the potential energy (a fixed-length scan: one trace
of the potential), (2) the Laplace covariance (inverse Hessian at the MAP, eigenvalues floored) as
the starting *dense* inverse mass matrix, (3) numpyro's NUTS kernel
(:func:`numpyro.infer.hmc.hmc`) started near the MAP, adapting the step size and (by default) the
dense mass matrix. All (problem, chain) pairs are one flat ``vmap`` (nested vmaps of NUTS' nested
while loops multiply the batching passes at trace time), each with its own adaptation. The problems
of the MAP stage and the (problem, chain) pairs of NUTS are split over all devices
(:func:`jaxscale.infer.sharding.sharded_vmap`; one device: a plain ``vmap``).

The model enters as ``potential_fn(x, *args, *shared)``: the negative log joint at a flat
unconstrained vector ``x`` of ONE problem (``args`` per problem, with a leading problem axis in
:func:`batched_nuts`; ``shared`` the same for all). Pass the same function object every call (e.g.
a module-level ``jax.jit``-wrapped function): it is a static argument of the compiled programs.
"""
from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from jaxscale.infer.optimize import minimize_newton
from jaxscale.infer.sharding import sharded_vmap

__all__ = ["map_laplace", "map_laplace_batched", "nuts_chain", "batched_nuts", "nuts_warnings", "warn_nuts",
           "REMEDY_URL"]

#: Where the remedies of the NUTS warnings are explained.
REMEDY_URL = "https://mc-stan.org/misc/warnings.html"


def map_laplace(potential_fn, x0, args: tuple, shared: tuple = (), *, steps: int = 60, tol: float = 1e-6,
                eig_floor: float = 1e-2, decrement_tol: float = 1e-9):
    """MAP of ONE problem by damped Newton from ``x0`` and its Laplace covariance.

    Newton only accepts steps that lower the potential (never worse than the start) and returns
    the Hessian at its end point; eigenvalues below ``eig_floor`` are raised to it (flat, prior-only
    directions keep a finite scale). Returns ``(x_map, cov, converged)``; ``vmap``-able.
    ``converged``: the gradient norm is below ``tol``, or the Hessian is positive definite and the
    Newton decrement ``g' H^-1 g`` (twice the decrease a further Newton step would bring) is at
    most ``decrement_tol``: a potential summed over hundreds of precise rows can be at its optimum
    while its gradient, rounded in float64, stays above an absolute ``tol``.
    """
    res, H = minimize_newton(potential_fn, x0, *args, *shared, steps=steps, tol=tol, with_hessian=True)
    w, V = jnp.linalg.eigh(H)
    g = jax.grad(lambda x: potential_fn(x, *args, *shared))(res.params)
    decrement = jnp.sum((V.T @ g) ** 2 / jnp.where(w > 0, w, 1.0))
    converged = res.converged | (jnp.all(w > 0) & (decrement <= decrement_tol))
    w = jnp.clip(w, eig_floor, None)
    return res.params, (V / w) @ V.T, converged


@partial(jax.jit, static_argnames=("potential_fn", "steps"))
def map_laplace_batched(potential_fn, x0, args: tuple, shared: tuple = (), steps: int = 60):
    """:func:`map_laplace` for every problem (leading axis of ``x0`` and of every ``args`` leaf)."""
    return sharded_vmap(lambda xa: map_laplace(potential_fn, xa[0], xa[1:], shared, steps=steps), (x0, *args))


def nuts_chain(key, potential_fn, x_map, cov, args: tuple, shared: tuple = (), *, num_warmup: int,
               num_samples: int, adapt_mass: bool = True, target_accept_prob: float = 0.8,
               init_scale: float = 0.5, max_tree_depth: int = 6):
    """One NUTS chain of one problem, started at ``x_map + init_scale * chol(cov) @ N(0, I)``.

    Warm-up and sampling are ONE scan (the kernel adapts while ``i < num_warmup``), so the kernel is
    traced and compiled once. Returns the sampled ``(z, diverging, num_steps)`` after warm-up.
    """
    from numpyro.infer.hmc import hmc

    k0, k1 = jax.random.split(key)
    L = jnp.linalg.cholesky(cov + 1e-10 * jnp.eye(cov.shape[0]))
    z0 = x_map + init_scale * L @ jax.random.normal(k0, x_map.shape)
    init_kernel, sample_kernel = hmc(potential_fn_gen=lambda *a: (lambda z: potential_fn(z, *a)), algo="NUTS")
    margs = tuple(args) + tuple(shared)
    state = init_kernel(z0, num_warmup, step_size=0.5, inverse_mass_matrix=cov, dense_mass=True,
                        adapt_mass_matrix=adapt_mass, target_accept_prob=target_accept_prob,
                        max_tree_depth=max_tree_depth, model_args=margs, rng_key=k1)

    def step(st, _):
        st = sample_kernel(st, model_args=margs)
        return st, (st.z, st.diverging, st.num_steps)

    _, out = jax.lax.scan(step, state, None, length=num_warmup + num_samples)
    return jax.tree.map(lambda v: v[num_warmup:], out)


@partial(jax.jit, static_argnames=("potential_fn", "num_warmup", "num_samples", "num_chains", "adapt_mass",
                                   "max_tree_depth"))
def batched_nuts(key, potential_fn, x_map, cov, args: tuple, shared: tuple = (), *, num_warmup: int,
                 num_samples: int, num_chains: int, adapt_mass: bool = True, target_accept_prob: float = 0.8,
                 init_scale: float = 0.5, max_tree_depth: int = 6):
    """NUTS for every problem x chain in one program: ``(z, diverging, num_steps)`` shaped
    ``(T, num_chains, num_samples, ...)``. ``x_map``/``cov``/``args`` leaves have a leading problem
    axis ``T`` (e.g. from :func:`map_laplace_batched`)."""
    T = x_map.shape[0]
    keys = jax.random.split(key, T * num_chains)
    per_problem = (x_map, cov) + tuple(args)
    flat = [jnp.repeat(v, num_chains, axis=0) for v in per_problem]
    out = sharded_vmap(lambda kf: nuts_chain(
        kf[0], potential_fn, kf[1], kf[2], kf[3:], shared, num_warmup=num_warmup, num_samples=num_samples,
        adapt_mass=adapt_mass, target_accept_prob=target_accept_prob, init_scale=init_scale,
        max_tree_depth=max_tree_depth), (keys, *flat))
    return jax.tree.map(lambda v: v.reshape((T, num_chains) + v.shape[1:]), out)


def nuts_warnings(diagnostics: dict, what: str) -> str | None:
    """The NUTS checks of every sampling command, as one message (``None`` when all pass): max R-hat
    > 1.01 (split R-hat, so it also flags a single chain that drifts), min ESS below 100 per chain,
    any divergent transition, fewer than 2 chains.

    Args:
      diagnostics: ``max_r_hat``, ``min_ess``, ``divergences`` and ``num_chains`` (as in
        :attr:`jaxscale.infer.PosteriorResult.diagnostics`).
      what: the command and fit, e.g. ``"obs calibrate, task gsm8k_cot"``.
    """
    chains = int(diagnostics["num_chains"])
    r_hat, ess = float(diagnostics["max_r_hat"]), float(diagnostics["min_ess"])
    div = int(diagnostics["divergences"])
    parts = []
    if not np.isfinite(r_hat):
        parts.append("R-hat could not be computed (fewer than 4 draws per chain)")
    elif r_hat > 1.01:
        parts.append(f"max R-hat {r_hat:.2f} > 1.01 ({'the halves of the one chain' if chains < 2 else 'chains'} "
                     "disagree)")
    if not ess >= 100 * chains:
        parts.append(f"min ESS {ess:.0f} < {100 * chains} (100 per chain)")
    if div:
        parts.append(f"{div} divergent transition(s)")
    if chains < 2:
        parts.append(f"{chains} chain: fewer than 2 chains cannot show that sampling converged")
    if not parts:
        return None
    fixes = ["draw more (--warmup, --samples)"]
    if chains < 4:
        fixes.append("run 4 chains (--chains 4)")
    if div:
        fixes.append("for divergences, a higher target acceptance or tighter priors")
    return (f"{what}: NUTS diagnostics fail: " + "; ".join(parts) + ". The posterior summaries and intervals are "
            f"unreliable until they pass: {', '.join(fixes)} (see {REMEDY_URL})")


def warn_nuts(diagnostics: dict, what: str, stacklevel: int = 3) -> str | None:
    """Warn (``RuntimeWarning``) with :func:`nuts_warnings`' message, if any; return it."""
    import warnings

    msg = nuts_warnings(diagnostics, what)
    if msg:
        warnings.warn(msg, RuntimeWarning, stacklevel=stacklevel)
    return msg
