"""CensoredNormal: plain normal density inside, tail masses at the bounds, clipped samples."""
import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.stats import norm

from jaxscale.infer.censored import CensoredNormal

jax.config.update("jax_enable_x64", True)


def test_log_prob_inside_and_at_bounds():
    d = CensoredNormal(0.1, 0.2, 0.0, 1.0)
    y = jnp.array([0.05, 0.3, 0.99])
    np.testing.assert_allclose(d.log_prob(y), norm.logpdf(y, 0.1, 0.2), rtol=1e-12)
    np.testing.assert_allclose(d.log_prob(0.0), norm.logcdf(0.0, 0.1, 0.2), rtol=1e-12)
    np.testing.assert_allclose(d.log_prob(1.0), norm.logsf(1.0, 0.1, 0.2), rtol=1e-12)
    # far tail: finite (log_ndtr), about -0.5 * 45**2
    far = float(CensoredNormal(10.0, 0.2, 0.0, 1.0).log_prob(0.0))
    assert np.isfinite(far) and far < -1000
    g = jax.grad(lambda m: CensoredNormal(m, 0.2, 0.0, 1.0).log_prob(0.0))(0.1)
    assert np.isfinite(g) and g < 0  # mass at 0 falls as the location rises


def test_samples_clipped_and_mean():
    d = CensoredNormal(jnp.array([0.05, 0.5, 0.97]), 0.1, 0.0, 1.0)
    x = d.sample(jax.random.key(0), (200_000,))
    assert x.shape == (200_000, 3) and float(x.min()) == 0.0 and float(x.max()) == 1.0
    np.testing.assert_allclose(x.mean(0), d.mean, atol=1e-3)
    np.testing.assert_allclose(float(jnp.mean(x[:, 0] == 0.0)), float(norm.cdf(-0.5)), atol=3e-3)
