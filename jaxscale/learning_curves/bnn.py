r"""LC-Net-style Bayesian neural-network baselines (Klein et al. 2017), in JAX + numpyro.

An MLP (2 x 16 tanh) maps a curve's configuration features to an asymptote ``y_inf``, an
amplitude ``A``, softmax mixture weights ``w_k`` and two positive shape parameters per basis;
the curve is ``y(t) = y_inf + A * sum_k w_k b_k(t)`` with ``t = x / max x`` in [0, 1] and every
basis normalised to ``b_k(0) = 1``, ``b_k(1) = 0``. Targets are the problem's standardised values.
Posterior by NUTS (numpyro; ``max_tree_depth`` 6 to bound the cost), chains = "restarts".

``basis="orig"``: 5 families (vapor pressure, pow, log-power, exponential, Hill-3), as in the
original LC-Net; ``basis="lc"``: 14 families (the pybnn list). These are our own renditions of
the families (the paper's BNN code is not public); Gaussian weight priors N(0, 1).
"""
from __future__ import annotations

import time
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxscale.learning_curves.magp_predict import JointPrediction
from jaxscale.learning_curves.problem import LCProblem

__all__ = ["BASES", "BNNFit", "basis_curves", "bnn_model", "fit_predict_bnn", "curve_features"]


class BNNFit(NamedTuple):
    """NUTS fit record of a BNN baseline; chains play the role of restarts."""

    basis: str  # "orig" (5 families) | "lc" (14)
    samples: dict  # posterior draws grouped by chain: {site: (chains, draws, ...)}
    ok: np.ndarray  # (chains,) chains whose draws are all finite
    divergences: np.ndarray  # (chains,) number of divergent transitions
    diagnostics: dict | None = None  # R-hat / ESS / divergences of sigma and the fitted means (function space)


def _norm(f, t, a, b):
    f0, f1 = f(jnp.zeros_like(t), a, b), f(jnp.ones_like(t), a, b)
    return (f(t, a, b) - f1) / (f0 - f1 + 1e-9)


_FAMILIES = {
    "vapor_pressure": lambda t, a, b: jnp.exp(-a * t - b * jnp.log1p(t)),
    "pow": lambda t, a, b: (1.0 + 10 * a * t) ** (-b),
    "log_power": lambda t, a, b: 1.0 / (1.0 + (t / (0.1 + b)) ** (1.0 + a)),
    "exponential": lambda t, a, b: jnp.exp(-3 * a * t),
    "hill3": lambda t, a, b: 1.0 - t ** (1.0 + a) / (b + t ** (1.0 + a)),
    "log_log_linear": lambda t, a, b: -jnp.log(a * jnp.log1p(10 * t) + 1.0),
    "pow4": lambda t, a, b: (1.0 + 5 * a * t) ** (-b - 0.1) + 0.0 * t,
    "mmf": lambda t, a, b: 1.0 - t ** (1.0 + b) / (a + t ** (1.0 + b)),
    "exp4": lambda t, a, b: jnp.exp(-(3 * a * t) ** (0.5 + b)),
    "janoschek": lambda t, a, b: jnp.exp(-a * 3 * t ** (1.0 + b)),
    "weibull": lambda t, a, b: jnp.exp(-((t / (0.1 + a)) ** (0.5 + b))),
    "ilog2": lambda t, a, b: 1.0 / jnp.log(jnp.e + 10 * a * t),
    "linear": lambda t, a, b: 1.0 - t + 0.0 * a,
    "quadratic": lambda t, a, b: (1.0 - t) ** 2 + 0.0 * a,
}
BASES = {
    "orig": ("vapor_pressure", "pow", "log_power", "exponential", "hill3"),
    "lc": tuple(_FAMILIES),
}


def basis_curves(t, a, b, names):
    """(K, ...) normalised basis curves; ``a``, ``b`` (K, ...) positive shape parameters."""
    return jnp.stack([_norm(_FAMILIES[n], t, a[k], b[k]) for k, n in enumerate(names)])


def curve_features(problem: LCProblem) -> np.ndarray:
    """(D*R, F) standardised configuration features per curve id: (ln n_embd, ln n_layer) for
    nanoGPT, else one-hot task and replicate."""
    D, R = problem.n_tasks, problem.n_reps
    f = problem.data.frame
    if {"n_embd", "n_layer"} <= set(f.columns):
        g = f.groupby("curve")[["n_embd", "n_layer"]].first()
        feat = np.zeros((D * R, 2))
        feat[g.index.to_numpy()] = np.log(g.to_numpy(float))
        return (feat - feat.mean(0)) / feat.std(0)
    c = np.arange(D * R)
    return np.concatenate([np.eye(D)[c // R], np.eye(R)[c % R]], 1)


def bnn_model(feat, t, curve, y=None, names=BASES["orig"], hidden: int = 16):
    import numpyro
    import numpyro.distributions as dist

    K = len(names)
    F, O = feat.shape[1], 2 + 3 * K
    W1 = numpyro.sample("W1", dist.Normal(0, 1).expand([F, hidden]).to_event(2))
    b1 = numpyro.sample("b1", dist.Normal(0, 1).expand([hidden]).to_event(1))
    W2 = numpyro.sample("W2", dist.Normal(0, 1 / np.sqrt(hidden)).expand([hidden, hidden]).to_event(2))
    b2 = numpyro.sample("b2", dist.Normal(0, 1).expand([hidden]).to_event(1))
    W3 = numpyro.sample("W3", dist.Normal(0, 1 / np.sqrt(hidden)).expand([hidden, O]).to_event(2))
    b3 = numpyro.sample("b3", dist.Normal(0, 1).expand([O]).to_event(1))
    hdn = jnp.tanh(jnp.tanh(feat @ W1 + b1) @ W2 + b2)
    out = (hdn @ W3 + b3)[curve]  # (N, O)
    y_inf, amp = out[:, 0] - 1.0, jnp.exp(out[:, 1] + 1.0)
    w = jax.nn.softmax(out[:, 2:2 + K], axis=-1)
    a = jax.nn.softplus(out[:, 2 + K:2 + 2 * K]).T
    b = jax.nn.softplus(out[:, 2 + 2 * K:]).T
    mean = y_inf + amp * jnp.sum(w.T * basis_curves(t, a, b, names), axis=0)
    numpyro.deterministic("mean", mean)
    sigma = numpyro.sample("sigma", dist.HalfNormal(0.2))
    numpyro.sample("y", dist.Normal(mean, sigma), obs=y)


@partial(jax.jit, static_argnames=("names",))
def _predict_means(samples, feat, t, curve, names):
    from numpyro.infer import Predictive

    pred = Predictive(bnn_model, samples, return_sites=["mean"])
    return pred(jax.random.key(0), feat, t, curve, None, names)["mean"]


def fit_predict_bnn(key, problem: LCProblem, *, basis: str = "orig", restarts: int = 2, num_warmup: int = 300,
                    num_samples: int = 300, max_tree_depth: int = 6):
    """NUTS fit on the training points; per-chain predictive of the held-out points.

    Returns ``(LCFit(model, BNNFit, fit_seconds), JointPrediction (original units; per chain),
    fit_seconds, predict_seconds)``; ``model`` is "bnn" (basis "lc") or "bnn_orig". The NUTS
    diagnostics (R-hat, ESS per chain, divergences, chains) of the noise scale and of the fitted
    curve values are in ``BNNFit.diagnostics`` and warned (``RuntimeWarning``) when they fail.
    """
    from numpyro.infer import MCMC, NUTS, init_to_median

    if basis not in BASES:
        raise ValueError(f"basis {basis!r} not in {sorted(BASES)}")
    names = BASES[basis]
    feat = jnp.asarray(curve_features(problem))
    xmax = float(jnp.max(problem.xgrid))
    tr, te = problem.train, problem.test
    t0 = time.perf_counter()
    mcmc = MCMC(NUTS(bnn_model, max_tree_depth=max_tree_depth, init_strategy=init_to_median(num_samples=15)),
                num_warmup=num_warmup, num_samples=num_samples, num_chains=restarts,
                chain_method="vectorized", progress_bar=False)
    mcmc.run(key, feat, tr.x / xmax, tr.c, tr.y, names=names, extra_fields=("diverging",))
    samples = mcmc.get_samples(group_by_chain=True)
    div = np.asarray(mcmc.get_extra_fields(group_by_chain=True)["diverging"]).reshape(restarts, -1).sum(1)
    fit_s = time.perf_counter() - t0
    from jaxscale.learning_curves.diagnostics import nuts_report

    # diagnostics in function space (noise scale and the fitted curve values): the network weights
    # themselves are not identified (permutations), so their R-hat says nothing about the fit
    diagnostics = nuts_report({k: np.asarray(samples[k]) for k in ("sigma", "mean")}, int(div.sum()),
                              f"bnn ({basis} basis) NUTS")
    t0 = time.perf_counter()
    flat = {k: v.reshape((-1,) + v.shape[2:]) for k, v in samples.items() if k != "mean"}
    means = _predict_means(flat, feat, te.x / xmax, te.c, names).reshape(restarts, num_samples, -1)
    sig2 = np.asarray(samples["sigma"]).reshape(restarts, num_samples) ** 2
    s = np.asarray(problem.scaler.std)[np.asarray(te.d)]
    mu = np.asarray(problem.scaler.mean)[np.asarray(te.d)]
    m = np.asarray(means)
    cov = np.einsum("csi,csj->cij", m - m.mean(1, keepdims=True), m - m.mean(1, keepdims=True)) / num_samples
    pred = JointPrediction(jnp.asarray(m.mean(1) * s + mu), jnp.asarray(cov * s[:, None] * s[None, :]),
                           jnp.asarray(sig2.mean(1)[:, None] * s**2))

    from jaxscale.learning_curves.models import LCFit

    ok = np.all(np.isfinite(m.reshape(restarts, -1)), axis=1) & np.isfinite(sig2).all(1)
    fit = LCFit("bnn_orig" if basis == "orig" else "bnn", BNNFit(basis, samples, ok, div, diagnostics), fit_s, tr)
    return fit, pred, fit_s, time.perf_counter() - t0
