r"""Training compute of every learning-curve point, in float64 on the host.

The zero-shot PSL paper reads per-step cumulative FLOPs from ``dict_of_C.pkl``, which is not
public. We reconstruct it as

.. math:: C(\mathrm{step}) = 6\, N_\mathrm{total}\, T\, \mathrm{step},

with :math:`N_\mathrm{total}` the nanoGPT total-parameter count (token + position embeddings,
vocabulary 50,257 as in the paper's helper) and ``T`` tokens per step (default 491,520 =
12 x 1024 x 40, an assumption). ``C`` reaches ~8e19 FLOPs, beyond int64 (9.2e18), so every
quantity is a NumPy float64 array computed on the host (independent of JAX's x64 flag).
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from jaxscale.data import data_dir
from jaxscale.laws import nanogpt_total_params

__all__ = [
    "TOKENS_PER_STEP",
    "VOCAB_SIZE",
    "BLOCK_SIZE",
    "NanoGPTCurves",
    "total_params",
    "point_compute",
    "steps_from_log",
    "load_nanogpt_curves",
    "curve_cost_pf",
]

TOKENS_PER_STEP = 491_520
VOCAB_SIZE = 50_257
BLOCK_SIZE = 1_024


class NanoGPTCurves(NamedTuple):
    """All curves of a nanoGPT grid: ``loss[d, r, p]`` for embedding d, depth r, point p."""

    n_embd: np.ndarray  # (D,) int
    n_layer: np.ndarray  # (R,) int
    steps: np.ndarray  # (P,) float64 training step of each point
    loss: np.ndarray  # (D, R, P) float64 validation loss (nats/token)
    compute: np.ndarray  # (D, R, P) float64 cumulative training FLOPs

    def flat(self):
        """``(labels, loss (K, P), compute (K, P))`` with K = D*R curves in (embd, layer) order."""
        labels = [(int(e), int(l)) for e in self.n_embd for l in self.n_layer]
        K = len(labels)
        return labels, self.loss.reshape(K, -1), self.compute.reshape(K, -1)


def total_params(n_layer, n_embd, vocab_size: int = VOCAB_SIZE, block_size: int = BLOCK_SIZE) -> np.ndarray:
    """nanoGPT total parameters (:func:`jaxscale.laws.nanogpt_total_params`) as a NumPy float64 array."""
    return np.asarray(nanogpt_total_params(np.asarray(n_layer, dtype=np.float64), np.asarray(n_embd, dtype=np.float64),
                                           vocab_size=vocab_size, block_size=block_size), dtype=np.float64)


def point_compute(n_layer, n_embd, steps, tokens_per_step: float = TOKENS_PER_STEP,
                  vocab_size: int = VOCAB_SIZE) -> np.ndarray:
    """``C = 6 N_total T step`` in float64 FLOPs, broadcasting ``n_layer``/``n_embd`` against ``steps``.

    Example: 1600 x 48 at step 17,479 -> ~8.02e19 FLOPs.
    """
    if tokens_per_step <= 0:
        raise ValueError(f"tokens_per_step must be > 0, got {tokens_per_step}; the nanoGPT default is {TOKENS_PER_STEP}")
    steps = np.asarray(steps, dtype=np.float64)
    if np.any(~np.isfinite(steps)) or np.any(steps <= 0):
        bad = np.flatnonzero(~(np.isfinite(steps) & (steps > 0)).ravel())[:5].tolist()
        raise ValueError(f"steps must be finite and > 0; offending flat indices {bad}; pass training steps >= 1")
    N = total_params(n_layer, n_embd, vocab_size=vocab_size)
    return 6.0 * N * float(tokens_per_step) * steps


def steps_from_log(x) -> np.ndarray:
    """Integer training steps from the datasets' ``x = ln(step)`` column (rounded)."""
    return np.round(np.exp(np.asarray(x, dtype=np.float64)))


_DATASETS = {
    "nanogpt_large": ("nanogpt_large", (8, 10, 12, 24, 32, 48)),
    "nanogpt_large_regen": ("nanogpt_large_regen", (8, 10, 12, 24, 32, 48)),
    "nanogpt_small": ("nanogpt_small", (8, 12, 24, 48)),
}


def load_nanogpt_curves(dataset: str = "nanogpt_large", tokens_per_step: float = TOKENS_PER_STEP) -> NanoGPTCurves:
    """Read a bundled nanoGPT grid (``layer_over_embd`` layout) and attach the compute of every point."""
    if dataset not in _DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; choose one of {sorted(_DATASETS)}")
    folder, layers = _DATASETS[dataset]
    root = data_dir("zeroshot_lc") / folder
    raw = np.genfromtxt(root / "layer_over_embd.csv", delimiter=",", dtype=np.float64)
    pdata = np.genfromtxt(root / "layer_over_embd_pdata.csv", delimiter=",", dtype=np.float64)
    n_embd = raw[:, 0].astype(int)
    values = raw[:, 1:]
    R = len(layers)
    if values.shape[1] % R or pdata.shape[0] != values.shape[1]:
        raise ValueError(f"{root}: {values.shape[1]} value columns do not split into {R} curves matching "
                         f"{pdata.shape[0]} pdata rows; check the bundled files")
    P = values.shape[1] // R
    if not np.all(np.isfinite(values)) or np.any(values <= 0):
        raise ValueError(f"{root}/layer_over_embd.csv: losses must be finite and > 0")
    x = pdata[:P, 1]
    if not np.allclose(pdata[:, 1].reshape(R, P), x[None]):
        raise ValueError(f"{root}: curves do not share one x-grid; this loader needs a common grid")
    steps = steps_from_log(x)
    loss = values.reshape(len(n_embd), R, P)
    n_layer = np.asarray(layers, dtype=int)
    C = point_compute(n_layer[None, :, None], n_embd[:, None, None], steps[None, None, :], tokens_per_step)
    return NanoGPTCurves(n_embd, n_layer, steps, loss, C)


def curve_cost_pf(compute: np.ndarray) -> np.ndarray:
    """Training cost of curves in PetaFLOPs: the cumulative compute of their last point / 1e15."""
    return np.asarray(compute, dtype=np.float64)[..., -1] / 1e15
