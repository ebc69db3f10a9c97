"""Two-stage NCPL training of a deep ensemble with AdamW, warm-up + linear decay, early stopping.

Stage 1: the encoder is frozen, its outputs for the (few) unique texts are computed once
(``features``), and only the number-token MLP + head train. Stage 2: the encoder is trainable as
well (small learning rate); its forward runs on the unique texts inside the loss.

All members train in one compiled step (``vmap`` over member keys and batches, the members split
over all devices by :func:`jaxscale.infer.sharding.sharded_vmap`); ``eval_every`` steps run inside
one ``lax.scan``. Early stopping uses a validation set carved from TRAIN only.
Checkpoints are written every ``ckpt_every`` steps as ``.npz`` files (a temporary file renamed into
place, so a run killed while writing never leaves a checkpoint that loads wrong), next to a
``fingerprint.json`` of what produced them (the package version, the training configuration, a
hash of the arrays trained on and of the initial parameters and keys, plus the caller's fields such
as the data hash, ``Spec`` and seed). A folder written by another run is refused unless
``force_new`` discards it. The batch order is a pure function of (key, step), so an interrupted run
resumes from its last checkpoint and ends bit-identically.
"""
from __future__ import annotations

import time
from functools import lru_cache
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from jaxscale._checkpoint import Checkpoints, array_digest
from jaxscale._log import get_logger, progress
from jaxscale.infer.sharding import sharded_vmap
from jaxscale.ncpl.ensemble import Members, apply_member
from jaxscale.ncpl.head import text_features

__all__ = [
    "TrainConfig",
    "TrainArrays",
    "TrainState",
    "TrainResult",
    "lr_schedule",
    "train_members",
    "train_scan",
    "convergence",
]

log = get_logger(__name__)


class TrainConfig(NamedTuple):
    """Optimiser, schedule, early stopping and checkpointing of one training stage."""

    steps: int = 1500
    batch_size: int = 256
    lr: float = 2e-3
    warmup_frac: float = 0.05
    weight_decay: float = 1e-4
    eval_every: int = 100
    patience: int = 4  # evaluations without improvement before a member stops improving
    ckpt_every: int = 0  # steps (multiple of eval_every); 0 = no checkpoints
    ckpt_dir: str | None = None
    enc_lr_scale: float = 1.0  # stage 2: encoder lr = lr * enc_lr_scale
    force_new: bool = False  # discard checkpoints in ckpt_dir written by another run instead of refusing


class TrainArrays(NamedTuple):
    """Per-run arrays the head trains on (one subset: training or validation rows)."""

    text_id: jnp.ndarray  # (n,) int
    values: jnp.ndarray  # (n, F)
    present: jnp.ndarray  # (n, F)
    y: jnp.ndarray  # (n,) standardised residual
    w: jnp.ndarray | None = None  # (n,) 1 for a row, 0 for padding (None: every row counts)


class TrainState(NamedTuple):
    params: object
    opt_state: object
    best_params: object
    best_val: jnp.ndarray  # (M,)
    bad: jnp.ndarray  # (M,) evaluations since the last improvement
    step: jnp.ndarray  # ()


class TrainResult(NamedTuple):
    params: object  # best (early-stopped) params, leading member axis
    history: list  # [(step, mean val loss over members)]
    steps: int
    seconds: float  # wall time of the loop (first chunk includes compilation)
    examples_per_s: float  # member-examples per wall second
    cpu_seconds: float  # process CPU time of the loop (all threads)
    converged: bool = True  # see :func:`convergence`
    reason: str = ""
    resumed_from: int = 0  # step of the checkpoint the run resumed from (0: a fresh start)


def lr_schedule(lr: float, steps: int, warmup: int):
    """lr(s) = lr * min(1, s / warmup) * (1 - s / steps)  (linear warm-up, linear decay to 0)."""
    warmup = max(int(warmup), 1)

    def f(s):
        s = jnp.asarray(s, jnp.float32)
        return lr * jnp.minimum(1.0, (s + 1) / warmup) * jnp.clip(1.0 - s / steps, 0.0, 1.0)

    return f


def _features(params, const, enc_graphdef=None):
    """(pooled, ctx) either cached (stage 1) or from the trainable encoder (stage 2)."""
    if "enc" not in params:
        return const["pooled"], const["ctx"]
    enc = nnx.merge(enc_graphdef, params["enc"])
    hidden = enc(const["ids"], const["mask"])
    return text_features(hidden, const["mask"], const["num_pos"])


def _mean(a, w):
    """Mean of ``a`` over the rows that count (``w``: 1 for a row, 0 for padding; None: all)."""
    return jnp.mean(a) if w is None else jnp.sum(w * a) / jnp.sum(w)


def _loss(params, graphdef, const, data: TrainArrays, idx, enc_graphdef=None):
    pooled, ctx = _features(params, const, enc_graphdef)
    mu, ls = apply_member(graphdef, params["head"], pooled, ctx, data.text_id[idx], data.values[idx],
                          data.present[idx])
    y = data.y[idx]
    w = None if data.w is None else data.w[idx]
    mse = _mean(jnp.square(mu - y), w)
    nll = _mean(ls + 0.5 * jnp.square((y - jax.lax.stop_gradient(mu)) * jnp.exp(-ls)), w)
    return mse + nll


def _val_mse(params, graphdef, const, data: TrainArrays, enc_graphdef=None):
    pooled, ctx = _features(params, const, enc_graphdef)
    mu, _ = apply_member(graphdef, params["head"], pooled, ctx, data.text_id, data.values, data.present)
    return _mean(jnp.square(mu - data.y), data.w)


def _bucket(n: int) -> int:
    """The padded length of ``n`` rows: the next power of two (at least 8) up to 64 rows, where a
    step's cost hardly depends on the rows; above, the next multiple of 32 (each padding row
    costs as much as a row: about 3 % of a 1,000-step stage per 10 rows at 200 rows on 2 cores)."""
    n = int(n)
    return max(8, 1 << max(n - 1, 0).bit_length()) if n <= 64 else -(-n // 32) * 32


def _pad_rows(a: TrainArrays, size: int) -> TrainArrays:
    """``a`` padded with zero rows to ``size`` rows, each padding row weighted 0 (text 0)."""
    n = int(a.y.shape[0])
    pad = lambda x: jnp.concatenate([x, jnp.zeros((size - n,) + x.shape[1:], x.dtype)])  # noqa: E731
    return TrainArrays(pad(a.text_id), pad(a.values), pad(a.present), pad(a.y),
                       pad(jnp.ones(n, a.y.dtype) if a.w is None else a.w))


def _padded(const: dict, train: TrainArrays, val: TrainArrays, tcfg: TrainConfig):
    """``(const, train, val)`` padded to bucket sizes, so that tables of other lengths reuse the
    compiled training program: only for a stage-1 fit (cached text features) whose every step
    uses all training rows (``n_train <= batch_size``). Every step then averages the loss over
    the weighted rows, the same loss as the unpadded batch (the rows' order within a full batch
    does not change a mean). Larger tables draw mini-batches from a permutation of their own
    length and are left as they are."""
    n_train = int(train.y.shape[0])
    if set(const) != {"pooled", "ctx"} or n_train > tcfg.batch_size or train.w is not None:
        return const, train, val
    size = min(_bucket(n_train), tcfg.batch_size)
    n_texts = int(const["pooled"].shape[0])
    t = _bucket(n_texts)
    const = {k: jnp.concatenate([v, jnp.zeros((t - n_texts,) + v.shape[1:], v.dtype)]) for k, v in const.items()}
    return const, _pad_rows(train, size), _pad_rows(val, _bucket(int(val.y.shape[0])))


def _batch_idx(key, step, n, batch):
    """Indices of ``step``'s batch: epochs are fresh permutations of fold_in(key, epoch)."""
    per_epoch = max(n // batch, 1)
    epoch, pos = step // per_epoch, step % per_epoch
    perm = jax.random.permutation(jax.random.fold_in(key, epoch), n)
    return jax.lax.dynamic_slice(perm, (pos * batch,), (min(batch, n),))


def _make_chunk(graphdef, tx, tcfg: TrainConfig, n_train: int, enc_graphdef=None):
    """``eval_every`` optimiser steps of every member (a ``lax.scan``, ``vmap`` over members),
    then the validation MSE and the best-so-far bookkeeping. Pure: jit-able and vmap-able."""

    def member_chunk(params, opt_state, key, const, data):
        def body(carry, step):
            p, o = carry
            idx = _batch_idx(key, step, n_train, tcfg.batch_size)
            loss, g = jax.value_and_grad(_loss)(p, graphdef, const, data, idx, enc_graphdef)
            upd, o = tx.update(g, o, p)
            return (optax.apply_updates(p, upd), o), loss

        return body

    def chunk(state: TrainState, keys, const, train: TrainArrays, val: TrainArrays):
        steps = state.step + jnp.arange(tcfg.eval_every)

        def run(p, o, k):
            (p, o), losses = jax.lax.scan(member_chunk(p, o, k, const, train), (p, o), steps)
            return p, o, losses

        # the member axis is split over all devices (one device: a plain vmap)
        params, opt_state, losses = sharded_vmap(lambda pok: run(*pok), (state.params, state.opt_state, keys))
        val_loss = sharded_vmap(lambda p: _val_mse(p, graphdef, const, val, enc_graphdef), params)
        improved = val_loss < state.best_val
        pick = lambda new, old: jnp.where(improved.reshape((-1,) + (1,) * (new.ndim - 1)), new, old)  # noqa: E731
        best = jax.tree.map(pick, params, state.best_params)
        return TrainState(params, opt_state, best, jnp.where(improved, val_loss, state.best_val),
                          jnp.where(improved, 0, state.bad + 1), state.step + tcfg.eval_every), losses, val_loss

    return chunk


def _optimizer(tcfg: TrainConfig, has_enc: bool):
    sched = lr_schedule(tcfg.lr, tcfg.steps, tcfg.warmup_frac * tcfg.steps)
    adam = lambda s: optax.adamw(s, b1=0.9, b2=0.99, weight_decay=tcfg.weight_decay)  # noqa: E731
    if has_enc:
        enc_sched = lr_schedule(tcfg.lr * tcfg.enc_lr_scale, tcfg.steps, tcfg.warmup_frac * tcfg.steps)
        inner = optax.multi_transform({"head": adam(sched), "enc": adam(enc_sched)}, {"head": "head", "enc": "enc"})
    else:
        inner = adam(sched)
    return optax.chain(optax.clip_by_global_norm(1.0), inner)


class _Built(NamedTuple):
    tx: object  # the optax optimiser
    chunk: object  # pure chunk function (for lax.scan)
    val_fn: object  # pure vmapped validation MSE
    chunk_jit: object  # the same, compiled (host-driven loop)
    init_jit: object  # compiled initial TrainState


@lru_cache(maxsize=16)
def _build(graphdef, tcfg: TrainConfig, n_train: int, enc_graphdef, has_enc: bool) -> _Built:
    """Optimizer and chunk function cached per static configuration, so repeated fits reuse them."""
    tx = _optimizer(tcfg, has_enc)
    val_fn = jax.vmap(lambda p, c, v: _val_mse(p, graphdef, c, v, enc_graphdef), in_axes=(0, None, None))
    chunk = _make_chunk(graphdef, tx, tcfg, n_train, enc_graphdef)
    init = jax.jit(lambda params, const, val: _initial_state(tx, val_fn, params, const, val))
    return _Built(tx, chunk, val_fn, jax.jit(chunk), init)


def _core(tcfg: TrainConfig) -> TrainConfig:
    """The part of the configuration that changes the numbers (not checkpointing)."""
    return tcfg._replace(ckpt_every=0, ckpt_dir=None, force_new=False)


def _initial_state(tx, val_fn, params, const, val) -> TrainState:
    m = jax.tree.leaves(params)[0].shape[0]
    opt_state = jax.vmap(tx.init)(params)
    # the initial params are a candidate too: stage 2 never ends worse (on val) than stage 1
    val0 = val_fn(params, const, val)
    return TrainState(params, opt_state, params, jnp.asarray(val0, jnp.float32),
                      jnp.zeros((m,), jnp.int32), jnp.asarray(0, jnp.int32))


def _member_keys(key, m: int):
    return jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.arange(m))


def _check_config(tcfg: TrainConfig, n_train: int, n_val: int) -> None:
    if tcfg.steps < 1 or tcfg.eval_every < 1:
        raise ValueError(f"steps={tcfg.steps} and eval_every={tcfg.eval_every} must be >= 1")
    if tcfg.steps % tcfg.eval_every:
        raise ValueError(f"steps={tcfg.steps} must be a multiple of eval_every={tcfg.eval_every}; "
                         f"e.g. eval_every={_divisor(tcfg.steps, tcfg.eval_every)}")
    if tcfg.ckpt_every and tcfg.ckpt_every % tcfg.eval_every:
        raise ValueError(f"ckpt_every={tcfg.ckpt_every} must be a multiple of eval_every={tcfg.eval_every}")
    if n_train < 2 or n_val < 1:
        raise ValueError(f"need >= 2 training and >= 1 validation rows, got {n_train} / {n_val}")


def _divisor(steps: int, near: int) -> int:
    """The divisor of ``steps`` closest to ``near`` (for error messages)."""
    divs = [d for d in range(1, steps + 1) if steps % d == 0]
    return min(divs, key=lambda d: abs(d - near))


def train_scan(key, members: Members, const: dict, train: TrainArrays, val: TrainArrays, tcfg: TrainConfig,
               trainable_encoder=None, enc_graphdef=None):
    """All ``tcfg.steps`` steps of every member in one ``lax.scan`` of the chunks of
    :func:`train_members` (same batches, same updates), without the early-stopping break.

    Pure (no host I/O): jit-able and vmap-able over keys or datasets of one shape.

    Returns:
      ``(state, val_history)``: the final :class:`TrainState` (``best_params`` is the best-on-
      validation candidate of each member) and the ``(steps // eval_every, M)`` validation MSEs.
    """
    _check_config(tcfg, int(train.y.shape[0]), int(val.y.shape[0]))
    const, train, val = _padded(const, train, val, tcfg)
    n_train = int(train.y.shape[0])
    m = jax.tree.leaves(members.params)[0].shape[0]
    params = {"head": members.params}
    if trainable_encoder is not None:
        params["enc"] = trainable_encoder
    built = _build(members.graphdef, _core(tcfg), n_train, enc_graphdef, trainable_encoder is not None)
    state = _initial_state(built.tx, built.val_fn, params, const, val)
    keys = _member_keys(key, m)

    def body(st, _):
        st, _, val_loss = built.chunk(st, keys, const, train, val)
        return st, val_loss

    return jax.lax.scan(body, state, None, length=tcfg.steps // tcfg.eval_every)


#: Relative improvement of the members' mean best validation MSE over the second half of the
#: evaluations below which training counts as converged (the second half, because the schedule decays the
#: learning rate to 0: the last steps barely move even when more steps would help).
CONVERGED_RTOL = 0.05


def convergence(val_history, patience: int, stopped_early: bool, eval_every: int) -> tuple[bool, str]:
    """Whether the validation loss had levelled off, and why.

    Args:
      val_history: ``(k, M)`` validation MSE of every member after each evaluation.
      patience: evaluations without improvement that stop training.
      stopped_early: whether training stopped on ``patience``.
      eval_every: steps between evaluations (for the message).

    Returns:
      ``(converged, reason)``: converged when training stopped early, or when the mean over the
      members of their best validation MSE so far improved by at most :data:`CONVERGED_RTOL`
      (relative) over the second half of the evaluations (at least one).
    """
    v = np.asarray(val_history, float)
    if stopped_early:
        return True, f"early stop: no member improved for {patience} evaluations"
    if v.ndim != 2 or v.shape[0] < 2:
        return False, "a single validation: no trend to judge; raise steps (several evaluations)"
    best = np.minimum.accumulate(v, axis=0).mean(1)  # the ensemble: mean of the members' best so far
    q = max(1, v.shape[0] // 2)
    before, last = best[-1 - q], best[-1]
    rel = float((before - last) / max(abs(before), 1e-12))
    if rel <= CONVERGED_RTOL:
        return True, (f"validation MSE levelled off: the members' best improved by {100 * max(rel, 0.0):.2g}% over "
                      f"the last {q * eval_every} steps")
    return False, (f"validation MSE still fell by {100 * rel:.2g}% over the last {q * eval_every} steps; raise "
                   "steps or the learning rate")


def train_members(key, members: Members, const: dict, train: TrainArrays, val: TrainArrays, tcfg: TrainConfig,
                  trainable_encoder=None, enc_graphdef=None, stop_after: int | None = None, desc: str = "ncpl",
                  fingerprint: dict | None = None) -> TrainResult:
    """Train all ensemble members jointly (vmapped) with early stopping on ``val``.

    Args:
      key: PRNG key; member m uses fold_in(key, m) for its batch order.
      members: initial heads (leading member axis).
      const: non-trainable arrays: ``pooled``/``ctx`` (stage 1) or ``ids``, ``mask``, ``num_pos`` (stage 2).
      train: :class:`TrainArrays` of the training rows.
      val: :class:`TrainArrays` of the validation rows (carved from the training rows).
      tcfg: :class:`TrainConfig` (``ckpt_dir``/``ckpt_every`` write resumable checkpoints).
      trainable_encoder: stage 2: encoder params (nnx.State) with a leading member axis.
      enc_graphdef: stage 2: the encoder's nnx GraphDef.
      stop_after: stop (as if interrupted) after this many chunks — for resume tests.
      desc: name of the stage in messages.
      fingerprint: extra fields identifying the run (data hash, settings, seed...), stored with the
        checkpoints and compared on resume.

    Raises:
      ValueError: non-finite training loss, or a checkpoint folder written by another run (unless
      ``tcfg.force_new``).
    """
    n_train = int(train.y.shape[0])
    _check_config(tcfg, n_train, int(val.y.shape[0]))
    digest = (const, train, val)  # what the checkpoints belong to: the rows as given
    const, train, val = _padded(const, train, val, tcfg)
    m = jax.tree.leaves(members.params)[0].shape[0]
    params = {"head": members.params}
    if trainable_encoder is not None:
        params["enc"] = trainable_encoder
    built = _build(members.graphdef, _core(tcfg), int(train.y.shape[0]), enc_graphdef, trainable_encoder is not None)
    chunk = built.chunk_jit
    state = built.init_jit(params, const, val)
    keys = _member_keys(key, m)
    ckpt = None
    history, val_history = [], []
    resumed_from = 0
    if tcfg.ckpt_every and tcfg.ckpt_dir:
        from jaxscale._version import __version__

        fp = {"version": __version__, "stage": desc, "train_config": {k: v for k, v in _core(tcfg)._asdict().items()
                                                                     if k not in ("ckpt_every", "ckpt_dir", "force_new")},
              "arrays": array_digest(*digest), "init": array_digest(params, keys)}
        fp.update(fingerprint or {})
        ckpt = Checkpoints(tcfg.ckpt_dir, fp, tcfg.force_new, desc,
                           fix="Choose a new folder (--ckpt-dir), or discard its checkpoints with --force-new "
                               "(Python: Spec(ckpt_force_new=True))")
        if ckpt.latest() is not None:
            state, more = ckpt.restore(state, ("history", "val_history"))
            history = [tuple(r) for r in np.asarray(more["history"], float).reshape(-1, 2)]
            val_history = [np.asarray(r) for r in np.asarray(more["val_history"], float)]
            resumed_from = int(state.step)
            log.info("%s: resumed from step %d (%s)", desc, resumed_from, ckpt.folder)
    n_chunks = tcfg.steps // tcfg.eval_every
    t0, c0, done_steps = time.perf_counter(), time.process_time(), 0
    bar = progress(total=n_chunks, desc=f"{desc} (chunks of {tcfg.eval_every} steps)",
                   initial=int(state.step) // tcfg.eval_every)
    chunks_run = 0
    stopped = bool(history) and bool(np.all(np.asarray(state.bad) >= tcfg.patience))
    while int(state.step) < tcfg.steps and not stopped:
        state, losses, val_loss = chunk(state, keys, const, train, val)
        vl = np.asarray(val_loss)
        if not np.all(np.isfinite(np.asarray(losses))) or not np.all(np.isfinite(vl)):
            bad = np.flatnonzero(~(np.isfinite(np.asarray(losses)).all(1) & np.isfinite(vl)))
            raise ValueError(f"{desc}: non-finite training loss for member(s) {bad.tolist()} between steps "
                             f"{int(state.step) - tcfg.eval_every} and {int(state.step)}; lower the learning rate "
                             f"(now {tcfg.lr:g}) or check the target for extreme values")
        done_steps += tcfg.eval_every
        chunks_run += 1
        history.append((int(state.step), float(vl.mean())))
        val_history.append(vl)
        bar.update(1)
        bar.set_postfix(val=f"{vl.mean():.4f}")
        stopped = bool(np.all(np.asarray(state.bad) >= tcfg.patience))
        if ckpt is not None and (int(state.step) % tcfg.ckpt_every == 0 or stopped or int(state.step) >= tcfg.steps):
            ckpt.save(int(state.step), state, history=np.asarray(history, float).reshape(-1, 2),
                      val_history=np.asarray(val_history, float))
        if stopped:
            log.info("%s: early stop at step %d (no member improved for %d evals)", desc, int(state.step), tcfg.patience)
            break
        if stop_after is not None and chunks_run >= stop_after:
            break
    bar.close()
    secs = time.perf_counter() - t0
    converged, reason = convergence(np.asarray(val_history, float).reshape(len(val_history), -1), tcfg.patience,
                                    stopped, tcfg.eval_every)
    return TrainResult(state.best_params, history, int(state.step), secs,
                       done_steps * min(tcfg.batch_size, n_train) * m / max(secs, 1e-9), time.process_time() - c0,
                       converged, reason, resumed_from)
