"""Array form of a (dataset, split) pair: the inputs every learning-curve model consumes."""
from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp
import numpy as np

from jaxscale.learning_curves.data import LCData, load_lc
from jaxscale.learning_curves.preprocess import Scaler, task_scaler
from jaxscale.learning_curves.splits import Split, make_split

__all__ = ["Points", "LCProblem", "make_problem", "points_from_frame", "pad_points"]


class Points(NamedTuple):
    """Points of the hierarchy. ``p`` indexes ``xgrid``; ``c`` is the curve id d * R + r.

    ``y`` is standardised (z-score per task) for training points; for query points it may be
    anything (ignored by the predictors).
    """

    x: jnp.ndarray  # (N,) float
    p: jnp.ndarray  # (N,) int, index into the problem's xgrid
    r: jnp.ndarray  # (N,) int
    d: jnp.ndarray  # (N,) int
    c: jnp.ndarray  # (N,) int
    y: jnp.ndarray  # (N,) float
    w: jnp.ndarray | None = None  # (N,) 1.0 real / 0.0 padding (see pad_points); None = all real


def pad_points(pts: Points, n: int) -> Points:
    """Pad to ``n`` points with inert rows (weight 0): the Gram matrix becomes
    ``blockdiag(K, I)`` and ``y = 0`` there, so fits and predictions are unchanged (the NLL only
    shifts by a constant). Lets splits / active-learning rounds of different sizes share ONE
    compiled program."""
    N = pts.y.shape[0]
    if n < N:
        raise ValueError(f"pad_points: n={n} is smaller than the {N} points given")
    k = n - N
    cat = lambda a, v: jnp.concatenate([a, jnp.full((k,), v, a.dtype)])  # noqa: E731
    w = jnp.ones(N, pts.y.dtype) if pts.w is None else pts.w
    return Points(cat(pts.x, 0.0), cat(pts.p, 0), cat(pts.r, 0), cat(pts.d, 0), cat(pts.c, -1),
                  cat(pts.y, 0.0), cat(w, 0.0))


class LCProblem(NamedTuple):
    """Training points, held-out points, the scaler and bookkeeping of one split."""

    data: LCData
    split: Split
    xgrid: jnp.ndarray  # (G,) sorted unique x of the dataset
    train: Points  # standardised y
    test: Points  # standardised y (with the same scaler)
    y_test: np.ndarray  # (M,) held-out truth in original units
    y_train: np.ndarray  # (N,) training targets in original units
    scaler: Scaler
    n_tasks: int
    n_reps: int
    leaky: bool


def points_from_frame(frame, xgrid: np.ndarray, scaler: Scaler, n_reps: int) -> Points:
    """Points (with standardised y) for rows of an ``LCData.frame``."""
    x = frame["x"].to_numpy(dtype=float)
    p = np.searchsorted(xgrid, x)
    p = np.clip(p, 0, len(xgrid) - 1)
    if not np.allclose(xgrid[p], x):
        raise ValueError("x values off the problem's grid; build the problem from a frame that contains them")
    d = frame["d"].to_numpy(dtype=int)
    r = frame["r"].to_numpy(dtype=int)
    y = (frame["value"].to_numpy(dtype=float) - scaler.mean[d]) / scaler.std[d]
    return Points(jnp.asarray(x), jnp.asarray(p), jnp.asarray(r), jnp.asarray(d),
                  jnp.asarray(d * n_reps + r), jnp.asarray(y))


def _check_not_constant(data: LCData, train: np.ndarray) -> None:
    """Refuse training values that are constant overall or within a task (zero z-score scale)."""
    f = data.frame.loc[np.asarray(train, bool)]
    v = f["value"].to_numpy(float)
    if np.ptp(v) == 0:
        raise ValueError(f"{data.name}: column 'value' is constant ({v[0]:.6g}) on all {len(v)} training rows; there "
                         "is no curve to learn")
    spread = f.groupby("d")["value"].agg(["size", np.ptp])
    flat = spread[(spread["size"] >= 2) & (spread["ptp"] == 0)]
    if len(flat):
        d = int(flat.index[0])
        rows = f.index[f["d"].to_numpy() == d][:5].tolist()
        raise ValueError(f"{data.name}: column 'value' is constant within task {data.task_labels[d]!r} on its "
                         f"{int(flat['size'].iloc[0])} training rows (rows {rows}); its per-task scale is zero. Drop "
                         "that task or check the values")


def make_problem(data: LCData | str, split: Split | str, *, leaky: bool = False, holdout=None) -> LCProblem:
    """Assemble a problem. ``data`` may be a dataset name, ``split`` a split name.

    ``leaky=False`` (default): z-score constants from the training rows; ``True``: the
    original's constants over every row of the task (held-out curves leak in).
    """
    if isinstance(data, str):
        data = load_lc(data)
    if isinstance(split, str):
        split = make_split(data, split, holdout=holdout)
    f = data.frame
    if split.train.sum() == 0 or split.test.sum() == 0:
        raise ValueError(f"split {split.name!r} has {int(split.train.sum())} training and "
                         f"{int(split.test.sum())} held-out rows; both must be non-empty")
    D, R = len(data.task_labels), len(data.replicate_labels)
    _check_not_constant(data, split.train)
    rows = np.ones(len(f), bool) if leaky else split.train
    scaler = task_scaler(f["d"].to_numpy(int), f["value"].to_numpy(float), D, rows)
    xgrid = np.unique(f["x"].to_numpy(dtype=float))
    ftr, fte = f.loc[split.train], f.loc[split.test]
    return LCProblem(
        data, split, jnp.asarray(xgrid),
        points_from_frame(ftr, xgrid, scaler, R), points_from_frame(fte, xgrid, scaler, R),
        fte["value"].to_numpy(float), ftr["value"].to_numpy(float), scaler, D, R, leaky,
    )
