"""Figures of the context-law pillar (matplotlib via :mod:`jaxscale.plotting`)."""
from __future__ import annotations

__all__ = ["plot_fit"]


def plot_fit(result: dict, path, task: str | None = None):
    """P vs prompt length, one colour per n_ctx: data points and the fitted law with its cliff."""
    import numpy as np

    from jaxscale.context_law.evaluate import CHANCE_FLOOR
    from jaxscale.context_law.model import LawSpec, predict
    from jaxscale.plotting import figure, save

    spec = LawSpec(**result["spec"])
    names = result["task_names"]
    task = task or names[0]
    i = names.index(task)
    f = result["frames"][task]
    theta = result["fits"].theta[i]
    fig, ax = figure(size=(7.0, 4.5))
    cmap = __import__("matplotlib").colormaps["viridis"]
    ctxs = sorted(f["n_ctx"].unique())
    logC = float(np.median(np.log(f["C"])))
    g = float(f["chance"].iloc[0]) if CHANCE_FLOOR[result["source"]] else 0.0
    for j, c in enumerate(ctxs):
        col = cmap(j / max(len(ctxs) - 1, 1))
        s = f[f["n_ctx"] == c]
        ax.scatter(s["n_pmt"], s["score"], color=col, s=14, label=f"n_ctx={int(c)}")
        grid = np.geomspace(f["n_pmt"].min(), f["n_pmt"].max() * 1.3, 300)
        p = np.asarray(predict(spec, theta, np.full_like(grid, logC), grid, np.full_like(grid, c), g))
        ax.plot(grid, p, color=col, lw=1.5)
        ax.axvline(c, color=col, ls=":", lw=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("prompt length n_pmt (tokens)")
    ax.set_ylabel("score P")
    ax.set_title(f"{result['source']} / {task}: law with {spec.penalty} penalty (dotted: n_ctx)")
    ax.legend(fontsize=7, ncol=2)
    return save(fig, path)
