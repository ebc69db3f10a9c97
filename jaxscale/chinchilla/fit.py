r"""Chinchilla :math:`L(N, D) = E + A/N^\alpha + B/D^\beta` fitted by Epoch AI's method.

Epoch's replication of Hoffmann et al. (2022): minimise
:math:`\sum_i w_i\,\mathrm{Huber}_\delta(\mathrm{LSE}(a - \alpha \log N_i, b - \beta \log D_i, e) - \log L_i)`
with :math:`\delta = 10^{-3}` by L-BFGS from every point of a 4,500-point grid of starts
(:math:`\alpha, \beta \in \{0, .5, \dots, 2\}`, :math:`e \in \{-1, -.5, \dots, 1\}`,
:math:`a, b \in \{0, 5, \dots, 25\}`) and keep the best; ``E = e^e, A = e^a, B = e^b``. On Epoch's
245 extracted points the 5 highest-loss points are left out (:data:`EPOCH_SPEC`); on a user's own
runs nothing is left out unless asked (``Spec(exclude_top_loss=k)``).

All 4,500 starts run as one ``vmap``ped compiled program (:func:`fit_core`); bootstrap refits
``vmap`` over resamples (:func:`bootstrap`).
"""
from __future__ import annotations

import itertools
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from jaxscale import _programs as programs
from jaxscale._log import heartbeat
from jaxscale._pytree import pytree_dataclass, static_field
from jaxscale._registry import register_moved
from jaxscale.chinchilla.spec import EPOCH_SPEC, HUBER_DELTA, ChinchillaSpec
from jaxscale.config import warn_if_float32
from jaxscale.data import validate as V
from jaxscale.infer import (
    FitResult,
    bucket,
    huber,
    minimize_lbfgs,
    minimize_newton,
    multistart,
    reason_text,
    sharded_vmap,
)
from jaxscale.infer.prediction import check_key
from jaxscale.infer.results import few_dof_note
from jaxscale.laws import (ChinchillaParams, chinchilla_admissible, chinchilla_exponent_notes, chinchilla_floor_note,
                           chinchilla_log_lse, chinchilla_squared_exponents, chinchilla_sqrt_exponents,
                           chinchilla_theta_to_params)

__all__ = [
    "ChinchillaData",
    "ChinchillaSpec",
    "ChinchillaFit",
    "EPOCH_SPEC",
    "HUBER_DELTA",
    "from_frame",
    "aggregate",
    "start_grid",
    "screening_rows",
    "FULL_POLISH",
    "huber_objective",
    "fit_core",
    "fit",
    "bootstrap",
    "bootstrap_core",
    "params_dict",
    "residual_scale",
    "take_rows",
    "pad_rows",
    "bucket",
    "chunk_size",
    "chunked_vmap",
    "extrapolation_backtest",
]

#: Gradient-norm tolerance of a bootstrap refit. Refits of Epoch's data that missed 1e-10 stopped at
#: 1e-10 to 3e-10 (rounding noise at the optimum of an objective of size ~1e-3); 1e-8 keeps them.
BOOT_TOL = 1e-8
#: A bootstrap refit is also kept when its objective fell by at most this share over its last fifth
#: of steps. With few runs for five parameters (e.g. 15 runs whose E and A trade off), the refits
#: crawl along a flat valley of near-equal fits and their gradient never meets :data:`BOOT_TOL`;
#: a 0.1 % change of the objective is far below its spread between resamples (tens of %), and the
#: predictions at the data and beyond them no longer move (checked against 5x more steps).
BOOT_FTOL = 1e-3
#: Line-search trials per screening step: a vmapped line search runs as many trials as its
#: slowest member, so a short cap keeps 4,500 starts cheap; polishing uses the full 30.
SCREEN_LINESEARCH_STEPS = 4
_N_PARAMS = 5

register_moved(ChinchillaSpec, __name__)  # defined here before it moved to .spec


@pytree_dataclass
class ChinchillaData:
    """Runs as arrays: natural logs of N, D and the loss (NaN in a query), and row weights.

    Row ``i`` is row ``i`` of the frame given to :func:`from_frame`.
    """

    log_N: jax.Array
    log_D: jax.Array
    log_loss: jax.Array
    weights: jax.Array
    columns: tuple = static_field(default=(("N", "N"), ("D", "D"), ("target", "loss")))

    @property
    def n(self) -> int:
        return int(self.log_N.shape[0])


@pytree_dataclass
class ChinchillaFit:
    """A fitted Chinchilla law.

    Attributes:
      params: :class:`~jaxscale.laws.ChinchillaParams` (E, A, B, alpha, beta) of the best start.
      theta: the same as ``(a, b, e, alpha, beta)`` (``E = exp(e)``...), the optimiser's space.
      objective: Huber objective at the optimum.
      converged: whether the best start met its tolerance; ``reason`` its code
        (:data:`jaxscale.infer.REASONS`).
      n_converged: polished starts that converged; ``n_nonfinite_starts``: screened starts that
        went non-finite (discarded by design: a grid start far from the data can overflow).
      excluded: ``(n,)`` rows left out of the fit (highest losses, ``spec.exclude_top_loss``).
      sigma: residual standard deviation of log loss on the fitted rows (``n - 5`` degrees of
        freedom): the noise of a new run around the law.
      dof: those degrees of freedom.
      boot_theta: ``(B, 5)`` converged bootstrap refits (``None`` without ``spec.n_boot``).
      boot_excluded: refits dropped because they were non-finite or did not converge.
      log_range: ``(3, 2)`` natural-log ranges (min, max) of N, D and C = 6ND over the fitted rows:
        the training box that :func:`~jaxscale.chinchilla.predict` measures extrapolation against.
      kappa: growth of the noise scale with extrapolation: a run ``d`` decades outside the training
        box gets a log-loss noise sd of ``sigma * (1 + kappa * d)``. Learnt by a backtest inside the
        training data (:func:`extrapolation_backtest`); 0 when the backtest found no growth or was off.
      theta_cov: ``(5, 5)`` covariance of ``theta`` by the linear (Gauss-Newton) approximation at the
        fit, ``sigma^2 (J^T J)^+`` with ``J`` the Jacobian of the fitted rows' log loss: the law's own
        uncertainty in the interval of a fit without bootstrap refits (:func:`theta_covariance`).
    """

    params: ChinchillaParams
    theta: jax.Array
    objective: jax.Array
    converged: jax.Array
    reason: jax.Array
    n_converged: jax.Array
    n_nonfinite_starts: jax.Array
    excluded: jax.Array
    sigma: jax.Array
    dof: jax.Array
    boot_theta: jax.Array | None = None
    boot_excluded: jax.Array | None = None
    log_range: jax.Array | None = None
    kappa: jax.Array | None = None
    theta_cov: jax.Array | None = None
    spec: ChinchillaSpec = static_field(default=ChinchillaSpec())
    columns: tuple = static_field(default=(("N", "N"), ("D", "D"), ("target", "loss")))
    n_starts: int = static_field(default=4500)


#: Each column role of a runs table: what it holds, its keyword, its command-line option.
_COLUMN_OPTIONS = (("n_col", "parameters N", "--n-col"), ("d_col", "training tokens D", "--d-col"),
                   ("loss_col", "final loss", "--loss-col"))


def _require_run_columns(df: pd.DataFrame, *, n_col: str, d_col: str, loss_col: str | None,
                         what: str = "runs table") -> None:
    """Raise when a column of the runs table is missing, listing the table's columns and naming,
    for each missing one, the option that names it (``--loss-col NAME``, ``loss_col=...``); a
    missing token column next to a compute column is told how to derive the tokens."""
    V.tokens_from_compute_hint(df, n_col, d_col, what)
    given = {"n_col": n_col, "d_col": d_col, "loss_col": loss_col}
    roles = {}  # column -> the roles it was given for (one name may be given twice)
    for kw, label, flag in _COLUMN_OPTIONS:
        if given[kw] is not None:
            roles.setdefault(given[kw], []).append((kw, label, flag))
    options = {col: f"({', '.join(label for _, label, _ in r)}): "
                    + ", ".join(f"{flag} NAME ({kw}=...)" for kw, _, flag in r) for col, r in roles.items()}
    V.require_columns(df, list(options), what, options=options)  # each name once, in role order


def from_frame(df: pd.DataFrame, *, n_col: str = "N", d_col: str = "D", loss_col: str | None = "loss",
               what: str | None = None) -> ChinchillaData:
    """Validate a runs table (one row per run) and return its arrays.

    Args:
      df: the runs; row labels (the index) are used in error messages (file lines when the
        frame came from :func:`jaxscale.data.read_table`).
      n_col: column with parameter counts N (raw counts, > 0).
      d_col: column with training tokens D (raw counts, > 0).
      loss_col: column with the final loss (> 0); ``None`` for a query without losses.
      what: name of the table in error messages.

    Raises:
      ValueError: no rows, a missing column, a non-numeric / non-finite / non-positive value, or
        a repeated (N, D) pair (naming the rows; aggregate them first with :func:`aggregate`).
    """
    what = what or "runs table"
    cols = [n_col, d_col] + ([loss_col] if loss_col else [])
    _require_run_columns(df, n_col=n_col, d_col=d_col, loss_col=loss_col, what=what)
    if len(df) == 0:
        raise ValueError(f"{what}: the table has no rows; give one row per run"
                         + (f" (with {n_col!r} and {d_col!r})" if not loss_col else ""))
    V.check_positive(df, cols, what)
    if loss_col:
        dup = df.duplicated(subset=[n_col, d_col], keep=False)
        if dup.any():
            raise ValueError(
                f"{what}: {int(dup.sum())} rows repeat the same ({n_col}, {d_col}) pair at rows "
                f"{list(df.index[dup][:5])}{' ...' if dup.sum() > 5 else ''}; a repeated run would be "
                "counted twice. Aggregate them (CLI: --agg mean or --agg min; Python: "
                f"df, n_merged = chinchilla.aggregate(df, n_col={n_col!r}, d_col={d_col!r}, loss_col={loss_col!r}, "
                f"how='mean')) or remove them.{_separating_column(df, dup, cols)}")
    _check_units(df, n_col, d_col, what)
    n = len(df)
    log_loss = (np.log(pd.to_numeric(df[loss_col]).to_numpy(float)) if loss_col else np.full(n, np.nan))
    columns = (("N", n_col), ("D", d_col), ("target", loss_col or "loss"))
    return ChinchillaData(
        _device(np.log(pd.to_numeric(df[n_col]).to_numpy(float))),
        _device(np.log(pd.to_numeric(df[d_col]).to_numpy(float))),
        _device(log_loss),
        _device(np.ones(n)),
        columns=columns,
    )


def _device(a, dtype=None):
    """A host value as a device array of the default float dtype (or ``dtype``) without compiling
    anything: ``jnp.asarray`` of a NumPy array compiles a small program per shape."""
    return jax.device_put(np.asarray(a, jnp.result_type(float) if dtype is None else dtype))


def _log_loss(theta, log_N, log_D) -> np.ndarray:
    """:func:`jaxscale.laws.chinchilla_log_lse` of host copies (NumPy, float64)."""
    return chinchilla_log_lse(*(np.asarray(a, float) for a in (theta, log_N, log_D)), xp=np)


def _separating_column(df: pd.DataFrame, dup, used) -> str:
    """A hint naming a text column with few values that differs between the runs repeating an
    (N, D) pair (a dataset, a tokenizer...): their losses may belong to different laws, so
    aggregating would mix them; a ``--where`` on it fits one. Numeric columns (a learning-rate
    sweep, whose best run per shape is the usual ``how='min'``) are not named. Empty when there
    is none."""
    groups = df[dup].groupby(list(used[:2]), sort=False)
    for c in df.columns:
        if c in used or pd.api.types.is_numeric_dtype(df[c]):
            continue
        k = df[c].nunique()
        if 2 <= k <= 20 and (groups[c].nunique() > 1).mean() >= 0.5:
            values = sorted(map(str, df[c].dropna().unique()))
            lit = repr(df[c].dropna().iloc[0])
            return (f" They differ in column {c!r} ({k} values: {values[:5]}{' ...' if k > 5 else ''}); if those are "
                    f"different settings, fit one at a time, e.g. --where \"{c} == {lit}\" "
                    f"(Python: df[df[{c!r}] == {lit}]).")
    return ""


def _check_units(df: pd.DataFrame, n_col: str, d_col: str, what: str) -> None:
    """Warn when N or D look like counts in millions / billions (the law needs raw counts): judged on
    the median, so that one large run in raw counts does not hide a column of millions."""
    for col, name, floor in ((n_col, "parameter counts", 1e4), (d_col, "token counts", 1e6)):
        v = pd.to_numeric(df[col])
        med, top = float(v.median()), float(v.max())
        if med < floor:
            below = int((v < floor).sum())
            warnings.warn(f"{what}: column {col!r} has median {med:g} (largest {top:g}; {below} of {len(v)} rows below "
                          f"{floor:g}); {name} are raw counts, so this looks like millions or billions. Multiply the "
                          "column (e.g. 1.2 billion -> 1.2e9) or the law's exponents and constants will be wrong.",
                          UserWarning, stacklevel=3)


def aggregate(df: pd.DataFrame, *, n_col: str = "N", d_col: str = "D", loss_col: str = "loss",
              how: str = "mean") -> tuple[pd.DataFrame, int]:
    """Merge runs that repeat an (N, D) pair into one row (``how`` = ``"mean"`` or ``"min"`` loss).

    Returns ``(frame, n_merged)``: the frame keeps the first row label of each group and the
    count of rows merged away is returned so callers can report it.
    """
    if how not in ("mean", "min"):
        raise ValueError(f"how={how!r}: use 'mean' (average repeated runs) or 'min' (best of them)")
    _require_run_columns(df, n_col=n_col, d_col=d_col, loss_col=loss_col)
    dup = df.duplicated(subset=[n_col, d_col], keep=False)
    hint = _separating_column(df, dup, [n_col, d_col, loss_col]) if dup.any() else ""
    if hint:
        warnings.warn(f"aggregate: merging {int(dup.sum())} rows that repeat an (N, D) pair.{hint}", UserWarning,
                      stacklevel=2)
    values = df.groupby([n_col, d_col], sort=False)[loss_col].transform(how).to_numpy()
    first = ~df.duplicated(subset=[n_col, d_col], keep="first").to_numpy()
    out = df.iloc[np.flatnonzero(first)].copy()
    out[loss_col] = values[first]
    return out, int(len(df) - len(out))


#: Typical natural-log ranges of N and D that Epoch's grid of ``a``, ``b`` covers (1e5..1e13
#: parameters, 1e7..1e15 tokens); outside them :func:`start_grid` moves the grid to the data.
TYPICAL_LOG_N = (np.log(1e5), np.log(1e13))
TYPICAL_LOG_D = (np.log(1e7), np.log(1e15))


def start_grid(data: ChinchillaData | None = None) -> jnp.ndarray:
    """The 4,500 starts ``(a, b, e, alpha, beta)`` of Hoffmann et al. / Epoch.

    With ``data`` whose median N or D lies outside the typical ranges (:data:`TYPICAL_LOG_N`,
    :data:`TYPICAL_LOG_D`), each start's ``a`` (``b``) is shifted by ``alpha (log N_med - log 1e9)``
    (``beta (log D_med - log 1e11)``): the same starting curves, expressed at the data's scale, so
    that e.g. N ~ 1e33 does not leave every start far from the optimum.
    """
    alphas = np.arange(0.0, 2.5, 0.5)
    es = np.arange(-1.0, 1.5, 0.5)
    abs_ = np.arange(0.0, 30.0, 5.0)
    grid = np.array(list(itertools.product(abs_, abs_, es, alphas, alphas)), dtype=float)
    if data is not None:
        w = np.asarray(data.weights) > 0
        med_n, med_d = (float(np.median(np.asarray(a)[w])) for a in (data.log_N, data.log_D))
        if not TYPICAL_LOG_N[0] <= med_n <= TYPICAL_LOG_N[1]:
            grid[:, 0] += grid[:, 3] * (med_n - np.log(1e9))
        if not TYPICAL_LOG_D[0] <= med_d <= TYPICAL_LOG_D[1]:
            grid[:, 1] += grid[:, 4] * (med_d - np.log(1e11))
    return _device(grid)


def huber_objective(theta, data: ChinchillaData, delta: float = HUBER_DELTA):
    """Weighted sum of Huber losses of log-loss residuals (Epoch's objective)."""
    pred = chinchilla_log_lse(theta, data.log_N, data.log_D)
    return jnp.sum(data.weights * huber(pred - data.log_loss, delta))


#: Elements of a (batch x rows) intermediate per chunk: batches (starts, refits) run in chunks so
#: that memory grows with rows + batch, not rows x batch (64 MB per float64 intermediate).
CHUNK_ELEMENTS = 2**23


def chunk_size(n_rows: int, n_batch: int) -> int:
    """Members of a batch (starts, refits) run together: all of them for small tables, fewer as
    the table grows; chunks are equal (the batch is padded by repeating its last member)."""
    most = int(max(1, min(n_batch, CHUNK_ELEMENTS // max(n_rows, 1))))
    k = -(-n_batch // most)
    return -(-n_batch // k)


def chunked_vmap(fn, xs, n_rows: int):
    """``jax.vmap(fn)(xs)`` computed in equal chunks (a ``lax.map`` over ``vmap``ped chunks) so
    that a (batch x rows) intermediate never exceeds :data:`CHUNK_ELEMENTS`; one chunk is a plain
    ``vmap``. Each chunk is split over all devices. Leading axis of ``xs`` = batch."""
    n = jax.tree_util.tree_leaves(xs)[0].shape[0]
    c = chunk_size(n_rows, n)
    if c >= n:
        return sharded_vmap(fn, xs)
    k = -(-n // c)
    pad = k * c - n
    xs = jax.tree_util.tree_map(lambda a: jnp.concatenate([a, jnp.repeat(a[-1:], pad, axis=0)]), xs)
    out = jax.lax.map(lambda chunk: sharded_vmap(fn, chunk),
                      jax.tree_util.tree_map(lambda a: a.reshape((k, c) + a.shape[1:]), xs))
    return jax.tree_util.tree_map(lambda a: a.reshape((k * c,) + a.shape[2:])[:n], out)


#: On a table larger than ``Spec.screen_rows``: how many starts, polished on the screening rows,
#: are polished again on every row.
FULL_POLISH = 4


def screening_rows(data: ChinchillaData, n_rows: int) -> ChinchillaData:
    """The rows the starts are screened on: all of them when the table has at most ``n_rows``
    rows, else ``n_rows`` rows evenly spaced (in row order) among those with weight > 0. Traceable;
    the subset's size is static."""
    n = data.log_N.shape[0]
    if n <= n_rows:
        return data
    real = data.weights > 0
    order = jnp.argsort(~real, stable=True)  # rows with weight first, in row order
    m = jnp.sum(real)
    i = jnp.arange(n_rows)
    pos = jnp.where(m >= n_rows, (i * m) // n_rows, i)
    keep = jnp.where(i < m, 1.0, 0.0).astype(data.weights.dtype)
    rows = order[pos]
    return data.replace(log_N=data.log_N[rows], log_D=data.log_D[rows], log_loss=data.log_loss[rows],
                        weights=data.weights[rows] * keep)


#: Floating type of the screening of the starts (:func:`fit_core`). The screen only ranks the
#: starts; the best :attr:`ChinchillaSpec.polish_top` are polished in the data's own precision
#: (float64), which decides. Single precision halves the screen's time on a CPU (9.1 s -> 5.8 s
#: for 4,500 starts on 31 runs, 2 cores) and finds the same optimum.
SCREEN_DTYPE = jnp.float32


def _as_screen_dtype(tree):
    """Floating leaves of ``tree`` in :data:`SCREEN_DTYPE` (no change when it is wider)."""
    def cast(a):
        if hasattr(a, "dtype") and jnp.issubdtype(a.dtype, jnp.floating) and \
                jnp.finfo(a.dtype).bits > jnp.finfo(SCREEN_DTYPE).bits:
            return a.astype(SCREEN_DTYPE)
        return a
    return jax.tree_util.tree_map(cast, tree)


def _ranked(loss, theta, ok):
    """Order of candidates: usable (``ok``) and :func:`admissible` ones by loss, then the usable ones
    with a negative exponent by loss, then the rest. A negative exponent can fit noise at the top of
    the data slightly better (e.g. ``B D^12``, with ``B`` ~ 1e-147, bending the last few runs) and
    then explodes beyond them, so it wins only where no candidate with non-negative exponents fits."""
    key = jnp.where(ok, loss, jnp.inf)
    return jnp.lexsort((key, ~(ok & chinchilla_admissible(theta))))


def fit_core(key, data: ChinchillaData, spec: ChinchillaSpec = ChinchillaSpec(), starts=None) -> FitResult:
    """Pure core of :func:`fit`: screen every start, polish the best, return the best polished one.

    Under ``vmap`` a batched L-BFGS runs until its slowest member stops, so running all 4,500
    starts to full convergence wastes most of the work on starts that end in poor basins.
    Screening all of them for ``spec.screen_steps`` iterations and polishing the
    ``spec.polish_top`` lowest to convergence finds the same optimum at a fraction of the cost.
    Candidates with both exponents >= 0 (:func:`jaxscale.laws.chinchilla_admissible`) rank before
    those with a negative one at every stage; the best polished admissible start is returned when
    there is one.
    The screen runs in :data:`SCREEN_DTYPE` (single precision), the polish in the data's precision;
    on one CPU device the polished starts run one after another, each to its own stop
    (``multistart(uneven=True)``). Starts are screened in chunks of :func:`chunk_size` (one chunk
    below ~2,000 rows) on at most ``spec.screen_rows`` rows (:func:`screening_rows`); on a larger
    table the ``polish_top`` best are polished on those rows and the best :data:`FULL_POLISH` of
    them again on every row, so memory stays O(rows + starts) and time O(starts + rows) on tables
    of 100k+ runs.
    Everything stays on device (no host checks): ``jax.vmap`` it over datasets of equal shape.
    ``key`` is unused (the start grid is fixed); it keeps the signature of every pillar.

    Returns:
      :class:`~jaxscale.infer.FitResult` of the best polished start; its ``history`` holds
      ``(n_converged, n_nonfinite_starts)`` over the polished / screened starts.
    """
    del key
    starts = start_grid() if starts is None else jnp.asarray(starts)
    top_k = min(spec.polish_top, int(starts.shape[0]))
    screen = screening_rows(data, spec.screen_rows)
    low = _as_screen_dtype(screen)  # the screen only ranks starts: single precision, twice the SIMD width
    screened = chunked_vmap(
        lambda x0: minimize_lbfgs(huber_objective, x0, low, spec.huber_delta, max_steps=spec.screen_steps,
                                  tol=1e-10, ftol=0.0, max_linesearch_steps=SCREEN_LINESEARCH_STEPS),
        _as_screen_dtype(starts), screen.log_N.shape[0])
    finite = jnp.isfinite(screened.loss) & jnp.all(jnp.isfinite(screened.params), axis=-1)
    top = _ranked(screened.loss, screened.params, finite)[:top_k]
    candidates = screened.params[top].astype(starts.dtype)
    if screen is not data:  # a large table: polish on the subset, then the best few on every row
        sub = multistart(minimize_lbfgs, huber_objective, candidates, screen, spec.huber_delta,
                         max_steps=spec.max_steps, tol=1e-10, ftol=1e-13, uneven=True)
        sub_ok = jnp.isfinite(sub.loss) & jnp.all(jnp.isfinite(sub.params), axis=-1)
        candidates = sub.params[_ranked(sub.loss, sub.params, sub_ok)[:min(FULL_POLISH, top_k)]]
    polished = multistart(minimize_lbfgs, huber_objective, candidates, data, spec.huber_delta,
                          max_steps=spec.max_steps, tol=1e-10, ftol=1e-13, uneven=True)
    ok = jnp.isfinite(polished.loss) & jnp.all(jnp.isfinite(polished.params), axis=-1)
    i = _ranked(polished.loss, polished.params, ok)[0]
    best = jax.tree_util.tree_map(lambda a: a[i], polished._replace(history=None))
    counts = jnp.stack([jnp.sum(polished.converged & ok), jnp.sum(~finite)])
    return best._replace(history=counts)


def _fit_program(data: ChinchillaData, starts, spec: ChinchillaSpec) -> FitResult:
    """:func:`fit_core` as one program kept on disk between processes (its tracing alone takes
    about 1.4 s, longer than the fit on a small table); the key is unused, columns are reset."""
    return fit_core(None, data, spec, starts)


def _exclusion(data: ChinchillaData, k: int) -> np.ndarray:
    loss = np.asarray(data.log_loss)
    mask = np.zeros(loss.shape[0], bool)
    if k > 0:
        mask[np.argsort(loss, kind="stable")[loss.shape[0] - k:]] = True
    return mask


def log_loss_jacobian(theta, log_N, log_D) -> np.ndarray:
    """``(n, 5)`` derivatives of the law's log loss at each row with respect to ``theta = (a, b, e,
    alpha, beta)``: the softmax weights ``p`` of the three terms give ``(p1, p2, p3, -p1 ln N,
    -p2 ln D)`` (host, NumPy)."""
    a, b, e, alpha, beta = np.asarray(theta, float)
    ln, ld = np.asarray(log_N, float), np.asarray(log_D, float)
    t = np.stack([a - alpha * ln, b - beta * ld, np.full_like(ln, e)], 1)
    p = np.exp(t - t.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    return np.stack([p[:, 0], p[:, 1], p[:, 2], -p[:, 0] * ln, -p[:, 1] * ld], 1)


def theta_covariance(theta, data: ChinchillaData, sigma: float) -> np.ndarray:
    """Covariance of the fitted ``theta`` by the linear approximation at the fit:
    ``sigma^2 (J^T W J)^+`` over the rows with weight > 0 (a pseudo-inverse: directions the data do
    not pin, such as ``e`` when ``E`` went to 0, get no variance from it)."""
    w = np.asarray(data.weights, float)
    J = log_loss_jacobian(theta, data.log_N, data.log_D)
    return float(sigma) ** 2 * np.linalg.pinv((J * w[:, None]).T @ J, rcond=1e-12, hermitian=True)


def residual_scale(theta, data: ChinchillaData) -> tuple[float, int]:
    """Residual standard deviation of log loss on rows with weight > 0, and its degrees of freedom
    (weighted rows minus the 5 parameters)."""
    w = np.asarray(data.weights, float)
    r = _log_loss(theta, data.log_N, data.log_D) - np.asarray(data.log_loss, float)
    dof = float(w.sum()) - _N_PARAMS
    return float(np.sqrt(np.sum(w * r**2) / max(dof, 1.0))), int(dof)


def pad_rows(data: ChinchillaData, n: int) -> ChinchillaData:
    """Append ``n - data.n`` inert rows (weight 0, finite values): objectives are unchanged."""
    k = n - data.n
    if k < 0:
        raise ValueError(f"cannot pad {data.n} rows to {n}")
    if k == 0:
        return data
    pad = lambda a, v: jax.device_put(np.concatenate([np.asarray(a), np.full(k, v, a.dtype)]))  # noqa: E731
    return data.replace(log_N=pad(data.log_N, 0.0), log_D=pad(data.log_D, 0.0),
                        log_loss=pad(data.log_loss, 0.0), weights=pad(data.weights, 0.0))


def take_rows(data: ChinchillaData, mask) -> ChinchillaData:
    """The rows of ``data`` where ``mask`` holds (same static metadata)."""
    idx = np.flatnonzero(np.asarray(mask))
    return jax.tree_util.tree_map(lambda a: jax.device_put(np.asarray(a)[idx]), data)  # on the host


def _check_design(data: ChinchillaData, spec: ChinchillaSpec, what: str) -> None:
    n = data.n
    if not np.all(np.isfinite(np.asarray(data.log_loss))):
        bad = np.flatnonzero(~np.isfinite(np.asarray(data.log_loss)))
        raise ValueError(f"{what}: {bad.size} of the data's {n} rows have no loss (positions {bad[:5].tolist()}; "
                         "a table read with loss_col=None, e.g. a query?); a fit needs the loss of every run: "
                         "from_frame(df, n_col=..., d_col=..., loss_col=...) on the runs that have one")
    for name, low in (("exclude_top_loss", 0), ("n_boot", 0), ("boot_steps", 1), ("screen_steps", 1),
                      ("polish_top", 1), ("screen_rows", 1), ("max_steps", 1)):
        if int(getattr(spec, name)) < low:
            raise ValueError(f"{what}: Spec.{name} must be >= {low}, got {getattr(spec, name)}"
                             + (" (0 means no bootstrap refits)" if name == "n_boot" else ""))
    if not float(spec.huber_delta) > 0:
        raise ValueError(f"{what}: Spec.huber_delta must be > 0, got {spec.huber_delta}")
    if not 0.0 <= float(spec.backtest_frac) < 1.0:
        raise ValueError(f"{what}: Spec.backtest_frac must be in [0, 1) (0 turns the backtest off), "
                         f"got {spec.backtest_frac}")
    used = np.asarray(data.log_loss)[np.asarray(data.weights) > 0]
    if used.size and np.ptp(used) == 0:
        col = dict(data.columns).get("target", "loss")
        raise ValueError(f"{what}: the loss column {col!r} takes one value ({np.exp(used[0]):.6g}) in all {used.size} "
                         "rows: there is no trend in N or D to fit; check the column (--loss-col)")
    if n - spec.exclude_top_loss < _N_PARAMS + 1:
        rows = (f"{n} rows minus {spec.exclude_top_loss} excluded leaves" if spec.exclude_top_loss else
                f"{n} rows are")
        fix = "add runs" + (" or lower exclude_top_loss" if spec.exclude_top_loss else "")
        raise ValueError(f"{what}: {rows} fewer than {_N_PARAMS + 1} points for the law's {_N_PARAMS} parameters "
                         f"(E, A, B, alpha, beta); {fix}")
    for name, arr, why in (("N", data.log_N, "alpha"), ("D", data.log_D, "beta")):
        col = dict(data.columns).get(name, name)
        distinct = np.unique(np.round(np.asarray(arr), 9)).size
        if distinct < 2:
            raise ValueError(f"{what}: underdetermined: need >= 2 distinct values of {col!r} ({name}), have "
                             f"{distinct} ({why} cannot be fitted). Add runs that vary it.")
        if distinct < 3:
            warnings.warn(f"{what}: only {distinct} distinct values of {col!r} ({name}): {why} rests on two "
                          "points per curve and is weakly identified; its interval is wide at best.",
                          UserWarning, stacklevel=3)


def fit(key, data: ChinchillaData, spec: ChinchillaSpec = ChinchillaSpec(), *, starts=None) -> ChinchillaFit:
    """Fit Chinchilla by Epoch's method (and optional bootstrap refits).

    Args:
      key: PRNG key (used by the bootstrap; the start grid is fixed).
      data: :class:`ChinchillaData` from :func:`from_frame` (every row needs a loss).
      spec: :class:`ChinchillaSpec`; :data:`EPOCH_SPEC` reproduces Epoch's setting on their data.
      starts: ``(n, 5)`` starts ``(a, b, e, alpha, beta)``; default :func:`start_grid`.

    Example:
      >>> import jax
      >>> from jaxscale import chinchilla
      >>> from jaxscale.data import load
      >>> f = chinchilla.fit(jax.random.key(0), chinchilla.from_frame(load("epoch_chinchilla")),
      ...                    chinchilla.EPOCH_SPEC)  # doctest: +SKIP
      >>> round(float(f.params.E), 2)  # doctest: +SKIP
      1.82
    """
    what = "Chinchilla fit"
    check_key(key, f"{what}: key")
    _check_design(data, spec, what)
    warn_if_float32(what)
    excluded = _exclusion(data, spec.exclude_top_loss)
    d = take_rows(data, ~excluded)
    starts_arr = start_grid(d) if starts is None else jnp.asarray(starts)
    # the fields fit_core does not read are reset, so fits that differ only in them share one program
    d0 = ChinchillaSpec()
    core_spec = spec._replace(exclude_top_loss=d0.exclude_top_loss, n_boot=d0.n_boot, boot_steps=d0.boot_steps,
                              backtest_frac=d0.backtest_frac)
    with heartbeat(f"{what} ({starts_arr.shape[0]} starts on {d.n} rows)"):
        padded = pad_rows(d, bucket(d.n)).replace(columns=ChinchillaData.columns)
        res = jax.block_until_ready(programs.call("chinchilla_fit_core", _fit_program, (padded, starts_arr),
                                                  (core_spec,), light=True))
    if not np.isfinite(float(res.loss)):
        raise ValueError(f"{what}: every start went non-finite; check the inputs' scale (N and D are raw "
                         "counts, not millions or billions)")
    n_conv, n_bad = (int(v) for v in np.asarray(res.history))
    if not bool(res.converged):
        warnings.warn(f"{what}: the best start used its {spec.max_steps} L-BFGS steps without meeting its "
                      f"tolerances ({reason_text(int(res.reason))}). With {d.n} runs for five parameters this "
                      "is often a flat valley of near-equal fits (A and E, or B and beta, trading off): "
                      "bootstrap refits (Spec.n_boot, CLI --bootstrap) show how far apart they predict; "
                      "raise Spec.max_steps if the objective was still falling", RuntimeWarning, stacklevel=2)
    _warn_at_bounds(res.params, d, what)
    sigma, dof = residual_scale(res.params, d)
    few = few_dof_note(d.n, 5, sigma, "in log loss")
    if few:
        held = " or held-out runs (--holdout-top 1)" if d.n > 6 else ""  # 6 runs must stay for the fit
        warnings.warn(f"{what}: {d.n} runs for the law's 5 parameters {few}. More runs{held} to see the real error; "
                      "bootstrap refits (--bootstrap 200) show how far near-equal laws predict apart", UserWarning,
                      stacklevel=2)
    kappa = extrapolation_backtest(d, res.params, spec)
    count = jnp.result_type(int)
    with np.errstate(over="ignore"):  # A or B beyond float64: warned above (the law itself uses theta)
        params = chinchilla_theta_to_params(np.asarray(res.params))
    out = ChinchillaFit(
        params=jax.tree_util.tree_map(_device, params),
        theta=res.params, objective=res.loss, converged=res.converged, reason=res.reason,
        n_converged=_device(n_conv, count), n_nonfinite_starts=_device(n_bad, count),
        excluded=jax.device_put(excluded), sigma=_device(sigma), dof=_device(dof, count), spec=spec,
        columns=data.columns, n_starts=int(starts_arr.shape[0]), log_range=_device(_log_range(d)),
        kappa=_device(kappa), theta_cov=_device(theta_covariance(res.params, d, sigma)),
    )
    if spec.n_boot > 0:
        theta_b, n_excl = bootstrap(jax.random.fold_in(key, 1), d, res.params, n_boot=spec.n_boot,
                                    steps=spec.boot_steps, delta=spec.huber_delta)
        out = out.replace(boot_theta=jnp.asarray(theta_b), boot_excluded=jnp.asarray(n_excl))
    return out


def _warn_at_bounds(theta, data: ChinchillaData, what: str) -> None:
    """Warn when the irreducible loss E went to 0, an exponent to ~0 or below, or far above any
    plausible value: the runs do not pin them down."""
    theta = np.asarray(theta, float)
    with np.errstate(over="ignore"):  # e^a or e^b beyond float64 is said in the warning below
        p = chinchilla_theta_to_params(theta)
    low = float(np.exp(np.min(np.asarray(data.log_loss)[np.asarray(data.weights) > 0])))
    note = chinchilla_floor_note(p.E, low)
    if note:
        warnings.warn(f"{what}: {note}", RuntimeWarning, stacklevel=3)
    w = np.asarray(data.weights) > 0
    for msg in chinchilla_exponent_notes(theta, np.asarray(data.log_N)[w], np.asarray(data.log_D)[w]):
        warnings.warn(f"{what}: {msg}", RuntimeWarning, stacklevel=3)


def _box_distance(log_range, data: ChinchillaData, xp=jnp):
    """Decades of N, D or C = 6ND outside a (3, 2) log range (0 inside); ``xp=np`` on the host."""
    log_n, log_d = xp.asarray(data.log_N), xp.asarray(data.log_D)
    log_c = log_n + log_d + np.log(6.0)
    parts = [xp.maximum(xp.maximum(log_range[i, 0] - v, v - log_range[i, 1]), 0.0)
             for i, v in enumerate((log_n, log_d, log_c))]
    d = xp.max(xp.stack(parts), axis=0) / np.log(10.0)
    return xp.where(d < 1e-9, 0.0, d)  # the training runs themselves sit at 0 despite rounding


def _log_range(data: ChinchillaData) -> np.ndarray:
    """(3, 2) natural-log (min, max) of N, D and C = 6ND over the rows (host side)."""
    log_n, log_d = np.asarray(data.log_N, float), np.asarray(data.log_D, float)
    return np.array([[a.min(), a.max()] for a in (log_n, log_d, log_n + log_d + np.log(6.0))])


def _huber_nonneg(v, data: ChinchillaData, delta):
    return huber_objective(chinchilla_squared_exponents(v), data, delta)


def _newton_nonneg(theta, data: ChinchillaData, delta, **kwargs) -> FitResult:
    """Damped-Newton refit from ``theta`` with the exponents kept >= 0; ``params`` in the usual
    ``(a, b, e, alpha, beta)``. Where the optimum has positive exponents it is the same optimum."""
    res = minimize_newton(_huber_nonneg, chinchilla_sqrt_exponents(theta), data, delta, **kwargs)
    return res._replace(params=chinchilla_squared_exponents(res.params))


def _refit_program(theta, data: ChinchillaData, delta, steps: int) -> FitResult:
    """The backtest's damped-Newton refit as one program kept on disk (see :func:`_fit_program`)."""
    return _newton_nonneg(jnp.asarray(theta), data, delta, steps=steps, tol=1e-10)


def extrapolation_backtest(data: ChinchillaData, theta, spec: ChinchillaSpec) -> float:
    """How fast errors grow beyond the training runs, learnt inside the training data.

    The fitted runs with the highest compute (``spec.backtest_frac`` of them) play the future: the
    law is refitted on the others (damped Newton from ``theta``), and their standardised errors
    ``z = (log L - mu) / sigma`` at distance ``d`` (decades outside the smaller box) give ``kappa``
    solving ``mean(z^2 / (1 + kappa d)^2) = 1`` (0 when the errors are no larger than the in-sample
    noise). Returns 0 with fewer than 20 runs or without runs outside the smaller box.
    """
    n = data.n
    if spec.backtest_frac <= 0 or n < 20:
        return 0.0
    log_c = np.asarray(data.log_N) + np.asarray(data.log_D)
    k = max(int(round(spec.backtest_frac * n)), 1)
    future = np.zeros(n, bool)
    future[np.argsort(log_c, kind="stable")[n - k:]] = True
    past, fut = take_rows(data, ~future), take_rows(data, future)
    res = programs.call("chinchilla_backtest_refit", _refit_program,
                        (theta, pad_rows(past, bucket(past.n)).replace(columns=ChinchillaData.columns),
                         np.asarray(spec.huber_delta, past.log_N.dtype)), (spec.boot_steps,), light=True)
    if not np.all(np.isfinite(np.asarray(res.params))):
        return 0.0
    sigma, _ = residual_scale(res.params, past)
    dist = _box_distance(_log_range(past), fut, xp=np)
    z2 = ((_log_loss(res.params, fut.log_N, fut.log_D) - np.asarray(fut.log_loss)) / max(sigma, 1e-12)) ** 2
    if dist.max() <= 0 or np.mean(z2) <= 1.0:
        return 0.0

    def excess(kap):
        return float(np.mean(z2 / (1.0 + kap * dist) ** 2)) - 1.0

    hi = 1.0
    while excess(hi) > 0 and hi < 1e4:
        hi *= 2.0
    if excess(hi) > 0:  # errors too large even for rows inside the box: cap
        return hi
    lo = 0.0
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if excess(mid) > 0 else (lo, mid)
    return hi


def bootstrap_core(keys, theta0, data: ChinchillaData, steps: int = 60, delta: float = HUBER_DELTA,
                   ftol: float = BOOT_FTOL) -> FitResult:
    """Pure core of :func:`bootstrap`: one damped-Newton refit per key, ``vmap``ped; the rows with
    weight > 0 (the first ``m`` rows; the rest is padding) are resampled with replacement, as
    integer weights (drawn from the key: the same key gives the same resample). ``theta0`` is one
    start ``(5,)`` for every refit or one per key ``(B, 5)`` (a refit continued)."""
    n = data.log_N.shape[0]
    m = jnp.sum(data.weights > 0)
    real = (jnp.arange(n) < m).astype(data.weights.dtype)
    starts = jnp.broadcast_to(jnp.asarray(theta0), (keys.shape[0], _N_PARAMS))

    def one(key_theta):
        key, theta = key_theta
        counts = jnp.bincount(jax.random.randint(key, (n,), 0, m), weights=real, length=n)
        d = data.replace(weights=counts.astype(data.weights.dtype))
        return _newton_nonneg(theta, d, delta, steps=steps, tol=BOOT_TOL, ftol=ftol)

    return chunked_vmap(one, (keys, starts), n)


_bootstrap_jit = jax.jit(bootstrap_core, static_argnames=("steps",))

#: Rounds in which the bootstrap refits still falling after their steps continue from where they
#: stopped, each round :data:`BOOT_CONTINUE_FACTOR` times the first round's steps (one compiled
#: program for every round). Only those refits run (padded to a bucket), so a table whose refits
#: crawl along a flat valley (38 % of 200 refits still falling after 60 steps on a public sweep of
#: 31 runs; none after the rounds) keeps them instead of dropping them, and a table whose refits
#: converge pays nothing.
BOOT_CONTINUE = 4
BOOT_CONTINUE_FACTOR = 4


def bootstrap(key, data: ChinchillaData, theta0, *, n_boot: int = 4000, steps: int = 60,
              delta: float = HUBER_DELTA) -> tuple[np.ndarray, int]:
    """Bootstrap refits, all ``vmap``ped: ``(theta (B_ok, 5), n_excluded)``.

    Each refit resamples the fitted rows (weight > 0) with replacement, starts from the full-data
    optimum ``theta0`` (Epoch refit from the best start) and runs ``steps`` damped-Newton
    iterations (a fixed-length scan: no batch waits for its slowest member) with the exponents
    kept >= 0 (as squares): a resample of a few noisy runs can otherwise slide to a negative
    exponent, a law that explodes beyond the runs and would blow the interval up to 1e13. A refit
    is kept when its gradient norm met :data:`BOOT_TOL` or its objective stopped falling
    (:data:`BOOT_FTOL`).
    Refits still falling continue from where they stopped, up to :data:`BOOT_CONTINUE` rounds of
    :data:`BOOT_CONTINUE_FACTOR` x ``steps`` steps; refits that are non-finite or still falling
    after that are excluded with a warning and counted.
    """
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    data = take_rows(data, np.asarray(data.weights) > 0)
    data = pad_rows(data.replace(weights=_device(np.ones(data.n), data.weights.dtype)), bucket(data.n))
    keys = jax.random.split(key, n_boot)
    with heartbeat(f"Chinchilla bootstrap ({n_boot} refits on {int(np.sum(np.asarray(data.weights) > 0))} rows)"):
        res = _bootstrap_jit(keys, jnp.asarray(theta0), data, steps, delta)
        params, loss, conv = (np.array(a) for a in (res.params, res.loss, res.converged))
        total, rounds, more = steps, 0, steps * BOOT_CONTINUE_FACTOR
        for _ in range(BOOT_CONTINUE):
            finite = np.isfinite(loss) & np.all(np.isfinite(params), axis=-1)
            todo = np.flatnonzero(finite & ~conv)
            if not todo.size:
                break
            idx = np.r_[todo, np.repeat(todo[-1], bucket(todo.size) - todo.size)]  # a bucketed batch
            r = _bootstrap_jit(keys[idx], jnp.asarray(params[idx]), data, more, delta)
            k = todo.size
            params[todo], loss[todo], conv[todo] = (np.asarray(a)[:k] for a in (r.params, r.loss, r.converged))
            total, rounds = total + more, rounds + 1
    ok = np.isfinite(loss) & np.all(np.isfinite(params), axis=-1)
    keep = ok & conv
    if (~keep).any():
        bad = np.flatnonzero(~keep)
        cont = f" (the {int((ok & ~conv).sum())} still falling were continued to {total})" if rounds else ""
        warnings.warn(
            f"Chinchilla bootstrap: {bad.size} of {n_boot} refits were non-finite or their objective was still "
            f"falling after {steps} Newton steps{cont} (first: {bad[:5].tolist()}); they are excluded from the "
            "intervals. Raise boot_steps (CLI --boot-steps) to keep them.",
            RuntimeWarning, stacklevel=2)
    return params[keep], int(n_boot - keep.sum())


def params_dict(p: ChinchillaParams) -> dict:
    """``ChinchillaParams`` -> plain dict keyed E, A, B, alpha, beta."""
    return {"E": p.E, "A": p.A, "B": p.B, "alpha": p.alpha, "beta": p.beta}
