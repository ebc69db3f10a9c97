"""Differential evolution in JAX: init/step/run, bounds, seeding, vmap over problems, scipy agreement."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

jax.config.update("jax_enable_x64", True)

from jaxscale.infer.evolution import DEState, de_init, de_run, de_step  # noqa: E402


def rosen(x, shift):
    x = x - shift
    return jnp.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2)


BOUNDS = jnp.asarray([[-3.0, 3.0]] * 4)
_run = jax.jit(lambda k, s: de_run(k, rosen, BOUNDS, s, popsize=15, maxiter=2000, tol=1e-10))


def test_init_latin_hypercube_and_bounds():
    st = jax.jit(lambda k: de_init(k, rosen, BOUNDS, jnp.zeros(4), popsize=10))(jax.random.key(0))
    assert isinstance(st, DEState) and st.population.shape == (40, 4)
    pop = np.asarray(st.population)
    assert pop.min() >= 0 and pop.max() <= 1
    # one member per stratum in every dimension
    for d in range(4):
        assert sorted(np.floor(pop[:, d] * 40).astype(int)) == list(range(40))


def test_step_keeps_box_and_never_worsens():
    st = jax.jit(lambda k: de_init(k, rosen, BOUNDS, jnp.zeros(4)))(jax.random.key(1))
    new, info = jax.jit(lambda k, s: de_step(k, s, rosen, BOUNDS, jnp.zeros(4)))(jax.random.key(2), st)
    assert np.all(np.asarray(new.fitness) <= np.asarray(st.fitness))
    assert float(new.best_fitness) <= float(st.best_fitness)
    assert 0 <= int(info.n_accepted) <= 60
    assert np.all((np.asarray(new.population) >= 0) & (np.asarray(new.population) <= 1))


def test_run_solves_rosenbrock_seeded_and_vmapped():
    st, info = _run(jax.random.key(0), jnp.zeros(4))
    np.testing.assert_allclose(np.asarray(st.best_x), 1.0, atol=2e-3)
    assert bool(st.converged)
    st2, _ = _run(jax.random.key(0), jnp.zeros(4))
    np.testing.assert_array_equal(np.asarray(st.best_x), np.asarray(st2.best_x))  # same key, same answer
    # many problems at once (different optima), one compiled program
    shifts = jnp.asarray([[0.0] * 4, [0.5] * 4, [-1.0] * 4])
    keys = jax.random.split(jax.random.key(3), 3)
    sts, infos = jax.vmap(_run)(keys, shifts)
    np.testing.assert_allclose(np.asarray(sts.best_x), np.asarray(shifts) + 1.0, atol=5e-3)
    assert np.all(np.asarray(infos.n_evaluations) > 60)


@pytest.mark.parametrize("maxiter", [0, 1, 7])
def test_run_is_init_then_steps(maxiter):
    """de_run draws and evaluates the initial population inside its loop (one copy of the loss and
    of the draws in the program); it returns what de_init with fold_in(key, 0) followed by de_step
    with fold_in(key, g + 1) gives."""
    key, shift = jax.random.key(4), jnp.full(4, 0.3)
    st, info = jax.jit(lambda k: de_run(k, rosen, BOUNDS, shift, popsize=15, maxiter=maxiter, tol=0.0))(key)
    ref = de_init(jax.random.fold_in(key, 0), rosen, BOUNDS, shift, popsize=15, tol=0.0)
    evals = ref.population.shape[0]
    for g in range(maxiter):
        ref, ref_info = de_step(jax.random.fold_in(key, g + 1), ref, rosen, BOUNDS, shift, tol=0.0)
        evals += int(ref_info.n_evaluations)
    for a, b in zip(st, ref):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-12)
    assert int(st.generation) == maxiter and int(info.n_evaluations) == evals
    if maxiter:
        assert int(info.n_accepted) == int(ref_info.n_accepted)
    else:
        assert int(info.n_accepted) == 0 and float(info.mutation) == 0.0


def test_agrees_with_scipy_differential_evolution():
    """Same problem, same box: JAX DE and scipy DE (both no polish) reach the same optimum.

    Tolerance: |x_jax - x_scipy| < 5e-3 and both losses < 1e-5 (Rosenbrock minimum 0 at x = 1).
    """
    from scipy.optimize import differential_evolution

    def rosen_np(x):  # vectorized numpy twin of `rosen` (x: (4, S))
        return np.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2, axis=0)

    res = differential_evolution(rosen_np, np.asarray(BOUNDS), seed=0, tol=1e-10, maxiter=2000, polish=False,
                                 updating="deferred", vectorized=True)
    st, _ = _run(jax.random.key(5), jnp.zeros(4))
    np.testing.assert_allclose(np.asarray(st.best_x), res.x, atol=5e-3)
    assert float(st.best_fitness) < 1e-5 and res.fun < 1e-5


def test_bad_bounds_shape():
    with pytest.raises(ValueError, match="bounds must have shape"):
        de_init(jax.random.key(0), rosen, jnp.zeros(4), jnp.zeros(4))
