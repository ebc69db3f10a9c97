"""Figures: the scaling curve of a named task or of a fit on your own table (train / held-out
points, predictive band), the cut-off sweep, and the family-efficiency lines."""
from __future__ import annotations

import numpy as np

from .fit import SigmoidLaw

__all__ = ["plot_families", "equiv_x", "plot_scaling", "plot_fit", "plot_sweep"]


def equiv_x(params: SigmoidLaw, S, slope: float, intercept: float) -> np.ndarray:
    """log10 reference-equivalent FLOPs (1E21) of rows ``S``: ``(P(S) - c) / w``."""
    P = float(params.intercept) + np.asarray(S, float) @ np.asarray(params.slopes, float)
    return (P - intercept) / slope


def plot_scaling(result, path, band=None, title: str | None = None):
    """Save a PNG of ``result`` (a ``pipeline.TaskResult``).

    band: optional dict(x=..., lo=..., hi=..., mean=...) of a Bayesian 90% predictive band at
    model positions (any order). Returns the path.
    """
    from jaxscale import plotting

    dz = result.design
    k = len(np.asarray(result.params.slopes))
    w, c, b = result.slope, result.intercept, result.floor
    xtr = equiv_x(result.params, dz.S_train[:, :k], w, c)
    xte = equiv_x(result.params, dz.S_test[:, :k], w, c)
    lo = min(xtr.min(), xte.min() if xte.size else xtr.min()) - 0.3
    hi = max(xtr.max(), xte.max() if xte.size else xtr.max()) + 0.3
    grid = np.linspace(lo, hi, 200)
    curve = b + (1 - b) / (1 + np.exp(-(w * grid + c)))
    fig, ax = plotting.figure(1, 1, size=(6, 4))
    if band is not None:
        o = np.argsort(band["x"])
        ax.fill_between(np.asarray(band["x"])[o], np.asarray(band["lo"])[o],
                        np.asarray(band["hi"])[o], color="C1", alpha=0.25,
                        label="Bayesian 90% predictive")
        ax.plot(np.asarray(band["x"])[o], np.asarray(band["mean"])[o], color="C1", lw=1, ls="--",
                label=band.get("label", "posterior mode (MAP)"))
    ax.plot(grid, curve, color="k", lw=1.5,
            label=f"{1 - b:.2f}σ({w:.2f}x{c:+.2f})+{b:.2f}")
    ax.scatter(xtr, dz.y_train, s=14, color="C0", label=f"train ({len(xtr)})")
    ax.scatter(xte, dz.y_test, s=18, color="C3", marker="^", label=f"test ({len(xte)})")
    ref = dz.spec.ref_family
    ax.set_xlabel(f"log10 {ref}-equivalent FLOPs (1E21)")
    ax.set_ylabel("normalised accuracy")
    ax.set_title(title or f"{result.name}: test MSE {result.mse_test:.1e}")
    ax.legend(fontsize=7, loc="upper left")
    return plotting.save(fig, path)


def plot_fit(fit, data, pred, *, train=None, held_out=None, axis=None, title: str | None = None, ax=None,
             level: float = 0.9):
    """Scaling curve of a fit on your own table: target vs the law's capability.

    x: the reference-equivalent log10 FLOPs when ``axis`` (from
    :func:`jaxscale.observational.reference_axis`) has a slope, else the law's capability
    ``P = α + β·S``. Points: the rows of ``data`` with a target (train / held out); line and band:
    ``pred`` (a :class:`jaxscale.Prediction` of every row of ``data``; its interval's ``level``
    named in the legend). Returns ``(fig, ax)``.
    """
    from jaxscale import plotting

    from .model import capabilities

    S = capabilities(fit, data)
    P = float(fit.law.intercept) + S @ np.asarray(fit.law.slopes, float)
    use_axis = axis is not None and np.isfinite(axis.get("slope", np.nan))
    x = (P - axis["intercept"]) / axis["slope"] if use_axis else P
    xlabel = (f"log10 {axis['ref_family']}-equivalent FLOPs (1E21)" if use_axis
              else "law capability α + β·S")
    n = len(x)
    train = np.ones(n, bool) if train is None else np.asarray(train, bool)
    held = np.zeros(n, bool) if held_out is None else np.asarray(held_out, bool)
    truth = fit.lo + (fit.hi - fit.lo) * np.asarray(data.y, float)
    if ax is None:
        fig, ax = plotting.figure(1, 1, size=(6, 4))
    else:
        fig = ax.figure
    o = np.argsort(x)
    mean, lo, hi = (np.asarray(v, float) for v in (pred.mean, pred.lower, pred.upper))
    plotting.band(ax, x[o], mean[o], lo[o], hi[o], label=f"prediction, {level:.0%} interval", color="C1", alpha=0.2)
    ok = np.isfinite(truth)
    ax.scatter(x[train & ok], truth[train & ok], s=14, color="C0", label=f"train ({int((train & ok).sum())})")
    if (held & ok).any():
        ax.scatter(x[held & ok], truth[held & ok], s=20, color="C3", marker="^",
                   label=f"held out ({int((held & ok).sum())})")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(dict(fit.columns).get("target", "target"))
    ax.set_title(title or "observational scaling law", fontsize=10)
    ax.legend(fontsize=7, loc="upper left")
    return fig, ax


def plot_sweep(result: dict, path, rank_by: str = "flops"):
    """Test MSE vs test ratio of a cut-off sweep (``sweep.cutoff_sweep(...).to_dict()``), PC law
    against the ln-FLOPs baseline, with their AUEs. Returns the path."""
    from jaxscale import plotting

    fig, ax = plotting.figure(1, 1, size=(4.5, 3.2))
    r = [row["test_ratio"] for row in result["rows"]]
    ax.plot(r, [row["mse_pc"] for row in result["rows"]], "o-", label=f"PC law (AUE {result['aue_pc']:.2e})")
    ax.plot(r, [row["mse_flops"] for row in result["rows"]], "s--",
            label=f"ln FLOPs (AUE {result['aue_flops']:.2e})")
    ax.set_xlabel(f"test ratio (top models by {rank_by})")
    ax.set_ylabel("test MSE")
    ax.set_yscale("log")
    ax.invert_xaxis()
    ax.legend(fontsize=8)
    ax.set_title(result["task"], fontsize=10)
    return plotting.save(fig, path)


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
