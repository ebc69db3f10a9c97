"""Plot helpers (matplotlib, imported lazily with the Agg backend): take arrays/results,
return figures; nothing here computes statistics.
"""
from __future__ import annotations

from pathlib import Path

__all__ = ["figure", "band", "save", "plot_chinchilla", "plot_parity"]


def _plt():
    import matplotlib

    if matplotlib.get_backend().lower() not in ("agg", "module://matplotlib_inline.backend_inline"):
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def figure(nrows: int = 1, ncols: int = 1, size=(6.0, 4.0), **kw):
    """A new figure and axes (``size`` is per panel)."""
    plt = _plt()
    fig, ax = plt.subplots(nrows, ncols, figsize=(size[0] * ncols, size[1] * nrows), **kw)
    return fig, ax


def band(ax, x, mean, lo, hi, label=None, color=None, alpha: float = 0.25):
    """A mean line with a shaded interval ``[lo, hi]`` (a point with an error bar when there is one ``x``:
    a band over a single point would not show)."""
    import numpy as np

    x, mean, lo, hi = (np.atleast_1d(np.asarray(v, float)) for v in (x, mean, lo, hi))
    if x.size == 1:
        err = [np.maximum(mean - lo, 0.0), np.maximum(hi - mean, 0.0)]
        bar = ax.errorbar(x, mean, yerr=err, fmt="o", ms=4, capsize=3, label=label, color=color)
        return bar.lines[0]
    (line,) = ax.plot(x, mean, label=label, color=color)
    ax.fill_between(x, lo, hi, color=line.get_color(), alpha=alpha, linewidth=0)
    return line


def save(fig, path) -> Path:
    """Save a figure as PNG (creating folders) and close it."""
    plt = _plt()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if fig.get_layout_engine() is None:  # a figure laid out by its maker keeps its layout
        fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_chinchilla(N, D, loss, params, excluded_mask=None, boot=None, *, held=None, names=None, level=0.9):
    """Loss vs compute: the runs coloured by model size, the law at each run, and its
    compute-optimal frontier (the lowest loss the law gives at each compute) across every run shown.

    Args:
      N, D, loss: the fitted table's arrays.
      params: dict with E, A, B, alpha, beta.
      excluded_mask: boolean mask of points left out of the fit.
      boot: optional dict of bootstrap arrays, drawn as a histogram panel of alpha and beta.
      held: optional held-out runs ``(N, D, loss, prediction)``: drawn apart, with the prediction's
        interval at each.
      names: the user's column names ``{"N": ..., "D": ..., "loss": ...}`` for the labels.
      level: the interval level of ``held``'s prediction (for the legend).
    """
    import numpy as np

    names = {"N": "N", "D": "D", "loss": "loss", **(names or {})}
    fig, axes = figure(1, 2 if boot is not None else 1, size=(6.4, 4.4))
    ax = axes[0] if boot is not None else axes
    N, D, loss = (np.asarray(v, float) for v in (N, D, loss))
    C = 6 * N * D
    ex = np.zeros_like(loss, bool) if excluded_mask is None else np.asarray(excluded_mask, bool)
    from jaxscale.laws import ChinchillaParams, chinchilla, chinchilla_optimal, chinchilla_params_to_theta

    p = ChinchillaParams(*(float(params[k]) for k in ChinchillaParams._fields))

    def law(n, d):
        with np.errstate(all="ignore"):  # A or B beyond float range (a cliff-like law): not drawn there
            return chinchilla(p, n, d, xp=np)

    logn = [np.log10(N)]
    if held is not None:
        hN, hD, hloss, hpred = held
        hN, hD, hloss = (np.asarray(v, float) for v in (hN, hD, hloss))
        logn.append(np.log10(hN))
    lo_n, hi_n = min(v.min() for v in logn), max(v.max() for v in logn)
    kw = dict(cmap="viridis", vmin=lo_n, vmax=hi_n if hi_n > lo_n else lo_n + 1)
    sc = ax.scatter(C[~ex], loss[~ex], c=np.log10(N[~ex]), s=14, label=f"fitted runs ({int((~ex).sum())})", **kw)
    if ex.any():
        ax.scatter(C[ex], loss[ex], marker="x", color="red", s=24, label=f"left out of the fit ({int(ex.sum())})")
    ax.scatter(C, law(N, D), s=4, color="black", alpha=0.6, label="law at each run")
    c_all = [C]
    if held is not None:
        hC = 6 * hN * hD
        c_all.append(hC)
        mean, lower, upper = (np.asarray(getattr(hpred, k), float) for k in ("mean", "lower", "upper"))
        ax.errorbar(hC, mean, yerr=[np.maximum(mean - lower, 0), np.maximum(upper - mean, 0)], fmt="none",
                    ecolor="0.45", elinewidth=0.8, capsize=2, label=f"prediction, {level:.0%} interval")
        ax.scatter(hC, hloss, c=np.log10(hN), marker="s", s=26, edgecolors="red", linewidths=0.9,
                   label=f"held-out runs ({hC.size})", **kw)
    c_all = np.concatenate(c_all)
    grid = np.geomspace(c_all.min() / 1.5, c_all.max() * 1.5, 200)
    with np.errstate(all="ignore"):  # the optimum in logs; A or B beyond float range: not drawn
        frontier = chinchilla_optimal(chinchilla_params_to_theta(p), grid)[2]
    ax.plot(grid, frontier, "k--", lw=1.2, label="law, compute-optimal frontier")
    ax.set_xscale("log")
    ax.set_xlabel(f"training compute 6 x {names['N']} x {names['D']} (FLOPs)")
    ax.set_ylabel(names["loss"])
    ax.set_title(f"Chinchilla law fitted to {names['loss']}", fontsize=10)
    ax.legend(fontsize=7.5)
    fig.colorbar(sc, ax=ax, label=f"log10 {names['N']}")
    if boot is not None:
        both = np.concatenate([np.asarray(boot["alpha"]), np.asarray(boot["beta"])])
        rng = tuple(np.percentile(both, [0.5, 99.5]))
        axes[1].hist(np.asarray(boot["alpha"]), bins=50, range=rng, alpha=0.6, label=f"alpha ({names['N']})")
        axes[1].hist(np.asarray(boot["beta"]), bins=50, range=rng, alpha=0.6, label=f"beta ({names['D']})")
        axes[1].set_xlabel("exponent")
        axes[1].set_ylabel("bootstrap refits")
        axes[1].set_title(f"the law's exponents over {len(np.asarray(boot['alpha']))} bootstrap refits", fontsize=10)
        axes[1].legend()
    return fig


def plot_parity(y, mean, lower, upper, fitted, baselines: dict | None = None, title: str = "", what: str = "loss"):
    """Predicted against true values: the rows the model was fitted on (grey), the scored rows
    with their interval (error bars), each baseline's prediction of the scored rows (crosses) and
    the diagonal. ``fitted``: mask of the fitted rows; ``baselines``: name -> a prediction per row
    (NaN where it has none); rows without a true value are left out. Returns the figure."""
    import numpy as np

    y, mean, lower, upper = (np.asarray(a, float) for a in (y, mean, lower, upper))
    fitted = np.asarray(fitted, bool)
    known = np.isfinite(y)
    fig, ax = figure(1, 1, size=(5.0, 4.6))
    f, h = known & fitted, known & ~fitted
    ax.plot(y[f], mean[f], ".", color="0.6", ms=4, label=f"fitted rows ({int(f.sum())})")
    if h.any():
        err = np.stack([mean[h] - lower[h], upper[h] - mean[h]])
        ax.errorbar(y[h], mean[h], yerr=np.maximum(err, 0), fmt="o", ms=3.5, color="C0", ecolor="C0", alpha=0.8,
                    elinewidth=0.8, label=f"scored rows ({int(h.sum())}) with interval")
        for k, (name, b) in enumerate((baselines or {}).items()):
            b = np.asarray(b, float)
            m = h & np.isfinite(b)
            if m.any():
                ax.plot(y[m], b[m], "x", color=f"C{k + 1}", ms=4, label=name.replace("_", " "))
    vals = np.concatenate([y[known], mean[known]])
    lo, hi = (float(np.min(vals)), float(np.max(vals))) if vals.size else (0.0, 1.0)
    ax.plot([lo, hi], [lo, hi], color="k", lw=0.8, ls=":")
    ax.set_xlabel(f"true {what}")
    ax.set_ylabel(f"predicted {what}")
    ax.legend(fontsize=7)
    if title:
        ax.set_title(title, fontsize=10)
    return fig
