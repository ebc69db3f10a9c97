"""The pillar's contract: ``from_frame -> Data``, ``fit(key, data, spec) -> Fit``, ``predict``.

One row of the table is one cell: a (model, task, prompt length) combination with its training
compute ``C`` (or ``N`` and ``D``, with C = 6 N D), prompt length ``n_pmt`` (tokens), context limit
``n_ctx`` (tokens) and score in [0, 1]; optionally a chance floor, a task label and the number of
items behind the score.  :func:`fit` fits one law per task (all tasks in one vmapped DE + L-BFGS
program) and, with ``Spec(bayes=True)``, samples each task's posterior with NUTS.

Intervals of :func:`predict`:

* point fit: ``mean +- z * sigma_task``, where ``sigma_task`` is the task's residual standard
  deviation on its training rows (degrees of freedom corrected: sum of squared residuals over
  ``n_train - n_params``).  Scores live in [0, 1], so the Gaussian interval is intersected with
  [0, 1]; that clipping only removes impossible values and never changes whether an observed
  score is inside.  Parameter uncertainty is not included (use the Bayesian fit for that), and
  the noise is assumed the same for every row of a task, so the band is too wide where scores
  are pinned near 0 or 1 (past the cliff) and correspondingly narrower elsewhere.
* Bayesian fit: draws of the posterior predictive (parameter draws through the law, then the
  likelihood's noise: normal, Laplace, beta, or binomial on the row's item count), and their
  central quantiles.  A ``key`` is required.
"""
from __future__ import annotations

import warnings
from functools import partial
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from jaxscale._pytree import pytree_dataclass, register_serializable, static_field
from jaxscale.config import warn_if_float32
from jaxscale.context_law.fit import (
    ContextFit,
    _check_result,
    _fit_tasks,
    bound_messages,
    check_identifiability,
    compress_tasks,
    convergence_reason,
    params_at_bounds,
    theta_dict,
    warn_not_converged,
)
from jaxscale.context_law.model import Spec, param_names, predict_law
from jaxscale.data import validate as V
from jaxscale.data.table import FILE_ROWS
from jaxscale.infer.prediction import Prediction, check_fit, check_key, check_level, from_samples, z_value
from jaxscale.infer.results import few_dof_note
from jaxscale.infer.row_keys import row_keys

__all__ = ["Data", "Fit", "Posterior", "from_frame", "fit", "predict", "extrapolation", "task_summary",
           "posterior_summary", "stack_by_task", "DEFAULT_TASK"]

#: Task label of every row when the table has no task column.
DEFAULT_TASK = "all"


@pytree_dataclass
class Data:
    """Rows of a context-law table as arrays (row ``i`` = row ``i`` of the frame).

    Attributes:
      log_C: natural log of training compute C (FLOPs).
      n_pmt: prompt length in tokens (> 0).
      n_ctx: the model's context limit in tokens (> 0).
      y: score as a fraction in [0, 1] (the table's score divided by ``score_scale``); NaN for query
        rows without a score.
      weight: row weight in the loss (1 from :func:`from_frame`; 0 = ignored by the fit).
      floor: chance floor g of the row (P = g + (1 - g) law; 0 = none).
      task: integer code of the row's task, indexing ``task_labels``.
      n_items: items behind each score (for the binomial likelihood), or None.
      row: integer label of each row in messages: the frame's index (file lines when read with
        :func:`jaxscale.data.read_table`), or None.
      task_labels: the task vocabulary (static).
      columns: ``(role, column name)`` pairs of the source frame (static); the score's role is
        ``"target"``.
      score_scale: full scale of the table's score and chance columns (static): 1 for fractions,
        100 for percentages.
    """

    log_C: jax.Array
    n_pmt: jax.Array
    n_ctx: jax.Array
    y: jax.Array
    weight: jax.Array
    floor: jax.Array
    task: jax.Array
    n_items: jax.Array | None = None
    row: jax.Array | None = None
    task_labels: tuple = static_field(default=(DEFAULT_TASK,))
    columns: tuple = static_field(default=())
    score_scale: float = static_field(default=1.0)

    def __len__(self) -> int:
        return int(np.shape(self.y)[0])


@register_serializable
class Posterior(NamedTuple):
    """NUTS draws per task (chains flattened): ``theta`` (S, T, P), likelihood ``noise`` (S, T)
    (sigma / Laplace scale / beta concentration; 0 for binomial), and the sampler's diagnostics:
    the largest split R-hat, divergent transitions, the smallest effective sample size over the
    sampled sites and the number of chains (R-hat is NaN with one chain); ``drift`` (T,) is the
    extrapolation discrepancy's sd per decade learnt by the Bayesian backtest (see
    :func:`jaxscale.context_law.bayes.fit_bayes_backtest`), used by :func:`predict` instead of the
    point fit's."""

    theta: jax.Array
    noise: jax.Array
    max_r_hat: jax.Array
    divergences: jax.Array
    min_ess: jax.Array | None = None
    num_chains: jax.Array | None = None
    drift: jax.Array | None = None


@pytree_dataclass
class Fit:
    """One fitted law per task (leading axis = task, in the order of ``task_labels``).

    Attributes:
      theta: (T, P) parameters in the order of ``param_names(spec)``.
      loss: (T,) final training loss (MSE or MAE of P).
      de_loss: (T,) best DE loss before the polish.
      de_generations: (T,) DE generations run.
      converged: (T,) DE met its tolerance before ``spec.maxiter``.
      polished: (T,) the L-BFGS polish was accepted.
      lbfgs_steps: (T,) L-BFGS steps.
      sigma: (T,) residual standard deviation of the task's training rows (df corrected).
      n_train: (T,) training rows per task.
      posterior: NUTS draws (:class:`Posterior`) when ``spec.bayes``, else None.
      box: (T, 5) each task's training cells in decades (see
        :data:`jaxscale.context_law.extrapolation.BOX_FIELDS`), against which :func:`predict`
        measures extrapolation; None for fits made before it existed.
      drift: (T,) sd of the extrapolation discrepancy per decade outside the training cells (score
        units), learnt by the backtest inside the training rows (pooled over tasks; 0 when the
        backtest found no growth or could not run).
      backtest_rows: (T,) future rows of each task used by that backtest (0: not used).
      drift_reason: why ``drift`` is 0 (static; None when it was learnt).
      spec: the :class:`Spec` used (static).
      task_labels: task names (static).
      columns: ``(role, column)`` pairs of the training table (static).
      score_scale: full scale of the training table's scores (static; 1 for fractions, 100 for
        percentages): the fit works on fractions, :func:`predict` answers on this scale and reads
        query tables on it. ``sigma`` and ``drift`` are fractions.
    """

    theta: jax.Array
    loss: jax.Array
    de_loss: jax.Array
    de_generations: jax.Array
    converged: jax.Array
    polished: jax.Array
    lbfgs_steps: jax.Array
    sigma: jax.Array
    n_train: jax.Array
    posterior: Posterior | None = None
    box: jax.Array | None = None
    drift: jax.Array | None = None
    backtest_rows: jax.Array | None = None
    drift_reason: str | None = static_field(default=None)
    spec: Spec = static_field(default=Spec())
    task_labels: tuple = static_field(default=(DEFAULT_TASK,))
    columns: tuple = static_field(default=())
    score_scale: float = static_field(default=1.0)

    @property
    def param_names(self) -> tuple:
        """Names of the columns of ``theta``."""
        return param_names(self.spec)

    def params(self) -> dict:
        """``{task: {parameter: value}}`` (JSON friendly, derived scale / shift included)."""
        return {t: theta_dict(self.spec, np.asarray(self.theta)[i]) for i, t in enumerate(self.task_labels)}


def _what(df: pd.DataFrame, what: str | None) -> str:
    if what:
        return what
    src = df.attrs.get("source") if hasattr(df, "attrs") else None
    return f"{Path(src).name} ({FILE_ROWS})" if src else "context-law table"


def from_frame(df: pd.DataFrame, *, c_col: str | None = None, n_col: str | None = None, d_col: str | None = None,
               n_prompt_col: str = "n_pmt", n_ctx_col: str = "n_ctx", score_col: str | None = "score",
               chance_col: str | None = None, task_col: str | None = None, n_items_col: str | None = None,
               task_labels: tuple | None = None, what: str | None = None, score_scale: float = 1.0) -> Data:
    """Validate a table of cells and return its arrays (rows never dropped or reordered).

    Args:
      df: one row per (model, task, prompt length) cell.
      c_col: training compute C in FLOPs (> 0). Defaults to ``"C"`` unless ``n_col`` and
        ``d_col`` are given, in which case C = 6 N D.
      n_col: parameter count N (> 0), used with ``d_col`` instead of ``c_col``.
      d_col: training tokens D (> 0), used with ``n_col``.
      n_prompt_col: prompt length in tokens (> 0).
      n_ctx_col: the model's context limit in tokens (> 0).
      score_col: score in [0, ``score_scale``] (accuracy, BLEU ...); ``None`` for a query without
        scores (then ``y`` is NaN).
      chance_col: optional chance floor g in [0, 0.99 ``score_scale``] per row (e.g. 0.25 for 4-way
        multiple choice, 25 in a percent table); the law becomes g + (1 - g) P.
      task_col: optional task label; one law is fitted per task. Without it every row is task
        ``"all"``.
      n_items_col: optional number of items (> 0) behind each score, for ``likelihood="binomial"``.
      task_labels: fixed task vocabulary (a query read for a fit uses the fit's); a label outside
        it raises.
      what: name of the table in error messages (default: the file name when read with
        :func:`jaxscale.data.read_table`).
      score_scale: full scale of the score and chance columns: 1 for fractions, 100 for
        percentages (RULER, BABILong and most leaderboards). The law is fitted on fractions;
        :func:`predict` answers on this scale.

    Raises:
      ValueError: missing column (naming the option that sets each column's name), non-numeric /
        non-finite / non-positive inputs, scores or chance outside their range, missing or unknown
        task labels; naming the column, count and rows.

    Warns:
      UserWarning: a column that looks like the wrong unit (compute, N or D peaking implausibly low;
        a context limit or prompt length whose median looks like thousands of tokens; prompts more
        than 16 times their limit on most rows), scores that are all at most 1 with
        ``score_scale > 1`` (fractions read as percent), and repeated rows.
    """
    if not isinstance(df, pd.DataFrame):
        raise ValueError(f"from_frame needs a pandas DataFrame, got {type(df).__name__}")
    what = _what(df, what)
    if len(df) == 0:
        raise ValueError(f"{what}: the table has no rows")
    score_scale = _check_scale(score_scale, what)
    if n_col is not None or d_col is not None:
        if n_col is None or d_col is None:
            raise ValueError(f"{what}: give both n_col and d_col (C = 6 N D), or c_col alone; "
                             f"got n_col={n_col!r}, d_col={d_col!r}")
        if c_col is not None:
            raise ValueError(f"{what}: give either c_col (compute) or n_col + d_col (C = 6 N D), not both")
        compute = [n_col, d_col]
        roles = [("n", n_col), ("d", d_col)]
    else:
        c_col = c_col or "C"
        compute = [c_col]
        roles = [("c", c_col)]
    roles += [("n_prompt", n_prompt_col), ("n_ctx", n_ctx_col)]
    if score_col is not None:
        roles.append(("target", score_col))
    for role, col in (("chance", chance_col), ("task", task_col), ("n_items", n_items_col)):
        if col is not None:
            roles.append((role, col))
    _require_columns(df, roles, what)
    V.check_positive(df, compute + [n_prompt_col, n_ctx_col], what)
    num = lambda c: pd.to_numeric(df[c]).to_numpy(dtype=float)  # noqa: E731
    n = len(df)
    if score_col is not None:
        _check_scores(df, score_col, 1.0, score_scale, what)
        _warn_fractions(df, score_col, score_scale, what)
        y = num(score_col) / score_scale
    else:
        y = np.full(n, np.nan)
    if chance_col is not None:
        _check_scores(df, chance_col, 0.99, score_scale, what)
        floor = num(chance_col) / score_scale
    else:
        floor = np.zeros(n)
    if n_items_col is not None:
        V.check_positive(df, [n_items_col], what)
    log_C = np.log(num(c_col)) if len(compute) == 1 else np.log(6.0) + np.log(num(n_col)) + np.log(num(d_col))
    codes, labels = _task_codes(df, task_col, task_labels, what)
    _check_units(df, dict(roles), what)
    if score_col is not None:
        _warn_duplicates(df, what)
    dev = lambda a, dtype=float: jax.device_put(np.asarray(a, dtype))  # noqa: E731  (jnp.asarray compiles a program)
    return Data(dev(log_C), dev(num(n_prompt_col)), dev(num(n_ctx_col)), dev(y), dev(np.ones(n)), dev(floor),
                dev(codes, np.int32), None if n_items_col is None else dev(num(n_items_col)), _row_labels(df),
                task_labels=labels, columns=tuple(roles), score_scale=score_scale)


def _check_scale(score_scale, what: str) -> float:
    try:
        scale = float(score_scale)
    except (TypeError, ValueError):
        scale = float("nan")
    if not (np.isfinite(scale) and scale > 0):
        raise ValueError(f"{what}: score_scale must be the positive full scale of the score column (1 for "
                         f"fractions, 100 for percentages), got {score_scale!r}")
    return scale


def _check_scores(df: pd.DataFrame, col: str, top: float, scale: float, what: str) -> None:
    """Scores (``top`` 1) or chance levels (``top`` 0.99) in [0, top x scale], with the percent hint."""
    values = pd.to_numeric(df[col], errors="coerce")
    percent = scale == 1 and values.min() >= 0 and values.max() <= 100
    V.check_range(df, col, 0.0, top * scale, what,
                  fix="the column looks like percent: say so with score_scale=100 (CLI: --score-scale 100), and "
                      "the law is fitted on fractions and answers in percent." if percent else None)


def _warn_fractions(df: pd.DataFrame, col: str, scale: float, what: str) -> None:
    """Warn when a score column on a full scale above 1 (e.g. percent) holds fractions (all <= 1)."""
    values = pd.to_numeric(df[col], errors="coerce").dropna()
    if scale > 1 and len(values) and values.max() <= 1:
        warnings.warn(f"{what}: every value of {col!r} is at most 1 (largest {values.max():g}, {len(values)} rows), "
                      f"but score_scale={scale:g} (CLI: --score-scale {scale:g}) reads them on a 0-{scale:g} scale, "
                      f"i.e. as scores of at most {100 / scale:g} % of full marks: the column looks like fractions. "
                      f"Drop score_scale={scale:g} (--score-scale {scale:g}) to fit them as fractions; as given, the "
                      f"law is fitted to near-zero scores and the errors are reported on the {scale:g} scale.",
                      UserWarning, stacklevel=3)


# what each column role is and the keyword / command-line option that names it
_OPTIONS = {"c": ("compute in FLOPs", "c_col", "--c-col"), "n": ("parameters", "n_col", "--n-col"),
            "d": ("training tokens", "d_col", "--d-col"),
            "n_prompt": ("prompt length", "n_prompt_col", "--n-pmt-col"),
            "n_ctx": ("context limit", "n_ctx_col", "--n-ctx-col"), "target": ("score", "score_col", "--score-col"),
            "chance": ("chance floor", "chance_col", "--chance-col"), "task": ("task", "task_col", "--task-col"),
            "n_items": ("items per score", "n_items_col", "--n-items-col")}


def _require_columns(df: pd.DataFrame, roles: list, what: str) -> None:
    """Raise for missing columns, naming for each the option that sets its name (a query must
    instead carry the columns the model was fitted with: the shared message says so)."""
    if "query" in what:
        V.require_columns(df, [c for _, c in roles], what)
        return
    missing = [(role, col) for role, col in roles if col not in df.columns]
    if not missing:
        return
    says = []
    for role, col in missing:
        label, kw, flag = _OPTIONS[role]
        text = f"{col!r} ({label}): {flag} NAME ({kw}=...)"
        if role == "c":
            text += ", or --n-col and --d-col for C = 6 N D (n_col=..., d_col=...)"
        says.append(text)
    raise ValueError(f"{what}: missing column(s) {[c for _, c in missing]}; present columns are {list(df.columns)}. "
                     f"Rename your columns, or pass the names of yours: {'; '.join(says)}.")


def _row_labels(df: pd.DataFrame):
    """The frame's index as integers (file lines from ``read_table``), or None when it is not integer."""
    idx = df.index
    if pd.api.types.is_integer_dtype(idx.dtype):
        return jax.device_put(np.asarray(idx, dtype=np.int64))
    return None


# smallest plausible maximum of each role's column (compute, N, D) or median (context limit, prompt
# length: a few models with a long limit can lift the largest value of a column in thousands of tokens
# past the floor), with the unit a smaller value suggests
_UNITS = {"c": (1e12, "FLOPs", "PF-days, exaFLOPs or another unit; compute must be in FLOPs (a 7B model on 2T "
                                "tokens is ~8e22)"),
          "n": (1e4, "parameters", "millions or billions; N must be a raw count (7 billion -> 7e9)"),
          "d": (1e6, "tokens", "millions, billions or trillions; D must be a raw count (2 trillion -> 2e12)"),
          "n_ctx": (256.0, "tokens", "thousands of tokens; write the limit in tokens (4k -> 4096)"),
          "n_prompt": (64.0, "tokens", "thousands of tokens; write prompt lengths in tokens (4k -> 4096)")}
_ON_MEDIAN = ("n_ctx", "n_prompt")
#: Median prompt-to-limit ratio above which the two token columns look like different units.
_RATIO_UNITS = 16.0


def _check_units(df: pd.DataFrame, roles: dict, what: str) -> None:
    """Warn when a column's values are implausibly small for its unit (e.g. N given in billions, the
    context limit in thousands of tokens), or when most prompts are far longer than their context
    limit (the two token columns in different units)."""
    flagged = set()
    for role, (floor, unit, hint) in _UNITS.items():
        col = roles.get(role)
        if col is None:
            continue
        values = pd.to_numeric(df[col])
        if role in _ON_MEDIAN:
            med, below = float(values.median()), int((values < floor).sum())
            if med < floor:
                text = (f"has a median of {med:g} ({below} of {len(values)} rows below {floor:g}, largest "
                        f"{float(values.max()):g})")
            elif role == "n_prompt" and float(values.min()) < 1.0:
                text = f"has values down to {float(values.min()):g} ({int((values < 1).sum())} rows below one token)"
            else:
                continue
        else:
            top = float(values.max())
            if top >= floor:
                continue
            text = f"peaks at {top:g}"
        flagged.add(role)
        warnings.warn(f"{what}: column {col!r} ({unit}) {text}, which looks like {hint}. Convert the column, or "
                      "the fitted law's constants and its extrapolation distances will be wrong.",
                      UserWarning, stacklevel=3)
    pcol, ccol = roles.get("n_prompt"), roles.get("n_ctx")
    if "query" in what or flagged & set(_ON_MEDIAN) or pcol is None or ccol is None:
        return  # a query may probe prompts past the limit on purpose (predict names them)
    ratio = pd.to_numeric(df[pcol]) / pd.to_numeric(df[ccol])
    if float(ratio.median()) > _RATIO_UNITS:
        far = int((ratio > _RATIO_UNITS).sum())
        warnings.warn(f"{what}: in {far} of {len(ratio)} rows the prompt (column {pcol!r}) is more than "
                      f"{_RATIO_UNITS:g} times the context limit (column {ccol!r}; median n_pmt / n_ctx "
                      f"{float(ratio.median()):.3g}): the two columns look like different units (e.g. the limit in "
                      "thousands of tokens, 4k -> 4096). Write both in tokens, or the cliff is fitted in the wrong "
                      "place and the fitted law's constants and its extrapolation distances will be wrong.",
                      UserWarning, stacklevel=3)


def _warn_duplicates(df: pd.DataFrame, what: str) -> None:
    """Warn when whole rows repeat (the same cell entered twice would be fitted twice). Rows that
    differ in any column (e.g. two models with the same compute and limit, both at 0 past the
    cliff) are distinct cells."""
    dup = df.duplicated(keep=False)
    if dup.any():
        warnings.warn(f"{what}: {int(dup.sum())} rows repeat another row in every column, at rows "
                      f"{V._rows(df.index[dup])}; each row is fitted with weight 1, so a cell entered twice counts "
                      "twice. Remove the copies (or aggregate them, e.g. df.drop_duplicates()).",
                      UserWarning, stacklevel=3)


def _task_codes(df, task_col, task_labels, what):
    if task_col is None:
        labels = tuple(task_labels) if task_labels is not None else (DEFAULT_TASK,)
        if DEFAULT_TASK not in labels:
            raise ValueError(f"{what}: the model was fitted per task {list(labels)[:10]}; the table needs "
                             "its task column")
        return np.full(len(df), labels.index(DEFAULT_TASK)), labels
    missing = df[task_col].isna()
    if missing.any():
        raise ValueError(f"{what}: column {task_col!r} has {int(missing.sum())} missing task label(s) at rows "
                         f"{V._rows(df.index[missing])}; give every row a task name.")
    text = df[task_col].astype(str)
    labels = tuple(task_labels) if task_labels is not None else tuple(sorted(text.unique()))
    V.check_categories(pd.DataFrame({task_col: text}, index=df.index), task_col, labels, what)
    lookup = {t: i for i, t in enumerate(labels)}
    return text.map(lookup).to_numpy(dtype=int), labels


def _task_index(codes: np.ndarray, n_tasks: int):
    """Gather index (T, m) of each task's rows, padded by repeating its first row, and the mask
    of real (non-padding) entries."""
    order = np.argsort(codes, kind="stable")
    counts = np.bincount(codes, minlength=n_tasks)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    j = np.arange(max(int(counts.max()), 1))
    valid = j[None, :] < counts[:, None]
    pos = starts[:, None] + np.minimum(j[None, :], np.maximum(counts[:, None] - 1, 0))
    return order[pos], valid


def stack_by_task(data: Data, rows=None) -> Data:
    """The rows of ``data`` (all, or the boolean ``rows``) regrouped as (T, m) arrays, one task per
    leading index; padding repeats a task's first row with weight 0.

    Args:
      data: 1-D rows.
      rows: optional boolean mask of the rows to keep.
    """
    codes = np.asarray(data.task)
    keep = np.ones(len(codes), bool) if rows is None else np.asarray(rows, bool)
    idx = np.flatnonzero(keep)
    gather, valid = _task_index(codes[idx], len(data.task_labels))
    gather = idx[gather]
    # gathered on the host: eager device gathers would each compile a small program
    stacked = jax.tree_util.tree_map(lambda a: jax.device_put(np.asarray(a)[gather]), data)
    return stacked.replace(weight=jax.device_put(np.where(valid, np.asarray(stacked.weight), 0.0)))


@partial(jax.jit, static_argnames=("spec",))
def _residual_sigma(theta, stacked: Data, spec: Spec):
    def one(th, d):
        w = d.weight
        y = jnp.where(w > 0, d.y, 0.0)
        r = y - predict_law(spec, th, d.log_C, d.n_pmt, d.n_ctx, d.floor)
        n = jnp.sum(w > 0)
        ss = jnp.sum(w * r ** 2) / jnp.sum(w) * n
        return jnp.sqrt(ss / jnp.maximum(n - th.shape[0], 1)), n

    return jax.vmap(one)(theta, stacked)


def _check_shapes(data: Data, what: str) -> None:
    arrays = {f: getattr(data, f) for f in ("log_C", "n_pmt", "n_ctx", "y", "weight", "floor", "task", "n_items", "row")
              if getattr(data, f) is not None}
    V.check_shapes(what, **arrays)
    if np.ndim(data.y) != 1:
        raise ValueError(f"{what}: data must have 1-D rows, got y.shape={np.shape(data.y)}; "
                         "use fit_core / fit_many for stacked tasks")


def _rows_text(data: Data, mask) -> str:
    """The rows of ``mask`` as the user knows them (frame index / file lines), or as positions."""
    if data.row is not None and np.size(data.row) == np.size(mask):
        return f"rows {V._rows(np.asarray(data.row)[np.asarray(mask)])}"
    return f"positions {V._rows(np.flatnonzero(np.asarray(mask)))}"


def fit(key, data: Data, spec: Spec = Spec()) -> Fit:
    """Fit one law per task: DE + L-BFGS (all tasks vmapped), then NUTS when ``spec.bayes``.

    Rows with weight 0 are ignored. Host-side checks first (errors naming the column, the task,
    the count and the fix): every array has one entry per row, every training row has a score,
    every task has training rows, at least one more row than free parameters, a score that is not
    constant, at least two prompt lengths, and two compute levels when alpha is fitted; weak
    designs are warned. A task whose DE stopped at ``spec.maxiter`` is reported by a warning and by
    ``fit.converged``; a fitted parameter at an end of its allowed range by a warning naming the
    tasks and what it means (:func:`jaxscale.context_law.fit.bound_messages`; the harmless ends, a
    cliff as sharp as allowed and no length decay, only in :func:`task_summary`'s ``at_bound``).
    A task whose training rows leave too few residual degrees of freedom (rows minus free
    parameters; :func:`jaxscale.infer.results.few_dof_note`) is warned: the residual sd that sets
    its intervals rests on too few residuals. With ``spec.backtest_frac > 0`` each task is also
    refitted without its longest prompts (in the same compiled program) to learn ``fit.drift`` (see
    :mod:`jaxscale.context_law.extrapolation`); when no task keeps enough rows for that refit, the
    drift is 0 and a warning says the intervals do not widen outside the training cells. NUTS
    diagnostics (R-hat > 1.01, ESS < 100 per chain, divergences, fewer than 2 chains) are warned and
    stored in ``fit.posterior``. The checks, messages, ``n_train`` and ``sigma`` see the rows as
    given; the point fit itself fits each repeated cell once
    (:func:`jaxscale.context_law.fit.compress_tasks`; same result up to rounding).

    Args:
      key: PRNG key (task ``t`` of the point fit uses ``split(split(key)[0], T)[t]``; NUTS the other half).
      data: from :func:`from_frame`, rows on the leading axis.
      spec: law form, optimiser and NUTS settings.
    """
    from jaxscale.context_law.extrapolation import backtest_weights, drift_from_backtest, training_box

    check_key(key, "context-law fit: key")
    spec = spec.check()
    what = "context-law fit"
    warn_if_float32(what)
    _check_shapes(data, what)
    w = np.asarray(data.weight) > 0
    y = np.asarray(data.y)
    target = dict(data.columns).get("target", "score")
    bad = w & ~np.isfinite(y)
    if bad.any():
        raise ValueError(f"{what}: the score column {target!r} is missing for {int(bad.sum())} training row(s) "
                         f"({_rows_text(data, bad)}); a fit needs the score of every row it uses (read the table "
                         "with score_col=..., or give those rows weight 0)")
    labels = data.task_labels
    counts = np.bincount(np.asarray(data.task)[w], minlength=len(labels))
    empty = [labels[t] for t in np.flatnonzero(counts == 0)]
    if empty:
        raise ValueError(f"{what}: task(s) {empty[:10]} have no training rows (all held out or filtered); "
                         "remove them from the table or keep some of their rows for the fit")
    stacked = stack_by_task(data, w)
    host = jax.tree_util.tree_map(np.asarray, stacked)  # host copies: eager device slicing would compile
    for t, label in enumerate(labels):
        check_identifiability(jax.tree_util.tree_map(lambda a: a[t], host), spec, what, task=label, min_rows=True)
    k_fit, k_bayes = jax.random.split(key)
    T = len(labels)
    keys = jax.random.split(k_fit, T)
    w_past, future, ok = backtest_weights(stacked, spec, float(spec.backtest_frac))
    if ok.any():  # the backtest refits run in the same vmapped program as the fits
        both = jax.tree_util.tree_map(lambda a: np.concatenate([a, a]), host)
        both = both.replace(weight=np.concatenate([host.weight, np.asarray(w_past)]))
        every = _fit_tasks(jnp.concatenate([keys, jax.random.split(jax.random.fold_in(k_fit, 1), T)]),
                           *compress_tasks(both, spec), spec)
        every = jax.tree_util.tree_map(np.asarray, every)
        core = jax.tree_util.tree_map(lambda a: jax.device_put(a[:T]), every)
        theta_bt = jax.device_put(every.theta[T:])
        drift = drift_from_backtest(stacked, w_past, future, ok, theta_bt, spec)
    else:
        core = _fit_tasks(keys, *compress_tasks(stacked, spec), spec)
        theta_bt = core.theta
        drift = drift_from_backtest(stacked, w_past, future, ok, None, spec)
    _check_result(core, what, labels)
    sigma, n_train = _residual_sigma(core.theta, stacked, spec.law())
    warn_not_converged(core, spec, what, labels)
    for msg in bound_messages(spec, np.asarray(core.theta), what, labels):
        warnings.warn(msg, UserWarning, stacklevel=2)
    for msg in _few_dof_messages(spec, np.asarray(sigma) * data.score_scale, np.asarray(n_train), what, labels):
        warnings.warn(msg, UserWarning, stacklevel=2)
    if spec.backtest_frac <= 0:
        drift["reason"] = ("the backtest is off (Spec.backtest_frac = 0, CLI --backtest-frac 0); intervals do not "
                           "widen outside the training cells")
    elif not np.any(ok):
        warnings.warn(_no_backtest_message(spec, np.asarray(n_train), what, labels), UserWarning, stacklevel=2)
    posterior = _posterior(k_bayes, stacked, spec, core.theta, (w_past, future, ok, theta_bt)) if spec.bayes else None
    n_future = np.where(ok, np.asarray(future).sum(1), 0)
    return Fit(core.theta, core.loss, core.de_loss, core.de_generations, core.de_converged, core.polished,
               core.lbfgs_steps, sigma, n_train, posterior, jax.device_put(training_box(stacked)),
               jax.device_put(np.full(T, float(drift["tau"]))), jax.device_put(n_future), drift_reason=drift["reason"],
               spec=spec, task_labels=labels, columns=data.columns, score_scale=data.score_scale)


def _few_dof_messages(spec: Spec, sigma, n_train, what: str, labels) -> list:
    """One message per task whose training rows leave too few residual degrees of freedom for the
    law's free parameters (alpha counted only when fitted; see
    :func:`jaxscale.infer.results.few_dof_note`). ``sigma`` is on the table's score scale."""
    from jaxscale.context_law.fit import _FREE_FEWER

    names = param_names(spec)
    p = len(names)
    fewer = [_FREE_FEWER[n] for n in names if n in _FREE_FEWER]
    msgs = []
    for t, label in enumerate(labels):
        n = int(n_train[t])
        few = few_dof_note(n, p, float(sigma[t]), "in the score's units")
        if few:
            msgs.append(f"{what} [task {label!r}]: {n} training rows for {p} free parameters {list(names)} {few}. Add "
                        "cells (other prompt lengths or models)"
                        + (f", free fewer parameters ({', '.join(fewer)})" if fewer else "")
                        + ", or hold rows out (--holdout) to see the real error.")
    return msgs


def _no_backtest_message(spec: Spec, n_train, what: str, labels) -> str:
    """The warning for a backtest that could not split any task (see
    :func:`jaxscale.context_law.extrapolation.backtest_weights`): the drift is 0, so intervals do
    not widen outside the training cells."""
    p = len(param_names(spec))
    most = int(np.argmax(n_train))
    which = f"task {labels[most]!r}" if len(labels) == 1 else f"the largest task, {labels[most]!r},"
    alpha = " and 2 compute levels" if spec.fit_alpha else ""
    return (f"{what}: the backtest that learns how fast errors grow outside the training cells had no rows: no task "
            f"keeps enough rows once its longest prompts (about {100 * spec.backtest_frac:.3g} % of its rows, "
            f"Spec.backtest_frac; CLI --backtest-frac) are held out; a refit needs at least {p + 1} rows over 2 "
            f"prompt lengths{alpha}, and {which} has {int(n_train[most])} training rows in all."
            " The drift is 0, so the intervals do not widen outside the training cells: at longer prompts or "
            "other compute they are as narrow as inside and likely far too narrow. Add cells at more prompt lengths.")


def _posterior(key, stacked: Data, spec: Spec, theta, backtest) -> Posterior:
    from jaxscale.context_law.bayes import fit_bayes, fit_bayes_backtest

    kw = {}
    if spec.likelihood == "binomial":
        if stacked.n_items is None:
            raise ValueError("likelihood='binomial' needs the number of items behind each score: "
                             "from_frame(..., n_items_col=...) (CLI: --n-items-col); or use 'normal', "
                             "'laplace' or 'beta' on the scores")
        counts = np.asarray(stacked.y) * np.asarray(stacked.n_items)
        off = np.abs(counts - np.round(counts)) * (np.asarray(stacked.weight) > 0)
        if off.max() > 0.02:
            t, j = np.unravel_index(np.argmax(off), off.shape)
            col = dict(stacked.columns).get("n_items", "n_items")
            raise ValueError(f"likelihood='binomial' needs whole item counts: score x {col!r} is "
                             f"{counts[t, j]:.4g} for a row of task {stacked.task_labels[t]!r} ({int((off > 0.02).sum())} "
                             "such rows); fix the item counts or use likelihood 'normal', 'laplace' or 'beta'")
        kw = dict(n_items=stacked.n_items, n_correct=jnp.asarray(np.round(counts)))  # float noise of score x n only
    w_past, future, ok, theta_bt = backtest
    T = len(stacked.task_labels)
    if np.any(ok):  # the backtest's past rows are sampled in the same program
        bf, drift = fit_bayes_backtest(key, stacked, w_past, future, ok, spec, init_theta=theta,
                                       init_backtest=theta_bt, likelihood=spec.likelihood,
                                       num_warmup=spec.num_warmup, num_samples=spec.num_samples,
                                       num_chains=spec.num_chains, **kw)
        tau = drift["tau"]
    else:
        bf = fit_bayes(key, stacked, spec, likelihood=spec.likelihood, init_theta=theta, num_warmup=spec.num_warmup,
                       num_samples=spec.num_samples, num_chains=spec.num_chains, **kw)
        tau = 0.0
    d = bf.posterior.diagnostics
    return Posterior(jnp.asarray(bf.theta), jnp.asarray(bf.noise), jnp.asarray(float(d["max_r_hat"])),
                     jnp.asarray(int(d["divergences"])), jnp.asarray(float(d["min_ess"])),
                     jnp.asarray(int(d["num_chains"])), jnp.full((T,), tau))


def _query(fit: Fit, query) -> Data:
    if isinstance(query, Data):
        if query.task_labels == fit.task_labels:
            return query
        unknown = sorted(set(query.task_labels) - set(fit.task_labels))
        used = {query.task_labels[i] for i in np.unique(np.asarray(query.task))}
        if used & set(unknown):
            raise ValueError(f"query has task(s) {sorted(used & set(unknown))[:10]} the model was not fitted on; "
                             f"known tasks: {list(fit.task_labels)[:20]}")
        remap = np.asarray([fit.task_labels.index(t) if t in fit.task_labels else 0 for t in query.task_labels])
        return query.replace(task=jnp.asarray(remap[np.asarray(query.task)], dtype=jnp.int32),
                             task_labels=fit.task_labels)
    if isinstance(query, pd.DataFrame):
        cols = dict(fit.columns)
        kw = {f"{role}_col": col for role, col in cols.items() if role not in ("target",)}
        target = cols.get("target")
        if target is not None and target in query.columns:  # a truth is optional per row: check the given ones
            given = query.loc[query[target].notna()]
            if len(given):
                V.check_range(given, target, 0.0, fit.score_scale, _what(query, None))
                if fit.score_scale > 1 and pd.to_numeric(given[target]).max() <= 1:
                    warnings.warn(f"{_what(query, None)}: every value of {target!r} is at most 1, but the model reads "
                                  f"scores on the scale of its training table (score_scale = {fit.score_scale:g}, "
                                  f"e.g. percentages): if the query holds fractions, multiply them by "
                                  f"{fit.score_scale:g}", UserWarning, stacklevel=4)
        kw["score_col"] = None
        if "n_items" in cols and cols["n_items"] not in query.columns:
            kw.pop("n_items_col")  # only the binomial predictive needs it; it says so when missing
        return from_frame(query, **kw, task_labels=fit.task_labels, what=f"query {_what(query, None)}",
                          score_scale=fit.score_scale)
    raise ValueError(f"query must be a context_law.Data or a pandas DataFrame, got {type(query).__name__}")


def _law_rows(spec: Spec, theta_rows, q: Data):
    """The law with a parameter row per query row; ``theta_rows`` (..., n, P)."""
    th = jnp.moveaxis(theta_rows, -1, 0)  # (P, ..., n): unpack indexes the first axis
    return predict_law(spec, th, q.log_C, q.n_pmt, q.n_ctx, q.floor)


def extrapolation(fit: Fit, query):
    """Distance of each query row outside its task's training cells, in decades (0 inside): the
    largest of the prompt length's and the compute's distance from the task's training range and
    the prompt-to-limit ratio's excess over the task's largest training ratio (see
    :mod:`jaxscale.context_law.extrapolation`). None for a fit saved without its training box.

    Args:
      fit: from :func:`fit`.
      query: a :class:`Data` or a DataFrame with the fit's input columns.
    """
    from jaxscale.context_law.extrapolation import distance

    if fit.box is None:
        return None
    q = query if isinstance(query, Data) and query.task_labels == fit.task_labels else _query(fit, query)
    return jax.device_put(distance(np.asarray(fit.box)[np.asarray(q.task)], np.asarray(q.log_C), np.asarray(q.n_pmt),
                                   np.asarray(q.n_ctx), xp=np))  # on the host


@partial(jax.jit, static_argnames=("spec",))
def _point_interval(theta, sigma, extra, q: Data, z, spec: Spec):
    mean = _law_rows(spec, theta[q.task], q)
    half = z * jnp.sqrt(sigma[q.task] ** 2 + extra ** 2)
    return mean, jnp.clip(mean - half, 0.0, 1.0), jnp.clip(mean + half, 0.0, 1.0)


def predict(fit: Fit, query, *, key=None, level: float = 0.9) -> Prediction:
    """The law of each query row's task, with a central ``level`` interval.

    Args:
      fit: from :func:`fit` (or ``jaxscale.load``).
      query: a :class:`Data` or a DataFrame with the fit's input columns (the score is optional,
        per row: a missing score is allowed, a given one must lie in [0, ``fit.score_scale``]).
      key: PRNG key of the posterior-predictive draws; required for a Bayesian fit.
      level: central interval level in (0, 1).

    Returns:
      ``Prediction(mean, lower, upper, samples, extrapolation)`` on the training table's score scale
      (``fit.score_scale``: percent for a table read with ``score_scale=100``). ``extrapolation`` is each row's
      distance outside its task's training cells in decades (:func:`extrapolation`; one warning
      with the worst value when any row lies outside). Outside, the noise grows by an
      extrapolation discrepancy of sd ``fit.drift * distance``. Point fit: samples None and the
      interval ``mean +- z sqrt(sigma^2 + (drift d)^2)`` clipped to [0, 1]; Bayesian fit:
      posterior-predictive draws (S, n) (the law at each parameter draw, plus the discrepancy,
      plus the likelihood's noise), their mean of the law and quantiles. See the module docstring.
    """
    from jaxscale.infer.prediction import warn_extrapolation

    check_fit(fit, Fit, "jaxscale.context_law")
    key = check_key(key, "context-law predict: key", optional=True)
    level = check_level(level)
    q = _query(fit, query)
    spec = fit.spec.law()
    codes = jnp.asarray(q.task)
    dist = extrapolation(fit, q)
    if dist is not None:
        warn_extrapolation("context-law predict", dist, "decades of prompt length, compute or prompt/limit ratio "
                           "outside the task's training cells", stacklevel=3)
        rate = fit.posterior.drift if fit.posterior is not None and fit.posterior.drift is not None else fit.drift
        d = np.asarray(dist)
        extra = np.asarray(rate)[np.asarray(q.task)] * d if rate is not None else np.zeros_like(d)
    else:
        extra = np.zeros(len(q))
    _warn_past_limit(fit, q)
    extra = jax.device_put(extra)
    if fit.posterior is None:
        mean, lo, hi = _point_interval(jnp.asarray(fit.theta), jnp.asarray(fit.sigma), extra, q, z_value(level), spec)
        return _on_scale(Prediction(mean, lo, hi, None, dist), fit.score_scale)
    if key is None:
        raise ValueError("this fit is Bayesian: predict(fit, query, key=jax.random.key(0)) draws from the "
                         "posterior predictive and needs a key")
    post = fit.posterior
    lik = fit.spec.likelihood
    if lik == "binomial" and q.n_items is None:
        col = dict(fit.columns).get("n_items", "n_items")
        raise ValueError(f"this fit uses the binomial likelihood: the query needs the column {col!r} (items "
                         "behind each score) for predictive draws")
    n_items = jnp.ones(len(q)) if q.n_items is None else jnp.asarray(q.n_items, float)
    # each row draws with its own key, derived from the key and the row's inputs: a row gets the same
    # draws whichever rows are predicted with it (the fit's table or a query table of a saved model)
    keys = row_keys(key, q.task, q.log_C, q.n_pmt, q.n_ctx, q.floor, *(() if q.n_items is None else (q.n_items,)))
    p = _law_rows(spec, jnp.asarray(post.theta)[:, codes], q)  # (S, n)
    noise = jnp.asarray(post.noise)[:, codes]
    draws = jax.vmap(partial(_row_draws, lik), in_axes=(0, 1, 1, 0, 0), out_axes=1)(keys, p, noise, extra, n_items)
    mean = jnp.mean(jnp.clip(p, 1e-9, 1 - 1e-9), axis=0)
    return _on_scale(from_samples(jnp.clip(draws, 0.0, 1.0), level, mean=mean)._replace(extrapolation=dist),
                     fit.score_scale)


def _row_draws(likelihood: str, key, p, noise, extra, n_items):
    """Posterior-predictive draws of one row: the law's draws ``p`` (S,) plus the extrapolation
    discrepancy of sd ``extra``, then the likelihood's noise (``noise`` (S,); binomial: of
    ``n_items`` items), as fractions."""
    k_drift, key = jax.random.split(key)
    p = jnp.clip(p + extra * jax.random.normal(k_drift, p.shape, p.dtype), 1e-9, 1 - 1e-9)
    if likelihood == "normal":
        return p + noise * jax.random.normal(key, p.shape, p.dtype)
    if likelihood == "laplace":
        return p + noise * jax.random.laplace(key, p.shape, p.dtype)
    if likelihood == "beta":
        return jax.random.beta(key, p * noise, (1 - p) * noise)
    return jax.random.binomial(key, jnp.broadcast_to(n_items, p.shape), p) / n_items


def _warn_past_limit(fit: Fit, q: Data) -> None:
    """Warn, naming the rows and the prompt-to-limit ratio, when query prompts are longer than their
    model's context limit and further past it than any training row of their task."""
    ratio = np.asarray(q.n_pmt, float) / np.asarray(q.n_ctx, float)
    seen = 10 ** np.asarray(fit.box)[np.asarray(q.task), 4] if fit.box is not None else np.ones_like(ratio)
    past = (ratio > 1) & (ratio > np.maximum(seen, 1) * (1 + 1e-9))
    if not past.any():
        return
    i = int(np.argmax(np.where(past, ratio, -np.inf)))
    own = q.row is not None and np.size(q.row) == ratio.size  # rows of the user's table, not grid points
    worst = f"row {int(np.asarray(q.row)[i])}" if own else f"position {i}"
    trained = (f"the training rows of its task reach {seen[i]:.3g}" if fit.box is not None and seen[i] > 1
               else "no training row of its task is past its limit")
    warnings.warn(f"context-law predict: {int(past.sum())} of {len(ratio)} queries have prompts longer than their "
                  f"model's context limit and further past it than any training row ({_rows_text(q, past)}; worst: "
                  f"{worst}, n_pmt / n_ctx = {ratio[i]:.3g}, where {trained}): there the law only extends its cliff "
                  "(a mean near 0; the interval is the noise and the drift), a shape no training row pinned, and a "
                  "model reads such a prompt only truncated or with positions it was not trained on. Treat these "
                  "rows as out of range: query prompts within the limit, or fit rows this far past it.",
                  UserWarning, stacklevel=3)


def _on_scale(pred: Prediction, scale: float) -> Prediction:
    """``pred`` (fractions) on the training table's score scale."""
    if scale == 1.0:
        return pred
    return pred._replace(mean=pred.mean * scale, lower=pred.lower * scale, upper=pred.upper * scale,
                         samples=None if pred.samples is None else pred.samples * scale)


def posterior_summary(fit: Fit) -> dict:
    """The NUTS run of a Bayesian fit: the largest R-hat (None with ``max_r_hat_reason`` when it
    cannot be computed), divergent transitions, the smallest ESS, the number of chains and the
    Bayesian backtest's drift ``drift_per_decade``, pooled over the tasks (every task has the same
    rate; :func:`task_summary` repeats it per task) and on the training table's score scale
    (``fit.score_scale``, like the point fit's drift). ``{}`` for a fit without a posterior."""
    post = fit.posterior
    if post is None:
        return {}
    out = {"max_r_hat": float(post.max_r_hat), "divergences": int(post.divergences)}
    if post.min_ess is not None:
        out["min_ess"] = float(post.min_ess)
    if post.num_chains is not None:
        out["num_chains"] = int(post.num_chains)
    if not np.isfinite(out["max_r_hat"]):
        out["max_r_hat"], out["max_r_hat_reason"] = None, "R-hat needs at least 2 chains of at least 4 draws"
    if post.drift is not None:
        out["drift_per_decade"] = float(np.max(np.asarray(post.drift))) * fit.score_scale
    return out


def task_summary(fit: Fit) -> list:
    """Per task: label, training rows, parameters, loss, residual sigma, DE convergence and reason,
    the parameters that sit at an end of their allowed range (``at_bound``, see
    :func:`jaxscale.context_law.fit.params_at_bounds`; ``{}`` when none), the extrapolation drift
    and its backtest rows; with a posterior, 90 % intervals of the parameters and the Bayesian
    backtest's drift (``bayes_drift_per_decade``). ``sigma`` and both drifts are on the training
    table's score scale (``fit.score_scale``)."""
    rows = []
    at_bound = params_at_bounds(fit.spec, np.asarray(fit.theta))
    for t, label in enumerate(fit.task_labels):
        conv = bool(np.asarray(fit.converged)[t])
        row = {"task": label, "n_train": int(np.asarray(fit.n_train)[t]),
               "params": theta_dict(fit.spec, np.asarray(fit.theta)[t]), "loss": float(np.asarray(fit.loss)[t]),
               "sigma": float(np.asarray(fit.sigma)[t]) * fit.score_scale, "converged": conv,
               "de_generations": int(np.asarray(fit.de_generations)[t]),
               "polished": bool(np.asarray(fit.polished)[t]),
               "reason": convergence_reason(conv, np.asarray(fit.de_generations)[t], np.asarray(fit.polished)[t],
                                            fit.spec),
               "at_bound": at_bound[t]}
        if fit.drift is not None:
            row["drift_per_decade"] = float(np.asarray(fit.drift)[t]) * fit.score_scale
            row["backtest_rows"] = int(np.asarray(fit.backtest_rows)[t])
            if fit.drift_reason:
                row["drift_reason"] = fit.drift_reason
        if fit.posterior is not None and fit.posterior.drift is not None:
            row["bayes_drift_per_decade"] = float(np.asarray(fit.posterior.drift)[t]) * fit.score_scale
        if fit.posterior is not None:
            th = np.asarray(fit.posterior.theta)[:, t]
            row["posterior_90"] = {n: [float(np.quantile(th[:, i], 0.05)), float(np.quantile(th[:, i], 0.95))]
                                   for i, n in enumerate(fit.param_names)}
        rows.append(row)
    return rows
