"""Plot helpers (matplotlib, imported lazily with the Agg backend): take arrays/results,
return figures; nothing here computes statistics.
"""
from __future__ import annotations

from pathlib import Path

__all__ = ["figure", "band", "save", "plot_chinchilla"]


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
    """A mean line with a shaded interval ``[lo, hi]``."""
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
