r"""Bayesian observational scaling law (numpyro), calling the same link as the point fit.

Model, per task ``t`` (tasks are independent blocks of one joint model, so many tasks share one
compiled NUTS run):

* standardised PC scores :math:`\tilde S = S / \mathrm{sd}_\text{train}(S)`;
* :math:`\alpha_t \sim N(\mu_\alpha, 5)`, :math:`\tilde\beta_{tk} \sim N(0, \tau)` (τ = 2 logit units per
  training s.d.; the prior that stops the steep-sigmoid blow-ups of 3-digit subtraction, note §4.5);
* floor :math:`b_t = b_{\max,t}\,u_t`, :math:`u_t \sim \mathrm{Beta}(1, 3)` (``b_max`` = 0.2 for the
  floor link, 0 for the plain link, i.e. :math:`b \in [0, 0.2]`);
* :math:`\mu = ` :func:`jaxscale.observational.fit.predict` (= :func:`jaxscale.laws.sigmoid_link`);
* bounded likelihood, default ``"truncnormal"``: :math:`y \sim N(\mu, \sigma_t^2)` truncated to
  ``[0, 1]`` (targets clipped into ``[0, 1]``; below-chance min–max scores exist);
  :math:`\log\sigma_t \sim N(\log 0.05, 1)`. Option ``"beta"``:
  :math:`\mathrm{Beta}(\mu\phi, (1-\mu)\phi)` with :math:`\phi = 2 + \mu(1-\mu)/\sigma_t^2` and
  targets / means clipped into ``[0.01, 0.99]``. The Beta is kept as an option only: its density
  spikes at the bounds, so the many near-zero small models of the emergent tasks are "explained"
  by a flat curve plus noise (posterior-mean test MSE 5–25x the point fit on word unscramble and
  arithmetic in our runs), whereas the truncated normal behaves like the paper's least squares
  in the interior and stays bounded.

Sampling: :func:`fit_bayes` (one joint model through :func:`jaxscale.infer.run_nuts`) or
:func:`fit_bayes_batched` (numpyro's NUTS kernel vmapped over tasks x chains in one compiled
program, each chain adapting its own step size; much faster for many tasks).
"""
from __future__ import annotations

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxscale.infer import run_nuts

from .fit import FLOOR_MAX, LawParams, predict

__all__ = [
    "BayesData",
    "BayesFit",
    "obs_model",
    "stack_tasks",
    "fit_bayes",
    "predictive",
    "coverage",
    "fequiv_draws",
    "precision",
    "TAU",
    "EPS",
]

TAU = 2.0
EPS = 1e-2
MU_CLIP = 1e-2


class BayesData(NamedTuple):
    """Stacked, padded inputs of ``n_tasks`` tasks: rows padded with ``train = 0``."""

    S: jax.Array  # (T, N, K) standardised PC scores (zero columns beyond a task's K)
    y: jax.Array  # (T, N) normalised targets
    train: jax.Array  # (T, N) 1 for training rows
    floor_max: jax.Array  # (T,)
    alpha_mean: jax.Array  # (T,)
    scale: np.ndarray  # (T, K) training s.d. used to standardise S


class BayesFit(NamedTuple):
    """Posterior draws (chains flattened) in PC units, plus diagnostics and the ArviZ hook."""

    intercept: np.ndarray  # (D, T)
    slopes: np.ndarray  # (D, T, K) in raw PC units
    floor: np.ndarray  # (D, T)
    sigma: np.ndarray  # (D, T) noise scale of the likelihood
    posterior: object  # jaxscale.infer.PosteriorResult


def precision(mu, sigma):
    """Beta precision giving variance ~ sigma^2 away from the bounds (see module docstring)."""
    return 2.0 + mu * (1.0 - mu) / sigma**2


def obs_model(S, y, train, floor_max, alpha_mean, tau=TAU, likelihood="truncnormal"):
    """numpyro model of :mod:`jaxscale.observational.bayes` (see module docstring)."""
    import numpyro
    import numpyro.distributions as dist

    T, _, K = S.shape
    with numpyro.plate("task", T):
        alpha = numpyro.sample("alpha", dist.Normal(alpha_mean, 5.0))
        u = numpyro.sample("u_floor", dist.Beta(1.0, 3.0))
        log_sigma = numpyro.sample("log_sigma", dist.Normal(np.log(0.05), 1.0))
        with numpyro.plate("pc", K):
            beta = numpyro.sample("beta", dist.Normal(0.0, tau))  # (K, T)
    b = floor_max * u
    mu = jax.vmap(lambda a, bt, fl, s: predict(LawParams(a, bt, fl), s))(alpha, beta.T, b, S)
    sigma = jnp.exp(log_sigma)[:, None]
    with numpyro.handlers.mask(mask=train > 0):
        numpyro.sample("y", _likelihood(mu, sigma, likelihood), obs=_clip_y(y, likelihood))


def _clip_y(y, likelihood):
    return jnp.clip(y, EPS, 1 - EPS) if likelihood == "beta" else jnp.clip(y, 0.0, 1.0)


def _likelihood(mu, sigma, likelihood):
    import numpyro.distributions as dist

    if likelihood == "beta":
        mu = jnp.clip(mu, MU_CLIP, 1 - MU_CLIP)
        phi = precision(mu, sigma)
        return dist.Beta(mu * phi, (1 - mu) * phi)
    if likelihood == "truncnormal":
        return dist.TruncatedNormal(mu, sigma, low=0.0, high=1.0)
    raise ValueError(f"likelihood must be 'truncnormal' or 'beta', got {likelihood!r}")


def stack_tasks(designs, ks, floors) -> BayesData:
    """Stack the training rows of task designs (``pipeline.Design``) into padded arrays
    (padding rows have ``train = 0`` and are masked out of the likelihood)."""
    n = max(len(d.y_train) for d in designs)
    n = -(-n // 16) * 16
    K = max(ks)
    T = len(designs)
    S = np.zeros((T, n, K))
    y = np.zeros((T, n))
    tr = np.zeros((T, n))
    scale = np.ones((T, K))
    amean = np.zeros(T)
    for t, (d, k) in enumerate(zip(designs, ks)):
        Sa = d.S_train[:, :k]
        ya = d.y_train
        sd = d.S_train[:, :k].std(axis=0)
        scale[t, :k] = sd
        S[t, : len(Sa), :k] = Sa / sd
        y[t, : len(ya)] = ya
        tr[t, : len(d.y_train)] = 1.0
        ym = np.clip(d.y_train.mean(), 0.02, 0.98)
        amean[t] = np.log(ym) - np.log1p(-ym)
    fm = np.array([FLOOR_MAX if f else 0.0 for f in floors])
    return BayesData(jnp.asarray(S), jnp.asarray(y), jnp.asarray(tr), jnp.asarray(fm),
                     jnp.asarray(amean), scale)


def fit_bayes(key, data: BayesData, *, num_warmup=500, num_samples=500, num_chains=4,
              tau=TAU, progress_bar=None, warn=True, likelihood="truncnormal") -> BayesFit:
    """NUTS (chains vectorised, via :func:`jaxscale.infer.run_nuts`) on the stacked tasks."""
    post = run_nuts(key, obs_model, data.S, data.y, data.train, data.floor_max, data.alpha_mean,
                    tau=tau, likelihood=likelihood, num_warmup=num_warmup, num_samples=num_samples,
                    num_chains=num_chains, progress_bar=progress_bar, warn=warn)
    s = post.samples
    beta = np.swapaxes(np.asarray(s["beta"]), 1, 2)  # (D, T, K) standardised
    slopes = beta / data.scale[None]
    floor = np.asarray(data.floor_max)[None] * np.asarray(s["u_floor"])
    return BayesFit(np.asarray(s["alpha"]), slopes, floor, np.exp(np.asarray(s["log_sigma"])), post)


@jax.jit
def _mu_draws(alpha, slopes, floor, S):
    # alpha (D,), slopes (D, K), floor (D,), S (N, K) raw PC units -> (D, N)
    return jax.vmap(lambda a, b, f: predict(LawParams(a, b, f), S))(alpha, slopes, floor)


def predictive(key, fit: BayesFit, t: int, S, probs=(0.05, 0.25, 0.75, 0.95),
               likelihood="truncnormal"):
    """Posterior predictive for task ``t`` at raw PC scores ``S`` (M, K).

    Returns dict(mean = posterior mean of μ, mu_lo/mu_hi = 90% band of μ, q = quantiles of the
    predictive y draws for ``probs``, shape (len(probs), M)).
    """
    K = S.shape[1]
    mu = np.asarray(_mu_draws(jnp.asarray(fit.intercept[:, t]), jnp.asarray(fit.slopes[:, t, :K]),
                              jnp.asarray(fit.floor[:, t]), jnp.asarray(S)))
    d = _likelihood(jnp.asarray(mu), jnp.asarray(fit.sigma[:, t][:, None]), likelihood)
    ydraw = np.asarray(d.sample(key))
    return dict(mean=mu.mean(0), mu_lo=np.quantile(mu, 0.05, 0), mu_hi=np.quantile(mu, 0.95, 0),
                q=np.quantile(ydraw, np.asarray(probs), axis=0), draws=ydraw)


def coverage(y, q) -> dict:
    """50% / 90% interval coverage of ``y`` from quantiles (0.05, 0.25, 0.75, 0.95)."""
    y = np.asarray(y)
    c50 = float(np.mean((y >= q[1]) & (y <= q[2])))
    c90 = float(np.mean((y >= q[0]) & (y <= q[3])))
    return dict(coverage_50=c50, coverage_90=c90)


def fequiv_draws(fit: BayesFit, t: int, S_ref, flops_ref):
    """Per-draw reference-family axis ``(w, c)`` (OLS of P on log10 C): f-equivalent FLOPs with
    uncertainty. Returns arrays (D,), (D,)."""
    K = S_ref.shape[1]
    P = fit.intercept[:, t][:, None] + np.einsum("dk,mk->dm", fit.slopes[:, t, :K], S_ref)
    x = np.log10(np.asarray(flops_ref, float))
    A = np.stack([x, np.ones_like(x)], 1)
    coef, *_ = np.linalg.lstsq(A, P.T, rcond=None)
    return coef[0], coef[1]


# --------------------------------------------------------------------------- batched NUTS
def _constrain(z):
    """Unconstrained sample dict -> constrained sites (alpha, beta, u_floor, log_sigma)."""
    return dict(alpha=z["alpha"], beta=z["beta"], log_sigma=z["log_sigma"],
                u_floor=jax.nn.sigmoid(z["u_floor"]))


def _potential_gen(S, y, train, floor_max, alpha_mean, tau, likelihood):
    from numpyro.infer.util import potential_energy

    def pe(z):
        return potential_energy(obs_model, (S[None], y[None], train[None], floor_max[None],
                                            alpha_mean[None]), {"tau": tau, "likelihood": likelihood}, z)

    return pe


def _one_chain(key, S, y, train, floor_max, alpha_mean, tau, num_warmup, num_samples,
               target_accept_prob, likelihood):
    from numpyro.infer.hmc import hmc

    K = S.shape[-1]
    k0, k1 = jax.random.split(key)
    jit = 0.1 * jax.random.normal(k0, (K + 3,))
    z0 = dict(alpha=alpha_mean[None] + jit[0], beta=jit[1:1 + K][:, None],
              u_floor=jnp.full((1,), -1.0986) + jit[K + 1],
              log_sigma=jnp.full((1,), np.log(0.05)) + jit[K + 2])
    init_kernel, sample_kernel = hmc(
        potential_fn_gen=lambda *a: _potential_gen(*a, likelihood), algo="NUTS")
    margs = (S, y, train, floor_max, alpha_mean, tau)
    state = init_kernel(z0, num_warmup, target_accept_prob=target_accept_prob, model_args=margs,
                        rng_key=k1)

    def step(st, _):
        st = sample_kernel(st, model_args=margs)
        return st, (st.z, st.diverging, st.num_steps)

    state, _ = jax.lax.scan(step, state, None, length=num_warmup)
    _, (zs, div, nsteps) = jax.lax.scan(step, state, None, length=num_samples)
    return zs, div, nsteps


@partial(jax.jit, static_argnames=("num_warmup", "num_samples", "num_chains", "likelihood"))
def _batched_nuts(key, S, y, train, floor_max, alpha_mean, tau, num_warmup, num_samples,
                  num_chains, target_accept_prob, likelihood):
    T = S.shape[0]
    keys = jax.random.split(key, T * num_chains).reshape(T, num_chains)

    def task(kc, s, yy, tr, fm, am):
        return jax.vmap(lambda k: _one_chain(k, s, yy, tr, fm, am, tau, num_warmup, num_samples,
                                             target_accept_prob, likelihood))(kc)

    return jax.vmap(task)(keys, S, y, train, floor_max, alpha_mean)


def fit_bayes_batched(key, data: BayesData, *, num_warmup=500, num_samples=500, num_chains=4,
                      tau=TAU, target_accept_prob=0.8, likelihood="truncnormal",
                      warn=True) -> list:
    """NUTS (numpyro's kernel) for every task and chain in ONE compiled program.

    Each (task, chain) pair adapts its own step size and diagonal mass matrix, so tasks do not
    slow each other down (unlike one joint model). Returns one :class:`BayesFit` per task, each
    with a :class:`jaxscale.infer.PosteriorResult` (diagnostics, ``to_arviz()``).
    """
    import warnings

    from jaxscale.infer import PosteriorResult, nuts_diagnostics

    zs, div, nsteps = _batched_nuts(key, data.S, data.y, data.train, data.floor_max,
                                    data.alpha_mean, tau, num_warmup, num_samples, num_chains,
                                    target_accept_prob, likelihood)
    zs = jax.device_get(zs)
    div = np.asarray(div)
    fits = []
    for t in range(data.S.shape[0]):
        by_chain = {k: np.asarray(v[t]) for k, v in _constrain_tree(zs).items()}
        # site shapes: alpha (C, D, 1), beta (C, D, K, 1) -> drop the task axis of size 1
        by_chain = {k: v[..., 0] for k, v in by_chain.items()}
        diag, msgs = nuts_diagnostics(by_chain, int(div[t].sum()))
        diag["mean_num_steps"] = float(np.asarray(nsteps[t]).mean())
        if warn:
            for m in msgs:
                if not m.startswith("only"):
                    warnings.warn(f"task {t}: {m}", RuntimeWarning, stacklevel=2)
        flat = {k: v.reshape((-1,) + v.shape[2:]) for k, v in by_chain.items()}
        post = PosteriorResult(flat, by_chain, diag, tuple(msgs))
        sl = flat["beta"] / data.scale[t][None]
        fits.append(BayesFit(flat["alpha"][:, None], sl[:, None], float(data.floor_max[t])
                             * flat["u_floor"][:, None], np.exp(flat["log_sigma"])[:, None], post))
    return fits


def _constrain_tree(zs):
    return {k: np.asarray(v) for k, v in _constrain(zs).items()}


__all__ += ["fit_bayes_batched"]
