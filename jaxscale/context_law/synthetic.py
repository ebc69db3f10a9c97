"""Synthetic data at the paper's design: 2 compute levels x 6 n_ctx x 10 shot counts, binomial items.

C comes from the paper's compute rule for Llama-2-7B/13B (non-embedding N); n_pmt = query + shots x
demo tokens with shots in {0, 1, 3, ..., 511} (the repo's eval grid).  ``simulate`` draws
Binomial(n_items, P_true) per cell, so ``score = k / n_items``.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from jaxscale.context_law.model import Spec, predict_law
from jaxscale.laws.context import context_compute

__all__ = ["PAPER_SHOTS", "PAPER_N_CTX", "PAPER_N_NONEMB", "TRUE_THETA", "TRUE_SPEC", "paper_design", "simulate"]

PAPER_SHOTS = (0, 1, 3, 7, 15, 31, 63, 127, 255, 511)
PAPER_N_CTX = (4096, 8192, 16384, 32768, 65536, 131072)
PAPER_N_NONEMB = {"Llama-2-7B": 6_476_271_616, "Llama-2-13B": 12_688_184_320}
# a plausible truth (a, alpha, b, beta, log relative width): P(7B) ~ 0.79 x context factor
TRUE_SPEC = Spec(penalty="logistic", fit_scale=True, fit_alpha=True)
TRUE_THETA = np.array([-1.0, 0.7, -0.5, 0.6, np.log(0.05)])


def paper_design(query_tokens: float = 150.0, demo_tokens: float = 200.0) -> pd.DataFrame:
    """120 cells: model x n_ctx x shots with C, n_ctx, n_pmt (no scores)."""
    rows = []
    for model, N in PAPER_N_NONEMB.items():
        for n_ctx in PAPER_N_CTX:
            C = float(context_compute(float(N), float(n_ctx)))
            for s in PAPER_SHOTS:
                rows.append(dict(model=model, N=N, n_ctx=float(n_ctx), C=C, shots=s,
                                 n_pmt=query_tokens + demo_tokens * s))
    df = pd.DataFrame(rows)
    df["beyond_ctx"] = df["n_pmt"] > df["n_ctx"]
    return df


def simulate(key, design: pd.DataFrame, theta=TRUE_THETA, spec: Spec = TRUE_SPEC, n_items: int = 250):
    """Binomial scores from the law at ``theta``; adds p_true, n_items, n_correct, score, chance=0."""
    p = predict_law(spec, jnp.asarray(theta), jnp.log(design["C"].to_numpy(float)), design["n_pmt"].to_numpy(float),
                design["n_ctx"].to_numpy(float))
    k = jax.random.binomial(key, n_items, p)
    out = design.copy()
    out["p_true"] = np.asarray(p)
    out["n_items"] = float(n_items)
    out["n_correct"] = np.asarray(k, dtype=float)
    out["score"] = out["n_correct"] / n_items
    out["chance"] = 0.0
    out["task"] = "synthetic"
    return out
