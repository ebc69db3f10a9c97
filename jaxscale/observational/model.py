r"""The observational law on your own table: ``from_frame -> fit -> predict``.

Observational scaling laws (Ruan, Maddison & Hashimoto 2024) predict a downstream score of a model
from its scores on standard benchmarks. Every step below is fitted on the training rows only:

1. **Imputation.** Each benchmark column is z-scored with the mean and s.d. of its observed
   training cells; missing cells are filled by hard-impute EM with a rank-1 PCA (1000
   iterations), then un-standardised and clipped to ``[0, 1]``.
2. **Principal capabilities.** A PCA with mean-centring only (no scaling) of the imputed scores;
   each component is signed so that its largest-magnitude loading is positive. The first ``k``
   scores ``S`` are the model's principal capabilities.
3. **Law.** :math:`y = b + (1 - b)\,\sigma(\alpha + \beta^\top S)` on the normalised target
   ``y = (raw - lo) / (hi - lo)``, with the floor ``b`` in ``[0, 0.2]`` (``Spec.floor=True``) or
   fixed at 0, by Huber(δ = 1) loss (equal to half the squared error on normalised targets) or
   least squares, L-BFGS from the original code's start (α = 0, β = 0.03, b ≈ 0).
4. **Uncertainty**, optional: ``Spec.bootstrap`` non-parametric bootstrap refits of the law (one
   vmapped damped-Newton program started at the optimum, the refits split over all devices; the
   capability space is held fixed),
   or ``Spec.bayes``: the Bayesian law of :mod:`jaxscale.observational.bayes` (numpyro NUTS,
   censored-normal likelihood, priors on the coefficients and an extrapolation discrepancy).

Table schema (one row per model; see :func:`from_frame`): benchmark accuracies in ``[0, 1]``
(empty = missing, imputed), the target (raw units, inside ``[lo, hi]``), optionally training
FLOPs (any positive unit, ``flops_unit`` FLOPs per unit; empty = unknown), model and family names.

Example:
  >>> import jax, numpy as np, pandas as pd
  >>> from jaxscale import observational as obs
  >>> rng = np.random.default_rng(0)
  >>> ability = rng.normal(size=24)
  >>> df = pd.DataFrame({f"b{j}": 1 / (1 + np.exp(-(ability * (1 + 0.2 * j) + 0.1 * rng.normal(size=24))))
  ...                    for j in range(4)})
  >>> df["target"] = 1 / (1 + np.exp(-(2 * ability - 1)))
  >>> data = obs.from_frame(df, target_col="target", metric_cols=["b0", "b1", "b2", "b3"])
  >>> fit = obs.fit(jax.random.key(0), data, obs.Spec(k=2, floor=False))
  >>> pred = obs.predict(fit, df.head(3))
  >>> pred.mean.shape, bool(np.all(pred.lower < pred.upper))
  ((3,), True)
"""
from __future__ import annotations

import warnings
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from jaxscale._pytree import pytree_dataclass, static_field
from jaxscale._registry import register_moved
from jaxscale.config import warn_if_float32
from jaxscale.data import validate
from jaxscale.infer import minimize_lbfgs, minimize_newton, sharded_vmap
from jaxscale.infer.prediction import Prediction, check_fit, check_key, check_level, warn_extrapolation
from jaxscale.infer.results import few_dof_note, reason_text
from jaxscale.infer.row_keys import row_keys
from jaxscale.laws import sigmoid_link

from .bayes import LIKELIHOODS, PRIORS, TOP_FRAC, PosteriorDraws
from .constants import BASE_METRICS
from .data import FAMILY, FLOPS
from .fit import FLOOR_MAX, SigmoidLaw, fit_law, ln_regressor, objective, predict_np, start_theta, unpack
from .fit import predict as law_predict
from .pca import ImputeState, PCAState, apply_impute, fit_impute, fit_pca, project
from .spec import FLOPS_UNIT, ObsSpec

__all__ = [
    "ObsData",
    "ObsSpec",
    "ObsFit",
    "from_frame",
    "fit",
    "fit_core",
    "predict",
    "take_rows",
    "capabilities",
    "reference_axis",
    "cutoff_rows",
    "top_rows",
    "dedupe",
    "interval_method",
    "extrapolation",
    "kappa_source",
    "imputed_cells",
    "flops_excess",
    "flops_baseline",
    "mean_score_baseline",
    "FLOPS_UNIT",
    "EXTRAPOLATION_UNIT",
]

_MODEL = "Model"
#: How to read :attr:`jaxscale.Prediction.extrapolation` of this pillar (see :func:`extrapolation`).
EXTRAPOLATION_UNIT = "training s.d. of the principal-capability scores outside the training models' box"
#: Plausible total training compute of a language model (FLOPs); outside it the unit is suspect.
_PLAUSIBLE_FLOPS = (1e15, 1e28)


@pytree_dataclass
class ObsData:
    """A benchmark table as arrays (rows = models, row ``i`` = row ``i`` of the frame).

    Attributes:
      scores: ``(n, m)`` benchmark accuracies in ``[0, 1]`` (the table's values over
        ``metric_scale``); NaN = missing cell (imputed).
      y: ``(n,)`` normalised target ``(raw - lo) / (hi - lo)``; NaN = unknown (query rows).
      flops: ``(n,)`` training compute in units of 1e21 FLOPs; NaN = unknown.
      family: ``(n,)`` int index into ``family_labels``; -1 = no family.
      row: ``(n,)`` the frame's index label of each row (file lines for
        :func:`jaxscale.data.read_table`), used in error messages.
      metric_names: the benchmark columns (static), in column order of ``scores``.
      family_labels: family vocabulary (static).
      lo, hi: raw target range used for the normalisation (static).
      metric_scale: full scale of the table's benchmark columns (static): 1 for fractions, 100 for
        percentages.
      flops_unit: FLOPs per unit of the table's FLOPs column (static).
      columns: ``(role, column)`` pairs: ``("target", ...)``, one ``("metric", ...)`` per benchmark,
        and ``("flops" | "model" | "family", ...)`` where present (static).
    """

    scores: jax.Array
    y: jax.Array
    flops: jax.Array
    family: jax.Array
    row: jax.Array
    metric_names: tuple = static_field(default=())
    family_labels: tuple = static_field(default=())
    lo: float = static_field(default=0.0)
    hi: float = static_field(default=1.0)
    flops_unit: float = static_field(default=FLOPS_UNIT)
    columns: tuple = static_field(default=())
    metric_scale: float = static_field(default=1.0)


register_moved(ObsSpec, __name__)  # defined here before it moved to .spec


@pytree_dataclass
class ObsFit:
    """A fitted observational law: the training imputation and PCA, the law, and its uncertainty.

    Attributes:
      impute: frozen imputation transform (z-score and rank-1 PCA of the training rows).
      pca: the training PCA (all components; the law uses the first ``spec.k``).
      law: the fitted :class:`~jaxscale.observational.fit.SigmoidLaw` (raw PC units).
      converged: whether L-BFGS met its tolerance.
      mse_train: training mean squared error (normalised target).
      resid_sd: residual s.d., ``sqrt(SSE / (n - p))`` with ``p = k + 1 (+1 with a floor)``.
      n_train: number of training rows.
      boot: ``spec.bootstrap`` refitted laws (leading axis), or ``None``.
      boot_ok: which refits converged (the others are left out of intervals), or ``None``.
      posterior: :class:`~jaxscale.observational.bayes.PosteriorDraws` when ``spec.bayes``.
      reason: L-BFGS stop code (:func:`jaxscale.infer.reason_text`).
      pc_range: ``(2, k)`` smallest and largest principal-capability score of the training rows
        (the training box that :func:`extrapolation` measures against).
      pc_sd: ``(k,)`` training s.d. of each principal-capability score (the distance's unit).
      flops_range: ``(2,)`` log10 of the smallest and largest training FLOPs (units of 1e21;
        NaN when no training row has FLOPs).
      kappa: growth of the capability error with the extrapolation distance ``d``: the law's
        logit at a query is perturbed by ``N(0, (kappa d)^2)`` in the point and bootstrap
        intervals. Learnt by a backtest inside the training rows (:func:`fit_core`), or left at
        the prior's median when that backtest cannot tell (:func:`kappa_source` says which).
      n_backtest: training rows that played the "future" in that backtest (0: none, ``kappa`` is
        then the prior's median).
      n_backtest_outside: those of them outside the capability box of the rest, the only rows
        whose likelihood depends on ``kappa`` (0: the backtest is flat in ``kappa``, which is then
        the prior's median); ``None`` for fits saved before it was stored. :func:`kappa_source`
        says where ``kappa`` came from.
      spec, metric_names, lo, hi, flops_unit, columns, metric_scale: static, as in :class:`ObsData`
        (a query table is read with the fit's ``metric_scale``).
    """

    impute: ImputeState
    pca: PCAState
    law: SigmoidLaw
    converged: jax.Array
    mse_train: jax.Array
    resid_sd: jax.Array
    n_train: jax.Array
    boot: SigmoidLaw | None = None
    boot_ok: jax.Array | None = None
    posterior: PosteriorDraws | None = None
    reason: jax.Array | None = None
    pc_range: jax.Array | None = None
    pc_sd: jax.Array | None = None
    flops_range: jax.Array | None = None
    kappa: jax.Array | None = None
    n_backtest: jax.Array | None = None
    n_backtest_outside: jax.Array | None = None
    spec: ObsSpec = static_field(default=ObsSpec())
    metric_names: tuple = static_field(default=())
    lo: float = static_field(default=0.0)
    hi: float = static_field(default=1.0)
    flops_unit: float = static_field(default=FLOPS_UNIT)
    columns: tuple = static_field(default=())
    metric_scale: float = static_field(default=1.0)


# ----------------------------------------------------------------------------- from_frame


def _rows(labels) -> str:
    labels = list(labels)
    more = f" (+{len(labels) - 5} more)" if len(labels) > 5 else ""
    return "[" + ", ".join(str(v) for v in labels[:5]) + "]" + more


def _optional_column(df, col, default, role, what):
    """An optional role's column: ``None`` = absent; the bundled default name may be absent."""
    if col is None:
        return None
    if col in df.columns:
        return col
    if col == default:
        return None
    flag = f"--{role.lower()}-col"
    validate.require_columns(df, [col], what + f" ({role} column)",
                             options={col: f"({role}): {flag} NAME ({flag[2:].replace('-', '_')}=...)"})
    return None  # unreachable


def _score_columns(df: pd.DataFrame, skip=(), hi: float = 1.0) -> list:
    """Columns whose values are all numbers in [0, hi] (empty cells allowed, >= 1 value): the likely
    benchmark accuracies of a table, named in the error when the default columns are absent."""
    out = []
    for c in df.columns:
        if c in skip:
            continue
        v = pd.to_numeric(df[c], errors="coerce")
        if v.notna().any() and v.notna().sum() == df[c].notna().sum() and v.min() >= 0 and v.max() <= hi:
            out.append(str(c))
    return out


def from_frame(df: pd.DataFrame, *, target_col: str | None, metric_cols=None, lo: float = 0.0,
               hi: float = 1.0, flops_col: str | None = FLOPS, flops_unit: float = FLOPS_UNIT,
               model_col: str | None = _MODEL, family_col: str | None = FAMILY, metric_scale: float = 1.0,
               what: str = "benchmark table", query: bool = False) -> ObsData:
    """Validate a table (one row per model) and return its arrays. Rows are never dropped,
    merged or reordered.

    Args:
      df: the table; its index labels are used in error messages (file lines for
        :func:`jaxscale.data.read_table`).
      target_col: the score to predict (raw units, inside ``[lo, hi]``; empty cells = unknown,
        NaN in ``y``); ``None`` for a query table without targets.
      metric_cols: benchmark columns (>= 2), accuracies in ``[0, metric_scale]``; empty cells are missing
        (imputed by :func:`fit`). Default: the bundled base-model benchmarks present in ``df``
        (MMLU, ARC-C, HellaSwag, Winograd, TruthfulQA, GSM8K, XWinograd, HumanEval) other than
        the target.
      lo, hi: the target's chance level and maximum: ``y = (raw - lo) / (hi - lo)``.
      metric_scale: the full scale of the benchmark columns: 1 for fractions, 100 for percentages
        (the scores are the values over it).
      flops_col: training compute (> 0; empty = unknown), ``flops_unit`` FLOPs per unit (default
        1e21, the bundled ``FLOPs (1E21)`` column). Optional: the default name may be absent.
      model_col, family_col: model and family names (optional; the defaults ``Model`` and
        ``Model Family`` may be absent). Model names must be unique when a target is given
        (a duplicate would be weighted twice); without a model column, identical rows are refused.
      what: the table's name in error messages.
      query: a table to predict (as :func:`predict` reads one): nothing is weighted, so repeated
        models are predicted, not refused.

    Raises:
      ValueError: naming the column, the count, the first rows and the fix: missing columns,
        non-numeric cells, infinite cells, benchmark values outside ``[0, metric_scale]``, targets outside
        ``[lo, hi]``, non-positive FLOPs, duplicate models.

    Warns (a table to fit, not a ``query``) when its values look like fractions read as
    percentages: every value of a benchmark column at most 1 under ``metric_scale > 1``, or every
    value of the target column in [0, 1] under ``hi > 1``. Every row counts, the rows that will be
    held out included, so that the advice (drop the scale) never contradicts a value of the table.
    """
    if not isinstance(df, pd.DataFrame):
        raise ValueError(f"{what}: expected a pandas DataFrame, got {type(df).__name__}")
    if len(df) == 0:
        raise ValueError(f"{what}: the table has no rows")
    if not (np.isfinite(lo) and np.isfinite(hi) and hi > lo):
        raise ValueError(f"{what}: need finite lo < hi for the target normalisation, got lo={lo}, hi={hi}")
    if not (np.isfinite(metric_scale) and metric_scale > 0):
        raise ValueError(f"{what}: metric_scale must be the positive full scale of the benchmark columns (1 for "
                         f"fractions, 100 for percentages), got {metric_scale}")
    if not (np.isfinite(flops_unit) and flops_unit > 0):
        raise ValueError(f"{what}: flops_unit must be a positive number of FLOPs per unit, got {flops_unit}")
    if metric_cols is None:
        metric_cols = [m for m in BASE_METRICS if m in df.columns and m != target_col]
        if len(metric_cols) < 2:
            skip = (target_col, flops_col, model_col, family_col)
            seen, scale = _score_columns(df, skip, metric_scale), ""
            if len(seen) < 2 and metric_scale == 1:  # percentages?
                seen, scale = _score_columns(df, skip, 100.0), " --metric-scale 100"
            hint = (f"; columns of this table with every value in [0, {100 if scale else metric_scale:g}]: "
                    f"{seen[:12]} (CLI: --metric-cols {','.join(seen)}{scale})" if len(seen) >= 2 else "")
            raise ValueError(f"{what}: found {len(metric_cols)} of the default benchmark columns "
                             f"{list(BASE_METRICS)}; name your benchmark columns with metric_cols=[...] "
                             f"(CLI: --metric-cols a,b,c), at least 2{hint}")
    metric_cols = [str(m) for m in metric_cols]
    if len(metric_cols) < 2:
        raise ValueError(f"{what}: need at least 2 benchmark columns, got {metric_cols}")
    dup = sorted({m for m in metric_cols if metric_cols.count(m) > 1})
    if dup:
        raise ValueError(f"{what}: benchmark column(s) {dup} listed twice in metric_cols")
    validate.require_columns(df, metric_cols, what, options=dict.fromkeys(
        metric_cols, "(benchmark): --metric-cols A,B,C (metric_cols=[...])"))
    if target_col is not None and target_col in metric_cols:
        raise ValueError(f"{what}: target column {target_col!r} is also listed as a benchmark; remove it "
                         "from metric_cols (CLI: --metric-cols)")
    validate.check_numeric(df, metric_cols, what)
    B = df[metric_cols].apply(pd.to_numeric).to_numpy(float)
    full = "[0, 1]" if metric_scale == 1 else f"[0, {metric_scale:g}] (metric_scale)"
    for j, c in enumerate(metric_cols):
        col = B[:, j]
        inf = np.isinf(col)
        if inf.any():
            raise ValueError(f"{what}: benchmark column {c!r} has {int(inf.sum())} infinite value(s) at rows "
                             f"{_rows(df.index[inf])} (first: {float(col[inf][0]):g}); give accuracies in {full} "
                             "and leave unknown cells empty (an empty cell is imputed)")
        with np.errstate(invalid="ignore"):
            bad = np.isfinite(col) & ((col < 0) | (col > metric_scale))
        if bad.any():
            fix = ("give accuracies as fractions, or say the columns are percentages: metric_scale=100 (CLI: "
                   "--metric-scale 100)" if metric_scale == 1 and np.nanmax(np.abs(B)) <= 100 else
                   "give every benchmark column on the scale metric_scale says (CLI: --metric-scale)")
            raise ValueError(f"{what}: benchmark column {c!r} has {int(bad.sum())} value(s) outside {full} at "
                             f"rows {_rows(df.index[bad])} (first: {float(col[bad][0]):g}); {fix}")
    empty = ~np.isfinite(B).any(axis=1)
    if empty.any():
        first = metric_cols[0] if metric_cols[0].isidentifier() else f"`{metric_cols[0]}`"
        raise ValueError(f"{what}: {int(empty.sum())} row(s) have no value in any benchmark column at rows "
                         f"{_rows(df.index[empty])}: no capability can be read from them, so they can be neither "
                         f"fitted nor predicted; give them a benchmark score or leave them out (e.g. CLI: --where "
                         f"\"{first}.notna()\")")
    n = len(df)
    columns = []
    if target_col is not None:
        validate.require_columns(df, [target_col], what + " (target column)",
                                 options={target_col: "(target): --target-col NAME (target_col=...)"})
        validate.check_numeric(df, [target_col], what)
        raw = pd.to_numeric(df[target_col]).to_numpy(float)
        inf = np.isinf(raw)
        if inf.any():
            raise ValueError(f"{what}: target column {target_col!r} has {int(inf.sum())} infinite value(s) at "
                             f"rows {_rows(df.index[inf])}; leave unknown targets empty")
        with np.errstate(invalid="ignore"):
            bad = np.isfinite(raw) & ((raw < lo) | (raw > hi))
        if bad.any():
            raise ValueError(f"{what}: target column {target_col!r} has {int(bad.sum())} value(s) outside "
                             f"[lo, hi] = [{lo:g}, {hi:g}] at rows {_rows(df.index[bad])} (first: "
                             f"{float(raw[bad][0]):g}); set lo / hi to the target's range (CLI: --lo, --hi), "
                             "e.g. hi=100 for percentages")
        y = (raw - lo) / (hi - lo)
        columns.append(("target", target_col))
    else:
        y = np.full(n, np.nan)
    columns += [("metric", m) for m in metric_cols]
    fcol = _optional_column(df, flops_col, FLOPS, "FLOPs", what)
    flops = np.full(n, np.nan)
    if fcol is not None:
        validate.check_numeric(df, [fcol], what)
        C = pd.to_numeric(df[fcol]).to_numpy(float)
        with np.errstate(invalid="ignore"):
            bad = np.isinf(C) | (C <= 0)
        if bad.any():
            raise ValueError(f"{what}: FLOPs column {fcol!r} has {int(bad.sum())} non-positive or infinite "
                             f"value(s) at rows {_rows(df.index[bad])} (first: {float(C[bad][0]):g}); FLOPs enter "
                             "through log10, so give positive values and leave unknown FLOPs empty")
        flops = C * (flops_unit / FLOPS_UNIT)
        columns.append(("flops", fcol))
        _check_flops_unit(C, fcol, flops_unit, what)
    mcol = _optional_column(df, model_col, _MODEL, "model", what)
    if mcol is not None:
        columns.append(("model", mcol))
    famcol = _optional_column(df, family_col, FAMILY, "family", what)
    family = -np.ones(n, np.int32)
    labels = ()
    if famcol is not None:
        names = df[famcol]
        known = names.notna().to_numpy()
        labels = tuple(sorted(set(names[known].astype(str))))
        lookup = {f: i for i, f in enumerate(labels)}
        family = np.array([lookup[str(v)] if k else -1 for v, k in zip(names, known)], np.int32)
        columns.append(("family", famcol))
    if target_col is not None and not query:  # a table that may be fitted: no double-weighted model
        _check_duplicates(df, mcol, metric_cols + [target_col] + ([fcol] if fcol else []), what)
    if not query:  # a query is read on its fit's scales (predict warns about fractions there)
        _warn_scale(B, raw if target_col is not None else None, metric_cols, target_col, metric_scale, hi, what)
    index = df.index
    row = (np.asarray(index, np.int64) if pd.api.types.is_integer_dtype(index) else np.arange(n, dtype=np.int64))
    dev = lambda a: jax.device_put(np.asarray(a))  # noqa: E731  (jnp.asarray would compile a program per shape)
    return ObsData(dev(B / metric_scale), dev(y), dev(flops), dev(family), dev(row), metric_names=tuple(metric_cols),
                   family_labels=labels, lo=float(lo), hi=float(hi), flops_unit=float(flops_unit),
                   columns=tuple(columns), metric_scale=float(metric_scale))


def _warn_scale(B, raw, metric_cols, target_col, metric_scale: float, hi: float, what: str) -> None:
    """Warn when the values of the table look like fractions but are read as percentages: benchmark
    columns whose every value is at most 1 under ``metric_scale > 1``, or a target whose every value
    lies in [0, 1] under ``hi > 1``. Every row given counts (training and held-out rows alike), so
    the advice to drop the scale is given only when every value would fit it (the opposite mix-up,
    percentages read as fractions, is an error of :func:`from_frame`: values outside the range).
    ``B``: the benchmark values as given; ``raw``: the target values as given, or ``None``."""
    n = B.shape[0]
    if metric_scale > 1:
        with np.errstate(invalid="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # an all-empty column: max of nothing
            top = np.nanmax(B, axis=0)
        small = [name for name, t in zip(metric_cols, top) if np.isfinite(t) and t <= 1.0]
        if small:
            every = "every benchmark column" if len(small) == len(metric_cols) else "benchmark column(s)"
            warnings.warn(f"{what}: {every} {small} has no value above 1 on the {n} rows of the table, but "
                          f"metric_scale = {metric_scale:g} (CLI: --metric-scale) reads the columns as scores out "
                          f"of {metric_scale:g}, i.e. at most {100 / metric_scale:.3g} % here: if they hold "
                          "fractions, fit with metric_scale=1 (drop --metric-scale), or multiply them by "
                          f"{metric_scale:g}", UserWarning, stacklevel=3)
    if raw is None:
        return
    raw = raw[np.isfinite(raw)]
    if hi > 1 and raw.size and raw.min() >= 0 and raw.max() <= 1:
        warnings.warn(f"{what}: every one of the {raw.size} values of target column {target_col!r} (every row of the "
                      f"table that has one) lies in [0, 1] (largest {raw.max():.3g}), but hi = {hi:g} (CLI: --hi) "
                      f"reads it on a scale up to {hi:g}: if it holds fractions, fit with hi=1 (drop --hi), else the "
                      f"law is fitted to a target squeezed into [0, {1 / hi:.3g}] of its range", UserWarning,
                      stacklevel=3)


def _check_flops_unit(C, col: str, flops_unit: float, what: str) -> None:
    """Warn when the FLOPs column read in ``flops_unit`` gives implausible training compute."""
    C = C[np.isfinite(C)]
    if not C.size:
        return
    lo, hi = float(C.min()) * flops_unit, float(C.max()) * flops_unit
    if lo >= _PLAUSIBLE_FLOPS[0] and hi <= _PLAUSIBLE_FLOPS[1]:
        return
    hint = ("if the column holds raw FLOPs, pass flops_unit=1 (CLI: --flops-unit 1)" if hi > _PLAUSIBLE_FLOPS[1]
            else "if the column holds FLOPs in units of 1e21 (like the bundled 'FLOPs (1E21)'), pass "
                 "flops_unit=1e21 (CLI: --flops-unit 1e21)")
    warnings.warn(f"{what}: FLOPs column {col!r} read with flops_unit={flops_unit:g} FLOPs per unit (CLI: "
                  f"--flops-unit) spans {lo:.3g} to {hi:.3g} FLOPs, implausible for a trained language model "
                  f"(expected {_PLAUSIBLE_FLOPS[0]:.0e} to {_PLAUSIBLE_FLOPS[1]:.0e}); {hint}. Only the "
                  "cut-off, the FLOPs baseline and the reference axis read the unit.", UserWarning, stacklevel=3)


def _check_duplicates(df: pd.DataFrame, mcol: str | None, keys: list, what: str) -> None:
    """No model may be weighted twice: repeated names are an error; rows identical in every value
    are an error without a model column and a warning under different names."""
    if mcol is not None:
        names = df[mcol]
        dup = (names.duplicated(keep=False) & names.notna()).to_numpy()
        if dup.any():
            raise ValueError(f"{what}: {int(dup.sum())} rows share the same ['{mcol}'] at rows {_rows(df.index[dup])} "
                             "(e.g. one model evaluated twice); a repeated model would be weighted twice. Remove "
                             "the copies, or keep the first row of each (CLI: --dedupe; Python: "
                             "observational.model.dedupe)")
    same = df.duplicated(subset=keys, keep=False).to_numpy()
    if not same.any():
        return
    if mcol is None:
        raise ValueError(f"{what}: {int(same.sum())} rows are identical in {keys} at rows {_rows(df.index[same])} "
                         "and there is no model column to tell them apart; a duplicate would be weighted twice. "
                         "Remove the copies (CLI: --dedupe) or name the models (model_col / --model-col)")
    warnings.warn(f"{what}: rows {_rows(df.index[same])} have identical values in {keys} under different model "
                  f"names (column {mcol!r}); if they are one model (e.g. two precisions or a renamed copy) it is "
                  "weighted twice: remove the copies", UserWarning, stacklevel=3)


def take_rows(data: ObsData, rows) -> ObsData:
    """The rows ``rows`` (boolean mask or integer indices) of ``data``: every array field sliced."""
    rows = np.asarray(rows)
    return jax.tree.map(lambda a: jax.device_put(np.asarray(a)[rows]), data)


# ----------------------------------------------------------------------------- fit


_GH_X, _GH_W = np.polynomial.hermite_e.hermegauss(7)  # quadrature over a standard normal
_GH_W = _GH_W / _GH_W.sum()
#: Grid of log kappa searched by the backtest: the Bayesian law's prior, +-4 prior s.d.
_LOG_KAPPA = PRIORS.log_kappa_mean + PRIORS.log_kappa_sd * np.linspace(-4.0, 4.0, 81)


def _box_excess(S, lo, hi, sd, xp=jnp):
    """Euclidean distance of scores ``S`` (..., k) outside the box ``[lo, hi]`` in units of ``sd``
    (0 inside; distances below 1e-9 are rounding of a training row and count as 0); ``xp=np`` on
    the host."""
    e = xp.maximum((S - hi) / sd, 0.0) + xp.maximum((lo - S) / sd, 0.0)
    r2 = xp.sum(e * e, axis=-1)
    d = xp.where(r2 > 0, xp.sqrt(xp.where(r2 > 0, r2, 1.0)), 0.0)
    return xp.where(d < 1e-9, 0.0, d)


def _censored_logpdf(y, mu, s):
    """log density of ``y`` under ``clip(N(mu, s^2), 0, 1)`` (point masses at the bounds)."""
    inside = -0.5 * ((y - mu) / s) ** 2 - jnp.log(s) - 0.5 * jnp.log(2 * jnp.pi)
    below = y <= 0.0
    t = jnp.where(below, -mu, mu - 1.0) / s
    return jnp.where(below | (y >= 1.0), jax.scipy.special.log_ndtr(t), inside)


def _backtest(theta, S, y0, w, flops, delta, fmax, spec: ObsSpec, sd):
    """How fast the capability error grows outside the training data, learnt inside it.

    The training rows are split by FLOPs (when every one has FLOPs; else by the target) into the
    top ``TOP_FRAC`` (the "future") and the rest; the law is refitted on the rest (damped Newton
    from the full fit), and the future rows' targets are scored under that law with the logit
    perturbed by ``N(0, (kappa d)^2)``, ``d`` = their distance outside the rest's box (in training
    s.d.), plus the rest's residual noise, censored to [0, 1]. ``kappa`` maximises that likelihood
    (Gauss-Hermite quadrature) times the Bayesian law's prior ``log kappa ~ N(log 0.25, 0.5)``
    over a grid. Returns ``(kappa, n_future, n_outside)``, ``n_outside`` the future rows outside the
    rest's box (``d > 0``): without future rows, or with none outside, the likelihood does not
    depend on ``kappa`` and ``kappa`` is the prior median.
    """
    dtype = S.dtype
    p = S.shape[1] + 1 + (fmax > 0).astype(dtype)
    n = jnp.sum(w)
    all_flops = jnp.all((w == 0) | jnp.isfinite(flops))
    order = jnp.where(all_flops, jnp.where(jnp.isfinite(flops), flops, 0.0), y0)
    rank = jnp.argsort(jnp.argsort(-jnp.where(w > 0, order, -jnp.inf), stable=True), stable=True)
    n_top = jnp.clip(jnp.ceil(TOP_FRAC * n), 0.0, jnp.maximum(n - (p + 1.0), 0.0))
    top = (w > 0) & (rank < n_top)
    lower = jnp.where((w > 0) & ~top, 1.0, 0.0).astype(dtype)
    rl = minimize_newton(objective, theta, S, y0, lower, delta, fmax, steps=spec.bootstrap_steps, tol=1e-9)
    law = unpack(rl.params, fmax)
    z = law.intercept + S @ law.slopes
    r = (sigmoid_link(z, 1.0, 0.0, floor=law.floor) - y0) * lower
    s_l = jnp.maximum(jnp.sqrt(jnp.sum(r * r) / jnp.maximum(jnp.sum(lower) - p, 1.0)), 1e-6)
    m = lower[:, None] > 0
    lo = jnp.min(jnp.where(m, S, jnp.inf), axis=0)
    hi = jnp.max(jnp.where(m, S, -jnp.inf), axis=0)
    d = _box_excess(S, lo, hi, sd)
    kap = jnp.exp(jnp.asarray(_LOG_KAPPA, dtype))
    zq = z[None, :, None] + kap[:, None, None] * d[None, :, None] * jnp.asarray(_GH_X, dtype)
    mu = sigmoid_link(zq, 1.0, 0.0, floor=law.floor)
    lp = jax.scipy.special.logsumexp(_censored_logpdf(y0[None, :, None], mu, s_l) + jnp.log(jnp.asarray(_GH_W, dtype)),
                                     axis=-1)
    prior = -0.5 * ((jnp.asarray(_LOG_KAPPA, dtype) - PRIORS.log_kappa_mean) / PRIORS.log_kappa_sd) ** 2
    score = jnp.sum(jnp.where(top[None, :], lp, 0.0), axis=1) + prior
    return kap[jnp.argmax(score)], n_top, jnp.sum(top & (d > 0))


def _core(key, data: ObsData, spec: ObsSpec):
    """Impute + PCA + law (+ bootstrap refits) over arrays; rows with NaN ``y`` get zero weight
    everywhere (padding / unlabelled rows). Returns ``(ObsFit, S)`` with the training PC scores."""
    B = jnp.asarray(data.scores)
    dtype = B.dtype if jnp.issubdtype(B.dtype, jnp.floating) else jnp.result_type(float)
    B = B.astype(dtype)
    y = jnp.asarray(data.y, dtype)
    obs = jnp.isfinite(B)
    w = jnp.isfinite(y).astype(dtype)
    y0 = jnp.where(w > 0, y, 0.0)
    Bi, imp = fit_impute(jnp.where(obs, B, 0.0), obs, rows=w, n_iter=spec.impute_iters)
    pca = fit_pca(Bi, B.shape[1], rows=w)
    S = project(pca, Bi, spec.k)
    fmax = jnp.asarray(FLOOR_MAX if spec.floor else 0.0, dtype)
    delta = jnp.asarray(1.0 if spec.loss == "huber" else jnp.inf, dtype)
    res = minimize_lbfgs(objective, start_theta(spec.k, dtype), S, y0, w, delta, fmax,
                         max_steps=spec.max_steps, tol=1e-12, ftol=1e-15)
    law = unpack(res.params, fmax)
    r = (law_predict(law, S) - y0) * w
    sse, n = jnp.sum(r * r), jnp.sum(w)
    p = spec.k + 1 + int(spec.floor)
    boot = boot_ok = None
    if spec.bootstrap:
        N = B.shape[0]
        # training rows only, by inverse CDF (the first row whose cumulative weight exceeds u has
        # weight > 0): O(B N) memory, where a categorical over N logits draws B x N x N Gumbels
        cum = jnp.cumsum(w)
        draws = jnp.searchsorted(cum, jax.random.uniform(key, (spec.bootstrap, N), dtype) * cum[-1], side="right")
        take = (jnp.arange(N) < n).astype(dtype)  # n_train draws with replacement per refit
        W = jax.vmap(lambda d: jnp.zeros(N, dtype).at[d].add(take))(draws)
        rb = sharded_vmap(lambda wb: minimize_newton(objective, res.params, S, y0, wb, delta, fmax,  # over devices
                                                     steps=spec.bootstrap_steps, tol=1e-9), W)
        boot = jax.vmap(lambda t: unpack(t, fmax))(rb.params)
        boot_ok = rb.converged
    # the training box of the capability scores and the training FLOPs range (extrapolation)
    on = w[:, None] > 0
    pc_range = jnp.stack([jnp.min(jnp.where(on, S, jnp.inf), axis=0), jnp.max(jnp.where(on, S, -jnp.inf), axis=0)])
    mean = jnp.sum(w[:, None] * S, axis=0) / n
    pc_sd = jnp.sqrt(jnp.sum(w[:, None] * (S - mean) ** 2, axis=0) / n)
    flops = jnp.asarray(data.flops, dtype)
    has_c = (w > 0) & jnp.isfinite(flops) & (flops > 0)
    lc = jnp.log10(jnp.where(has_c, flops, 1.0))
    flops_range = jnp.where(jnp.any(has_c), jnp.stack([jnp.min(jnp.where(has_c, lc, jnp.inf)),
                                                       jnp.max(jnp.where(has_c, lc, -jnp.inf))]), jnp.nan)
    kappa, n_top, n_out = _backtest(res.params, S, y0, w, flops, delta, fmax, spec, jnp.where(pc_sd > 0, pc_sd, 1.0))
    out = ObsFit(imp, pca, law, res.converged, sse / n, jnp.sqrt(sse / jnp.maximum(n - p, 1.0)),
                 n.astype(jnp.int32), boot=boot, boot_ok=boot_ok, posterior=None, reason=res.reason,
                 pc_range=pc_range, pc_sd=pc_sd, flops_range=flops_range, kappa=kappa,
                 n_backtest=n_top.astype(jnp.int32), n_backtest_outside=n_out.astype(jnp.int32), spec=spec,
                 metric_names=data.metric_names,
                 lo=data.lo, hi=data.hi, flops_unit=data.flops_unit, columns=data.columns,
                 metric_scale=data.metric_scale)
    return out, S


def fit_core(key, data: ObsData, spec: ObsSpec = ObsSpec()) -> ObsFit:
    """The numerical core of :func:`fit` over arrays: imputation, PCA, the law by L-BFGS, and
    (``spec.bootstrap > 0``) the bootstrap refits drawn with ``key``. Pure JAX: jit it with
    ``spec`` static, or ``jax.vmap`` it over keys or over same-shaped datasets. No input checks:
    rows with a NaN target are ignored (weight 0). The Bayesian stage (``spec.bayes``) is not
    part of it: it runs in :func:`fit` (host-driven NUTS with diagnostics).
    """
    return _core(key, data, spec)[0]


_core_jit = jax.jit(_core, static_argnames=("spec",))


def _pad_to(n: int) -> int:
    return max(128, -(-n // 64) * 64)


def _pad(data: ObsData, npad: int) -> ObsData:
    """Append rows with no target and no scores (zero weight in :func:`_core`): tables of similar
    size then share one compiled program."""
    extra = npad - data.y.shape[0]
    if extra <= 0:
        return data

    def pad(a, fill):
        a = np.asarray(a)
        return jax.device_put(np.concatenate([a, np.full((extra,) + a.shape[1:], fill, a.dtype)]))

    return data.replace(scores=pad(data.scores, np.nan), y=pad(data.y, np.nan), flops=pad(data.flops, np.nan),
                        family=pad(data.family, -1), row=pad(data.row, -1))


def _check_spec(spec: ObsSpec, m: int) -> None:
    if not isinstance(spec, ObsSpec):
        raise ValueError(f"spec must be an observational.Spec, got {type(spec).__name__}")
    if not 1 <= spec.k <= m:
        raise ValueError(f"Spec.k = {spec.k} principal capabilities, but the table has {m} benchmark "
                         f"columns; choose 1 <= k <= {m} (CLI: --k)")
    if spec.loss not in ("huber", "ols"):
        raise ValueError(f"Spec.loss must be 'huber' or 'ols', got {spec.loss!r}")
    if spec.bootstrap and spec.bootstrap < 10:
        raise ValueError(f"Spec.bootstrap must be 0 or >= 10 refits, got {spec.bootstrap} (CLI: --bootstrap)")
    if spec.likelihood not in LIKELIHOODS:
        raise ValueError(f"Spec.likelihood must be one of {LIKELIHOODS}, got {spec.likelihood!r}")
    if spec.bayes and spec.likelihood in ("binomial", "betabinomial") and spec.n_items <= 0:
        raise ValueError(f"likelihood {spec.likelihood!r} needs the target's item count: set Spec.n_items, "
                         "or use likelihood 'extrap'")


def _check_training(data: ObsData, spec: ObsSpec) -> int:
    """Host-side checks of the training rows; returns the number of imputed cells."""
    if not isinstance(data, ObsData):
        raise ValueError(f"fit: expected observational.Data (from from_frame), got {type(data).__name__}")
    y = np.asarray(data.y, float)
    B = np.asarray(data.scores, float)
    rows = np.asarray(data.row)
    _check_spec(spec, B.shape[1])
    if y.size == 0:
        raise ValueError("fit: no training rows; move the cut-off or the hold-out (CLI: --cutoff / --holdout) "
                         "so that some rows are fitted")
    miss = ~np.isfinite(y)
    if miss.all():
        raise ValueError("fit: no row has a target; build the data with from_frame(df, target_col=...)")
    target = dict(data.columns).get("target", "target")
    if miss.any():
        name = validate._where_name(str(target))
        raise ValueError(f"fit: {int(miss.sum())} row(s) have no target at rows {_rows(rows[miss])} (target column "
                         f"{target!r} is empty there); fit needs a target on every training row. Leave them out: "
                         f"CLI --where \"{name}.notna()\" (Python: keep the rows with one, "
                         f"df[df[{target!r}].notna()] before from_frame, or take_rows(data, np.isfinite(data.y))); "
                         f"or, to predict their target, hold them out (CLI: --holdout \"{name}.isna()\", joined "
                         "with | to a hold-out of your own)")
    scale = data.hi - data.lo
    if np.ptp(y) <= 1e-12:
        raise ValueError(f"fit: target column {target!r} is constant ({data.lo + scale * y[0]:g}) on the {len(y)} "
                         "training rows: every training model scores the same, so no law can be fitted (a "
                         "least-squares fit would return a meaningless curve with a near-zero error). Choose a "
                         "target on which the training models differ, or move the split (CLI: --cutoff / "
                         "--holdout) so that the training rows include models that score differently")
    at_lo, at_hi = y <= 1e-12, y >= 1.0 - 1e-12
    if np.all(at_lo | at_hi):
        raise ValueError(f"fit: every one of the {len(y)} training targets of column {target!r} lies at a bound of "
                         f"[lo, hi] = [{data.lo:g}, {data.hi:g}] ({int(at_lo.sum())} at lo, {int(at_hi.sum())} at "
                         "hi, e.g. rows " + _rows(rows[at_hi][:3].tolist() + rows[at_lo][:2].tolist()) + "): pass / "
                         "fail targets make the sigmoid run off to an infinite slope. Give the target as a "
                         "score between lo and hi (e.g. the fraction of items solved), or set lo / hi to its "
                         "real range (CLI: --lo, --hi)")
    n_par = spec.k + 1 + int(spec.floor)
    if len(y) < n_par + 1:
        raise ValueError(f"fit: {len(y)} training rows for a law with {n_par} parameters (k = {spec.k}"
                         f"{', floor' if spec.floor else ''}); need at least {n_par + 1}: add models, "
                         "lower k, or move the cut-off (CLI: --cutoff / --holdout)")
    obs = np.isfinite(B)
    empty = ~obs.any(axis=1)
    if empty.any():
        raise ValueError(f"fit: {int(empty.sum())} row(s) have no benchmark score at all at rows "
                         f"{_rows(rows[empty])}; give at least one benchmark per model")
    for j, name in enumerate(data.metric_names):
        v = B[obs[:, j], j]
        if v.size < 2:
            raise ValueError(f"fit: benchmark column {name!r} has {v.size} observed value(s) on the "
                             f"{len(y)} training rows; need >= 2 to impute and standardise it. Drop it "
                             "from metric_cols (CLI: --metric-cols)")
        if np.ptp(v) <= 1e-12 * max(1.0, float(np.abs(v).max())):
            raise ValueError(f"fit: benchmark column {name!r} is constant ({v[0]:g}) on the {v.size} "
                             "training rows that have it; it carries no information and cannot be "
                             "standardised. Drop it from metric_cols (CLI: --metric-cols)")
    return int((~obs).sum())


def _bayes_stage(key, fit: ObsFit, S, y, flops, spec: ObsSpec) -> PosteriorDraws:
    """NUTS for the law on the training PC scores (started at the point fit); returns the draws."""
    from .bayes import stack_tasks
    from .bayes_nuts import fit_bayes_batched

    class _Design(NamedTuple):
        S_train: np.ndarray
        y_train: np.ndarray

    # the backtest's "future": the largest-FLOPs training models (else the best-scoring ones)
    order = flops if np.all(np.isfinite(flops)) else y
    bd = stack_tasks([_Design(S, y)], [spec.k], [spec.floor], bounds=[(0.0, 1.0)],
                     n_items=[spec.n_items], order=[order])
    bf = fit_bayes_batched(key, bd, points=[fit.law], s0=[max(float(np.sqrt(fit.mse_train)), 1e-3)],
                           likelihood=spec.likelihood, num_warmup=spec.num_warmup,
                           num_samples=spec.num_samples, num_chains=spec.num_chains,
                           what="observational fit (Bayesian law)")[0]
    return bf.draws()


def fit(key, data: ObsData, spec: ObsSpec = ObsSpec()) -> ObsFit:
    """Fit the observational law on the rows of ``data`` (every row needs a target).

    Checks the inputs (a target on every row, enough rows for ``spec.k``, each benchmark observed
    at least twice and not constant), warns with the count of imputed cells (values that look like
    fractions read as percentages are warned about by :func:`from_frame`, which sees every row of
    the table, held-out rows included), then runs :func:`fit_core` (rows padded to a bucket so
    tables of similar size share one compiled program) and, with ``spec.bayes``, NUTS started at
    the point fit (the likelihood's backtest holds out the largest-FLOPs quarter of the training
    rows when every row has FLOPs, else the best-scoring quarter). A fit with too few residual
    degrees of freedom for its parameters (:func:`jaxscale.infer.results.few_dof_note`) is warned
    about: its residual s.d. is poorly known.

    Args:
      key: ``jax.random`` key (bootstrap resamples and NUTS; unused by a plain point fit).
      data: training rows (:func:`from_frame`, :func:`take_rows`).
      spec: :class:`ObsSpec`.

    Returns:
      :class:`ObsFit`.
    """
    check_key(key, "observational fit: key")
    warn_if_float32("observational fit")
    n_imp = _check_training(data, spec)
    if n_imp:
        warnings.warn(f"fit: imputed {n_imp} missing benchmark cell(s) of the {data.y.shape[0]} training rows "
                      "(rank-1 PCA hard-impute on the training rows)", RuntimeWarning, stacklevel=2)
    k_core, k_bayes = jax.random.split(key)
    n = int(data.y.shape[0])
    # names and labels are static (part of the compiled program's cache key): fit without them and
    # put them back, so that tables of similar size share one program whatever their column names
    bare = ObsData(data.scores, data.y, data.flops, data.family, data.row)
    out, S = _core_jit(k_core, _pad(bare, _pad_to(n)), spec)
    out = out.replace(metric_names=data.metric_names, lo=data.lo, hi=data.hi, flops_unit=data.flops_unit,
                      columns=data.columns, metric_scale=data.metric_scale)
    _check_result(out, spec)
    _warn_few_dof(out, spec, n)
    if not bool(out.converged):
        warnings.warn(f"fit: L-BFGS did not converge ({reason_text(out.reason)} after at most {spec.max_steps} "
                      "steps); the law may be a poor optimum (a steep sigmoid?): raise Spec.max_steps (CLI: "
                      "--max-steps), lower k, or check the fit", RuntimeWarning, stacklevel=2)
    if spec.bayes:
        post = _bayes_stage(k_bayes, out, np.asarray(S)[:n], np.asarray(data.y, float),
                            np.asarray(data.flops, float), spec)
        out = out.replace(posterior=post)
    return out


def _warn_few_dof(out: ObsFit, spec: ObsSpec, n: int) -> None:
    """Warn when the training rows leave too few residual degrees of freedom for the law's
    parameters (see :func:`jaxscale.infer.results.few_dof_note`); the normal interval is then
    also narrower than a Student-t one."""
    p = spec.k + 1 + int(spec.floor)
    few = few_dof_note(n, p, float(out.resid_sd), "on the normalised target")
    if few:
        warnings.warn(f"fit: {n} training rows for a law with {p} parameters (k = {spec.k}"
                      f"{', floor' if spec.floor else ''}) {few}. Add models, lower k (Spec.k; CLI: --k), or drop "
                      "the floor (Spec.floor=False; CLI: --link plain)", UserWarning, stacklevel=3)


def _check_result(out: ObsFit, spec: ObsSpec) -> None:
    """Host-side checks after the compiled core: every principal capability of the law varies on
    the training rows, and the law's parameters and residual scale are finite."""
    ratio = np.asarray(out.pca.explained_variance_ratio, float)
    rank = int(np.sum(ratio > 1e-10))
    if rank < spec.k:
        raise ValueError(f"fit: principal capability {rank + 1} has no variance on the training rows: the "
                         f"{len(out.metric_names)} benchmark columns {list(out.metric_names)} span only {rank} "
                         f"dimension(s) there (identical or proportional columns?), so the law's coefficients on "
                         f"capabilities {rank + 1}..{spec.k} are not identified. Lower k to {max(rank, 1)} "
                         "(CLI: --k) or add benchmarks that measure something else")
    law = out.law
    bad = [name for name, v in (("intercept", law.intercept), ("slopes", law.slopes), ("floor", law.floor),
                                ("resid_sd", out.resid_sd)) if not np.all(np.isfinite(np.asarray(v, float)))]
    if bad:
        raise ValueError(f"fit: the compiled fit returned non-finite {', '.join(bad)} (L-BFGS stop: "
                         f"{reason_text(out.reason) if out.reason is not None else 'unknown'}); check the "
                         "table for extreme values, lower k, or use the least-squares loss (Spec.loss='ols')")


# ----------------------------------------------------------------------------- predict


@partial(jax.jit, static_argnames=("k", "n_iter"))
def _transform(imp, pca, B, obs, k, n_iter):
    Bi = apply_impute(imp, jnp.where(obs, B, 0.0), obs, n_iter=n_iter)
    return project(pca, Bi, k)


def _as_data(fit: ObsFit, query) -> ObsData:
    if isinstance(query, ObsData):
        return query
    if not isinstance(query, pd.DataFrame):
        raise ValueError(f"predict: query must be observational.Data or a DataFrame, got {type(query).__name__}")
    cols = dict(fit.columns)
    target = cols.get("target")
    data = from_frame(query, target_col=target if target in query.columns else None,
                      metric_cols=list(fit.metric_names), lo=fit.lo, hi=fit.hi, metric_scale=fit.metric_scale,
                      flops_col=cols["flops"] if cols.get("flops") in query.columns else None,
                      flops_unit=fit.flops_unit,
                      model_col=cols["model"] if cols.get("model") in query.columns else None,
                      family_col=cols["family"] if cols.get("family") in query.columns else None,
                      what="query table", query=True)
    if fit.metric_scale > 1 and np.nanmax(np.asarray(data.scores)) * fit.metric_scale <= 1:
        warnings.warn(f"predict: every benchmark value of the query table is at most 1, but the model reads its "
                      f"benchmark columns on the scale of its training table (metric_scale = {fit.metric_scale:g}, "
                      f"e.g. percentages): if the query holds fractions, multiply them by {fit.metric_scale:g}",
                      UserWarning, stacklevel=3)
    return data


def capabilities(fit: ObsFit, query) -> np.ndarray:
    """Principal-capability scores ``S`` (n, k) of the query rows (a Data or a DataFrame), from the
    training imputation and PCA (missing cells filled by the frozen rank-1 transform)."""
    data = _as_data(fit, query)
    if tuple(data.metric_names) != tuple(fit.metric_names):
        raise ValueError(f"predict: the query's benchmark columns {list(data.metric_names)} differ from the "
                         f"fit's {list(fit.metric_names)}")
    B = np.asarray(data.scores, float)
    obs = np.isfinite(B)
    empty = ~obs.any(axis=1)
    if empty.any():
        raise ValueError(f"predict: {int(empty.sum())} query row(s) have no benchmark score at all at rows "
                         f"{_rows(np.asarray(data.row)[empty])}; give at least one benchmark per model")
    n = B.shape[0]
    npad = _pad_to(n)
    Bp = np.zeros((npad, B.shape[1]))
    Bp[:n] = np.where(obs, B, 0.0)
    op = np.ones((npad, B.shape[1]), bool)
    op[:n] = obs
    S = _transform(fit.impute, fit.pca, jax.device_put(Bp), jax.device_put(op), fit.spec.k, fit.spec.impute_iters)
    return np.asarray(S)[:n]


def imputed_cells(fit: ObsFit, query) -> np.ndarray:
    """``(n, m)`` boolean mask of the query's benchmark cells (columns ``fit.metric_names``) that
    :func:`predict` fills in from the training imputation because they are empty. Count them per
    row with ``.sum(axis=1)`` (the ``n_imputed`` column of ``obs predict --predictions``)."""
    return ~np.isfinite(np.asarray(_as_data(fit, query).scores, float))


def _warn_imputed(fit: ObsFit, data: ObsData, miss, rows=None, what: str = "observational predict",
                  stacklevel: int = 4) -> None:
    """One warning naming the rows (``rows``: a mask of the rows to report, default all) and the
    benchmark columns whose empty cells the prediction imputed, with the count and the fix."""
    miss = np.asarray(miss, bool)
    total = miss.shape[0]
    if rows is not None:
        miss = miss & np.asarray(rows, bool)[:, None]
        total = int(np.sum(rows))
    hit = miss.any(axis=1)
    if not hit.any():
        return
    per_col = {name: int(c) for name, c in zip(fit.metric_names, miss.sum(axis=0)) if c}
    warnings.warn(f"{what}: {int(miss.sum())} empty benchmark cell(s) in {int(hit.sum())} of the {total} rows "
                  f"were imputed from the training rows (rank-1 PCA) at rows {_rows(np.asarray(data.row)[hit])}, "
                  f"cells per column {per_col}. An imputed score can be far from the model's real one (most of all "
                  "for a model unlike the training models), the prediction moves with it, and neither its "
                  "interval nor its extrapolation distance (read on the imputed scores) allows for that: give "
                  "the missing value(s), or refit without the benchmark (metric_cols; CLI: --metric-cols)",
                  UserWarning, stacklevel=stacklevel)


def interval_method(fit: ObsFit) -> str:
    """Where :func:`predict`'s intervals come from for this fit (a short phrase)."""
    if fit.posterior is not None:
        return f"Bayesian posterior predictive ({fit.spec.likelihood} likelihood)"
    if fit.boot is not None:
        return "bootstrap refits of the law plus residual noise"
    return "residual noise of the point fit (no parameter uncertainty)"


def extrapolation(fit: ObsFit, query) -> np.ndarray | None:
    """Distance of each query model outside the training data: how far its principal-capability
    scores lie outside the box spanned by the training models, in units of the training s.d. of
    each score (the Euclidean norm of the per-capability excess beyond the smallest or largest
    training score, each divided by that capability's training s.d.; 0 inside the box, e.g. 1 for
    a model one s.d. above the most capable training model on one capability).

    This is the distance the Bayesian ``"extrap"`` likelihood scales its discrepancy with, and the
    one the point and bootstrap intervals widen with (``ObsFit.kappa``). ``None`` for fits saved
    before the box was stored.
    """
    if fit.pc_range is None or fit.pc_sd is None:
        return None
    S = query if isinstance(query, np.ndarray) else capabilities(fit, query)
    sd = np.asarray(fit.pc_sd, float)
    rng = np.asarray(fit.pc_range, float)
    return _box_excess(np.asarray(S, float), rng[0], rng[1], np.where(sd > 0, sd, 1.0), xp=np)


def flops_excess(fit: ObsFit, data: ObsData) -> np.ndarray:
    """Decades of training compute beyond the largest training model, per row of ``data`` (0 at or
    below it; NaN where the row's FLOPs or every training row's FLOPs are unknown)."""
    top = np.nan if fit.flops_range is None else float(np.asarray(fit.flops_range)[1])
    C = np.asarray(data.flops, float)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.maximum(np.log10(C) - top, 0.0)


def _mixture_interval(z, floor, s, spread, level: float, n_nodes: int = 256):
    """Central ``level`` interval of ``clip(floor + (1 - floor) σ(z + spread ε) + s η, 0, 1)``,
    ε, η ~ N(0, 1) independent, per row: the mixture over ε (``n_nodes`` equal-mass quantile nodes)
    of normals, its quantiles found by bisection on the mixture CDF. With ``spread = 0`` it is the
    normal interval ``μ ± z_level s``."""
    from scipy.special import expit, ndtr, ndtri

    eps = ndtri((np.arange(n_nodes) + 0.5) / n_nodes)
    mu = floor + (1.0 - floor) * expit(np.asarray(z, float)[:, None] + np.asarray(spread, float)[:, None] * eps)
    out = []
    for q in ((1 - level) / 2, (1 + level) / 2):
        a, b = mu.min(axis=1) - 10 * s, mu.max(axis=1) + 10 * s
        for _ in range(80):  # bisection steps (vectorised over rows)
            mid = 0.5 * (a + b)
            below = ndtr((mid[:, None] - mu) / s).mean(axis=1) < q
            a, b = np.where(below, mid, a), np.where(below, b, mid)
        out.append(np.clip(0.5 * (a + b), 0.0, 1.0))
    return out[0], out[1]


def kappa_source(fit: ObsFit) -> str | None:
    """Where ``fit.kappa`` came from, in words: the backtest (naming its rows), or the prior's
    median when the backtest had no rows, none of its rows lay outside the rest's capability box
    (its likelihood is then flat in ``kappa``), or it left ``kappa`` at the prior's median (the
    centre of the searched grid). ``None`` for fits saved before the backtest was stored."""
    if fit.kappa is None:
        return None
    n = 0 if fit.n_backtest is None else int(fit.n_backtest)
    out = None if fit.n_backtest_outside is None else int(fit.n_backtest_outside)
    if n == 0:
        return "prior median: too few training rows for the backtest"
    if out == 0:
        return (f"prior median: the backtest of {n} training rows did not move it (none of them lies outside the "
                "capability box of the other training rows, so their likelihood does not depend on kappa)")
    step = float(_LOG_KAPPA[1] - _LOG_KAPPA[0])
    where = "" if out is None else f" ({out} of them outside the capability box of the others)"
    if abs(float(np.log(float(fit.kappa))) - PRIORS.log_kappa_mean) < step / 2:
        return (f"prior median: the backtest of {n} training rows{where} did not move it (their likelihood is too "
                "flat in kappa to outweigh the prior)")
    return f"backtest of {n} training rows{where}"


def _warn_far(fit: ObsFit, dist, data: ObsData) -> None:
    """One warning for queries outside the training data: capability distance and FLOPs ratio."""
    beyond = flops_excess(fit, data)
    known = np.isfinite(beyond)
    n_far_c = int(np.sum(beyond[known] > 1e-12))
    flops = ""
    if n_far_c:
        worst = float(np.max(beyond[known]))
        flops = (f"; {n_far_c} of the {len(beyond)} queries have FLOPs beyond the largest training model, up to "
                 f"{10**worst:,.0f}x ({worst:.2g} decades)")
    width = ""
    if fit.kappa is not None and fit.posterior is None:
        width = (f"the interval widens with the distance (logit noise kappa = {float(fit.kappa):.3g} per s.d., "
                 f"source: {kappa_source(fit)}), but a law far past its bend stays confident")
    if dist is not None and np.any(np.asarray(dist) > 0):
        unit = EXTRAPOLATION_UNIT + flops + (f"; {width}" if width else "")
        warn_extrapolation("observational predict", dist, unit, threshold=0.0, stacklevel=4)
    elif n_far_c:
        warnings.warn(f"observational predict: {n_far_c} of {len(beyond)} queries have training FLOPs beyond the "
                      f"largest training model (up to {10**float(np.max(beyond[known])):,.3g}x) although their "
                      "capability scores lie inside the training box; the law reads only the capabilities, but "
                      "check such models", UserWarning, stacklevel=4)


#: Fewest predictive draws of a bootstrap fit: its converged refits are used in turn, each draw with
#: its own noise, so the interval's quantiles do not rest on a few dozen draws.
MIN_DRAWS = 1000
#: Most predictive values (draws x rows) held at once; a longer query gets fewer turns of the refits.
MAX_DRAW_CELLS = 20_000_000


def predict(fit: ObsFit, query, *, key=None, level: float = 0.9, warn_imputed: bool = True) -> Prediction:
    """Predict the target (raw units, ``lo + (hi - lo) * y``) of the query models.

    The query rows are imputed and projected with the training transform, then:

    * fit with ``spec.bayes``: ``mean`` is the law at the posterior mode (MAP) and the interval is
      the central ``level`` interval of the posterior predictive (parameter uncertainty, noise and
      the extrapolation discrepancy of models outside the training rows' capability box);
      ``samples`` holds the draws;
    * fit with ``spec.bootstrap``: ``mean`` is the point fit; the interval comes from draws of the
      converged bootstrap refits, taken in turn until there are at least :data:`MIN_DRAWS` (fewer
      when draws x rows would pass :data:`MAX_DRAW_CELLS`), each the refit's curve at the logit
      perturbed by ``N(0, (kappa d)^2)`` (``d`` = :func:`extrapolation`, ``kappa`` =
      ``fit.kappa``), plus normal residual noise
      (``resid_sd``), censored to the target's range; ``samples`` holds these draws;
    * otherwise: the point fit's interval from the same predictive without parameter
      uncertainty: the law at the perturbed logit plus residual noise, censored to the range
      (computed exactly, no draws). Inside the training box (``d = 0``) it is the point fit ±
      the normal quantile times ``resid_sd``.

    ``extrapolation`` holds :func:`extrapolation` (0 inside the training box); queries outside it
    are warned about once, with the worst distance and, where FLOPs are known, how many times the
    largest training model's compute they reach.

    Empty benchmark cells of the query are imputed with the training transform, and warned about
    once (rows, columns, count; ``warn_imputed=False`` silences it): an imputed score can be far
    off, and neither the prediction's interval nor its extrapolation distance allows for that
    (:func:`imputed_cells` gives the mask).

    Args:
      fit: :class:`ObsFit`.
      query: :class:`ObsData` or a DataFrame with the fit's benchmark columns (target optional).
      key: ``jax.random`` key; required for Bayesian and bootstrap fits (their draws).
      level: central interval level in (0, 1).
      warn_imputed: warn when query cells are imputed.

    Returns:
      :class:`jaxscale.Prediction` (``mean``, ``lower``, ``upper`` of shape (n,), ``samples``
      (S, n) or ``None``, ``extrapolation`` (n,)).
    """
    check_fit(fit, ObsFit, "jaxscale.observational")
    key = check_key(key, "observational predict: key", optional=True)
    level = check_level(level)
    data = _as_data(fit, query)
    S = capabilities(fit, data)
    if warn_imputed:
        _warn_imputed(fit, data, ~np.isfinite(np.asarray(data.scores, float)), stacklevel=3)
    mean = predict_np(fit.law, S)
    dist = extrapolation(fit, S)
    spread = np.zeros(len(S)) if dist is None or fit.kappa is None else float(fit.kappa) * np.asarray(dist, float)
    samples = None
    if (fit.posterior is not None or fit.boot is not None) and key is None:
        raise ValueError("predict: this fit draws predictive samples (Bayesian or bootstrap); pass "
                         "key=jax.random.key(0)")
    # each row draws with its own key, derived from the key and the row's benchmark scores: a row gets
    # the same draws whichever rows are predicted with it (the fit's table or a query of a saved model)
    keys = row_keys(key, data.scores) if fit.posterior is not None or fit.boot is not None else None
    if fit.posterior is not None:
        from .bayes import predictive

        q = ((1 - level) / 2, (1 + level) / 2)
        pr = predictive(key, fit.posterior, S, probs=q, likelihood=fit.spec.likelihood, row_keys=keys)
        mean = pr["mode"] if pr["mode"] is not None else pr["median"]
        lower, upper, samples = pr["q"][0], pr["q"][1], pr["draws"]
    elif fit.boot is not None:
        ok = np.asarray(fit.boot_ok, bool)
        if not ok.any():
            raise ValueError("predict: no bootstrap refit converged; refit without bootstrap or with more "
                             "bootstrap_steps")
        if not ok.all():
            warnings.warn(f"predict: {int((~ok).sum())} of {ok.size} bootstrap refits did not converge and are "
                          "left out of the interval", RuntimeWarning, stacklevel=2)
        # the refits in turn up to MIN_DRAWS draws (each with its own noise): the quantiles of a few
        # dozen draws moved by a tenth of the interval from one key to the next
        n_ok = int(ok.sum())
        reps = max(1, min(-(-MIN_DRAWS // n_ok), MAX_DRAW_CELLS // max(n_ok * len(S), 1)))
        laws = jax.tree.map(lambda a: jnp.asarray(np.tile(np.asarray(a)[ok], (reps,) + (1,) * (a.ndim - 1))),
                            fit.boot)
        Sj = jnp.asarray(S)
        z = jax.vmap(lambda p: p.intercept + Sj @ p.slopes)(laws)
        ext, eps = jax.vmap(lambda k: jax.random.normal(k, (2, z.shape[0]), z.dtype), out_axes=2)(keys)
        z = z + jnp.asarray(spread) * ext
        mu = sigmoid_link(z, 1.0, 0.0, floor=laws.floor[:, None])
        samples = np.clip(np.asarray(mu + fit.resid_sd * eps), 0.0, 1.0)
        lower, upper = np.quantile(samples, [(1 - level) / 2, (1 + level) / 2], axis=0)
    else:
        z = float(fit.law.intercept) + S @ np.asarray(fit.law.slopes, float)
        lower, upper = _mixture_interval(z, float(fit.law.floor), float(fit.resid_sd), spread, level)
    _warn_far(fit, dist, data)
    scale = fit.hi - fit.lo
    raw = lambda v: None if v is None else jax.device_put(fit.lo + scale * np.asarray(v, float))
    return Prediction(raw(mean), raw(lower), raw(upper), raw(samples),
                      None if dist is None else jax.device_put(dist))


def flops_baseline(train: ObsData, query: ObsData, spec: ObsSpec = ObsSpec(), *, level: float = 0.9):
    """The baseline a sceptic tries first: the same link and loss on ``ln FLOPs`` instead of the
    principal capabilities (the paper's compute baseline), fitted on the training rows that have
    FLOPs.

    Training rows without FLOPs are left out of the baseline's fit and counted; query rows without
    FLOPs get no baseline prediction (NaN: score the baseline on the rows with FLOPs only, and the
    model on the same rows to compare). The interval is the fit ± the normal quantile times its
    residual s.d., clipped to ``[lo, hi]``.

    Args:
      train: the model's training rows.
      query: rows to predict (e.g. the held-out rows).
      spec: link (``floor``) and ``loss`` of the model.
      level: central interval level.

    Returns:
      ``(Prediction or None, info)``: raw-unit predictions (NaN without FLOPs) and a dict with
      ``n_train`` (rows fitted), ``n_train_no_flops``, ``n_query_no_flops``, ``slope``,
      ``intercept``, ``floor`` (the law ``floor + (1 - floor) σ(slope ln C + intercept)``, C in
      1e21 FLOPs), ``converged``; ``None`` and ``info["reason"]`` when it cannot be fitted.
    """
    Ct, Cq = np.asarray(train.flops, float), np.asarray(query.flops, float)
    info = dict(n_train_no_flops=int((~np.isfinite(Ct)).sum()), n_query_no_flops=int((~np.isfinite(Cq)).sum()))
    with np.errstate(invalid="ignore", divide="ignore"):
        xt, xq = ln_regressor(Ct)[:, 0], ln_regressor(Cq)[:, 0]
    pred, more = _sigmoid_baseline(xt, xq, train, query, spec, level, "FLOPs")
    info.update(more)
    if pred is None and "flops" not in dict(train.columns):
        info["reason"] += " (no FLOPs column: --flops-col)"
    return pred, info


def mean_score_baseline(train: ObsData, query: ObsData, spec: ObsSpec = ObsSpec(), *, level: float = 0.9):
    """A baseline that needs no FLOPs: the same link and loss on each model's **mean benchmark
    accuracy** (over its non-missing benchmark cells) instead of the principal capabilities.

    If a single average of the benchmarks predicts the target as well as the principal
    capabilities do, the PCA buys nothing on this table. Rows without any benchmark value get no
    prediction (NaN). The interval is the fit ± the normal quantile times its residual s.d.,
    clipped to ``[lo, hi]``.

    Returns:
      ``(Prediction or None, info)`` as :func:`flops_baseline` (``slope`` per unit of mean
      accuracy); ``None`` and ``info["reason"]`` when it cannot be fitted.
    """
    def mean(d):
        s = np.asarray(d.scores, float)
        n = np.isfinite(s).sum(axis=1)
        return np.where(n > 0, np.nansum(s, axis=1) / np.maximum(n, 1), np.nan)

    return _sigmoid_baseline(mean(train), mean(query), train, query, spec, level, "a benchmark score")


def _sigmoid_baseline(xt, xq, train: ObsData, query: ObsData, spec: ObsSpec, level: float, needs: str):
    """The link (``spec.floor``) and loss (``spec.loss``) fitted on one regressor ``xt`` of the
    training rows, predicted at ``xq``; rows with a NaN regressor are left out / get NaN."""
    from scipy.special import ndtri

    level = check_level(level)
    xt, xq = np.asarray(xt, float), np.asarray(xq, float)
    yt = np.asarray(train.y, float)
    ok = np.isfinite(xt) & np.isfinite(yt)
    info = dict(n_train=int(ok.sum()))
    n_par = 2 + int(spec.floor)
    if ok.sum() < n_par + 1 or np.unique(xt[ok]).size < 2 or np.ptp(yt[ok]) <= 1e-12:
        info["reason"] = (f"the baseline needs >= {n_par + 1} training rows with {needs}, at least 2 distinct values "
                          f"of it and a target that varies; have {int(ok.sum())} row(s) with {needs}")
        return None, info
    law, res = fit_law(xt[ok, None], yt[ok], floor=spec.floor, loss=spec.loss)
    fitted = predict_np(law, xt[ok, None])
    sd = float(np.sqrt(np.sum((fitted - yt[ok]) ** 2) / max(ok.sum() - n_par, 1)))
    has = np.isfinite(xq)
    mu = np.full(xq.shape, np.nan)
    mu[has] = predict_np(law, xq[has, None])
    half = float(ndtri(0.5 + level / 2)) * sd
    scale = query.hi - query.lo
    raw = lambda v: jax.device_put(query.lo + scale * v)  # noqa: E731
    info.update(slope=float(np.asarray(law.slopes)[0]), intercept=float(law.intercept), floor=float(law.floor),
                converged=bool(res.converged), resid_sd=sd)
    return Prediction(raw(mu), raw(np.clip(mu - half, 0.0, 1.0)), raw(np.clip(mu + half, 0.0, 1.0))), info


# ----------------------------------------------------------------------------- axis and splits


def reference_axis(fit: ObsFit, data: ObsData, ref_family: str | None = None) -> dict:
    """The law on the reference family's equivalent-FLOPs axis (paper §3.4, Eqs. 7-8).

    The law's capability ``P = α + β·S`` is regressed (OLS) on ``log10 FLOPs`` over the
    reference-family rows of ``data`` that have FLOPs (the paper uses every reference model in
    the analysis, also held-out ones: only their benchmark scores enter). ``P ≈ w log10 C + c``
    turns the law into ``σ(w x + c)`` with ``x`` = log10 of the reference-equivalent FLOPs
    (1E21). Only the printed form and the plot's x-axis change, never the predictions.

    Returns:
      dict(slope, intercept, n_ref, ref_family, reason): ``slope``/``intercept`` are NaN and
      ``reason`` says why when fewer than 2 reference models with distinct FLOPs are present.
    """
    ref = fit.spec.ref_family if ref_family is None else ref_family
    out = dict(slope=float("nan"), intercept=float("nan"), n_ref=0, ref_family=ref, reason=None)
    if "family" not in dict(data.columns) and not data.family_labels:
        out["reason"] = "the table has no family column (--family-col), so no reference family"
        return out
    if ref not in data.family_labels:
        out["reason"] = (f"reference family {ref!r} is not in the table's families "
                         f"{list(data.family_labels)[:10]}; choose one with --ref-family")
        return out
    code = data.family_labels.index(ref)
    C = np.asarray(data.flops, float)
    rows = (np.asarray(data.family) == code) & np.isfinite(C)
    out["n_ref"] = int(rows.sum())
    if rows.sum() < 2 or np.unique(C[rows]).size < 2:
        out["reason"] = (f"reference family {ref!r} has {int(rows.sum())} model(s) with FLOPs in the table "
                         "(need >= 2 with distinct FLOPs for the axis)")
        return out
    S = capabilities(fit, take_rows(data, rows))
    P = float(fit.law.intercept) + S @ np.asarray(fit.law.slopes, float)
    x = np.log10(C[rows])
    (w, c), *_ = np.linalg.lstsq(np.stack([x, np.ones_like(x)], 1), P, rcond=None)
    out.update(slope=float(w), intercept=float(c))
    return out


def cutoff_rows(data: ObsData, cutoff: float):
    """Split rows by training compute: train = FLOPs <= ``cutoff``, held out = FLOPs > ``cutoff``,
    in the unit of the table's FLOPs column (``data.flops_unit`` FLOPs per unit).

    Rows without FLOPs belong to neither side: they are returned separately (and warned about),
    never silently put in either set. Returns ``(train, held_out, no_flops)`` boolean arrays.
    """
    if "flops" not in dict(data.columns):
        raise ValueError("a FLOPs cut-off needs a FLOPs column; name it with flops_col (CLI: --flops-col)")
    if not (np.isfinite(cutoff) and cutoff > 0):
        raise ValueError(f"the FLOPs cut-off must be a positive number, got {cutoff}")
    C = np.asarray(data.flops, float) / (data.flops_unit / FLOPS_UNIT)
    none = ~np.isfinite(C)
    with np.errstate(invalid="ignore"):
        train, held = (C <= cutoff) & ~none, (C > cutoff) & ~none
    if not train.any() and not none.all():
        raise ValueError(f"the FLOPs cut-off {cutoff:g} leaves no training rows: the FLOPs column holds "
                         f"{np.nanmin(C):.3g} to {np.nanmax(C):.3g} in its unit ({data.flops_unit:g} FLOPs per unit). "
                         "Give the cut-off in that unit; if the column holds raw FLOPs, say so (flops_unit=1; CLI "
                         "--flops-unit 1)")
    if none.any():
        warnings.warn(f"{int(none.sum())} row(s) without FLOPs at rows {_rows(np.asarray(data.row)[none])} are "
                      "left out of the cut-off split (neither fitted nor scored)", RuntimeWarning, stacklevel=2)
    return train, held, none


def top_rows(data: ObsData, fraction: float):
    """Hold out the top ``floor(fraction * n)`` rows by target (the paper's rule for the agent
    tasks); rows without a target are returned separately (and warned about).

    Returns ``(train, held_out, no_target)`` boolean arrays.
    """
    from .splits import rank_top_split

    if not 0.0 < fraction < 1.0:
        raise ValueError(f"the held-out fraction must be in (0, 1), got {fraction}")
    y = np.asarray(data.y, float)
    none = ~np.isfinite(y)
    train = np.zeros(y.size, bool)
    train[~none] = rank_top_split(y[~none], fraction)
    if none.any():
        warnings.warn(f"{int(none.sum())} row(s) without a target at rows {_rows(np.asarray(data.row)[none])} are "
                      "left out of the split (neither fitted nor scored)", RuntimeWarning, stacklevel=2)
    return train, ~train & ~none, none


def dedupe(df: pd.DataFrame, *, model_col: str | None = _MODEL, columns=None):
    """Drop repeated models, keeping the first row of each (by ``model_col`` when the frame has it,
    else rows identical in ``columns``). Returns ``(kept frame, dropped index labels)``; warns with
    the count. (:func:`from_frame` refuses duplicates; this is the explicit way out.)
    """
    if model_col is not None and model_col in df.columns:
        dup = df.duplicated(subset=[model_col], keep="first").to_numpy()
    else:
        dup = df.duplicated(subset=None if columns is None else list(columns), keep="first").to_numpy()
    if dup.any():
        warnings.warn(f"dropped {int(dup.sum())} repeated model row(s) at rows {_rows(df.index[dup])} (kept the "
                      "first of each)", RuntimeWarning, stacklevel=2)
    return df.loc[~dup], list(df.index[dup])
