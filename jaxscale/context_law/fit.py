"""Two-stage point fit of the context law: differential evolution (global) then L-BFGS (local).

Stage 1 is :func:`jaxscale.infer.evolution.de_run` over the box of :func:`param_bounds`; stage 2 is
:func:`jaxscale.infer.minimize_lbfgs` on ``u`` with theta = lo + (hi - lo) sigmoid(u) (stays in the
box, like SciPy's L-BFGS-B polish), accepted only when it lowers the loss.  Everything is one
compiled program: :func:`fit_core` runs ``spec.restarts`` seeded runs (vmapped) on one data set and
keeps the best; it can itself be ``vmap``-ped over keys or over tasks stacked on a leading axis
(padded rows carry weight 0), which is what :func:`fit_many` and the pillar's ``fit`` do.

Repeated cells are fitted once (:func:`compress`): rows with the same compute, prompt length,
context limit and chance floor have the same prediction, so under the squared error their
weighted sum equals ``W (ybar - p)^2`` (W = summed weight, ybar = weighted mean score) plus the
within-cell sum of squares, a constant carried as the loss ``offset``; under the absolute error only
rows that also share the score are merged (their weights add). Either way the loss, hence the
fit, equals the uncompressed one up to float rounding. The cell count is padded (weight-0 copies)
to the next of 8, 12, 16, 24, 32, 48, 64, ..., so tables of similar size reuse one compiled program.
"""
from __future__ import annotations

import functools
import warnings
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import export as jax_export

from jaxscale import _programs as programs
from jaxscale._pytree import register_serializable
from jaxscale.config import warn_if_float32
from jaxscale.context_law.model import ContextData, Spec, mse_loss, param_bounds, param_names
from jaxscale.infer import minimize_lbfgs, sharded_vmap
from jaxscale.infer.evolution import de_run

__all__ = ["ContextFit", "fit_core", "fit_law", "fit_many", "check_identifiability", "theta_dict",
           "convergence_reason", "warn_not_converged", "params_at_bounds", "bound_messages", "compress",
           "compress_tasks"]


@register_serializable
class ContextFit(NamedTuple):
    """Result of :func:`fit_core` / :func:`fit_law` (leaves get a leading task axis from
    :func:`fit_many`).

    Attributes:
      theta: fitted parameters, in the order of :func:`param_names`.
      loss: final loss (DE's, or the polished one when the polish lowered it).
      de_loss: best loss of the DE population.
      de_generations: DE generations run.
      de_converged: DE met its tolerance before ``maxiter``.
      lbfgs_steps: L-BFGS steps of the polish (0 without polish).
      polished: the polish was accepted (it lowered the loss and stayed finite).
    """

    theta: jax.Array
    loss: jax.Array
    de_loss: jax.Array
    de_generations: jax.Array
    de_converged: jax.Array
    lbfgs_steps: jax.Array
    polished: jax.Array


# a traced program returning a ContextFit can be kept on disk (jaxscale._programs)
jax_export.register_namedtuple_serialization(ContextFit, serialized_name="jaxscale.context_law.ContextFit")


@functools.lru_cache(maxsize=None)
def _losses(spec: Spec):
    def de_loss(theta, data, offset):
        return mse_loss(theta, spec, data, offset)

    def box_loss(u, data, offset, lo, hi):
        return mse_loss(lo + (hi - lo) * jax.nn.sigmoid(u), spec, data, offset)

    return de_loss, box_loss


@partial(programs.light_jit, static_argnames=("spec", "popsize", "maxiter", "polish"))
def _fit_one(key, data, offset, spec: Spec, popsize: int, maxiter: int, tol, polish: bool):
    de_loss, box_loss = _losses(spec)
    bounds = jnp.asarray(param_bounds(spec), dtype=data.y.dtype)
    lo, hi = bounds[:, 0], bounds[:, 1]
    offset = jnp.asarray(offset, dtype=data.y.dtype)
    state, info = de_run(key, de_loss, bounds, data, offset, popsize=popsize, maxiter=maxiter, tol=tol)
    x0 = state.best_x
    if not polish:
        return ContextFit(x0, state.best_fitness, state.best_fitness, state.generation, state.converged,
                          jnp.asarray(0), jnp.asarray(False))
    frac = jnp.clip((x0 - lo) / (hi - lo), 1e-7, 1 - 1e-7)
    res = minimize_lbfgs(box_loss, jnp.log(frac) - jnp.log1p(-frac), data, offset, lo, hi, max_steps=300, tol=1e-10)
    theta = lo + (hi - lo) * jax.nn.sigmoid(res.params)
    better = jnp.isfinite(res.loss) & jnp.all(jnp.isfinite(theta)) & (res.loss <= state.best_fitness)
    return ContextFit(jnp.where(better, theta, x0), jnp.where(better, res.loss, state.best_fitness),
                      state.best_fitness, state.generation, state.converged, res.n_steps, better)


@partial(programs.light_jit, static_argnames=("spec", "popsize", "maxiter", "polish", "restarts", "shard"))
def _fit_restarts(key, data, offset, spec, popsize, maxiter, tol, polish, restarts, shard=True):
    # ``shard``: split the restarts over all devices (off when the tasks axis around it already is)
    if restarts == 1:
        return _fit_one(key, data, offset, spec, popsize, maxiter, tol, polish)
    one = lambda k: _fit_one(k, data, offset, spec, popsize, maxiter, tol, polish)  # noqa: E731
    keys = jax.random.split(key, restarts)
    fits = sharded_vmap(one, keys) if shard else jax.vmap(one)(keys)
    i = jnp.argmin(jnp.where(jnp.isfinite(fits.loss), fits.loss, jnp.inf))
    return jax.tree_util.tree_map(lambda x: x[i], fits)


def _settings(spec: Spec) -> tuple:
    return (spec.law(), int(spec.popsize), int(spec.maxiter), float(spec.tol), bool(spec.polish), int(spec.restarts))


def _fit_tasks_program(keys, data, offsets, spec: Spec, impl: str | None):
    # ``keys`` as raw key data (``impl``: their PRNG implementation; None: legacy uint32 keys)
    keys = keys if impl is None else jax.random.wrap_key_data(keys, impl=impl)
    # tasks split over all devices (one device: a plain vmap); the restarts inside stay on the task's device
    return sharded_vmap(lambda a: _fit_restarts(a[0], a[1], a[2], *_settings(spec), shard=False),
                        (keys, data, offsets))


def _fit_tasks(keys, data, offsets, spec: Spec):
    """Fit every task of ``data`` (leaves (T, m)): task ``t`` with ``keys[t]`` and loss offset
    ``offsets[t]`` (see :func:`compress_tasks`); one compiled program for all tasks, kept traced
    on disk between processes (:mod:`jaxscale._programs`; its tracing takes seconds)."""
    typed = jax.dtypes.issubdtype(keys.dtype, jax.dtypes.prng_key)
    impl = str(jax.random.key_impl(keys)) if typed else None
    kd = jax.random.key_data(keys) if typed else keys
    return programs.call("context_fit_tasks", _fit_tasks_program,
                         (kd, data, jnp.asarray(offsets, dtype=data.y.dtype)), (spec.point(), impl), light=True)


def fit_core(key, data, spec: Spec = Spec(), offset=0.0) -> ContextFit:
    """The numerical core: DE + L-BFGS of ONE law on every row of ``data`` with weight > 0.

    ``spec.restarts`` independent runs (vmapped, split over all devices) keep the lowest loss. Task codes are ignored:
    to fit one law per task, stack the tasks on a leading axis (padding with weight-0 rows) and
    ``jax.vmap`` this function over them, as ``fit`` does. Pure and compiled (``spec`` static):
    ``jax.vmap(lambda k: fit_core(k, data, spec))(keys)`` equals separate calls. No checks
    here: ``fit`` validates the design and reports non-convergence. Rows are used as given
    (:func:`compress` merges repeated cells first, as ``fit_law``, ``fit_many`` and ``fit`` do).

    Args:
      key: PRNG key of the DE populations.
      data: a pillar ``Data`` (or ``ContextData``) with 1-D rows.
      spec: law form and optimiser settings (:class:`Spec`).
      offset: constant added to the weighted error sum before dividing by the summed weight (the
        within-cell sum of squares returned by :func:`compress`; 0 for uncompressed rows).

    Returns:
      :class:`ContextFit` (theta, loss and DE / polish diagnostics).
    """
    task = getattr(data, "task", None)  # a pillar Data's task codes, when concrete (not under jit / vmap)
    if task is not None and not isinstance(task, jax.core.Tracer) and np.ndim(task) == 1:
        codes = np.unique(np.asarray(task))
        if codes.size > 1:
            names = [data.task_labels[int(c)] for c in codes[:3]]
            warnings.warn(f"context-law fit_core: one law is fitted to the pooled rows of {codes.size} tasks "
                          f"({names}...): task codes are ignored here. fit() fits one law per task (or stack the "
                          "tasks on a leading axis and vmap fit_core over them)", UserWarning, stacklevel=2)
    return _fit_restarts(key, data, offset, *_settings(spec))


def _bucket(n: int) -> int:
    """Padded cell count: the next of 8, 12, 16, 24, 32, 48, ... (powers of two and 1.5 times them),
    so a table of similar size reuses the compiled program and padding wastes at most a third."""
    b = 8
    while b < n:
        b = b * 3 // 2 if b & (b - 1) == 0 else b * 4 // 3
    return b


def _compress_rows(log_C, n_pmt, n_ctx, y, w, floor, mse: bool):
    """One task's rows with weight > 0 -> (cell arrays, offset); see :func:`compress`."""
    keep = w > 0
    cols = [log_C[keep], n_pmt[keep], n_ctx[keep], floor[keep]] + ([] if mse else [y[keep]])
    yk, wk = y[keep], w[keep]
    if yk.size == 0:  # nothing to fit: one weight-0 cell (the loss is 0/0, as without compression)
        return [log_C[:1], n_pmt[:1], n_ctx[:1], np.zeros(1), np.zeros(1), floor[:1]], 0.0
    order = np.lexsort(cols[::-1])
    first = np.ones(order.size, bool)
    first[1:] = np.any([np.diff(c[order]) != 0 for c in cols], axis=0)
    cell = np.cumsum(first) - 1  # cell of each sorted row
    n_cells = int(cell[-1]) + 1
    ws, ys = wk[order], yk[order]
    W = np.bincount(cell, weights=ws, minlength=n_cells)
    ybar = np.bincount(cell, weights=ws * ys, minlength=n_cells) / W
    offset = float(np.sum(ws * (ys - ybar[cell]) ** 2)) if mse else 0.0
    head = order[first]
    by_first = np.argsort(head, kind="stable")  # cells in the order of their first row, as given
    head, ybar, W = head[by_first], ybar[by_first], W[by_first]
    return [log_C[keep][head], n_pmt[keep][head], n_ctx[keep][head], ybar, W, floor[keep][head]], offset


def _compress_arrays(data, spec: Spec):
    """NumPy cells (T, m') and offsets (T,) of stacked ``data``; see :func:`compress_tasks`."""
    arrs = [np.asarray(getattr(data, f), dtype=float) for f in ContextData._fields]
    mse = spec.loss == "mse"
    out = [_compress_rows(*[a[t] for a in arrs], mse=mse) for t in range(arrs[0].shape[0])]
    width = _bucket(max(len(c[3]) for c, _ in out))
    cols = []
    for j in range(len(ContextData._fields)):
        rows = []
        for c, _ in out:
            a, pad = c[j], width - len(c[j])
            rows.append(np.concatenate([a, np.zeros(pad) if j == 4 else np.repeat(a[:1], pad)]))
        cols.append(np.stack(rows))
    return cols, np.asarray([o for _, o in out])


def compress_tasks(data, spec: Spec = Spec()):
    """:func:`compress` for stacked tasks: ``data`` leaves (T, m) -> cells (T, m') and offsets (T,).

    Each task is compressed with its own weights; all tasks are padded to one width (see :func:`compress`).
    """
    cols, offsets = _compress_arrays(data, spec)
    dtype = np.asarray(data.y).dtype
    return ContextData(*[jax.device_put(c.astype(dtype)) for c in cols]), jax.device_put(offsets.astype(dtype))


def compress(data, spec: Spec = Spec()):
    """Merge repeated cells of 1-D ``data`` into one weighted row each; returns ``(cells, offset)``
    with ``mse_loss(theta, spec, cells, offset) == mse_loss(theta, spec, data)`` up to rounding.

    Rows with weight > 0 sharing compute, prompt length, context limit and chance floor (and, for
    ``spec.loss == "mae"``, the score) become one row whose weight is their summed weight and whose
    score is their weighted mean score; ``offset`` is the within-cell weighted sum of squares
    (0 for ``mae``). Rows with weight 0 are dropped, and the result is padded with weight-0 copies
    to the next of 8, 12, 16, 24, 32, 48, 64, ... rows. A :class:`ContextData` (the fields the loss reads) is returned.

    Args:
      data: a pillar ``Data`` or ``ContextData`` with 1-D rows.
      spec: its ``loss`` decides which rows can merge.
    """
    one = ContextData(*[np.asarray(getattr(data, f))[None] for f in ContextData._fields])
    cols, offsets = _compress_arrays(one, spec)
    dtype = one.y.dtype
    return ContextData(*[jax.device_put(c[0].astype(dtype)) for c in cols]), jax.device_put(offsets[0].astype(dtype))


def _compute_levels(log_C) -> int:
    """Distinct compute levels, clustering values within 10 % of each other."""
    v = np.sort(np.unique(np.round(np.asarray(log_C), 12)))
    if v.size == 0:
        return 0
    return int(1 + np.sum(np.diff(v) > np.log(1.1)))


_FREE_FEWER = {"log_scale": "--no-fit-scale (Spec(fit_scale=False))", "log_shift": "--no-fit-shift (Spec(fit_shift=False))",
               "alpha": "--no-fit-alpha (Spec(fit_alpha=False))", "gamma": "no --decay (Spec(decay=False))"}


def _column(data, role: str, default: str) -> str:
    """The quoted name of the column playing ``role`` (``'N' x 'D'`` for compute from N and D)."""
    cols = dict(getattr(data, "columns", ()) or ())
    if role == "c" and "c" not in cols and "n" in cols:
        return f"{cols['n']!r} x {cols['d']!r}"
    return repr(cols.get(role, default))


def check_identifiability(data, spec: Spec, what: str = "context-law fit", task=None, *,
                          min_rows: bool = False, notes: list | None = None) -> None:
    """Refuse designs that cannot pin the requested parameters; warn on weak ones.

    Looks at the rows with weight > 0 (one task). Errors (``ValueError``, naming the column, the
    task, the count and the fix): a constant score; a single prompt length; a single compute level
    while alpha is fitted; with ``min_rows``, fewer rows than free parameters + 1 (``fit``,
    ``fit_law`` and ``fit_many`` check it). Warnings: two compute levels with alpha fitted, two
    prompt lengths, and no row past the context limit while the cliff's width is fitted.

    Args:
      data: one task's rows (a pillar ``Data`` or ``ContextData``; 1-D leaves).
      spec: the law form (its free parameters).
      what: the fit's name in messages.
      task: the task's label in messages (None: no task named).
      min_rows: also require at least one row more than the free parameters.
      notes: a list to append the weak-design messages to instead of warning them (for fixed,
        documented designs such as the bundled experiments).
    """
    w = np.asarray(data.weight) > 0
    n = int(w.sum())
    log_C = np.asarray(data.log_C)[w]
    n_pmt = np.asarray(data.n_pmt)[w]
    n_ctx = np.asarray(data.n_ctx)[w]
    y = np.asarray(data.y)[w]
    where = f"{what}" + (f" [task {task!r}]" if task is not None else "")
    of_task = f" of task {task!r}" if task is not None else ""
    target = _column(data, "target", "score")
    pcol = _column(data, "n_prompt", "n_pmt")
    ccol = _column(data, "c", "C")
    if n and np.all(y == y[0]):
        raise ValueError(
            f"{where}: column {target} is constant ({y[0]:g}) in all {n} training rows{of_task}: a constant score "
            "says nothing about compute or context, and the law would be fitted to nothing. Check the score column "
            "(--score-col), or leave this task out (--where).")
    n_levels = np.unique(np.round(np.log(n_pmt), 9)).size
    if n and n_levels < 2:
        raise ValueError(
            f"{where}: column {pcol} has one prompt length ({n_pmt[0]:g} tokens) in all {n} training "
            f"rows{of_task}: the context factor's b and beta are underdetermined. Add cells at other prompt lengths "
            "(at least 2; 3 or more to pin its curvature).")
    levels = _compute_levels(log_C)
    if spec.fit_alpha and levels < 2:
        raise ValueError(
            f"{where}: alpha (compute exponent) is underdetermined: all {n} rows{of_task} sit at one compute "
            f"level (column {ccol}: C ~ {np.exp(np.median(log_C)):.3g} FLOPs, spread < 10 %). Use "
            "Spec(fit_alpha=False) (CLI: --no-fit-alpha; alpha is then fixed and the compute factor is absorbed into "
            "a) or add models of other compute.")
    names = param_names(spec)
    if min_rows and n < len(names) + 1:
        fewer = [_FREE_FEWER[p] for p in names if p in _FREE_FEWER]
        raise ValueError(
            f"{where}: {n} training rows{of_task} for {len(names)} free parameters {list(names)}; a fit needs at "
            f"least {len(names) + 1} rows (one more than the parameters), or it only interpolates noise. Add cells "
            "(other prompt lengths or models)" + (f", or free fewer parameters: {', '.join(fewer)}" if fewer else "")
            + ".")
    weak = []
    if spec.fit_alpha and levels == 2:
        weak.append(f"{where}: only 2 compute levels (column {ccol}), so (a, alpha) are pinned by two numbers; "
                    "extrapolation in compute is unreliable (expect a wide posterior over alpha).")
    if spec.penalty != "none" and spec.fit_scale and spec.penalty != "step" and not np.any(n_pmt > n_ctx):
        weak.append(f"{where}: no row has n_pmt > n_ctx, so the penalty scale is unconstrained by the data "
                    "(any sharp cliff fits); consider Spec(fit_scale=False) (CLI: --no-fit-scale).")
    if n_levels == 2:
        weak.append(f"{where}: only 2 distinct prompt lengths in column {pcol}; (b, beta) are poorly determined.")
    for msg in weak:
        if notes is not None:
            notes.append(msg)
        else:
            warnings.warn(msg, UserWarning, stacklevel=3)


def warn_not_converged(fit: ContextFit, spec: Spec, what: str, labels=None) -> None:
    """One warning per task whose DE stopped at ``spec.maxiter`` (the reason names the fix)."""
    conv = np.asarray(fit.de_converged).reshape(-1)
    gens = np.asarray(fit.de_generations).reshape(-1)
    pol = np.asarray(fit.polished).reshape(-1)
    for t in np.flatnonzero(~conv):
        name = labels[t] if labels is not None else t
        warnings.warn(f"{what} [task {name}]: {convergence_reason(False, gens[t], pol[t], spec)}", UserWarning,
                      stacklevel=3)


def _check_result(fit: ContextFit, what: str, labels=None) -> None:
    bad = ~np.isfinite(np.asarray(fit.loss)).reshape(-1)
    if bad.any():
        ids = np.flatnonzero(bad)[:10].tolist()
        which = [labels[i] for i in ids] if labels is not None else ids
        raise ValueError(f"{what}: non-finite loss for task(s) {which} after DE+L-BFGS; "
                         "check the data for zero prompt lengths or scores outside [0, 1].")


def _override(spec: Spec, **settings) -> Spec:
    return spec._replace(**{k: v for k, v in settings.items() if v is not None})


def fit_law(key, data, spec: Spec = Spec(), *, popsize: int | None = None, maxiter: int | None = None,
            tol: float | None = None, polish: bool | None = None, restarts: int | None = None,
            what: str = "context-law fit") -> ContextFit:
    """Fit one data set (checks + :func:`fit_core`): DE (best1bin, ``popsize`` x n_params members)
    then bounded L-BFGS.  Settings given here override the ``spec``'s. Repeated cells are fitted
    once (:func:`compress`; the result equals the fit of the rows as given, up to rounding), after
    the checks, which count and name the rows as given."""
    spec = _override(spec, popsize=popsize, maxiter=maxiter, tol=tol, polish=polish, restarts=restarts).check()
    warn_if_float32(what)
    check_identifiability(data, spec, what, min_rows=True)
    cells, offset = compress(data, spec)
    fit = fit_core(key, cells, spec, offset)
    _check_result(fit, what)
    warn_not_converged(fit, spec, what)
    return fit


def fit_many(key, data, spec: Spec = Spec(), *, popsize: int | None = None, maxiter: int | None = None,
             tol: float | None = None, polish: bool | None = None, restarts: int | None = None,
             what: str = "context-law fit", labels=None, notes: list | None = None) -> ContextFit:
    """Fit many tasks at once: ``data`` leaves have a leading task axis; DE and L-BFGS are vmapped,
    the tasks split over all devices (:func:`jaxscale.infer.sharded_vmap`).

    Task ``t`` gets the key ``jax.random.split(key, n_tasks)[t]``. ``labels`` name the tasks in
    messages. Each task's design is checked first (:func:`check_identifiability`, with the row
    count; weak-design messages go to ``notes`` when a list is given, else they are warned), and
    every task whose DE stopped at ``maxiter`` is warned. Each task's repeated cells are then
    fitted once (:func:`compress_tasks`; same result as the rows as given, up to rounding).
    """
    spec = _override(spec, popsize=popsize, maxiter=maxiter, tol=tol, polish=polish, restarts=restarts).check()
    warn_if_float32(what)
    n_tasks = data.y.shape[0]
    host = jax.tree_util.tree_map(np.asarray, data)  # indexed on the host: no program per task
    for t in range(n_tasks):  # host-side design checks only (cheap, no fitting)
        name = labels[t] if labels is not None else t
        check_identifiability(jax.tree_util.tree_map(lambda x: x[t], host), spec, what, task=name, min_rows=True,
                              notes=notes)
    cells, offsets = compress_tasks(data, spec)
    fit = _fit_tasks(jax.random.split(key, n_tasks), cells, offsets, spec)
    _check_result(fit, what, labels)
    warn_not_converged(fit, spec, what, labels)
    return fit


def convergence_reason(converged, generations, polished, spec: Spec) -> str:
    """Plain-language outcome of one task's DE + polish."""
    g = int(generations)
    if bool(converged):
        text = f"DE converged after {g} generations (population spread <= tol={spec.tol:g} x |mean loss|)"
    else:
        text = (f"DE stopped at maxiter={spec.maxiter} generations without meeting tol={spec.tol:g}; "
                "raise maxiter (CLI: --maxiter) or restarts, or check the data")
    if spec.polish:
        text += "; L-BFGS polish " + ("accepted" if bool(polished) else "did not lower the loss (DE optimum kept)")
    return text


def theta_dict(spec: Spec, theta) -> dict:
    """theta -> {name: float} plus the derived penalty scale (JSON friendly)."""
    theta = np.asarray(theta)
    out = {n: float(theta[i]) for i, n in enumerate(param_names(spec))}
    if not spec.fit_alpha:
        out["alpha"] = float(spec.alpha_fixed)
    if "log_scale" in out:
        out["scale"] = float(np.exp(out["log_scale"]))
    if "log_shift" in out:
        out["shift"] = float(np.exp(out["log_shift"]))
    return out


# what a free parameter at one end of its range means for the user; None: a harmless end (reported
# by ``params_at_bounds`` and ``task_summary``, not warned)
_ROLE = {"a": "the compute factor's level", "alpha": "the compute exponent", "b": "the prompt-length factor's level",
         "beta": "the prompt-length exponent", "log_scale": "the cliff's width", "log_shift": "the cliff's location",
         "gamma": "the length decay"}
_HELD = ("the fit would have gone further, so the scores' dependence on {what} is held by the range, not by the "
         "data, and predictions at other {what}s are unreliable; check the unit of the {what} column")
_AT_BOUND = {
    "a": dict.fromkeys(("lower", "upper"), _HELD.format(what="compute")),
    "alpha": dict.fromkeys(("lower", "upper"), _HELD.format(what="compute")
                           + ", or hold alpha fixed (--no-fit-alpha, Spec(fit_alpha=False))"),
    "b": dict.fromkeys(("lower", "upper"), _HELD.format(what="prompt length")),
    "beta": dict.fromkeys(("lower", "upper"), _HELD.format(what="prompt length")),
    "log_shift": {
        "lower": "the effective context limit is as low as allowed (0.25 x n_ctx): the scores fall long before the "
                 "stated limits and the cliff cannot move further in; try the length decay --decay "
                 "(Spec(decay=True)) and compare held-out errors (--holdout)",
        "upper": "the effective context limit is as high as allowed (4 x n_ctx): these rows show no cliff at the "
                 "stated limits (scores hold up past n_ctx); check the context-limit column (its unit, or limits "
                 "extended after training), or drop the cliff (--penalty none)"},
    "gamma": {"lower": None,  # no length decay: the law without the extension
              "upper": "the length decay is as steep as allowed ((1 + n_pmt/1e3)^-2): the scores fall faster with "
                       "prompt length than the law can follow; check the prompt-length column's unit and compare "
                       "held-out errors (--holdout)"},
}
_WIDE = ("the scores fall gradually with prompt length rather than at a cliff past the context limit, so the penalty "
         "stands in for that decline and lowers the predictions well inside the limit too; the range, not the data, "
         "set its width, and predictions at other prompt lengths inherit that choice. Try the length decay --decay "
         "(Spec(decay=True)){alt} and compare held-out errors (--holdout)")
_SCALE_AT_BOUND = {
    "logistic": {"lower": None,  # a cliff as sharp as allowed (4 tokens at a 4k limit): the paper's step
                 "upper": "the cliff is as wide as allowed (relative width 1, the whole context limit: the penalty "
                          "is 0.73 at the shortest prompts and 0.5 at n_ctx): "
                          + _WIDE.format(alt=" or the scale-free --penalty log_ratio")},
    "log_ratio": {"lower": "the cliff is as gradual as allowed (kappa 1: the penalty is 1 / (1 + n_pmt / n_ctx), "
                           "0.67 at half the limit): " + _WIDE.format(alt=""),
                  "upper": None},  # kappa 200: as sharp as allowed
}


def _meanings(spec: Spec) -> dict:
    return {**_AT_BOUND, "log_scale": _SCALE_AT_BOUND.get(spec.penalty, {})}


def params_at_bounds(spec: Spec, theta, rtol: float = 1e-3) -> list:
    """The free parameters that sit at an end of their range (the DE box of :func:`param_bounds`,
    which the L-BFGS polish also keeps), per task.

    A parameter within ``rtol`` of the range's width of an end counts: the fit wanted a value past
    it. Returns one dict per row of ``theta`` ((T, P), or (P,) for one task):
    ``{name: {"end": "lower" | "upper", "range": [lo, hi], "warned": bool}}`` (empty when none);
    ``warned`` is False for the harmless ends (a cliff as sharp as allowed, no length decay).
    """
    th = np.atleast_2d(np.asarray(theta, float))
    box = param_bounds(spec)
    lo, hi = box[:, 0], box[:, 1]
    tol = rtol * (hi - lo)
    meaning = _meanings(spec)
    out = []
    for row in th:
        hits = {}
        for i, name in enumerate(param_names(spec)):
            end = "lower" if row[i] <= lo[i] + tol[i] else "upper" if row[i] >= hi[i] - tol[i] else None
            if end is not None:
                hits[name] = {"end": end, "range": [float(lo[i]), float(hi[i])],
                              "warned": meaning.get(name, {}).get(end) is not None}
        out.append(hits)
    return out


def bound_messages(spec: Spec, theta, what: str, labels=None, noun: str = "task") -> list:
    """One message per (parameter, end) that some fit sits at, naming the parameter, its range, the
    tasks (``labels``; ``noun`` names them) and what it means for the fit (see
    :func:`params_at_bounds`; harmless ends are left out)."""
    th = np.atleast_2d(np.asarray(theta, float))
    hits = params_at_bounds(spec, th)
    meaning = _meanings(spec)
    groups: dict = {}
    for t, h in enumerate(hits):
        for name, info in h.items():
            if info["warned"]:
                groups.setdefault((name, info["end"]), []).append(t)
    msgs = []
    for (name, end), rows in groups.items():
        lo, hi = hits[rows[0]][name]["range"]
        value = hi if end == "upper" else lo
        shown = f"{name} ({_ROLE[name]}) = {value:.3g}"
        if name.startswith("log_"):
            shown += f", i.e. {name[4:]} = {np.exp(value):.3g},"
        names = [labels[t] if labels is not None else t for t in rows]
        msgs.append(f"{what}: {shown} sits at the {end} end of its allowed range [{lo:.3g}, {hi:.3g}] in "
                    f"{len(rows)} of {th.shape[0]} {noun}(s) {names[:10]}: {meaning[name][end]}.")
    return msgs
