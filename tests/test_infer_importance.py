"""Laplace importance sampling (``jaxscale.infer.importance``): the Pareto k-hat estimator on weights
of known tail shape, and the sampler on posteriors with known moments, a skewed one and a bimodal one."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxscale.infer import laplace_importance, map_laplace_batched, pareto_khat
from jaxscale.infer.importance import K_HAT_MAX, tail_size


@pytest.mark.parametrize("k", [0.2, 0.5, 0.8, 1.2])
def test_pareto_khat_recovers_the_tail_shape(k):
    """Weights drawn from a Pareto law with shape ``k`` (tail index ``1 / k``): the median k-hat over
    50 sets of 4000 weights is within 0.1 of ``k`` (measured 0.22, 0.52, 0.78, 1.14)."""
    rng = np.random.default_rng(0)
    n = 4000
    w = rng.pareto(1.0 / k, (50, n)) + 1.0
    top = -np.sort(-w, axis=1)[:, : tail_size(n) + 1]
    assert abs(np.median(pareto_khat(top)) - k) < 0.1


def test_pareto_khat_of_bounded_weights_is_negative():
    rng = np.random.default_rng(1)
    w = rng.uniform(size=(5, 4000))
    top = -np.sort(-w, axis=1)[:, : tail_size(4000) + 1]
    assert np.all(pareto_khat(top) < 0)
    assert pareto_khat(np.ones((1, 20)))[0] == -np.inf  # equal largest weights: no tail at all


@jax.jit
def _gauss(x, m, s):
    """Independent normals with means ``m`` and sds ``s``."""
    return 0.5 * jnp.sum(((x - m) / s) ** 2)


@jax.jit
def _skewed(x, a):
    """x[0] = ln(v) with v ~ Gamma(a, 1) (left-skewed for small a); x[1] ~ N(x[0], 0.3)."""
    return -(a * x[0] - jnp.exp(x[0])) + 0.5 * ((x[1] - x[0]) / 0.3) ** 2


@jax.jit
def _bimodal(x, d):
    """Equal mixture of N(-d, 0.2) and N(d, 0.2) in x[0]; x[1] ~ N(0, 1)."""
    return -jnp.logaddexp(-0.5 * ((x[0] - d) / 0.2) ** 2, -0.5 * ((x[0] + d) / 0.2) ** 2) + 0.5 * x[1] ** 2


@jax.jit
def _heavy(x, nu):
    """x[0] ~ Student-t with ``nu`` degrees of freedom; x[1] ~ N(0, 1)."""
    return 0.5 * (nu + 1.0) * jnp.log1p(x[0] ** 2 / nu) + 0.5 * x[1] ** 2


def test_draws_match_known_posteriors_per_problem():
    """Three independent Gaussian posteriors in one call: the draws' means and sds match each
    problem's own (within Monte-Carlo error), k-hat is small."""
    m = jnp.asarray([[0.0, 1.0], [5.0, -2.0], [-3.0, 0.5]])
    s = jnp.asarray([[1.0, 0.1], [0.5, 2.0], [3.0, 0.01]])
    x_map, cov, conv = map_laplace_batched(_gauss, jnp.zeros((3, 2)), (m, s), steps=30)
    assert np.all(np.asarray(conv))
    z, ess, k = laplace_importance(jax.random.key(0), _gauss, x_map, cov, (m, s), num_proposals=4000,
                                   num_draws=4000)
    z = np.asarray(z)
    assert z.shape == (3, 4000, 2) and ess.shape == (3,) and k.shape == (3,)
    assert np.all(np.abs(z.mean(1) - np.asarray(m)) < 0.1 * np.asarray(s))
    np.testing.assert_allclose(z.std(1), s, rtol=0.1)
    assert np.all(k < 0.5) and np.all(ess > 1000)


def test_draws_follow_a_skewed_posterior():
    """ln of a Gamma(1.5) variable (a long left tail the Laplace approximation does not have): the
    5 %, 50 % and 95 % quantiles of the draws match the exact ones, with one stage (the wide half
    of the mixture reaches the tail) and with five (measured within 0.11 and 0.05)."""
    from scipy.stats import gamma

    a = jnp.asarray([1.5])
    x_map, cov, _ = map_laplace_batched(_skewed, jnp.zeros((1, 2)), (a,), steps=40)
    exact = np.log(gamma(1.5).ppf([0.05, 0.5, 0.95]))
    for stages, tol in ((1, 0.15), (5, 0.08)):
        z, ess, k = laplace_importance(jax.random.key(1), _skewed, x_map, cov, (a,), num_proposals=8000,
                                       num_draws=8000, stages=stages)
        np.testing.assert_allclose(np.quantile(np.asarray(z)[0, :, 0], [0.05, 0.5, 0.95]), exact, atol=tol)
        assert k[0] < 0.5 and ess[0] > 2000


def test_a_heavy_tail_is_flagged_a_distant_mode_is_not():
    """A posterior with a tail heavier than the proposal's (Student-t with 0.5 degrees of freedom:
    the weights grow as ``|x|^3.5`` in a ``t_4`` tail, k = 3.5 / 4) is flagged by k-hat. A second
    mode 6 sds away that no proposal reaches leaves bounded weights and is NOT flagged: the
    diagnostic sees only what the proposal visits (the documented limit)."""
    d = jnp.asarray([3.0])
    x_map, cov, _ = map_laplace_batched(_bimodal, jnp.asarray([[2.9, 0.0]]), (d,), steps=40)
    z, ess, k = laplace_importance(jax.random.key(2), _bimodal, x_map, cov, (d,), num_proposals=4000, num_draws=2000,
                                   stages=1)
    assert np.all(np.asarray(z)[0, :, 0] > 0) and k[0] < 0.5  # one mode only, and k-hat cannot tell
    x_map, cov, _ = map_laplace_batched(_heavy, jnp.asarray([[0.3, 0.0]]), (jnp.asarray([0.5]),), steps=40)
    z, ess, k = laplace_importance(jax.random.key(2), _heavy, x_map, cov, (jnp.asarray([0.5]),), num_proposals=4000,
                                   num_draws=2000, stages=1)
    assert k[0] > K_HAT_MAX


def test_problems_in_groups_give_the_same_draws():
    """``max_elements`` small enough to process the problems in groups (``lax.map``) gives the same
    draws as one vmapped batch."""
    m = jnp.asarray([[0.0, 1.0], [5.0, -2.0], [-3.0, 0.5]])
    s = jnp.ones((3, 2))
    x_map, cov, _ = map_laplace_batched(_gauss, jnp.zeros((3, 2)), (m, s), steps=30)
    z1, e1, k1 = laplace_importance(jax.random.key(3), _gauss, x_map, cov, (m, s), num_proposals=1000, num_draws=100)
    z2, e2, k2 = laplace_importance(jax.random.key(3), _gauss, x_map, cov, (m, s), num_proposals=1000, num_draws=100,
                                    max_elements=2000)
    np.testing.assert_allclose(np.asarray(z1), np.asarray(z2), rtol=1e-12)
    np.testing.assert_allclose(e1, e2, rtol=1e-12)
