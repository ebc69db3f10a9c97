"""The NCPL model: serialise -> (cached) MiniLM features -> ensemble head -> loss scale.

:func:`fit` trains a deep ensemble of heads on frozen-encoder features of the serialised
configurations (stage 1). The network predicts the standardised residual of the target over a
baseline: a Chinchilla law fitted on the training rows (when ``N`` and ``D`` are given), a
baseline column, or nothing. A validation set of whole cells is carved from the training rows for
early stopping and for the split-conformal interval scale. A backtest inside the training rows
(the largest runs held out) learns how to predict outside the training data and how fast the
interval widens with the distance (:mod:`jaxscale.ncpl.outside`). :func:`predict` returns the
ensemble mixture's mean and central interval on the loss scale, with the member means as
``samples`` and the distance of every query outside the training data as ``extrapolation``.
:func:`stage2` fine-tunes the encoder too (every member its own copy).
"""
from __future__ import annotations

import hashlib
import os
import warnings
from functools import lru_cache
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
from flax import nnx

from jaxscale._log import get_logger
from jaxscale._pytree import pytree_dataclass, register_serializable, static_field
from jaxscale._registry import register_moved
from jaxscale.data.validate import _where_name
from jaxscale.config import warn_if_float32
from jaxscale.infer.prediction import (
    Prediction,
    check_fit,
    check_key,
    check_level,
    warn_extrapolation,
    z_value,
)
from jaxscale.laws import (ChinchillaParams, chinchilla, chinchilla_exponent_notes, chinchilla_floor_note,
                           chinchilla_params_to_theta)
from jaxscale.ncpl import encoder as enc_mod
from jaxscale.ncpl import outside as ex
from jaxscale.ncpl.baselines import band_predictions, fit_chinchilla_law_info, law_band
from jaxscale.ncpl.data import Data, from_frame
from jaxscale.ncpl.dataset import GROUP_COLS, cell_codes, held_cells
from jaxscale.ncpl.ensemble import Members, init_members, mixture, predict_members
from jaxscale.ncpl.head import HeadConfig, NCPLHead, text_features
from jaxscale.ncpl.serialize import (
    check_token_lengths,
    placeholder_positions,
    unique_texts,
)
from jaxscale._checkpoint import array_digest
from jaxscale.ncpl.train import (
    TrainArrays,
    TrainConfig,
    train_members,
    train_scan,
)
from jaxscale.ncpl.spec import BASELINES, HANDLE_UNKNOWN, MAX_TOKENS, Spec

__all__ = [
    "Spec",
    "Fit",
    "Diagnostics",
    "Batch",
    "fit",
    "fit_core",
    "prepare",
    "predict",
    "check_known_values",
    "check_missing_values",
    "missing_cells",
    "query_data",
    "stage2",
    "fit_ncpl",
    "extrapolation",
    "HANDLE_UNKNOWN",
    "law_baseline",
    "cache_dir",
    "encoder_features",
    "member_features",
    "interval_scale",
    "calibration_note",
    "MIN_CALIBRATION_RUNS",
]

log = get_logger(__name__)

#: A nested mapping of arrays (head or encoder parameters with a leading member axis).
PyTree = Any

#: Rows (parameters + 1) the Chinchilla baseline needs.
LAW_MIN_RUNS = 6

#: Fewest validation runs whose split-conformal scale a fit is quiet about. Below it the scale is
#: one of the largest two validation errors (below 19 at 90 %, the largest), and the share of new
#: runs the interval covers varies widely with which runs were drawn: about 78-98 % (5-95 % range)
#: at 20 runs, 5-95 % (50 % on average) at one.
MIN_CALIBRATION_RUNS = 20


class Diagnostics(NamedTuple):
    """Training facts (arrays): steps run, wall/CPU seconds, throughput, row counts."""

    stage1_steps: jax.Array
    stage1_seconds: jax.Array
    stage1_examples_per_s: jax.Array
    stage1_cpu_seconds: jax.Array
    n_train: jax.Array
    n_val: jax.Array
    n_texts: jax.Array
    stage2_steps: jax.Array
    stage2_seconds: jax.Array
    stage2_examples_per_s: jax.Array
    stage2_cpu_seconds: jax.Array


@pytree_dataclass
class Fit:
    """A fitted NCPL ensemble (a pytree of arrays; save it with :func:`jaxscale.save`).

    Attributes:
      params: head parameters, a nested dict of arrays with a leading member axis.
      enc: stage-2 fine-tuned encoder parameters per member (nested dict), or ``None``.
      mean: ``(F,)`` mean of the (log10-)transformed numeric fields on the training rows.
      std: ``(F,)`` their standard deviation.
      y_mean: mean of the residual target.
      y_std: its standard deviation.
      interval_scale: split-conformal factor on the mixture std (validation cells).
      law: the Chinchilla baseline fitted on the training rows, or ``None``.
      law_band: ``(K, 5)`` the Chinchilla laws the training rows cannot tell apart from ``law``
        (:func:`~jaxscale.ncpl.baselines.law_band`; their spread at a query widens its interval),
        or ``None``.
      history: ``(k, 2)`` (step, mean validation MSE over members).
      diagnostics: :class:`Diagnostics`.
      x_range: ``(F, 2)`` training min/max of the (log10-)transformed numeric fields (NaN: no value).
      always: ``(F + T,)`` whether every training run has each numeric, then text, field.
      size_range: ``(3, 2)`` training min/max of log10 N, D and 6ND, or ``None`` without N and D.
      group_range: ``(T, V, 3, 2)`` the same among the training runs with each value of each text
        field (NaN where none), or ``None`` without N and D.
      extrap: :class:`~jaxscale.ncpl.outside.Extrapolation`, learnt by the backtest.
      converged: whether training (and the baseline law) converged (``converged_reason`` says why).
      head: the head's sizes; the graph is rebuilt from it.
      baseline: ``"law"``, ``"column"`` or ``"none"`` (what was subtracted).
      num_cols: numeric fields' columns (queries are read with the fit's fields and columns).
      num_keys: numeric fields' keys.
      num_log: whether each numeric field is log10-scaled.
      text_cols: text fields' columns.
      text_keys: text fields' keys.
      vocab: the training values of each text field.
      columns: ``(role, column)`` pairs of the training data.
      spec: the :class:`Spec` used.
      converged_reason: the optimisers' stopping reasons.
      backtest_rule: which training runs the backtest held out (or why there was none).
    """

    params: PyTree
    enc: PyTree | None
    mean: jax.Array
    std: jax.Array
    y_mean: jax.Array
    y_std: jax.Array
    interval_scale: jax.Array
    law: ChinchillaParams | None
    law_band: jax.Array | None
    history: jax.Array
    diagnostics: Diagnostics
    x_range: jax.Array
    always: jax.Array
    size_range: jax.Array | None
    group_range: jax.Array | None
    extrap: ex.Extrapolation
    converged: jax.Array
    head: HeadConfig = static_field()
    baseline: str = static_field()
    num_cols: tuple = static_field()
    num_keys: tuple = static_field()
    num_log: tuple = static_field()
    text_cols: tuple = static_field()
    text_keys: tuple = static_field()
    vocab: tuple = static_field()
    spec: Spec = static_field()
    columns: tuple = static_field()
    converged_reason: str = static_field()
    backtest_rule: str = static_field()

    @property
    def info(self) -> dict:
        """Plain-number summary (head sizes, members, steps, seconds, row counts, interval scale,
        convergence, the backtest's choices outside the training data)."""
        d = {k: float(np.asarray(v)) for k, v in self.diagnostics._asdict().items()}
        e = {k: np.asarray(v).item() for k, v in self.extrap._asdict().items()}
        e["rule"] = self.backtest_rule
        for k in [k for k, v in e.items() if isinstance(v, float) and not np.isfinite(v)]:
            e[k], e[f"{k}_reason"] = None, f"no backtest ({self.backtest_rule})"
        out = {"head": dict(self.head._asdict()), "n_members": self.spec.members, "baseline": self.baseline,
               "interval_scale": float(np.asarray(self.interval_scale)), "converged": bool(np.asarray(self.converged)),
               "converged_reason": self.converged_reason, "extrapolation_model": e}
        note = calibration_note(self)
        if note:
            out["interval_scale_note"] = note
        for k in ("stage1_steps", "n_train", "n_val", "n_texts", "stage2_steps"):
            d[k] = int(d[k])
        if not d["stage2_steps"]:
            d = {k: v for k, v in d.items() if not k.startswith("stage2")}
        out.update(d)
        return out


class Batch(NamedTuple):
    """The arrays :func:`fit_core` trains on (built by :func:`prepare`).

    ``pooled`` ``(U, H)`` and ``ctx`` ``(U, F, H)`` are the frozen encoder's features of the
    ``U`` unique serialised texts; ``train``/``val`` the training and validation rows.
    """

    pooled: jax.Array
    ctx: jax.Array
    train: TrainArrays
    val: TrainArrays


register_serializable(Diagnostics)  # HeadConfig is registered by jaxscale.ncpl.head, ChinchillaParams by
# jaxscale.laws, Extrapolation by jaxscale.ncpl.outside
register_moved(Spec, __name__)  # defined here before it moved to .spec


# ----------------------------------------------------------------------------- encoder features
def cache_dir() -> Path:
    """Folder of cached encoder features and bundled-model fits (``$JAXSCALE_CACHE/ncpl``)."""
    d = Path(os.environ.get("JAXSCALE_CACHE", "~/.cache/jaxscale")).expanduser() / "ncpl"
    d.mkdir(parents=True, exist_ok=True)
    return d


_ENC = {}


def _encoder():
    if "m" not in _ENC:
        _ENC["m"] = enc_mod.load_minilm()
    return _ENC["m"]


def _token_ids(texts, num_keys, max_tokens: int):
    ids = enc_mod.tokenize(texts, max_len=10**9)
    lengths = np.array([len(i) for i in ids])
    check_token_lengths(texts, lengths, max_tokens, field_parts={k: k for k in num_keys})
    return ids


def encoder_features(texts: list[str], num_keys, max_tokens: int = MAX_TOKENS):
    """Frozen-encoder features of ``texts``: pooled ``(U, H)``, field contexts ``(U, F, H)``, float32.

    Cached on disk (``cache_dir()/feat_<hash>.npz``) and recomputed when absent.
    """
    tag = hashlib.sha256(("\n".join(texts) + repr(list(num_keys))).encode()).hexdigest()[:16]
    path = cache_dir() / f"feat_{tag}.npz"
    if path.exists():
        with np.load(path, allow_pickle=False) as z:
            return z["pooled"], z["ctx"]
    ids = _token_ids(texts, num_keys, max_tokens)
    pos = placeholder_positions(num_keys, texts, ids)
    arr, mask = enc_mod.pad_batch(ids)
    hidden = enc_mod._forward(_encoder(), jnp.asarray(arr), jnp.asarray(mask))
    pooled, ctx = text_features(hidden, jnp.asarray(mask), jnp.asarray(pos))
    pooled, ctx = np.asarray(pooled, np.float32), np.asarray(ctx, np.float32)
    tmp = path.with_suffix(f".{os.getpid()}.tmp.npz")
    np.savez(tmp, pooled=pooled, ctx=ctx)
    os.replace(tmp, path)
    return pooled, ctx


def member_features(texts: list[str], num_keys, enc: PyTree, max_tokens: int = MAX_TOKENS):
    """Per-member (pooled, ctx) from stage-2 fine-tuned encoders: ``(M, U, H)``, ``(M, U, F, H)``."""
    ids = _token_ids(texts, num_keys, max_tokens)
    pos = jnp.asarray(placeholder_positions(num_keys, texts, ids))
    arr, mask = (jnp.asarray(a) for a in enc_mod.pad_batch(ids))
    gd, abstract = nnx.split(_encoder())
    params = _to_state(abstract, enc)

    @jax.jit
    def feats(p):
        return text_features(nnx.merge(gd, p)(arr, mask), mask, pos)

    pooled, ctx = jax.lax.map(feats, params)
    return np.asarray(pooled), np.asarray(ctx)


# ----------------------------------------------------------------------------- parameters
def _pure(state, leaf=np.asarray):
    """An nnx State as a nested dict with str keys (nnx numbers list entries), leaves ``leaf(x)``."""
    def conv(tree):
        if isinstance(tree, dict):
            return {str(k): conv(v) for k, v in tree.items()}
        return leaf(tree)

    return conv(nnx.to_pure_dict(state))


def _match_keys(template, tree):
    """``tree`` (str keys, as saved) with the keys of ``template`` (nnx uses ints for lists)."""
    if isinstance(template, dict):
        if not isinstance(tree, dict) or {str(k) for k in template} != set(tree):
            raise ValueError("saved NCPL parameters do not match the head's structure; the model file is damaged")
        return {k: _match_keys(template[k], tree[str(k)]) for k in template}
    return tree


def _to_state(abstract, pure):
    """An nnx State with the structure of ``abstract`` and the arrays of ``pure``."""
    state = jax.tree.map(lambda x: x, abstract)
    nnx.replace_by_pure_dict(state, _match_keys(nnx.to_pure_dict(abstract), pure))
    return state


@lru_cache(maxsize=32)
def _head_graph(cfg: HeadConfig):
    """(graphdef, abstract state) of one head; cached so predictions reuse the compiled apply."""
    return nnx.split(nnx.eval_shape(lambda: NCPLHead(cfg, rngs=nnx.Rngs(0))))


def _members(fit: Fit) -> Members:
    gd, abstract = _head_graph(fit.head)
    return Members(gd, _to_state(abstract, fit.params))


# ----------------------------------------------------------------------------- baseline
def _resolve_baseline(spec: Spec, data: Data) -> str:
    if spec.baseline not in BASELINES:
        raise ValueError(f"Spec.baseline must be one of {BASELINES}, got {spec.baseline!r}")
    has_nd = data.N is not None and data.D is not None
    if spec.baseline == "column" and data.base is None:
        raise ValueError("Spec(baseline='column') needs a baseline column: from_frame(..., baseline_col=...) "
                         "(CLI: --baseline-col)")
    if spec.baseline == "law" and not has_nd:
        raise ValueError("Spec(baseline='law') needs N and D: from_frame(..., n_col=..., d_col=...) "
                         "(CLI: --n-col/--d-col)")
    if spec.baseline == "auto":
        return "column" if data.base is not None else ("law" if has_nd else "none")
    return spec.baseline


def _role(data, role: str, default: str) -> str:
    return dict((r, c) for r, c in reversed(data.columns)).get(role, default)


LAW_WHAT = "NCPL's Chinchilla baseline (fitted on the training rows; the network learns the residual over it)"


def _fit_law(data: Data, what: str = LAW_WHAT):
    """The Chinchilla baseline on the training rows: ``LawFit``; refuses underdetermined data.
    ``what`` names the law in the warning given when its floor E goes to 0."""
    N, D, y = (np.asarray(a, float) for a in (data.N, data.D, data.y))
    ncol, dcol, ycol = _role(data, "n", "N"), _role(data, "d", "D"), _role(data, "target", "target")
    fix = "or fit without the law (Spec(baseline='none'), CLI: --baseline none)"
    for name, col, a in (("N", ncol, N), ("D", dcol, D)):
        values = np.unique(a)
        if values.size < 2:
            raise ValueError(f"underdetermined Chinchilla baseline: need >= 2 distinct values of {col!r} ({name}) "
                             f"in the training rows, have {values.size} ({values[0]:.4g}); add runs of other "
                             f"{'sizes' if name == 'N' else 'token budgets'} {fix}")
    if N.size < LAW_MIN_RUNS:
        raise ValueError(f"{N.size} training runs for the 5 parameters of the Chinchilla baseline: need >= "
                         f"{LAW_MIN_RUNS}; add runs {fix}")
    bad = ~(y > 0)
    if bad.any():
        raise ValueError(f"target {ycol!r} has {int(bad.sum())} value(s) <= 0 at rows {data.rows(bad)}: the Chinchilla "
                         f"baseline fits log L, so losses must be > 0; fix those rows {fix}")
    # in units of the geometric means of N and D, so one grid of starts suits any scale
    fit = fit_chinchilla_law_info(N, D, y)
    note = chinchilla_floor_note(fit.params.E, y.min())
    if note:
        warnings.warn(f"{what}: {note}", RuntimeWarning, stacklevel=3)
    for msg in chinchilla_exponent_notes(chinchilla_params_to_theta(fit.params), np.log(N), np.log(D), ncol, dcol):
        warnings.warn(f"{what}: {msg}", RuntimeWarning, stacklevel=3)
    return fit


def _base_values(kind: str, law, data: Data) -> np.ndarray:
    if kind == "column":
        return np.asarray(data.base, float)
    if kind == "law":
        return np.asarray(chinchilla(law, np.asarray(data.N, float), np.asarray(data.D, float), xp=np), float)
    return np.zeros(data.n_rows)


def law_baseline(fit: Fit, query) -> np.ndarray:
    """The baseline the fit subtracted, at the query rows (loss scale; zeros for ``"none"``)."""
    data = query if isinstance(query, Data) else query_data(fit, query)
    return _base_values(fit.baseline, fit.law, data)


# ----------------------------------------------------------------------------- preparation
class _Prepared(NamedTuple):
    batch: Batch
    baseline: str
    law: Any
    law_fit: Any
    band: Any
    y_mean: float
    y_std: float
    mean: np.ndarray
    std: np.ndarray
    n_texts: int


def _standardise(data: Data, mean, std, x_range=None) -> np.ndarray:
    """Standardised numeric fields (0 where absent); with ``x_range``, at the nearest training edge."""
    x = data.transformed()
    if x_range is not None:
        rng = np.asarray(x_range, float)
        with np.errstate(invalid="ignore"):
            x = np.where(np.isfinite(rng[:, 0]), np.maximum(x, rng[:, 0]), x)
            x = np.where(np.isfinite(rng[:, 1]), np.minimum(x, rng[:, 1]), x)
    return np.where(np.isfinite(x), (x - mean) / std, 0.0).astype(np.float32)


def _check_data(data: Data) -> None:
    if not isinstance(data, Data):
        raise ValueError(f"fit expects a jaxscale.ncpl.Data (from_frame), got {type(data).__name__}")
    y = np.asarray(data.y, float)
    target = _role(data, "target", "target")
    bad = ~np.isfinite(y)
    if bad.any():
        raise ValueError(f"the target {target!r} is missing or non-finite in {int(bad.sum())} of {y.size} row(s) "
                         f"(rows {data.rows(bad)}); fit needs a target on every row: leave those rows out and "
                         "predict them")
    if data.n_rows < 3:
        raise ValueError(f"fit needs >= 3 runs, got {data.n_rows}")
    if np.ptp(y) == 0:
        raise ValueError(f"the target {target!r} takes the same value ({y[0]:.6g}) in every training row: there is "
                         "nothing to learn; check the target column (--target-col)")
    x, present = data.transformed(), np.asarray(data.present, bool)
    varies = [c for j, c in enumerate(data.num_cols)
              if np.unique(x[present[:, j], j]).size > 1 or 0 < present[:, j].sum() < data.n_rows]
    varies += [c for j, c in enumerate(data.text_cols) if np.unique(np.asarray(data.codes)[:, j]).size > 1]
    if not varies:
        raise ValueError(f"no configuration column varies across the {data.n_rows} training rows (fields "
                         f"{list(data.text_cols) + list(data.num_cols)}): the network could only learn a constant. "
                         "Add the columns that differ between runs (--text-cols/--num-cols), or fit a law alone "
                         "(jaxscale chinchilla fit)")


def _prepare(k_val, data: Data, spec: Spec, law_what: str = LAW_WHAT) -> _Prepared:
    _check_data(data)
    kind = _resolve_baseline(spec, data)
    law_fit = _fit_law(data, law_what) if kind == "law" else None
    law = law_fit.params if law_fit is not None else None
    band = law_band(data.N, data.D, data.y, law_fit, level=spec.coverage) if law_fit is not None else None
    y = np.asarray(data.y, float) - _base_values(kind, law, data)
    bad = ~np.isfinite(y)
    if bad.any():
        raise ValueError(f"target minus baseline is non-finite in {int(bad.sum())} row(s) (rows {data.rows(bad)}); "
                         "check the baseline column or N/D there")
    y_mean, y_std = float(y.mean()), float(y.std() + 1e-12)
    x = data.transformed()
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-empty field: nanmean of nothing
        mean = np.nanmean(x, 0) if x.size else np.zeros(0)
        std = np.nanstd(x, 0) if x.size else np.zeros(0)
    mean = np.nan_to_num(mean)
    std = np.where(np.isfinite(std) & (std > 1e-12), std, 1.0)
    values = np.where(np.isfinite(x), (x - mean) / std, 0.0).astype(np.float32)
    present = np.asarray(data.present, bool).astype(np.float32)
    is_val = held_cells(k_val, data.group, spec.val_frac)
    texts, text_id = unique_texts(data.texts())
    pooled, ctx = encoder_features(texts, data.num_keys, spec.max_tokens)
    yz = ((y - y_mean) / y_std).astype(np.float32)

    def arrays(m):
        return TrainArrays(jnp.asarray(text_id[m]), jnp.asarray(values[m]), jnp.asarray(present[m]),
                           jnp.asarray(yz[m], jnp.float32))

    batch = Batch(jnp.asarray(pooled), jnp.asarray(ctx), arrays(~is_val), arrays(is_val))
    return _Prepared(batch, kind, law, law_fit, band, y_mean, y_std, mean, std, len(texts))


def prepare(key, data: Data, spec: Spec = Spec()) -> Batch:
    """Host side of :func:`fit` up to the arrays :func:`fit_core` trains on: baseline, residual
    standardisation, validation cells (from ``key`` as in :func:`fit`), encoder features."""
    return _prepare(jax.random.split(key, 3)[0], data, spec).batch


def fit_core(key, batch: Batch, spec: Spec = Spec()):
    """The pure numerical core of stage 1: initialise ``spec.members`` heads and run every
    AdamW step on the ensemble loss (Gaussian NLL + MSE of the standardised residual) in one
    ``lax.scan``, keeping each member's best-on-validation parameters.

    Same batches and updates as :func:`fit` (which runs these steps host-driven, in chunks, to
    stop early and write checkpoints); without the early-stopping break and the backtest.
    jit-able with ``spec`` static, vmap-able over keys:
    ``jax.vmap(lambda k: fit_core(k, batch, spec))(keys)``.

    Args:
      key: the same key as :func:`fit` (split into validation, init and batch-order keys).
      batch: :func:`prepare` output.
      spec: a :class:`Spec`.

    Returns:
      ``(params, val_history)``: head parameters (nested dict as in :attr:`Fit.params`, leading
      member axis) and the ``(steps // eval_every, members)`` validation MSEs.
    """
    if isinstance(batch, Data):
        raise ValueError("ncpl.fit_core takes the encoded batch of ncpl.prepare(key, data, spec), not the Data of "
                         "from_frame (the text encoder runs once, outside the compiled core): "
                         "fit_core(key, ncpl.prepare(key, data, spec), spec)")
    _, k_init, k_train = jax.random.split(key, 3)
    cfg = spec.head_config(int(batch.train.values.shape[-1]), int(batch.pooled.shape[-1]))
    members = init_members(k_init, cfg, spec.members)
    state, history = train_scan(k_train, members, {"pooled": batch.pooled, "ctx": batch.ctx}, batch.train,
                                batch.val, spec.train_config()._replace(ckpt_every=0, ckpt_dir=None))
    return _pure(state.best_params["head"], leaf=lambda x: x), history


def _check_spec(spec: Spec) -> None:
    if not isinstance(spec, Spec):
        raise ValueError(f"spec must be a jaxscale.ncpl.Spec, got {type(spec).__name__}")
    if spec.members < 1:
        raise ValueError(f"Spec.members must be >= 1, got {spec.members}")
    if not 0.0 < spec.coverage < 1.0:
        raise ValueError(f"Spec.coverage must be in (0, 1), got {spec.coverage}")
    limit = enc_mod.EncoderConfig().max_positions
    if not 8 <= spec.max_tokens <= limit:
        raise ValueError(f"Spec.max_tokens must be in [8, {limit}] (the encoder has {limit} positions), got "
                         f"{spec.max_tokens}")
    if not 0.0 <= spec.backtest_frac < 0.5:
        raise ValueError(f"Spec.backtest_frac must be in [0, 0.5), got {spec.backtest_frac}")


def _check_backtest_col(data: Data, spec: Spec) -> None:
    """Raise, before any training, when ``spec.backtest_col`` is not a numeric field of ``data``."""
    col = spec.backtest_col
    if col is None or col in data.num_cols:
        return
    roles = {c: r for r, c in data.columns}
    why = {"text": "it is read as text; read it as numbers (num_cols, CLI --num-cols)",
           "n": "it is the parameter count: leave backtest_col unset and the backtest holds out the largest N",
           "d": "it is the token count: leave backtest_col unset and the backtest holds out the largest runs"}.get(
        roles.get(col), "it is not a configuration column of the fit")
    raise ValueError(f"Spec.backtest_col={col!r} (CLI --backtest-col): {why}. The numeric configuration columns "
                     f"are {list(data.num_cols)}")


def _fingerprint(key, data: Data, spec: Spec, part: str) -> dict:
    """What a fit's checkpoints depend on: the data, the settings and the seed."""
    statics = repr((data.num_cols, data.num_keys, data.num_log, data.text_cols, data.text_keys, data.vocab,
                    data.columns)).encode()
    data_hash = array_digest(data.replace(index=np.zeros(0, np.int64)), np.frombuffer(statics, np.uint8))
    return {"part": part, "data": data_hash, "n_rows": data.n_rows,
            "spec": {k: v for k, v in spec._asdict().items() if not k.startswith("ckpt")},
            "seed": [int(v) for v in np.asarray(jax.random.key_data(key)).ravel()]}


def _ranges(data: Data):
    """Training ranges: ``x_range`` (F, 2), ``always`` (F + T,), ``size_range`` (3, 2) and
    ``group_range`` (T, V, 3, 2) (both None without N and D)."""
    x = data.transformed()
    present = np.asarray(data.present, bool)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        x_range = np.stack([np.nanmin(x, 0), np.nanmax(x, 0)], 1) if x.size else np.zeros((x.shape[1], 2))
    always = np.concatenate([present.all(0), (np.asarray(data.codes) >= 0).all(0)])
    size = group = None
    if data.N is not None and data.D is not None:
        size = ex.size_range(data.N, data.D)
        group = ex.group_size_range(data.N, data.D, data.codes, max([len(v) for v in data.vocab], default=1))
    return np.asarray(x_range, float).reshape(-1, 2), always, size, group


def _stage1(key, data: Data, spec: Spec, desc: str, part: str, law_what: str = LAW_WHAT):
    """Stage-1 ensemble on ``data`` (no backtest): ``(Fit, TrainResult, law fit)``."""
    k_val, k_init, k_train = jax.random.split(key, 3)
    prep = _prepare(k_val, data, spec, law_what)
    b = prep.batch
    n_train, n_val = int(b.train.y.shape[0]), int(b.val.y.shape[0])
    if spec.batch_size > n_train:
        log.info("batch_size %d > %d training rows: every step uses all of them", spec.batch_size, n_train)
    cfg = spec.head_config(len(data.num_cols), int(b.pooled.shape[-1]))
    members = init_members(k_init, cfg, spec.members)
    tcfg = spec.train_config()
    if tcfg.ckpt_dir and part != "model":
        tcfg = tcfg._replace(ckpt_dir=str(Path(tcfg.ckpt_dir) / part))
    res = train_members(k_train, members, {"pooled": b.pooled, "ctx": b.ctx}, b.train, b.val, tcfg, desc=desc,
                        fingerprint=_fingerprint(key, data, spec, part))
    if res.resumed_from:  # the time and rate are those of the steps run now
        log.info("%s: resumed at step %d of its checkpoint, %d more steps in %.1f s (%.0f examples/s)", desc,
                 res.resumed_from, res.steps - res.resumed_from, res.seconds, res.examples_per_s)
    else:
        log.info("%s: %d steps in %.1f s (%.0f examples/s)", desc, res.steps, res.seconds, res.examples_per_s)
    fitted = Members(members.graphdef, res.params["head"])
    scale = interval_scale(fitted, b.pooled, b.ctx, b.val, b.val.y, spec.coverage)
    nan = np.asarray(np.nan)
    diag = Diagnostics(np.asarray(res.steps), np.asarray(res.seconds), np.asarray(res.examples_per_s),
                       np.asarray(res.cpu_seconds), np.asarray(n_train), np.asarray(n_val), np.asarray(prep.n_texts),
                       np.asarray(0), nan, nan, nan)
    x_range, always, size, group = _ranges(data)
    reasons = [f"ensemble: {res.reason}"]
    converged = bool(res.converged)
    if prep.law_fit is not None:
        converged &= bool(prep.law_fit.converged)
        reasons.append(f"baseline law: {prep.law_fit.reason}")
    fitted = Fit(params=_pure(res.params["head"]), enc=None, mean=np.asarray(prep.mean, float),
                 std=np.asarray(prep.std, float), y_mean=np.asarray(prep.y_mean), y_std=np.asarray(prep.y_std),
                 interval_scale=np.asarray(scale), law=prep.law, law_band=prep.band, history=np.asarray(res.history, float).reshape(-1, 2),
                 diagnostics=diag, x_range=x_range, always=always, size_range=size, group_range=group,
                 extrap=ex.no_extrapolation(),
                 converged=np.asarray(converged), head=cfg, baseline=prep.baseline, num_cols=data.num_cols,
                 num_keys=data.num_keys, num_log=data.num_log, text_cols=data.text_cols, text_keys=data.text_keys,
                 vocab=data.vocab, spec=spec, columns=tuple(c for c in data.columns if c[0] != "skipped"),
                 converged_reason="; ".join(reasons), backtest_rule="none")
    return fitted, res, prep.law_fit


def fit(key, data: Data, spec: Spec = Spec()) -> Fit:
    """Stage-1 training of an ensemble on ``data`` (validation cells carved from its rows), then
    the backtest that learns how to predict outside the training data (see :class:`Spec`).

    Args:
      key: PRNG key (validation cells, head initialisation, batch orders; the backtest uses
        ``fold_in(key, 1)``).
      data: training runs (:func:`~jaxscale.ncpl.data.from_frame`), every row with a target.
      spec: :class:`Spec`.

    Returns:
      :class:`Fit`. Warns (``UserWarning``) when training or the baseline law did not converge, and
      when the interval's scale rests on fewer than :data:`MIN_CALIBRATION_RUNS` validation runs
      (:func:`calibration_note`).

    Raises:
      ValueError: missing targets, a constant target, no configuration column that varies, a
      Chinchilla baseline on fewer than 6 runs or on a single N or D, losses <= 0 under the law,
      non-finite training, or a checkpoint folder written by another fit.
    """
    check_key(key, "NCPL fit: key")
    warn_if_float32("NCPL fit")
    _check_spec(spec)
    _check_backtest_col(data, spec)
    model, _, _ = _stage1(key, data, spec, "ncpl stage 1", "model")
    extrap, rule = _backtest(jax.random.fold_in(key, 1), data, spec, model.baseline)
    model = model.replace(extrap=extrap, backtest_rule=rule)
    note = calibration_note(model)
    if note:
        warnings.warn(f"NCPL: {note}", UserWarning, stacklevel=2)
    if not bool(np.asarray(model.converged)):
        warnings.warn(f"NCPL training did not converge ({model.converged_reason}); its predictions may be off",
                      UserWarning, stacklevel=2)
    return model


def _backtest(key, data: Data, spec: Spec, baseline: str):
    """``(Extrapolation, rule)``: the behaviour outside the training data learnt on held-out largest runs."""
    if spec.backtest_frac <= 0:
        return ex.no_extrapolation(), "none (Spec.backtest_frac = 0)"
    if spec.backtest_col is None and (data.N is None or data.D is None):
        return ex.no_extrapolation(), ("none: needs N and D (n_col/d_col) to know which runs are larger, or "
                                       "backtest_col naming the numeric field to hold out along")
    if data.n_rows < ex.MIN_TRAINING_RUNS:
        return ex.no_extrapolation(), f"none: {data.n_rows} training runs (< {ex.MIN_TRAINING_RUNS})"
    if spec.backtest_col is None:
        future, rule = ex.future_rows(data.N, data.D, spec.backtest_frac, 2 if baseline == "law" else 1)
    else:
        j = data.num_cols.index(spec.backtest_col)
        future, rule = ex.future_rows_along(np.asarray(data.values)[:, j], np.asarray(data.present)[:, j],
                                            spec.backtest_frac, spec.backtest_col)
    if future.sum() < 5 or (~future).sum() < ex.MIN_BACKTEST_RUNS:
        return ex.no_extrapolation(), f"none: {rule} leaves too few runs on one side"
    past = jax.tree.map(lambda a: a[~future], data)
    fut = jax.tree.map(lambda a: a[future], data)
    try:
        what = (f"the backtest's Chinchilla baseline (fitted on the training runs left after holding out {rule}, "
                f"to learn how predictions fare beyond the data; the model's own law is fitted on every training run)")
        bt, _, _ = _stage1(key, past, spec._replace(baseline=baseline), "ncpl backtest", "backtest", what)
    except ValueError as exc:  # e.g. the remaining runs cannot fit the law
        why = f"none: the runs left after holding out {rule} cannot be fitted ({exc})"
        warnings.warn(f"NCPL: no extrapolation backtest, so the intervals beyond the training runs are not widened: "
                      f"{why}", UserWarning, stacklevel=3)
        return ex.no_extrapolation(), why
    codes = np.asarray(past.codes)
    seen = [set(np.unique(codes[:, j]).tolist()) for j in range(codes.shape[1])]
    fcodes = np.asarray(fut.codes)
    unseen = np.stack([np.array([c >= 0 and c not in seen[j] for c in fcodes[:, j]], bool)
                       for j in range(fcodes.shape[1])], 1) if fcodes.shape[1] else np.zeros((fut.n_rows, 0), bool)
    d, _ = _distance(bt, fut, unseen)
    plain, clipped = _member_outputs(bt, fut, clip=False), _member_outputs(bt, fut, clip=True)
    ys = float(np.asarray(bt.y_std))
    _, std_z = mixture(*clipped)
    std = ys * std_z * float(np.asarray(bt.interval_scale))
    z = float(z_value(spec.coverage))
    shift, half = _band(bt, fut)
    chosen = ex.choose(np.asarray(fut.y, float), _base_values(bt.baseline, bt.law, fut) + shift,
                       float(np.asarray(bt.y_mean)), ys, plain[0], clipped[0], std, d, spec.coverage, z, half)
    log.info("backtest on %s: clip=%s shrink=%g tau=%.3g (MAE %.4g, plain %.4g, baseline %.4g; coverage %.2f)",
             rule, bool(chosen.clip), float(chosen.shrink), float(chosen.tau), float(chosen.backtest_mae),
             float(chosen.backtest_mae_plain), float(chosen.backtest_mae_baseline), float(chosen.backtest_coverage))
    return chosen, rule


def interval_scale(members: Members, pooled, ctx, val, y_val, coverage: float = 0.9) -> float:
    """Split-conformal scale of the predictive std from the carved validation rows: the
    ``coverage`` quantile of |y - mean| / std, divided by the Gaussian z of that level. It
    calibrates the interval inside the training data (and may narrow an over-wide ensemble); the
    growth outside the data is learnt separately by the backtest."""
    from scipy.stats import norm

    mu, ls = predict_members(members, pooled, ctx, val.text_id, val.values, val.present)
    mean, std = mixture(mu, ls)
    z = np.abs(np.asarray(y_val, float) - mean) / np.maximum(std, 1e-12)
    n = z.size
    q = np.quantile(z, min(1.0, np.ceil((n + 1) * coverage) / n))
    return float(max(q / norm.ppf(0.5 + coverage / 2), 1e-3))


def calibration_note(fit: Fit) -> str | None:
    """Why ``fit``'s interval is unreliable inside the training data, or None: its split-conformal
    scale (:func:`interval_scale`) rests on fewer than :data:`MIN_CALIBRATION_RUNS` validation
    runs. With ``n`` runs the scale is the ``k = ceil((n + 1) coverage)``-th smallest of their
    scaled errors (the largest when ``k`` exceeds ``n``), and the share of new, exchangeable runs the interval
    covers is then Beta(k, n + 1 - k) distributed over draws of those runs; the note gives its
    5-95 % range and what would help. The stored fit is not changed."""
    from scipy.stats import beta

    d = fit.diagnostics
    n_val, n_train = int(np.asarray(d.n_val)), int(np.asarray(d.n_train))
    if n_val >= MIN_CALIBRATION_RUNS:
        return None
    cov = float(fit.spec.coverage)
    level = f"{100 * cov:.3g} %"
    which = "one of their largest errors"
    if n_val > 0:
        k = min(int(np.ceil((n_val + 1) * cov)), n_val)
        which = ("the largest of their scaled errors" if k == n_val
                 else f"their scaled error of rank {k} of {n_val} (from the smallest)")
        lo, hi = beta.ppf([0.05, 0.95], k, n_val + 1 - k)
        spread = (f"; over draws of {n_val} such run(s) the {level} interval covers {100 * k / (n_val + 1):.0f} % "
                  f"of new runs like them on average, anywhere from about {100 * lo:.0f} to {100 * hi:.0f} % "
                  "(5-95 % range), and less of runs unlike them")
    else:
        spread = ""
    need = int(np.ceil(MIN_CALIBRATION_RUNS / fit.spec.val_frac))
    law = ("" if fit.baseline != "none" else
           f", fit with a Chinchilla baseline (N and D: --n-col/--d-col, without --baseline none; at least "
           f"{LAW_MIN_RUNS} runs) so the network learns only the residual of the law's trend")
    return (f"the {level} interval's scale ({float(np.asarray(fit.interval_scale)):.3g}, split-conformal) was set "
            f"on {n_val} validation run(s) carved from the {n_train + n_val} training runs (Spec.val_frac = "
            f"{fit.spec.val_frac:g}, CLI --val-frac), fewer than {MIN_CALIBRATION_RUNS}: it is {which}{spread}. "
            f"The interval is unreliable: add runs (about {need} training runs give {MIN_CALIBRATION_RUNS} validation "
            f"runs at this val_frac){law}, and check its coverage on held-out runs (CLI --holdout)")


# ----------------------------------------------------------------------------- prediction
def query_data(fit: Fit, df: pd.DataFrame) -> Data:
    """Read query rows with the fit's columns (the target is optional): the :class:`Data` that
    :func:`predict`, :func:`extrapolation` and :func:`missing_cells` read, built (and its text
    tokenised) once when a caller needs more than one of them."""
    roles = {}
    for role, col in fit.columns:
        roles.setdefault(role, col)
    num = [f for f in _num_fields(fit)]
    sized = fit.baseline == "law" or fit.size_range is not None
    return from_frame(df, target_col=roles.get("target"), require_target=False,
                      text_cols=tuple(zip(fit.text_keys, fit.text_cols)), num_cols=tuple(num),
                      n_col=roles.get("n") if sized else None, d_col=roles.get("d") if sized else None,
                      baseline_col=roles.get("baseline") if fit.baseline == "column" else None,
                      max_tokens=fit.spec.max_tokens, what="query runs")


def _num_fields(fit: Fit | Data):
    """The numeric fields of a fit (or of its training data) as :class:`NumField` s."""
    from jaxscale.ncpl.serialize import NumField

    return [NumField(k, c, bool(lg)) for k, c, lg in zip(fit.num_keys, fit.num_cols, fit.num_log)]


def _check_query(fit: Fit, data: Data) -> None:
    if (data.num_cols, data.num_keys, tuple(map(bool, data.num_log))) != \
            (fit.num_cols, fit.num_keys, tuple(map(bool, fit.num_log))) or data.text_keys != fit.text_keys:
        raise ValueError(f"query fields differ from the fit's: numeric {list(data.num_cols)} vs {list(fit.num_cols)}, "
                         f"text {list(data.text_cols)} vs {list(fit.text_cols)}; build the query with the fit's "
                         "columns (pass a DataFrame to predict)")
    if fit.baseline == "law" and (data.N is None or data.D is None):
        raise ValueError("this fit subtracts a Chinchilla law: the query needs N and D (from_frame n_col/d_col)")
    if fit.baseline == "column" and data.base is None:
        raise ValueError("this fit subtracts a baseline column: the query needs it (from_frame baseline_col)")


def _empty_cells(always, data: Data, what: str) -> pd.DataFrame:
    """The empty config cells of ``data``: a boolean frame, one column per numeric then text field,
    indexed by the rows' labels. ``always`` (``(F + T,)``) says which fields every training run had.

    Raises:
      ValueError: an empty cell in a field every training run had. The model reads an empty cell as
      the field left out of the run's text; it learnt what that means only for a field that some
      training runs also left empty, so elsewhere the prediction would silently describe another run.
    """
    empty = np.concatenate([~np.asarray(data.present, bool), np.asarray(data.codes) < 0], 1).reshape(data.n_rows, -1)
    cols = list(data.num_cols) + list(data.text_cols)
    never = empty & np.asarray(always, bool).reshape(1, -1)
    if never.any():
        hit = [j for j in range(len(cols)) if never[:, j].any()]
        parts = [f"column {cols[j]!r} is empty in {int(never[:, j].sum())} row(s) at rows {data.rows(never[:, j])}"
                 for j in hit]
        one = len(hit) == 1
        cond = " and ".join(f"{_where_name(cols[j])}.notna()" for j in hit)
        bad_rows = never.any(1)
        names = ", ".join(repr(cols[j]) for j in hit)
        raise ValueError(
            f"{what}: {'; '.join(parts)}, but every training run had a value there, so the model never learnt what "
            "a run without it means (the field would be left out of the run's text and the prediction silently "
            f"change). Fill in the value{'' if one else 's'} the runs use, or leave those rows out (e.g. --where "
            f"\"{cond}\", which leaves out {int(bad_rows.sum())} of {data.n_rows} rows). To predict runs whose value "
            f"is unknown, retrain with some training runs that leave {names} empty: the model then learns to read an "
            "empty cell.")
    return pd.DataFrame(empty, index=pd.Index(np.asarray(data.index)), columns=cols)


def missing_cells(fit: Fit, query, what: str = "query runs") -> pd.DataFrame:
    """The empty config cells of the query runs that ``fit`` reads as it was trained to.

    An empty cell leaves its field out of the run's text. That is how the model was trained on the
    fields some training runs left empty, so such a cell is predicted as trained (and counted here:
    the command line reports them); an empty cell in a field every training run had raises.

    Args:
      fit: a :class:`Fit`.
      query: a :class:`~jaxscale.ncpl.data.Data` or a DataFrame (as for :func:`predict`).
      what: the query's name in the error message.

    Returns:
      A boolean frame, one column per numeric then text config field, indexed like the query's rows
      (lines of the file for frames from :func:`jaxscale.data.read_table`): ``True`` where empty.

    Raises:
      ValueError: an empty cell in a field every training run had (names the column, the rows,
      the count and the fix).
    """
    data = query if isinstance(query, Data) else query_data(fit, query)
    _check_query(fit, data)
    return _empty_cells(fit.always, data, what)


def check_missing_values(train: Data, df: pd.DataFrame, what: str = "query") -> pd.DataFrame:
    """Raise, before a long fit, the error :func:`predict` would raise after it: rows of ``df``
    (runs to score or predict later) with an empty cell in a config field every run of ``train``
    has, or without ``N``/``D`` when ``train`` has them. Returns the empty cells (see
    :func:`missing_cells`); ``what`` names the rows."""
    if not len(df):
        return pd.DataFrame(np.zeros((0, len(train.num_cols) + len(train.text_cols)), bool),
                            columns=list(train.num_cols) + list(train.text_cols))
    roles = dict(train.columns)
    sized = train.N is not None and "n" in roles
    query = from_frame(df, target_col=None, require_target=False,
                       text_cols=tuple(zip(train.text_keys, train.text_cols)), num_cols=tuple(_num_fields(train)),
                       n_col=roles.get("n") if sized else None, d_col=roles.get("d") if sized else None,
                       max_tokens=10**9, what=what)
    always = np.concatenate([np.asarray(train.present, bool).all(0), (np.asarray(train.codes) >= 0).all(0)])
    return _empty_cells(always, query, what)


def check_known_values(train: Data, df: pd.DataFrame, handle_unknown: str = "error", what: str = "query") -> None:
    """Raise, before a long fit, the error :func:`predict` would raise after it: rows of ``df``
    (runs to score or predict later) whose text value in a field of ``train`` never occurs in
    ``train``. Does nothing unless ``handle_unknown="error"``; ``what`` names the rows."""
    if handle_unknown != "error" or not len(df) or not train.text_cols:
        return
    query = from_frame(df[list(train.text_cols) + list(train.num_cols)], target_col=None, require_target=False,
                       text_cols=tuple(zip(train.text_keys, train.text_cols)), num_cols=tuple(_num_fields(train)),
                       max_tokens=10**9)
    _align_vocab(train.text_cols, train.vocab, query, handle_unknown, what)


def _align_vocab(text_cols, known_vocab, data: Data, handle_unknown: str, what: str = "query"):
    """The query's text codes in the fit's vocabularies (``text_cols``, ``known_vocab``):
    ``(data, unseen (n, T) bool)``.

    A value the fit never saw raises (``"error"``), is appended to the vocabulary so the encoder
    reads it (``"encode"``), or is left out of the run's text (``"ignore"``)."""
    if handle_unknown not in HANDLE_UNKNOWN:
        raise ValueError(f"handle_unknown must be one of {HANDLE_UNKNOWN}, got {handle_unknown!r}")
    codes = np.asarray(data.codes).copy()
    unseen = np.zeros(codes.shape, bool)
    vocab = []
    for j, (col, known) in enumerate(zip(text_cols, known_vocab)):
        pos = {v: i for i, v in enumerate(known)}
        qv = list(data.vocab[j])
        new = [v for v in qv if v not in pos]
        extra = {v: len(known) + i for i, v in enumerate(new)}
        lookup = np.array([pos.get(v, extra.get(v)) for v in qv] + [-1], np.int64)
        c = codes[:, j]
        mapped = lookup[np.where(c >= 0, c, len(qv))]
        unseen[:, j] = mapped >= len(known)
        if unseen[:, j].any() and handle_unknown == "error":
            raise ValueError(
                f"{what}: column {col!r} has {int(unseen[:, j].sum())} row(s) with value(s) never seen in training "
                f"{sorted(set(new))[:10]} at rows {data.rows(unseen[:, j])}; known values: {list(known)[:20]}. The "
                "text encoder can read a new value, but the model never saw its effect: fix the spelling, or "
                "predict anyway with handle_unknown='encode' (the value is written into the text) or 'ignore' (the "
                "field is left out of those runs' text) (CLI: --handle-unknown encode|ignore)")
        if handle_unknown == "ignore":
            mapped = np.where(unseen[:, j], -1, mapped)
            vocab.append(tuple(known))
        else:
            vocab.append(tuple(known) + tuple(new))
        codes[:, j] = mapped
    return data.replace(codes=codes.astype(np.int32), vocab=tuple(vocab)), unseen


def _distance(fit: Fit, data: Data, unseen) -> tuple[np.ndarray, np.ndarray]:
    """``(distance, worst part)`` of every query row outside the fit's training data."""
    parts = {}
    x = data.transformed()
    if x.shape[1]:
        fd = ex.field_distance(x, fit.x_range, fit.num_log)
        for j, c in enumerate(fit.num_cols):
            parts[c] = fd[:, j]
    always = np.asarray(fit.always, bool)
    nf = len(fit.num_cols)
    present = np.asarray(data.present, bool)
    for j, c in enumerate(fit.num_cols):
        if always[j]:
            parts[c] = np.maximum(parts[c], np.where(present[:, j], 0.0, 1.0))
    codes = np.asarray(data.codes)
    unseen = np.asarray(unseen, bool).reshape(codes.shape)
    for j, c in enumerate(fit.text_cols):
        gone = (codes[:, j] < 0) & always[nf + j]
        parts[c] = np.where(unseen[:, j] | gone, 1.0, 0.0)
    if fit.size_range is not None and data.N is not None and data.D is not None:
        for name, v in ex.size_distance(data.N, data.D, fit.size_range).items():
            label = {"N": _role(fit, "n", "N"), "D": _role(fit, "d", "D")}.get(name, name)
            parts[label] = np.maximum(parts.get(label, 0.0), v)
        if fit.group_range is not None and len(fit.text_cols):
            gd = ex.group_size_distance(data.N, data.D, codes, fit.group_range)
            for j, c in enumerate(fit.text_cols):
                parts[f"size among the runs of the same {c!r}"] = gd[:, j]
    return ex.combine(parts, data.n_rows)


def _band(fit: Fit, data: Data) -> tuple[np.ndarray, np.ndarray]:
    """``(shift, half)`` per row: the centre of the indistinguishable laws' predictions minus the
    best law's, and their half-range (zeros without a law band)."""
    if fit.law_band is None or data.N is None or data.D is None:
        return np.zeros(data.n_rows), np.zeros(data.n_rows)
    p = band_predictions(fit.law_band, data.N, data.D)
    lo, hi = p.min(0) - p[0], p.max(0) - p[0]
    return (lo + hi) / 2.0, (hi - lo) / 2.0


def _member_outputs(fit: Fit, data: Data, clip: bool):
    """``(mu, log_std)`` ``(M, n)`` of every member (standardised residual)."""
    texts, text_id = unique_texts(data.texts())
    if fit.enc is None:
        pooled, ctx = encoder_features(texts, fit.num_keys, fit.spec.max_tokens)
    else:
        pooled, ctx = member_features(texts, fit.num_keys, fit.enc, fit.spec.max_tokens)
    values = _standardise(data, np.asarray(fit.mean, float), np.asarray(fit.std, float),
                          fit.x_range if clip else None)
    present = np.asarray(data.present, bool).astype(np.float32)
    return predict_members(_members(fit), pooled, ctx, text_id, values, present)


def _unit(fit: Fit, what: str) -> str:
    """How to read the worst distance (for the warning)."""
    if what in fit.text_cols:
        return f"(an unseen value or a missing field of {what!r} counts as 1)"
    logs = dict(zip(fit.num_cols, map(bool, fit.num_log)))
    if what.startswith("size among"):
        return f"decades of N, D or compute outside the range of the training runs ({what})"
    if what == "compute" or what in (_role(fit, "n", "N"), _role(fit, "d", "D")) or logs.get(what, False):
        return f"decades of {what!r} outside the training range"
    return f"range widths of {what!r} outside the training range"


def extrapolation(fit: Fit, query, *, handle_unknown: str = "error") -> pd.DataFrame:
    """How far every query row lies outside the fit's training data.

    Args:
      fit: a :class:`Fit`.
      query: a :class:`~jaxscale.ncpl.data.Data` or a DataFrame (as for :func:`predict`).
      handle_unknown: see :func:`predict`.

    Returns:
      A frame (with the query frame's index) holding ``extrapolation`` (0 inside the training data;
      decades of N, D, compute or a log-scaled field, range widths of a linear field, 1 for an
      unseen text value or a field left out by ``handle_unknown="ignore"`` where every training run
      had it; the largest of these) and ``worst`` (the column or quantity behind it).

    Raises:
      ValueError: as :func:`predict`, e.g. an empty cell in a field every training run had.
    """
    data = query if isinstance(query, Data) else query_data(fit, query)
    _check_query(fit, data)
    _empty_cells(fit.always, data, "query runs")
    data, unseen = _align_vocab(fit.text_cols, fit.vocab, data, handle_unknown)
    d, worst = _distance(fit, data, unseen)
    index = query.index if isinstance(query, pd.DataFrame) else None
    return pd.DataFrame({"extrapolation": d, "worst": worst}, index=index)


def predict(fit: Fit, query, *, key=None, level: float = 0.9, handle_unknown: str = "error") -> Prediction:
    """Loss-scale ensemble prediction of the query runs.

    Args:
      fit: a :class:`Fit`.
      query: a :class:`~jaxscale.ncpl.data.Data` or a DataFrame with the fit's config columns
        (and N/D or the baseline column when the fit uses them; the target is optional).
      key: unused (the ensemble is deterministic); accepted for the common signature.
      level: central interval level.
      handle_unknown: a text value the fit never saw: ``"error"`` (raise, listing the unknown and
        the known values), ``"encode"`` (write it into the text: the encoder reads the new words)
        or ``"ignore"`` (leave the field out of that run's text). Either way the row counts as 1
        unit outside the training data.

    An empty config cell leaves its field out of the run's text, as for the training runs that
    left that field empty: predicted as trained (:func:`missing_cells` lists them). An empty cell in a field every training run had raises instead (the
    model never learnt what its absence means), as do empty ``N``/``D``/baseline cells.

    Returns:
      ``Prediction(mean, lower, upper, samples, extrapolation)``. Inside the training data: the
      equal-weight Gaussian mixture of the members, its std scaled by ``fit.interval_scale``
      (split-conformal on the validation cells), ``mean -/+ z(level) * std``. At distance ``d``
      outside (``extrapolation``, see :func:`extrapolation`; one warning names the worst): the
      network at the query's values or at the training edge and its residual shrunk by
      ``1 / (1 + shrink d)`` toward the baseline, as the backtest chose (``fit.extrap``), and the
      std ``sqrt(s^2 + (tau d)^2)``. With a Chinchilla baseline, the baseline is the centre of
      the laws the training rows cannot tell apart (``fit.law_band``) and the interval is widened
      by half their spread (they agree inside the data; two model sizes, say, leave the law's
      extrapolation to larger ones open). ``samples`` are the ``(M, n)`` member means.
    """
    check_fit(fit, Fit, "jaxscale.ncpl")
    key = check_key(key, "NCPL predict: key", optional=True)
    level = check_level(level)
    data = query if isinstance(query, Data) else query_data(fit, query)
    _check_query(fit, data)
    _empty_cells(fit.always, data, "query runs")  # raises for a field every training run had
    data, unseen = _align_vocab(fit.text_cols, fit.vocab, data, handle_unknown)
    d, worst = _distance(fit, data, unseen)
    e = fit.extrap
    clip = bool(np.asarray(e.clip))
    mu_c, ls_c = _member_outputs(fit, data, clip=True)
    outside_range = not np.array_equal(_standardise(data, fit.mean, fit.std, fit.x_range),
                                       _standardise(data, fit.mean, fit.std))
    mu = mu_c if clip or not outside_range else _member_outputs(fit, data, clip=False)[0]
    _, std_z = mixture(mu_c, ls_c)
    g = 1.0 / (1.0 + float(np.asarray(e.shrink)) * d)
    shift, half = _band(fit, data)
    base = _base_values(fit.baseline, fit.law, data) + shift
    y_mean, y_std = float(np.asarray(fit.y_mean)), float(np.asarray(fit.y_std))
    members = base + y_mean + y_std * np.asarray(mu, float) * g
    mean = members.mean(0)
    z = float(z_value(level))
    std = np.sqrt((y_std * std_z * float(np.asarray(fit.interval_scale))) ** 2 + (float(np.asarray(e.tau)) * d) ** 2)
    std = std + half / float(z_value(fit.spec.coverage))  # the laws' spread, scaled to the asked level
    if np.any(d > 0):
        field = worst[int(np.argmax(d))]
        along = (f"; to learn that widening, refit with backtest_col={field!r} (CLI --backtest-col {field}), "
                 f"which holds out the training runs with its largest values" if field in fit.num_cols else "")
        reach = float(np.asarray(e.backtest_max_distance))
        runs = int(np.asarray(fit.diagnostics.n_train)) + int(np.asarray(fit.diagnostics.n_val))
        if not int(np.asarray(e.n_backtest)) and runs < ex.MIN_TRAINING_RUNS:
            note = (f"this fit had no backtest: it has {runs} training runs and a backtest, along N and D or along "
                    f"any backtest_col (CLI --backtest-col), needs at least {ex.MIN_TRAINING_RUNS}, so its interval "
                    "does not widen outside the training data: it can be far too narrow there. Only more training "
                    "runs can learn that widening")
        elif not int(np.asarray(e.n_backtest)):
            note = ("this fit had no backtest (it needs N and D, n_col/d_col, or a backtest_col, and at least "
                    f"{ex.MIN_TRAINING_RUNS} training runs), so its interval does not widen outside the training "
                    f"data: it can be far too narrow there{along}")
        elif d.max() > reach:
            note = (f"the interval's growth was learnt on held-out runs at most {reach:.3g} out ({fit.backtest_rule}); "
                    f"{int(np.sum(d > reach))} of the queries lie further, up to {d.max():.3g}, where that growth is "
                    "extrapolated")
        else:
            note = ""
        warn_extrapolation("NCPL predict", d, _unit(fit, worst[int(np.argmax(d))]), stacklevel=3, note=note)
    return Prediction(jnp.asarray(mean), jnp.asarray(mean - z * std), jnp.asarray(mean + z * std), jnp.asarray(members),
                      jnp.asarray(d))


# ----------------------------------------------------------------------------- stage 2
def stage2(key, fit: Fit, data, tcfg: TrainConfig) -> Fit:
    """Stage 2: encoder + head trainable (small lr) for every member, early-stopped on the
    validation cells. Pass the same ``key`` and training rows as to :func:`fit`: the validation
    cells are carved identically. The returned fit holds every member's encoder (``enc``).

    Args:
      key: the key of :func:`fit`.
      fit: the stage-1 :class:`Fit`.
      data: the training :class:`~jaxscale.ncpl.data.Data` (or a DataFrame, read with the fit's
        columns and its validation-cell columns).
      tcfg: :class:`~jaxscale.ncpl.train.TrainConfig` of this stage.
    """
    if not isinstance(data, Data):
        roles = dict(fit.columns)
        data = query_data(fit, data).replace(
            y=pd.to_numeric(data[roles["target"]]).to_numpy(float),
            group=cell_codes(data, [c for r, c in fit.columns if r == "group"]))
    _check_data(data)
    _check_query(fit, data)
    k_val, _, k_train = jax.random.split(key, 3)
    k_train = jax.random.fold_in(k_train, 2)
    y = np.asarray(data.y, float) - _base_values(fit.baseline, fit.law, data)
    yz = ((y - float(np.asarray(fit.y_mean))) / float(np.asarray(fit.y_std))).astype(np.float32)
    is_val = held_cells(k_val, data.group, fit.spec.val_frac)
    texts, text_id = unique_texts(data.texts())
    ids = _token_ids(texts, fit.num_keys, fit.spec.max_tokens)
    pos = placeholder_positions(fit.num_keys, texts, ids)
    arr, mask = enc_mod.pad_batch(ids)
    values = _standardise(data, np.asarray(fit.mean, float), np.asarray(fit.std, float))
    present = np.asarray(data.present, bool).astype(np.float32)
    gd, est = nnx.split(_encoder())
    members = _members(fit)
    m = fit.spec.members
    if fit.enc is None:
        enc_params = jax.tree.map(lambda x: jnp.broadcast_to(x, (m,) + x.shape), est)
    else:
        enc_params = _to_state(est, fit.enc)
    const = {"ids": jnp.asarray(arr), "mask": jnp.asarray(mask), "num_pos": jnp.asarray(pos)}

    def arrays(sel):
        return TrainArrays(jnp.asarray(text_id[sel]), jnp.asarray(values[sel]), jnp.asarray(present[sel]),
                           jnp.asarray(yz[sel], jnp.float32))

    res = train_members(k_train, members, const, arrays(~is_val), arrays(is_val), tcfg, trainable_encoder=enc_params,
                        enc_graphdef=gd, desc="ncpl stage 2")
    log.info("stage 2: %d steps in %.1f s (%.1f examples/s)", res.steps, res.seconds, res.examples_per_s)
    diag = fit.diagnostics._replace(stage2_steps=np.asarray(res.steps), stage2_seconds=np.asarray(res.seconds),
                                    stage2_examples_per_s=np.asarray(res.examples_per_s),
                                    stage2_cpu_seconds=np.asarray(res.cpu_seconds))
    history = np.concatenate([np.asarray(fit.history, float).reshape(-1, 2),
                              np.asarray(res.history, float).reshape(-1, 2)])
    return fit.replace(params=_pure(res.params["head"]),
                       enc=_pure(res.params["enc"]), history=history, diagnostics=diag)


# ----------------------------------------------------------------------------- DataFrame driver
def fit_ncpl(key, train_df: pd.DataFrame, text_fields, num_fields, *, target: str = "final_loss",
             baseline: str | None = "chinchilla_ncpl", spec: Spec = Spec(), group_cols=None,
             n_col: str | None = "N_million", d_col: str | None = "D_billion", duplicates: str = "keep") -> Fit:
    """:func:`fit` on a DataFrame with explicit fields (the bundled-runs reproduction driver).

    ``baseline`` names a column subtracted from the target (``None``: no baseline); validation
    cells are the combinations of ``group_cols`` (default: those of
    :data:`~jaxscale.ncpl.dataset.GROUP_COLS` the table has, else single rows). ``n_col`` and
    ``d_col`` (when the table has them) give the sizes the backtest and the extrapolation distance
    use. The bundled runs hold 29 exact copies of runs under other names (the official split keeps
    them), hence ``duplicates="keep"``.
    """
    if group_cols is None:
        group_cols = [c for c in GROUP_COLS if c in train_df.columns]
    if n_col not in train_df.columns or d_col not in train_df.columns:
        n_col = d_col = None
    data = from_frame(train_df, target_col=target, text_cols=tuple(text_fields), num_cols=tuple(num_fields),
                      baseline_col=baseline, group_cols=group_cols, max_tokens=spec.max_tokens, n_col=n_col,
                      d_col=d_col, duplicates=duplicates)
    return fit(key, data, spec._replace(baseline="column" if baseline else "none"))
