"""``jaxscale obs family``: hierarchical family compute efficiency and pooled f-equivalent FLOPs."""
from __future__ import annotations

__all__ = ["register_family", "family_handler", "plot_families"]


def plot_families(fit, path, probs=(0.05, 0.95), title: str | None = None):
    """Capability vs log10 FLOPs per family: points and posterior median lines with 90% bands."""
    import numpy as np

    from jaxscale import plotting

    d, s = fit.data, fit.posterior.samples
    ok = np.isfinite(d.logC)
    F = len(d.families)
    onehot = np.eye(F)[d.fam][ok]
    big = 1e9
    lo = np.min(np.where(onehot > 0, d.logC[ok][:, None], big), 0)  # (F,) family x-range
    hi = np.max(np.where(onehot > 0, d.logC[ok][:, None], -big), 0)
    has = onehot.sum(0) > 0
    lo, hi = np.where(has, lo, 0.0), np.where(has, hi, 0.0)
    grid = lo[:, None] + (hi - lo)[:, None] * np.linspace(0.0, 1.0, 20)[None]  # (F, G)
    lines = s["theta"][:, :, None] * grid[None] + s["nu"][:, :, None]  # (draws, F, G)
    q = np.quantile(lines, (probs[0], 0.5, probs[1]), axis=0)
    fig, ax = plotting.figure(1, 1, size=(7.5, 5.0))
    cmap = __import__("matplotlib").colormaps["tab20"]
    for i in np.flatnonzero(has):  # drawing only: one artist per family
        c = cmap(i % 20)
        m = ok & (d.fam == i)
        ax.plot(d.logC[m], d.P[m], "o", color=c, ms=4)
        plotting.band(ax, grid[i], q[1, i], q[0, i], q[2, i], label=d.families[i], color=c, alpha=0.15)
    ax.set_xlabel("log10 FLOPs (1E21)")
    ax.set_ylabel("capability P")
    ax.legend(fontsize=6, ncol=2)
    ax.set_title(title or "family compute efficiency (median, 90% band)", fontsize=10)
    return str(plotting.save(fig, path))


def family_handler(args) -> dict:
    """Handler of ``jaxscale obs family``."""
    import jax
    import numpy as np

    from jaxscale.config import enable_x64

    from . import family as fm
    from .data import FAMILY, FLOPS

    enable_x64()
    result = None
    if args.task:
        from .pipeline import run_task

        result = run_task(args.task)
        df = fm.law_table(result)
        ref = args.ref or result.design.prep.spec.ref_family
        capability = f"law capability P = alpha + beta.S of task {args.task}"
    else:
        df = fm.pc1_table()
        ref = args.ref or "Llama-2"
        capability = "PC-1 of the 77 core models (8 benchmarks)"
    if ref not in set(df[FAMILY]):
        raise ValueError(f"--ref {ref!r} is not a family of this table; families: {sorted(set(df[FAMILY]))}")
    has_flops = np.isfinite(df[FLOPS].to_numpy(float))
    fit_df = df if args.latent_flops else df[has_flops]
    fit = fm.fit_family(jax.random.key(args.seed), fit_df, allow_missing_flops=args.latent_flops,
                        tau_scale=args.tau_scale, num_warmup=args.warmup,
                        num_samples=args.samples, num_chains=args.chains)
    dg = fit.posterior.diagnostics
    j = fit.family_index(ref)
    th, nu = fit.posterior.samples["theta"][:, j], fit.posterior.samples["nu"][:, j]
    out = dict(capability=capability, ref=ref, n_models=len(fit_df), n_families=len(fit.data.families),
               excluded_no_flops=[] if args.latent_flops else df.loc[~has_flops, "Model"].tolist(),
               families=fm.family_efficiency_table(fit, ref),
               ref_axis=dict(slope_median=float(np.median(th)), intercept_median=float(np.median(nu)),
                             slope_90=np.quantile(th, (0.05, 0.95)).tolist(),
                             intercept_90=np.quantile(nu, (0.05, 0.95)).tolist()),
               nuts=dict(max_r_hat=dg["max_r_hat"], min_ess=dg["min_ess"],
                         divergences=dg["divergences"], num_chains=dg["num_chains"],
                         num_samples=dg["num_samples"]))
    if result is not None:
        te = df[df["split"] == "test"]
        summ = fm.interval_summary(fm.fequiv_flops_draws(fit, te["P"].to_numpy(float), ref))
        C = te[FLOPS].to_numpy(float)
        ols = (te["P"].to_numpy(float) - result.intercept) / result.slope
        out["ref_axis"].update(ols_slope=result.slope, ols_intercept=result.intercept)
        out["heldout"] = [dict(model=m, family=f, log10_flops=float(np.log10(c)) if np.isfinite(c) else None,
                               fequiv_median=md, fequiv_lo=lo, fequiv_hi=hi, fequiv_ols=float(o))
                          for m, f, c, lo, md, hi, o in zip(te["Model"], te[FAMILY], C, summ["lo"],
                                                            summ["median"], summ["hi"], ols)]
    if args.plot:
        out["plot"] = plot_families(fit, args.plot, title=args.task or "PC-1")
    return out


def register_family(sub) -> None:
    """Add ``family`` to the ``obs`` sub-subcommands (``sub`` from ``obs.add_subparsers``)."""
    p = sub.add_parser("family", help="family compute efficiency (hierarchical, NUTS) and pooled "
                                      "reference-equivalent FLOPs")
    p.add_argument("--task", default=None, help="use this task's law capability P (default: PC-1)")
    p.add_argument("--ref", default=None, help="reference family (default: the task's, or Llama-2)")
    p.add_argument("--latent-flops", action="store_true",
                   help="include models without FLOPs with a latent log10 C (weakly identified)")
    p.add_argument("--tau-scale", type=float, default=1.0,
                   help="HalfNormal scale of the between-family spreads (standardised units)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--warmup", type=int, default=300)
    p.add_argument("--samples", type=int, default=300)
    p.add_argument("--chains", type=int, default=4)
    p.add_argument("--plot", default=None, help="write PC/P vs log10 FLOPs per family (PNG) here")
    p.set_defaults(func=family_handler)
