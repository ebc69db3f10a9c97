"""Baselines on the NCPL splits: the ``chinchilla_ncpl`` column, a Chinchilla refit, XGBoost.

All predictions are on the loss scale. XGBoost predicts the residual over ``chinchilla_ncpl``
from engineered config features (log10 of the learning rates and eps, the other optimiser and
shape settings, warm-up fraction, log10 N, D and tokens per step, the Chinchilla value, schedule,
source and optimizer indicators; NaN kept as missing) and is trained per source on the official
TRAIN rows only (600 trees, depth 6, eta 0.03, subsample and column subsample 0.8).
:func:`fit_chinchilla_law` fits the Chinchilla law on any runs (the user's training rows);
:func:`nearest_run` is the sceptic's first guess on any run table: the loss of the most similar
training run.
"""
from __future__ import annotations

import warnings
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from jaxscale import _programs as programs
from jaxscale.infer import bucket, minimize_lbfgs, multistart, reason_text
from jaxscale.laws import (ChinchillaParams, chinchilla, chinchilla_admissible, chinchilla_log_lse,
                          chinchilla_sqrt_exponents, chinchilla_squared_exponents, chinchilla_theta_to_params)
from jaxscale.ncpl.dataset import SOURCES, regression_metrics, select

__all__ = [
    "OPTIMIZERS",
    "engineered_features",
    "chinchilla_column",
    "LawFit",
    "fit_chinchilla_law",
    "fit_chinchilla_law_info",
    "law_band",
    "band_predictions",
    "fit_chinchilla_refit",
    "predict_chinchilla_refit",
    "fit_xgboost",
    "predict_xgboost",
    "evaluate_baseline",
    "nearest_run",
]

OPTIMIZERS = ("adamw", "cautious", "kron", "lion", "mars", "mini", "muon", "nadamw", "scion", "soap", "sophia")


def engineered_features(df: pd.DataFrame) -> pd.DataFrame:
    """Tree features of a run table (NaN kept as missing)."""
    f = pd.DataFrame(index=df.index)
    for c in ("lr", "adam_lr", "preconditioner_lr", "eps"):
        f[f"log10_{c}"] = np.log10(df[c].astype(float).where(df[c] > 0))
    for c in ("weight_decay", "beta1", "beta2", "grad_clip", "warmup_steps", "total_steps",
              "final_lr_ratio", "n_layers", "d_model", "n_heads", "d_ff", "batch_seqs", "seq_len"):
        f[c] = df[c].astype(float)
    f["warmup_frac"] = df["warmup_steps"] / df["total_steps"].clip(lower=1)
    f["log10_N"] = np.log10(df["N_million"])
    f["log10_D"] = np.log10(df["D_billion"])
    f["log10_tokens_per_step"] = np.log10(df["batch_seqs"] * df["seq_len"])
    f["chinchilla"] = df["chinchilla_ncpl"]
    f["linear_schedule"] = (df["lr_schedule"] == "linear").astype(float)
    f["is_steplaw"] = (df["source"] == "steplaw").astype(float)
    for o in OPTIMIZERS:
        f[f"opt_{o}"] = (df["optimizer"] == o).astype(float)
    return f


def chinchilla_column(df: pd.DataFrame) -> np.ndarray:
    """NCPL's per-source Chinchilla law, as given in the data."""
    return df["chinchilla_ncpl"].to_numpy(float)


def _refit_loss(theta, log_n, log_d, log_y, w, within=0.0):
    """Mean squared log error over the rows; ``within`` adds a constant (see :func:`_grouped`)."""
    return jnp.sum(w * jnp.square(chinchilla_log_lse(theta, log_n, log_d) - log_y)) / jnp.sum(w) + within


def _refit_loss_nonneg(v, log_n, log_d, log_y, w, within=0.0):
    return _refit_loss(chinchilla_squared_exponents(v), log_n, log_d, log_y, w, within)


def _fit_starts(x0, log_n, log_d, log_y, w, within, max_steps, nonneg=False):
    """Every start of the law fit to its own stop (rows padded with weight 0, so tables whose
    lengths share a bucket reuse one compiled program, kept on disk between processes by
    :mod:`jaxscale._programs`). The starts need from tens to thousands of steps, hence ``uneven``.
    ``nonneg``: the exponents are the squares of the last two entries
    (:func:`jaxscale.laws.chinchilla_squared_exponents`)."""
    loss = _refit_loss_nonneg if nonneg else _refit_loss
    return multistart(minimize_lbfgs, loss, x0, log_n, log_d, log_y, w, within, max_steps=max_steps, uneven=True)


def _grouped(log_n, log_d, log_y):
    """Runs that share ``(N, D)`` as one row each: ``(log_n, log_d, mean log_y, count, within)``.

    The law's value depends on ``N`` and ``D`` only, so ``sum_i (f(N_i, D_i) - y_i)^2`` over the
    runs equals ``sum_g c_g (f_g - ybar_g)^2`` over the ``(N, D)`` groups plus the groups' own
    sum of squares, which no law changes. With ``within`` = that sum over the number of runs,
    the grouped objective is the per-run mean squared log error itself, with the same gradient,
    on as many rows as distinct ``(N, D)`` (a sweep of 1,708 runs at 122 sizes and budgets fits
    on 128 rows instead of 2,048). Nothing is merged in what is reported: only the objective's
    arithmetic is grouped. The rows are sorted first, so the sums, and with them the fit, do not
    depend on the order of the runs.
    """
    order = np.lexsort((log_y, log_d, log_n))
    log_n, log_d, log_y = log_n[order], log_d[order], log_y[order]
    keys, inv, count = np.unique(np.stack([log_n, log_d], 1), axis=0, return_inverse=True, return_counts=True)
    inv = inv.reshape(-1)
    mean = np.bincount(inv, weights=log_y) / count
    within = float(np.sum(np.square(log_y - mean[inv]))) / log_y.size
    return keys[:, 0], keys[:, 1], mean, count.astype(float), within


def _raw_units(theta, n_scale: float, d_scale: float) -> np.ndarray:
    """Fits ``(..., 5)`` made in units of ``n_scale`` and ``d_scale``, in the units of N and D as
    given: ``A (N / s)^-alpha = (A s^alpha) N^-alpha``."""
    th = np.array(theta, float)
    th[..., 0] += th[..., 3] * np.log(n_scale)
    th[..., 1] += th[..., 4] * np.log(d_scale)
    return th


#: Largest ``a``, ``b``, ``e`` (natural logs of A, B, E) whose exponential is a finite float64.
_LOG_MAX = float(np.log(np.finfo(np.float64).max))


def _finite_objective(res, raw) -> np.ndarray:
    """Each start's objective where its fit is finite and representable in the units of N and D
    (``A``, ``B``, ``E`` below the float64 maximum; e.g. ``beta`` = 200 with ``B`` ~ e^3400 is not:
    the law would evaluate to NaN), +inf elsewhere."""
    obj = np.asarray(res.loss, float)
    ok = np.isfinite(obj) & np.all(np.isfinite(raw), -1) & np.all(raw[..., :3] < _LOG_MAX, -1)
    return np.where(ok, obj, np.inf)


class LawFit(NamedTuple):
    """A Chinchilla least-squares fit and whether its optimiser converged."""

    params: ChinchillaParams
    converged: bool
    reason: str
    objective: float


#: L-BFGS steps per start of the law fit (flat valleys, e.g. StepLaw's E -> 0, need many).
LAW_STEPS = 3000


def fit_chinchilla_law_info(N, D, loss, *, n_scale: float | None = None, d_scale: float | None = None,
                            max_steps: int = LAW_STEPS) -> LawFit:
    """Least squares on ``log L`` of ``L = E + A N^-alpha + B D^-beta`` from a grid of 48 starts.

    The starts (``log A`` in {0, 1.5, 3}, ``log B`` in {-1, 0.5}, ``log E`` in {0, 0.8},
    ``alpha``, ``beta`` in {0.2, 0.5}) suit ``N / n_scale`` and ``D / d_scale`` of order 1-1000; the
    returned parameters are in the units of ``N`` and ``D`` as given (``A`` and ``B`` absorb the
    scales), so ``laws.chinchilla(params, N, D)`` evaluates the law.

    Args:
      N: parameter counts (> 0; >= 5 runs).
      D: training tokens (> 0), same length.
      loss: final losses (> 0), same length.
      n_scale: unit of N the optimiser works in (default: the geometric mean of N).
      d_scale: unit of D (default: the geometric mean of D).
      max_steps: L-BFGS steps per start.

    Several starts can fit equally well (two model sizes, say, leave ``alpha`` free): the one
    nearest the median exponents of those equal fits is returned, so the answer does not depend on
    rounding or row order. Only starts that ended with both exponents >= 0
    (:func:`jaxscale.laws.chinchilla_admissible`) count; when every start ended with a negative
    exponent (a law that explodes beyond the runs; a third of small noisy tables), the starts are
    run again with the exponents kept >= 0.

    Returns:
      :class:`LawFit`: the best start's :class:`jaxscale.laws.ChinchillaParams` (float arrays),
      whether its optimiser converged, the reason, and the objective (mean squared log error).
    """
    N, D, loss = (np.asarray(a, float) for a in (N, D, loss))
    if N.size < 5:
        raise ValueError(f"a Chinchilla fit needs >= 5 runs, got {N.size}")
    for name, a in (("N", N), ("D", D), ("loss", loss)):
        if not np.all(np.isfinite(a) & (a > 0)):
            raise ValueError(f"Chinchilla fit: {name} must be finite and > 0 "
                             f"({int((~(np.isfinite(a) & (a > 0))).sum())} bad values)")
    n_scale = float(np.exp(np.mean(np.log(N)))) if n_scale is None else float(n_scale)
    d_scale = float(np.exp(np.mean(np.log(D)))) if d_scale is None else float(d_scale)
    x64 = jax.config.read("jax_enable_x64")
    dt = np.float64 if x64 else np.float32
    g_n, g_d, g_y, count, within = _grouped(np.log(N / n_scale), np.log(D / d_scale), np.log(loss))
    pad = np.zeros(bucket(count.size) - count.size)
    # NumPy arrays: programs.call moves them to the device as they are (no conversion program)
    log_n, log_d, log_y, w = (np.concatenate([a, pad]).astype(dt) for a in (g_n, g_d, g_y, count))
    within = np.asarray(within, dt)
    grid = np.array(np.meshgrid([0.0, 1.5, 3.0], [-1.0, 0.5], [0.0, 0.8], [0.2, 0.5], [0.2, 0.5])).reshape(5, -1).T
    # columns of theta: (a, b, e, alpha, beta)
    x0 = grid.astype(dt)
    res = programs.call("ncpl_chinchilla_starts", _fit_starts, (x0, log_n, log_d, log_y, w, within),
                        (max_steps, False), light=True)
    raw = _raw_units(np.asarray(res.params, float), n_scale, d_scale)
    obj = _finite_objective(res, raw)
    if not np.isfinite(obj).any():
        raise ValueError("Chinchilla fit: every start gave a non-finite objective or a law beyond the float range "
                         "in the units of N and D; check N, D and the loss")
    good = np.where(chinchilla_admissible(raw), obj, np.inf)
    if not np.isfinite(good).any():  # every start ended with a negative exponent, which explodes beyond
        # the runs: the same starts again with the exponents kept >= 0 (squares)
        x0 = chinchilla_sqrt_exponents(grid).astype(dt)
        res2 = programs.call("ncpl_chinchilla_starts", _fit_starts, (x0, log_n, log_d, log_y, w, within),
                             (max_steps, True), light=True)
        raw2 = _raw_units(chinchilla_squared_exponents(np.asarray(res2.params, float)), n_scale, d_scale)
        good2 = _finite_objective(res2, raw2)
        res, raw, good = (res2, raw2, good2) if np.isfinite(good2).any() else (res, raw, obj)
    i = _median_of_ties(good, raw)
    converged = bool(np.asarray(res.converged)[i])
    reason = reason_text(int(np.asarray(res.reason)[i]))
    params = ChinchillaParams(*(np.asarray(v, float) for v in chinchilla_theta_to_params(raw[i])))  # NumPy in, out
    return LawFit(params, converged, reason, float(good[i]))


#: Starts whose objective is within this relative distance of the best fit the runs equally well.
TIE_RTOL = 1e-9


def _median_of_ties(obj, theta) -> int:
    """Index of the start to report: the best one, or, when several starts fit equally well
    (objectives within :data:`TIE_RTOL`), the one nearest the median ``(alpha, beta)`` of those
    equal fits.

    Runs of two model sizes, for instance, fix only the loss difference between them: every
    ``alpha`` fits exactly as well, and which one the optimiser ends at depends on its start and on
    rounding (on Marin's two training sizes, equal fits put models 4x larger anywhere in an OOD
    MAE range of 0.020-0.049). The median of the equal fits does not depend on rounding; how far
    the equal fits' predictions spread is :func:`law_band`'s business.
    """
    best = float(np.min(obj))
    tied = np.flatnonzero(obj <= best + TIE_RTOL * abs(best))
    ab = theta[tied][:, 3:5]
    return int(tied[np.argmin(np.sum(np.square(ab - np.median(ab, axis=0)), axis=1))])


#: Exponent values of the profile in :func:`law_band`.
BAND_EXPONENTS = (0.03, 0.05, 0.08, 0.12, 0.17, 0.25, 0.35, 0.5, 0.7, 1.0, 1.5, 2.0)


def law_band(N, D, loss, best: LawFit, *, level: float = 0.9) -> np.ndarray:
    """The Chinchilla laws the runs cannot tell apart from the best fit: ``(K, 5)`` parameter
    vectors ``(log A, log B, log E, alpha, beta)`` in the units of ``N`` and ``D`` (the best fit first).

    A profile over a grid of exponent pairs (:data:`BAND_EXPONENTS`; for each pair ``A``, ``B``,
    ``E >= 0`` by non-negative least squares on the relative error, which is the log error to first
    order) keeps the pairs whose mean squared log error ``s`` passes the likelihood-ratio test
    ``n log(s / s_best) <= chi2_2(level)``. Runs of two model sizes, for instance, fix only the
    loss difference between them, so laws with small and large ``alpha`` pass and their predictions
    for larger models spread: the spread is the law's extrapolation uncertainty
    (:func:`band_predictions`). With many sizes and budgets the kept laws agree.

    Args:
      N: parameter counts of the fitted runs.
      D: training tokens.
      loss: final losses (> 0).
      best: the least-squares fit (:func:`fit_chinchilla_law_info`) of the same runs.
      level: level of the likelihood-ratio test.
    """
    from scipy.optimize import nnls
    from scipy.stats import chi2

    from jaxscale.laws import chinchilla_params_to_theta

    N, D, y = (np.asarray(a, float) for a in (N, D, loss))
    ln, ld = np.log(N / np.exp(np.mean(np.log(N)))), np.log(D / np.exp(np.mean(np.log(D))))
    rows = []
    for alpha in BAND_EXPONENTS:
        for beta in BAND_EXPONENTS:
            X = np.stack([np.exp(-alpha * ln), np.exp(-beta * ld), np.ones_like(ln)], 1)
            coef, _ = nnls(X / y[:, None], np.ones_like(y))
            fitted = X @ coef
            if not np.all(fitted > 0):
                continue
            s_pair = float(np.mean(np.square(np.log(fitted) - np.log(y))))
            rows.append((s_pair, np.log(np.maximum(coef, 1e-300)), alpha, beta))
    s_best = min([float(best.objective)] + [r[0] for r in rows])
    limit = chi2.ppf(level, 2)
    theta = [[c[0] + alpha * np.mean(np.log(N)), c[1] + beta * np.mean(np.log(D)), c[2], alpha, beta]
             for s_pair, c, alpha, beta in rows if N.size * np.log(s_pair / max(s_best, 1e-300)) <= limit]
    first = np.asarray(chinchilla_params_to_theta(best.params), float)[None]
    theta = np.asarray(theta, float).reshape(-1, 5)
    return np.concatenate([first, theta[np.all(np.isfinite(theta), 1)]])


def band_predictions(band, N, D) -> np.ndarray:
    """``(K, n)`` losses of every law of :func:`law_band` at ``N``, ``D`` (NumPy: compiles nothing)."""
    return np.exp(chinchilla_log_lse(np.asarray(band, float), np.log(np.asarray(N, float)),
                                     np.log(np.asarray(D, float)), xp=np))


def fit_chinchilla_law(N, D, loss, *, n_scale: float | None = None, d_scale: float | None = None,
                       what: str = "Chinchilla law") -> ChinchillaParams:
    """:func:`fit_chinchilla_law_info`'s parameters; warns (``RuntimeWarning``, naming ``what``)
    when the optimiser did not converge.

    Args:
      N: parameter counts (> 0; >= 5 runs).
      D: training tokens (> 0), same length.
      loss: final losses (> 0), same length.
      n_scale: unit of N the optimiser works in (default: the geometric mean of N).
      d_scale: unit of D (default: the geometric mean of D).
      what: the fit's name in the warning.
    """
    res = fit_chinchilla_law_info(N, D, loss, n_scale=n_scale, d_scale=d_scale)
    if not res.converged:
        warnings.warn(f"{what}: the least-squares fit did not converge ({res.reason}) within {LAW_STEPS} L-BFGS "
                      "steps; its parameters may be off (runs spanning too few sizes or budgets?)",
                      RuntimeWarning, stacklevel=2)
    return res.params


def fit_chinchilla_refit(df: pd.DataFrame) -> ChinchillaParams:
    """The law refitted on the runs of ``df`` (``N_million``, ``D_billion``, ``final_loss``)."""
    return fit_chinchilla_law(df["N_million"], df["D_billion"], df["final_loss"], n_scale=1.0, d_scale=1.0,
                              what="Chinchilla refit")


def predict_chinchilla_refit(p: ChinchillaParams, df: pd.DataFrame) -> np.ndarray:
    """The refitted law at the runs of ``df`` (``N_million``, ``D_billion``), on the host."""
    return chinchilla(p, df["N_million"].to_numpy(float), df["D_billion"].to_numpy(float), xp=np)


XGB_PARAMS = dict(max_depth=6, eta=0.03, subsample=0.8, colsample_bytree=0.8, objective="reg:squarederror",
                  nthread=1, tree_method="hist")


def fit_xgboost(df: pd.DataFrame, seed: int = 0, n_trees: int = 600, params: dict | None = None):
    """XGBoost (native API) on engineered features predicting ``residual_ncpl``."""
    import xgboost as xgb

    if len(df) == 0:
        raise ValueError("fit_xgboost: empty training table")
    p = dict(XGB_PARAMS, seed=seed, **(params or {}))
    dtrain = xgb.DMatrix(engineered_features(df), label=df["residual_ncpl"].to_numpy(float))
    return xgb.train(p, dtrain, num_boost_round=n_trees)


def predict_xgboost(booster, df: pd.DataFrame) -> np.ndarray:
    import xgboost as xgb

    return df["chinchilla_ncpl"].to_numpy(float) + booster.predict(xgb.DMatrix(engineered_features(df)))


def evaluate_baseline(df: pd.DataFrame, model: str, source: str, split: str, seed: int = 0) -> dict:
    """Fit ``model`` (chinchilla | chinchilla_refit | xgboost) on TRAIN of ``source``; metrics on ``split``."""
    if source not in SOURCES:
        raise ValueError(f"source must be one of {SOURCES}, got {source!r}")
    train, test = select(df, source, "train"), select(df, source, split)
    if model == "chinchilla":
        pred = chinchilla_column(test)
    elif model == "chinchilla_refit":
        pred = predict_chinchilla_refit(fit_chinchilla_refit(train), test)
    elif model == "xgboost":
        pred = predict_xgboost(fit_xgboost(train, seed=seed), test)
    else:
        raise ValueError(f"unknown baseline {model!r}; use chinchilla, chinchilla_refit or xgboost")
    out = regression_metrics(test["final_loss"], pred)
    out.update(model=model, source=source, split=split)
    return out


def nearest_run(train: pd.DataFrame, query: pd.DataFrame, y_train, num_cols, num_log, text_cols=(),
                log_cols=()) -> np.ndarray:
    """The target of the training run nearest to each query run in its configuration.

    Numeric columns (``num_cols``, log10 where ``num_log`` says so; ``log_cols``, e.g. N and D,
    always log10) are standardised over the training runs, a missing value sits at the training
    mean; every differing text value (``text_cols``; an empty cell counts as a value) adds 1 to the
    squared distance. Euclidean
    nearest neighbour (one KD-tree query per row; ties go to either run).

    Returns:
      ``(len(query),)`` the nearest training run's ``y_train``.
    """
    from scipy.spatial import cKDTree

    specs = [(c, bool(lg)) for c, lg in zip(num_cols, num_log)] + [(c, True) for c in log_cols]

    def numeric(df):
        cols = []
        for c, lg in specs:
            v = pd.to_numeric(df[c], errors="coerce").to_numpy(float)
            with np.errstate(divide="ignore", invalid="ignore"):
                cols.append(np.where(v > 0, np.log10(np.where(v > 0, v, 1.0)), np.nan) if lg else v)
        return np.stack(cols, 1) if cols else np.zeros((len(df), 0))

    xt, xq = numeric(train), numeric(query)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a column empty in training
        mu, sd = np.nanmean(xt, 0), np.nanstd(xt, 0)
    mu, sd = np.nan_to_num(mu), np.where(np.isfinite(sd) & (sd > 0), sd, 1.0)
    zt, zq = (np.nan_to_num((x - mu) / sd) for x in (xt, xq))
    for c in text_cols:  # one coordinate per value, 1/sqrt(2) apart from 0: a different value adds 1
        # an empty cell is a value of its own ("\0" sorts with the texts, which NaN does not)
        words = [np.asarray(df[c].astype(object).where(df[c].notna(), "\0").astype(str), dtype=object)
                 for df in (train, query)]
        values = np.unique(np.concatenate(words))
        zt, zq = (np.concatenate([z, (w[:, None] == values[None, :]) / np.sqrt(2.0)], 1)
                  for z, w in ((zt, words[0]), (zq, words[1])))
    if zt.shape[1] == 0:
        return np.full(len(query), float(np.mean(np.asarray(y_train, float))))
    _, idx = cKDTree(zt).query(zq, k=1)
    return np.asarray(y_train, float)[np.asarray(idx)]
