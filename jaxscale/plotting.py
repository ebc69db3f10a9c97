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
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_chinchilla(N, D, loss, params, excluded_mask=None, boot=None):
    """Loss vs compute with the fitted law along each model size's token sweep.

    Args:
      N, D, loss: data arrays.
      params: dict with E, A, B, alpha, beta.
      excluded_mask: boolean mask of points left out of the fit.
      boot: optional dict of bootstrap arrays, drawn as a histogram panel of alpha and beta.
    """
    import numpy as np

    fig, axes = figure(1, 2 if boot is not None else 1, size=(6.0, 4.2))
    ax = axes[0] if boot is not None else axes
    N, D, loss = map(np.asarray, (N, D, loss))
    C = 6 * N * D
    ex = np.zeros_like(loss, bool) if excluded_mask is None else np.asarray(excluded_mask)
    pred = params["E"] + params["A"] / N ** params["alpha"] + params["B"] / D ** params["beta"]
    sc = ax.scatter(C[~ex], loss[~ex], c=np.log10(N[~ex]), s=12, cmap="viridis", label="fitted points")
    ax.scatter(C[ex], loss[ex], marker="x", color="red", s=20, label="excluded")
    order = np.argsort(C)
    ax.scatter(C[order], pred[order], s=3, color="black", alpha=0.5, label="law at the data")
    ax.set_xscale("log")
    ax.set_xlabel("training compute C = 6ND (FLOPs)")
    ax.set_ylabel("loss")
    ax.legend(fontsize=8)
    fig.colorbar(sc, ax=ax, label="log10 N")
    if boot is not None:
        both = np.concatenate([np.asarray(boot["alpha"]), np.asarray(boot["beta"])])
        rng = tuple(np.percentile(both, [0.5, 99.5]))
        axes[1].hist(np.asarray(boot["alpha"]), bins=50, range=rng, alpha=0.6, label="alpha")
        axes[1].hist(np.asarray(boot["beta"]), bins=50, range=rng, alpha=0.6, label="beta")
        axes[1].set_xlabel("exponent (bootstrap refits)")
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
