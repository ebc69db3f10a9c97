"""The NCPL model: serialise -> (cached) MiniLM features -> ensemble head -> loss scale.

:func:`fit` trains a deep ensemble of heads on frozen-encoder features of the serialised
configurations (stage 1). The network predicts the standardised residual of the target over a
baseline: a Chinchilla law fitted on the training rows (when ``N`` and ``D`` are given), a
baseline column, or nothing. A validation set of whole cells is carved from the training rows for
early stopping and for the split-conformal interval scale. :func:`predict` returns the ensemble
mixture's mean and central interval on the loss scale, with the member means as ``samples``.
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
from jaxscale.infer.prediction import Prediction, check_level, z_value
from jaxscale.laws import ChinchillaParams, chinchilla
from jaxscale.ncpl import encoder as enc_mod
from jaxscale.ncpl.baselines import fit_chinchilla_law
from jaxscale.ncpl.data import MAX_TOKENS, Data, from_frame
from jaxscale.ncpl.dataset import GROUP_COLS, cell_codes, held_cells
from jaxscale.ncpl.ensemble import Members, init_members, mixture, predict_members
from jaxscale.ncpl.head import HeadConfig, NCPLHead, text_features
from jaxscale.ncpl.serialize import (
    check_token_lengths,
    placeholder_positions,
    unique_texts,
)
from jaxscale.ncpl.train import TrainArrays, TrainConfig, train_members, train_scan

__all__ = [
    "Spec",
    "Fit",
    "Diagnostics",
    "Batch",
    "fit",
    "fit_core",
    "prepare",
    "predict",
    "stage2",
    "fit_ncpl",
    "law_baseline",
    "cache_dir",
    "encoder_features",
    "member_features",
    "interval_scale",
]

log = get_logger(__name__)

#: A nested mapping of arrays (head or encoder parameters with a leading member axis).
PyTree = Any

BASELINES = ("auto", "law", "column", "none")


class Spec(NamedTuple):
    """How to fit (every field has a default; the CLI reads them from ``Spec()``).

    Attributes:
      members: ensemble members (independent inits and batch orders).
      steps: optimiser steps (AdamW, gradient-norm clip 1).
      lr: peak learning rate (linear warm-up, then linear decay to 0).
      batch_size: rows per step; a batch larger than the training rows uses all of them.
      warmup_frac: warm-up steps as a fraction of ``steps``.
      weight_decay: AdamW weight decay.
      eval_every: steps between validation evaluations (must divide ``steps``).
      patience: stop when no member improved for this many evaluations.
      val_frac: fraction of validation cells carved from the training rows.
      baseline: ``"auto"`` (the baseline column when given, else a Chinchilla law fitted on the
        training rows when N and D are given, else none), ``"law"``, ``"column"`` or ``"none"``.
      d_field: size of a numeric field's token in the head.
      d_text: size of the projected pooled text.
      width: hidden width of the head's MLP.
      depth: hidden layers of the head's MLP.
      coverage: level of the split-conformal calibration of the interval width.
      max_tokens: longest serialised configuration the encoder reads.
      ckpt_every: steps between orbax checkpoints (0: every evaluation) when ``ckpt_dir`` is set.
      ckpt_dir: checkpoint folder; an interrupted fit resumes from the last checkpoint and ends
        bit-identically.
    """

    members: int = 5
    steps: int = 1000
    lr: float = 2e-3
    batch_size: int = 256
    warmup_frac: float = 0.05
    weight_decay: float = 1e-4
    eval_every: int = 100
    patience: int = 4
    val_frac: float = 0.15
    baseline: str = "auto"
    d_field: int = 32
    d_text: int = 32
    width: int = 256
    depth: int = 2
    coverage: float = 0.9
    max_tokens: int = MAX_TOKENS
    ckpt_every: int = 0
    ckpt_dir: str | None = None

    def train_config(self) -> TrainConfig:
        return TrainConfig(steps=self.steps, batch_size=self.batch_size, lr=self.lr, warmup_frac=self.warmup_frac,
                           weight_decay=self.weight_decay, eval_every=self.eval_every, patience=self.patience,
                           ckpt_every=(self.ckpt_every or self.eval_every) if self.ckpt_dir else 0,
                           ckpt_dir=self.ckpt_dir)

    def head_config(self, n_fields: int, enc_dim: int) -> HeadConfig:
        return HeadConfig(n_fields=n_fields, enc_dim=enc_dim, d_field=self.d_field, d_text=self.d_text,
                          width=self.width, depth=self.depth)


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
      interval_scale: split-conformal factor (>= 1) on the mixture std.
      law: the Chinchilla baseline fitted on the training rows, or ``None``.
      history: ``(k, 2)`` (step, mean validation MSE over members).
      diagnostics: :class:`Diagnostics`.
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
    """

    params: PyTree
    enc: PyTree | None
    mean: jax.Array
    std: jax.Array
    y_mean: jax.Array
    y_std: jax.Array
    interval_scale: jax.Array
    law: ChinchillaParams | None
    history: jax.Array
    diagnostics: Diagnostics
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

    @property
    def info(self) -> dict:
        """Plain-number summary (head sizes, members, steps, seconds, row counts, interval scale)."""
        d = {k: float(np.asarray(v)) for k, v in self.diagnostics._asdict().items()}
        out = {"head": dict(self.head._asdict()), "n_members": self.spec.members, "baseline": self.baseline,
               "interval_scale": float(np.asarray(self.interval_scale))}
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


for _cls in (Spec, Diagnostics, HeadConfig):  # ChinchillaParams is registered by jaxscale.laws
    register_serializable(_cls)


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


def _fit_law(data: Data, strict: bool):
    N, D, y = (np.asarray(a, float) for a in (data.N, data.D, data.y))
    few = [name for name, a in (("N", N), ("D", D)) if np.unique(a).size < 2]
    if few or N.size < 5:
        why = (f"{'/'.join(few)} take(s) a single value" if few else f"only {N.size} runs")
        if strict:
            raise ValueError(f"cannot fit the Chinchilla baseline: {why}; use Spec(baseline='none') or add runs")
        warnings.warn(f"no Chinchilla baseline: {why}; the network predicts the loss itself "
                      "(Spec(baseline='none'))", RuntimeWarning, stacklevel=3)
        return None
    # in units of the geometric means of N and D, so one grid of starts suits any scale
    return fit_chinchilla_law(N, D, y)


def _base_values(kind: str, law, data: Data) -> np.ndarray:
    if kind == "column":
        return np.asarray(data.base, float)
    if kind == "law":
        return np.asarray(chinchilla(law, np.asarray(data.N, float), np.asarray(data.D, float)), float)
    return np.zeros(data.n_rows)


def law_baseline(fit: Fit, query) -> np.ndarray:
    """The baseline the fit subtracted, at the query rows (loss scale; zeros for ``"none"``)."""
    data = query if isinstance(query, Data) else _query_data(fit, query)
    return _base_values(fit.baseline, fit.law, data)


# ----------------------------------------------------------------------------- preparation
class _Prepared(NamedTuple):
    batch: Batch
    baseline: str
    law: Any
    y_mean: float
    y_std: float
    mean: np.ndarray
    std: np.ndarray
    n_texts: int


def _standardise(data: Data, mean, std) -> np.ndarray:
    x = data.transformed()
    return np.where(np.isfinite(x), (x - mean) / std, 0.0).astype(np.float32)


def _check_data(data: Data) -> None:
    if not isinstance(data, Data):
        raise ValueError(f"fit expects a jaxscale.ncpl.Data (from_frame), got {type(data).__name__}")
    y = np.asarray(data.y, float)
    bad = np.flatnonzero(~np.isfinite(y))
    if bad.size:
        raise ValueError(f"the target is missing or non-finite in {bad.size} of {y.size} row(s) (positions "
                         f"{bad[:5].tolist()}); fit needs a target on every row: leave those rows out and "
                         "predict them")
    if data.n_rows < 3:
        raise ValueError(f"fit needs >= 3 runs, got {data.n_rows}")


def _prepare(k_val, data: Data, spec: Spec) -> _Prepared:
    _check_data(data)
    kind = _resolve_baseline(spec, data)
    law = _fit_law(data, strict=spec.baseline == "law") if kind == "law" else None
    if kind == "law" and law is None:
        kind = "none"
    y = np.asarray(data.y, float) - _base_values(kind, law, data)
    bad = np.flatnonzero(~np.isfinite(y))
    if bad.size:
        raise ValueError(f"target minus baseline is non-finite in {bad.size} row(s), positions {bad[:5].tolist()}")
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
    return _Prepared(batch, kind, law, y_mean, y_std, mean, std, len(texts))


def prepare(key, data: Data, spec: Spec = Spec()) -> Batch:
    """Host side of :func:`fit` up to the arrays :func:`fit_core` trains on: baseline, residual
    standardisation, validation cells (from ``key`` as in :func:`fit`), encoder features."""
    return _prepare(jax.random.split(key, 3)[0], data, spec).batch


def fit_core(key, batch: Batch, spec: Spec = Spec()):
    """The pure numerical core of stage 1: initialise ``spec.members`` heads and run every
    AdamW step on the ensemble loss (Gaussian NLL + MSE of the standardised residual) in one
    ``lax.scan``, keeping each member's best-on-validation parameters.

    Same batches and updates as :func:`fit` (which runs these steps host-driven, in chunks, to
    stop early and write checkpoints); without the early-stopping break. jit-able with ``spec``
    static, vmap-able over keys: ``jax.vmap(lambda k: fit_core(k, batch, spec))(keys)``.

    Args:
      key: the same key as :func:`fit` (split into validation, init and batch-order keys).
      batch: :func:`prepare` output.
      spec: a :class:`Spec`.

    Returns:
      ``(params, val_history)``: head parameters (nested dict as in :attr:`Fit.params`, leading
      member axis) and the ``(steps // eval_every, members)`` validation MSEs.
    """
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
    if not 8 <= spec.max_tokens <= 512:
        raise ValueError(f"Spec.max_tokens must be in [8, 512] (the encoder has 512 positions), got {spec.max_tokens}")


def fit(key, data: Data, spec: Spec = Spec()) -> Fit:
    """Stage-1 training of an ensemble on ``data`` (validation cells carved from its rows).

    Args:
      key: PRNG key (validation cells, head initialisation, batch orders).
      data: training runs (:func:`~jaxscale.ncpl.data.from_frame`), every row with a target.
      spec: :class:`Spec`.

    Returns:
      :class:`Fit`.
    """
    _check_spec(spec)
    k_val, k_init, k_train = jax.random.split(key, 3)
    prep = _prepare(k_val, data, spec)
    b = prep.batch
    n_train, n_val = int(b.train.y.shape[0]), int(b.val.y.shape[0])
    if spec.batch_size > n_train:
        log.info("batch_size %d > %d training rows: every step uses all of them", spec.batch_size, n_train)
    cfg = spec.head_config(len(data.num_cols), int(b.pooled.shape[-1]))
    members = init_members(k_init, cfg, spec.members)
    res = train_members(k_train, members, {"pooled": b.pooled, "ctx": b.ctx}, b.train, b.val, spec.train_config(),
                        desc="ncpl stage 1")
    log.info("stage 1: %d steps in %.1f s (%.0f examples/s)", res.steps, res.seconds, res.examples_per_s)
    fitted = Members(members.graphdef, res.params["head"])
    scale = interval_scale(fitted, b.pooled, b.ctx, b.val, b.val.y, spec.coverage)
    nan = np.asarray(np.nan)
    diag = Diagnostics(np.asarray(res.steps), np.asarray(res.seconds), np.asarray(res.examples_per_s),
                       np.asarray(res.cpu_seconds), np.asarray(n_train), np.asarray(n_val), np.asarray(prep.n_texts),
                       np.asarray(0), nan, nan, nan)
    return Fit(params=_pure(res.params["head"]), enc=None, mean=np.asarray(prep.mean, float),
               std=np.asarray(prep.std, float), y_mean=np.asarray(prep.y_mean), y_std=np.asarray(prep.y_std),
               interval_scale=np.asarray(scale), law=prep.law, history=np.asarray(res.history, float).reshape(-1, 2),
               diagnostics=diag, head=cfg, baseline=prep.baseline, num_cols=data.num_cols, num_keys=data.num_keys,
               num_log=data.num_log, text_cols=data.text_cols, text_keys=data.text_keys, vocab=data.vocab,
               spec=spec, columns=tuple(c for c in data.columns if c[0] != "skipped"))


def interval_scale(members: Members, pooled, ctx, val, y_val, coverage: float = 0.9) -> float:
    """Split-conformal scale of the predictive std from the carved validation rows: the
    ``coverage`` quantile of |y - mean| / std, divided by the Gaussian z of that level, floored
    at 1 (never narrows the ensemble's intervals)."""
    from scipy.stats import norm

    mu, ls = predict_members(members, pooled, ctx, val.text_id, val.values, val.present)
    mean, std = mixture(mu, ls)
    z = np.abs(np.asarray(y_val, float) - mean) / np.maximum(std, 1e-12)
    n = z.size
    q = np.quantile(z, min(1.0, np.ceil((n + 1) * coverage) / n))
    # only ever widen: the carved validation cells are in-distribution, and shrinking the
    # intervals there cut OOD coverage (small model: 0.86 -> 0.57 on Marin OOD)
    return float(max(1.0, q / norm.ppf(0.5 + coverage / 2)))


# ----------------------------------------------------------------------------- prediction
def _query_data(fit: Fit, df: pd.DataFrame) -> Data:
    """Read query rows with the fit's columns (the target is optional)."""
    roles = {}
    for role, col in fit.columns:
        roles.setdefault(role, col)
    num = [f for f in _num_fields(fit)]
    return from_frame(df, target_col=roles.get("target"), require_target=False,
                      text_cols=tuple(zip(fit.text_keys, fit.text_cols)), num_cols=tuple(num),
                      n_col=roles.get("n") if fit.baseline == "law" else None,
                      d_col=roles.get("d") if fit.baseline == "law" else None,
                      baseline_col=roles.get("baseline") if fit.baseline == "column" else None,
                      max_tokens=fit.spec.max_tokens)


def _num_fields(fit: Fit):
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


def predict(fit: Fit, query, *, key=None, level: float = 0.9) -> Prediction:
    """Loss-scale ensemble prediction of the query runs.

    Args:
      fit: a :class:`Fit`.
      query: a :class:`~jaxscale.ncpl.data.Data` or a DataFrame with the fit's config columns
        (and N/D or the baseline column when the fit uses them; the target is optional).
      key: unused (the ensemble is deterministic); accepted for the common signature.
      level: central interval level.

    Returns:
      ``Prediction(mean, lower, upper, samples)``: the equal-weight Gaussian mixture of the
      members, its std widened by ``fit.interval_scale`` (split-conformal, calibrated at
      ``spec.coverage``), ``mean -/+ z(level) * std``; ``samples`` are the ``(M, n)`` member means.
    """
    level = check_level(level)
    data = query if isinstance(query, Data) else _query_data(fit, query)
    _check_query(fit, data)
    texts, text_id = unique_texts(data.texts())
    if fit.enc is None:
        pooled, ctx = encoder_features(texts, fit.num_keys, fit.spec.max_tokens)
    else:
        pooled, ctx = member_features(texts, fit.num_keys, fit.enc, fit.spec.max_tokens)
    values = _standardise(data, np.asarray(fit.mean, float), np.asarray(fit.std, float))
    present = np.asarray(data.present, bool).astype(np.float32)
    mu, ls = predict_members(_members(fit), pooled, ctx, text_id, values, present)
    mean_z, std_z = mixture(mu, ls)
    base = _base_values(fit.baseline, fit.law, data)
    y_mean, y_std = float(np.asarray(fit.y_mean)), float(np.asarray(fit.y_std))
    mean = base + y_mean + y_std * mean_z
    std = y_std * std_z * float(np.asarray(fit.interval_scale))
    z = float(z_value(level))
    members = base + y_mean + y_std * np.asarray(mu, float)
    return Prediction(jnp.asarray(mean), jnp.asarray(mean - z * std), jnp.asarray(mean + z * std), jnp.asarray(members))


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
        data = _query_data(fit, data).replace(
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
             baseline: str | None = "chinchilla_ncpl", spec: Spec = Spec(), group_cols=None) -> Fit:
    """:func:`fit` on a DataFrame with explicit fields (the bundled-runs reproduction driver).

    ``baseline`` names a column subtracted from the target (``None``: no baseline); validation
    cells are the combinations of ``group_cols`` (default: those of
    :data:`~jaxscale.ncpl.dataset.GROUP_COLS` the table has, else single rows).
    """
    if group_cols is None:
        group_cols = [c for c in GROUP_COLS if c in train_df.columns]
    data = from_frame(train_df, target_col=target, text_cols=tuple(text_fields), num_cols=tuple(num_fields),
                      baseline_col=baseline, group_cols=group_cols, max_tokens=spec.max_tokens)
    return fit(key, data, spec._replace(baseline="column" if baseline else "none"))

