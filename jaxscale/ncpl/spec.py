"""How an NCPL fit runs (:class:`Spec`) and the names the command line offers.

Imports nothing heavy (no JAX, no Flax, no pandas), so the command line reads its defaults and
choices from here without loading the model.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

from jaxscale._registry import register_serializable

if TYPE_CHECKING:
    from jaxscale.ncpl.head import HeadConfig
    from jaxscale.ncpl.train import TrainConfig

__all__ = ["Spec", "BASELINES", "HANDLE_UNKNOWN", "MAX_TOKENS"]

#: Longest serialised configuration the text encoder reads (all-MiniLM-L6-v2 was trained on 256).
MAX_TOKENS = 256

#: Baselines the network predicts a residual over (``Spec.baseline``).
BASELINES = ("auto", "law", "column", "none")

#: What :func:`jaxscale.ncpl.predict` does with a text value the fit never saw: refuse, write it into the text
#: (the encoder reads the new words), or leave the field out of that run's text.
HANDLE_UNKNOWN = ("error", "encode", "ignore")


@register_serializable
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
      coverage: level of the split-conformal calibration of the interval width (in-distribution
        on the validation cells, and of its growth outside the training data on the backtest).
      max_tokens: longest serialised configuration the encoder reads.
      ckpt_every: steps between checkpoints (0: every evaluation) when ``ckpt_dir`` is set.
      ckpt_dir: checkpoint folder; an interrupted fit resumes from the last checkpoint and ends
        bit-identically. The folder remembers what wrote it (data, settings, seed, version): a
        folder of another fit is refused.
      backtest_frac: share of the training runs (the largest) the backtest holds out to learn how to
        predict outside the training data (0: no backtest, intervals do not widen); needs N and D,
        or ``backtest_col``.
      backtest_col: a numeric configuration column whose largest values the backtest holds out (the
        field the queries extrapolate in, e.g. a depth); ``None``: the largest model sizes (needs N
        and D).
      ckpt_force_new: discard the checkpoints of another fit in ``ckpt_dir`` instead of refusing.
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
    backtest_frac: float = 0.2
    ckpt_force_new: bool = False
    backtest_col: str | None = None

    def train_config(self) -> TrainConfig:
        """The training loop's settings (:class:`jaxscale.ncpl.train.TrainConfig`)."""
        from jaxscale.ncpl.train import TrainConfig

        return TrainConfig(steps=self.steps, batch_size=self.batch_size, lr=self.lr, warmup_frac=self.warmup_frac,
                           weight_decay=self.weight_decay, eval_every=self.eval_every, patience=self.patience,
                           ckpt_every=(self.ckpt_every or self.eval_every) if self.ckpt_dir else 0,
                           ckpt_dir=self.ckpt_dir, force_new=self.ckpt_force_new)

    def head_config(self, n_fields: int, enc_dim: int) -> HeadConfig:
        """The head's shape (:class:`jaxscale.ncpl.head.HeadConfig`) for ``n_fields`` numeric fields and
        an encoder of width ``enc_dim``."""
        from jaxscale.ncpl.head import HeadConfig

        return HeadConfig(n_fields=n_fields, enc_dim=enc_dim, d_field=self.d_field, d_text=self.d_text,
                          width=self.width, depth=self.depth)
