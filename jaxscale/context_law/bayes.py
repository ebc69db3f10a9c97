"""Bayesian context law (numpyro) calling the same law as the point fit.

Parameters are sampled where the data pin them, then mapped to the law's identifiable form
(normalisers C_ref = 1e22 FLOPs, n_ref = 1e3 tokens):

* the compute factor's level ``m = f_C(c_t)`` at each task's mean training log-compute ``c_t`` is
  Uniform(0, 1), sampled as ``nu = log(-log(1 - m))`` (then ``-nu ~ Gumbel(0, 1)``), and
  ``a = nu - alpha (c_t - log C_ref)``. With a Normal(0, 3) prior on ``a`` itself, the saturated
  region (``f_C = 1``, always possible while the scores have not levelled off) was a long flat
  plateau that chains crossed at different speeds (many-shot ICL: R-hat 1.06-1.22 on ``a``); the
  uniform level squeezes it into a light tail. Sampling ``logit(m)`` instead left an exponential
  tail there (R-hat 1.02, ESS 240 on 4 x 400 draws);
* ``b`` is sampled at each task's mean training log prompt length ``l_t`` (in units of n_ref):
  ``b_c ~ Normal(0, 3)`` and ``b = b_c - beta l_t``, which removes most of the b-beta correlation;
* alpha, beta ~ LogNormal(log 0.5, 1); log relative cliff width ~ Normal(log 0.05, 0.5), a cliff
  between about 2 % and 13 % of the limit wide (a prior sd of 1 let a cliff as wide as the limit
  act as a second ceiling below 1, confounded with ``f_C``: two modes, R-hat 1.02-1.04 on
  many-shot ICL); log kappa ~ Normal(log 20, 1) for ``log_ratio``; log shift ~ Normal(0, 0.5);
  gamma ~ HalfNormal(0.3).

The law's ``a`` and ``b`` are recorded as deterministic sites, so draws come out in the point
fit's parameterisation.  Likelihoods: ``binomial`` on item counts (BABILong, synthetic), ``normal``
(sigma ~ HalfNormal(0.1)), ``laplace`` (robust; b ~ HalfNormal(0.1)) or ``beta`` (phi ~ Gamma(2, 0.02))
on cell means otherwise.  Rows with weight 0 are masked out of the likelihood but still predicted,
which is how extrapolation bands and coverage are computed.
"""
from __future__ import annotations

import math
import warnings
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxscale.context_law.model import LIKELIHOODS, Spec, param_names, predict_law
from jaxscale.infer import run_nuts

__all__ = ["LIKELIHOODS", "BETA_EPS", "SAMPLED", "BayesFit", "context_model", "fit_bayes", "fit_bayes_backtest",
           "nuts_advice", "predictive_draws", "predictive_bands", "coverage"]


class BayesFit(NamedTuple):
    """Posterior draws of theta (S, n_params), of P at every row (S, n_rows), and the noise draws."""

    theta: np.ndarray
    p: np.ndarray
    noise: np.ndarray
    posterior: object  # jaxscale.infer.PosteriorResult


def _priors(spec: Spec):
    import numpyro.distributions as dist

    # "a" and "b" stand for their sampled sites (SAMPLED): nu = log(-log(1 - f_C)) with f_C ~ U(0, 1), i.e.
    # -nu ~ Gumbel(0, 1), and b at the task's centre ~ Normal(0, 3)
    pri = {"a": dist.TransformedDistribution(dist.Gumbel(0.0, 1.0), dist.transforms.AffineTransform(0.0, -1.0)),
           "alpha": dist.LogNormal(math.log(0.5), 1.0),
           "b": dist.Normal(0.0, 3.0), "beta": dist.LogNormal(math.log(0.5), 1.0),
           "log_scale": (dist.Normal(math.log(0.05), 0.5) if spec.penalty == "logistic"
                         else dist.Normal(math.log(20.0), 1.0)),
           "log_shift": dist.Normal(0.0, 0.5), "gamma": dist.HalfNormal(0.3)}
    return {n: pri[n] for n in param_names(spec)}


#: Names of the sampled sites standing in for the law's ``a`` and ``b`` (see the module docstring).
SAMPLED = {"a": "log_rate_fc", "b": "b_centre"}
_C_REF = math.log(1e22)


def _centres(data):
    """Each task's mean training log compute and log(n_pmt / 1e3) (rows with weight > 0); (T,) each."""
    w = (data.weight > 0).astype(data.y.dtype)
    tot = jnp.maximum(jnp.sum(w, axis=-1), 1.0)
    c = jnp.sum(w * data.log_C, axis=-1) / tot
    l_ = jnp.sum(w * jnp.log(data.n_pmt / 1e3), axis=-1) / tot
    return c, l_


def _to_law(spec: Spec, sampled: dict, c_t, l_t) -> dict:
    """Sampled sites -> the law's a and b."""
    alpha = sampled["alpha"] if spec.fit_alpha else spec.alpha_fixed
    a = sampled[SAMPLED["a"]] - alpha * (c_t - _C_REF)
    b = sampled[SAMPLED["b"]] - sampled["beta"] * l_t
    return {"a": a, "b": b}


def _from_law(spec: Spec, theta, c_t, l_t) -> dict:
    """The law's parameters (T, P) -> start values of the sampled sites (inverse of :func:`_to_law`)."""
    names = param_names(spec)
    get = {n: theta[:, i] for i, n in enumerate(names)}
    alpha = get["alpha"] if spec.fit_alpha else spec.alpha_fixed
    out = {n: get[n] for n in names if n not in SAMPLED}
    out[SAMPLED["a"]] = jnp.clip(get["a"] + alpha * (c_t - _C_REF), -20.0, 3.0)  # f_C in (2e-9, 1 - 2e-9)
    out[SAMPLED["b"]] = get["b"] + get["beta"] * l_t
    return out


def context_model(data, n_items=None, n_correct=None, *, spec: Spec, likelihood: str = "normal"):
    """numpyro model over tasks x rows (``data`` leaves have shape (T, n)); parameters and noise are
    per task (independent, in a ``task`` plate).  ``n_items``/``n_correct`` for the binomial likelihood."""
    import numpyro
    import numpyro.distributions as dist

    n_tasks = data.y.shape[0]
    c_t, l_t = _centres(data)
    names = param_names(spec)
    with numpyro.plate("task", n_tasks):
        sampled = {}
        for n, d in _priors(spec).items():
            sampled[SAMPLED.get(n, n)] = numpyro.sample(SAMPLED.get(n, n), d)
        if likelihood == "normal":
            noise = numpyro.sample("noise", dist.HalfNormal(0.1))
        elif likelihood == "laplace":
            noise = numpyro.sample("noise", dist.HalfNormal(0.1))
        elif likelihood == "beta":
            noise = numpyro.sample("noise", dist.Gamma(2.0, 0.02))
    law = _to_law(spec, sampled, c_t, l_t)
    numpyro.deterministic("a", law["a"])
    numpyro.deterministic("b", law["b"])
    theta = jnp.stack([law[n] if n in law else sampled[n] for n in names], axis=-1)  # (T, P)
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
            y = jnp.clip(data.y, BETA_EPS, 1 - BETA_EPS)
            numpyro.sample("obs", dist.Beta(p * noise[:, None], (1 - p) * noise[:, None]), obs=y)
        else:
            raise ValueError(f"likelihood={likelihood!r} is unknown; choose one of {LIKELIHOODS}")


#: The beta likelihood has no density at 0 and 1: scores there are moved to [BETA_EPS, 1 - BETA_EPS]
#: (counted and warned by :func:`fit_bayes`).
BETA_EPS = 1e-3


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
    _check_sampling(data, likelihood, num_chains)
    init = init_to_median(num_samples=15)
    if init_theta is not None:
        c_t, l_t = _centres(data)
        init = init_to_value(values=_from_law(spec, jnp.asarray(init_theta), c_t, l_t))
    post = run_nuts(key, context_model, data, n_items, n_correct, spec=spec, likelihood=likelihood,
                    num_warmup=num_warmup, num_samples=num_samples, num_chains=num_chains, init_strategy=init,
                    target_accept_prob=float(spec.target_accept), warn=False)
    for msg in post.warnings:
        if not msg.startswith("only"):  # one chain: warned by _check_sampling before sampling
            warnings.warn(nuts_advice(msg, spec), RuntimeWarning, stacklevel=2)
    theta = np.stack([np.asarray(post.samples[n]) for n in names], axis=-1)
    p = np.asarray(post.samples["p"])
    noise = np.asarray(post.samples["noise"]) if "noise" in post.samples else np.zeros(theta.shape[:2])
    if single:
        theta, p, noise = theta[:, 0], p[:, 0], noise[:, 0]
    return BayesFit(theta, p, noise, post)


def nuts_advice(msg: str, spec: Spec) -> str:
    """A sampler diagnostic of :func:`jaxscale.infer.run_nuts` with its advice in the settings a
    context-law fit has: ``Spec`` fields and their command-line flags (``context fit``)."""
    if "divergent transitions" in msg:
        now = float(spec.target_accept)
        to = 0.95 if now < 0.95 else round((1.0 + now) / 2.0, 3)
        return (f"{msg.split(':')[0]}: raise the target acceptance from {now:g} (Spec(target_accept={to:g}); "
                f"CLI: --target-accept {to:g}), which takes smaller steps, or simplify the law (e.g. fix a "
                "parameter: --no-fit-scale, --no-fit-alpha)")
    if msg.startswith("max R-hat"):
        return (f"{msg.split(': chains')[0]}: chains disagree; run longer (Spec.num_warmup / num_samples; CLI: "
                "--num-warmup / --num-samples) or simplify the law (e.g. --no-fit-scale, --no-fit-alpha)")
    if msg.startswith("min ESS"):
        return (f"{msg.split(': draw')[0]}: draw more samples (Spec.num_samples; CLI: --num-samples) or more "
                "chains (Spec.num_chains; CLI: --num-chains)")
    return msg


def _check_sampling(data, likelihood: str, num_chains: int) -> None:
    """Warnings before sampling: one chain (no R-hat), scores the beta likelihood must move off 0 / 1."""
    if int(num_chains) < 2:
        warnings.warn(f"NUTS with {int(num_chains)} chain: R-hat then only compares the chain's two halves, which "
                      "can agree while the chain is stuck in one mode; use num_chains >= 2 (CLI: --num-chains 4)",
                      UserWarning, stacklevel=3)
    if likelihood == "beta":
        y = np.asarray(data.y)[np.asarray(data.weight) > 0]
        edge = (y < BETA_EPS) | (y > 1 - BETA_EPS)
        if edge.any():
            warnings.warn(f"likelihood='beta': {int(edge.sum())} training score(s) at 0 or 1 (within {BETA_EPS:g}) "
                          f"are moved to [{BETA_EPS:g}, {1 - BETA_EPS:g}], where the beta density is finite; use "
                          "'binomial' with item counts, or 'normal' / 'laplace', to keep them as they are",
                          UserWarning, stacklevel=3)


def predictive_bands(key, fit: BayesFit, likelihood: str, n_items=None, level: float = 0.9, extra_sd=None):
    """Posterior-predictive mean of P and central ``level`` band for new observations at every row.

    ``extra_sd`` (broadcasting against a row of ``fit.p``, e.g. (T, n)): sd of an extrapolation
    discrepancy added to P before the likelihood's noise (``drift x distance``; None: none)."""
    p = fit.p
    y = predictive_draws(key, p, fit.noise, likelihood, n_items, extra_sd)
    q = (1 - level) / 2
    return {"mean": p.mean(0), "median": np.median(p, 0), "lo": np.quantile(y, q, axis=0),
            "hi": np.quantile(y, 1 - q, axis=0), "p_lo": np.quantile(p, q, axis=0),
            "p_hi": np.quantile(p, 1 - q, axis=0)}


def coverage(y, bands: dict, mask=None) -> float:
    """Fraction of observations inside the predictive band ``[bands["lo"], bands["hi"]]``
    (optionally on the rows where ``mask`` is True; NaN when no row is left). Host-side NumPy."""
    y, lo, hi = np.asarray(y), np.asarray(bands["lo"]), np.asarray(bands["hi"])
    if mask is not None:
        m = np.asarray(mask, bool)
        y, lo, hi = y[m], lo[m], hi[m]
    inside = (y >= lo) & (y <= hi)
    return float(np.mean(inside)) if inside.size else float("nan")


def predictive_draws(key, p, noise, likelihood: str, n_items=None, extra_sd=None):
    """Draws of new observations (clipped to [0, 1]) given draws ``p`` (S, ...) of the law and the
    likelihood's ``noise`` (S, ...[:-1]); ``extra_sd`` adds the extrapolation discrepancy to P."""
    p = np.asarray(p)
    if extra_sd is not None:
        k_extra, key = jax.random.split(key)
        p = np.clip(p + np.asarray(extra_sd) * np.asarray(jax.random.normal(k_extra, p.shape)), 1e-9, 1 - 1e-9)
    if likelihood == "binomial":
        n = np.asarray(n_items)
        y = np.asarray(jax.random.binomial(key, jnp.asarray(n), jnp.asarray(p))) / n
    elif likelihood == "normal":
        y = p + np.asarray(noise)[..., None] * np.asarray(jax.random.normal(key, p.shape))
    elif likelihood == "laplace":
        y = p + np.asarray(noise)[..., None] * np.asarray(jax.random.laplace(key, p.shape))
    else:
        phi = np.asarray(noise)[..., None]
        y = np.asarray(jax.random.beta(key, jnp.asarray(p * phi), jnp.asarray((1 - p) * phi)))
    return np.clip(y, 0.0, 1.0)


def fit_bayes_backtest(key, stacked, w_past, future, ok, spec: Spec, *, init_theta, init_backtest,
                       likelihood: str, n_items=None, n_correct=None, num_warmup: int = 400,
                       num_samples: int = 400, num_chains: int = 4):
    """NUTS over every task's training rows and, in the same program, over its backtest past rows
    (the tasks stacked twice: ``2T`` in one plate), then the Bayesian drift of the intervals.

    The drift rate ``tau`` solves ``mean(e^2 / (v + tau^2 d^2)) = 1`` over the backtest's future
    rows (pooled over the tasks with a usable split, ``ok``), where ``e`` is the error of the
    backtest posterior's mean, ``v`` the variance of its posterior predictive (parameter
    uncertainty plus the likelihood's noise) and ``d`` the row's distance outside the backtest's
    training cells: the same backtest as the point fit's, measured on the Bayesian predictive.

    Args:
      key: PRNG key (NUTS, then the predictive draws).
      stacked: (T, m) training rows of each task (weight > 0).
      w_past: (T, m) weights of the backtest's past rows.
      future: (T, m) backtest future rows.
      ok: (T,) tasks whose split is usable.
      spec: law form and NUTS settings.
      init_theta: (T, P) start of the main chains (the point fit).
      init_backtest: (T, P) start of the backtest chains (the point backtest refit).
      likelihood: noise model.
      n_items: (T, m) items per row (binomial).
      n_correct: (T, m) correct items per row (binomial).
      num_warmup: NUTS warm-up steps per chain.
      num_samples: NUTS draws per chain.
      num_chains: NUTS chains.

    Returns:
      ``(BayesFit of the T main tasks (its ``posterior`` holds the joint diagnostics), drift dict
      {"tau", "n_future", "tasks_used", "reason"})``.
    """
    from jaxscale.context_law.extrapolation import _host_distance, solve_drift, training_box

    T = int(np.shape(stacked.y)[0])
    twice = jax.tree_util.tree_map(lambda a: jnp.concatenate([jnp.asarray(a), jnp.asarray(a)]), stacked)
    weight = jnp.concatenate([jnp.asarray(stacked.weight), jnp.asarray(w_past, dtype=jnp.asarray(stacked.weight).dtype)])
    twice = twice.replace(weight=weight) if hasattr(twice, "replace") else twice._replace(weight=weight)
    two = (lambda a: None if a is None else jnp.concatenate([jnp.asarray(a), jnp.asarray(a)]))
    k_nuts, k_draw = jax.random.split(key)
    bf = fit_bayes(k_nuts, twice, spec, likelihood=likelihood, n_items=two(n_items), n_correct=two(n_correct),
                   init_theta=jnp.concatenate([jnp.asarray(init_theta), jnp.asarray(init_backtest)]),
                   num_warmup=num_warmup, num_samples=num_samples, num_chains=num_chains)
    main = BayesFit(bf.theta[:, :T], bf.p[:, :T], bf.noise[:, :T], bf.posterior)
    ok = np.asarray(ok, bool)
    if not ok.any():
        return main, {"tau": 0.0, "n_future": 0, "tasks_used": 0,
                      "reason": "no task has enough rows below its longest prompts for a backtest; intervals do not "
                                "widen outside the training cells"}
    p_bt = bf.p[:, T:]
    draws = predictive_draws(k_draw, p_bt, bf.noise[:, T:], likelihood,
                             None if n_items is None else np.asarray(n_items))
    past = stacked.replace(weight=jnp.asarray(w_past)) if hasattr(stacked, "replace") else \
        stacked._replace(weight=jnp.asarray(w_past))
    d = _host_distance(training_box(past), stacked)
    fut = np.asarray(future, bool) & ok[:, None]
    e = (np.asarray(stacked.y, float) - p_bt.mean(0))[fut]
    v = draws.var(0)[fut]
    tau = solve_drift(e, d[fut], np.sqrt(v))
    out = {"tau": tau, "n_future": int(fut.sum()), "tasks_used": int(ok.sum()), "reason": None}
    if tau == 0.0:
        out["reason"] = "the backtest posterior's errors beyond its cells were within its predictive spread"
    return main, out
