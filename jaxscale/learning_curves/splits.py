"""Train/test splits of the zero-shot paper (``HMOGPLV/Load_data.py`` of the paper code).

A split is a pair of boolean row masks over ``LCData.frame``. nanoGPT splits are defined on
(embedding index, layer index) so that they are the same curves whatever the hierarchy
direction, except exchanged Quad which is ``Missing_Quad_d4_r4`` (16 curves).
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from jaxscale.learning_curves.data import LCData

__all__ = ["Split", "make_split", "split_names", "held_out_pairs", "curve_mask_split"]

_NANO = ("nanogpt", "nanogpt_exch", "nanogpt_small")


class Split(NamedTuple):
    """Row masks (over ``LCData.frame``) of the training and held-out points."""

    name: str
    train: np.ndarray
    test: np.ndarray


def split_names(data: LCData) -> tuple:
    """The splits available for a dataset."""
    if data.kind in _NANO:
        base = ("quad", "tri", "t1", "leave_embd", "leave_layer")
        return base
    if data.kind == "bilingual":
        return ("zeroshot",)
    if data.kind == "multilingual":
        return ("extrapolate9",)
    return ()


def held_out_pairs(split: str, n_embd: int = 5, n_layer: int = 6) -> list[tuple[int, int]]:
    """Held-out (embedding index, layer index) pairs of the nanoGPT splits.

    As ``obtain_different_experiment_type_data`` indexes them: the affected tasks are the last
    ``min(4, n_embd)`` embeddings (Python's ``range(D)[-4:]``). Quad (``Missing_Quad_d4_r3``):
    those x the last 3 layer counts. Tri (``Missing_Tri_d4``): the j-th affected task
    (j = 0, 1, ...) loses its last j + 1 layer counts. T1: the largest model. nanoGPT-large
    (5 x 6): Quad 12, Tri 10, T1 1 curves; nanoGPT-small (3 x 4): Quad 9, Tri 6, T1 1.
    """
    E, Lr = n_embd, n_layer
    first = max(0, E - 4)
    if split == "quad":  # Missing_Quad_d4_r3
        return [(e, l) for e in range(first, E) for l in range(max(0, Lr - 3), Lr)]
    if split == "tri":  # Missing_Tri_d4: staircase
        return [(e, l) for e in range(first, E) for l in range(Lr) if l >= Lr - 1 - (e - first)]
    if split == "t1":  # Missing_Tri_d1: the largest model only
        return [(E - 1, Lr - 1)]
    raise ValueError(f"unknown nanoGPT split {split!r}; use quad, tri or t1")


def curve_mask_split(data: LCData, name: str, held: set) -> Split:
    """Split holding out whole curves given as (d, r) pairs."""
    f = data.frame
    test = np.array([(int(d), int(r)) in held for d, r in zip(f["d"], f["r"])])
    return Split(name, ~test, test)


def make_split(data: LCData, split: str, *, holdout: int | None = None) -> Split:
    """Build a named split.

    nanoGPT: ``quad`` | ``tri`` | ``t1`` (paper), ``leave_embd`` / ``leave_layer`` (every curve
    of embedding / layer index ``holdout`` held out; default: the largest). Bilingual:
    ``zeroshot`` (task d holds out instance (d + 1) mod R). Multilingual: ``extrapolate9``
    (last 9 of 20 points of every curve of the last task).
    """
    f = data.frame
    if data.kind in _NANO:
        E = f["n_embd"].nunique()
        Lr = f["n_layer"].nunique()
        e_idx = f["n_embd"].map({v: i for i, v in enumerate(sorted(f["n_embd"].unique()))}).to_numpy()
        l_idx = f["n_layer"].map({v: i for i, v in enumerate(sorted(f["n_layer"].unique()))}).to_numpy()
        if split in ("quad", "tri", "t1"):
            if split == "quad" and data.kind == "nanogpt_exch":  # Missing_Quad_d4_r4 on (layer task, embd instance)
                D, R = f["d"].nunique(), f["r"].nunique()
                test = (f["d"].to_numpy() >= D - 4) & (f["r"].to_numpy() >= R - 4)
                return Split(split, ~test, test)
            pairs = set(held_out_pairs(split, E, Lr))
            test = np.array([(int(a), int(b)) in pairs for a, b in zip(e_idx, l_idx)])
            return Split(split, ~test, test)
        if split in ("leave_embd", "leave_layer"):
            idx = e_idx if split == "leave_embd" else l_idx
            k = (idx.max() if holdout is None else holdout)
            if not 0 <= k <= idx.max():
                raise ValueError(f"holdout={holdout} out of range 0..{idx.max()} for split {split!r}")
            test = idx == k
            return Split(f"{split}{k}", ~test, test)
    elif data.kind == "bilingual" and split == "zeroshot":
        R = len(data.replicate_labels)
        d, r = f["d"].to_numpy(), f["r"].to_numpy()
        test = r == (d + 1) % R
        return Split(split, ~test, test)
    elif data.kind == "multilingual" and split == "extrapolate9":
        d = f["d"].to_numpy()
        n_pts = f.groupby("curve")["point"].transform("max").to_numpy() + 1
        test = (d == d.max()) & (f["point"].to_numpy() >= n_pts - 9)
        return Split(split, ~test, test)
    raise ValueError(f"split {split!r} is not defined for dataset {data.name!r}; "
                     f"available: {split_names(data)}")
