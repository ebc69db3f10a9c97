"""One PRNG key per row of a table, derived from the row's own values.

A model whose predictive draws come from one key for the whole table gives each row draws that
depend on which other rows are predicted with it: the fit's own predictions of a row and a saved
model's prediction of the same row then differ. :func:`row_keys` folds the key with a hash of each
row's inputs, so a row's draws depend on the key and the row alone.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["row_keys"]


def row_keys(key, *columns):
    """``(n,)`` PRNG keys: ``key`` folded with a 32-bit hash of each row's values in ``columns``
    (arrays of n rows, each (n,) or (n, m)). Floats are hashed at float32 precision (NaN and -0
    made canonical), so last-bit differences of a recomputed input do not change a row's key."""
    words = np.concatenate([_words(c) for c in columns], axis=1)
    h = np.full(words.shape[0], 0x9E3779B97F4A7C15, np.uint64)
    for j in range(words.shape[1]):  # over the row's values (a handful), every row at once
        h = _mix64(h ^ words[:, j])
    ids = (h ^ (h >> np.uint64(32))) & np.uint64(0xFFFFFFFF)
    return jax.vmap(jax.random.fold_in, in_axes=(None, 0))(key, jnp.asarray(ids.astype(np.uint32)))


def _words(column) -> np.ndarray:
    """(n, m) uint64 words of a column's values: float32 bit patterns (NaN and -0 canonical), or
    integers."""
    a = np.asarray(column)
    a = a.reshape(a.shape[0], -1)
    if np.issubdtype(a.dtype, np.integer) or a.dtype == bool:
        return a.astype(np.int64).view(np.uint64)
    f = np.asarray(a, np.float32) + np.float32(0.0)  # -0 -> +0
    f = np.where(np.isnan(f), np.float32(np.nan), f)
    return f.view(np.uint32).astype(np.uint64)


def _mix64(z: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser on uint64 words (wrapping arithmetic)."""
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))
