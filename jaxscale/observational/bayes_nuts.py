"""NUTS for :func:`jaxscale.observational.bayes.obs_model`: every task x chain in ONE program.

The engine is :mod:`jaxscale.infer.batched_nuts` (MAP by damped Newton on numpyro's potential
energy, started at the point fit when given; the Laplace covariance as the starting dense inverse
mass matrix; NUTS adapting step size and (``adapt_mass=True``, default) the dense mass; one flat
``vmap`` over (task, chain) pairs); this module supplies the potential of one task and turns the
draws into :class:`~jaxscale.observational.bayes.BayesFit` objects.
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

from jaxscale.infer import PosteriorResult, nuts_diagnostics
from jaxscale.infer.batched_nuts import batched_nuts, map_laplace_batched, nuts_warnings, warn_nuts

from .fit import SigmoidLaw
from .bayes import PRIORS, USES_SZ, BayesData, BayesFit, Priors, obs_model, to_raw, to_std

__all__ = ["fit_bayes_batched", "init_from_point", "map_laplace", "nuts_warnings", "warn_nuts"]

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


def map_laplace(data: BayesData, x0=None, priors: Priors = PRIORS, likelihood="extrap"):
    """MAP (flat unconstrained vectors, (T, P)), Laplace covariances (T, P, P), converged (T,)."""
    x0 = _default_init(data, priors, likelihood) if x0 is None else x0
    return map_laplace_batched(_loss_for(likelihood), x0, _task_args(data), (tuple(priors),), steps=MAP_STEPS)


def _task_args(d: BayesData) -> tuple:
    """The per-task arrays of the potential, in its argument order (leading task axis)."""
    return (d.S, d.y, d.train, d.n_items, d.y_lo, d.y_hi, d.floor_max, d.alpha_mean, *_lower_top(d))


def _lower_top(d: BayesData):
    if d.lower is None:  # hand-built data without a backtest split: every row is "lower"
        return d.train, -jnp.ones((d.train.shape[0], 1))
    return d.lower, d.top


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
    zs, div, nsteps = batched_nuts(key, _loss_for(likelihood), x_map, cov, _task_args(d), (tuple(priors),),
                                   num_warmup=num_warmup, num_samples=num_samples, num_chains=num_chains,
                                   adapt_mass=adapt_mass, target_accept_prob=target_accept_prob,
                                   init_scale=init_scale, max_tree_depth=max_tree_depth)
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
