r"""Runs in progress: predict the rest of each learning curve from its early part.

Every curve ``k`` follows a saturating power law in its training progress ``x`` (the step),

.. math:: L_k(x) = E_k + A_k\,x^{-\alpha_k},

fitted **per curve** on its training rows (the early part) and predicted on the others (the
tail), with a central interval. Two fits on the same rows, in the same run:

* :func:`extrapolate` (the model): Bayesian, by NUTS (numpyro) over **all curves in one
  vectorised program** (a plate over the runs in progress: the curves with tail rows; finished
  curves are not fitted). Each curve is written in its own units,
  ``t = x / x_k`` (``x_k``: its last training step) and ``L / y_k`` (``y_k``: its last training
  value), so that the law is ``c_k (e^{g_k} + (1 - e^{g_k}) t^{-\alpha_k})``: ``c_k`` the value at
  the last training step (prior ``N(1, 0.2)``), ``e^{g_k} c_k = E_k`` the asymptote (``g_k < 0``: a
  falling loss, ``g_k > 0``: a rising score; prior ``N(0, 1.5)``), ``\ln \alpha_k \sim N(\ln 0.5, 1)``.
  The log noise scale ``\ln \sigma_k`` is partially pooled across curves (a normal hierarchy with
  learnt mean and spread): the law of each curve is its own, its noise level borrows from the
  others. (Pooling the exponents and asymptotes too shrank them towards each other and made the
  intervals too narrow on curves that follow the law exactly.) The noise is
  Student-t (4 degrees of freedom) on ``\ln L``, so single warm-up points that no power law
  follows do not drag the fit; a systematic misfit of the early part (e.g. the plateau of a loss at
  ``ln(vocabulary)`` before it starts to fall) is absorbed by ``\sigma_k`` and widens the interval.
  Posterior predictive draws give the point prediction (their median) and the central ``level``
  interval. Diagnostics (R-hat, ESS per chain, divergences, chains) are computed by
  :func:`jaxscale.infer.run_nuts` and warned.

  A joint NUTS does not scale to many runs or long logs: at every draw all its chains wait for
  the longest trajectory of any run (200 runs took more than 14 min on 2 CPU cores; 12 runs of
  500 early points each, 9 min). The default sampler (``"auto"``) therefore first samples
  each run on its own by Laplace importance sampling
  (:func:`jaxscale.infer.laplace_importance`: its MAP, by damped Newton from the best point of a
  coarse grid over asymptote and exponent, moment-matched Student-t mixture proposals,
  the Pareto k-hat of its weights), all runs in one program. The law and priors are the same; the
  noise level's normal prior is set by empirical Bayes instead of being sampled (the grid point of
  mean and spread of ``ln sigma`` with the highest Laplace marginal likelihood of the runs; the
  runs' own MAP noise levels would be biased low, since a 3-parameter law fits a handful of
  points almost exactly). On the bundled cases (30 runs or fewer) both samplers give the same
  RMSLE and coverage within noise, in 1 to 25 s per table against 33 to 288 s; 2,000 synthetic
  runs take about a minute on 2 CPU cores. When every run's k-hat is at most 0.7 those draws are
  kept; otherwise (a run whose posterior has a tail or a mode the proposal misses) the failing
  runs are sampled again, alone, with :data:`AUTO_RETRY_PROPOSALS` proposals per run, and the runs
  that still fail are sampled by NUTS, each on its own under the same posterior (its priors and
  the empirical-Bayes noise prior; all of them x the chains in one program,
  :func:`jaxscale.infer.batched_nuts`), when at most :data:`AUTO_IMPORTANCE_RUNS` still fail;
  with more, their importance draws are kept and the runs are named in a warning.
  ``sampler="nuts"`` (one NUTS over the joint model of all runs, the noise level pooled) or
  ``"importance"`` forces one of them.
* :func:`powerlaw_lstsq` (the usual practice, the baseline): ``scipy.optimize.curve_fit`` of the
  same law on each curve's training rows, least squares on ``L``, ``E >= 0``, ``0 < alpha <= 5``,
  no interval. A curve where it fails keeps its last training value (counted).

Scores on the held-out rows (:func:`score_tail`): RMSLE (root mean squared error of ``ln L``),
MAE and the coverage of the interval.

The interval is calibrated on the finished runs of the table, when it has some (see
:func:`extrapolate`): they are cut like the runs in progress, and a split-conformal correction
learnt on their held-back rows widens the interval with the distance beyond each run's early part
(or narrows it, when it was too wide).

When the runs carry configuration descriptors (``tail_from_frame(..., descriptor_cols=[...])``),
:func:`extrapolate_gp` fits one law-informed hierarchical GP to the early parts of all runs at
once instead, so each run's tail borrows from every run (``evaluate_tail(..., model="magp_law")``).
"""
from __future__ import annotations

import warnings
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from jaxscale._log import get_logger, heartbeat
from jaxscale._pytree import StaticDict, pytree_dataclass, static_field
from jaxscale.data import validate as V
from jaxscale.data.validate import _rows
from jaxscale.infer.prediction import Prediction, check_level
from jaxscale.learning_curves.spec import AUTO_IMPORTANCE_RUNS, SAMPLERS, ExtrapolateSpec
from jaxscale.metrics import rmsle

__all__ = ["ExtrapolateSpec", "TailData", "TailFit", "tail_from_frame", "add_steps", "extrapolate", "extrapolate_gp",
           "powerlaw_lstsq", "score_tail", "evaluate_tail", "cut_curves", "horizon", "MIN_TRAIN_POINTS", "HORIZON_UNIT",
           "EARLY_COL"]

#: Training points a curve needs: the law has 3 parameters, plus one.
MIN_TRAIN_POINTS = 4


@pytree_dataclass
class TailData:
    """Learning-curve points split into the early (training) part and the tail (a pytree: the
    arrays are leaves, the labels and column names static).

    Attributes:
      curve: ``(n,)`` curve code (index into ``labels``).
      x: ``(n,)`` step (> 0).
      y: ``(n,)`` loss (> 0); NaN where unknown (tail rows to predict only).
      train: ``(n,)`` bool, the rows the laws are fitted on.
      labels: the curve labels.
      row_id: ``(n,)`` the frame's index labels (file lines for ``read_table`` frames).
      columns: ``(role, column name)`` pairs (role ``"descriptor"`` for each descriptor column).
      descriptors: ``(n, k)`` numeric configuration of each row's run (constant along a run), or
        None; read by :func:`extrapolate_gp`.
      ceiling: a bound the target cannot pass (a score that rises: accuracy 1, chrF or BLEU 100),
        or None (a loss). With one, every law is fitted to the gap ``ceiling - y``, which falls
        towards its own asymptote like a loss; predictions and intervals stay below the bound, and
        the RMSLE is taken of the gap.
    """

    curve: np.ndarray
    x: np.ndarray
    y: np.ndarray
    train: np.ndarray
    labels: tuple = static_field()
    row_id: np.ndarray
    columns: tuple = static_field(default=())
    descriptors: np.ndarray | None = None
    ceiling: float | None = static_field(default=None)

    def __post_init__(self):
        object.__setattr__(self, "labels", tuple(self.labels))
        object.__setattr__(self, "columns", tuple(tuple(c) for c in self.columns))


@pytree_dataclass
class TailFit:
    """Result of :func:`extrapolate`: the prediction of the tail rows, the posterior of the
    per-curve parameters (original units) and the sampler's diagnostics (a pytree: the arrays are
    leaves, the diagnostics and the calibration record static)."""

    prediction: Prediction
    rows: np.ndarray  # (m,) the predicted (tail) rows, positions in the data
    curves: np.ndarray  # (K,) codes of the fitted curves (those with tail rows)
    E: np.ndarray | None  # (S, K) asymptote per draw and fitted curve (None: extrapolate_gp)
    A: np.ndarray | None  # (S, K)
    alpha: np.ndarray | None  # (S, K)
    diagnostics: dict = static_field()
    calibration: dict | None = static_field(default=None)  # see :func:`extrapolate` (finished runs held back)
    followed: np.ndarray | None = None  # (m,) code of the finished run each tail row follows, -1: the law's

    def __post_init__(self):
        object.__setattr__(self, "diagnostics", StaticDict(self.diagnostics))
        if self.calibration is not None:
            object.__setattr__(self, "calibration", StaticDict(self.calibration))


def tail_from_frame(df: pd.DataFrame, *, curve_col: str, x_col: str, y_col: str, train_col: str | None = None,
                    cutoff: float | None = None, x_is_log: bool = False, descriptor_cols=(),
                    ceiling: float | None = None) -> TailData:
    """Validate a long table (one row per logged point) and mark the early part of every curve.

    Args:
      df: the table (index = file lines with :func:`jaxscale.data.read_table`).
      curve_col: the run / curve id column (any values).
      x_col: training progress: the step (> 0), or ``ln(step)`` with ``x_is_log``.
      y_col: the loss (> 0); missing values are allowed on tail rows (predicted, not scored).
      train_col: a column of booleans (or 0/1): rows the laws are fitted on.
      cutoff: instead of ``train_col``: the rows with step ``<= cutoff`` are the early part.
      x_is_log: the x column holds ``ln(step)``.
      descriptor_cols: numeric configuration columns, constant along each run (e.g. parameter
        count, depth), for :func:`extrapolate_gp`.
      ceiling: for a score that rises towards a bound it cannot pass (accuracy 1, chrF or BLEU
        100): the laws are fitted to the gap ``ceiling - y`` (see :class:`TailData`); every value
        must lie below it (scores of 0 are then allowed).

    Raises:
      ValueError: naming the column, the count, the rows and the fix: missing columns, an empty
        table, non-finite or non-positive steps, losses ``<= 0`` (scores ``>= ceiling``) or missing on
        training rows, a ceiling that is not a finite number, two
        rows of a curve at the same step, a train flag that is not boolean, neither or both of
        ``train_col`` / ``cutoff``, a curve with fewer than :data:`MIN_TRAIN_POINTS` training points,
        a curve whose training part is constant, no tail row at all, descriptors that are not
        numbers or change along a run.
    """
    what = "learning-curve table"
    descriptor_cols = list(descriptor_cols or ())
    if len(df) == 0:
        raise ValueError(f"{what}: the table has no rows; give one row per logged point of a run")
    if (train_col is None) == (cutoff is None):
        raise ValueError("give the early part of the curves either as a column of booleans (--train-col) or as a step "
                         "cutoff (--cutoff), exactly one of them; for runs still training, every logged row is the "
                         "early part with the steps to predict added (--predict-steps S1,S2; add_steps)")
    from jaxscale.learning_curves.frame import _options

    roles = [(curve_col, "run", "curve"), (x_col, "step", "x"), (y_col, "loss", "y"),
             (train_col, "early part", "train"), *((c, "descriptor", "descriptor") for c in descriptor_cols)]
    V.require_columns(df, [curve_col, x_col, y_col] + ([train_col] if train_col else []) + descriptor_cols, what,
                      options=_options(roles))
    if descriptor_cols:
        V.check_numeric(df, descriptor_cols, what)
        V.check_finite(df, descriptor_cols, what)
    V.check_finite(df, [x_col], what)
    if not x_is_log:
        V.check_positive(df, [x_col], what, steps=True)
    x = pd.to_numeric(df[x_col]).to_numpy(float)
    x = np.exp(x) if x_is_log else x
    V.check_numeric(df, [y_col], what)
    y = pd.to_numeric(df[y_col], errors="coerce").to_numpy(float)
    if df[curve_col].isna().any():
        bad = df[curve_col].isna().to_numpy()
        raise ValueError(f"{what}: column {curve_col!r} has {int(bad.sum())} missing run id(s) at rows "
                         f"{_rows(df.index[bad])}; every point needs its run")
    if train_col:
        flag = df[train_col]
        empty = flag.isna().to_numpy()
        if empty.any():
            raise ValueError(f"{what}: column {train_col!r} has {int(empty.sum())} empty cell(s) at rows "
                             f"{_rows(df.index[empty])}; every row needs True (early part, fitted) or False (to "
                             f"predict). Fill them, or leave those rows out with --where "
                             f"'{V._where_name(train_col)}.notna()' (with a --where of your own, join the two with "
                             "'and')")
        ok = flag.isin([True, False, 0, 1, "True", "False", "true", "false"]).to_numpy()
        if not ok.all():
            seen = sorted(map(str, pd.unique(flag[~ok])))
            early = next((v for v in seen if v.lower() in ("train", "training", "early", "fit", "yes", "y", "t")),
                         None)
            make = (f"df['early'] = df[{train_col!r}] == {early!r}" if early is not None else
                    f"df['early'] = df[{train_col!r}].isin([...]) with the value(s) among {seen[:5]} that mark the "
                    "early part")
            raise ValueError(f"{what}: column {train_col!r} must hold booleans (True/False or 1/0): True on the "
                             f"early part of each run, which the laws are fitted on; {int((~ok).sum())} other "
                             f"value(s) ({seen[:5]}) at rows {_rows(df.index[~ok])}. Make such a column, e.g. in "
                             f"pandas {make}, and pass it as --train-col, or cut by step with --cutoff")
        train = flag.astype(str).str.lower().isin(["true", "1", "1.0"]).to_numpy()
    else:
        train = x <= float(cutoff)
    labels = tuple(dict.fromkeys(df[curve_col].tolist()))
    code = df[curve_col].map({lab: i for i, lab in enumerate(labels)}).to_numpy(np.int64)
    dup = pd.DataFrame({"c": code, "x": x}).duplicated(keep=False).to_numpy()
    if dup.any():
        from jaxscale.learning_curves.frame import duplicate_steps_error

        raise duplicate_steps_error(df, dup, (curve_col, x_col), y, y_col, what, ignore=(train_col,),
                                    curve_flag="--curve-col (curve_col)")
    bad = train & ~np.isfinite(y)
    if bad.any():
        inf = train & np.isinf(y)
        inf_tail = ~train & np.isinf(y)  # one --where for both, not a second error after the first fix
        keep = (f"'{V._where_name(y_col)}.notna()'" if not inf_tail.any() else
                f"'{V._where_name(y_col)}.notna() and abs({V._where_name(y_col)}) < inf' (the rows to predict have "
                f"{int(inf_tail.sum())} infinite value(s) too, at rows {_rows(df.index[inf_tail])})")
        hint = (f"A log that writes several metrics on separate rows (e.g. a W&B export) leaves the loss empty on the "
                f"other rows: keep the rows that have one with --where {keep}")
        if inf.any():  # a diverged step: notna() would keep it
            hint = (f"{int(inf.sum())} of them are infinite (rows {_rows(df.index[inf])}: a step that diverged); "
                    f"leave them out if that is what they are, with the empty ones, with --where "
                    f"'{V._where_name(y_col)} < inf'")
        raise ValueError(f"{what}: column {y_col!r} has {int(bad.sum())} missing or non-finite value(s) on training "
                         f"rows {_rows(df.index[bad])}; the early part of every curve needs its loss. {hint}")
    if ceiling is not None:
        _check_ceiling(df, y, ceiling, y_col, what)
    V.check_no_inf(df, [y_col], what)  # a tail row that diverged: no truth to score (training rows: above)
    nonpos = np.isfinite(y) & (y <= 0) & (ceiling is None)  # a score with a ceiling may be 0: its gap is > 0
    if nonpos.any():
        zeros = ""
        if (y[nonpos] == 0).all():
            zeros = (f". A score of 0 (BLEU, accuracy) before a metric takes off has no logarithm: leave those rows "
                     f"out with --where '{V._where_name(y_col)} > 0' (with a --where of your own, join the two with "
                     f"'and'); they are {int(nonpos.sum())} of {int(np.isfinite(y).sum())} rows with a value")
        raise ValueError(f"{what}: column {y_col!r} has {int(nonpos.sum())} value(s) <= 0 at rows "
                         f"{_rows(df.index[nonpos])}; the saturating power law and the RMSLE take ln of a loss > 0"
                         f"{zeros}. A score that rises towards a bound (accuracy 1, BLEU 100) can be fitted as its gap "
                         f"to the bound: --ceiling 100 (tail_from_frame(..., ceiling=100))")
    if not (~train).any():
        raise ValueError(f"{what}: every row is in the early part; nothing is left to predict (lower --cutoff or mark "
                         "tail rows False in --train-col; for steps the runs have not reached, --predict-steps S1,S2)")
    if not train.any():
        first = pd.Series(x).groupby(code).min().to_numpy()
        shown = (lambda v: float(np.log(v))) if x_is_log else float
        how = (f"no value of {train_col!r} is True" if train_col else
               f"--cutoff {cutoff!r} lies before every run's first {x_col} (the earliest is {shown(first.min()):.6g}, "
               f"the median run starts at {shown(np.median(first)):.6g})")
        raise ValueError(f"{what}: no row is in the early part: {how}. Each run in progress needs at least "
                         f"{MIN_TRAIN_POINTS} early points to fit its law; "
                         + ("mark them True" if train_col else "raise --cutoff (tail_from_frame(..., cutoff=...))"))
    if np.ptp(y[train]) == 0:
        raise ValueError(f"{what}: column {y_col!r} is constant ({y[train][0]:.6g}) on every training row; there is no "
                         "curve to extrapolate")
    n_tr = np.bincount(code[train], minlength=len(labels))
    has_tail = np.bincount(code[~train], minlength=len(labels)) > 0
    # runs in progress (with rows to predict) need a law; a finished run serves only to calibrate
    # the interval, and one too short for that is left out of it (counted in the calibration report)
    few = np.flatnonzero((n_tr < MIN_TRAIN_POINTS) & has_tail)
    if few.size:
        k = int(few[0])
        rows = df.index[(code == k) & train]
        step = f"np.exp(df[{x_col!r}])" if x_is_log else f"df[{x_col!r}]"
        early = f"df[{train_col!r}]" if train_col else f"{step}.le({cutoff!r})"
        raise ValueError(f"{what}: curve {curve_col!r} = {labels[k]!r} has {int(n_tr[k])} training point(s) (rows "
                         f"{_rows(rows)} of its {int(np.sum(code == k))}); the law E + A x^-alpha has 3 parameters, "
                         f"so each run in progress needs at least {MIN_TRAIN_POINTS} early points ({few.size} run(s) "
                         f"have fewer, e.g. {[labels[i] for i in few[:3]]}). Raise the cutoff or drop those runs, "
                         f"e.g. in pandas df = df[{early}.groupby(df[{curve_col!r}]).transform('sum') >= "
                         f"{MIN_TRAIN_POINTS}]")
    spread = pd.Series(y[train]).groupby(code[train]).agg(np.ptp).reindex(range(len(labels))).to_numpy()
    flat = np.flatnonzero((spread == 0) & has_tail)
    if flat.size:
        k = int(flat[0])
        shown = [getattr(labels[i], "item", lambda i=i: labels[i])() for i in flat[:20]]  # plain values
        more = f" (+{flat.size - 20} more)" if flat.size > 20 else ""
        raise ValueError(f"{what}: column {y_col!r} is constant on the training rows of {flat.size} run(s) in "
                         f"progress: {curve_col!r} = {shown}{more} (the first: rows "
                         f"{_rows(df.index[(code == k) & train])}); a flat start fixes no power law. Raise the cutoff "
                         "or drop those runs, e.g. --where "
                         f"\"{V._where_name(curve_col)} not in {shown}\"{more}")
    _warn_non_monotone(code, x, y, train, labels, curve_col, x_col, x_is_log)
    desc = None
    if descriptor_cols:
        V.check_constant_within(df, [curve_col], descriptor_cols, what, "run", "descriptor column")
        desc = df[descriptor_cols].apply(pd.to_numeric).to_numpy(float)
    columns = ((("curve", curve_col), ("x", x_col), ("target", y_col)) + ((("train", train_col),) if train_col else ())
               + tuple(("descriptor", c) for c in descriptor_cols))
    from jaxscale.learning_curves.frame import row_ids

    return TailData(code, x, y, train, labels, row_ids(df), columns, desc, None if ceiling is None else float(ceiling))


def _check_ceiling(df, y, ceiling, y_col: str, what: str) -> None:
    """Every value of a score fitted as its gap to ``ceiling`` lies below it."""
    try:
        c = float(ceiling)
    except (TypeError, ValueError):
        c = np.nan
    if not np.isfinite(c):
        raise ValueError(f"{what}: the ceiling must be a finite number (the bound the score {y_col!r} cannot pass, "
                         f"e.g. 1 for an accuracy, 100 for chrF or BLEU), got {ceiling!r}")
    over = np.isfinite(y) & (y >= c)
    if over.any():
        raise ValueError(f"{what}: column {y_col!r} has {int(over.sum())} value(s) >= the ceiling {c:g} at rows "
                         f"{_rows(df.index[over])} (the largest {np.max(y[over]):.6g}); the laws are fitted to the "
                         f"gap {c:g} - {y_col}, which must be > 0. Give the bound the score cannot pass (a percentage: "
                         f"100), or leave a perfect score out with --where '{V._where_name(y_col)} < {c:g}'")


def _gap(data: TailData) -> TailData:
    """The table the laws are fitted to: the gap ``ceiling - y`` of a bounded score, else ``data``."""
    if data.ceiling is None:
        return data
    return data.replace(y=data.ceiling - np.asarray(data.y, float), ceiling=None)


def _from_gap(ceiling, pred: Prediction) -> Prediction:
    """A prediction of the gap ``ceiling - y`` back in the target's units (its ends swap)."""
    if ceiling is None:
        return pred
    return pred._replace(mean=ceiling - pred.mean, lower=ceiling - pred.upper, upper=ceiling - pred.lower,
                         samples=None if pred.samples is None else ceiling - pred.samples)


def _warn_past_bound(data: TailData, pred: Prediction, what: str) -> None:
    """Warn when a rising score without a ceiling, whose values all lie in [0, 1] or [0, 100], is
    predicted past that apparent bound (the law's asymptote of a rising score is unbounded); with a
    ceiling, when lower ends fall below 0 though no value does (the gap is bounded below only)."""
    y = np.asarray(data.y, float)
    known = y[np.isfinite(y)]
    if not known.size or known.min() < 0:
        return
    name = dict(data.columns).get("target", "the target")
    if data.ceiling is not None:
        lo = np.asarray(pred.lower, float)
        if (lo < 0).any():
            warnings.warn(f"{what}: {int((lo < 0).sum())} of {lo.size} predicted lower ends fall below 0 (the smallest "
                          f"{lo.min():.4g}), though every value of {name!r} is >= 0: the law of the gap "
                          f"{data.ceiling:g} - {name} bounds the score above only. So wide an interval says the early "
                          "part fixes little (e.g. a flat start before the score takes off); read such ends as 0",
                          UserWarning, stacklevel=3)
        return
    lo = np.asarray(pred.lower, float)
    if known.min() > 0 and (lo <= 0).any():  # a GP's interval is symmetric in the value, not in its log
        warnings.warn(f"{what}: {int((lo <= 0).sum())} of {lo.size} predicted lower ends are 0 or below (the smallest "
                      f"{lo.min():.4g}), though every value of {name!r} is > 0: this model's interval is symmetric in "
                      f"{name}, and so wide an interval says it knows little there. Read such ends as 0; the power "
                      "law per run (the default model) keeps its interval above 0", UserWarning, stacklevel=3)
    bound = 1.0 if known.max() <= 1 else 100.0 if known.max() <= 100 else None
    hi = np.asarray(pred.upper, float)
    if bound is None or not (hi > bound).any():
        return
    tr = np.asarray(data.train, bool)
    f = pd.DataFrame({"c": np.asarray(data.curve)[tr], "x": np.asarray(data.x)[tr], "y": y[tr]}).sort_values(["c", "x"])
    ends = f.groupby("c")["y"].agg(["first", "last"])
    if not (ends["last"] > ends["first"]).mean() > 0.5:  # a falling loss: no bound above
        return
    warnings.warn(f"{what}: {int((hi > bound).sum())} of {hi.size} predicted upper ends pass {bound:g} (the largest "
                  f"{hi.max():.4g}), while every value of {name!r} lies in [0, {bound:g}] and the runs rise: a law "
                  f"for a rising score has no bound above. If the score cannot pass {bound:g} (an accuracy, chrF, "
                  f"BLEU), say so: --ceiling {bound:g} (tail_from_frame(..., ceiling={bound:g})) fits the laws to the "
                  f"gap {bound:g} - score, and predictions and intervals stay below it", UserWarning, stacklevel=3)


#: The column :func:`add_steps` marks the logged rows with (True) and the added steps with (False).
EARLY_COL = "early_part"


def add_steps(df: pd.DataFrame, *, curve_col: str, x_col: str, y_col: str, steps=(), step_col: str | None = None,
              train_col: str | None = None, x_is_log: bool = False) -> pd.DataFrame:
    """Rows to predict at steps the runs have not reached: for every run and every value of ``steps``
    (and its own value of ``step_col``, e.g. its planned last step) beyond the run's last logged
    step, a row at that step with an empty loss.

    A run already past a step gets no row there (a finished run stays finished, and calibrates).
    An added row copies its run's columns that are constant along the run (its configuration, e.g.
    the descriptors); the others are empty. ``train_col``: the column of booleans that marks the
    early part; False on the added rows; None: :data:`EARLY_COL` is made, True on every logged row.
    The added rows' index labels follow the frame's last one (they are not lines of the file); the
    frame's ``attrs`` are kept.
    ``steps`` are in the units of ``x_col`` (``ln(step)`` with ``x_is_log``).

    Raises:
      ValueError: a step that is not a finite number (or not > 0 without ``x_is_log``), a missing
        column, a ``step_col`` that is empty or changes along a run, :data:`EARLY_COL` already in the
        table, or no run that has not reached any of its steps.
    """
    what = "steps to predict"
    steps = np.atleast_1d(np.asarray(steps, dtype=float))
    bad = not np.all(np.isfinite(steps)) or (not x_is_log and np.any(steps <= 0))
    if bad or (steps.size == 0 and step_col is None):
        raise ValueError(f"{what}: give finite steps{'' if x_is_log else ' > 0'} (e.g. --predict-steps 20000,50000), "
                         f"got {steps.tolist()}")
    V.require_columns(df, [curve_col, x_col, y_col] + ([train_col] if train_col else [])
                      + ([step_col] if step_col else []), "learning-curve table")
    own = {}
    if step_col is not None:  # each run's own step, e.g. the planned end of its schedule
        V.check_finite(df, [step_col], "learning-curve table")
        if not x_is_log:
            V.check_positive(df, [step_col], "learning-curve table")
        V.check_constant_within(df, [curve_col], [step_col], "learning-curve table", "run", "step column")
        own = df.groupby(curve_col, sort=False)[step_col].first().astype(float).to_dict()
    flag = train_col or EARLY_COL
    if train_col is None and EARLY_COL in df.columns:
        raise ValueError(f"{what}: the table already has a column {EARLY_COL!r}; rename it, or pass it as the "
                         "column of the early part (--train-col)")
    V.check_finite(df, [x_col], "learning-curve table")
    x = pd.to_numeric(df[x_col]).to_numpy(float)
    runs = df[curve_col]
    last = pd.Series(x, index=df.index).groupby(runs.to_numpy()).max()
    firsts = df.groupby(curve_col, sort=False).head(1).set_index(curve_col)
    distinct = df.drop(columns=[x_col, y_col]).groupby(curve_col, sort=False).nunique(dropna=False)
    constant = [c for c in distinct.columns if c != flag and (distinct[c] <= 1).all()]
    new = [(run, s) for run in pd.unique(runs.dropna())
           for s in np.unique(np.r_[steps, [own[run]] if run in own else []]) if s > last[run]]
    want = np.unique(steps)
    passed = want[want <= last.min()].tolist()  # steps every run has logged already
    if new and passed:
        warnings.warn(f"{what}: every run has logged past {x_col} {passed} already: no row is added there (their "
                      "losses are in the table)", UserWarning, stacklevel=2)
    if not new:
        asked = np.unique(np.r_[steps, list(own.values())])
        raise ValueError(f"{what}: every run has reached its steps to predict ({asked.min():.6g} to {asked.max():.6g}; "
                         f"the runs end at {x_col} {float(last.min()):.6g} to {float(last.max()):.6g}); give steps "
                         "beyond a run's last logged one")
    add = pd.DataFrame({curve_col: [r for r, _ in new], x_col: [s for _, s in new], y_col: np.nan})
    if pd.api.types.is_integer_dtype(df[x_col]) and (add[x_col] % 1 == 0).all():  # whole steps stay whole
        add[x_col] = add[x_col].astype(df[x_col].dtype)
    for c in constant:
        add[c] = firsts.loc[add[curve_col], c].to_numpy()
    out = df.copy()
    if train_col is None:
        out[EARLY_COL] = True
    add[flag] = False
    start = int(df.index.max()) + 1 if pd.api.types.is_integer_dtype(df.index) else len(df)
    add.index = pd.RangeIndex(start, start + len(add))
    out = pd.concat([out, add[[c for c in out.columns if c in add.columns]]])
    out.attrs = dict(df.attrs)  # the source, what was thinned
    get_logger(__name__).info("%s: %d row(s) added, %d run(s) at %d step(s) beyond their last logged step", what,
                              len(add), add[curve_col].nunique(), add[x_col].nunique())
    return out


#: Early points from which a curve counts as a dense log in the non-monotone check (judged on its
#: running median of 5 points).
DENSE_POINTS = 20


def _warn_non_monotone(code, x, y, train, labels, curve_col, x_col, x_is_log=False) -> None:
    """Warn when a curve's early part moves against its overall direction by > 10 % of its range,
    naming the step from which most such curves keep to their direction (a --where to start there).
    A curve with at least :data:`DENSE_POINTS` early points (a dense log) is judged on its running
    median of 5 points: one noisy step near the plateau is not a turn."""
    f = pd.DataFrame({"c": code[train], "x": x[train], "y": y[train]}).sort_values(["c", "x"], kind="stable")
    size = f.groupby("c")["y"].transform("size").to_numpy()
    smooth = f.groupby("c")["y"].rolling(5, center=True, min_periods=1).median().reset_index(level=0, drop=True)
    f["y"] = np.where(size >= DENSE_POINTS, smooth.reindex(f.index).to_numpy(), f["y"].to_numpy())
    g = f.groupby("c")["y"]
    per = g.agg(["first", "last", "min", "max", "size"])
    falling = (per["last"] <= per["first"]).reindex(f["c"]).to_numpy()
    against = np.where(falling, f["y"] - g.cummin(), g.cummax() - f["y"])  # moves against the direction
    worst = pd.Series(against).groupby(f["c"].to_numpy()).max()
    span = per["max"] - per["min"]
    flag = (span > 0) & (per["size"] >= 3) & (worst > 0.1 * span)
    bad = [labels[int(k)] for k in per.index[flag.to_numpy()]]
    if not bad:
        return
    # a point is followed by a move against the direction when a later point lies beyond it by more
    # than 10 % of the range; each flagged curve keeps to its direction after its last such point
    r = f.iloc[::-1]
    later = np.where(falling[::-1], r.groupby("c")["y"].cummax(), r.groupby("c")["y"].cummin())
    later = pd.Series(later, index=r.index).groupby(r["c"]).shift(1).reindex(f.index).to_numpy()
    tol = 0.1 * span.reindex(f["c"]).to_numpy()
    turn = np.where(falling, later - f["y"].to_numpy() > tol, f["y"].to_numpy() - later > tol)
    f = f.assign(turn=turn, pos=g.cumcount().to_numpy())
    # the runs in progress (rows after the early part) are the ones the advice is for
    going = per.index.isin(np.unique(code[~train]))
    going = going if going.any() else np.ones(len(per), bool)
    flagged_idx = per.index[flag.to_numpy() & going] if (flag.to_numpy() & going).any() else per.index[flag.to_numpy()]
    flagged = f[f["c"].isin(flagged_idx)]
    last_turn = flagged[flagged["turn"]].groupby("c")["pos"].max() + 1
    starts = flagged.set_index(["c", "pos"])["x"].reindex(list(zip(last_turn.index, last_turn.to_numpy())))
    start = float(np.median(starts.to_numpy()))
    kept = f[f["x"] >= start].groupby("c").size().reindex(per.index, fill_value=0)[going]
    enough = int((kept >= MIN_TRAIN_POINTS).sum())
    share = float(np.median(kept.to_numpy() / per["size"].to_numpy()[going]))  # of each early part
    runs = f"{len(kept)} runs in progress" if len(kept) < len(per) else f"{len(kept)} runs"
    shown = f"{np.log(start):.4g}" if x_is_log else f"{start:.6g}"
    if enough >= 0.5 * len(kept) and share >= 0.5:
        hint = (f"Warm-up or a noisy start? Drop the first steps with --where \"{x_col} >= {shown}\" (the median "
                f"step after which those curves keep to their direction; {enough} of {runs} keep "
                f"{MIN_TRAIN_POINTS}+ early points; with a --where of your own, join the two with 'and')")
    elif len(bad) <= 0.1 * len(per):
        hint = (f"They are {len(bad)} of {len(per)} runs, and starting every run after their turns ({x_col} >= "
                f"{shown} at the median) would cost the others most of their early part: look at those runs (a "
                "loss spike, a restart?) and leave them out if their early part misleads")
    else:
        hint = (f"They turn back late in their early part (after {x_col} {shown} at the median), so dropping the "
                f"first steps would leave fewer than {MIN_TRAIN_POINTS} early points in most of the {runs}: fit a "
                "smoothed column (e.g. an exponential moving average of the metric, as W&B's smoothing draws it)")
    warnings.warn(f"{len(bad)} curve(s) of {curve_col!r} (e.g. {bad[:3]}) are non-monotone in their early part "
                  "(they move against their overall direction by more than 10 % of their range): a saturating "
                  f"power law follows a monotone curve. {hint}", UserWarning, stacklevel=3)


def cut_curves(curve, x, fraction: float) -> np.ndarray:
    """``(n,)`` training mask: the points of every curve at step ``<= fraction`` x its last step."""
    curve, x = np.asarray(curve), np.asarray(x, float)
    last = pd.Series(x).groupby(curve).transform("max").to_numpy()
    return x <= fraction * last + 1e-12 * last


# ----------------------------------------------------------------------------- the Bayesian fit
def _normalise(data: TailData):
    K = len(data.labels)
    tr = data.train
    xk = np.zeros(K)
    yk = np.ones(K)
    order = np.lexsort((data.x, data.curve))
    m = order[tr[order]]
    last = np.r_[np.flatnonzero(np.diff(data.curve[m])), len(m) - 1]
    xk[data.curve[m][last]] = data.x[m][last]
    yk[data.curve[m][last]] = data.y[m][last]
    return xk, yk


def _law(c, g, alpha, t):
    """Normalised law ``c (e^g + (1 - e^g) t^-alpha)`` (broadcasting)."""
    eg = jnp.exp(g)
    return c * (eg + (1.0 - eg) * t ** (-alpha))


def _log_pos(mu):
    """``ln`` of a value kept > 0 by a smooth floor (a barrier for laws that cross zero)."""
    return jnp.log(jax.nn.softplus(50.0 * mu) / 50.0 + 1e-12)


#: Priors of every curve's law, shared by both samplers: ``c ~ N(C_PRIOR)``, ``g = G_SD z_g`` and
#: ``ln alpha = LN_ALPHA_PRIOR[0] + LN_ALPHA_PRIOR[1] z_a`` with ``z_g, z_a ~ N(0, 1)``; ``ln sigma``
#: (NUTS: the mean of its pooled normal) ``~ N(SIGMA_PRIOR)``.
C_PRIOR = (1.0, 0.2)
G_SD = 1.5
LN_ALPHA_PRIOR = (float(np.log(0.5)), 1.0)
SIGMA_PRIOR = (float(np.log(0.05)), 1.0)


def _g_alpha(zg, za):
    """The asymptote's log-ratio ``g`` and the exponent ``alpha`` from their standard-normal
    coordinates (NumPy in, NumPy out: host-side bookkeeping compiles nothing)."""
    xp = np if isinstance(za, np.ndarray) else jnp
    return G_SD * zg, xp.exp(LN_ALPHA_PRIOR[0] + LN_ALPHA_PRIOR[1] * za)


def _model(t, curve, ly, n_curves: int, nu: float):
    import numpyro
    import numpyro.distributions as dist

    # the noise level is partially pooled across curves; each curve's law has its own priors
    mu_s = numpyro.sample("mu_s", dist.Normal(*SIGMA_PRIOR))
    tau_s = numpyro.sample("tau_s", dist.HalfNormal(0.5))
    with numpyro.plate("curves", n_curves):
        c = numpyro.sample("c", dist.Normal(*C_PRIOR))
        zg = numpyro.sample("zg", dist.Normal(0.0, 1.0))
        za = numpyro.sample("za", dist.Normal(0.0, 1.0))
        zs = numpyro.sample("zs", dist.Normal(0.0, 1.0))
    g, alpha = _g_alpha(zg, za)
    sigma = jnp.exp(mu_s + tau_s * zs)
    numpyro.deterministic("sigma", sigma)
    numpyro.deterministic("g", g)
    numpyro.deterministic("alpha", alpha)
    mu = _law(c[curve], g[curve], alpha[curve], t)
    with numpyro.plate("points", t.shape[0]):
        numpyro.sample("ly", dist.StudentT(nu, _log_pos(mu), sigma[curve]), obs=ly)


# ------------------------------------------------- importance sampling (tables with many runs)
#: Runs needed to set the noise prior from the runs themselves (importance sampling; with fewer,
#: each run's ``ln sigma ~ N(SIGMA_PRIOR)``).
MIN_POOL_CURVES = 3
#: Empirical-Bayes grid of the noise prior: means of ``ln sigma`` (noise of 0.1 % to 50 % of the
#: loss, steps of 0.5) and spreads.
EB_MEANS = tuple(float(v) for v in np.arange(np.log(1e-3), np.log(0.5) + 1e-9, 0.5))
EB_SDS = (0.25, 0.5, 1.0)
#: Runs (evenly spread over the table) on which the grid is scored; every run is then fitted.
EB_CURVES = 256
#: Rows of a run (evenly spread over its early part) on which the grid is scored. A run with more
#: pins its own noise level whatever the prior, so the grid needs no more of it; every row of every
#: run is used in the fit itself.
EB_ROWS = 256
#: Damped-Newton steps of the MAP searches.
MAP_STEPS = 100
#: Damped-Newton steps of the empirical-Bayes grid's MAP searches, which start at each run's MAP
#: under :data:`SIGMA_PRIOR` (a grid point mostly moves ``ln sigma``). On 200 W&B-style runs the
#: grid chose the same point with the same marginal (to 1e-9) as 100 steps from the grid start,
#: in a third of the time (8 s against 21 s); 60 steps from the grid start chose another point.
EB_MAP_STEPS = 30
#: Proposal draws per run.
IS_PROPOSALS = 4000
#: Proposal stages (moment matching after the Laplace start).
IS_STAGES = 5
#: Fewest draws per run (``chains x samples``) kept by importance sampling without a warning: the
#: interval's ends are quantiles of the draws (NUTS asks an ESS of 100 per chain, 400 for 4 chains).
IS_MIN_DRAWS = 400
#: Proposal draws per run of the second importance pass of ``sampler="auto"`` when a run fails
#: the k-hat check (4x :data:`IS_PROPOSALS`: the moment-matching stages adapt on more draws, and
#: the k-hat estimate is less noisy near its threshold).
AUTO_RETRY_PROPOSALS = 16000


def _potential(z, t, ly, mask, mu_s, tau_s, nu):
    """Negative log joint of ONE run at ``z = (c, z_g, z_a, ln sigma)`` (unconstrained).

    The priors of the joint model (:data:`C_PRIOR`, :func:`_g_alpha`), ``ln sigma ~ N(mu_s, tau_s)``, Student-t
    noise on ``ln(L / y_k)`` at the rows where ``mask`` is set (the others are padding). Terms that
    depend on none of ``z``, ``mu_s``, ``tau_s`` are left out (the same for every draw and grid point)."""
    c, zg, za, ls = z[0], z[1], z[2], z[3]
    mu = _law(c, *_g_alpha(zg, za), t)
    r = (ly - _log_pos(mu)) * jnp.exp(-ls)
    lp = -0.5 * (nu + 1.0) * jnp.log1p(r * r / nu) - ls
    prior = (-0.5 * (((c - C_PRIOR[0]) / C_PRIOR[1]) ** 2 + zg ** 2 + za ** 2 + ((ls - mu_s) / tau_s) ** 2)
             - jnp.log(tau_s))
    return -(jnp.sum(jnp.where(mask, lp, 0.0)) + prior)


_POTENTIAL = jax.jit(_potential)  # one function object: a static argument of the compiled programs


def _pad(t, curve, ly, K: int):
    """Rows grouped by run: ``(K', P')`` arrays ``t``, ``ln(L / y_k)`` and the mask of real rows,
    with ``K' >= K`` runs and ``P'`` >= the most rows of a run rounded up to a bucket
    (:func:`jaxscale.learning_curves.core.row_bucket`; padding is masked), so tables of similar
    sizes reuse the compiled programs."""
    from jaxscale.learning_curves.core import row_bucket

    n = np.bincount(curve, minlength=K)
    order = np.argsort(curve, kind="stable")
    pos = np.arange(curve.size) - np.repeat(np.cumsum(n) - n, n)
    P, Kb = row_bucket(int(n.max())), row_bucket(K)
    T, LY, M = np.ones((Kb, P)), np.zeros((Kb, P)), np.zeros((Kb, P), bool)
    T[curve[order], pos], LY[curve[order], pos], M[curve[order], pos] = t[order], ly[order], True
    return T, LY, M


def _noise_prior(T, LY, M, x0, nu, K: int):
    """Empirical Bayes for the normal prior of ``ln sigma``: the grid point of :data:`EB_MEANS` x
    :data:`EB_SDS` with the highest Laplace marginal likelihood of the runs (at most
    :data:`EB_CURVES` of them, evenly spread, each with at most :data:`EB_ROWS` rows): per run and
    grid point the MAP by damped Newton (from ``x0``, :data:`EB_MAP_STEPS` steps) and
    ``-U(z*) - ln det(H) / 2``, summed over the runs, all in one batched program. (The MAP noise of
    a run with a handful of points is biased low, since its law fits them almost exactly; the
    determinant counts the parameters the law spent.) ``K``: the
    real runs (the first ``K`` rows of the padded arrays). Returns ``(mean, sd, record)``."""
    from jaxscale.infer.batched_nuts import map_laplace_batched
    from jaxscale.learning_curves.core import row_bucket

    real = np.unique(np.linspace(0, K - 1, min(K, EB_CURVES)).round().astype(int))
    pick = np.r_[real, np.zeros(row_bucket(real.size) - real.size, int)]  # padded: a bucketed shape
    T, LY, M = _eb_rows(T[pick], LY[pick], M[pick])
    x0 = x0[pick]
    weight = np.r_[np.ones(real.size), np.zeros(pick.size - real.size)]
    mus, sds = np.meshgrid(np.asarray(EB_MEANS), np.asarray(EB_SDS), indexing="ij")
    G = mus.size
    rep = lambda a: np.tile(a, (G,) + (1,) * (a.ndim - 1))  # noqa: E731  (grid point, run) rows
    x = rep(x0)
    per = tuple(jax.device_put(a) for a in (rep(T), rep(LY), rep(M), np.repeat(mus.ravel(), pick.size),
                                            np.repeat(sds.ravel(), pick.size)))
    x_map, cov, _ = map_laplace_batched(_POTENTIAL, jax.device_put(x), per, (nu,), steps=EB_MAP_STEPS)
    lml = np.asarray(_laplace_evidence(x_map, cov, per, nu)).reshape(G, pick.size)
    lml = (np.where(np.isfinite(lml), lml, -np.inf) * weight).sum(axis=1)
    best = int(np.argmax(lml))
    record = {"runs": int(real.size), "grid_points": int(G), "log_marginal": float(lml[best])}
    return float(mus.ravel()[best]), float(sds.ravel()[best]), record


#: Start values of every run's MAP search: the best of these standard-normal coordinates of the
#: asymptote's log-ratio (``z_g``) and of the exponent (``z_a``) under the potential (``c = 1``,
#: the noise at :data:`SIGMA_PRIOR`'s mean). From one fixed start (``z_g = -0.3``) the damped Newton
#: search needed more than 60 steps on long, clean logs (300 early points, noise 0.2 %): the
#: potential is not convex far from its optimum and the exponent and asymptote trade off along a
#: curved valley, so the Laplace proposal of a third of the runs sat off the MAP.
START_ZG = tuple(np.linspace(-2.5, 2.5, 21).tolist())
START_ZA = tuple(np.linspace(-2.5, 2.0, 10).tolist())


@jax.jit
def _grid_start(T, LY, M, nu):
    """Start values ``(K', 4)`` of the padded runs: per run the grid point of :data:`START_ZG` x
    :data:`START_ZA` with the lowest potential, ``c = 1`` and ``ln sigma`` at :data:`SIGMA_PRIOR`'s
    mean. The grid points are visited one after another (each over all runs at once), so memory
    stays that of one evaluation."""
    zg, za = (a.ravel() for a in jnp.meshgrid(jnp.asarray(START_ZG), jnp.asarray(START_ZA), indexing="ij"))
    ls = jnp.full_like(zg, SIGMA_PRIOR[0])
    grid = jnp.stack([jnp.ones_like(zg), zg, za, ls], axis=1)  # (G, 4)
    runs = jax.vmap(_potential, in_axes=(None, 0, 0, 0, None, None, None))
    u = jax.lax.map(lambda z: runs(z, T, LY, M, SIGMA_PRIOR[0], SIGMA_PRIOR[1], nu), grid)  # (G, K')
    u = jnp.where(jnp.isfinite(u), u, jnp.inf)
    return grid[jnp.argmin(u, axis=0)]


def _eb_rows(T, LY, M):
    """The padded runs with at most :data:`EB_ROWS` real rows each (evenly spread over a longer
    run's rows, which :func:`_pad` puts first), padded to a bucket; unchanged when no run is longer."""
    from jaxscale.learning_curves.core import row_bucket

    n = M.sum(axis=1)
    if n.max() <= EB_ROWS:
        return T, LY, M
    P = row_bucket(EB_ROWS)
    j = np.arange(P)
    # rows 0 .. n - 1 of a longer run at EB_ROWS even steps (distinct, since n > EB_ROWS)
    spread = np.rint(np.linspace(0.0, 1.0, EB_ROWS)[None, :] * (n[:, None] - 1)).astype(int)
    spread = np.pad(spread, ((0, 0), (0, P - EB_ROWS)))
    keep = j[None, :] < np.minimum(n, EB_ROWS)[:, None]
    idx = np.where(keep, np.where(n[:, None] > EB_ROWS, spread, j[None, :]), 0)
    take = lambda a, fill: np.where(keep, np.take_along_axis(a, idx, axis=1), fill)  # noqa: E731
    return take(T, 1.0), take(LY, 0.0), keep


@jax.jit
def _laplace_evidence(x_map, cov, per, nu):
    """Laplace log marginal of each row: ``-U(x_map) + ln det(cov) / 2`` (``cov`` is the inverse
    Hessian, its eigenvalues floored, so ``ln det H = -ln det cov``); one program, where eager code
    would compile one per operation."""
    u = jax.vmap(_potential, in_axes=(0, 0, 0, 0, 0, 0, None))(x_map, *per, nu)
    return -u + 0.5 * jnp.linalg.slogdet(cov)[1]


def _laplace_fits(t, curve, ly, K: int, spec: ExtrapolateSpec) -> dict:
    """What importance sampling starts from, computed once per table (both passes of
    ``sampler="auto"`` share it): the padded runs, the noise prior of ``ln sigma`` by empirical
    Bayes (:func:`_noise_prior`; :data:`SIGMA_PRIOR` with fewer than :data:`MIN_POOL_CURVES` runs)
    and each run's MAP and Laplace covariance under it."""
    from jaxscale.infer.batched_nuts import map_laplace_batched

    T, LY, M = _pad(t, curve, ly, K)  # padded runs (no rows) follow their prior; they are dropped
    nu = jax.device_put(np.asarray(float(spec.nu)))
    x0 = np.array(_grid_start(*(jax.device_put(a) for a in (T, LY, M)), nu))

    def map_under(x, mu, tau):  # every run's (arguments, (MAP, covariance, converged)) under ln sigma ~ N(mu, tau)
        per = tuple(jax.device_put(a) for a in (T, LY, M, np.full(T.shape[0], mu), np.full(T.shape[0], tau)))
        return per, map_laplace_batched(_POTENTIAL, jax.device_put(x), per, (nu,), steps=MAP_STEPS)

    if K >= MIN_POOL_CURVES:
        # each run's MAP under the default noise prior starts the searches of the grid and the last one
        x0 = np.array(map_under(x0, *SIGMA_PRIOR)[1][0])
        mu_s, tau_s, eb = _noise_prior(T, LY, M, x0, nu, K)
    else:
        (mu_s, tau_s), eb = SIGMA_PRIOR, None
    per, (x_map, cov, conv) = map_under(x0, mu_s, tau_s)
    return {"K": K, "rows": int(t.size), "nu": nu, "per": per, "x_map": x_map, "cov": cov, "conv": conv,
            "noise_prior": {"mean_ln_sigma": mu_s, "sd": tau_s, "empirical_bayes": eb}}


def _importance(key, lap: dict, spec: ExtrapolateSpec, labels: list, warn: bool = True,
                proposals: int = IS_PROPOSALS):
    """Posterior draws of every run's law by Laplace importance sampling, all runs in one program.

    Each run's MAP and Laplace covariance (``lap``, from :func:`_laplace_fits`) give a Student-t
    proposal (:func:`jaxscale.infer.importance.laplace_importance`, ``proposals`` proposals,
    ``chains x samples`` draws kept). Returns ``(draws, report)``: ``draws`` maps ``c, g, alpha,
    sigma`` to ``(S, K)`` arrays; the report holds the Pareto k-hat and importance ESS of the worst
    runs and is warned (``warn``) when a run's draws are unreliable."""
    from jaxscale.infer.importance import laplace_importance

    K = lap["K"]
    get_logger(__name__).info("power-law extrapolation: importance sampling of %d runs (%d training rows), %d "
                              "proposals and %d draws per run", K, lap["rows"], proposals,
                              spec.chains * spec.samples)
    S = int(spec.chains) * int(spec.samples)
    z, ess, khat = laplace_importance(key, _POTENTIAL, lap["x_map"], lap["cov"], lap["per"], (lap["nu"],),
                                      num_proposals=int(proposals), num_draws=S, stages=IS_STAGES)
    z, ess, khat, conv = np.asarray(z)[:K], ess[:K], khat[:K], np.asarray(lap["conv"])[:K]
    z = np.moveaxis(z, 0, 1)  # (S, K, 4)
    if not np.all(np.isfinite(z)):
        bad = np.unique(np.argwhere(~np.isfinite(z))[:, 1])
        raise FloatingPointError(f"power-law extrapolation: non-finite draws for {bad.size} run(s) "
                                 f"(e.g. {[str(labels[k]) for k in bad[:5]]}); check the losses of those runs")
    g, alpha = _g_alpha(z[..., 1], z[..., 2])
    draws = {"c": z[..., 0], "g": np.asarray(g), "alpha": np.asarray(alpha), "sigma": np.exp(z[..., 3])}
    report = _importance_report(np.asarray(khat, float), np.asarray(ess, float), conv, int(proposals), S, labels,
                                lap["noise_prior"])
    if warn and not report["converged"]:
        warnings.warn("power-law extrapolation: " + report["reason"], RuntimeWarning, stacklevel=3)
    return draws, report


def _importance_report(khat, ess, conv, proposals, S: int, labels: list, noise_prior) -> dict:
    """The diagnostics of importance draws from each run's Pareto k-hat and ESS (``_khat``,
    ``_ess`` and ``_failing``, the runs above :data:`K_HAT_MAX`, are dropped before the report is
    returned to the user)."""
    from jaxscale.infer.importance import K_HAT_MAX

    bad = khat > K_HAT_MAX  # (a MAP short of convergence only moves the first proposal)
    worst = np.flatnonzero(bad)[np.argsort(-khat[bad])][:5]
    report = {"sampler": "importance", "max_pareto_k": float(np.max(khat)), "min_ess": float(np.min(ess)),
              "median_ess": float(np.median(ess)), "proposals": proposals, "num_samples": S,
              "runs_failing": int(bad.sum()), "worst_runs": [str(labels[k]) for k in worst],
              "map_not_converged": int(np.sum(~np.asarray(conv, bool))), "noise_prior": noise_prior}
    msg = None
    if bad.any():
        msg = (f"importance sampling is unreliable for {int(bad.sum())} of {khat.size} run(s) (Pareto k-hat > "
               f"{K_HAT_MAX}; e.g. {report['worst_runs'][:3]}, max k-hat "
               f"{report['max_pareto_k']:.2f}): their posterior has mass the Laplace proposal misses (a second "
               "mode or a heavy tail); their intervals may be too narrow. Sample them with NUTS: "
               f"sampler='auto' (the default) does it for those runs alone when at most {AUTO_IMPORTANCE_RUNS} "
               "runs fail (select fewer runs, e.g. with --where), sampler='nuts' (--sampler nuts) for every run "
               "at once")
    report["converged"] = msg is None
    report["reason"] = msg or f"Pareto k-hat <= {K_HAT_MAX} for every run"
    report.update(_khat=khat, _ess=ess, _conv=np.asarray(conv, bool), _failing=np.flatnonzero(bad))
    return report


def _subset_lap(lap: dict, runs) -> dict:
    """The Laplace fits of ``runs`` alone (padded to a bucket with the first run repeated)."""
    from jaxscale.learning_curves.core import row_bucket

    R = runs.size
    pick = np.r_[runs, np.full(row_bucket(R) - R, runs[0])]
    take = lambda a: jax.device_put(np.asarray(a)[pick])  # noqa: E731
    return dict(lap, K=R, rows=int(np.asarray(lap["per"][2])[runs].sum()), per=tuple(take(a) for a in lap["per"]),
                x_map=take(lap["x_map"]), cov=take(lap["cov"]), conv=take(lap["conv"]))


def _retry_failing(key, lap: dict, draws: dict, report: dict, spec: ExtrapolateSpec, labels: list):
    """``sampler="auto"``'s second importance pass: the runs that failed the k-hat check again, alone,
    with :data:`AUTO_RETRY_PROPOSALS` proposals each; their new draws replace the first ones (the
    better draws, whether or not they pass). Returns ``(draws, merged report, retry report)``."""
    runs = np.asarray(report["_failing"])
    sub, rep = _importance(key, _subset_lap(lap, runs), spec, [labels[k] for k in runs], warn=False,
                           proposals=AUTO_RETRY_PROPOSALS)
    out = {k: np.array(v, copy=True) for k, v in draws.items()}
    for k in out:
        out[k][:, runs] = sub[k]
    khat, ess = np.array(report["_khat"], copy=True), np.array(report["_ess"], copy=True)
    khat[runs], ess[runs] = rep["_khat"], rep["_ess"]
    merged = _importance_report(khat, ess, report["_conv"], report["proposals"], report["num_samples"], labels,
                                report["noise_prior"])
    return out, merged, rep


def _student_t(key, nu: float, shape, dtype):
    """Student-t draws. For a whole ``nu`` (the default 4) the chi-square is a sum of ``nu // 2``
    exponentials, times 2, plus one squared normal for an odd ``nu``: twenty times faster than
    :func:`jax.random.t`, whose gamma draws are a rejection loop (28 million draws: 49 s against
    2.2 s on 2 CPU cores)."""
    if not float(nu).is_integer() or nu > 64:
        return jax.random.t(key, nu, shape, dtype)
    k_z, k_e, k_o = jax.random.split(key, 3)
    m = int(nu) // 2
    chi = 2.0 * jnp.sum(jax.random.exponential(k_e, (m, *shape), dtype), axis=0) if m else jnp.zeros(shape, dtype)
    if int(nu) % 2:
        chi = chi + jax.random.normal(k_o, shape, dtype) ** 2
    return jax.random.normal(k_z, shape, dtype) / jnp.sqrt(chi / nu)


@partial(jax.jit, static_argnames=("nu",))
def _predictive(key, c, g, alpha, sigma, t, curve, nu: float):
    """Posterior predictive draws of ``ln(L / y_k)`` at the tail rows: ``(S, m)``."""
    mu = _law(c[:, curve], g[:, curve], alpha[:, curve], t[None])
    return _log_pos(mu) + sigma[:, curve] * _student_t(key, nu, mu.shape, mu.dtype)


@partial(jax.jit, static_argnames=("nu",))
def _predictive_by_row(key, c, g, alpha, sigma, t, curve, nu: float):
    """:func:`_predictive` transposed, ``(m, S)``: each row's draws lie together in memory, so the
    host selects a row's quantiles reading in order (on 8,192 rows x 2,000 draws 0.32 s against
    0.67 s along the draws' axis)."""
    return _predictive(key, c, g, alpha, sigma, t, curve, nu).T


def _predictive_padded(key, s: dict, t, curve, nu: float) -> np.ndarray:
    """:func:`_predictive` with the runs and the rows padded to buckets (one compiled program for
    tables of similar sizes); the padding is dropped."""
    from jaxscale.learning_curves.core import row_bucket

    m = t.size
    tp = np.r_[t, np.ones(row_bucket(m) - m)]
    cp = np.r_[curve, np.zeros(row_bucket(m) - m, curve.dtype)]
    return np.asarray(_predictive(key, *_padded_law(s), jnp.asarray(tp), jnp.asarray(cp), nu))[:, :m]


def _padded_law(s: dict) -> list:
    """The draws of ``c, g, alpha, sigma`` with the runs padded to a bucket (the last run repeated)."""
    from jaxscale.learning_curves.core import row_bucket

    K = s["c"].shape[1]
    return [jnp.asarray(np.pad(np.asarray(s[k]), ((0, 0), (0, row_bucket(K) - K)), mode="edge"))
            for k in ("c", "g", "alpha", "sigma")]


#: Tail rows above which the predictive draws are summarised chunk by chunk (this many rows per
#: chunk): only each row's interval ends and median are kept, not the ``draws x rows`` array
#: (2,000 draws of 285k rows would be 4.6 GB per copy).
PRED_CHUNK = 8192


#: Rows to predict of one run above which, in a table of more than :data:`PRED_CHUNK` such rows, the
#: predictive quantiles are drawn at this many steps of the run, spread evenly in ``ln step`` from its
#: first to its last row to predict, and interpolated linearly in ``ln step`` at the rows between.
PRED_GRID = 256


def _grid(t, curve):
    """``(t_nodes, curve_nodes, u_nodes, u_rows)``: the steps to draw at and the axis to interpolate
    on. A run with at most :data:`PRED_GRID` rows is drawn at its own rows; a longer one at
    :data:`PRED_GRID` steps evenly spread in ``ln t`` over its rows. ``u`` is ``ln t`` shifted by a
    per-run offset, so that the runs follow one another along one increasing axis and no row is
    interpolated from another run's nodes."""
    lt = np.log(t)
    runs, inv, n = np.unique(curve, return_inverse=True, return_counts=True)
    lo, hi = np.full(runs.size, np.inf), np.full(runs.size, -np.inf)
    np.minimum.at(lo, inv, lt)
    np.maximum.at(hi, inv, lt)
    off = np.r_[0.0, np.cumsum(hi - lo + 1.0)[:-1]] - lo  # run r's ln t + off[r] lies in its own stretch
    u_rows = lt + off[inv]
    long = n > PRED_GRID
    own = ~long[inv]  # rows of short runs are nodes themselves
    k = np.flatnonzero(long)
    lt_grid = lo[k, None] + (hi - lo)[k, None] * np.linspace(0.0, 1.0, PRED_GRID)[None]
    lt_grid[:, -1] = hi[k]  # the last row itself, whatever the rounding
    lt_grid = lt_grid.ravel()
    r_grid = np.repeat(k, PRED_GRID)
    r_nodes = np.r_[inv[own], r_grid]
    u_nodes = np.r_[lt[own], lt_grid] + off[r_nodes]
    o = np.argsort(u_nodes, kind="stable")
    return np.r_[t[own], np.exp(lt_grid)][o], runs[r_nodes[o]], u_nodes[o], u_rows


def _predictive_summary(key, s: dict, t, curve, nu: float, probs):
    """``(log_quantiles (len(probs), m), log_draws (S, m) or None)`` of the predictive ``ln(L / y_k)``
    at ``m`` tail rows, at the probabilities ``probs``: the draws themselves up to
    :data:`PRED_CHUNK` rows, else only the quantiles.

    Above it, a run with more than :data:`PRED_GRID` rows to predict (a log at every step) is drawn
    at :data:`PRED_GRID` steps spread evenly in ``ln step`` and its rows' quantiles interpolated
    linearly in ``ln step`` between them (:func:`_grid`; the law is smooth in ``ln step``: on 40
    runs logged at every step the gap to drawing at every row was below the Monte-Carlo error of
    the draws themselves); the steps go through one compiled program in chunks of
    :data:`PRED_CHUNK` (each chunk's key folded from ``key``; the last chunk padded), and each
    chunk's draws are reduced to quantiles on the host (numpy's selection is about 4x faster than
    XLA's sort on a CPU) while the next chunk is drawn. Memory holds two chunks of draws."""
    m = t.size
    if m <= PRED_CHUNK:
        d = _predictive_padded(key, s, t, curve, nu)
        return np.quantile(d, probs, axis=0), d
    t, curve = np.asarray(t, float), np.asarray(curve)
    if np.unique(curve, return_counts=True)[1].max() <= PRED_GRID:  # every row drawn, in the table's order
        t_n, curve_n, u_n, u_rows = t, curve, None, None
    else:
        t_n, curve_n, u_n, u_rows = _grid(t, curve)
    get_logger(__name__).info("power-law extrapolation: predictive draws at %d steps for the %d rows to predict, in "
                              "%d chunks of %d", t_n.size, m, -(-t_n.size // PRED_CHUNK), PRED_CHUNK)
    q_n = _chunked_quantiles(key, s, t_n, curve_n, nu, probs)
    return (q_n if u_n is None else np.stack([np.interp(u_rows, u_n, q) for q in q_n])), None


def _chunked_quantiles(key, s: dict, t, curve, nu: float, probs) -> np.ndarray:
    """The quantiles ``(len(probs), m)`` of the predictive draws at ``m`` rows, drawn and reduced in
    chunks of :data:`PRED_CHUNK` rows (see :func:`_predictive_summary`)."""
    m = t.size
    n = -(-m // PRED_CHUNK)
    law = _padded_law(s)
    tp = np.r_[t, np.ones(n * PRED_CHUNK - m)].reshape(n, PRED_CHUNK)
    cp = np.r_[curve, np.zeros(n * PRED_CHUNK - m, curve.dtype)].reshape(n, PRED_CHUNK)

    def draw(i):  # dispatched asynchronously: the next chunk is drawn while this one is reduced
        return _predictive_by_row(jax.random.fold_in(key, i), *law, jnp.asarray(tp[i]), jnp.asarray(cp[i]), nu)

    out, pending = [], draw(0)
    for i in range(n):  # chunks of rows, to bound memory
        d, pending = pending, (draw(i + 1) if i + 1 < n else None)
        out.append(np.quantile(np.asarray(d), probs, axis=1))
    return np.concatenate(out, axis=1)[:, :m]


def _ends(level: float) -> list:
    """The probabilities of the lower end, the median and the upper end of the central ``level`` interval."""
    return [(1 - level) / 2, 0.5, (1 + level) / 2]


#: The model's central interval that the conformal correction (:func:`_conformal_margin`) widens or
#: narrows, whatever the level asked for: the corrected intervals of every level are members of one
#: family, so that they nest (each level calibrated on its own interval had, on one table, a 50 %
#: interval twice as wide as the 90 % one and a 95 % one narrower than both).
REFERENCE_LEVEL = 0.9


#: Held-back points of finished runs needed to calibrate the interval (at level 0.9 the conformal
#: quantile needs at least 9; fewer points leave the model's own interval).
MIN_CALIBRATION_POINTS = 10


def _in_progress(data: TailData) -> np.ndarray:
    """``(K,)`` mask of the runs with rows to predict."""
    cur = np.asarray(data.curve, np.int64)
    return np.bincount(cur[~np.asarray(data.train, bool)], minlength=len(data.labels)) > 0


def _finished(data: TailData) -> np.ndarray:
    """Codes of the finished runs: every row in the early part."""
    cur = np.asarray(data.curve, np.int64)
    return np.flatnonzero(~_in_progress(data) & (np.bincount(cur, minlength=len(data.labels)) > 0))


def _calibration_rows(data: TailData, ratios=None) -> tuple[np.ndarray, np.ndarray | None, dict]:
    """Rows of finished runs to hold back, mimicking how far the runs in progress are extrapolated.

    A run is *finished* when all its rows are training rows. Each run in progress has a ratio,
    (last training step) / (largest step to predict). The finished runs are cut at the quantiles
    of these ratios, one each, at levels spread evenly over (0, 1) in a low-discrepancy order (so
    that runs of a table sorted by name or size do not all get the same ratio): when the runs in
    progress are cut at different points of their curves, the held-back rows reach as far. The rows
    above a finished run's cut are held back (predicted, then scored), those below are its early
    part. A finished run is used only when its early part has at least :data:`MIN_TRAIN_POINTS`
    points and is not constant, and something is held back.
    Returns ``(mask of held-back rows, ratios, unused)``; ``ratios`` (of the runs in progress) is
    None when no run is finished; ``unused`` counts the finished runs left out by their first
    failing condition (``too_few_early``, ``flat_early``, ``nothing_after``) and gives their
    ``median_points``. ``ratios`` given: the cut ratios to use instead of those of the table's runs
    in progress (every run of ``data`` then counts as finished).
    """
    cur = np.asarray(data.curve, np.int64)
    x = np.asarray(data.x, float)
    tr = np.asarray(data.train, bool)
    K = len(data.labels)
    finished = _finished(data) if ratios is None else np.unique(cur)
    if finished.size == 0:
        return np.zeros(tr.shape, bool), None, {}
    s_all = pd.Series(x).groupby(cur).max()
    if ratios is None:
        ratios = _ratios(data)
    levels = ((np.arange(finished.size) + 0.5) * GOLDEN) % 1.0  # evenly spread, not in table order
    cut = np.zeros(K)
    cut[finished] = np.quantile(ratios, levels) * s_all.loc[finished].to_numpy()
    y = np.asarray(data.y, float)
    early = x <= cut[cur] * (1 + 1e-12)
    n_early = np.bincount(cur[early], minlength=K)
    n_late = np.bincount(cur[~early], minlength=K)
    g = pd.Series(np.where(early, y, np.nan)).groupby(cur)
    spread = (g.max() - g.min()).reindex(range(K)).fillna(0.0).to_numpy()  # constant early part: 0
    use = np.zeros(K, bool)
    use[finished] = True
    few, flat, none_after = n_early < MIN_TRAIN_POINTS, spread <= 0, n_late == 0
    use &= ~few & ~none_after & ~flat
    unused = {"too_few_early": int(np.sum(few[finished])),
              "flat_early": int(np.sum((flat & ~few)[finished])),
              "nothing_after": int(np.sum((none_after & ~few & ~flat)[finished])),
              "median_points": float(np.median((n_early + n_late)[finished]))}
    return use[cur] & ~early, ratios, unused


def _ratios(data: TailData) -> np.ndarray:
    """Each run in progress's (last early step) / (last step to predict)."""
    cur = np.asarray(data.curve, np.int64)
    x = np.asarray(data.x, float)
    prog = np.flatnonzero(_in_progress(data))
    s_tr = pd.Series(np.where(np.asarray(data.train, bool), x, -np.inf)).groupby(cur).max()
    s_all = pd.Series(x).groupby(cur).max()
    return s_tr.loc[prog].to_numpy() / s_all.loc[prog].to_numpy()


#: The fractional part of the golden ratio: ``(j + 0.5) * GOLDEN mod 1`` spreads any number of
#: levels evenly over (0, 1) without following the order of ``j``.
GOLDEN = (np.sqrt(5.0) - 1.0) / 2.0


#: What :func:`horizon` measures (the ``extrapolation`` of a row to predict).
HORIZON_UNIT = "e-folds of the step beyond the run's last early step (ln(step / last early step))"


def horizon(data: TailData, rows) -> np.ndarray:
    """How far each of ``rows`` lies beyond the early part of its run: ``ln(step / the run's last
    training step)`` (0 for a row before it; :data:`HORIZON_UNIT`). The ``extrapolation`` of the
    rows to predict: the calibrated interval grows with it (:func:`extrapolate`)."""
    return _horizon(data, np.asarray(data.train, bool), rows)


def _horizon(data: TailData, train, rows) -> np.ndarray:
    """``ln(step / last training step of the row's run)`` at ``rows`` (0 for a row before it): how
    far, in e-folds of the step, each row lies beyond the part of its run that was fitted."""
    cur = np.asarray(data.curve, np.int64)
    x = np.asarray(data.x, float)
    last = pd.Series(np.where(train, x, -np.inf)).groupby(cur).max().reindex(range(len(data.labels))).to_numpy()
    return np.maximum(np.log(x[rows] / last[cur[rows]]), 0.0)


def _log_quantiles(draws, level: float):
    """Per point: ``ln`` of the lower end, the median and the upper end of the central interval."""
    return np.quantile(np.log(draws), _ends(level), axis=0)


def _conformal_margin(y, log_q, h, level: float):
    """Split-conformal correction of the predictive interval from held-back points.

    ``log_q``: ``(3, n)`` lower end, median and upper end of each point's central
    :data:`REFERENCE_LEVEL` interval in ``ln L``, whatever ``level`` (so that the corrected
    intervals of all levels nest); ``h``: ``(n,)`` each point's horizon (:func:`_horizon`). The
    corrected intervals form one nested family indexed by ``q`` (:func:`_widen_ends`): for
    ``-1 <= q <= 0`` each half-width ``w`` (in ``ln L``) becomes ``(1 + q) w`` (the model's interval
    was too wide; its relative widths, which grow with the horizon, are kept); for ``q > 0`` it
    becomes ``sqrt(w^2 + (q h)^2)``: the error a power law makes beyond its data grows about
    linearly in ``ln(step)`` (a wrong exponent tilts the whole tail), so the correction grows with
    the horizon and carries over to runs extrapolated further than the held-back points. Each
    point's score is the smallest ``q`` whose interval holds it; ``q`` is the conformal quantile of
    the scores (the ``ceil((n + 1) level)``-th smallest), so that the corrected intervals cover
    ``level`` of points like these.
    Returns ``q``, None with fewer than :data:`MIN_CALIBRATION_POINTS` points.
    """
    lo, med, hi = log_q
    e = np.log(y) - med
    w = np.where(e >= 0, hi - med, med - lo)  # the half-width on the point's side
    e = np.abs(e)
    with np.errstate(divide="ignore", invalid="ignore"):  # outside the interval at horizon 0: no q holds it
        score = np.where(e <= w, e / np.maximum(w, 1e-300) - 1.0, np.sqrt(np.maximum(e * e - w * w, 0.0)) / h)
    return None if y.size < MIN_CALIBRATION_POINTS else _conformal_quantile(score, level)


def _conformal_quantile(score, level: float):
    """The split-conformal quantile of ``score``: its ``ceil((n + 1) level)``-th smallest value, so
    that a new point like these scores at most that with probability ``level``; None when there are
    too few points for the level (``ceil((n + 1) level) > n``)."""
    k = int(np.ceil((np.size(score) + 1) * level))
    return float(np.sort(score)[k - 1]) if k <= np.size(score) else None


def _widen(draws, q: float, h, level: float, floor: bool = False, scale: float = 1.0):
    """Move each point's draws so that the ends of its central ``level`` interval move to those of
    :func:`_widen_ends` (in ``ln L``; from the :data:`REFERENCE_LEVEL` interval, or with ``floor``
    from the ``level`` one): every draw's distance from the median is scaled, per side, by the ratio
    of the new to the old half-width."""
    lo, med, hi = _log_quantiles(draws, level)
    base = (lo, med, hi) if floor else _log_quantiles(draws, REFERENCE_LEVEL)
    new_lo, new_hi = _widen_ends(*base, q, h, floor, scale)
    ld = np.log(draws)
    up = (new_hi - med) / np.maximum(hi - med, 1e-300)
    dn = (med - new_lo) / np.maximum(med - lo, 1e-300)
    return np.exp(med + np.where(ld >= med, up, dn) * (ld - med))


def _widen_ends(lo, med, hi, q: float, h, floor: bool = False, scale: float = 1.0):
    """The interval ends corrected by ``q`` (:func:`_conformal_margin`), in ``ln L``: each half-width
    ``w`` becomes ``(1 + q) w`` for ``-1 <= q <= 0``, ``sqrt(w^2 + (q h)^2)`` for ``q > 0`` at horizon
    ``h``; with ``floor`` (``q >= 0``, :func:`_self_calibration`) ``max(scale w, q h)``."""
    if floor:
        return med - np.maximum(scale * (med - lo), q * h), med + np.maximum(scale * (hi - med), q * h)
    if q <= 0:
        return med - (1.0 + q) * (med - lo), med + (1.0 + q) * (hi - med)
    g = (q * h) ** 2
    return med - np.sqrt((med - lo) ** 2 + g), med + np.sqrt((hi - med) ** 2 + g)


def extrapolate(key, data: TailData, spec: ExtrapolateSpec = ExtrapolateSpec()) -> TailFit:
    """Fit the Bayesian saturating power law of every curve on its training rows and predict the others.

    Args:
      key: PRNG key (the sampler and the predictive draws).
      data: :func:`tail_from_frame` (or a :class:`TailData` built by hand).
      spec: sampler settings and the interval level.

    Returns:
      :class:`TailFit`: ``prediction`` of the tail rows (``mean`` holds the predictive median,
      the point that minimises the absolute error of ``ln L``; ``lower`` / ``upper`` the central
      ``spec.level`` interval; ``samples`` the predictive draws, None above :data:`PRED_CHUNK`
      tail rows, where only the interval is kept), the posterior draws of ``E``,
      ``A``, ``alpha`` per curve in original units (of the gap ``ceiling - y`` when ``data`` has a
      ceiling), the sampler's ``diagnostics`` (``sampler``:
      ``"nuts"``, warned when R-hat > 1.01, ESS < 100 per chain, divergences or fewer than 2 chains;
      ``"importance"``, warned when a run's Pareto k-hat > 0.7 or when fewer than
      :data:`IS_MIN_DRAWS` draws per run are kept; with ``spec.sampler == "auto"``,
      ``auto`` records the importance k-hat, the sampler chosen and why) and the
      ``calibration`` record.

    Calibration (``spec.calibrate``, on by default): the finished runs of the table (every row in
    the early part) show how far curves move after a cut. Each is cut like a run in progress (at
    a quantile of the runs in progress's ratios of last training step to last step to predict),
    its late rows are held back, fitted in the same program and predicted. One split-conformal
    parameter from them (:func:`_conformal_margin`) corrects the intervals of the runs in
    progress: ``growth`` > 0 widens each half-width ``w`` (in ``ln L``) to ``sqrt(w^2 +
    (growth h)^2)``, ``h = ln(step / the run's last early step)``, so that the interval grows with
    the distance beyond the early part; ``margin`` in [-1, 0) scales each half-width by
    ``1 + margin`` (the model's interval was too wide). Whatever ``spec.level``, the correction
    starts from the model's :data:`REFERENCE_LEVEL` interval, so that the intervals of different
    levels nest. The ``calibration`` record has both (the other is 0), ``horizon_held`` (the largest
    ``h`` of a held-back point) and ``beyond_held`` (rows to predict further out, where the growth
    is extrapolated). Without finished runs, the early parts of the runs in progress are backtested
    in the same way (:func:`_self_calibration`): their errors per e-fold of the step set a floor
    under each half-width, and a ``margin`` in [-1, 0] narrows an own interval wider than their
    errors (``source`` ``"early parts"``, warned: it tends to be wide and cannot see what starts
    after the early part). With too few held-back points for either (fewer than
    :data:`MIN_CALIBRATION_POINTS`) the interval is the model's own, and a warning says so. The
    held-back points are treated as exchangeable with the tail points; points of one run are correlated, so with
    few finished runs the correction is itself uncertain.

    The same held-back points score the sceptic's baselines (``calibration["backtest"]``, RMSLE of
    the law, :func:`local_trend` and :func:`nearest_finished`, no run following itself; on the
    early parts' backtest the law and :func:`local_trend`, a winner warned). When the
    backtest reaches as far as most rows to predict and following the nearest other finished run
    beat the law there by more than :data:`TIE_FRACTION`, each run in progress that a finished run
    spans (from its last early step to its last step to predict) follows the nearest such run (``spec.follow_finished``; ``calibration
    ["follow"]``, warned; their interval at least the law's calibrated one and the backtest's
    growth; ``samples`` then None); when another baseline won, a warning names it.
    """
    check_level(spec.level)
    if spec.sampler not in SAMPLERS:
        raise ValueError(f"sampler must be one of {SAMPLERS}, got {spec.sampler!r}")
    if spec.chains < 1 or spec.samples < 1 or spec.warmup < 1:
        raise ValueError(f"chains, samples and warmup must be >= 1, got {spec.chains}, {spec.samples}, {spec.warmup}")
    # a table of long logs takes a while (170k rows: ~40 s on 2 CPU cores); say it still runs
    with heartbeat(f"power-law extrapolation of {len(data.labels)} runs ({np.asarray(data.y).size} rows)"):
        fit = _extrapolate(key, _gap(data), spec)
    fit = fit.replace(prediction=_from_gap(data.ceiling, fit.prediction))
    _warn_past_bound(data, fit.prediction, "power-law extrapolation")
    return fit


def _extrapolate(key, data: TailData, spec: ExtrapolateSpec) -> TailFit:
    """:func:`extrapolate` after its checks."""
    tr_user = np.asarray(data.train, bool)
    held, ratios, unused = _calibration_rows(data) if spec.calibrate else (np.zeros(tr_user.shape, bool), None, {})
    tr = tr_user & ~held  # held-back rows of finished runs are predicted like tail rows
    active, cur, xk, yk, t_all, fit_rows, ly_fit = _fit_inputs(data, tr)
    K = len(active)
    k_mcmc, k_pred = jax.random.split(key)
    fit_args = (t_all[fit_rows], cur[fit_rows], ly_fit, K, spec)
    if spec.sampler == "nuts":
        s, report = _nuts(k_mcmc, *fit_args)
    else:
        auto = spec.sampler == "auto"
        labels = [data.labels[k] for k in active]
        # auto: importance sampling first; its Pareto k-hat decides whether more proposals or NUTS
        # are needed
        lap = _laplace_fits(*fit_args)
        s, report = _importance(k_mcmc, lap, spec, labels, warn=not auto)
        if auto:
            first, retry = report, None
            if not report["converged"]:  # the failing runs alone, with more proposals
                s, report, retry = _retry_failing(jax.random.fold_in(k_mcmc, 1), lap, s, report, spec, labels)
            report = dict(report, auto=_auto_record(first, retry, K))
            if not report["converged"] and report["runs_failing"] <= AUTO_IMPORTANCE_RUNS:
                s, report = _nuts_failing(jax.random.fold_in(k_mcmc, 2), lap, s, report, spec, labels)
            elif not report["converged"]:
                warnings.warn("power-law extrapolation: " + report["reason"], RuntimeWarning, stacklevel=2)
        report = {k: v for k, v in report.items() if not k.startswith("_")}
    if report["sampler"] != "nuts" and report["num_samples"] < IS_MIN_DRAWS:
        m = (f"only {report['num_samples']} importance draws per run (chains x samples): the interval's ends are "
             f"quantiles of so few draws; keep at least {IS_MIN_DRAWS} (--samples, --chains)")
        warnings.warn("power-law extrapolation: " + m, RuntimeWarning, stacklevel=2)
        report = dict(report, converged=False, reason=m if report["converged"] else f"{report['reason']}; {m}")
    pred_rows = np.flatnonzero(~tr)
    level = float(spec.level)
    # the level's ends and the reference interval the conformal correction starts from
    probs = _ends(level) + _ends(REFERENCE_LEVEL)
    log_q, log_d = _predictive_summary(k_pred, s, t_all[pred_rows], cur[pred_rows], float(spec.nu), probs)
    log_q, log_ref = log_q[:3], log_q[3:]
    log_yk = np.log(yk[cur[pred_rows]])
    real = ~tr_user[pred_rows]
    rows = pred_rows[real]
    h = _horizon(data, tr, pred_rows)
    calibration, advice = _calibrate(spec, ratios, data, pred_rows[~real], (log_q + log_yk)[:, ~real],
                                     (log_ref + log_yk)[:, ~real], h[~real], h[real], unused)
    follow = None
    if calibration.get("source") == "finished runs":  # how the baselines did on the same held-back rows
        calibration["backtest"] = _backtest_baselines(data, tr, pred_rows[~real], (log_q + log_yk)[1, ~real],
                                                      pool=_finished(data))
        # acted on only when it reaches as far as most rows to predict (short finished runs backtest
        # short horizons: on the NCPL curves their winner, local_trend, lost the 150x tails)
        reach = calibration["beyond_held"] <= 0.5 * int(real.sum())
        calibration["backtest"]["reaches_most_rows"] = bool(reach)
        if spec.follow_finished and reach:
            follow = _follow_finished(data, tr, pred_rows[~real], h[~real], pred_rows[real], h[real], level,
                                      calibration["backtest"])
        if follow is None and reach:  # a baseline that won: named, unless no run in progress could follow
            usable = _nearest_baseline(data, pred_rows[real])[0] is not None
            calibration["backtest"]["runs_can_follow"] = bool(usable)
            _warn_backtest(calibration["backtest"], "finished runs",
                           skip=("nearest_finished_run_rmsle",) if spec.follow_finished or not usable else ())
    if spec.calibrate and not calibration["calibrated"]:
        own = _self_calibration(jax.random.fold_in(key, 3), data, spec, h[real], calibration.get("finished_runs"))
        if own["calibrated"]:
            # why the finished runs could not: said with the fix (as for an uncalibrated interval)
            why = f" The finished runs could not: {calibration['reason']}. {advice}" if own["finished_runs"] else ""
            warnings.warn(f"power-law extrapolation: {own['reason']}.{why}", UserWarning, stacklevel=3)
            kept = {k: calibration[k] for k in ("finished_runs_unused", "unused_because") if k in calibration}
            calibration = dict(own, **kept)
            _warn_backtest(own["backtest"], "the runs' own early parts")
        else:
            calibration = dict(calibration, early_parts=own["reason"])
    if spec.calibrate and not calibration["calibrated"]:
        warnings.warn(f"power-law extrapolation: the {level:.0%} interval is not calibrated: {calibration['reason']}. "
                      f"{advice}", UserWarning, stacklevel=3)
    floor = calibration.get("source") == "early parts"
    # the one that is not 0 (None: uncalibrated); the early parts' floor and its narrowing come together
    corr = calibration.get("growth") if floor else calibration.get("growth") or calibration.get("margin")
    scale = 1.0 + calibration["margin"] if floor else 1.0  # the early parts are the source only once calibrated
    if log_d is not None:  # the draws themselves: kept in the prediction, widened
        ypred = np.exp(log_d[:, real] + log_yk[real])
        if corr is not None:
            ypred = _widen(ypred, corr, h[real], level, floor, scale)
        q = np.quantile(ypred, _ends(level), axis=0)
    else:  # many rows: the interval ends only
        ypred = None
        lo, med, hi = (log_q + log_yk)[:, real]
        if corr is not None:
            lo, hi = _widen_ends(*((lo, med, hi) if floor else (log_ref + log_yk)[:, real]), corr, h[real], floor,
                                 scale)
        q = np.exp(np.stack([lo, med, hi]))
    if follow is not None:  # the rows that follow their nearest finished run: its curve, the backtest's interval
        followed, lo_f, med_f, hi_f, record = follow
        sel = followed >= 0
        law_lo, law_med, law_hi = np.log(q[:, sel])  # the law's calibrated half-widths: a floor under the backtest's
        lo_f = np.minimum(lo_f, med_f - (law_med - law_lo))
        hi_f = np.maximum(hi_f, med_f + (law_hi - law_med))
        q[:, sel] = np.exp(np.stack([lo_f, med_f, hi_f]))
        ypred = None  # the draws are the law's: not those of the rows that follow a finished run
        calibration = dict(calibration, follow=record)
        warnings.warn(f"power-law extrapolation: {record['reason']}", UserWarning, stacklevel=3)
    mine = np.unique(cur[~tr_user])  # the runs in progress among the fitted curves
    c, g, alpha = (np.asarray(s[k])[:, mine] for k in ("c", "g", "alpha"))
    E = c * np.exp(g) * yk[mine][None]
    A = c * (1.0 - np.exp(g)) * yk[mine][None] * xk[mine][None] ** alpha
    pred = Prediction(jnp.asarray(q[1]), jnp.asarray(q[0]), jnp.asarray(q[2]),
                      None if ypred is None else jnp.asarray(ypred))
    return TailFit(pred, rows, active[mine], E, A, alpha, report, calibration,
                   None if follow is None else followed)


def _fit_inputs(data: TailData, tr):
    """What the fit of the rows ``tr`` needs: ``(active, cur, xk, yk, t, fit_rows, ly)``. Only runs
    with rows to predict (``~tr``) are fitted (their laws share the pooled noise prior): ``active``
    holds their codes, ``cur`` each row's place among them (-1: its run is not fitted); ``xk``,
    ``yk`` scale each fitted run (its last fitted step and the loss there), ``t`` is every row's
    step over its run's ``xk``, ``fit_rows`` the rows the laws are fitted on and ``ly`` their
    ``ln(L / yk)``."""
    xk, yk = _normalise(data.replace(train=tr))
    cur0 = np.asarray(data.curve, np.int64)
    active = np.unique(cur0[~tr])
    remap = np.full(len(data.labels), -1, np.int64)
    remap[active] = np.arange(len(active))
    xk, yk, cur = xk[active], yk[active], remap[cur0]
    fit_rows = tr & (cur >= 0)
    ly = np.log(np.asarray(data.y, float)[fit_rows] / yk[cur[fit_rows]])
    return active, cur, xk, yk, np.asarray(data.x, float) / xk[np.maximum(cur, 0)], fit_rows, ly


def _self_calibration(key, data: TailData, spec: ExtrapolateSpec, tail_h, finished: int = 0) -> dict:
    """A floor under the interval from the early parts of the runs in progress themselves.

    Each run's early part is treated as a finished run: cut like the runs in progress (at a
    quantile of their ratios of last early step to last step to predict, :func:`_calibration_rows`:
    the held-back points lie as many e-folds of the step beyond the cut as the rows to predict lie
    beyond the early part; where that cut leaves too few points to hold back, as when densely logged
    runs are predicted far beyond their last logged step, no earlier than where the median early
    part keeps :data:`SELF_CAL_KEEP` of its points, and at least :data:`MIN_TRAIN_POINTS`
    (:func:`_ratio_floor`; ``cut_ratio_floor`` in the record): the growth learnt there is then
    extrapolated), fitted below the cut in one program of its own (its own empirical-Bayes noise
    prior, importance sampling; the fit of the runs is left untouched), and its later early points
    predicted. ``growth`` is the split-conformal quantile of their errors per e-fold of the step,
    ``|ln y - median| / h``, over the points at least as far beyond the cut as the median one: just
    after the cut the error is the noise's, and divided by a small ``h`` it would pass for a steep
    growth (the long W&B-style logs: 0.36 per e-fold from the nearest third of the points, 0.03
    from the farthest, for the same 90 % error of 0.033). Each half-width of the runs' interval
    becomes at least ``growth h`` (:func:`_widen_ends` with ``floor``). The growth comes from the
    errors alone, not beside the backtest's own interval: that fit has fewer points, so its
    interval is wider than the real fit's and would hide how far a fit of these curves errs. For the
    same reason the floor tends to be wide; and it cannot see what starts after the early part (a
    learning-rate warm-down, a data change). The backtest's own interval only narrows: where it was
    wider than the errors ask for (the split-conformal quantile, over every held-back point, of the
    error over the half-width on its side, below 1), ``margin`` (that quantile - 1) scales the
    model's half-widths, never below the floor: ``max((1 + margin) w, growth h)``. NanoGPT's curves
    cut at half their length: the own interval (its noise level set by the plateau of the first
    steps) was 0.69 wide in ln L for errors of 0.02; 0.20 with the margin (coverage 1.00 both).
    ``tail_h``: the horizons of the rows to predict; ``finished``: the finished runs (too few of
    whose points could be held back). Returns the ``calibration`` record (``source``
    ``"early parts"``); ``calibrated`` False with the reason when fewer than
    :data:`MIN_CALIBRATION_POINTS` points can be held back."""
    level = float(spec.level)
    cur = np.asarray(data.curve, np.int64)
    tr = np.asarray(data.train, bool)
    prog = _in_progress(data)
    ratios = _ratios(data)
    rows = np.flatnonzero(tr & prog[cur])
    early = data.replace(curve=cur[rows], x=np.asarray(data.x, float)[rows], y=np.asarray(data.y, float)[rows],
                         train=np.ones(rows.size, bool), row_id=np.asarray(data.row_id)[rows], descriptors=None)
    held, _, unused = _calibration_rows(early, ratios)
    floor = None
    if held.sum() < MIN_CALIBRATION_POINTS:  # cut so early that too few points stay: no earlier than the floor
        floor = _ratio_floor(data)
        if floor is not None and np.any(ratios < floor):
            held, _, unused = _calibration_rows(early, np.maximum(ratios, floor))
        else:
            floor = None
    n_runs = int(np.unique(early.curve[held]).size)
    out = {"calibrated": False, "source": "early parts", "margin": None, "growth": None, "runs": n_runs,
           "points": int(held.sum()), "finished_runs": int(finished), "cut_ratio_floor": floor}
    if held.sum() < MIN_CALIBRATION_POINTS:
        out["reason"] = (f"cutting each run's early part like the runs in progress leaves {int(held.sum())} point(s) "
                         f"to hold back ({unused.get('too_few_early', 0)} of {int(prog.sum())} early parts keep fewer "
                         f"than {MIN_TRAIN_POINTS} points below the cut), fewer than {MIN_CALIBRATION_POINTS}")
        return out
    get_logger(__name__).info("power-law extrapolation: the early part of each run in progress is cut and its last "
                              "%d points predicted, to calibrate the interval", int(held.sum()))
    tr_e = ~held
    active, c, xk, yk, t, fit, ly = _fit_inputs(early, tr_e)
    k_fit, k_pred = jax.random.split(key)
    lap = _laplace_fits(t[fit], c[fit], ly, len(active), spec)
    try:
        s, _ = _importance(k_fit, lap, spec, [early.labels[k] for k in active], warn=False)
    except FloatingPointError as e:  # a backtest that cannot be sampled leaves the model's own interval
        out["reason"] = f"the backtest of the early parts failed: {e}"
        return out
    pred = np.flatnonzero(held)
    log_q, _ = _predictive_summary(k_pred, s, t[pred], c[pred], float(spec.nu), _ends(level))
    h = _horizon(early, tr_e, pred)
    log_y = np.log(early.y[pred])
    lo, med, hi = log_q + np.log(yk[c[pred]])
    far = h >= np.median(h)  # the growth is learnt where the error grows: near the cut it is the noise's
    q = _conformal_quantile(np.abs(log_y - med)[far] / h[far], level)
    raw = float(np.mean((log_y >= lo) & (log_y <= hi)))
    # how wide the model's own interval was on them: below 0, the share of each half-width they asked for, minus 1
    # (of the level's interval, which the floor scales, not of the reference one as for finished runs)
    narrow = _conformal_margin(early.y[pred], np.stack([lo, med, hi]), h, level)
    if q is None:
        out.update(raw_coverage=raw, reason=f"{int(far.sum())} of the {int(held.sum())} held-back early points lie at "
                                            "least as far beyond the cut as the median one, too few for a "
                                            f"{level:.0%} conformal quantile")
        return out
    h_max = float(np.max(h))
    margin = 0.0 if narrow is None else min(narrow, 0.0)
    out.update(calibrated=True, margin=margin, growth=q, raw_coverage=raw, horizon_held=h_max,
               beyond_held=int(np.sum(tail_h > h_max * (1 + 1e-9))),
               backtest=_backtest_baselines(early, tr_e, pred, med))
    why = "no finished run" if not finished else f"too few points of the {finished} finished run(s) to hold back"
    out["reason"] = (f"{why}: the {level:.0%} interval is calibrated on the runs' own early parts. Each "
                     f"early part was cut like the runs in progress and its last points predicted from the points "
                     f"before ({int(held.sum())} points of {n_runs} runs): their errors grew by up to {q:.3g} in ln L "
                     f"per e-fold of the step beyond the cut ({level:.0%} of the farther half of them; the model's "
                     f"interval covered {raw:.0%}), so each half-width w (in ln L) is at least {q:.3g} h at "
                     f"h = ln(step / the run's last early step): +-{q * np.log(10):.3g} at 10x. "
                     + (f"The model's interval on that backtest was wider than its errors ask for ({level:.0%} of "
                        f"them lie within {1 + margin:.3g} of its half-width on their side), so each half-width w "
                        f"becomes max({1 + margin:.3g} w, {q:.3g} h). " if margin < 0 else "")
                     + (f"The early parts were cut no earlier than {floor:.2g} of their last step (where the median "
                        f"one keeps {SELF_CAL_KEEP:.0%} of its points, at least {MIN_TRAIN_POINTS}): cut like the runs "
                        f"in progress they kept too few, so the growth is learnt up to {h_max:.2g} e-folds and "
                        f"extrapolated to the {int(np.sum(tail_h > h_max * (1 + 1e-9)))} rows further out. "
                        if floor is not None else "")
                     + "This backtest fits fewer points than the fit "
                     "itself (the floor tends to be wide) and cannot see what starts after the early part (e.g. a "
                     "learning-rate warm-down). Finished runs in the table (all their rows in the early part) "
                     "calibrate it better")
    return out


#: The share of its points an early part keeps at least when it is cut to calibrate the interval
#: on the runs' own early parts (:func:`_self_calibration`).
SELF_CAL_KEEP = 0.25


def _ratio_floor(data: TailData) -> float | None:
    """The smallest cut ratio of the runs' own backtest: the median over the runs in progress of
    (the step keeping :data:`SELF_CAL_KEEP` of the early points, and at least
    :data:`MIN_TRAIN_POINTS`) / (the last early step). ``None`` when the median early part has fewer
    than twice :data:`MIN_TRAIN_POINTS` points (fewer held back than kept): a backtest of its first
    few points only widens an interval that is wide already (tried: nanochat cut at 10 % of its runs,
    about 5 points each, 4x the width for a coverage of 1.00 either way). Nanochat cut at 25 %, about
    12 points each, each cut after its 4th: coverage 0.77 (the model's own interval) -> 0.94 at 1.6x
    the width."""
    cur = np.asarray(data.curve, np.int64)
    x, tr = np.asarray(data.x, float), np.asarray(data.train, bool)
    m = tr & _in_progress(data)[cur]
    if not m.any():
        return None
    c, xe = cur[m], x[m]
    o = np.lexsort((xe, c))  # each run's early steps, ascending, runs one after another
    c, xe = c[o], xe[o]
    runs, start, n = np.unique(c, return_index=True, return_counts=True)
    if np.median(n) < 2 * MIN_TRAIN_POINTS:
        return None
    i = np.minimum(np.maximum(np.ceil(SELF_CAL_KEEP * n).astype(int), MIN_TRAIN_POINTS), n) - 1
    return float(np.median(xe[start + i] / xe[start + n - 1]))


def _nuts_failing(key, lap: dict, draws: dict, report: dict, spec: ExtrapolateSpec, labels: list):
    """NUTS for the runs whose importance draws failed the k-hat check, each on its own (the same
    per-run posterior as importance sampling: the law's priors and the empirical-Bayes noise
    prior), all of them x ``spec.chains`` chains in one program started at their MAP and Laplace
    covariance (:func:`jaxscale.infer.batched_nuts`); their draws replace the importance draws.
    Returns ``(draws, report)``; the report's ``nuts`` entry holds the R-hat, ESS and divergences of
    those runs and decides ``converged``."""
    from numpyro.diagnostics import effective_sample_size, split_gelman_rubin

    from jaxscale.infer.batched_nuts import batched_nuts, nuts_warnings
    from jaxscale.infer.importance import K_HAT_MAX
    from jaxscale.learning_curves.core import row_bucket

    runs = np.asarray(report["_failing"])
    R = runs.size
    pick = np.r_[runs, np.full(row_bucket(R) - R, runs[0])]  # a bucketed batch: the first run repeated
    get_logger(__name__).info("power-law extrapolation: NUTS for the %d run(s) whose importance draws failed, "
                              "%d warm-up + %d draws x %d chains each", R, spec.warmup, spec.samples, spec.chains)
    z, div, _ = batched_nuts(key, _POTENTIAL, lap["x_map"][pick], lap["cov"][pick],
                             tuple(a[pick] for a in lap["per"]), (lap["nu"],), num_warmup=int(spec.warmup),
                             num_samples=int(spec.samples), num_chains=int(spec.chains),
                             target_accept_prob=float(spec.target_accept), max_tree_depth=8)
    z, div = np.asarray(z)[:R], np.asarray(div)[:R]  # (R, chains, samples, 4)
    if not np.all(np.isfinite(z)):
        bad = runs[np.unique(np.argwhere(~np.isfinite(z))[:, 0])]
        raise FloatingPointError(f"power-law extrapolation: non-finite NUTS draws for {bad.size} run(s) "
                                 f"(e.g. {[str(labels[k]) for k in bad[:5]]}); check the losses of those runs")
    by_chain = np.moveaxis(z, 0, 2)  # (chains, samples, R, 4): every run's diagnostics at once
    r_hat = np.asarray(split_gelman_rubin(by_chain))  # (R, 4); one chain: its halves
    ess = np.asarray(effective_sample_size(by_chain))
    flat = z.reshape(R, -1, 4)  # (R, chains x samples, 4): the same S draws as importance sampling
    g, alpha = _g_alpha(flat[..., 1], flat[..., 2])
    out = {k: np.array(v, copy=True) for k, v in draws.items()}
    for k, v in (("c", flat[..., 0]), ("g", g), ("alpha", alpha), ("sigma", np.exp(flat[..., 3]))):
        out[k][:, runs] = np.asarray(v).T
    worst = runs[np.argsort(-np.nan_to_num(r_hat.max(1), nan=np.inf))][:5]
    nuts = {"runs": int(R), "max_r_hat": float(np.max(r_hat)), "min_ess": float(np.min(ess)),
            "divergences": int(div.sum()), "num_chains": int(spec.chains), "num_samples": int(spec.samples),
            "worst_runs": [str(labels[k]) for k in worst]}
    msg = nuts_warnings(nuts, f"power-law extrapolation, NUTS of the {R} run(s) importance sampling missed")
    if msg:
        warnings.warn(msg, RuntimeWarning, stacklevel=4)
    if not np.isfinite(nuts["max_r_hat"]):  # too few draws for an R-hat (strict JSON has no NaN)
        nuts.update(max_r_hat=None, max_r_hat_reason="fewer than 4 draws per chain")
    kept = np.setdiff1d(np.arange(np.size(report["_ess"])), runs)  # runs that keep their importance draws
    # the top level sums up every run: the importance ESS of the runs kept, NUTS's of the others
    top = {"min_ess": min([nuts["min_ess"]] + ([float(np.min(report["_ess"][kept]))] if kept.size else [])),
           "max_r_hat": nuts["max_r_hat"]}
    rep = dict(report, **top, sampler="importance+nuts", nuts=nuts, converged=msg is None,
               reason=msg or (f"importance draws for {lap['K'] - R} run(s) (Pareto k-hat <= {K_HAT_MAX}); NUTS "
                              f"for the {R} that failed it (R-hat <= 1.01, ESS >= 100 per chain, no divergences)"))
    return out, rep


def _auto_record(report: dict, retry: dict | None, K: int) -> dict:
    """Why ``sampler="auto"`` kept importance sampling or went on to NUTS (kept in the diagnostics):
    ``report`` of the first importance pass, ``retry`` of the second (the failing runs alone, more
    proposals) or None."""
    from jaxscale.infer.importance import K_HAT_MAX

    rec = {"tried": "importance", "max_pareto_k": report["max_pareto_k"], "runs_failing": report["runs_failing"]}
    if retry is not None:
        rec.update(tried="importance, then importance with more proposals", retry_proposals=retry["proposals"],
                   retry_max_pareto_k=retry["max_pareto_k"], retry_runs_failing=retry["runs_failing"])
    if report["converged"]:
        rec["chosen"] = "importance"
        rec["reason"] = f"Pareto k-hat <= {K_HAT_MAX} for every run: the importance draws are kept"
    elif retry is not None and retry["converged"]:
        rec["chosen"] = "importance"
        rec["reason"] = (f"Pareto k-hat > {K_HAT_MAX} for {report['runs_failing']} of {K} run(s); with "
                         f"{retry['proposals']} proposals per run every run passes (max k-hat "
                         f"{retry['max_pareto_k']:.2f}): those draws are kept")
    elif retry["runs_failing"] <= AUTO_IMPORTANCE_RUNS:
        rec["chosen"] = "importance+nuts"
        rec["reason"] = (f"Pareto k-hat > {K_HAT_MAX} for {retry['runs_failing']} of {K} run(s) "
                         f"(e.g. {retry['worst_runs'][:3]}), also with {retry['proposals']} proposals per run: "
                         "NUTS samples those runs (each its own posterior, as importance sampling has it), the "
                         "importance draws are kept for the others")
    else:
        rec["chosen"] = "importance"
        rec["reason"] = (f"Pareto k-hat > {K_HAT_MAX} for {retry['runs_failing']} of {K} run(s), also with "
                         f"{retry['proposals']} proposals per run; NUTS is run for at most {AUTO_IMPORTANCE_RUNS} "
                         "failing runs, so the importance draws are kept (warned)")
    return rec


def _nuts(key, t, curve, ly, K: int, spec: ExtrapolateSpec):
    """Posterior draws of every run's law by one NUTS over the joint model (:func:`_model`):
    ``(draws, report)``, ``draws`` maps ``c, g, alpha, sigma`` to ``(S, K)`` arrays."""
    from jaxscale.infer.bayes import run_nuts

    get_logger(__name__).info("power-law extrapolation: NUTS over %d runs (%d training rows), %d warm-up + %d "
                              "draws x %d chains", K, int(t.size), spec.warmup, spec.samples, spec.chains)
    res = run_nuts(key, _model, jnp.asarray(t), jnp.asarray(curve), jnp.asarray(ly), K, float(spec.nu),
                   num_warmup=int(spec.warmup), num_samples=int(spec.samples), num_chains=int(spec.chains),
                   target_accept_prob=float(spec.target_accept))  # a progress bar on an interactive stderr
    diag = res.diagnostics
    msgs = list(res.warnings)
    if spec.chains < 2:
        m = f"power-law extrapolation: only {spec.chains} chain: R-hat cannot be computed; run >= 2 chains"
        warnings.warn(m, RuntimeWarning, stacklevel=3)
        msgs = [m] + [w for w in msgs if not w.startswith("only")]
    report = {"sampler": "nuts", "converged": not any(not w.startswith("only") or spec.chains < 2 for w in msgs),
              "max_r_hat": diag["max_r_hat"], "min_ess": diag["min_ess"], "divergences": int(diag["divergences"]),
              "num_chains": int(diag["num_chains"]), "num_samples": int(diag["num_samples"]),
              "reason": "; ".join(msgs) if msgs else "R-hat <= 1.01, ESS >= 100 per chain, no divergences"}
    return {k: np.asarray(res.samples[k]) for k in ("c", "g", "alpha", "sigma")}, report


def _backtest_baselines(data: TailData, train, rows, log_med, pool=None) -> dict:
    """The backtest behind the calibration, scored for the law and the sceptic's baselines: the
    RMSLE of ``ln y`` at the held-back ``rows`` (predicted from the rows ``train``) of the law's
    median ``log_med``, of :func:`local_trend` and, with a ``pool`` of finished runs, of
    :func:`nearest_finished` (no run following itself). It says before any row to predict has a
    loss whether a baseline predicts runs like these better than the law."""
    g = _gap(data).replace(train=np.asarray(train, bool))
    ly = np.log(np.asarray(g.y, float)[rows])
    out = {"points": int(len(rows)), "model_rmsle": float(np.sqrt(np.mean((log_med - ly) ** 2))),
           "local_trend_rmsle": float(np.sqrt(np.mean((np.log(local_trend(g, rows)) - ly) ** 2)))}
    if pool is not None and len(pool) > 1:
        near, _ = nearest_finished(g, rows, pool)
        out["nearest_finished_run_rmsle"] = float(np.sqrt(np.mean((np.log(near) - ly) ** 2)))
    return out


def _warn_backtest(bt: dict | None, source: str, skip=()) -> None:
    """Warn when a baseline (other than those in ``skip``) predicted the calibration's held-back
    points better than the law."""
    names = [k for k in (bt or {}) if k.endswith("_rmsle") and k != "model_rmsle" and k not in skip]
    if not names:
        return
    best = min(names, key=bt.get)
    if bt[best] < bt["model_rmsle"] * (1 - TIE_FRACTION):
        name = best[: -len("_rmsle")]
        warnings.warn(f"power-law extrapolation: on the backtest behind the interval ({bt['points']} held-back points "
                      f"of {source}), {name} predicted better than the law: RMSLE {bt[best]:.3g} against "
                      f"{bt['model_rmsle']:.3g}. On runs like these it may predict the rows to predict better too; "
                      f"its predictions are beside the law's (CLI: column {name} of --predictions; Python: "
                      "jaxscale.learning_curves.extrapolate.local_trend / nearest_finished)", UserWarning, stacklevel=3)


def _follow_finished(data: TailData, tr, held_rows, held_h, rows, tail_h, level: float, bt: dict):
    """When following the nearest other finished run beat the law on the backtest by more than
    :data:`TIE_FRACTION`: the rows to predict of each run that a finished run spans (from its last
    early step to its last step to predict) take that run's shifted curve as their median, and as
    interval the split-conformal growth of the backtest's errors, ``median * exp(+-q h)`` with ``q``
    the quantile of ``|ln y - ln median| / h`` (the caller widens it to the law's calibrated
    half-widths where those are wider). Returns ``(the followed run's code at each row or -1, lower,
    median, upper in ln L of the rows that follow, record)`` or ``None`` (the law is kept)."""
    near = bt.get("nearest_finished_run_rmsle")
    if near is None or not near < bt["model_rmsle"] * (1 - TIE_FRACTION):
        return None
    pool = _finished(data)
    y = np.log(np.asarray(data.y, float)[held_rows])
    b, _ = nearest_finished(data.replace(train=tr), held_rows, pool)
    q = _conformal_quantile(np.abs(y - np.log(b)) / np.maximum(held_h, 1e-12), level)
    if q is None:
        return None
    p, info = nearest_finished(data, rows, with_source=True)
    source = info.pop("_source")
    sel = source >= 0
    if not sel.any():
        return None
    med = np.log(p[sel])
    record = {"rows": int(sel.sum()), "rows_kept_on_the_law": int(sel.size - sel.sum()), "growth": q,
              "backtest_rmsle": near, "law_backtest_rmsle": bt["model_rmsle"], **info,
              "reason": (f"on the backtest behind the interval ({bt['points']} held-back points of finished runs), "
                         f"following the nearest other finished run predicted them better than the law (RMSLE "
                         f"{near:.3g} against {bt['model_rmsle']:.3g}), so {int(sel.sum())} of {sel.size} rows to "
                         f"predict follow their run's nearest finished run (shifted to meet the run at its last "
                         f"early step; nearest by {info['nearest_by']}), with a {level:.0%} interval at least as "
                         f"wide as the law's calibrated one and as the backtest's errors, +-{q:.3g} in ln L per e-fold "
                         "of the step beyond the cut"
                         + (f"; {int(sel.size - sel.sum())} rows of runs that no finished run spans keep the law"
                            if not sel.all() else "")
                         + ". ExtrapolateSpec(follow_finished=False) (CLI: --keep-law) keeps the law everywhere")}
    return source, med - q * tail_h[sel], med, med + q * tail_h[sel], record


#: A baseline is warned about on the backtest only when it beats the law by more than this share of
#: the law's RMSLE (less is a tie on so few points).
TIE_FRACTION = 0.1


def _calibrate(spec: ExtrapolateSpec, ratios, data: TailData, held_rows, held_log_q, held_log_ref, held_h, tail_h,
               unused: dict) -> tuple[dict, str]:
    """The conformal correction from the held-back rows of finished runs: ``(record, advice)``, the
    advice for the warning of an uncalibrated interval; ``ratios``: the runs in progress's (last
    early step) / (last step to predict); ``held_log_q``, ``held_log_ref``: the held-back rows'
    ``level`` and :data:`REFERENCE_LEVEL` intervals (``(3, n)`` in ``ln L``); ``held_h``, ``tail_h``:
    the horizons of the held-back and the tail rows; ``unused``: why finished runs were left out
    (:func:`_calibration_rows`)."""
    level = float(spec.level)
    if not spec.calibrate:
        return {"calibrated": False, "margin": None, "growth": None,
                "reason": "calibration switched off (calibrate=False)"}, ""
    n_runs = int(np.unique(np.asarray(data.curve)[held_rows]).size)
    n_finished = int(_finished(data).size)
    rho = None if ratios is None else float(np.median(ratios))
    why = [f"{unused.get('too_few_early', 0)} with fewer than {MIN_TRAIN_POINTS} early points after the cut",
           f"{unused.get('flat_early', 0)} with a flat early part", f"{unused.get('nothing_after', 0)} with nothing "
           "after the cut"]
    out = {"calibrated": False, "source": None, "margin": None, "growth": None, "runs": n_runs,
           "points": int(held_rows.size),
           "rho": rho, "rho_range": None if ratios is None else [float(np.min(ratios)), float(np.max(ratios))],
           "finished_runs": n_finished, "finished_runs_unused": n_finished - n_runs, "unused_because": ", ".join(why)}
    cut = "" if rho is None else (f"{rho:.3g}" if np.ptp(ratios) <= 1e-9 * rho else
                                  f"{np.min(ratios):.3g}-{np.max(ratios):.3g} (median {rho:.3g})")
    advice = "Keep some finished runs in the table (all their rows in the early part) to calibrate it"
    if rho is None:
        out["reason"] = ("no finished run (a run whose rows are all in the early part) to hold back; the interval is "
                         "the model's own")
        advice += (", or, when the runs carry their configuration (depth, learning rate, ...), fit them all together: "
                   "model='magp_law' (CLI: --model magp_law --descriptor-cols C1,C2), whose interval is its own too "
                   "but learns from the runs further along")
    elif held_rows.size < MIN_CALIBRATION_POINTS:
        out["reason"] = (f"{held_rows.size} held-back point(s) of finished runs, fewer than {MIN_CALIBRATION_POINTS}; "
                         "the interval is the model's own")
        if unused.get("too_few_early", 0):
            out["reason"] += (f". Of the {n_finished} finished run(s), {unused['too_few_early']} keep fewer than "
                              f"{MIN_TRAIN_POINTS} points when cut at {cut} x their last step like the runs in "
                              f"progress (they have {unused['median_points']:.3g} points on median)")
            advice = (f"Finished runs with at least {MIN_TRAIN_POINTS} logged points before {rho:.3g} x their last "
                      "step (logged more densely, or longer) would calibrate it")
    else:
        y = np.asarray(data.y, float)[held_rows]
        q = _conformal_margin(y, held_log_ref, held_h, level)
        raw = float(np.mean((np.log(y) >= held_log_q[0]) & (np.log(y) <= held_log_q[2])))
        out.update(raw_coverage=raw)
        if q is None or not np.isfinite(q):
            out["reason"] = "the held-back points give no finite conformal quantile; the interval is the model's own"
        else:
            h_max = float(np.max(held_h))
            beyond = int(np.sum(tail_h > h_max * (1 + 1e-9)))
            out.update(calibrated=True, source="finished runs", margin=min(q, 0.0), growth=max(q, 0.0),
                       horizon_held=h_max, beyond_held=beyond)
            ref = f"the model's {REFERENCE_LEVEL:.0%} interval" if level != REFERENCE_LEVEL else "its interval"
            how = (f"each half-width of {ref} is scaled by {1 + q:.3g}" if q <= 0 else
                   f"each half-width w (in ln L) of {ref} becomes sqrt(w^2 + ({q:.3g} h)^2) at h = ln(step / the "
                   f"run's last early step): at least +-{q * np.log(10):.3g} at 10x the last early step")
            out["reason"] = (f"{held_rows.size} points of {n_runs} finished run(s), each cut at {cut} x its last "
                             f"step like the runs in progress: the model's {level:.0%} interval covered {raw:.0%} of "
                             f"them; {how}")
            if beyond and q > 0:
                out["reason"] += (f". {beyond} of {tail_h.size} rows to predict lie further out than any held-back "
                                  f"point (beyond {np.exp(h_max):.3g}x their run's last early step): there the growth "
                                  "is extrapolated")
    return out, advice


# ----------------------------------------------------------------------------- the usual practice
def powerlaw_lstsq(data: TailData) -> tuple[np.ndarray, dict]:
    """The baseline: ``scipy.optimize.curve_fit`` of ``E + A t^-alpha`` (``t = x / x_k``) per curve
    on its training rows (least squares on L; ``E >= 0``, ``0 < alpha <= 5``; start ``E`` = 0.9 x the
    smallest training value). Returns the prediction of the tail rows and ``{n_failed, failed}``
    (curves where the fit failed keep their last training value). With a ceiling, the law is fitted
    to the gap ``ceiling - y``, as the model's."""
    from scipy.optimize import curve_fit

    ceiling, data = data.ceiling, _gap(data)
    xk, yk = _normalise(data)
    tr = np.asarray(data.train, bool)
    cur = np.asarray(data.curve, np.int64)
    rows = np.flatnonzero(~tr)
    out = yk[cur[rows]].copy()
    failed = []

    def law(t, E, A, a):
        return E + A * t ** (-a)

    for k in np.unique(cur[rows]):  # the usual practice: one scipy fit per curve
        m = tr & (cur == k)
        t, y = data.x[m] / xk[k], data.y[m]
        p0 = [0.9 * y.min(), y.max() - 0.9 * y.min(), 0.5]
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                p, _ = curve_fit(law, t, y, p0=p0, bounds=([0.0, -np.inf, 1e-6], [np.inf, np.inf, 5.0]),
                                 maxfev=20000)
            sel = cur[rows] == k
            v = law(data.x[rows][sel] / xk[k], *p)
            if np.all(np.isfinite(v)) and np.all(v > 0):
                out[sel] = v
            else:
                failed.append(data.labels[int(k)])
        except (RuntimeError, ValueError):
            failed.append(data.labels[int(k)])
    info = {"n_failed": len(failed), "failed": [str(f) for f in failed[:20]]}
    return (out if ceiling is None else ceiling - out), info


def last_value(data: TailData, rows) -> np.ndarray:
    """The naive baseline: each of ``rows`` predicted by its run's last early value (the loss at
    its largest training step), carried forward."""
    return _normalise(data)[1][np.asarray(data.curve, np.int64)[np.asarray(rows)]]


def local_trend(data: TailData, rows) -> np.ndarray:
    """The sceptic's local baseline: each of ``rows`` predicted by its run's straight line in
    ``(ln step, ln loss)`` through the end of its early part, extended. The line is the least-squares
    one through the run's early points of its last octave (steps from half its last early step on),
    or through its last two early points when that octave holds fewer (a run with one early point:
    that point carried forward). With a ceiling, the line is that of the gap ``ceiling - y``."""
    ceiling, g = data.ceiling, _gap(data)
    cur = np.asarray(g.curve, np.int64)
    x, y, tr = np.asarray(g.x, float), np.asarray(g.y, float), np.asarray(g.train, bool)
    K = len(g.labels)
    xk, _ = _normalise(g)
    idx = np.flatnonzero(tr)
    idx = idx[np.lexsort((-x[idx], cur[idx]))]  # each run's early points, the last first
    first = np.r_[True, cur[idx][1:] != cur[idx][:-1]]
    rank = np.arange(idx.size) - np.maximum.accumulate(np.where(first, np.arange(idx.size), 0))
    idx = idx[(rank < 2) | (x[idx] >= 0.5 * xk[cur[idx]])]
    lx, ly, c = np.log(x[idx]), np.log(y[idx]), cur[idx]
    n, sx, sy = (np.bincount(c, w, minlength=K) for w in (None, lx, ly))
    sxx, sxy = np.bincount(c, lx * lx, minlength=K), np.bincount(c, lx * ly, minlength=K)
    n1 = np.maximum(n, 1)
    den = sxx - sx * sx / n1
    ok = den > 1e-12 * np.maximum(sxx, 1.0)  # one point (or one step): no slope, carried forward
    slope = np.where(ok, (sxy - sx * sy / n1) / np.where(ok, den, 1.0), 0.0)
    icpt = (sy - slope * sx) / n1
    rows = np.asarray(rows)
    out = np.exp(icpt[cur[rows]] + slope[cur[rows]] * np.log(x[rows]))
    return out if ceiling is None else ceiling - out


#: A finished run is followed when its logged steps reach this share of the run's last step to
#: predict (runs logged to 1,930 and 1,970 steps are of one schedule; 23k and 41k are not).
SPAN = 0.9


def nearest_finished(data: TailData, rows, pool=None, with_source: bool = False) -> tuple[np.ndarray | None, dict]:
    """The sceptic's baseline when the table holds finished runs: each run in progress follows the
    finished run nearest to it, shifted in ``ln loss`` to meet the run at its last early step.

    Nearest: in the runs' descriptors when the table has them (each column z-scored across runs,
    after ``ln`` when all its values are positive), else in ``ln loss`` at the run's last early step;
    among the finished runs whose logged steps span the run's, from its last early step to
    :data:`SPAN` of its last step to predict (a shorter run, e.g. of a shorter schedule, bends where
    this one does not; beyond its last step, its last loss). Descriptor columns constant over these
    runs are left out (all constant: by the loss).
    Runs with no such finished run keep their last early value. Returns ``(prediction of rows,
    info)`` (``None`` when the table has no finished run); ``info`` counts the runs that kept their
    last value (``n_without``). With a ceiling, it works on the gap ``ceiling - y``. ``pool``: the
    codes of the runs to follow, each with all its rows (default: the finished runs); a run never
    follows itself (a backtest that holds back the late rows of finished runs). ``with_source``: also
    ``info["_source"]``, the code of the finished run each row follows (-1: none)."""
    done = _finished(data) if pool is None else np.asarray(pool, np.int64)
    if done.size == 0:
        return None, {"reason": "no finished run in the table"}
    ceiling, g = data.ceiling, _gap(data)
    cur = np.asarray(g.curve, np.int64)
    x, ly = np.asarray(g.x, float), np.log(np.asarray(g.y, float))
    lx = np.log(x)
    xk, yk = _normalise(g)
    rows = np.asarray(rows)
    prog = np.unique(cur[rows])
    curves = {int(f): np.flatnonzero(cur == f)[np.argsort(x[cur == f])] for f in done}

    def at(f, lxq):  # the finished run's ln loss at ln steps lxq (its last one beyond its last step)
        i = curves[f]
        return np.interp(lxq, lx[i], ly[i])

    lo = np.array([x[curves[int(f)]].min() for f in done])
    hi = np.array([x[curves[int(f)]].max() for f in done])
    end = pd.Series(x[rows]).groupby(cur[rows]).max().reindex(prog).to_numpy()  # each run's last step to predict
    reach = (lo[None, :] <= xk[prog][:, None]) & (SPAN * end[:, None] <= hi[None, :] * (1 + 1e-12))
    d = None
    if g.descriptors is not None and np.asarray(g.descriptors).size > 0:
        d = pd.DataFrame(np.asarray(g.descriptors, float)).groupby(cur).first()
        d = np.asarray(d.reindex(range(len(g.labels))))
        d = d[:, np.nanstd(d[np.r_[prog, done]], axis=0) > 0]  # a column constant over these runs tells none apart
    by_descriptors = d is not None and d.shape[1] > 0
    if by_descriptors:
        d = np.where((d > 0).all(axis=0), np.log(np.where(d > 0, d, 1.0)), d)
        sd = np.nanstd(d, axis=0)
        d = (d - np.nanmean(d, axis=0)) / np.where(sd > 0, sd, 1.0)
        dist = np.sqrt(((d[prog][:, None, :] - d[done][None, :, :]) ** 2).sum(-1))
    else:
        dist = np.abs(np.stack([at(int(f), np.log(xk[prog])) for f in done], axis=1) - np.log(yk[prog])[:, None])
    dist = np.where(reach & (prog[:, None] != done[None, :]), dist, np.inf)
    pick = {int(k): int(done[j]) for k, j, ok in zip(prog, dist.argmin(axis=1), np.isfinite(dist).any(axis=1)) if ok}
    out = np.log(yk[cur[rows]])  # runs without a finished run: their last early value
    for f in sorted(set(pick.values())):  # one interpolation per finished run used
        sel = np.flatnonzero(np.isin(cur[rows], [k for k, v in pick.items() if v == f]))
        r = rows[sel]
        shift = np.log(yk[cur[r]]) - at(f, np.log(xk[cur[r]]))
        out[sel] = at(f, lx[r]) + shift
    out = np.exp(out)
    info = {"n_without": int(prog.size - len(pick)),
            "nearest_by": "descriptors" if by_descriptors else "ln loss at the run's last early step"}
    if with_source:
        source = np.full(len(g.labels), -1, np.int64)  # per run, then looked up per row
        source[list(pick)] = list(pick.values())
        info["_source"] = source[cur[rows]]
    return (out if ceiling is None else ceiling - out), info


def _nearest_baseline(data: TailData, rows) -> tuple[np.ndarray | None, dict]:
    """:func:`nearest_finished` as a baseline of the report: None, with ``rmsle`` None and the
    reason, when no run in progress has a finished run to follow (each would keep its last early
    value: the ``last_value`` baseline, not to be scored twice under another name)."""
    near, info = nearest_finished(data, rows)
    if near is None or info["n_without"] < np.unique(np.asarray(data.curve)[rows]).size:
        return near, info
    return None, {**info, "rmsle": None, "rmsle_reason": (
        "no run in progress has a finished run whose logged steps span its rows to predict (from its last early "
        f"step to {SPAN:g} x its last step to predict): every run would keep its last early value, which is the "
        "last_value baseline")}


def score_tail(y, mean, lower=None, upper=None, *, ceiling: float | None = None) -> dict:
    """RMSLE (on ``ln L``), MAE and, with an interval, its coverage and ``median_width`` (the median
    of ``ln(upper / lower)``: how sharp it is; 0.1 is about +-5 % of the loss) on the rows with a
    finite truth. With a ``ceiling``, the RMSLE and the width are those of the gap ``ceiling - y``."""
    if ceiling is not None:
        y, mean = ceiling - np.asarray(y, float), ceiling - np.asarray(mean, float)
        if lower is not None:
            lower, upper = ceiling - np.asarray(upper, float), ceiling - np.asarray(lower, float)
    y = np.asarray(y, float)
    ok = np.isfinite(y)
    m = np.asarray(mean, float)[ok]
    yy = y[ok]
    if not yy.size:  # nothing to score (rows to predict without a loss)
        return {"n": 0, "rmsle": None, "mae": None, "coverage": None,
                "coverage_reason": "no row to predict carries a loss"}
    out = {"n": int(ok.sum()), "rmsle": rmsle(yy, m), "mae": float(np.mean(np.abs(m - yy)))}
    if lower is not None:
        lo, hi = np.asarray(lower, float)[ok], np.asarray(upper, float)[ok]
        out["coverage"] = float(np.mean((yy >= lo) & (yy <= hi)))
        if (lo > 0).all():
            out["median_width"] = float(np.median(np.log(hi / lo)))
        else:  # a GP's interval of a gap near 0 (or of a loss) can reach below 0: it has no log width
            out["median_width"] = None
            out["width_reason"] = f"{int((lo <= 0).sum())} interval(s) reach 0 or below: no width in logs"
    else:
        out["coverage"], out["coverage_reason"] = None, "the baseline gives no interval"
    return out


# ----------------------------------------------------------------------------- the hierarchical GP
def extrapolate_gp(key, data: TailData, spec=None, *, level: float = 0.9) -> TailFit:
    """Predict the tail of every run with a hierarchical GP fitted on all runs' early parts at once.

    The runs share strength through their configuration descriptors (``data.descriptors``, e.g.
    parameter count and depth): with the default ``Spec(model="magp_law")`` a saturating power law
    in the descriptors and ``ln(step)`` is fitted to the early parts of all runs together, and the
    descriptor MaGP models each run's residual around it (see
    :mod:`jaxscale.learning_curves.law_gp`); ``"magp_desc"`` drops the law. Each run is one task
    of the GP (one instance). Finished runs (every row in the early part) are fitted too and
    inform the others.

    Args:
      key: PRNG key (restarts and the predictive draws).
      data: :func:`tail_from_frame` with ``descriptor_cols``.
      spec: :class:`jaxscale.learning_curves.Spec` (model, restarts, Adam steps); default
        ``Spec(model="magp_law")`` (10 restarts of 600 Adam steps).
      level: central interval level.

    Returns:
      :class:`TailFit` with the prediction of the tail rows (``mean``, the ``level`` interval of
      the observation, joint ``samples``), ``E`` / ``A`` / ``alpha`` None, ``diagnostics`` the
      optimiser's report (:func:`jaxscale.learning_curves.fit_report`) and ``calibration`` saying
      that the interval is the model's own.

    Raises:
      ValueError: the model needs descriptors and the data has none; the errors of
        :func:`jaxscale.learning_curves.fit` (e.g. a descriptor with one value for all runs).
    """
    from jaxscale.learning_curves import core
    from jaxscale.learning_curves.spec import DESC_MODELS, Spec

    spec = Spec(model="magp_law") if spec is None else spec
    level = check_level(level)
    given, data = data, _gap(data)
    names = [c for role, c in data.columns if role == "descriptor"]
    if spec.model in DESC_MODELS and (data.descriptors is None or not names):
        raise ValueError(f"model {spec.model!r} shares strength across runs through their configuration descriptors: "
                         "give them (tail_from_frame(..., descriptor_cols=[...]); CLI: --descriptor-cols C1,C2), e.g. "
                         "each run's parameter count and depth; without descriptors use the power law")
    tasks = [str(lab) for lab in data.labels]
    if len(set(tasks)) < len(tasks):  # labels that print alike: code the runs instead
        tasks = [f"run {i}" for i in range(len(tasks))]
    cols = dict(given.columns)  # the user's names in the GP's messages (the gap's with a ceiling)
    x_name, y_name = cols.get("x", "x"), cols.get("target", "y")
    if given.ceiling is not None:
        y_name = f"{given.ceiling:g} - {y_name}"
    if len({"task", "instance", x_name, y_name, *names}) < 4 + len(names):
        x_name, y_name = "x", "y"
    frame = pd.DataFrame({"task": np.asarray(tasks, object)[np.asarray(data.curve)], "instance": "run",
                          x_name: np.asarray(data.x, float), y_name: np.asarray(data.y, float)},
                         index=pd.Index(np.asarray(data.row_id)))
    for j, c in enumerate(names):
        frame[c] = np.asarray(data.descriptors, float)[:, j]
    tr = np.asarray(data.train, bool)
    kw = dict(task_col="task", instance_col="instance", x_col=x_name, y_col=y_name, descriptor_cols=tuple(names))
    k_fit, k_pred = jax.random.split(key)
    fit = core.fit(k_fit, core.from_frame(frame[tr], **kw), spec)
    rows = np.flatnonzero(~tr)
    with warnings.catch_warnings():  # every tail row lies beyond its run's training steps: that is the task
        warnings.filterwarnings("ignore", message=".*outside the training data.*")
        # lower ends at or below 0: warned once below, in the table's words (_warn_past_bound)
        warnings.filterwarnings("ignore", message=".*lower ends are 0 or below.*")
        pred = core.predict(fit, frame.iloc[rows].assign(**{y_name: np.nan}), key=k_pred, level=level)
    report = core.fit_report(fit)
    curves = np.unique(np.asarray(data.curve)[rows])
    calibration = {"calibrated": False, "margin": None, "growth": None,
                   "reason": f"{spec.model}: the interval is the GP's own (not calibrated on held-back rows)"}
    warnings.warn(f"{spec.model} extrapolation: the {level:.0%} interval is the GP's own, not calibrated on held-back "
                  "rows; on public runs it covered from 63 % (finished runs in the table) to 100 % (none) of the "
                  "tails. To check it on your runs, mark the late rows of some finished runs as rows to predict "
                  "(CLI: --train-col) and read the coverage", UserWarning, stacklevel=2)
    past = np.asarray(pred.lower) <= 0  # the GP's interval is symmetric in the target, not in its log
    if given.ceiling is not None and past.any():
        warnings.warn(f"{spec.model} extrapolation: {int(past.sum())} of {past.size} upper ends reach the ceiling "
                      f"{given.ceiling:g} (the GP's interval is symmetric in the gap {given.ceiling:g} - y, not in its "
                      "logarithm, so near the bound it passes it); the power law (--model powerlaw) keeps every "
                      "interval below the ceiling", UserWarning, stacklevel=2)
    pred = _from_gap(given.ceiling, pred)
    _warn_past_bound(given, pred, f"{spec.model} extrapolation")
    return TailFit(pred, rows, curves, None, None, None, report, calibration)


def evaluate_tail(key, data: TailData, spec: ExtrapolateSpec = ExtrapolateSpec(), *, model: str = "powerlaw",
                  gp_spec=None):
    """The model's fit and the least-squares baseline on the same rows, scored on the tail rows that carry a loss.

    ``model``: ``"powerlaw"`` (:func:`extrapolate`, sampler settings from ``spec``) or a GP model
    name (:func:`extrapolate_gp` with ``gp_spec``, by default ``Spec()``'s restarts and Adam steps; its
    ``model`` is set to ``model``; at ``spec.level``).

    Returns ``(TailFit, baselines, report)``: ``baselines`` maps ``scipy_power_law`` and
    ``last_value`` to their predictions of the tail rows (``fit.rows``); the report holds
    ``model``, its ``score`` (RMSLE, MAE, coverage; also under ``bayes`` for the power law), the
    ``scipy_power_law`` score, the ``last_value`` score (each run's last early loss carried
    forward, :func:`last_value`), the fit's ``diagnostics``, counts, ``extrapolation``: the
    largest and the median :func:`horizon` of the tail rows, and for data with a ceiling
    ``ceiling`` (its value and what the RMSLE is of: the gap).
    """
    import time

    from jaxscale.learning_curves.spec import Spec

    t0 = time.perf_counter()
    if model == "powerlaw":
        fit = extrapolate(key, data, spec)
    else:
        gp_spec = Spec(model=model) if gp_spec is None else gp_spec._replace(model=model)
        fit = extrapolate_gp(key, data, gp_spec, level=spec.level)
    secs = time.perf_counter() - t0
    base, info = powerlaw_lstsq(data)
    baselines = {"scipy_power_law": base, "last_value": last_value(data, fit.rows),
                 "local_trend": local_trend(data, fit.rows)}
    near, near_info = _nearest_baseline(data, fit.rows)
    if near is not None:
        baselines["nearest_finished_run"] = near
    y = np.asarray(data.y, float)[fit.rows]
    p = fit.prediction
    c = data.ceiling
    sc = score_tail(y, p.mean, p.lower, p.upper, ceiling=c)
    report = {"n_curves": len(data.labels), "n_train": int(np.sum(data.train)), "n_tail": int(len(fit.rows)),
              "level": spec.level, "model": model, "score": sc, **({"bayes": sc} if model == "powerlaw" else {}),
              "scipy_power_law": {**score_tail(y, base, ceiling=c), **info},
              "last_value": score_tail(y, baselines["last_value"], ceiling=c),
              "local_trend": score_tail(y, baselines["local_trend"], ceiling=c),
              **({"nearest_finished_run": {**score_tail(y, near, ceiling=c), **near_info}} if near is not None else
                 {"nearest_finished_run": near_info} if "rmsle" in near_info else {}),
              "diagnostics": fit.diagnostics,
              "converged": fit.diagnostics["converged"], "n_curves_fitted": int(len(fit.curves)),
              "calibration": fit.calibration, "fit_seconds": secs}
    if c is not None:
        report["ceiling"] = {"value": c, "rmsle_of": f"ln({c:g} - {dict(data.columns).get('target', 'y')})"}
    h = horizon(data, fit.rows)
    report["extrapolation"] = {"max": float(h.max()) if h.size else 0.0,
                               "median": float(np.median(h)) if h.size else 0.0, "n_rows": int(h.size),
                               "unit": HORIZON_UNIT}
    return fit, baselines, report
