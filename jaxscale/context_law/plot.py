"""Figures of the context-law pillar (matplotlib via :mod:`jaxscale.plotting`)."""
from __future__ import annotations

__all__ = ["plot_fit", "plot_task"]


def plot_fit(result: dict, path, task: str | None = None):
    """P vs prompt length, one colour per n_ctx: data points and the fitted law with its cliff
    (an :func:`~jaxscale.context_law.evaluate.evaluate_source` result on bundled data)."""
    import numpy as np

    from jaxscale.context_law.evaluate import CHANCE_FLOOR
    from jaxscale.context_law.model import Spec, predict_law
    from jaxscale.plotting import figure, save

    spec = Spec(**result["spec"])
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
        p = np.asarray(predict_law(spec, theta, np.full_like(grid, logC), grid, np.full_like(grid, c), g))
        ax.plot(grid, p, color=col, lw=1.5)
        ax.axvline(c, color=col, ls=":", lw=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("prompt length n_pmt (tokens)")
    ax.set_ylabel("score P")
    ax.set_title(f"{result['source']} / {task}: law with {spec.penalty} penalty (dotted: n_ctx)", fontsize=10)
    ax.legend(fontsize=7, ncol=2)
    return save(fig, path)


def plot_task(fit, data, task: str | None = None, heldout=None, *, key=None, level: float = 0.9, path=None,
              max_panels: int = 6):
    """Scores vs prompt length, one panel per task, one colour per context limit, with the fitted
    law and its ``level`` band (at the task's median compute and chance floor), held-out rows
    marked ``x``, and the table's own column names on the axes.

    Args:
      fit: a context-law ``Fit``.
      data: the rows to draw (a ``Data`` with scores).
      task: one task label; ``None``: every task of ``data`` the fit knows, up to ``max_panels``
        (the title says how many were left out).
      heldout: optional boolean mask of held-out rows (drawn as crosses).
      key: PRNG key for a Bayesian fit's predictive draws.
      level: band level.
      path: save a PNG there (and close the figure) when given.
      max_panels: the most tasks drawn when ``task`` is ``None``.

    Returns:
      The figure, or the saved path when ``path`` is given.
    """
    import numpy as np

    from jaxscale.plotting import figure, save

    if task is not None and task not in fit.task_labels:
        raise ValueError(f"task {task!r} is not one of the fitted tasks {list(fit.task_labels)[:20]}")
    present = [t for t in np.asarray(data.task_labels)[np.unique(np.asarray(data.task))].tolist()
               if t in fit.task_labels]  # in the vocabulary's order
    tasks = [task] if task is not None else present[:max_panels]
    if not tasks:
        raise ValueError(f"none of the rows' tasks is one of the fitted tasks {list(fit.task_labels)[:20]}")
    ncol = min(3, len(tasks))
    nrow = -(-len(tasks) // ncol)
    fig, axes = figure(nrow, ncol, size=(7.0, 4.5) if len(tasks) == 1 else (4.6, 3.6), squeeze=False)
    for k, (ax, t) in enumerate(zip(axes.ravel(), tasks)):
        _draw_task(ax, fit, data, t, heldout, key, level, alone=len(tasks) == 1)
        if k:
            ax.get_legend().remove()  # the first panel's names the colours of all
    for ax in axes.ravel()[len(tasks):]:
        ax.axis("off")
    if len(tasks) > 1:
        more = f" ({len(tasks)} of {len(present)} tasks)" if len(present) > len(tasks) else ""
        fig.suptitle(f"context law at each task's median compute, {int(level * 100)} % band{more}; "
                     "x: held out, dotted: context limit", fontsize=10)
    return save(fig, path) if path is not None else fig


def _draw_task(ax, fit, data, task: str, heldout, key, level: float, alone: bool) -> None:
    import warnings

    import jax.numpy as jnp
    import numpy as np

    from jaxscale.context_law.contract import predict

    names = dict(fit.columns)
    code = fit.task_labels.index(task)
    labels = np.asarray(data.task_labels)[np.asarray(data.task)]
    rows = labels == task
    held = np.zeros(len(rows), bool) if heldout is None else np.asarray(heldout, bool)
    n_pmt, n_ctx, y = (np.asarray(a)[rows] for a in (data.n_pmt, data.n_ctx, data.y))
    y = y * data.score_scale  # predict answers on the table's scale
    log_c, floor = float(np.median(np.asarray(data.log_C)[rows])), float(np.median(np.asarray(data.floor)[rows]))
    held = held[rows]
    n_items = None if data.n_items is None else float(np.median(np.asarray(data.n_items)[rows]))
    cmap = __import__("matplotlib").colormaps["viridis"]
    ctxs = sorted(np.unique(n_ctx))
    grid = np.geomspace(n_pmt.min() / 1.5, n_pmt.max() * 1.5, 200)
    ctx_name = names.get("n_ctx", "n_ctx")
    for j, c in enumerate(ctxs):
        col = cmap(j / max(len(ctxs) - 1, 1))
        s = n_ctx == c
        ax.scatter(n_pmt[s & ~held], y[s & ~held], color=col, s=14, label=f"{ctx_name} = {int(c)}")
        ax.scatter(n_pmt[s & held], y[s & held], color=col, s=28, marker="x")
        q = data.replace(log_C=jnp.full(grid.shape, log_c), n_pmt=jnp.asarray(grid), n_ctx=jnp.full(grid.shape, c),
                         y=jnp.full(grid.shape, jnp.nan), weight=jnp.ones(grid.shape),
                         floor=jnp.full(grid.shape, floor), task=jnp.full(grid.shape, code, dtype=jnp.int32),
                         n_items=None if n_items is None else jnp.full(grid.shape, n_items),
                         task_labels=fit.task_labels, row=None)  # grid points, no rows of the user's table
        with warnings.catch_warnings():  # the curve is drawn past the limits on purpose
            warnings.filterwarnings("ignore", message=".*further past it than any training row.*")
            pred = predict(fit, q, key=key, level=level)
        ax.plot(grid, np.asarray(pred.mean), color=col, lw=1.5)
        ax.fill_between(grid, np.asarray(pred.lower), np.asarray(pred.upper), color=col, alpha=0.15, lw=0)
        ax.axvline(c, color=col, ls=":", lw=0.8)
    ax.set_xscale("log")
    ax.set_xlabel(f"prompt length {names.get('n_prompt', 'n_pmt')} (tokens)")
    score = names.get("target", "score")
    ax.set_ylabel(score if fit.score_scale == 1 else f"{score} (full scale {fit.score_scale:g})")
    ax.set_title(f"{task}: law at median compute, {int(level * 100)} % band\n(x: held out, dotted: {ctx_name})"
                 if alone else str(task), fontsize=10)
    ax.legend(fontsize=7, ncol=2)
