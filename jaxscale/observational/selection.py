r"""V-optimal model-subset selection over unions of families (paper §5, Eq. 9).

Score of a union :math:`U`: :math:`\mathrm{Tr}(S_\text{all}^\top S_\text{all}\,(S_U^\top S_U)^{-1})`
with :math:`S` the top-3 PC scores of the candidates. Every union of 1..``max_families`` families
(plus an optionally forced family) is scored in one vmapped program; the reported objective is
the negated score of the best union within each budget (Table 1 prints these negatives).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from jaxscale._pytree import pytree_dataclass, static_field

from . import data as _data
from .constants import BASE_METRICS
from .pca import fit_transform

__all__ = [
    "Selection",
    "candidate_pool",
    "family_masks",
    "score_unions",
    "select",
    "select_table",
]


@pytree_dataclass
class Selection:
    """Best union for one budget: ``objective`` = −trace (higher is better, as in Table 1).

    A pytree: the numbers are leaves, the family and model names static.
    """

    budget: int
    objective: float
    n_models: int
    families: tuple = static_field(default=())
    models: tuple = static_field(default=())


def candidate_pool(pool: str = "full") -> pd.DataFrame:
    """Candidates: ``full`` (77 core models), ``le7b`` (size ≤ 7B, 45), ``flops84`` (FLOPs ≤ 84, complete rows, 45)."""
    df = _data.core_models()
    if pool == "full":
        return df
    if pool == "le7b":
        return df[df[_data.SIZE] <= 7].reset_index(drop=True)
    if pool == "flops84":
        df = df[df[_data.FLOPS] <= 84]
        ok = np.isfinite(df[list(BASE_METRICS)].to_numpy(float)).all(axis=1)
        return df[ok].reset_index(drop=True)
    raise ValueError(f"unknown candidate pool {pool!r}; use 'full', 'le7b' or 'flops84'")


def family_masks(n_families: int, max_families: int) -> np.ndarray:
    """All subsets of 1..max_families of ``n_families`` as a (n_subsets, n_families) bool array.

    Enumerated by bit patterns (vectorised), ordered by integer code.
    """
    if n_families > 24:
        raise ValueError(f"family_masks: {n_families} families is too many to enumerate (max 24)")
    codes = np.arange(1, 2**n_families, dtype=np.int64)
    bits = ((codes[:, None] >> np.arange(n_families)) & 1).astype(bool)
    keep = bits.sum(axis=1) <= max_families
    return bits[keep]


@jax.jit
def score_unions(F, A, masks, counts, forced_F, forced_count):
    """Scores and sizes of every union.

    F: (n_fam, K, K) per-family Gram matrices S_fᵀS_f; A: (K, K) = S_allᵀS_all;
    masks: (n_sub, n_fam); counts: (n_fam,); forced_*: the forced family's Gram / count (zeros if none).
    Returns (trace score, n_models); singular unions score +inf.
    """
    M = jnp.einsum("sf,fij->sij", masks, F) + forced_F
    n = masks @ counts + forced_count

    def one(Mi):
        X = jnp.linalg.solve(Mi, A)
        return jnp.trace(X)

    tr = jax.vmap(one)(M)
    ok = jnp.isfinite(tr) & (tr > 0) & (jnp.linalg.det(M) > 1e-12 * jnp.trace(A) ** A.shape[0])
    return jnp.where(ok, tr, jnp.inf), n


def _pool_scores(df: pd.DataFrame, k: int):
    B = df[list(BASE_METRICS)].to_numpy(float)
    _, _, S = fit_transform(B, np.ones(len(df), bool))
    return np.asarray(S)[:, :k]


def select(pool: str | pd.DataFrame = "full", budgets=(4, 8, 12, 16, 20), forced: str | None = "Llama-2",
           k: int = 3, max_families: int | None = None) -> list[Selection]:
    """Best family unions per budget (exhaustive, scored in batch)."""
    df = candidate_pool(pool) if isinstance(pool, str) else pool.reset_index(drop=True)
    S = _pool_scores(df, k)
    fam = df[_data.FAMILY].to_numpy()
    names = [f for f in dict.fromkeys(fam) if f != forced]
    if forced is not None and forced not in set(fam):
        raise ValueError(f"forced family {forced!r} not among the candidates")
    if max_families is None:
        max_families = 9 if forced is not None else 10
    F = np.stack([S[fam == f].T @ S[fam == f] for f in names])
    counts = np.array([(fam == f).sum() for f in names], float)
    if forced is not None:
        Sf = S[fam == forced]
        fF, fc = Sf.T @ Sf, float(len(Sf))
    else:
        fF, fc = np.zeros((k, k)), 0.0
    masks = family_masks(len(names), max_families)
    tr, n = score_unions(jnp.asarray(F), jnp.asarray(S.T @ S), jnp.asarray(masks, jnp.float64),
                         jnp.asarray(counts), jnp.asarray(fF), jnp.asarray(fc))
    tr, n = np.asarray(tr), np.asarray(n).round().astype(int)
    out = []
    for b in budgets:
        ok = (n <= b) & (n >= 3)
        if not ok.any():
            raise ValueError(f"budget {b}: no union of families has between 3 and {b} models")
        i = int(np.argmin(np.where(ok, tr, np.inf)))
        fams = ([forced] if forced else []) + [names[j] for j in np.flatnonzero(masks[i])]
        models = tuple(df.loc[np.isin(fam, fams), "Model"])
        out.append(Selection(int(b), -float(tr[i]), int(n[i]), tuple(fams), models))
    return out


def select_table(selections: list[Selection]) -> list[dict]:
    """JSON-friendly rows."""
    return [dict(budget=s.budget, objective=round(s.objective, 4), n_models=s.n_models,
                 families=list(s.families)) for s in selections]
