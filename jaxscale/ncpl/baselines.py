"""Baselines on the NCPL splits: the ``chinchilla_ncpl`` column, a Chinchilla refit, XGBoost.

All predictions are on the loss scale. XGBoost predicts the residual over ``chinchilla_ncpl``
from engineered config features (the recipe of ``shared/docs/ncpl.md`` §8.1) and is trained per
source on the official TRAIN rows only.
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from jaxscale.ncpl.dataset import SOURCES, regression_metrics, select

__all__ = [
    "OPTIMIZERS",
    "engineered_features",
    "chinchilla_column",
    "ChinchillaRefit",
    "fit_chinchilla_refit",
    "predict_chinchilla_refit",
    "fit_xgboost",
    "predict_xgboost",
    "evaluate_baseline",
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


class ChinchillaRefit(NamedTuple):
    E: float
    A: float
    B: float
    alpha: float
    beta: float


def _refit_loss(theta, log_n, log_d, log_y):
    from jaxscale.laws import chinchilla_log_lse

    return jnp.mean(jnp.square(chinchilla_log_lse(theta, log_n, log_d) - log_y))


def fit_chinchilla_refit(df: pd.DataFrame) -> ChinchillaRefit:
    """Least squares on log L of ``E + A N^-a + B D^-b`` (N millions, D billions), grid of starts."""
    from jaxscale.infer import best, minimize_lbfgs, multistart

    if len(df) < 5:
        raise ValueError(f"Chinchilla refit needs >= 5 runs, got {len(df)}")
    x64 = jax.config.read("jax_enable_x64")
    dt = jnp.float64 if x64 else jnp.float32
    log_n = jnp.log(jnp.asarray(df["N_million"].to_numpy(float), dt))
    log_d = jnp.log(jnp.asarray(df["D_billion"].to_numpy(float), dt))
    log_y = jnp.log(jnp.asarray(df["final_loss"].to_numpy(float), dt))
    grid = np.array(np.meshgrid([0.0, 1.5, 3.0], [-1.0, 0.5], [0.0, 0.8], [0.2, 0.5], [0.2, 0.5])).reshape(5, -1).T
    # columns of theta: (a, b, e, alpha, beta)
    x0 = jnp.asarray(grid[:, [0, 1, 2, 3, 4]], dt)
    res = multistart(minimize_lbfgs, _refit_loss, x0, log_n, log_d, log_y, max_steps=300)
    r = best(res)
    th = np.asarray(r.params, float)
    return ChinchillaRefit(E=float(np.exp(th[2])), A=float(np.exp(th[0])), B=float(np.exp(th[1])),
                           alpha=float(th[3]), beta=float(th[4]))


def predict_chinchilla_refit(p: ChinchillaRefit, df: pd.DataFrame) -> np.ndarray:
    n, d = df["N_million"].to_numpy(float), df["D_billion"].to_numpy(float)
    return p.E + p.A * n ** (-p.alpha) + p.B * d ** (-p.beta)


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
