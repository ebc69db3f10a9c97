r"""Naive baselines of held-out learning-curve points, scored beside the curve models.

Two baselines a sceptical user would try first, both built only from the training rows:

* ``nearest_curve``: the held-out point is predicted by the **training curve of the nearest
  configuration** at the same ``ln(step)``: among the training curves of the same task (the
  nearest instance) and of the same instance (the nearest task), the one whose size is closest.
  Curves that cover the point's step are preferred; a curve's value between two logged steps is
  interpolated linearly in ``ln(step)`` and held flat beyond its ends. The held-out point's own
  curve, when some of its rows are training rows (continuations), counts as distance 0: beyond its
  last training step it is used (flat) only when no other curve of the same task or instance
  covers that step. With no training curve sharing the task or the instance, the nearest training
  curve over both sizes (summed distances) is used.
* ``size_trend``: the **per-configuration linear trend of log loss in log size** from the two
  largest training sizes: along each axis (same task, varying instance; same instance, varying
  task) the two training curves of largest size that cover the step give a line of ``ln y``
  against size, evaluated at the held-out configuration's size; with both axes available the two
  ``ln y`` predictions are averaged. The loss itself replaces ``ln y`` when a value is ``<= 0``.
  An axis whose only "size" is the position of its labels in the vocabulary (names such as
  languages, not sizes) gives no trend. Points with no axis of two such curves fall back to
  ``nearest_curve`` (counted).

"Size" (one number per configuration and axis; :func:`size_tables`), in order of preference:

1. ``ln(compute per step)`` of the curve (``ln C - ln step``, i.e. ``ln 6 N T`` when
   ``C = 6 N T step``) when the data carries compute: the same number on both axes;
2. a curve-level descriptor (e.g. a parameter count column), log-transformed when > 0: both axes;
3. per axis: a task-level (instance-level) descriptor, then the task (instance) labels when they
   are numbers (logs when all > 0), then the label's position in the vocabulary.

The measure used is reported with the scores (``size`` in the output).
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

__all__ = ["BASELINES", "BASELINE_LAWS_NOTE", "Curves", "size_tables", "naive_baselines", "data_baselines",
           "problem_baselines", "last_point_mask"]

#: The baselines scored beside every held-out prediction.
BASELINES = ("nearest_curve", "size_trend")

#: What a law command's ``baseline_laws`` holds (bundled and ``--csv`` path alike).
BASELINE_LAWS_NOTE = "the law of the curves with the held-out rows filled by each baseline"


class Curves(NamedTuple):
    """Training curves padded to a common length (sorted by x; padding repeats the last point)."""

    d: np.ndarray  # (K,)
    r: np.ndarray  # (K,)
    x: np.ndarray  # (K, P)
    y: np.ndarray  # (K, P)
    n: np.ndarray  # (K,) real points


def _curves(d, r, x, y) -> Curves:
    d, r = np.asarray(d, np.int64), np.asarray(r, np.int64)
    x, y = np.asarray(x, float), np.asarray(y, float)
    key = d * (int(r.max()) + 1 if r.size else 1) + r
    order = np.lexsort((x, key))
    ks = key[order]
    uniq, inv, counts = np.unique(ks, return_inverse=True, return_counts=True)
    start = np.cumsum(counts) - counts
    rank = np.arange(len(ks)) - start[inv]
    K, P = len(uniq), int(counts.max())
    last = order[start + counts - 1]
    X = np.repeat(x[last][:, None], P, 1)
    Y = np.repeat(y[last][:, None], P, 1)
    X[inv, rank], Y[inv, rank] = x[order], y[order]
    first = order[start]
    return Curves(d[first], r[first], X, Y, counts)


def _interp(c: Curves, xq) -> np.ndarray:
    """``(M, K)`` value of every curve at every query x (linear inside, flat outside)."""
    xq = np.asarray(xq, float)[:, None, None]
    X, Y = c.x[None], c.y[None]
    n = c.n[None, :]
    j = np.clip(np.sum(X <= xq, axis=2), 1, np.maximum(n - 1, 1))  # upper index of the bracket
    x0 = np.take_along_axis(X, (j - 1)[..., None], 2)[..., 0]
    x1 = np.take_along_axis(X, j[..., None], 2)[..., 0]
    y0 = np.take_along_axis(Y, (j - 1)[..., None], 2)[..., 0]
    y1 = np.take_along_axis(Y, j[..., None], 2)[..., 0]
    span = np.where(x1 > x0, x1 - x0, 1.0)
    w = np.clip((xq[..., 0] - x0) / span, 0.0, 1.0)
    w = np.where(x1 > x0, w, 0.0)
    return y0 + w * (y1 - y0)


def _covers(c: Curves, xq, tol: float = 1e-9) -> np.ndarray:
    xq = np.asarray(xq, float)[:, None]
    lo = c.x[:, 0][None]
    hi = c.x[np.arange(len(c.n)), c.n - 1][None]
    return (xq >= lo - tol) & (xq <= hi + tol)


def _as_size(values):
    v = np.asarray(values, float)
    return np.log(v) if np.all(v > 0) else v


_SUFFIX = {"k": 1e3, "m": 1e6, "b": 1e9, "g": 1e9, "t": 1e12}


def _number(label) -> float:
    """A label as a number: ``"350"``, ``"1e9"``, or a size with a suffix (``"125M"``, ``"1.3B"``, ``"7b"``)."""
    text = str(label).strip()
    if text[-1:].lower() in _SUFFIX:
        return float(text[:-1]) * _SUFFIX[text[-1].lower()]
    return float(text)


def _label_sizes(labels: tuple, role: str, positions: bool = True):
    try:
        v = np.asarray([_number(lab) for lab in labels], float)
        if np.all(np.isfinite(v)):
            return _as_size(v), (f"ln({role} label)" if np.all(v > 0) else f"{role} label")
    except (TypeError, ValueError):
        pass
    if not positions:
        return np.full(len(labels), np.nan), f"none ({role} labels are names, not sizes)"
    return np.arange(len(labels), dtype=float), f"position of the {role} label in the vocabulary"


def size_tables(d, r, n_tasks: int, n_inst: int, *, task_labels=(), instance_labels=(), compute=None, x=None,
                descriptors=None, descriptor_names=(), descriptor_levels=(), positions: bool = True):
    """``(size_task (D, R), size_inst (D, R), description)``: the size of every configuration on
    the task axis and on the instance axis (see the module docstring for the order of preference).

    Args:
      d, r: task and instance codes of every row (training and held-out: a configuration's size is
        known even when its loss is not).
      n_tasks, n_inst: vocabulary sizes.
      task_labels, instance_labels: the labels (numbers are used as sizes).
      compute, x: cumulative compute and ``ln(step)`` per row (optional).
      descriptors: ``(n, k)`` descriptor values per row; ``descriptor_names`` and
        ``descriptor_levels`` (``"task"``, ``"instance"``, ``"curve"``) name and classify them.
      positions: ``False``: an axis of non-numeric labels without a descriptor gets NaN sizes
        instead of the labels' positions (no size to draw a trend in).
    """
    d, r = np.asarray(d, np.int64), np.asarray(r, np.int64)
    D, R = int(n_tasks), int(n_inst)
    cid = d * R + r

    def per_curve(v):
        tab = np.full(D * R, np.nan)
        s = np.bincount(cid, weights=v, minlength=D * R)
        cnt = np.bincount(cid, minlength=D * R)
        tab[cnt > 0] = s[cnt > 0] / cnt[cnt > 0]
        return tab.reshape(D, R)

    if compute is not None and x is not None:
        tab = per_curve(np.log(np.asarray(compute, float)) - np.asarray(x, float))
        return tab, tab, "ln(compute per step) of each run (ln C - ln step)"
    desc = None if descriptors is None else np.asarray(descriptors, float)
    levels = tuple(descriptor_levels)
    if desc is not None and "curve" in levels:
        j = levels.index("curve")
        tab = per_curve(_as_size(desc[:, j]))
        name = descriptor_names[j] if descriptor_names else f"descriptor {j}"
        return tab, tab, f"curve-level descriptor {name!r}" + (" (ln)" if np.all(desc[:, j] > 0) else "")
    out, words = [], []
    for role, level, codes, n, labels in (("task", "task", d, D, task_labels),
                                          ("instance", "instance", r, R, instance_labels)):
        if desc is not None and level in levels:
            j = levels.index(level)
            v = np.full(n, np.nan)
            v[codes] = _as_size(desc[:, j])
            name = descriptor_names[j] if descriptor_names else f"descriptor {j}"
            word = f"{level}-level descriptor {name!r}" + (" (ln)" if np.all(desc[:, j] > 0) else "")
        else:
            v, word = _label_sizes(tuple(labels) if len(labels) == n else tuple(range(n)), role, positions)
        out.append(v)
        words.append(f"{role} axis: {word}")
    size_t = np.broadcast_to(out[0][:, None], (D, R)).copy()
    size_i = np.broadcast_to(out[1][None, :], (D, R)).copy()
    return size_t, size_i, "; ".join(words)


def naive_baselines(train, query, size_t, size_i, trend_sizes=None) -> tuple[dict, dict]:
    """Predictions of both baselines for the query rows.

    Args:
      train: ``(d, r, x, y)`` of the training rows (``x = ln(step)``, ``y`` in original units).
      query: ``(d, r, x)`` of the held-out rows.
      size_t, size_i: ``(D, R)`` sizes of every configuration on the task / instance axis
        (:func:`size_tables`).
      trend_sizes: ``(size_t, size_i)`` of the trend when it differs (NaN on an axis without sizes:
        :func:`size_tables` with ``positions=False``); default ``size_t, size_i``.

    Returns:
      ``({"nearest_curve": (M,), "size_trend": (M,)}, info)``; ``info`` counts the points where the
      nearest curve shares neither task nor instance (``n_nearest_any_curve``) and where the trend
      fell back to the nearest curve (``n_trend_fallback``).
    """
    c = _curves(*train)
    qd, qr, qx = (np.asarray(a) for a in query)
    qd, qr = qd.astype(np.int64), qr.astype(np.int64)
    M = len(qx)
    vals = _interp(c, qx)  # (M, K)
    cover = _covers(c, qx)
    same_t = c.d[None] == qd[:, None]
    same_r = c.r[None] == qr[:, None]
    own = same_t & same_r
    st_q, si_q = size_t[qd, qr][:, None], size_i[qd, qr][:, None]
    st_c, si_c = size_t[c.d, c.r][None], size_i[c.d, c.r][None]
    dist = np.where(own, 0.0, np.where(same_t, np.abs(si_q - si_c),
                                       np.where(same_r, np.abs(st_q - st_c) + 1e-12, np.inf)))
    none = ~np.isfinite(dist).any(1)
    dist = np.where(none[:, None], np.abs(st_q - st_c) + np.abs(si_q - si_c), dist)
    score = np.where(cover, 0.0, 1e6) + np.where(np.isfinite(dist), dist, 1e12)
    pick = np.argmin(score, axis=1)
    nearest = vals[np.arange(M), pick]

    tt, ti = (size_t, size_i) if trend_sizes is None else trend_sizes
    st_q, si_q = tt[qd, qr][:, None], ti[qd, qr][:, None]
    st_c, si_c = tt[c.d, c.r][None], ti[c.d, c.r][None]
    pos = np.all(c.y > 0) and np.all(np.isfinite(c.y))
    lv = np.log(np.maximum(vals, 1e-300)) if pos else vals
    preds, n_ax = np.zeros(M), np.zeros(M)
    for axis_mask, size_c, size_q in ((same_t & ~own, si_c, si_q), (same_r & ~own, st_c, st_q)):
        ok = axis_mask & cover & np.isfinite(size_c)
        s = np.where(ok, np.broadcast_to(size_c, ok.shape), -np.inf)
        i2 = np.argmax(s, axis=1)
        s2 = s[np.arange(M), i2]
        s_lower = np.where(s < s2[:, None] - 1e-12, s, -np.inf)
        i1 = np.argmax(s_lower, axis=1)
        s1 = s_lower[np.arange(M), i1]
        have = np.isfinite(s2) & np.isfinite(s1)
        s1, s2 = np.where(have, s1, 0.0), np.where(have, s2, 1.0)
        l2, l1 = lv[np.arange(M), i2], lv[np.arange(M), i1]
        slope = np.where(have, (l2 - l1) / (s2 - s1), 0.0)
        p = l2 + slope * (np.where(have, size_q[:, 0], 1.0) - s2)
        preds += np.where(have, p, 0.0)
        n_ax += have
    trend_l = preds / np.maximum(n_ax, 1)
    trend = np.exp(trend_l) if pos else trend_l
    fallback = n_ax == 0
    trend = np.where(fallback, nearest, trend)
    info = {"n_nearest_any_curve": int(none.sum()), "n_trend_fallback": int(fallback.sum()),
            "trend_in": "ln(loss)" if pos else "loss (a training value is <= 0)"}
    return {"nearest_curve": nearest, "size_trend": trend}, info


def last_point_mask(d, r, x) -> np.ndarray:
    """``(M,)`` the last (largest-x) held-out point of every held-out curve."""
    d, r, x = np.asarray(d, np.int64), np.asarray(r, np.int64), np.asarray(x, float)
    key = d * (int(r.max()) + 1 if r.size else 1) + r
    order = np.lexsort((-x, key))
    first = np.r_[True, key[order][1:] != key[order][:-1]]
    out = np.zeros(len(x), bool)
    out[order[first]] = True
    return out


def data_baselines(train, query, full=None) -> tuple[dict, dict]:
    """Both baselines for held-out rows of your own table (:class:`~.frame.Data`).

    ``full`` (default: the training and query rows together) supplies the configurations' sizes:
    the compute, descriptors and labels of every row.
    """
    import jax

    if full is None:
        full = jax.tree.map(lambda a, b: np.concatenate([np.asarray(a), np.asarray(b)]), train, query)
    args = (full.task, full.instance, full.n_tasks, full.n_instances)
    kw = dict(task_labels=full.task_labels, instance_labels=full.instance_labels, compute=full.compute,
              x=full.x if full.compute is not None else None,
              descriptors=full.descriptors if np.shape(full.descriptors)[1] else None,
              descriptor_names=full.descriptor_names, descriptor_levels=full.descriptor_levels)
    size_t, size_i, how = size_tables(*args, **kw)
    trend = size_tables(*args, **kw, positions=False)
    preds, info = naive_baselines((train.task, train.instance, train.x, train.y),
                                  (query.task, query.instance, query.x), size_t, size_i, trend[:2])
    return preds, {"size": how, "trend_size": trend[2], **info}


def problem_baselines(problem) -> tuple[dict, dict]:
    """Both baselines for the held-out points of a bundled problem (:class:`~.problem.LCProblem`)."""
    data = problem.data
    f = data.frame
    args = (f["d"].to_numpy(), f["r"].to_numpy(), problem.n_tasks, problem.n_reps)
    labels = {"task_labels": data.task_labels, "instance_labels": data.replicate_labels}
    size_t, size_i, how = size_tables(*args, **labels)
    trend = size_tables(*args, **labels, positions=False)
    tr, te = problem.train, problem.test
    preds, info = naive_baselines((np.asarray(tr.d), np.asarray(tr.r), np.asarray(tr.x), problem.y_train),
                                  (np.asarray(te.d), np.asarray(te.r), np.asarray(te.x)), size_t, size_i, trend[:2])
    return preds, {"size": how, "trend_size": trend[2], **info}
