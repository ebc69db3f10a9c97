"""Scaling curve on the reference-equivalent FLOPs axis with train/test points and bands."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .fit import LawParams

__all__ = ["plot_families", "equiv_x", "plot_scaling"]


def equiv_x(params: LawParams, S, slope: float, intercept: float) -> np.ndarray:
    """log10 reference-equivalent FLOPs (1E21) of rows ``S``: ``(P(S) - c) / w``."""
    P = float(params.intercept) + np.asarray(S, float) @ np.asarray(params.slopes, float)
    return (P - intercept) / slope


def plot_scaling(result, path, band=None, title: str | None = None):
    """Save a PNG of ``result`` (a ``pipeline.TaskResult``).

    band: optional dict(x=..., lo=..., hi=..., mean=...) of a Bayesian 90% predictive band at
    model positions (any order). Returns the path.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dz = result.design
    k = len(np.asarray(result.params.slopes))
    w, c, b = result.slope, result.intercept, result.floor
    xtr = equiv_x(result.params, dz.S_train[:, :k], w, c)
    xte = equiv_x(result.params, dz.S_test[:, :k], w, c)
    lo = min(xtr.min(), xte.min() if xte.size else xtr.min()) - 0.3
    hi = max(xtr.max(), xte.max() if xte.size else xtr.max()) + 0.3
    grid = np.linspace(lo, hi, 200)
    curve = b + (1 - b) / (1 + np.exp(-(w * grid + c)))
    fig, ax = plt.subplots(figsize=(6, 4))
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
    ref = dz.prep.spec.ref_family
    ax.set_xlabel(f"log10 {ref}-equivalent FLOPs (1E21)")
    ax.set_ylabel("normalised accuracy")
    ax.set_title(title or f"{result.name}: test MSE {result.mse_test:.1e}")
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


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
