"""Pieces shared by the resumable long runs (NCPL training, replayed active learning).

A run's folder holds a *fingerprint* (plain JSON: the settings and a digest of the data that decide
its results) beside what it has finished. A resume compares the fingerprint first, and names what
differs when another run wrote the folder. Files are written whole or not at all
(:func:`write_atomic`), so a run killed while writing leaves the previous file readable. Nothing is
pickled: arrays go to ``.npz`` (loaded with ``allow_pickle=False``) or to JSON.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import jax
import numpy as np

__all__ = ["array_digest", "describe_diff", "write_atomic"]


def array_digest(*trees) -> str:
    """SHA-256 (first 16 hex digits) of every array leaf of ``trees`` (shape, dtype and bytes)."""
    h = hashlib.sha256()
    for tree in trees:
        for leaf in jax.tree.leaves(tree):
            is_key = jax.dtypes.issubdtype(getattr(leaf, "dtype", np.float32), jax.dtypes.prng_key)
            a = np.asarray(jax.random.key_data(leaf) if is_key else leaf)
            h.update(repr((a.shape, str(a.dtype))).encode())
            h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:16]


def write_atomic(path: Path, write) -> None:
    """``write(tmp)`` then rename onto ``path`` (fsynced): readers see the old file or the whole new one."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def describe_diff(old: dict, new: dict) -> str:
    """The top-level keys in which two fingerprints differ (for a nested dict also its changed
    entries, at most four, as ``key old -> new``)."""
    parts = []
    for k in sorted(set(old) | set(new)):
        a, b = old.get(k), new.get(k)
        if a == b:
            continue
        if isinstance(a, dict) and isinstance(b, dict):
            sub = [f"{kk} {a.get(kk)!r} -> {b.get(kk)!r}" for kk in sorted(set(a) | set(b)) if a.get(kk) != b.get(kk)]
            parts.append(f"{k} ({', '.join(sub[:4])})")
        else:
            parts.append(k)
    return ", ".join(parts) or "unknown"
