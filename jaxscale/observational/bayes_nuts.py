"""Batched NUTS for :func:`jaxscale.observational.bayes.obs_model`: every task x chain in ONE program.

Per task: (1) MAP by damped Newton (a fixed-length scan: one trace of the potential, where an
L-BFGS line search inlines it several times) on numpyro's potential energy, started at the point
fit when given;
(2) Laplace covariance (inverse Hessian at the MAP) as the starting *dense* inverse mass matrix;
(3) numpyro's NUTS kernel (:func:`numpyro.infer.hmc.hmc`) started near the MAP, adapting the step
size and (``adapt_mass=True``, default) the dense mass matrix. (task, chain) pairs are
``vmap``-ed, each with its own adaptation, so one compiled program samples all 17 tasks.
Measured on the 17 tasks (150 + 150 draws): the Laplace mass alone gives the shortest
trajectories (7 leapfrog steps on GSM8K CoT against 19), but AgentBench's chains did not mix
with it (R-hat 3.95, trees at the depth cap); adapting the mass brought R-hat to 1.12.
"""
from __future__ import annotations

import warnings
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from jaxscale.infer import PosteriorResult, minimize_newton, nuts_diagnostics

from .fit import SigmoidLaw
from .bayes import PRIORS, USES_SZ, BayesData, BayesFit, Priors, obs_model, to_raw, to_std

__all__ = ["fit_bayes_batched", "init_from_point", "map_laplace", "nuts_warnings", "warn_nuts"]

#: Where the remedies of the NUTS warnings are explained.
REMEDY_URL = "https://mc-stan.org/misc/warnings.html"


def nuts_warnings(diagnostics: dict, what: str) -> str | None:
    """The NUTS checks every sampling command of this pillar applies, as one message (``None`` when
    all pass): max R-hat > 1.01 (split R-hat, so it also flags a single chain that drifts), min ESS
    below 100 per chain, any divergent transition, fewer than 2 chains.

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
    """Issue :func:`nuts_warnings` as a ``RuntimeWarning`` (returns the message, or ``None``)."""
    msg = nuts_warnings(diagnostics, what)
    if msg:
        warnings.warn(msg, RuntimeWarning, stacklevel=stacklevel)
    return msg

MAP_STEPS = 60  # damped-Newton steps of the MAP search (a fixed-length scan: cheap to compile)


def _template(K, likelihood="extrap"):
    """The latent sites of one task (shapes as in :func:`bayes.obs_model` with ``T = 1``)."""
    d = dict(alpha=jnp.zeros(1), beta=jnp.zeros((K, 1)), u_floor=jnp.zeros(1),
             log_s0=jnp.zeros(1), log_sz=jnp.zeros(1))
    return _extend(d, likelihood, PRIORS)


def _extend(d, likelihood, priors):
    """Fit a start dict to the likelihood's sites: drop σz where unused; "extrap": the backtest's
    lower-part copy of the law starts at the full law, κ at its prior median."""
    if likelihood not in USES_SZ:
        d.pop("log_sz")
    if likelihood == "extrap":
        d.update(alpha_lo=d["alpha"], beta_lo=d["beta"], u_floor_lo=d["u_floor"],
                 log_kappa=np.array([priors.log_kappa_mean]))
    return d


def _potential(x, S, y, train, n_items, y_lo, y_hi, floor_max, alpha_mean, lower, top, priors,
               likelihood):
    """Potential energy (negative log joint, unconstrained) of ONE task at flat vector ``x``."""
    from numpyro.infer.util import potential_energy

    K = S.shape[-1]
    _, unravel = ravel_pytree(_template(K, likelihood))
    args = tuple(a[None] for a in (S, y, train, n_items, y_lo, y_hi, floor_max, alpha_mean, lower, top))
    return potential_energy(obs_model, args, dict(priors=Priors(*priors), likelihood=likelihood),
                            unravel(x))


_LOSSES: dict = {}


def _loss_for(likelihood):
    # one function object per likelihood (the minimisers take loss_fn as a static argument),
    # jit-wrapped: NUTS' nested while loops and the Newton scan then trace numpyro's model once
    # and reuse it (measured: NUTS trace 4.4 -> 1.3 s, MAP program HLO 543k -> 331k characters)
    if likelihood not in _LOSSES:
        _LOSSES[likelihood] = jax.jit(partial(_potential, likelihood=likelihood))
    return _LOSSES[likelihood]


def init_from_point(data: BayesData, points, priors: Priors = PRIORS, s0=None,
                    likelihood="extrap") -> jnp.ndarray:
    """Flat start vectors (T, P) from point fits (``fit.SigmoidLaw`` per task, raw PC units)."""
    T, _, K = data.S.shape
    x0 = np.zeros((T, ravel_pytree(_template(K, likelihood))[0].shape[0]))
    for t, p in enumerate(points):
        sl = np.zeros(K)
        k = np.asarray(p.slopes).shape[0]
        sl[:k] = np.asarray(p.slopes, float)
        a, b = to_std(float(p.intercept), sl, data.center[t], data.scale[t])
        fm = float(data.floor_max[t])
        u = np.clip(float(p.floor) / fm, 1e-3, 1 - 1e-3) if fm > 0 else 0.25
        d = dict(alpha=np.array([a]), beta=b[:, None], u_floor=np.array([np.log(u / (1 - u))]),
                 log_s0=np.array([priors.log_s0_mean if s0 is None else np.log(s0[t])]),
                 log_sz=np.array([priors.log_sz_mean]))
        d = _extend(d, likelihood, priors)
        x0[t] = np.asarray(ravel_pytree({k2: jnp.asarray(v) for k2, v in d.items()})[0])
    return jnp.asarray(x0)


def _default_init(data: BayesData, priors: Priors, likelihood="extrap"):
    T, _, K = data.S.shape
    x0 = [ravel_pytree(_extend(dict(
        alpha=data.alpha_mean[t:t + 1], beta=jnp.zeros((K, 1)), u_floor=jnp.full((1,), -1.1),
        log_s0=jnp.full((1,), priors.log_s0_mean), log_sz=jnp.full((1,), priors.log_sz_mean)),
        likelihood, priors))[0] for t in range(T)]
    return jnp.stack(x0)


def _map_one(x0, S, y, train, n_items, y_lo, y_hi, floor_max, alpha_mean, lower, top, priors,
             likelihood):
    loss = _loss_for(likelihood)
    args = (S, y, train, n_items, y_lo, y_hi, floor_max, alpha_mean, lower, top, priors)
    # Newton accepts only steps that lower the potential (never worse than the start), and hands
    # back the Hessian at its end point for the Laplace covariance (no second Hessian program)
    res, H = minimize_newton(loss, x0, *args, steps=MAP_STEPS, tol=1e-6, with_hessian=True)
    w, V = jnp.linalg.eigh(H)
    w = jnp.clip(w, 1e-2, None)  # flat directions (prior-only sites keep their prior scale)
    cov = (V / w) @ V.T
    return res.params, cov, res.converged


@partial(jax.jit, static_argnames=("likelihood",))
def _map_all(x0, S, y, train, n_items, y_lo, y_hi, floor_max, alpha_mean, lower, top, priors,
             likelihood):
    return jax.vmap(lambda *a: _map_one(*a, priors, likelihood))(
        x0, S, y, train, n_items, y_lo, y_hi, floor_max, alpha_mean, lower, top)


def map_laplace(data: BayesData, x0=None, priors: Priors = PRIORS, likelihood="extrap"):
    """MAP (flat unconstrained vectors, (T, P)), Laplace covariances (T, P, P), converged (T,)."""
    x0 = _default_init(data, priors, likelihood) if x0 is None else x0
    d = data
    return _map_all(x0, d.S, d.y, d.train, d.n_items, d.y_lo, d.y_hi, d.floor_max, d.alpha_mean,
                    *_lower_top(d), tuple(priors), likelihood)


def _lower_top(d: BayesData):
    if d.lower is None:  # hand-built data without a backtest split: every row is "lower"
        return d.train, -jnp.ones((d.train.shape[0], 1))
    return d.lower, d.top


def _one_chain(key, x_map, cov, S, y, train, n_items, y_lo, y_hi, floor_max, alpha_mean, lower, top,
               priors,
               num_warmup, num_samples, likelihood, adapt_mass, target_accept_prob, init_scale,
               max_tree_depth):
    from numpyro.infer.hmc import hmc

    k0, k1 = jax.random.split(key)
    L = jnp.linalg.cholesky(cov + 1e-10 * jnp.eye(cov.shape[0]))
    z0 = x_map + init_scale * L @ jax.random.normal(k0, x_map.shape)
    pot = _loss_for(likelihood)
    init_kernel, sample_kernel = hmc(
        potential_fn_gen=lambda *a: (lambda z: pot(z, *a)), algo="NUTS")
    margs = (S, y, train, n_items, y_lo, y_hi, floor_max, alpha_mean, lower, top, priors)
    state = init_kernel(z0, num_warmup, step_size=0.5, inverse_mass_matrix=cov, dense_mass=True,
                        adapt_mass_matrix=adapt_mass, target_accept_prob=target_accept_prob,
                        max_tree_depth=max_tree_depth, model_args=margs, rng_key=k1)

    def step(st, _):
        st = sample_kernel(st, model_args=margs)
        return st, (st.z, st.diverging, st.num_steps)

    # ONE scan over warm-up + sampling (the kernel adapts while i < num_warmup): the NUTS kernel
    # is traced and compiled once, not twice
    _, out = jax.lax.scan(step, state, None, length=num_warmup + num_samples)
    return jax.tree.map(lambda v: v[num_warmup:], out)


@partial(jax.jit, static_argnames=("num_warmup", "num_samples", "num_chains", "likelihood",
                                   "adapt_mass", "max_tree_depth"))
def _batched(key, x_map, cov, S, y, train, n_items, y_lo, y_hi, floor_max, alpha_mean, lower, top,
             priors,
             num_warmup, num_samples, num_chains, likelihood, adapt_mass, target_accept_prob,
             init_scale, max_tree_depth):
    T = S.shape[0]
    keys = jax.random.split(key, T * num_chains)
    # ONE flat vmap over (task, chain) pairs: nested vmaps of NUTS' nested while loops multiply
    # the batching passes at trace time
    per_task = (x_map, cov, S, y, train, n_items, y_lo, y_hi, floor_max, alpha_mean, lower, top)
    flat = [jnp.repeat(v, num_chains, axis=0) for v in per_task]
    out = jax.vmap(lambda k, *a: _one_chain(
        k, *a, priors, num_warmup, num_samples, likelihood, adapt_mass, target_accept_prob,
        init_scale, max_tree_depth))(keys, *flat)
    return jax.tree.map(lambda v: v.reshape((T, num_chains) + v.shape[1:]), out)


def fit_bayes_batched(key, data: BayesData, *, points=None, s0=None, num_warmup=300, num_samples=500,
                      num_chains=4, priors: Priors = PRIORS, likelihood="extrap",
                      adapt_mass=True, target_accept_prob=0.8, init_scale=0.5,
                      max_tree_depth=6, warn=True, names=None, what="NUTS") -> list:
    """NUTS for every task and chain of ``data`` in ONE compiled program.

    ``points``: optional point fits (``fit.SigmoidLaw`` per task) used to start the MAP search,
    ``s0``: their training RMS residuals (start of the noise scale). With ``warn``, every task
    whose diagnostics fail :func:`nuts_warnings` is warned about, named ``f"{what}, task {name}"``
    (``names``: one per task; default their index), and so is a MAP search that did not converge.
    Returns one :class:`bayes.BayesFit` per task (draws in raw PC units) with a
    :class:`jaxscale.infer.PosteriorResult` (R-hat, ESS, divergences, ``to_arviz()``).
    """
    d = data
    x0 = None if points is None else init_from_point(d, points, priors, s0, likelihood)
    x_map, cov, conv = map_laplace(d, x0, priors, likelihood)
    zs, div, nsteps = _batched(key, x_map, cov, d.S, d.y, d.train, d.n_items, d.y_lo, d.y_hi,
                               d.floor_max, d.alpha_mean, *_lower_top(d), tuple(priors),
                               num_warmup, num_samples,
                               num_chains, likelihood, adapt_mass, target_accept_prob, init_scale,
                               max_tree_depth)
    zs, div, nsteps = np.asarray(zs), np.asarray(div), np.asarray(nsteps)
    if not np.all(np.isfinite(zs)):
        bad = sorted({int(t) for t in np.argwhere(~np.isfinite(zs))[:, 0]})
        raise ValueError(f"fit_bayes_batched: non-finite draws in task(s) {bad}; check the "
                         "inputs (finite PC scores, targets in range) or the priors")
    K = d.S.shape[-1]
    _, unravel = ravel_pytree(_template(K, likelihood))
    out = []
    for t in range(d.S.shape[0]):
        z = jax.vmap(jax.vmap(unravel))(jnp.asarray(zs[t]))  # (C, D) leaves
        fm = float(d.floor_max[t])
        alpha = np.asarray(z["alpha"])[..., 0]
        beta = np.asarray(z["beta"])[..., 0]
        icp, sl = to_raw(alpha, beta, d.center[t], d.scale[t])
        by_chain = dict(alpha=alpha, beta=beta, floor=fm * np.asarray(jax.nn.sigmoid(z["u_floor"]))[..., 0],
                        s0=np.exp(np.asarray(z["log_s0"])[..., 0]),
                        intercept=icp, slopes=sl)
        if "log_sz" in z:
            by_chain["sz"] = np.exp(np.asarray(z["log_sz"])[..., 0])
        box = None
        if likelihood == "extrap":
            by_chain["kappa"] = np.exp(np.asarray(z["log_kappa"])[..., 0])
            St = np.asarray(d.S[t])[np.asarray(d.train[t]) > 0]
            box = (St.min(0), St.max(0), d.center[t], d.scale[t])
        latent = {k: v for k, v in by_chain.items() if k in ("alpha", "beta", "s0", "sz", "kappa")
                  or (k == "floor" and fm > 0)}
        diag, msgs = nuts_diagnostics(latent, int(div[t].sum()))
        diag["mean_num_steps"] = float(nsteps[t].mean())
        diag["map_converged"] = bool(conv[t])
        if warn:
            label = (what if names is None and d.S.shape[0] == 1
                     else f"{what}, task {names[t] if names is not None else t}")
            warn_nuts(diag, label)
            if not bool(conv[t]):
                warnings.warn(f"{label}: the MAP search that starts NUTS did not converge; the chains start "
                              "away from the mode (check the diagnostics above)", RuntimeWarning, stacklevel=2)
        flat = {k: v.reshape((-1,) + v.shape[2:]) for k, v in by_chain.items()}
        post = PosteriorResult(flat, by_chain, diag, tuple(msgs))
        zm = unravel(jnp.asarray(x_map[t]))
        m_icp, m_sl = to_raw(float(zm["alpha"][0]), np.asarray(zm["beta"])[:, 0], d.center[t],
                             d.scale[t])
        mode = SigmoidLaw(m_icp, m_sl, fm * float(jax.nn.sigmoid(zm["u_floor"][0])))
        out.append(BayesFit(flat["intercept"], flat["slopes"], flat["floor"], flat["s0"],
                            flat.get("sz", np.zeros_like(flat["s0"])), likelihood, int(d.n_items[t]), float(d.y_lo[t]),
                            float(d.y_hi[t]), post, mode, flat.get("kappa"), box))
    return out
