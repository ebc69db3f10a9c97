r"""Predictions of a fitted Chinchilla law: the loss of new runs, and compute-optimal allocations.

**Loss of a run** (:func:`predict`). The point prediction is the law at the fit. The interval is
a *prediction* interval for a new run, in log-loss space:

* with bootstrap refits (``Spec(n_boot=...)``): each refit's law plus residual noise
  :math:`\varepsilon \sim N(0, \sigma^2)` (draws when a key is given, otherwise a normal with the
  bootstrap variance plus :math:`\sigma^2`);
* without refits: the residual noise and the law's own uncertainty by the linear approximation at
  the fit (``ChinchillaFit.theta_cov``: the variance of the law's log loss at the query is
  :math:`g^T \Sigma g`, ``g`` its gradient in ``theta``), with Student-t quantiles on the fit's
  ``n - 5`` degrees of freedom. It grows as the query leaves the training runs; refits measure it
  without the linear approximation (a fit saved before ``theta_cov`` existed has residual noise
  only).

Either way the noise scale grows outside the training runs: ``sigma (1 + kappa d)`` at ``d``
decades of N, D or compute beyond them, ``kappa`` learnt by a backtest inside the training runs
(``ChinchillaFit.kappa``; 0 when that backtest found no growth or could not run).

**Compute-optimal allocation** (:func:`optimal`). Minimising :math:`L(N, D)` subject to
:math:`6ND = C` gives :math:`N^* = G (C/6)^{\beta/(\alpha+\beta)}`,
:math:`D^* = G^{-1} (C/6)^{\alpha/(\alpha+\beta)}` with
:math:`G = (\alpha A / (\beta B))^{1/(\alpha+\beta)}`; intervals come from the bootstrap refits.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import jax
import jax.numpy as jnp

from jaxscale.chinchilla.fit import (ChinchillaData, ChinchillaFit, _box_distance, _device, _log_loss, from_frame,
                                     log_loss_jacobian)
from jaxscale._log import get_logger
from jaxscale.laws.power import chinchilla_optimal as optimal_allocation
from jaxscale.infer.prediction import Prediction, check_fit, check_key, check_level, warn_extrapolation, z_value

__all__ = ["predict", "optimal", "optimal_allocation", "as_data", "extrapolation", "power_law_baseline"]

#: Fewest predictive draws with bootstrap refits: with fewer refits they are used in turn, each
#: draw with its own residual noise, so the quantiles of a handful of refits are not degenerate.
MIN_DRAWS = 1000
#: Most predictive values (draws x rows) held at once: beyond it (e.g. 1,000 draws x 200,000 rows,
#: 1.6 GB) the rows are predicted in chunks and the draws are not returned (``samples`` is None).
MAX_DRAW_CELLS = 20_000_000


def as_data(fit: ChinchillaFit, query) -> ChinchillaData:
    """``query`` as :class:`ChinchillaData`: a data object as is, a DataFrame read with the fit's
    N and D column names (a prediction reads nothing else: a loss column may be there, with gaps)."""
    if isinstance(query, ChinchillaData):
        return query
    if isinstance(query, pd.DataFrame):
        cols = dict(fit.columns)
        return from_frame(query, n_col=cols["N"], d_col=cols["D"], loss_col=None, what="query")
    raise TypeError(f"query must be ChinchillaData or a pandas DataFrame, got {type(query).__name__}")


def extrapolation(fit: ChinchillaFit, data: ChinchillaData):
    """Distance of each query outside the training data, in **decades**: the largest of how far
    its N, D and C = 6ND lie beyond the range of the fitted runs (below the smallest or above the
    largest), 0 inside. A query at 10x the largest training compute has distance 1."""
    if fit.log_range is None:
        return None
    return _device(_box_distance(np.asarray(fit.log_range, float), data, xp=np))


def power_law_baseline(train: ChinchillaData, query: ChinchillaData, level: float = 0.9) -> Prediction:
    """The baseline a sceptic tries first: a pure power law in compute, ``L = a C^-b``, fitted by
    least squares on log L vs log C of the training rows (weight > 0), with a Student-t interval
    from its residuals."""
    w = np.asarray(train.weights) > 0
    x = (np.asarray(train.log_N) + np.asarray(train.log_D))[w]  # on the host: no device program
    y = np.asarray(train.log_loss)[w]
    X = np.stack([np.ones_like(x), x], 1)
    coef, *_ = np.linalg.lstsq(X, y, rcond=None)
    dof = max(len(x) - 2, 1)
    sigma = float(np.sqrt(np.sum((X @ coef - y) ** 2) / dof))
    mu = coef[0] + coef[1] * (np.asarray(query.log_N) + np.asarray(query.log_D))
    t = _t_value(level, dof)
    return Prediction(np.exp(mu), np.exp(mu - t * sigma), np.exp(mu + t * sigma))


def _t_value(level: float, dof: int) -> float:
    from scipy.stats import t

    return float(t.ppf(0.5 + level / 2.0, max(int(dof), 1)))


def predict(fit: ChinchillaFit, query, *, key=None, level: float = 0.9, n_samples: int | None = None) -> Prediction:
    """Loss of the query runs with a central ``level`` prediction interval.

    Args:
      fit: a :class:`ChinchillaFit`.
      query: :class:`ChinchillaData` or a DataFrame with the fit's N and D columns.
      key: with bootstrap refits, draw ``samples`` (each refit's law plus residual noise; the
        refits in turn until there are at least :data:`MIN_DRAWS`; more than
        :data:`MAX_DRAW_CELLS` values: the interval from draws in chunks of rows, no ``samples``)
        and take the interval from their quantiles. Without a key the interval is the normal
        approximation ``mean +- z sqrt(var of the refits' laws + residual variance)``: deterministic,
        and a little different where the refits' spread is skewed (the CLI passes a key).
      level: interval level.
      n_samples: unused unless there are no refits: then ``key`` draws this many residual-noise
        samples around the law (default: none).

    Returns:
      :class:`~jaxscale.Prediction` in loss units; ``samples`` is ``(S, n)`` or ``None``;
      ``extrapolation`` in decades outside the training runs (see :func:`extrapolation`, warned
      when any query lies outside).
    """
    check_fit(fit, ChinchillaFit, "jaxscale.chinchilla")
    key = check_key(key, "Chinchilla predict: key", optional=True)
    level = check_level(level)
    data = as_data(fit, query)
    pred = _predict(fit, data, key, level, n_samples)
    dist = extrapolation(fit, data)
    if dist is not None:
        refits = fit.boot_theta is not None and len(fit.boot_theta)
        k = 0.0 if fit.kappa is None else float(fit.kappa)
        grows = (f"the residual noise, widened with the distance (x (1 + {k:.3g} d), learnt by a backtest inside the "
                 "training runs)," if k > 0 else "the residual noise")
        law = ("and the law's own uncertainty by a linear approximation at the fit (it grows with the distance); "
               "bootstrap refits measure that without the approximation" if fit.theta_cov is not None else
               "and leaves out the law's own uncertainty (a model saved by an older jaxscale), which grows with the "
               "distance too: fit again, or with bootstrap refits")
        note = "" if refits else (f"this fit has no bootstrap refits, so the interval holds {grows} {law} "
                                  "(Spec(n_boot=200); CLI: --bootstrap 200)")
        warn_extrapolation("Chinchilla predict", dist, "decades of N, D or compute outside the training runs",
                           threshold=0.0, stacklevel=3, note=note)
    return pred._replace(extrapolation=dist)


def _predict(fit: ChinchillaFit, data: ChinchillaData, key, level: float, n_samples) -> Prediction:
    # on the host (NumPy): eager device code would compile a small program per operation; only the
    # random draws come from JAX (the key's stream)
    dtype = jnp.result_type(float)
    ln, ld = np.asarray(data.log_N, float), np.asarray(data.log_D, float)
    mu = _log_loss(fit.theta, ln, ld)
    sigma = float(fit.sigma)
    if fit.kappa is not None and fit.log_range is not None:  # noise grows with the distance outside
        sigma = sigma * (1.0 + float(fit.kappa) * _box_distance(np.asarray(fit.log_range, float), data, xp=np))

    def out(mean, lower, upper, samples=None):
        return Prediction(*(None if a is None else _device(a) for a in (mean, lower, upper, samples)))

    if fit.boot_theta is not None and len(fit.boot_theta):
        boot = np.asarray(fit.boot_theta, float)
        # at least MIN_DRAWS draws with a key: the refits in turn, each with its own noise
        reps = -(-MIN_DRAWS // len(boot)) if key is not None else 1
        n, n_draws = mu.shape[0], len(boot) * reps
        keep = n_draws * n <= MAX_DRAW_CELLS  # else the rows go in chunks (memory) and no draws are kept
        if not keep and key is not None:
            get_logger(__name__).info(
                "Chinchilla predict: %d draws x %d rows are more than %d values: the interval is computed in chunks "
                "of rows and the draws are not returned (predict fewer rows at a time to get them)",
                n_draws, n, MAX_DRAW_CELLS)
        chunk = n if keep else max(1, MAX_DRAW_CELLS // n_draws)
        sig = np.broadcast_to(sigma, mu.shape)
        lower, upper, draws, z = np.empty(n), np.empty(n), None, z_value(level)
        for i, start in enumerate(range(0, n, chunk)):  # chunks of rows, not a loop over draws
            rows = slice(start, start + chunk)
            mu_b = _log_loss(boot, ln[rows], ld[rows])
            if key is not None:
                mu_b = np.tile(mu_b, (reps, 1))
                k = key if keep else jax.random.fold_in(key, i)
                draws = np.exp(mu_b + sig[rows] * np.asarray(jax.random.normal(k, mu_b.shape, dtype), float))
                lower[rows], upper[rows] = np.quantile(draws, [(1 - level) / 2, (1 + level) / 2], axis=0)
            else:
                sd = np.sqrt(np.var(mu_b, axis=0) + sig[rows] ** 2)
                lower[rows], upper[rows] = np.exp(mu[rows] - z * sd), np.exp(mu[rows] + z * sd)
        return out(np.exp(mu), lower, upper, draws if keep else None)
    t = _t_value(level, int(fit.dof))
    sd = np.broadcast_to(sigma, mu.shape)
    if fit.theta_cov is not None:  # the law's own uncertainty, linearised at the fit
        g = log_loss_jacobian(fit.theta, ln, ld)
        sd = np.sqrt(sd**2 + np.maximum(np.einsum("ni,ij,nj->n", g, np.asarray(fit.theta_cov, float), g), 0.0))
    samples = None
    if key is not None and n_samples:
        eps = np.asarray(jax.random.t(key, max(int(fit.dof), 1), (n_samples, mu.shape[0]), dtype), float)
        samples = np.exp(mu + sd * eps)
    return out(np.exp(mu), np.exp(mu - t * sd), np.exp(mu + t * sd), samples)


def optimal(fit: ChinchillaFit, compute, *, level: float = 0.9) -> dict:
    """Compute-optimal model size, tokens and loss at each budget, with ``level`` intervals.

    Args:
      fit: a :class:`ChinchillaFit`; intervals need bootstrap refits (``Spec(n_boot=...)``).
      compute: budgets in FLOPs (``C = 6 N D``).

    Returns:
      ``{"compute", "N", "D", "loss", "extrapolation"}``: each of ``N``, ``D``, ``loss`` a
      :class:`~jaxscale.Prediction` (mean = the fit's optimum). The loss interval adds residual
      noise (the loss a new run at the optimum would reach). Without refits, ``N``/``D`` intervals
      are NaN and the loss interval is residual noise only. ``extrapolation``: how far each optimum
      ``(N, D)`` lies outside the training runs, in decades (:func:`extrapolation`; None for a fit
      saved without its training range), warned when any lies outside.
    """
    level = check_level(level)
    # on the host (NumPy): eager device code would compile a small program per operation
    compute = np.atleast_1d(np.asarray(compute, dtype=float))
    if not np.all(compute > 0):
        raise ValueError(f"compute budgets must be > 0 FLOPs, got {compute.tolist()}")
    n, d, loss = optimal_allocation(np.asarray(fit.theta, float), compute)
    sigma = float(fit.sigma)
    at = ChinchillaData(np.log(n), np.log(d), np.full_like(n, np.nan), np.ones_like(n), columns=fit.columns)
    dist = extrapolation(fit, at)
    if dist is not None:
        warn_extrapolation("Chinchilla optimal", np.asarray(dist), "decades of N, D or compute outside the training "
                           "runs (the optimum's N and D)", threshold=0.0, stacklevel=2)
    if fit.kappa is not None and fit.log_range is not None:  # noise grows outside the training box
        sigma = sigma * (1.0 + float(fit.kappa) * _box_distance(np.asarray(fit.log_range, float), at, xp=np))
    qs = [(1 - level) / 2, (1 + level) / 2]

    def pred(mean, lower, upper, samples=None):
        return Prediction(*(None if a is None else _device(a) for a in (mean, lower, upper, samples)))

    if fit.boot_theta is not None and len(fit.boot_theta):
        nb, db, lb = optimal_allocation(np.asarray(fit.boot_theta, float)[:, None, :], compute)  # (B, n) each
        qn, qd = np.quantile(nb, qs, axis=0), np.quantile(db, qs, axis=0)
        sd = np.sqrt(np.var(np.log(lb), axis=0) + sigma**2)
        z = z_value(level)
        return {"compute": _device(compute), "N": pred(n, qn[0], qn[1], nb), "D": pred(d, qd[0], qd[1], db),
                "loss": pred(loss, loss * np.exp(-z * sd), loss * np.exp(z * sd), lb), "extrapolation": dist}
    t = _t_value(level, int(fit.dof))
    nan = np.full_like(n, np.nan)
    return {"compute": _device(compute), "N": pred(n, nan, nan), "D": pred(d, nan, nan),
            "loss": pred(loss, loss * np.exp(-t * sigma), loss * np.exp(t * sigma)), "extrapolation": dist}
