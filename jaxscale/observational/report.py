"""JSON-ready summaries of fits: a named task (point fit, bootstrap, Bayesian law), the family
hierarchy, and a fit on your own table. The command line prints these dicts; notebooks and scripts
can call them directly.

Every value that can be missing comes with a ``<name>_reason`` string next to it.
"""
from __future__ import annotations

import time
import warnings

import jax
import numpy as np

from jaxscale.infer.results import reason_text

__all__ = ["bootstrap_summary", "bayes_summary", "bayes_band", "task_summary", "family_summary", "table_summary",
           "nuts_summary", "extrapolation_summary"]


def bootstrap_summary(key, result, n: int) -> dict:
    """``n`` bootstrap refits of a named task's law (one vmapped program): 90% intervals of the law
    on the reference axis and the mean-curve band at the held-out models (a confidence band for
    the curve, not a predictive band)."""
    from .fit import bootstrap_band, bootstrap_law

    if n < 10:
        raise ValueError(f"--bootstrap must be >= 10 refits, got {n}")
    dz = result.design
    k = int(np.asarray(result.params.slopes).shape[0])
    t0 = time.perf_counter()
    pb, rb = bootstrap_law(key, dz.S_train[:, :k], dz.y_train, n, floor=dz.spec.floor, loss=dz.spec.loss)
    ok = np.asarray(rb.converged)
    out = dict(n=int(n), n_converged=int(ok.sum()), seconds=time.perf_counter() - t0)
    if len(dz.y_test):
        q = bootstrap_band(pb, ok, dz.S_test[:, :k])
        out["mean_band_90_width"] = float(np.mean(q[1] - q[0]))
        out["mean_band_90_coverage"] = float(np.mean((dz.y_test >= q[0]) & (dz.y_test <= q[1])))
    if len(dz.ref_S) >= 2:  # law on the log10 reference-equivalent FLOPs axis, per refit
        P = np.asarray(pb.intercept)[ok, None] + np.asarray(pb.slopes)[ok] @ np.asarray(dz.ref_S)[:, :k].T
        x = np.log10(np.asarray(dz.ref_flops, float))
        coef, *_ = np.linalg.lstsq(np.stack([x, np.ones_like(x)], 1), P.T, rcond=None)
        out["slope_90"] = np.quantile(coef[0], [0.05, 0.95]).tolist()
        out["intercept_90"] = np.quantile(coef[1], [0.05, 0.95]).tolist()
    else:
        out["slope_90"] = out["intercept_90"] = None
        out["slope_90_reason"] = out["intercept_90_reason"] = "fewer than 2 reference-family models"
    return out


def nuts_summary(diagnostics: dict) -> dict:
    """The NUTS diagnostics worth printing."""
    d = diagnostics
    out = dict(max_r_hat=d["max_r_hat"], min_ess=d["min_ess"], divergences=d["divergences"],
               num_chains=d["num_chains"], num_samples=d["num_samples"])
    if "mean_num_steps" in d:
        out["mean_num_steps"] = d["mean_num_steps"]
    return out


def bayes_summary(key, result, *, likelihood: str = "extrap", num_warmup: int = 300,
                  num_samples: int = 500, num_chains: int = 4, warn: bool = True):
    """The Bayesian law of a named task's point fit: held-out 50%/90% coverage, test MSE of the
    posterior mode (MAP, the Bayesian point prediction), median and mean, NUTS diagnostics.

    Returns ``(summary dict, BayesFit)``.
    """
    from . import bayes
    from .bayes_eval import fit_results

    bf = fit_results(key, [result], likelihood=likelihood, num_warmup=num_warmup,
                     num_samples=num_samples, num_chains=num_chains, warn=warn, what="obs fit --bayes")[0]
    dz = result.design
    k = int(np.asarray(result.params.slopes).shape[0])
    pr = bayes.predictive(jax.random.fold_in(key, 1), bf, dz.S_test[:, :k])
    out = dict(bayes.coverage(dz.y_test, pr["q"]))
    out["mse_test_bayes"] = float(np.mean((pr["mode"] - dz.y_test) ** 2))
    out["mse_test_bayes_median"] = float(np.mean((pr["median"] - dz.y_test) ** 2))
    out["mse_test_bayes_mean"] = float(np.mean((pr["mean"] - dz.y_test) ** 2))
    out["likelihood"] = likelihood
    out["nuts"] = nuts_summary(bf.posterior.diagnostics)
    out["floor_posterior_mean"] = float(bf.floor.mean())
    if bf.kappa is not None:
        out["kappa_posterior_median"] = float(np.median(bf.kappa))
    return out, bf


def bayes_band(key, result, bf) -> dict:
    """Bayesian 90% predictive band at every model of a named task, on the reference axis."""
    from . import bayes
    from .plot import equiv_x

    dz = result.design
    k = int(np.asarray(result.params.slopes).shape[0])
    S_all = np.concatenate([dz.S_train[:, :k], dz.S_test[:, :k]])
    pa = bayes.predictive(key, bf, S_all)
    return dict(x=equiv_x(result.params, S_all, result.slope, result.intercept), lo=pa["q"][0],
                hi=pa["q"][3], mean=pa["mode"])


def extrapolation_summary(fit, data, pred, rows) -> dict:
    """How far the predicted ``rows`` (boolean mask over ``data``) lie outside the training data:
    the largest capability distance (:func:`~jaxscale.observational.model.extrapolation`) and how
    many are outside the training box; the largest ratio of their FLOPs to the largest training
    model's and how many exceed it; the backtest's ``kappa`` and where it came from (``kappa_source``:
    the backtest, or the prior's median when the backtest could not move it). Every ``None`` has a
    reason."""
    from .model import EXTRAPOLATION_UNIT, kappa_source

    rows = np.asarray(rows, bool)
    out = dict(unit=EXTRAPOLATION_UNIT, n_rows=int(rows.sum()))
    ext = None if pred.extrapolation is None else np.asarray(pred.extrapolation, float)[rows]
    if ext is None:
        out["max_distance"] = out["n_outside"] = None
        out["max_distance_reason"] = out["n_outside_reason"] = "the fit stores no training box (saved before it did)"
    else:
        out["max_distance"] = float(ext.max()) if ext.size else 0.0
        out["n_outside"] = int(np.sum(ext > 0))
    top = np.nan if fit.flops_range is None else float(np.asarray(fit.flops_range)[1])
    C = np.asarray(data.flops, float)[rows]
    known = np.isfinite(C)
    if np.isfinite(top) and known.any():
        ratio = C[known] / 10.0**top
        out["max_flops_ratio"] = float(ratio.max())
        out["max_flops_decades_beyond"] = float(max(np.log10(ratio.max()), 0.0))
        out["n_beyond_flops"] = int(np.sum(ratio > 1.0 + 1e-12))
    else:
        why = ("no training row has FLOPs" if not np.isfinite(top) else
               "no predicted row has FLOPs") + " (--flops-col)"
        for key in ("max_flops_ratio", "max_flops_decades_beyond", "n_beyond_flops"):
            out[key], out[f"{key}_reason"] = None, why
    out["n_no_flops"] = int((~known).sum())
    out["kappa"] = None if fit.kappa is None else float(fit.kappa)
    out["n_backtest"] = None if fit.n_backtest is None else int(fit.n_backtest)
    out["n_backtest_outside"] = None if fit.n_backtest_outside is None else int(fit.n_backtest_outside)
    out["kappa_source"] = kappa_source(fit)
    if fit.kappa is None:
        for key in ("kappa", "n_backtest", "n_backtest_outside", "kappa_source"):
            out[f"{key}_reason"] = "the fit stores no backtest (saved before it did)"
    elif fit.n_backtest_outside is None:
        out["n_backtest_outside_reason"] = "the fit does not store it (saved before it did)"
    return out


def task_summary(seed: int, name: str, *, k: int | None = None, floor: bool | None = None,
                 bootstrap: int = 0, bayes: bool = False, likelihood: str = "extrap",
                 num_warmup: int = 300, num_samples: int = 500, num_chains: int = 4,
                 plot=None, result=None) -> dict:
    """Point fit of a named task (paper settings; ``k`` / ``floor`` override them), optionally with
    ``bootstrap`` refits and the Bayesian law, and a PNG of the scaling curve.

    ``result``: the task's :func:`~jaxscale.observational.pipeline.run_task` result when the caller
    already has it (it is then summarised instead of fitted again; ``name``, ``k`` and ``floor``
    must be the ones it was run with)."""
    from .pipeline import run_task
    from .tasks import get_task

    over = {}
    if k is not None:
        over["k"] = k
    if floor is not None:
        over["floor"] = floor
    spec = get_task(name, **over)
    if result is None:
        result = run_task(spec)
    elif result.design.spec != spec:
        raise ValueError(f"task_summary: the given result was run with other settings than task {name!r} "
                         f"(k={k}, floor={floor}); pass result=None to run it here")
    out = dict(task=spec.name, mse_train=result.mse_train, mse_test=result.mse_test,
               slope=result.slope, intercept=result.intercept, floor=result.floor,
               n_train=result.n_train, n_test=result.n_test, k=spec.k,
               link="floor" if spec.floor else "plain", loss=spec.loss,
               pc_coefficients=[float(v) for v in np.asarray(result.params.slopes)],
               pc_intercept=float(result.params.intercept), converged=result.converged,
               reason=reason_text(result.reason), axis=f"log10 {spec.ref_family}-equivalent FLOPs (1E21)")
    if not result.converged:
        warnings.warn(f"obs fit --task {spec.name}: L-BFGS did not converge ({out['reason']}); the law may be a poor "
                      "optimum", RuntimeWarning, stacklevel=2)
    for name_ in ("slope", "intercept"):
        if not np.isfinite(out[name_]):
            out[f"{name_}_reason"] = f"fewer than 2 {spec.ref_family} models with FLOPs in the task"
    if bootstrap:
        out["bootstrap"] = bootstrap_summary(jax.random.fold_in(jax.random.key(seed), 7), result, bootstrap)
    band = None
    if bayes:
        key = jax.random.key(seed)
        summ, bf = bayes_summary(key, result, likelihood=likelihood, num_warmup=num_warmup,
                                 num_samples=num_samples, num_chains=num_chains)
        out.update(summ)
        if plot:
            band = bayes_band(jax.random.fold_in(key, 2), result, bf)
    if plot:
        from .plot import plot_scaling

        out["plot"] = str(plot_scaling(result, plot, band=band))
    return out


def family_summary(seed: int, *, task: str | None = None, ref: str | None = None,
                   latent_flops: bool = False, tau_scale: float = 1.0, num_warmup: int = 300,
                   num_samples: int = 300, num_chains: int = 4, plot=None) -> dict:
    """Family compute efficiency (hierarchical NUTS) on PC-1 of the core models, or on the law
    capability ``P = α + β·S`` of a named task; pooled reference-equivalent FLOPs of its held-out
    models."""
    from . import family as fm
    from .data import FAMILY, FLOPS

    result = None
    if task:
        from .pipeline import run_task

        result = run_task(task)
        df = fm.law_table(result)
        ref = ref or result.design.spec.ref_family
        capability = f"law capability P = alpha + beta.S of task {task}"
    else:
        df = fm.pc1_table()
        ref = ref or "Llama-2"
        capability = "PC-1 of the 77 core models (8 benchmarks)"
    if ref not in set(df[FAMILY]):
        raise ValueError(f"--ref {ref!r} is not a family of this table; families: {sorted(set(df[FAMILY]))}")
    has_flops = np.isfinite(df[FLOPS].to_numpy(float))
    fit_df = df if latent_flops else df[has_flops]
    fit = fm.fit_family(jax.random.key(seed), fit_df, allow_missing_flops=latent_flops,
                        tau_scale=tau_scale, num_warmup=num_warmup, num_samples=num_samples,
                        num_chains=num_chains)
    j = fit.family_index(ref)
    th, nu = fit.posterior.samples["theta"][:, j], fit.posterior.samples["nu"][:, j]
    out = dict(capability=capability, ref=ref, n_models=len(fit_df), n_families=len(fit.data.families),
               excluded_no_flops=[] if latent_flops else df.loc[~has_flops, "Model"].tolist(),
               families=fm.family_efficiency_table(fit, ref),
               ref_axis=dict(slope_median=float(np.median(th)), intercept_median=float(np.median(nu)),
                             slope_90=np.quantile(th, (0.05, 0.95)).tolist(),
                             intercept_90=np.quantile(nu, (0.05, 0.95)).tolist()),
               nuts=nuts_summary(fit.posterior.diagnostics))
    if result is not None:
        te = df[df["split"] == "test"]
        summ = fm.interval_summary(fm.fequiv_flops_draws(fit, te["P"].to_numpy(float), ref))
        C = te[FLOPS].to_numpy(float)
        ols = (te["P"].to_numpy(float) - result.intercept) / result.slope
        out["ref_axis"].update(ols_slope=result.slope, ols_intercept=result.intercept)
        rows = []
        for m, f, c, lo, md, hi, o in zip(te["Model"], te[FAMILY], C, summ["lo"], summ["median"],
                                          summ["hi"], ols):
            row = dict(model=m, family=f, log10_flops=float(np.log10(c)) if np.isfinite(c) else None,
                       fequiv_median=md, fequiv_lo=lo, fequiv_hi=hi, fequiv_ols=float(o))
            if row["log10_flops"] is None:
                row["log10_flops_reason"] = "FLOPs unknown (training tokens not published)"
            rows.append(row)
        out["heldout"] = rows
    if plot:
        from .plot import plot_families

        out["plot"] = plot_families(fit, plot, title=task or "PC-1")
    return out


def table_summary(fit, data, pred, *, train, held_out, excluded=None) -> dict:
    """Summary of a fit on your own table (:func:`jaxscale.observational.fit`): law coefficients,
    the reference-equivalent FLOPs axis, train / held-out MSE on the normalised target, counts of
    rows and imputed cells, and the Bayesian or bootstrap diagnostics.

    Args:
      fit: the :class:`~jaxscale.observational.model.ObsFit` (fitted on ``data``'s ``train`` rows).
      data: every row of the table (:class:`~jaxscale.observational.model.ObsData`).
      pred: :func:`~jaxscale.observational.predict` of every row of ``data``.
      train, held_out: boolean masks of the fitted and the scored rows.
      excluded: rows in neither set (e.g. no FLOPs under a FLOPs cut-off), or ``None``.
    """
    from .model import interval_method, reference_axis

    train, held = np.asarray(train, bool), np.asarray(held_out, bool)
    excl = np.zeros_like(train) if excluded is None else np.asarray(excluded, bool)
    spec = fit.spec
    y = np.asarray(data.y, float)
    yhat = (np.asarray(pred.mean, float) - fit.lo) / (fit.hi - fit.lo)
    miss = ~np.isfinite(np.asarray(data.scores, float))
    cols = dict(fit.columns)
    out = dict(n_rows=int(len(y)), n_train=int(train.sum()), n_test=int(held.sum()),
               n_excluded=int(excl.sum()),
               n_imputed=int(miss[train].sum()), n_imputed_predicted=int(miss[~train].sum()),
               target=cols.get("target"), metrics=list(fit.metric_names),
               flops=cols.get("flops"), model=cols.get("model"), family=cols.get("family"),
               k=spec.k, link="floor" if spec.floor else "plain", loss=spec.loss,
               pc_coefficients=[float(v) for v in np.asarray(fit.law.slopes)],
               pc_intercept=float(fit.law.intercept), floor=float(fit.law.floor),
               converged=bool(fit.converged),
               reason=reason_text(fit.reason) if fit.reason is not None else None,
               mse_train=float(fit.mse_train),
               resid_sd=float(fit.resid_sd), interval=interval_method(fit))
    for role in ("flops", "model", "family"):
        if out[role] is None:
            out[f"{role}_reason"] = f"no {role} column in the table"
    if out["reason"] is None:
        out["reason_reason"] = "the fit stores no stop code (saved before it did)"
    scored = held & np.isfinite(y)
    if scored.any():
        out["mse_test"] = float(np.mean((yhat[scored] - y[scored]) ** 2))
    else:
        out["mse_test"] = None
        out["mse_test_reason"] = ("no held-out rows (give --holdout, --cutoff or --test-frac)" if not held.any()
                                  else "no held-out row has a target value")
    out["n_test_missing_target"] = int((held & ~np.isfinite(y)).sum())
    axis = reference_axis(fit, data)
    out["slope"], out["intercept"], out["n_ref"] = axis["slope"], axis["intercept"], axis["n_ref"]
    out["axis"] = f"log10 {axis['ref_family']}-equivalent FLOPs (1E21)"
    if axis["reason"]:
        out["slope_reason"] = out["intercept_reason"] = axis["reason"]
    if fit.boot is not None:
        ok = np.asarray(fit.boot_ok, bool)
        out["bootstrap"] = dict(n=int(ok.size), n_converged=int(ok.sum()))
    if fit.posterior is not None:
        p = fit.posterior
        out["bayes"] = dict(likelihood=spec.likelihood, max_r_hat=float(p.max_r_hat), min_ess=float(p.min_ess),
                            divergences=int(p.divergences), num_chains=spec.num_chains,
                            num_samples=spec.num_samples, floor_posterior_mean=float(np.mean(p.floor)))
        if p.kappa is not None:
            out["bayes"]["kappa_posterior_median"] = float(np.median(p.kappa))
    return out
