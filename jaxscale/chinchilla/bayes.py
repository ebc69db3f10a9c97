"""A numpyro posterior of Chinchilla on the same data and law as the point fit."""
from __future__ import annotations

import jax.numpy as jnp

from jaxscale.chinchilla.fit import ChinchillaData
from jaxscale.laws import chinchilla_log_lse

__all__ = ["bayes_model", "fit_bayes"]


def bayes_model(log_N, log_D, log_loss=None):
    """numpyro model: priors on ``(a, b, e, alpha, beta)``, Student-t noise on log loss.

    Calls :func:`jaxscale.laws.chinchilla_log_lse`, the same law as the point fit.
    """
    import numpyro
    import numpyro.distributions as dist

    a = numpyro.sample("a", dist.Normal(6.0, 3.0))
    b = numpyro.sample("b", dist.Normal(7.0, 3.0))
    e = numpyro.sample("e", dist.Normal(0.5, 0.5))
    alpha = numpyro.sample("alpha", dist.Uniform(0.05, 1.5))
    beta = numpyro.sample("beta", dist.Uniform(0.05, 1.5))
    sigma = numpyro.sample("sigma", dist.HalfNormal(0.05))
    theta = jnp.stack([a, b, e, alpha, beta])
    mu = chinchilla_log_lse(theta, log_N, log_D)
    numpyro.deterministic("E", jnp.exp(e))
    numpyro.deterministic("A", jnp.exp(a))
    numpyro.deterministic("B", jnp.exp(b))
    numpyro.sample("obs", dist.StudentT(4.0, mu, sigma), obs=log_loss)


def fit_bayes(key, data: ChinchillaData, num_warmup: int = 500,
              num_samples: int = 500, num_chains: int = 4, dense_mass: bool = False):
    """NUTS posterior of Chinchilla on the rows of ``data`` with weight > 0 (the same law as the
    point fit; pass ``take_rows(data, ~fit.excluded)`` to use the point fit's rows).

    ``dense_mass=True`` adapts a full mass matrix in the warm-up instead of a diagonal one. The
    law's parameters are strongly correlated (``a`` with ``alpha``, ``b`` with ``beta``, all four
    with ``e``). On a well-identified posterior (many runs) the dense matrix samples several times
    faster at the same or a larger effective sample size; on the wide, curved posterior of a few
    noisy runs its warm-up adapts less reliably (R-hat above 1.01 at the default draws), so the
    diagonal matrix is the default (``benchmarks/bench_chinchilla_bayes.py`` measures both)."""
    import numpy as np

    from jaxscale.infer import run_nuts

    keep = np.flatnonzero(np.asarray(data.weights) > 0)
    data = ChinchillaData(data.log_N[keep], data.log_D[keep], data.log_loss[keep], data.weights[keep],
                          columns=data.columns)
    return run_nuts(
        key, bayes_model, data.log_N, data.log_D, data.log_loss,
        num_warmup=num_warmup, num_samples=num_samples, num_chains=num_chains, dense_mass=dense_mass,
    )
