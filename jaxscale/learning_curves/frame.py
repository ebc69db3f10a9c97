r"""Your own learning curves as arrays: :class:`Data` and :func:`from_frame`.

One row per logged point of a training run. A **curve** is a (task, instance) pair: the task is
the upper level of the hierarchy (e.g. the model width), the instance the lower level (e.g. the
depth); the instance codes are shared across tasks, which is what lets the models transfer the
curve of an instance from one task to another.

Runs without a second level (one curve per run, e.g. a W&B export of a sweep): pass
``instance_col=None`` and the run column as ``task_col``; every run is then a task of its own and
all of them share one instance (labelled ``"all"``).

Columns (names are configurable; the defaults are in :data:`DEFAULT_COLUMNS`):

========== ============ ===================================================================
role       default      meaning
========== ============ ===================================================================
task       ``task``     category (text or number) of the upper level
instance   ``instance`` category of the lower level, shared across tasks
x          ``x``        training progress: the step (> 0); the models use ``ln(step)``.
                        With ``x_is_log=True`` the column already holds ``ln(step)``.
target     ``y``        the loss at that point (any units; finite). Optional for queries.
descriptor (none)       numeric configuration columns (e.g. width, depth), constant along a
                        curve; used by the descriptor model ``magp_desc``
compute    (none)       cumulative training FLOPs at that point (> 0), for the scaling law;
                        or ``params`` (N, > 0) with ``tokens_per_step`` T: C = 6 N T step
========== ============ ===================================================================
"""
from __future__ import annotations

import numbers
import warnings

import jax
import numpy as np
import pandas as pd

from jaxscale._pytree import pytree_dataclass, static_field
from jaxscale.data import validate as V
from jaxscale.data.validate import _rows
from jaxscale.learning_curves.spec import DEFAULT_COLUMNS

__all__ = ["Data", "from_frame", "DEFAULT_COLUMNS", "ONE_INSTANCE", "canonical_label", "curve_ids", "frame_kwargs",
           "row_ids"]

#: The instance label of every run of a table read with ``instance_col=None`` (runs without a second
#: level), and the name of the column it is read from (added to a copy of the frame).
ONE_INSTANCE = "all"
ONE_INSTANCE_COL = "__instance__"


@pytree_dataclass
class Data:
    """Learning-curve points as arrays (row ``i`` = row ``i`` of the frame it came from).

    Attributes:
      task: ``(n,)`` int task code (index into ``task_labels``).
      instance: ``(n,)`` int instance code (index into ``instance_labels``).
      x: ``(n,)`` the model input, ``ln(step)``.
      y: ``(n,)`` target (loss); NaN where unknown (query rows).
      descriptors: ``(n, k)`` numeric configuration descriptors (``k`` may be 0).
      compute: ``(n,)`` cumulative training FLOPs, or ``None``.
      row_id: ``(n,)`` the frame's index label of every row (the line of the file for a frame
        from :func:`jaxscale.data.read_table`; the position when the index is not integer), so
        that errors raised after rows were selected still name the user's rows; or ``None``.
      task_labels, instance_labels: the category vocabularies (text).
      descriptor_names: the ``k`` descriptor column names.
      descriptor_levels: per descriptor, ``"task"`` (constant within each task), ``"instance"``
        (constant within each instance) or ``"curve"`` (constant within each curve only).
      x_is_log: whether the x column held ``ln(step)`` already (otherwise it held the step).
      tokens_per_step: the T used to derive ``compute`` from a parameter column, or ``None``.
      columns: ``(role, column name)`` pairs; the target's role is ``"target"``.
    """

    task: jax.Array
    instance: jax.Array
    x: jax.Array
    y: jax.Array
    descriptors: jax.Array
    compute: jax.Array | None = None
    row_id: jax.Array | None = None
    task_labels: tuple = static_field(default=())
    instance_labels: tuple = static_field(default=())
    descriptor_names: tuple = static_field(default=())
    descriptor_levels: tuple = static_field(default=())
    x_is_log: bool = static_field(default=False)
    tokens_per_step: float | None = static_field(default=None)
    columns: tuple = static_field(default=())

    def __len__(self) -> int:
        return int(np.shape(self.x)[0])

    def rows(self, mask) -> "Data":
        """The rows selected by a boolean mask or an index array (vocabularies kept)."""
        sel = np.asarray(mask)
        return jax.tree.map(lambda a: a[sel], self)

    @property
    def n_tasks(self) -> int:
        return len(self.task_labels)

    @property
    def n_instances(self) -> int:
        return len(self.instance_labels)


def canonical_label(value) -> str:
    """Category label as text: integral numbers without a decimal point (``512.0`` -> ``"512"``)."""
    if isinstance(value, (numbers.Number, np.number)) and not isinstance(value, (bool, np.bool_)):
        v = float(value)
        if np.isfinite(v) and v.is_integer():
            return str(int(v))
        return repr(v)
    return str(value).strip()


def _vocabulary(values: pd.Series) -> tuple:
    """Labels in numeric order when every value is a number, else in order of first appearance."""
    uniq = list(dict.fromkeys(values.tolist()))
    numeric = pd.to_numeric(pd.Series(uniq, dtype=object), errors="coerce")
    labels = [canonical_label(u) for u in uniq]
    if len(uniq) and numeric.notna().all():
        order = np.argsort(numeric.to_numpy(float), kind="stable")
        labels = [labels[i] for i in order]
    return tuple(dict.fromkeys(labels))


def _codes(df: pd.DataFrame, col: str, vocab, what: str):
    """(codes, vocabulary): labels of ``col`` mapped to integer codes (unknown labels raise)."""
    s = df[col]
    missing = s.isna().to_numpy()
    if missing.any():
        raise ValueError(f"{what}: column {col!r} has {int(missing.sum())} missing value(s) at rows "
                         f"{_rows(df.index[missing])}; every point needs its {col} label")
    labels = s.map(canonical_label)
    if vocab is None:
        vocab = _vocabulary(s)
    vocab = tuple(vocab)
    dup = sorted({lab for lab in vocab if list(vocab).count(lab) > 1})
    if dup:
        raise ValueError(f"{what}: the vocabulary of {col!r} has duplicate label(s) {dup[:5]}; labels must be "
                         "unique (two codes with one label would merge or split curves)")
    index = {lab: i for i, lab in enumerate(vocab)}
    bad = ~labels.isin(list(index)).to_numpy()
    if bad.any():
        unknown = sorted(set(labels[bad]))
        raise ValueError(f"{what}: column {col!r} has {int(bad.sum())} row(s) with label(s) {unknown[:5]} "
                         f"unknown to the model at rows {_rows(df.index[bad])}; it knows {list(vocab)[:20]}. "
                         "To predict runs of labels the model never saw: predict(..., handle_unknown='prior') (CLI: "
                         "--handle-unknown prior; a new task starts from the prior over its latent, and magp_law / "
                         "magp_desc read it through its descriptors), or refit with their rows in the table, the "
                         "loss empty, selected by --holdout (`lc evaluate --csv ... --predictions OUT.csv`)")
    return labels.map(index).to_numpy(np.int32), vocab


def _descriptor_levels(df, task_col, instance_col, cols) -> tuple:
    levels = []
    V.check_constant_within(df, [task_col, instance_col], cols, "learning-curve table", "curve",
                            "descriptor column")
    for c in cols:
        if (df.groupby(task_col, sort=False)[c].nunique() <= 1).all():
            levels.append("task")
        elif (df.groupby(instance_col, sort=False)[c].nunique() <= 1).all():
            levels.append("instance")
        else:
            levels.append("curve")
    return tuple(levels)


def from_frame(df: pd.DataFrame, *, task_col: str = "task", instance_col: str = "instance", x_col: str = "x",
               y_col: str | None = "y", descriptor_cols=(), compute_col: str | None = None,
               params_col: str | None = None, tokens_per_step: float | None = None, x_is_log: bool = False,
               require_target: bool = True, task_labels=None, instance_labels=None,
               descriptor_levels=None, what: str = "learning-curve table") -> Data:
    """Validate a frame of learning-curve points and return its arrays.

    Args:
      df: one row per logged point of a run (see the module docstring for the columns).
      task_col, instance_col, x_col, y_col: column names of the roles; ``y_col=None`` for a query
        without targets (targets become NaN); ``instance_col=None`` for runs without a second
        level (``task_col`` the run column; every run a task, one shared instance).
      descriptor_cols: numeric configuration columns (constant along each curve).
      compute_col: cumulative training FLOPs per point; or ``params_col`` + ``tokens_per_step``
        (``C = 6 N T step``).
      x_is_log: the x column already holds ``ln(step)`` (otherwise it holds steps > 0).
      require_target: targets must be present and finite (training data); ``False`` allows missing
        values (NaN) or a missing target column (queries).
      task_labels, instance_labels: vocabularies to code against (a fitted model's); unknown labels
        raise. Default: built from the frame.
      descriptor_levels: the levels to use (a fitted model's); default: inferred from the frame.
      what: the table's name in error messages (a fitted model's query: ``"learning-curve query"``).

    Raises:
      ValueError: naming the column, the count, the first rows (frame index) and the fix: empty
        frame, missing columns, non-numeric or non-finite values, steps <= 0, duplicate
        (task, instance, x) points, descriptors that change along a curve, unknown labels.
    """
    if not isinstance(df, pd.DataFrame):
        raise ValueError(f"{what}: expected a pandas DataFrame, got {type(df).__name__}")
    if len(df) == 0:
        raise ValueError(f"{what}: the frame has no rows; give one row per logged point of a run")
    descriptor_cols = tuple(descriptor_cols or ())
    if compute_col is not None and params_col is not None:
        raise ValueError("give either compute_col (FLOPs per point) or params_col + tokens_per_step, not both")
    if params_col is not None and (tokens_per_step is None or not float(tokens_per_step) > 0):
        raise ValueError(f"params_col={params_col!r} needs tokens_per_step > 0 (tokens per training step) "
                         "to compute C = 6 N T step")
    has_y = y_col is not None and y_col in df.columns
    if instance_col is None:  # one level: every run is a task of its own, all share one instance
        df = df.assign(**{ONE_INSTANCE_COL: ONE_INSTANCE})
    elif instance_col not in df.columns and task_col in df.columns and "query" not in what:
        raise ValueError(f"{what}: missing column(s) [{instance_col!r}] (the lower level of the hierarchy, e.g. "
                         f"the depth, shared across the tasks in {task_col!r}); present columns are "
                         f"{list(df.columns)}. Name it (CLI: --instance-col), or, for runs without a second level "
                         "(one curve per run, e.g. a W&B export), pass instance_col=None with the run column as "
                         "task_col (CLI: --curve-col RUN): every run is then a task of its own, all sharing one "
                         "instance")
    inst_col = ONE_INSTANCE_COL if instance_col is None else instance_col
    required = [task_col, inst_col, x_col, *descriptor_cols]
    if require_target:
        if y_col is None:
            raise ValueError("training data needs a target column: pass y_col (the loss column)")
        required.append(y_col)
    required += [c for c in (compute_col, params_col) if c is not None]
    roles = [(task_col, "task", "task"), (inst_col, "instance", "instance"), (x_col, "step", "x"),
             (y_col, "loss", "y"), (compute_col, "compute", "compute"), (params_col, "parameters", "params"),
             *((c, "descriptor", "descriptor") for c in descriptor_cols)]
    V.require_columns(df, required, what, options=_options(roles))
    V.check_finite(df, [x_col], what)
    if not x_is_log:
        V.check_positive(df, [x_col], what, steps=True)
    x_raw = pd.to_numeric(df[x_col]).to_numpy(float)
    _check_x_units(df, x_col, x_raw, x_is_log, what)
    x = x_raw if x_is_log else np.log(x_raw)
    if has_y:
        if require_target:
            V.check_finite(df, [y_col], what)
        else:
            V.check_numeric(df, [y_col], what)
            V.check_no_inf(df, [y_col], what)  # rows to predict may lack a loss; a diverged one is no truth
        y = pd.to_numeric(df[y_col], errors="coerce").to_numpy(float)
    else:
        y = np.full(len(df), np.nan)
    if descriptor_cols:
        V.check_finite(df, list(descriptor_cols), what)
        desc = np.stack([pd.to_numeric(df[c]).to_numpy(float) for c in descriptor_cols], 1)
    else:
        desc = np.zeros((len(df), 0))
    task, task_labels = _codes(df, task_col, task_labels, what)
    inst, instance_labels = _codes(df, inst_col, instance_labels, what)
    dup = pd.DataFrame({"t": task, "i": inst, "x": x}).duplicated(keep=False).to_numpy()
    if dup.any():
        key = (task_col, x_col) if instance_col is None else (task_col, instance_col, x_col)
        raise duplicate_steps_error(df, dup, key, y, y_col if has_y else None, what,
                                    curve_flag="--task-col / --instance-col (or --curve-col)")
    if descriptor_levels is None:
        descriptor_levels = _descriptor_levels(df, task_col, inst_col, descriptor_cols)
    elif descriptor_cols:
        _descriptor_levels(df, task_col, inst_col, descriptor_cols)  # constancy along curves
    compute = None
    if compute_col is not None:
        V.check_positive(df, [compute_col], what)
        compute = pd.to_numeric(df[compute_col]).to_numpy(float)
        if compute.max() < 1e9:
            warnings.warn(f"{what}: column {compute_col!r} (cumulative training FLOPs) holds values up to "
                          f"{compute.max():.3g}; a training run of fewer than 1e9 FLOPs is implausible: is it in "
                          "PetaFLOPs or PF-days? Give FLOPs (1 PF-day = 8.64e19 FLOPs)", UserWarning, stacklevel=2)
    elif params_col is not None:
        V.check_positive(df, [params_col], what)
        n_par = pd.to_numeric(df[params_col]).to_numpy(float)
        if n_par.max() < 1e3:
            warnings.warn(f"{what}: column {params_col!r} (parameter count N) holds values up to {n_par.max():.3g}; "
                          "fewer than 1e3 parameters is implausible: are they in millions or billions? Give raw "
                          "counts (e.g. 1.2e9, not 1.2)", UserWarning, stacklevel=2)
        steps = np.exp(x) if x_is_log else x_raw
        compute = 6.0 * n_par * float(tokens_per_step) * steps
    columns = (("task", task_col), ("instance", instance_col), ("x", x_col))
    if y_col is not None:
        columns += (("target", y_col),)
    columns += tuple(("descriptor", c) for c in descriptor_cols)
    if compute_col is not None:
        columns += (("compute", compute_col),)
    if params_col is not None:
        columns += (("params", params_col),)
    return Data(task=task, instance=inst, x=x, y=y, descriptors=desc, compute=compute, row_id=row_ids(df),
                task_labels=tuple(task_labels), instance_labels=tuple(instance_labels),
                descriptor_names=descriptor_cols, descriptor_levels=tuple(descriptor_levels), x_is_log=bool(x_is_log),
                tokens_per_step=None if tokens_per_step is None or params_col is None else float(tokens_per_step),
                columns=columns)


def duplicate_steps_error(df: pd.DataFrame, dup, key: tuple, y, y_col, what: str, *, ignore=(),
                          curve_flag: str = "--curve-col") -> ValueError:
    """The error for rows that share a curve's step (``dup``: their mask; ``key``: the columns that
    name a curve's point, the step last), with the likeliest cause's fix: rows without a value of
    ``y_col`` (a log that writes each metric on its own row, e.g. a W&B export: keep the rows that
    have one), columns that differ between the duplicates (they tell runs apart: name each run), or
    a run resumed from a checkpoint (keep the last value)."""
    dup = np.asarray(dup, bool)
    key = [c for c in key if c is not None]
    keys = ", ".join(map(repr, key))
    hint = (f"A run resumed from a checkpoint logs its last steps again: keep the last value, e.g. in pandas df = "
            f"df.drop_duplicates({key}, keep='last'); otherwise remove or average the duplicates (e.g. "
            f"df.groupby({key}).mean())")
    empty = dup & ~np.isfinite(np.asarray(y, float)) if y_col is not None else np.zeros_like(dup)
    rows = df.loc[dup]
    other = [c for c in df.columns if c not in (*key, y_col, *ignore)]
    differ = [c for c in other if (rows.groupby(key, dropna=False)[c].nunique(dropna=False) > 1).any()]
    if empty.any():
        hint = (f"{int(empty.sum())} of them have no {y_col!r}: a log that writes several metrics on separate rows "
                f"(e.g. a W&B export) leaves the loss empty on the others (keeping the last row of each step would "
                f"keep those). Keep the rows that have one with --where '{V._where_name(y_col)}.notna()'")
    elif differ:
        parts = " + '/' + ".join(f"df[{c!r}].astype(str)" for c in [key[0], differ[0]])
        hint = (f"They differ in column(s) {differ[:5]}: if those tell runs apart, give {curve_flag} a column that "
                f"names each run, e.g. in pandas df['run'] = {parts}. {hint}")
    return ValueError(f"{what}: {int(dup.sum())} rows share the same ({keys}) point at rows {_rows(df.index[dup])}; "
                      f"a curve has one value per step. {hint}")


def row_ids(df: pd.DataFrame) -> np.ndarray:
    """The frame's index labels as ``int64`` (file lines for :func:`jaxscale.data.read_table` frames);
    positions when the index is not integer."""
    idx = df.index
    if pd.api.types.is_integer_dtype(idx):
        return np.asarray(idx, np.int64)
    return np.arange(len(df), dtype=np.int64)


def _check_x_units(df, x_col: str, x_raw: np.ndarray, x_is_log: bool, what: str) -> None:
    """Refuse ``ln(step)`` values that cannot be logs; warn when steps look like logs already."""
    if x_is_log:
        big = x_raw > 50.0
        if big.any():
            raise ValueError(f"{what}: column {x_col!r} is read as ln(step) (x_is_log) but holds values up to "
                             f"{x_raw.max():.6g} at rows {_rows(df.index[big])}: ln(step) > 50 means more than 5e21 "
                             "steps. These look like steps: drop x_is_log (CLI --x-is-log)")
        return
    integral = np.mean(x_raw == np.round(x_raw))
    if x_raw.max() < 25.0 and integral < 0.5:
        warnings.warn(f"{what}: column {x_col!r} holds values up to {x_raw.max():.4g}, mostly not integers: it looks "
                      "like ln(step) already, and the models take ln of this column. If so pass x_is_log=True "
                      "(CLI --x-is-log); fractional epochs are fine as they are", UserWarning, stacklevel=3)


def frame_kwargs(columns: tuple) -> dict:
    """``from_frame`` keyword arguments that read a table with the columns of a fit (no target required)."""
    roles = {}
    for role, name in columns:
        roles.setdefault(role, []).append(name)
    return dict(task_col=roles["task"][0], instance_col=roles["instance"][0], x_col=roles["x"][0],
                y_col=roles.get("target", [None])[0], descriptor_cols=tuple(roles.get("descriptor", ())))


def curve_ids(data: Data) -> np.ndarray:
    """``(n,)`` curve id of every row: ``task * n_instances + instance``."""
    return np.asarray(data.task, np.int64) * max(data.n_instances, 1) + np.asarray(data.instance, np.int64)


def _options(roles) -> dict:
    """``{column: "(role): --flag NAME (keyword=...)"}`` for the missing-column message, from
    ``(column, role, flag stem)`` triples (the first role of a column given twice)."""
    out = {}
    for col, role, stem in roles:
        if col is None or col in out:
            continue
        many = stem == "descriptor"
        out[col] = (f"({role}): --{stem}-cols C1,C2 ({stem}_cols=[...])" if many
                    else f"({role}): --{stem}-col NAME ({stem}_col=...)")
    return out
