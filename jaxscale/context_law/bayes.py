"""Bayesian context law (numpyro) calling the same law as the point fit.

Priors on the identifiable parameters (normalisers C_ref = 1e22 FLOPs, n_ref = 1e3 tokens fixed, so
no ridge): a, b ~ Normal(0, 3); alpha, beta ~ LogNormal(log 0.5, 1); log relative cliff width ~
Normal(log 0.05, 1) (log kappa ~ Normal(log 20, 1) for ``log_ratio``); log shift ~ Normal(0, 0.5);
gamma ~ HalfNormal(0.3).  Likelihoods: ``binomial`` on item counts (BABILong, synthetic), ``normal``
(sigma ~ HalfNormal(0.1)), ``laplace`` (robust; b ~ HalfNormal(0.1)) or ``beta`` (phi ~ Gamma(2, 0.02))
on cell means otherwise.  Rows with weight 0 are masked out of the likelihood but still predicted,
which is how extrapolation bands and coverage are computed.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxscale.context_law.model import LIKELIHOODS, Spec, param_names, predict_law
from jaxscale.infer import run_nuts

__all__ = ["LIKELIHOODS", "BayesFit", "context_model", "fit_bayes", "predictive_bands", "coverage"]


class BayesFit(NamedTuple):
    """Posterior draws of theta (S, n_params), of P at every row (S, n_rows), and the noise draws."""

    theta: np.ndarray
    p: np.ndarray
    noise: np.ndarray
    posterior: object  # jaxscale.infer.PosteriorResult


def _priors(spec: Spec):
    import numpyro.distributions as dist

    pri = {"a": dist.Normal(0.0, 3.0), "alpha": dist.LogNormal(math.log(0.5), 1.0),
           "b": dist.Normal(0.0, 3.0), "beta": dist.LogNormal(math.log(0.5), 1.0),
           "log_scale": (dist.Normal(math.log(0.05), 1.0) if spec.penalty == "logistic"
                         else dist.Normal(math.log(20.0), 1.0)),
           "log_shift": dist.Normal(0.0, 0.5), "gamma": dist.HalfNormal(0.3)}
    return {n: pri[n] for n in param_names(spec)}


def context_model(data, n_items=None, n_correct=None, *, spec: Spec, likelihood: str = "normal"):
    """numpyro model over tasks x rows (``data`` leaves have shape (T, n)); parameters and noise are
    per task (independent, in a ``task`` plate).  ``n_items``/``n_correct`` for the binomial likelihood."""
    import numpyro
    import numpyro.distributions as dist

    n_tasks = data.y.shape[0]
    with numpyro.plate("task", n_tasks):
        theta = jnp.stack([numpyro.sample(n, d) for n, d in _priors(spec).items()], axis=-1)  # (T, P)
        if likelihood == "normal":
            noise = numpyro.sample("noise", dist.HalfNormal(0.1))
        elif likelihood == "laplace":
            noise = numpyro.sample("noise", dist.HalfNormal(0.1))
        elif likelihood == "beta":
            noise = numpyro.sample("noise", dist.Gamma(2.0, 0.02))
    p = jax.vmap(lambda th, d: predict_law(spec, th, d.log_C, d.n_pmt, d.n_ctx, d.floor))(theta, data)
    p = jnp.clip(p, 1e-9, 1 - 1e-9)
    numpyro.deterministic("p", p)
    mask = data.weight > 0
    with numpyro.handlers.mask(mask=mask):
        if likelihood == "binomial":
            numpyro.sample("obs", dist.Binomial(n_items, probs=p), obs=n_correct)
        elif likelihood == "normal":
            numpyro.sample("obs", dist.Normal(p, noise[:, None]), obs=data.y)
        elif likelihood == "laplace":
            numpyro.sample("obs", dist.Laplace(p, noise[:, None]), obs=data.y)
        elif likelihood == "beta":
            y = jnp.clip(data.y, 1e-3, 1 - 1e-3)
            numpyro.sample("obs", dist.Beta(p * noise[:, None], (1 - p) * noise[:, None]), obs=y)
        else:
            raise ValueError(f"likelihood={likelihood!r} is unknown; choose one of {LIKELIHOODS}")


def fit_bayes(key, data, spec: Spec, *, likelihood: str = "normal", n_items=None, n_correct=None,
              init_theta=None, num_warmup: int = 400, num_samples: int = 400, num_chains: int = 4) -> BayesFit:
    """NUTS over the identifiable parameters of one task (1-D leaves) or many tasks at once (2-D leaves,
    one joint program).  ``init_theta`` (e.g. the DE + L-BFGS fit, shape (P,) or (T, P)) starts the chains.
    Returns draws with shapes theta (S, [T,] P), p (S, [T,] n), noise (S, [T])."""
    if likelihood not in LIKELIHOODS:
        raise ValueError(f"likelihood={likelihood!r} is unknown; choose one of {LIKELIHOODS}")
    if likelihood == "binomial" and (n_items is None or n_correct is None):
        raise ValueError("likelihood='binomial' needs n_items and n_correct per row (item counts); "
                         "use 'normal', 'laplace' or 'beta' for sources that only report cell means")
    from numpyro.infer import init_to_median, init_to_value

    single = data.y.ndim == 1
    if single:
        data = jax.tree_util.tree_map(lambda x: jnp.asarray(x)[None], data)
        n_items = None if n_items is None else jnp.asarray(n_items)[None]
        n_correct = None if n_correct is None else jnp.asarray(n_correct)[None]
        init_theta = None if init_theta is None else jnp.asarray(init_theta)[None]
    names = param_names(spec)
    init = init_to_median(num_samples=15)
    if init_theta is not None:
        init_theta = jnp.asarray(init_theta)
        init = init_to_value(values={n: init_theta[:, i] for i, n in enumerate(names)})
    post = run_nuts(key, context_model, data, n_items, n_correct, spec=spec, likelihood=likelihood,
                    num_warmup=num_warmup, num_samples=num_samples, num_chains=num_chains, init_strategy=init)
    theta = np.stack([np.asarray(post.samples[n]) for n in names], axis=-1)
    p = np.asarray(post.samples["p"])
    noise = np.asarray(post.samples["noise"]) if "noise" in post.samples else np.zeros(theta.shape[:2])
    if single:
        theta, p, noise = theta[:, 0], p[:, 0], noise[:, 0]
    return BayesFit(theta, p, noise, post)


def predictive_bands(key, fit: BayesFit, likelihood: str, n_items=None, level: float = 0.9):
    """Posterior-predictive mean of P and central ``level`` band for new observations at every row."""
    p = fit.p
    if likelihood == "binomial":
        n = np.asarray(n_items)
        y = np.asarray(jax.random.binomial(key, jnp.asarray(n), jnp.asarray(p))) / n
    elif likelihood == "normal":
        y = p + fit.noise[..., None] * np.asarray(jax.random.normal(key, p.shape))
    elif likelihood == "laplace":
        y = p + fit.noise[..., None] * np.asarray(jax.random.laplace(key, p.shape))
    else:
        phi = fit.noise[..., None]
        y = np.asarray(jax.random.beta(key, jnp.asarray(p * phi), jnp.asarray((1 - p) * phi)))
    q = (1 - level) / 2
    return {"mean": p.mean(0), "median": np.median(p, 0), "lo": np.quantile(y, q, axis=0),
            "hi": np.quantile(y, 1 - q, axis=0), "p_lo": np.quantile(p, q, axis=0),
            "p_hi": np.quantile(p, 1 - q, axis=0)}


def coverage(y, bands: dict, mask=None) -> float:
    """Fraction of observations inside the predictive band ``[bands["lo"], bands["hi"]]``
    (optionally on the rows where ``mask`` is True)."""
    from jaxscale.metrics import interval_coverage

    y, lo, hi = np.asarray(y), np.asarray(bands["lo"]), np.asarray(bands["hi"])
    if mask is not None:
        m = np.asarray(mask, bool)
        y, lo, hi = y[m], lo[m], hi[m]
    return float(interval_coverage(y, lo, hi))
