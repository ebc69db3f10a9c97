"""Differential evolution in JAX (blackjax-style init / step / run), generic over loss functions.

Follows SciPy's ``differential_evolution`` defaults where they make sense on accelerators:

* population = ``popsize * n_dim`` members, Latin-hypercube initialisation in the unit cube;
* strategy ``best1bin``: mutant = best + F (x_r1 - x_r2), F dithered uniformly in ``mutation``
  once per generation, binomial crossover with probability ``recombination`` plus one forced gene;
* out-of-bounds trial genes are resampled uniformly inside the box (SciPy's rule);
* *deferred* updating (the whole population is evaluated at once with ``vmap``);
* convergence when ``std(fitness) <= atol + tol * |mean(fitness)|``.

``loss_fn(x, *args) -> scalar``; ``args`` are passed through, so ``de_run`` can itself be
``vmap``-ped over data sets (many tasks at once).  Non-finite losses count as +inf.
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

__all__ = ["DEState", "DEInfo", "de_init", "de_step", "de_run"]


class DEState(NamedTuple):
    """Population in the unit cube, its fitness, the incumbent (in bound units), generation count."""

    population: jax.Array  # (P, D) in [0, 1]
    fitness: jax.Array  # (P,)
    best_x: jax.Array  # (D,) in the original box
    best_fitness: jax.Array  # ()
    generation: jax.Array  # () int
    converged: jax.Array  # () bool


class DEInfo(NamedTuple):
    """Per-step diagnostics (for ``de_run``: of the last step, plus totals)."""

    n_accepted: jax.Array
    spread: jax.Array  # std of population fitness
    mutation: jax.Array  # dithered F used
    n_evaluations: jax.Array


def _bounds(bounds):
    bounds = jnp.asarray(bounds)
    if bounds.ndim != 2 or bounds.shape[-1] != 2:
        raise ValueError(f"bounds must have shape (n_dim, 2) of (low, high) rows, got {bounds.shape}")
    return bounds[:, 0], bounds[:, 1]


def _scale(u, lo, hi):
    return lo + u * (hi - lo)


def _evaluate(loss_fn, pop, lo, hi, args):
    f = jax.vmap(lambda u: loss_fn(_scale(u, lo, hi), *args))(pop)
    return jnp.where(jnp.isfinite(f), f, jnp.inf)


def _converged(fitness, tol, atol):
    finite = jnp.all(jnp.isfinite(fitness))
    return finite & (jnp.std(fitness) <= atol + tol * jnp.abs(jnp.mean(fitness)))


def _latin_hypercube(key, popsize: int, n_dim: int, dtype):
    """``max(popsize * n_dim, 5)`` members in the unit cube, one per stratum in every dimension."""
    n_pop = max(popsize * n_dim, 5)
    return _strata(jax.random.uniform(key, (n_pop, 2 * n_dim + 4), dtype=dtype), n_dim)


def _strata(u, n_dim: int):
    """A Latin hypercube from a generation's block of uniforms ``u`` (P, 2D + 4): the ranks of its
    first ``n_dim`` columns are the strata (a uniformly random permutation per dimension), the
    next ``n_dim`` the positions inside them."""
    return (jnp.argsort(u[:, :n_dim], axis=0) + u[:, n_dim:2 * n_dim]) / u.shape[0]


def de_init(key, loss_fn, bounds, *args, popsize: int = 15, tol: float = 1e-8, atol: float = 0.0) -> DEState:
    """Latin-hypercube population of ``popsize * n_dim`` members inside ``bounds`` (shape (D, 2))."""
    lo, hi = _bounds(bounds)
    pop = _latin_hypercube(key, popsize, lo.shape[0], lo.dtype)
    fitness = _evaluate(loss_fn, pop, lo, hi, args)
    i = jnp.argmin(fitness)
    return DEState(pop, fitness, _scale(pop[i], lo, hi), fitness[i], jnp.asarray(0),
                   _converged(fitness, tol, atol))


def de_step(key, state: DEState, loss_fn, bounds, *args, mutation=(0.5, 1.0), recombination: float = 0.7,
            tol: float = 1e-8, atol: float = 0.0):
    """One best1bin generation; returns ``(new_state, DEInfo)``."""
    return _generation(key, state, loss_fn, bounds, args, mutation, recombination, tol, atol, False)


def _generation(key, state: DEState, loss_fn, bounds, args, mutation, recombination, tol, atol, fresh):
    """One generation; ``fresh`` (a traced bool in :func:`de_run`): evaluate a Latin hypercube drawn
    from this pass's uniforms instead of trials (the initial population; every member is accepted
    over its +inf fitness and the generation count stays), so the loss and the random draws each
    appear once in a compiled program (every RNG call site is one more hash loop for XLA to
    compile, which on CPU costs more than the whole run of a small problem)."""
    lo, hi = _bounds(bounds)
    pop, fitness = state.population, state.fitness
    n_pop, n_dim = pop.shape
    # one block of uniforms per generation (fewer RNG call sites compile much faster on CPU):
    # columns [0, D): crossover draws, [D, 2D): out-of-bounds resampling, then r1, r2, fill point, F
    u = jax.random.uniform(key, (n_pop, 2 * n_dim + 4), dtype=pop.dtype)
    if isinstance(mutation, (tuple, list)):
        F = mutation[0] + (mutation[1] - mutation[0]) * u[0, -1]
    else:
        F = jnp.asarray(mutation, dtype=pop.dtype)

    def randint(col, n):  # uniform integer in [0, n) from a uniform column
        return jnp.minimum(jnp.floor(u[:, col] * n).astype(jnp.int32), n - 1)

    # two distinct indices r1 != r2, both != i, uniformly (monotone shifts past the excluded ones)
    i = jnp.arange(n_pop)
    r1 = randint(2 * n_dim, n_pop - 1)
    r1 = r1 + (r1 >= i)
    s, t = jnp.minimum(i, r1), jnp.maximum(i, r1)
    r2 = randint(2 * n_dim + 1, n_pop - 2)
    r2 = r2 + (r2 >= s)
    r2 = r2 + (r2 >= t)
    best = pop[jnp.argmin(fitness)]
    mutant = best[None, :] + F * (pop[r1] - pop[r2])
    cross = u[:, :n_dim] < recombination
    fill = randint(2 * n_dim + 2, n_dim)
    cross = cross | (jnp.arange(n_dim)[None, :] == fill[:, None])
    trial = jnp.where(cross, mutant, pop)
    oob = (trial < 0.0) | (trial > 1.0)
    trial = jnp.where(oob, u[:, n_dim:2 * n_dim], trial)
    if fresh is not False:  # de_run's first pass: the initial population, from this pass's block
        trial = jnp.where(fresh, _strata(u, n_dim), trial)
    f_trial = _evaluate(loss_fn, trial, lo, hi, args)
    accept = f_trial <= fitness
    pop = jnp.where(accept[:, None], trial, pop)
    fitness = jnp.where(accept, f_trial, fitness)
    i = jnp.argmin(fitness)
    new = DEState(pop, fitness, _scale(pop[i], lo, hi), fitness[i], state.generation + jnp.where(fresh, 0, 1),
                  _converged(fitness, tol, atol))
    info = DEInfo(jnp.sum(accept), jnp.std(fitness), F, jnp.asarray(n_pop))
    return new, info


def de_run(key, loss_fn, bounds, *args, popsize: int = 15, maxiter: int = 1000, tol: float = 1e-8,
           atol: float = 0.0, mutation=(0.5, 1.0), recombination: float = 0.7):
    """Initialise and iterate (``lax.while_loop``) until converged or ``maxiter`` generations.

    Returns ``(DEState, DEInfo)``; ``DEInfo.n_evaluations`` counts all loss evaluations.
    Jit-able and vmap-able over ``key`` and ``args`` (``loss_fn`` and settings are static).
    """
    lo, _ = _bounds(bounds)
    n_pop = max(popsize * lo.shape[0], 5)
    # the loop's first pass draws and evaluates the initial population (what de_init does), so the
    # loss and the draws are compiled once, not twice: the program compiles in less time
    pop = jnp.zeros((n_pop, lo.shape[0]), lo.dtype)
    inf = jnp.asarray(jnp.inf, pop.dtype)
    state = DEState(pop, jnp.full(pop.shape[:1], inf), jnp.zeros_like(pop[0]), inf, jnp.asarray(0), jnp.asarray(False))
    info0 = DEInfo(jnp.asarray(0), inf, jnp.asarray(0.0, pop.dtype), jnp.asarray(0))

    def cond(carry):
        s, _, fresh = carry
        return fresh | ((s.generation < maxiter) & ~s.converged)

    def body(carry):
        s, info, fresh = carry
        k = jax.random.fold_in(key, s.generation + jnp.where(fresh, 0, 1))  # pass 0: the initial draw
        s, step_info = _generation(k, s, loss_fn, bounds, args, mutation, recombination, tol, atol, fresh)
        # after the initial evaluation, report as de_init does: nothing accepted yet, no mutation
        step_info = step_info._replace(n_accepted=jnp.where(fresh, 0, step_info.n_accepted),
                                       mutation=jnp.where(fresh, 0.0, step_info.mutation),
                                       n_evaluations=info.n_evaluations + step_info.n_evaluations)
        return s, step_info, jnp.asarray(False)

    state, info, _ = jax.lax.while_loop(cond, body, (state, info0, jnp.asarray(True)))
    return state, info
