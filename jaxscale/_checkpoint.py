"""Pieces shared by the resumable long runs (NCPL training, learning-curve fits, replayed active learning).

A run's folder holds a *fingerprint* (plain JSON: the settings and a digest of the data that decide
its results) beside what it has finished. A resume compares the fingerprint first, and names what
differs when another run wrote the folder. Files are written whole or not at all
(:func:`write_atomic`), so a run killed while writing leaves the previous file readable. Nothing is
pickled: arrays go to ``.npz`` (loaded with ``allow_pickle=False``) or to JSON.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["Checkpoints", "array_digest", "describe_diff", "refuse_other_run", "write_atomic"]

FINGERPRINT = "fingerprint.json"


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


#: How the fields of the fingerprints are named to the user (the others by their own names).
FIELD_WORDS = {"key": "the PRNG key (--seed)", "data": "the table's values", "arrays": "the training rows' values",
               "init": "the initial parameters (--seed, or the table)", "curves": "the table's curves",
               "labels": "the runs' labels", "version": "the jaxscale version"}


def describe_diff(old: dict, new: dict) -> str:
    """The top-level fields in which two fingerprints differ, in the user's words
    (:data:`FIELD_WORDS`), with ``old -> new`` where both are short values that are not digests
    (for a nested dict its changed entries, at most four)."""
    parts = []
    for k in sorted(set(old) | set(new)):
        a, b = old.get(k), new.get(k)
        if a == b:
            continue
        name = FIELD_WORDS.get(k, k)
        if isinstance(a, dict) and isinstance(b, dict):
            sub = [f"{kk} {a.get(kk)!r} -> {b.get(kk)!r}" for kk in sorted(set(a) | set(b)) if a.get(kk) != b.get(kk)]
            parts.append(f"{name} ({', '.join(sub[:4])})")
        elif not any(_is_digest(v) for v in (a, b)) and max(len(repr(a)), len(repr(b))) <= 40:
            parts.append(f"{name} {a!r} -> {b!r}")
        else:
            parts.append(name)
    return ", ".join(parts) or "unknown"


def _is_digest(v) -> bool:
    return isinstance(v, str) and len(v) == 16 and all(c in "0123456789abcdef" for c in v)


def refuse_other_run(old: dict | None, new: dict, discard: bool, where: str, consequence: str, fix: str,
                     orphans: bool = False) -> bool:
    """Whether saved state belongs to another run: its fingerprint ``old`` (``None``: none was
    written, although ``orphans`` says there is state) differs from ``new``. Such state is an error
    that names ``where`` it is, what differs, the ``consequence`` of resuming and the ``fix``;
    with ``discard`` the caller drops it instead (returns True)."""
    stale = (old is not None and old != new) or (old is None and orphans)
    if stale and not discard:
        why = (f"was written by another run (differs in: {describe_diff(old, new)})" if old is not None
               else "holds checkpoints without a fingerprint (written by another version or program)")
        raise ValueError(f"{where} {why}; {consequence}. {fix}")
    return stale


def _step_files(folder: Path) -> dict:
    """``{step: path}`` of the finished checkpoints in ``folder`` (temporary files excluded)."""
    out = {}
    for p in folder.glob("step_*.npz"):
        try:
            out[int(p.stem.split("_", 1)[1])] = p
        except ValueError:
            continue
    return out


class Checkpoints:
    """The checkpoint folder of one long run: ``fingerprint.json`` and the last two
    ``step_<n>.npz`` (every array leaf of a pytree, plus named extra arrays).

    A folder whose fingerprint differs (another run's settings or data) is refused, naming what
    differs, unless ``force_new`` (its checkpoints are then deleted). ``desc`` names the run in
    messages; ``fix`` is how the user picks another folder or forces a new run.
    """

    def __init__(self, folder, fingerprint: dict, force_new: bool, desc: str,
                 fix: str = "Choose a new folder (--ckpt-dir), or discard its checkpoints with --force-new"):
        self.folder = Path(folder).expanduser().resolve()
        if self.folder.exists() and not self.folder.is_dir():
            raise ValueError(f"checkpoint folder {self.folder} is a file; give a folder (--ckpt-dir)")
        self.folder.mkdir(parents=True, exist_ok=True)
        from jaxscale._json import dumps

        fingerprint = json.loads(dumps(fingerprint))  # as it reads back from the file
        self.fingerprint, self.desc, self.fix = fingerprint, desc, fix
        path = self.folder / FINGERPRINT
        for tmp in self.folder.glob(".step_*.tmp"):  # left by a run killed while writing
            tmp.unlink(missing_ok=True)
        files = _step_files(self.folder)
        old = None
        if path.exists():
            try:
                old = json.loads(path.read_text())
            except (OSError, json.JSONDecodeError):
                old = {"unreadable": True}
        stale = refuse_other_run(old, fingerprint, force_new, f"{desc}: checkpoint folder {self.folder}",
                                 "resuming would return that run's result", fix, orphans=bool(files))
        if stale or force_new:
            for p in files.values():
                p.unlink()
            files = {}
        text = dumps(fingerprint, indent=1, sort_keys=True).encode()
        write_atomic(path, lambda fh: fh.write(text))
        self.files = files

    def latest(self) -> int | None:
        """The step of the newest checkpoint (``None``: none yet)."""
        return max(self.files) if self.files else None

    def restore(self, template, extras: tuple = ()):
        """``(tree, {name: array})`` of the newest checkpoint; ``template`` gives the tree's
        structure, shapes and dtypes (a checkpoint that does not match is an error)."""
        path = self.files[self.latest()]
        leaves, treedef = jax.tree.flatten(template)
        try:
            with np.load(path, allow_pickle=False) as z:
                arrays = [z[f"leaf_{i}"] for i in range(len(leaves))]
                more = {k: np.asarray(z[k]) for k in extras}
        except Exception as exc:  # a damaged file: zip, key or format errors
            raise ValueError(f"{self.desc}: checkpoint {path} is damaged ({exc}); discard it with --force-new") from exc
        for i, (a, t) in enumerate(zip(arrays, leaves)):
            if a.shape != np.shape(t) or a.dtype != np.asarray(t).dtype:
                raise ValueError(f"{self.desc}: checkpoint {path} does not match this run (array {i}: {a.shape} "
                                 f"{a.dtype} vs {np.shape(t)} {np.asarray(t).dtype}); discard it with --force-new")
        return jax.tree.unflatten(treedef, [jnp.asarray(a) for a in arrays]), more

    def save(self, step: int, tree, **extras) -> None:
        """Write ``step_<step>.npz`` (the tree's leaves and ``extras``); keep the last two."""
        arrays = {f"leaf_{i}": np.asarray(x) for i, x in enumerate(jax.tree.leaves(tree))}
        arrays.update({k: np.asarray(v) for k, v in extras.items()})
        path = self.folder / f"step_{int(step):09d}.npz"
        write_atomic(path, lambda fh: np.savez(fh, **arrays))
        self.files[int(step)] = path
        for old in sorted(self.files)[:-2]:
            self.files.pop(old).unlink(missing_ok=True)
