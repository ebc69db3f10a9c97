"""Family compute efficiency as a hierarchical model (paper Eq. 4 and §3.4).

For model ``m`` of family ``f`` with training compute ``C_m`` (FLOPs, units of 1E21) and capability
``P_m`` (PC-1 of the benchmark table, or a fitted law's capability ``P = α + β·S``)::

    P_m ~ N(θ_f log10 C_m + ν_f, σ_f²)

with θ_f, ν_f, log σ_f partially pooled across families (non-centred, vectorised over families).
Sampling works in standardised units: ``y = (P - P̄)/s_P`` and ``x = log10 C - x0``; the pooled
intercept is the family's level at ``x0`` (``x0="mean"``: mean observed log10 C, which decorrelates
slope and intercept; ``x0=0.0`` pools ν_f itself, the literal Eq. 4). Reported ``theta``/``nu`` are
in the original units (P per decade of FLOPs; P at C = 1E21). Models without FLOPs may enter with a
latent log10 C (``allow_missing_flops=True``).

The pooled reference line replaces the 3-point OLS of :func:`fit.fequiv_axis`: the
reference-equivalent log10 FLOPs of a capability ``P`` is ``x = (P - ν_ref)/θ_ref``, per draw.
"""
from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp
import numpy as np
import pandas as pd

from jaxscale.data import validate

from . import data as _data

__all__ = [
    "FamilyData",
    "FamilyFit",
    "family_data",
    "pc1_table",
    "law_table",
    "within_family_ols",
    "family_model",
    "fit_family",
    "fequiv_flops_draws",
    "fequiv_flops_predictive",
    "interval_summary",
    "family_efficiency_table",
    "PROBS",
]

PROBS = (0.05, 0.5, 0.95)  # 90% interval and median


class FamilyData(NamedTuple):
    """Arrays of one family fit (host numpy). ``logC`` is NaN where FLOPs are latent."""

    P: np.ndarray  # (M,) capability
    logC: np.ndarray  # (M,) log10 FLOPs (1E21); NaN = latent
    fam: np.ndarray  # (M,) int family index
    families: tuple  # (F,) family names, index order
    models: tuple  # (M,) model names (or row labels)


class FamilyFit(NamedTuple):
    """Posterior of :func:`fit_family`; ``posterior.samples`` holds ``theta``, ``nu``, ``sigma``
    (draws, F) in original units, the pooled ``mu_theta``/``tau_theta`` etc. in standardised units,
    and ``logC_latent`` (draws, M_missing) when FLOPs are latent."""

    posterior: object  # jaxscale.infer.PosteriorResult
    data: FamilyData
    x0: float
    p_mean: float
    p_sd: float

    def family_index(self, name: str) -> int:
        if name not in self.data.families:
            raise ValueError(f"family {name!r} is not in the fit; families: {list(self.data.families)}")
        return self.data.families.index(name)


# ----------------------------------------------------------------------------- tables


def family_data(df: pd.DataFrame, score: str = "P", family_col: str = _data.FAMILY,
                flops_col: str = _data.FLOPS, model_col: str = "Model",
                allow_missing_flops: bool = False, what: str = "family table") -> FamilyData:
    """Validate a table (one row per model) and turn it into :class:`FamilyData`.

    Raises ValueError naming the column and rows: missing columns, missing family names,
    non-finite scores, non-finite / non-positive FLOPs (missing FLOPs allowed only with
    ``allow_missing_flops=True``, then latent).
    """
    validate.require_columns(df, [family_col, score, flops_col], what)
    bad = df[family_col].isna()
    if bad.any():
        raise ValueError(f"{what}: column {family_col!r} is empty at rows {list(df.index[bad])[:5]}; "
                         "give every model a family name")
    validate.check_finite(df, [score], what)
    validate.check_numeric(df, [flops_col], what)
    C = pd.to_numeric(df[flops_col], errors="coerce").to_numpy(float)
    if allow_missing_flops:
        inf = np.isinf(C) | (C <= 0)
        if inf.any():
            raise ValueError(f"{what}: column {flops_col!r} has {int(inf.sum())} infinite or "
                             f"non-positive value(s) at rows {list(df.index[inf])[:5]}; use NaN for "
                             "unknown FLOPs (latent) and positive values otherwise")
    else:
        validate.check_positive(df, [flops_col], what)
    if np.isfinite(C).sum() < 2:
        raise ValueError(f"{what}: need >= 2 models with finite {flops_col!r}, got {int(np.isfinite(C).sum())}")
    families, fam = np.unique(df[family_col].astype(str).to_numpy(), return_inverse=True)
    models = df[model_col].astype(str).tolist() if model_col in df.columns else [str(i) for i in df.index]
    logC = np.where(np.isfinite(C), np.log10(np.where(np.isfinite(C), C, 1.0)), np.nan)
    return FamilyData(df[score].to_numpy(float), logC, fam.astype(np.int32), tuple(families),
                      tuple(models))


def pc1_table(df: pd.DataFrame | None = None, metrics=None) -> pd.DataFrame:
    """Capability space: ``df`` (default the 77 core models) with ``P`` = PC-1 of the impute + PCA
    fitted on all its rows (explained variance 0.8016 on the core set, as in the paper's Fig. 2)."""
    from .constants import BASE_METRICS
    from .pca import fit_transform

    df = (_data.core_models() if df is None else df).copy()
    metrics = list(BASE_METRICS if metrics is None else metrics)
    validate.require_columns(df, metrics, "pc1_table")
    _, _, S = fit_transform(df[metrics].to_numpy(float), np.ones(len(df), bool))
    df["P"] = np.asarray(S)[:, 0]
    return df


def law_table(result) -> pd.DataFrame:
    """A fitted task's models with the law's capability ``P = α + β·S`` (train and test rows).

    ``result``: :class:`pipeline.TaskResult`; adds columns ``P`` and ``split`` (train/test).
    """
    dz = result.design
    prep = dz.prep
    k = int(np.asarray(result.params.slopes).shape[0])
    tr = np.asarray(dz.train, bool)
    S = np.zeros((len(tr), k))
    S[tr], S[~tr] = dz.S_train[:, :k], dz.S_test[:, :k]
    df = prep.df.copy()
    df["P"] = float(result.params.intercept) + S @ np.asarray(result.params.slopes, float)
    df["split"] = np.where(tr, "train", "test")
    return df


def within_family_ols(df: pd.DataFrame, score: str = "P", min_models: int = 3,
                      family_col: str = _data.FAMILY, flops_col: str = _data.FLOPS) -> pd.DataFrame:
    """Plain OLS of ``score`` on log10 FLOPs within each family (rows with FLOPs only), vectorised
    with segment sums. Returns one row per family with >= ``min_models`` models: n, slope,
    intercept, r2 (measured: mean R² 0.966 over 14 core families, Llama-2 1.000)."""
    validate.require_columns(df, [family_col, score, flops_col], "within_family_ols")
    C = pd.to_numeric(df[flops_col], errors="coerce").to_numpy(float)
    ok = np.isfinite(C) & (C > 0)
    d = df[ok]
    fams, idx = np.unique(d[family_col].astype(str).to_numpy(), return_inverse=True)
    x, y = np.log10(C[ok]), d[score].to_numpy(float)
    s = lambda v: np.bincount(idx, v, minlength=len(fams))  # noqa: E731
    n, sx, sy = s(np.ones_like(x)), s(x), s(y)
    sxx, sxy, syy = s(x * x) - sx**2 / n, s(x * y) - sx * sy / n, s(y * y) - sy**2 / n
    with np.errstate(divide="ignore", invalid="ignore"):
        slope = sxy / sxx
        r2 = sxy**2 / (sxx * syy)
    out = pd.DataFrame(dict(family=fams, n=n.astype(int), slope=slope,
                            intercept=(sy - slope * sx) / n, r2=r2))
    return out[out.n >= min_models].reset_index(drop=True)


# ----------------------------------------------------------------------------- model


def family_model(x, y, fam, miss, d_fam, n_fam: int, n_miss: int, latent_loc=0.0,
                 latent_scale=1.5, tau_scale=1.0, sigma_scale=0.5, sigma_spread=0.5,
                 param: str = "centered", tau_fixed=None):
    """numpyro model in standardised units (see module docstring).

    x: (M,) centred log10 C (any value where ``miss``); y: (M,) standardised capability;
    fam: (M,) family index; miss: (M,) bool latent-FLOPs rows (``n_miss`` of them, static);
    d_fam: (F,) each family's mean centred log10 C. The prior is the same for both ``param``s:
    θ_f ~ N(μ_θ, τ_θ), a_f ~ N(μ_a, τ_a) (a_f = level at x0). ``"noncentered"`` samples
    z-scores (θ_f = μ_θ + τ_θ z_f); ``"centered"`` samples θ_f and the level at the family's own
    mean ``b_f = a_f + θ_f d_f ~ N(μ_a + θ_f d_f, τ_a)``, which makes each family's likelihood
    separable. On the 74 core models with FLOPs (4 x 300/300): 24 leapfrog steps per draw and 0
    divergences (centered) vs 133 steps (noncentered); most families have >= 3 well-fitted models,
    the regime where centring wins. Per-family noise ``σ_f = σ0 exp(sigma_spread z_f)`` is pooled
    with a fixed log-spread (a sampled spread made a funnel: R-hat 1.04, 17 divergences).
    ``tau_fixed``: fix τ_θ = τ_a (standardised units) instead of sampling them.
    """
    import numpyro
    import numpyro.distributions as dist

    mu_t = numpyro.sample("mu_theta", dist.Normal(0.0, 2.0))
    mu_a = numpyro.sample("mu_a", dist.Normal(0.0, 2.0))
    if tau_fixed is None:
        tau_t = numpyro.sample("tau_theta", dist.HalfNormal(tau_scale))
        tau_a = numpyro.sample("tau_a", dist.HalfNormal(tau_scale))
    else:  # fixed between-family spreads (large = no pooling, the per-family OLS limit)
        tau_t = tau_a = tau_fixed
    sig0 = numpyro.sample("sigma0", dist.HalfNormal(sigma_scale))
    with numpyro.plate("family", n_fam):
        if param == "centered":
            theta = numpyro.sample("theta_c", dist.Normal(mu_t, tau_t))
            a = numpyro.sample("b_c", dist.Normal(mu_a + theta * d_fam, tau_a)) - theta * d_fam
        elif param == "noncentered":
            theta = mu_t + tau_t * numpyro.sample("z_theta", dist.Normal(0.0, 1.0))
            a = mu_a + tau_a * numpyro.sample("z_a", dist.Normal(0.0, 1.0))
        else:
            raise ValueError(f"param must be 'centered' or 'noncentered', got {param!r}")
        z_s = numpyro.sample("z_sigma", dist.Normal(0.0, 1.0))
    sigma = sig0 * jnp.exp(sigma_spread * z_s)
    numpyro.deterministic("theta_std", theta)
    numpyro.deterministic("a_std", a)
    numpyro.deterministic("sigma_std", sigma)
    if n_miss:
        xl = numpyro.sample("x_latent", dist.Normal(latent_loc, latent_scale).expand((n_miss,)))
        pos = jnp.cumsum(miss) - 1  # position of each latent row in x_latent
        x = jnp.where(miss, xl[jnp.clip(pos, 0, n_miss - 1)], x)
    numpyro.sample("y", dist.Normal(theta[fam] * x + a[fam], sigma[fam]), obs=y)


def fit_family(key, df_or_data, *, score: str = "P", allow_missing_flops: bool = False,
               x0="mean", tau_scale: float = 1.0, sigma_scale: float = 0.5,
               sigma_spread: float = 0.5, latent_scale: float = 1.5, param: str = "centered", tau_fixed=None,
               num_warmup: int = 500, num_samples: int = 500, num_chains: int = 4,
               target_accept_prob: float = 0.9, warn: bool = True, what: str = "obs family") -> FamilyFit:
    """NUTS posterior of the family hierarchy.

    df_or_data: a table (see :func:`family_data`; ``score`` names the capability column) or a
    :class:`FamilyData`. ``tau_scale``: HalfNormal scale of the between-family spreads of slope and
    level, in standardised units; the data mostly decide τ, so for no pooling fix them with
    ``tau_fixed`` (e.g. 10: each family's slope is then its own OLS slope). Families with a
    single model get their slope from the pooled distribution. ``latent_scale``: prior sd (decades)
    of a latent log10 C around ``x0``. With ``warn``, failing NUTS diagnostics (R-hat > 1.01, ESS
    < 100 per chain, divergences, fewer than 2 chains) are warned about, named ``what``.
    """
    from jaxscale.infer import run_nuts

    d = df_or_data if isinstance(df_or_data, FamilyData) else family_data(
        df_or_data, score, allow_missing_flops=allow_missing_flops)
    miss = ~np.isfinite(d.logC)
    if miss.any() and not allow_missing_flops:
        raise ValueError(f"fit_family: {int(miss.sum())} model(s) without FLOPs "
                         f"({[d.models[i] for i in np.flatnonzero(miss)[:5]]}); pass "
                         "allow_missing_flops=True to treat their log10 C as latent")
    x0v = float(np.nanmean(d.logC)) if x0 == "mean" else float(x0)
    p_mean, p_sd = float(d.P.mean()), float(d.P.std())
    if not p_sd > 0:
        raise ValueError("fit_family: the capability column is constant; nothing to fit")
    x = jnp.asarray(np.where(miss, 0.0, d.logC - x0v))
    y = jnp.asarray((d.P - p_mean) / p_sd)
    latent_loc = float(np.nanmean(d.logC)) - x0v
    onehot = np.eye(len(d.families))[d.fam][~miss]
    n_obs = onehot.sum(0)
    d_fam = np.where(n_obs > 0, np.nan_to_num(d.logC[~miss] - x0v) @ onehot / np.maximum(n_obs, 1),
                     latent_loc)
    post = run_nuts(key, family_model, x, y, jnp.asarray(d.fam), jnp.asarray(miss),
                    jnp.asarray(d_fam), len(d.families), int(miss.sum()), latent_loc,
                    latent_scale, tau_scale, sigma_scale, sigma_spread, param, tau_fixed,
                    num_warmup=num_warmup, num_samples=num_samples,
                    num_chains=num_chains, target_accept_prob=target_accept_prob, warn=False)
    if warn:
        from .bayes_nuts import warn_nuts

        warn_nuts(post.diagnostics, what)
    s = dict(post.samples)
    th, a = s["theta_std"], s["a_std"]
    s["theta"] = th * p_sd
    s["nu"] = p_mean + p_sd * (a - th * x0v)
    s["sigma"] = s["sigma_std"] * p_sd
    if "x_latent" in s:
        s["logC_latent"] = s["x_latent"] + x0v
    bad = ~np.all(np.isfinite(np.concatenate([s["theta"], s["nu"], s["sigma"]], 1)), 1)
    if bad.any():
        raise ValueError(f"fit_family: {int(bad.sum())} non-finite posterior draw(s) (first flat draw "
                         f"{int(np.flatnonzero(bad)[0])}, chain {int(np.flatnonzero(bad)[0]) // num_samples}); "
                         "rescale the capability column or tighten tau_scale")
    return FamilyFit(post._replace(samples=s), d, x0v, p_mean, p_sd)


# ----------------------------------------------------------------------------- f-equivalent FLOPs


def fequiv_flops_draws(fit: FamilyFit, P, ref_family: str = "Llama-2") -> np.ndarray:
    """Draws (n_draws, n) of the reference-family-equivalent log10 FLOPs (1E21) of capabilities
    ``P``: ``x = (P - ν_ref)/θ_ref`` per posterior draw (the mean line, no model scatter)."""
    j = fit.family_index(ref_family)
    th = fit.posterior.samples["theta"][:, j]
    if np.mean(th <= 0) > 0.01:
        raise ValueError(f"fequiv_flops_draws: P(θ_{ref_family} <= 0) = {np.mean(th <= 0):.2f}; "
                         "capability does not increase with FLOPs in the reference family, so the "
                         "inverse is undefined; choose another --ref")
    nu = fit.posterior.samples["nu"][:, j]
    P = np.atleast_1d(np.asarray(P, float))
    return (P[None, :] - nu[:, None]) / th[:, None]


def fequiv_flops_predictive(key, fit: FamilyFit, P, ref_family: str = "Llama-2") -> np.ndarray:
    """Like :func:`fequiv_flops_draws`, but including the reference family's model-to-model scatter
    σ_ref (the compute a *new* reference model would need to reach ``P``)."""
    import jax

    j = fit.family_index(ref_family)
    P = np.atleast_1d(np.asarray(P, float))
    eps = np.asarray(jax.random.normal(key, (fit.posterior.samples["theta"].shape[0], P.size)))
    sig = fit.posterior.samples["sigma"][:, j]
    return fequiv_flops_draws(fit, P, ref_family) - eps * (sig / fit.posterior.samples["theta"][:, j])[:, None]


def interval_summary(draws, probs=PROBS) -> dict:
    """Median and interval per column of ``draws`` (n_draws, n): dict(lo, median, hi) of lists."""
    q = np.quantile(np.asarray(draws, float), probs, axis=0)
    return dict(lo=q[0].tolist(), median=q[1].tolist(), hi=q[2].tolist())


def family_efficiency_table(fit: FamilyFit, ref_family: str = "Llama-2", probs=PROBS) -> list[dict]:
    """Per family: n models, θ_f, ν_f, σ_f (median and 90% interval) and the FLOPs multiplier
    versus the reference: at the capability the family's line reaches at its own mean log10 C
    ``x̄_f``, ``mult = 10**(x_ref - x̄_f)`` reference-FLOPs per family-FLOP (> 1: the family is more
    compute-efficient than the reference). Families whose FLOPs are all latent use the latent draws.
    """
    s, d = fit.posterior.samples, fit.data
    F = len(d.families)
    j = fit.family_index(ref_family)
    logC = np.broadcast_to(d.logC, (s["theta"].shape[0], d.logC.size)).copy()
    if "logC_latent" in s:
        logC[:, ~np.isfinite(d.logC)] = s["logC_latent"]
    onehot = np.eye(F)[d.fam]  # (M, F)
    n = onehot.sum(0)
    xbar = logC @ onehot / n  # (draws, F)
    P_at = s["theta"] * xbar + s["nu"]
    x_ref = (P_at - s["nu"][:, j : j + 1]) / s["theta"][:, j : j + 1]
    log_mult = x_ref - xbar
    q = {k: np.quantile(v, probs, axis=0) for k, v in
         dict(theta=s["theta"], nu=s["nu"], sigma=s["sigma"], log10_mult=log_mult).items()}
    n_flops = onehot[np.isfinite(d.logC)].sum(0)
    return [dict(family=f, n_models=int(n[i]), n_with_flops=int(n_flops[i]),
                 **{f"{k}_{tag}": float(q[k][t, i]) for k in q for t, tag in
                    enumerate(("lo", "median", "hi"))},
                 flops_multiplier_median=float(10 ** q["log10_mult"][1, i]),
                 flops_multiplier_lo=float(10 ** q["log10_mult"][0, i]),
                 flops_multiplier_hi=float(10 ** q["log10_mult"][2, i]))
            for i, f in enumerate(d.families)]
