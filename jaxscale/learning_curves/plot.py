"""Figures of the learning-curve pillar (matplotlib via :mod:`jaxscale.plotting`, Agg when headless).

Held-out curves against the truth, the probabilistic law's fan of draws, and active-learning
traces; :func:`plot_heldout` draws a model's prediction of a split's held-out points,
:func:`plot_table_prediction` the prediction of rows of your own table, :func:`plot_extrapolation`
the rest of runs in progress and :func:`plot_recommend` which planned run to train next.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from jaxscale.plotting import _plt

__all__ = ["plot_curves", "plot_law_fan", "plot_active", "plot_heldout", "plot_table_prediction", "plot_extrapolation",
           "plot_table_law", "plot_recommend"]


def plot_curves(path, labels, L, C, held_labels, mean, cov, level=1.645):
    """Held-out curves: truth vs predictive mean with a 90% band; observed curves in grey."""
    plt = _plt()
    held = [tuple(h) for h in held_labels]
    P = L.shape[1]
    m = np.asarray(mean).reshape(-1, P) if np.ndim(mean) == 1 else np.asarray(mean).mean(0).reshape(-1, P)
    var = np.diagonal(np.asarray(cov), axis1=-2, axis2=-1)
    var = var if var.ndim == 1 else var.mean(0)
    sd = np.sqrt(np.maximum(var, 0)).reshape(-1, P)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for i, lab in enumerate(labels):
        if lab not in held:
            ax.plot(C[i], L[i], color="0.8", lw=0.8)
    colors = plt.cm.viridis(np.linspace(0, 0.9, len(held)))
    for j, (lab, col) in enumerate(zip(held, colors)):
        i = labels.index(lab)
        ax.fill_between(C[i], m[j] - level * sd[j], m[j] + level * sd[j], color=col, alpha=0.25, lw=0)
        ax.plot(C[i], m[j], color=col, lw=1.2, label=f"{lab[0]}x{lab[1]}")
        ax.plot(C[i], L[i], "o", color=col, ms=2.5)
    ax.set(xscale="log", yscale="log", xlabel="training compute C (FLOPs)", ylabel="validation loss",
           title="held-out curves: prediction (line, 90% band) vs truth (dots)")
    ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_law_fan(path, b1, b0, gt, frontier_c=None, frontier_l=None, u_range=(np.log(1e15), np.log(1e20))):
    """Law fan: 5-95% and 25-75% bands of ln L = b1 ln C + b0 over draws, median, ground-truth law."""
    plt = _plt()
    u = np.linspace(*u_range, 200)
    lines = np.asarray(b1)[:, None] * u[None] + np.asarray(b0)[:, None]
    q = np.quantile(lines, [0.05, 0.25, 0.5, 0.75, 0.95], axis=0)
    C = np.exp(u)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.fill_between(C, np.exp(q[0]), np.exp(q[4]), color="C0", alpha=0.2, lw=0, label="5-95% of draws")
    ax.fill_between(C, np.exp(q[1]), np.exp(q[3]), color="C0", alpha=0.35, lw=0, label="25-75%")
    ax.plot(C, np.exp(q[2]), color="C0", lw=1.5, label="median law")
    ax.plot(C, np.exp(gt.b1 * u + gt.b0), "k--", lw=1.5, label=f"ground truth ({gt.b1:.4f}, {gt.b0:.3f})")
    if frontier_c is not None:
        ax.plot(frontier_c, frontier_l, ".", color="C3", ms=3, label="true frontier")
    ax.axvspan(1e18, 1e20, color="0.9", zorder=-1)
    ax.set(xscale="log", yscale="log", xlabel="C (FLOPs)", ylabel="loss",
           title="probabilistic scaling law (shaded: frontier grid 1e18-1e20)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_active(path, summary: dict, key="abc_joint"):
    """AbC vs queries and vs cumulative PetaFLOPs, mean +- std over seeds, per strategy."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for s, d in summary.items():
        m, sd = np.asarray(d[key]["mean"]), np.asarray(d[key]["std"])
        pf = np.asarray(d["cum_pf"]["mean"])
        q = np.arange(len(m))
        for ax, x in ((axes[0], q), (axes[1], pf)):
            ax.plot(x, m, label=s, lw=1.4)
            ax.fill_between(x, np.maximum(m - sd, 0), m + sd, alpha=0.15, lw=0)
    axes[0].set(xlabel="queries", ylabel="AbC", title=f"AbC vs queries ({key})")
    axes[1].set(xlabel="cumulative training cost (PF)", ylabel="AbC", xscale="log", title="AbC vs cost")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _run_title(label, width: int = 34) -> str:
    """A run's name for a panel title: whole on one or two lines, its middle elided beyond that
    (both ends tell runs apart: a family prefix, a setting suffix)."""
    text = str(label)
    if len(text) <= width:
        return text
    if len(text) > 2 * width:
        text = text[:width - 1] + "\u2026" + text[-width:]
    cuts = [i + 1 for i, ch in enumerate(text) if ch in "_-/ .,=" and len(text) - width <= i + 1 <= width]
    cut = min(cuts, key=lambda i: abs(i - len(text) / 2)) if cuts else width
    return text[:cut] + "\n" + text[cut:]


def _log_ticks(ax, lo: float, hi: float) -> None:
    """Readable labels on a log axis over ``[lo, hi]``: 1-2-5 ticks when it spans under two
    decades (a default log axis would label one power of ten, or none), powers of ten otherwise."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    if hi > lo > 0 and np.log10(hi / lo) < 2:
        ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())


def plot_heldout(problem, pred, path, title: str = "") -> Path:
    """Predicted vs true held-out curves: mean over restarts, band = mean ± 2 sd of the restart mixture."""
    from jaxscale import plotting

    mean = np.asarray(pred.mean)
    var = np.diagonal(np.asarray(pred.cov), axis1=-2, axis2=-1) + np.asarray(pred.noise_var)
    mu = mean.mean(0)
    sd = np.sqrt(np.maximum(var.mean(0) + mean.var(0), 0.0))
    c = np.asarray(problem.test.c)
    x = np.asarray(problem.test.x)
    curves = np.unique(c)
    ncol = min(4, len(curves))
    nrow = int(np.ceil(len(curves) / ncol))
    fig, axes = plotting.figure(nrow, ncol, size=(3.2, 2.6), squeeze=False)
    R = problem.n_reps
    for ax, k in zip(axes.ravel(), curves):
        m = c == k
        o = np.argsort(x[m])
        xs = x[m][o]
        plotting.band(ax, xs, mu[m][o], mu[m][o] - 2 * sd[m][o], mu[m][o] + 2 * sd[m][o], label="pred ±2sd")
        ax.plot(xs, problem.y_test[m][o], "k.", ms=5, label="truth")
        ax.set_title(f"{problem.data.task_labels[k // R]} / {problem.data.replicate_labels[k % R]}", fontsize=9)
        ax.set_xlabel("x (ln step)", fontsize=8)
    for ax in axes.ravel()[len(curves):]:
        ax.axis("off")
    axes.ravel()[0].legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    return plotting.save(fig, path)


def plot_table_prediction(train, query, pred, title: str = "", max_panels: int = 8, samples: int = 5,
                          level: float = 0.9):
    """One panel per predicted curve of your own table: the task's training curves (grey), the
    prediction (mean and ``level`` interval band; a few joint draws when ``pred.samples`` is set)
    and the truth of the query rows where known, labelled with the table's column names.
    ``train``/``query`` are ``learning_curves.Data``; returns the matplotlib figure (not saved).
    """
    from jaxscale import plotting
    from jaxscale.learning_curves.frame import curve_ids

    R = max(query.n_instances, 1)
    cq, ct = curve_ids(query), curve_ids(train)
    curves = list(dict.fromkeys(cq.tolist()))[:max_panels]
    ncol = min(4, len(curves))
    nrow = int(np.ceil(len(curves) / ncol))
    fig, axes = plotting.figure(nrow, ncol, size=(3.4, 2.7), squeeze=False)
    xq, yq, xt, yt = (np.asarray(a, float) for a in (query.x, query.y, train.x, train.y))
    mean, lo, hi = (np.asarray(a) for a in (pred.mean, pred.lower, pred.upper))
    names = dict(train.columns)
    task_name, inst_name = names.get("task", "task"), names.get("instance")
    for ax, c in zip(axes.ravel(), curves):
        d = c // R
        for i, other in enumerate(np.unique(ct[np.asarray(train.task) == d])):
            m = ct == other
            o = np.argsort(xt[m])
            ax.plot(np.exp(xt[m][o]), yt[m][o], color="0.5", lw=1, ls="--",
                    label="training runs, same task" if i == 0 else None)
        m = cq == c
        o = np.argsort(xq[m])
        steps = np.exp(xq[m][o])
        plotting.band(ax, steps, mean[m][o], lo[m][o], hi[m][o], label=f"prediction, {level:.0%} interval")
        if pred.samples is not None:
            for s in np.asarray(pred.samples)[:samples, m][:, o]:
                ax.plot(steps, s, lw=0.6, alpha=0.6, color="C0")
        if np.isfinite(yq[m]).any():
            ax.plot(steps, yq[m][o], "k.", ms=5, label="truth")
        ax.set_xscale("log")
        _log_ticks(ax, min(steps.min(), np.exp(xt.min())), steps.max())
        inst = f" / {inst_name} {query.instance_labels[c % R]}" if inst_name else ""
        ax.set_title(_run_title(f"{task_name} {query.task_labels[d]}{inst}"), fontsize=9)
        ax.set_xlabel(names.get("x", "step"), fontsize=8)
        ax.set_ylabel(names.get("target", "loss"), fontsize=8)
    for ax in axes.ravel()[len(curves):]:
        ax.axis("off")
    axes.ravel()[0].legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def plot_extrapolation(data, fit, baselines: dict | None = None, title: str = "", max_panels: int = 8,
                       level: float = 0.9):
    """One panel per run in progress (at most ``max_panels``, spread over the runs in their
    order): its early part (filled dots), the rest where the table has it (open circles), the
    prediction of the rest (median and ``level`` interval band), each baseline's prediction (dashed) and
    the last early step (dotted). Each panel shows as many e-folds of the step before the last
    early one as the prediction reaches beyond it (at least one), so the tail is not dwarfed by
    the first steps' loss. ``data`` is a ``TailData``, ``fit`` the ``TailFit`` of
    :func:`jaxscale.learning_curves.extrapolate.extrapolate` (or the GP's), ``baselines`` maps a
    name to its prediction of ``fit.rows``. Returns the matplotlib figure (not saved)."""
    from jaxscale import plotting

    rows = np.asarray(fit.rows)
    curve, x, y, early = (np.asarray(a) for a in (data.curve, data.x, data.y, data.train))
    mean, lo, hi = (np.asarray(a, float) for a in (fit.prediction.mean, fit.prediction.lower, fit.prediction.upper))
    runs = list(dict.fromkeys(curve[rows].tolist()))
    shown = [runs[i] for i in np.unique(np.linspace(0, len(runs) - 1, min(max_panels, len(runs))).round().astype(int))]
    ncol = min(4, len(shown))
    nrow = int(np.ceil(len(shown) / ncol))
    fig, axes = plotting.figure(nrow, ncol, size=(3.4, 2.7), squeeze=False, layout="constrained")
    names = dict(data.columns)  # the user's column names (none for a table built without them)
    x_name, y_name = names.get("x", "step"), names.get("target")
    for ax, c in zip(axes.ravel(), shown):
        t = np.flatnonzero(curve[rows] == c)
        t = t[np.argsort(x[rows[t]])]
        xt, yt = x[rows[t]], y[rows[t]]
        e = np.flatnonzero((curve == c) & early)
        e = e[np.argsort(x[e])]
        cut = x[e].max() if e.size else None
        if cut is not None:
            e = e[x[e] >= cut * np.exp(-max(np.log(xt.max() / cut), 1.0))]
        ax.plot(x[e], y[e], "k.", ms=4, label="early part")
        known = np.isfinite(yt)
        if known.any():
            ax.plot(xt[known], yt[known], "o", mfc="none", mec="0.55", ms=3.5, label="the rest (truth)")
        plotting.band(ax, xt, mean[t], lo[t], hi[t], label=f"prediction, {level:.0%} interval", color="C0")
        for k, (name, b) in enumerate((baselines or {}).items()):
            ax.plot(xt, np.asarray(b, float)[t], ls="--", lw=1, color=f"C{k + 1}", label=name.replace("_", " "),
                    marker="_" if xt.size == 1 else None, ms=10)  # one point to predict: a line would not show
        if cut is not None:
            ax.axvline(cut, color="0.6", lw=0.8, ls=":", label="last early step")
        ax.set_xscale("log")
        _log_ticks(ax, x[e].min() if e.size else xt.min(), xt.max())
        ax.set_title(_run_title(data.labels[c]), fontsize=8)
        ax.set_xlabel(x_name, fontsize=8)
        if y_name:
            ax.set_ylabel(y_name, fontsize=8)
    for ax in axes.ravel()[len(shown):]:
        ax.axis("off")
    handles, labels = axes.ravel()[0].get_legend_handles_labels()  # below the panels: it hides no curve
    fig.legend(handles, labels, loc="outside lower center", ncol=min(len(labels), 6), fontsize=8, frameon=False)
    fig.suptitle((f"{title}: " if title else "") + f"{len(shown)} of {len(runs)} runs in progress", fontsize=10)
    return fig


def plot_table_law(data, held, pred, summary: dict, title: str = ""):
    """The law of your own table (:func:`jaxscale.learning_curves.law.table_law`): loss against
    training compute, log-log. The training curves (grey), each held-out curve's prediction (mean
    and interval band) and its truth where known, and the laws ``ln L = b1 ln C + b0``: the
    model's (posterior-mean b1, b0, with the 90 % band of b1 in the legend), the held-out curves'
    true one and each naive baseline's. ``pred`` is the prediction of the held-out rows, in their
    order; ``summary`` the JSON-ready dict. Returns the figure (not saved)."""
    from matplotlib.ticker import FormatStrFormatter

    from jaxscale import plotting
    from jaxscale.learning_curves.frame import curve_ids

    held = np.asarray(held, bool)
    C, y, ids = np.asarray(data.compute, float), np.asarray(data.y, float), curve_ids(data)
    mean, lo, hi = (np.asarray(a, float) for a in (pred.mean, pred.lower, pred.upper))
    fig, ax = plotting.figure(1, 1, size=(6.2, 4.6))
    for i, c in enumerate(np.unique(ids[~held])):
        m = np.flatnonzero((ids == c) & ~held)
        m = m[np.argsort(C[m])]
        ax.plot(C[m], y[m], color="0.6", lw=0.8, label="training curves" if i == 0 else None)
    pos = np.flatnonzero(held)
    for i, c in enumerate(np.unique(ids[held])):
        k = np.flatnonzero(ids[pos] == c)
        k = k[np.argsort(C[pos[k]])]
        plotting.band(ax, C[pos[k]], mean[k], lo[k], hi[k], color="C0", alpha=0.2,
                      label="held-out curves, predicted" if i == 0 else None)
        if np.isfinite(y[pos[k]]).any():
            ax.plot(C[pos[k]], y[pos[k]], "k.", ms=3, label="held-out curves, true" if i == 0 else None)
    grid = np.geomspace(summary["grid"]["min"], summary["grid"]["max"], 50)
    b1 = summary["b1"]
    ax.plot(grid, np.exp(b1["mean"] * np.log(grid) + summary["b0"]["mean"]), color="C3", lw=2.4, zorder=5,
            label=f"law, model (b1 = {b1['mean']:.3f}, {100 * summary['level']:.0f} % band "
                  f"{b1['lo']:.3f} to {b1['hi']:.3f})")
    if summary.get("gt"):
        g = summary["gt"]
        ax.plot(grid, np.exp(g["b1"] * np.log(grid) + g["b0"]), "k--", lw=1.2, zorder=6,
                label=f"law, true (b1 = {g['b1']:.3f})")
    laws = {k: v for k, v in summary.get("baseline_laws", {}).items() if isinstance(v, dict) and "b1" in v}
    for k, (name, v) in enumerate(laws.items()):
        ax.plot(grid, np.exp(v["b1"] * np.log(grid) + v["b0"]), ls=":", lw=1.4, color=f"C{k + 1}", zorder=6,
                label=f"law, {name.replace('_', ' ')} (b1 = {v['b1']:.3f})")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(FormatStrFormatter("%g"))  # losses span less than a decade: plain numbers
    ax.yaxis.set_minor_formatter(FormatStrFormatter("%g"))
    ax.set_xlabel("training compute (FLOPs)")
    ax.set_ylabel(dict(data.columns).get("target", "loss"))
    ax.legend(fontsize=7)
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


def plot_recommend(rec: dict, top: int = 12):
    """Which run to train next, from the dict of :func:`.active.recommend`. Left: final loss against
    training compute (PetaFLOPs, log scale): the finished runs, the law ``ln L = b1 ln C + b0``
    today (mean of the draws), and the ``top`` best candidates' predicted final losses with their
    bands, numbered by rank. Right: each candidate's expected reduction of Var(b1) against its cost;
    the recommended run and the cheapest are marked. Returns the figure (not saved)."""
    from jaxscale import plotting

    fig, (a, b) = plotting.figure(1, 2, size=(5.2, 3.9))
    fin = rec["finished"]
    a.plot([f["cost_pf"] for f in fin], [f["final_loss"] for f in fin], "ko", ms=4, label="finished runs")
    ranking = rec["ranking"][:top]
    costs = np.array([r["cost_pf"] for r in rec["ranking"]] + [f["cost_pf"] for f in fin])
    c = np.geomspace(costs.min(), costs.max(), 50)
    b1, b0 = rec["law"]["b1"]["mean"], rec["law"]["b0"]["mean"]
    a.plot(c, np.exp(b1 * np.log(c * 1e15) + b0), color="0.4", lw=1, label=f"law today (b1 = {b1:.3g})")
    for r in ranking:
        f = r["final_loss"]
        color = "C3" if r["rank"] == 1 else "C0"
        a.errorbar(r["cost_pf"], f["mean"], yerr=[[f["mean"] - f["lo"]], [f["hi"] - f["mean"]]], fmt="s", ms=4,
                   color=color, capsize=2, alpha=0.85)
        a.annotate(str(r["rank"]), (r["cost_pf"], f["mean"]), fontsize=7, xytext=(3, 3), textcoords="offset points")
    a.plot([], [], "s", color="C0", label=f"candidates (rank; {int(100 * rec['level'])} % band)")
    a.set(xscale="log", xlabel="training compute (PetaFLOPs)", ylabel="final loss")
    a.legend(fontsize=7)
    every = rec["ranking"]
    b.scatter([r["cost_pf"] for r in every], [100 * r["var_b1_reduction_fraction"] for r in every], s=14, color="C0")
    best, cheap = every[0], rec["smallest_first"]
    b.scatter([best["cost_pf"]], [100 * best["var_b1_reduction_fraction"]], s=90, marker="*", color="C3",
              label=f"next: {tuple(best['curve'])}", zorder=3)
    ch = next(r for r in every if r["curve"] == cheap["curve"])
    b.scatter([ch["cost_pf"]], [100 * ch["var_b1_reduction_fraction"]], s=60, facecolors="none", edgecolors="k",
              label=f"cheapest: {tuple(ch['curve'])}", zorder=3)
    for r in every[:top]:
        b.annotate(str(r["rank"]), (r["cost_pf"], 100 * r["var_b1_reduction_fraction"]), fontsize=7, xytext=(3, 3),
                   textcoords="offset points")
    b.set(xscale="log", xlabel="cost (PetaFLOPs)", ylabel="expected fall of Var(b1) (%)",
          title="ranked by fall per PetaFLOP")
    b.legend(fontsize=7)
    from matplotlib.ticker import NullFormatter

    for ax in (a, b):
        ax.xaxis.set_minor_formatter(NullFormatter())  # log-axis minor labels overlap over a narrow range
    fig.tight_layout()
    return fig
