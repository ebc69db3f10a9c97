r"""Chinchilla :math:`L(N, D) = E + A/N^\alpha + B/D^\beta` end to end: the Epoch replication's
fit, vmapped bootstrap refits, and a numpyro posterior calling the same law.

Epoch's method (Besiroglu et al. 2024, replicating Hoffmann et al. 2022): minimise
:math:`\sum_i \mathrm{Huber}_\delta(\mathrm{LSE}(a - \alpha \log N_i, b - \beta \log D_i, e) - \log L_i)`
with :math:`\delta = 10^{-3}` by L-BFGS from every point of a 4,500-point grid of starts
(:math:`\alpha, \beta \in \{0, .5, \dots, 2\}`, :math:`e \in \{-1, -.5, \dots, 1\}`,
:math:`a, b \in \{0, 5, \dots, 25\}`) and keep the best; the 5 highest-loss points are excluded.
All 4,500 starts run as one ``vmap``ped compiled program; bootstraps ``vmap`` over resamples.
"""
from __future__ import annotations

import itertools
import warnings
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from jaxscale.config import warn_if_float32
from jaxscale.data import validate as V
from jaxscale.infer import (
    FitResult,
    best,
    check_finite,
    huber,
    minimize_lbfgs,
    minimize_newton,
    multistart,
)
from jaxscale.laws import (
    ChinchillaParams,
    chinchilla_log_lse,
    chinchilla_theta_to_params,
)

__all__ = [
    "ChinchillaData",
    "ChinchillaFit",
    "prepare",
    "start_grid",
    "huber_objective",
    "fit",
    "bootstrap",
    "bayes_model",
    "fit_bayes",
    "params_dict",
]

HUBER_DELTA = 1e-3
#: Line-search trials per screening step: a vmapped line search runs as many trials as its
#: slowest member, so a short cap keeps 4,500 starts cheap; polishing uses the full 30.
SCREEN_LINESEARCH_STEPS = 4


class ChinchillaData(NamedTuple):
    """Fitting arrays: natural logs of N, D and loss, plus per-point weights."""

    log_N: jnp.ndarray
    log_D: jnp.ndarray
    log_loss: jnp.ndarray
    weights: jnp.ndarray


class ChinchillaFit(NamedTuple):
    """Best fit plus the spread of the multi-start and the optional bootstrap."""

    params: ChinchillaParams
    theta: jnp.ndarray
    objective: float
    converged: bool
    reason: int
    n_starts: int
    n_converged: int
    n_points: int
    excluded_rows: tuple


def prepare(df: pd.DataFrame, exclude_top_loss: int = 5, what: str = "runs") -> tuple[ChinchillaData, tuple]:
    """Validate an ``(N, D, loss)`` table and build :class:`ChinchillaData`.

    Args:
      df: columns ``N``, ``D``, ``loss`` (positive, finite, unique (N, D) pairs).
      exclude_top_loss: drop this many highest-loss rows (Epoch drops 5), reported back.

    Returns:
      ``(data, excluded_row_labels)``.
    """
    V.require_columns(df, ["N", "D", "loss"], what)
    V.check_positive(df, ["N", "D", "loss"], what)
    V.check_unique(df, ["N", "D"], what)
    V.check_min_distinct(df, "N", 2, what, "alpha needs at least two model sizes")
    V.check_min_distinct(df, "D", 2, what, "beta needs at least two token counts")
    if len(df) - exclude_top_loss < 6:
        raise ValueError(
            f"{what}: {len(df)} rows minus {exclude_top_loss} excluded leaves fewer than 6 points "
            "for 5 parameters; add runs or set exclude_top_loss=0"
        )
    order = df["loss"].to_numpy().argsort(kind="stable")
    keep = np.sort(order[: len(df) - exclude_top_loss])
    excluded = tuple(df.index[np.sort(order[len(df) - exclude_top_loss :])].tolist())
    sub = df.iloc[keep]
    warn_if_float32("Chinchilla fit")
    f = jnp.result_type(float)
    data = ChinchillaData(
        jnp.log(jnp.asarray(sub["N"].to_numpy(float), f)),
        jnp.log(jnp.asarray(sub["D"].to_numpy(float), f)),
        jnp.log(jnp.asarray(sub["loss"].to_numpy(float), f)),
        jnp.ones(len(sub), f),
    )
    return data, excluded


def start_grid() -> jnp.ndarray:
    """The 4,500 starts ``(a, b, e, alpha, beta)`` of Hoffmann et al. / Epoch."""
    alphas = np.arange(0.0, 2.5, 0.5)
    es = np.arange(-1.0, 1.5, 0.5)
    abs_ = np.arange(0.0, 30.0, 5.0)
    grid = [(a, b, e, al, be) for a, b, e, al, be in itertools.product(abs_, abs_, es, alphas, alphas)]
    return jnp.asarray(np.array(grid, dtype=float), dtype=jnp.result_type(float))


def huber_objective(theta, data: ChinchillaData, delta: float = HUBER_DELTA):
    """Weighted sum of Huber losses of log-loss residuals (Epoch's objective)."""
    pred = chinchilla_log_lse(theta, data.log_N, data.log_D)
    return jnp.sum(data.weights * huber(pred - data.log_loss, delta))


def _screen_and_polish(starts, data, screen_steps, polish_top, max_steps):
    """Run every start for ``screen_steps`` L-BFGS iterations, then polish the best ones.

    Under ``vmap`` a batched L-BFGS runs until its slowest member stops, so running all
    4,500 starts to full convergence wastes most of the work on starts that end in poor
    basins. Screening all of them briefly and polishing the ``polish_top`` lowest to
    convergence finds the same optimum (checked in the tests) at a fraction of the cost.
    """
    screened = multistart(minimize_lbfgs, huber_objective, starts, data,
                          max_steps=screen_steps, tol=1e-10, ftol=0.0,
                          max_linesearch_steps=SCREEN_LINESEARCH_STEPS)
    loss = jnp.where(jnp.isfinite(screened.loss), screened.loss, jnp.inf)
    top = jnp.argsort(loss)[:polish_top]
    polished = multistart(minimize_lbfgs, huber_objective, screened.params[top], data,
                          max_steps=max_steps, tol=1e-10, ftol=1e-13)
    return screened, polished


_fit_all_jit = jax.jit(_screen_and_polish, static_argnames=("screen_steps", "polish_top", "max_steps"))


def fit(df: pd.DataFrame, exclude_top_loss: int = 5, starts=None, screen_steps: int = 30,
        polish_top: int = 32, max_steps: int = 1000) -> ChinchillaFit:
    """Fit Chinchilla by Epoch's method: every grid start by L-BFGS in one compiled program.

    Args:
      df: columns ``N``, ``D``, ``loss``.
      exclude_top_loss: highest-loss rows left out (Epoch: 5).
      starts: ``(n, 5)`` starts ``(a, b, e, alpha, beta)``; default :func:`start_grid`.
      screen_steps: L-BFGS iterations given to every start.
      polish_top: how many of the best screened starts are run to convergence.
      max_steps: iteration cap of the polishing run.

    Example:
      >>> from jaxscale.data import load
      >>> r = fit(load("epoch_chinchilla"))  # doctest: +SKIP
      >>> round(float(r.params.E), 2)  # doctest: +SKIP
      1.82
    """
    data, excluded = prepare(df, exclude_top_loss)
    starts = start_grid() if starts is None else jnp.asarray(starts)
    polish_top = min(polish_top, int(starts.shape[0]))
    screened, res = _fit_all_jit(starts, data, screen_steps, polish_top, max_steps)
    check_finite(screened, "Chinchilla multi-start fit (screening)", policy="warn")
    ok = check_finite(res, "Chinchilla multi-start fit (polishing)", policy="warn")
    top: FitResult = best(res, mask=ok)
    return ChinchillaFit(
        params=chinchilla_theta_to_params(top.params),
        theta=top.params,
        objective=float(top.loss),
        converged=bool(top.converged),
        reason=int(top.reason),
        n_starts=int(starts.shape[0]),
        n_converged=int(np.asarray(res.converged).sum()),
        n_points=int(data.log_N.shape[0]),
        excluded_rows=excluded,
    )


def _bootstrap_all(keys, theta0, data, steps):
    n = data.log_N.shape[0]

    def one(key):
        counts = jnp.bincount(jax.random.randint(key, (n,), 0, n), length=n)
        d = data._replace(weights=counts.astype(data.weights.dtype))
        return minimize_newton(huber_objective, theta0, d, steps=steps, tol=1e-10)

    return jax.vmap(one)(keys)


_bootstrap_jit = jax.jit(_bootstrap_all, static_argnames=("steps",))


def bootstrap(key, df: pd.DataFrame, n_boot: int = 4000, exclude_top_loss: int = 5,
              theta0=None, steps: int = 60):
    """Bootstrap refits (rows resampled with replacement as integer weights), all ``vmap``ped.

    Each refit starts from the full-data optimum ``theta0`` (Epoch refit from the best start)
    and runs ``steps`` damped-Newton iterations (:func:`jaxscale.infer.minimize_newton`, a
    fixed-length scan: no batch waits for its slowest member). Against the earlier L-BFGS refits
    (relative-change stop) Newton reached a lower objective on 3917 of 3938 refits of the Epoch
    data and ran 14x faster (benchmarks/bench_chinchilla.py).

    Returns:
      dict ``name -> np.ndarray`` for ``E, A, B, alpha, beta`` over the converged refits, and
      ``n_excluded`` (non-finite or non-converged refits, excluded with a warning).
    """
    data, _ = prepare(df, exclude_top_loss)
    if theta0 is None:
        theta0 = fit(df, exclude_top_loss).theta
    res = _bootstrap_jit(jax.random.split(key, n_boot), jnp.asarray(theta0), data, steps)
    ok = check_finite(res, "Chinchilla bootstrap", policy="warn")
    conv = np.asarray(res.converged)
    if (ok & ~conv).any():
        bad = np.flatnonzero(ok & ~conv)
        warnings.warn(
            f"Chinchilla bootstrap: {bad.size} of {n_boot} refits did not reach a gradient norm of "
            f"1e-10 within {steps} Newton steps (first: {bad[:5].tolist()}); they are excluded from "
            "the intervals. Raise steps to keep them.",
            RuntimeWarning,
            stacklevel=2,
        )
    keep = ok & conv
    p = chinchilla_theta_to_params(res.params)
    out = {k: np.asarray(v)[keep] for k, v in params_dict(p).items()}
    out["n_excluded"] = int(n_boot - keep.sum())
    return out


def params_dict(p: ChinchillaParams) -> dict:
    """``ChinchillaParams`` -> plain dict of arrays/floats keyed E, A, B, alpha, beta."""
    return {"E": p.E, "A": p.A, "B": p.B, "alpha": p.alpha, "beta": p.beta}


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


def fit_bayes(key, df: pd.DataFrame, exclude_top_loss: int = 5, num_warmup: int = 500,
              num_samples: int = 500, num_chains: int = 4):
    """NUTS posterior of Chinchilla on the same data and law as :func:`fit`."""
    from jaxscale.infer import run_nuts

    data, _ = prepare(df, exclude_top_loss)
    return run_nuts(
        key, bayes_model, data.log_N, data.log_D, data.log_loss,
        num_warmup=num_warmup, num_samples=num_samples, num_chains=num_chains,
    )
