"""V-optimal model-subset selection (Ruan et al. 2024 §5, Table 1; note §5.3 [repro =])."""
from __future__ import annotations

import jax
import numpy as np
import pytest

from jaxscale.observational.selection import family_masks, select

jax.config.update("jax_enable_x64", True)


@pytest.mark.slow
def test_table1_full_pool():
    # note §5.3: 77 models, Llama-2 forced, 431 909 unions; objectives for 4..20 models
    sel = select("full", (4, 8, 12, 16, 20), forced="Llama-2")
    assert [f"{s.objective:.2f}" for s in sel] == ["-1365.30", "-37.43", "-16.93", "-12.70", "-10.25"]
    assert set(sel[0].families) == {"Mistral", "Llama-2"}
    assert set(sel[1].families) == {"Llama-2", "Mixtral", "Phi", "MPT"}
    assert set(sel[2].families) == {"Llama-2", "Llama-3", "DeepSeek-Coder", "Falcon"}
    assert set(sel[4].families) == {"Llama-2", "Mixtral", "Qwen", "DeepSeek-Coder", "CodeLlama",
                                    "MPT", "Falcon"}


def test_table1_le7b_lists():
    # Table 1, models <= 7B (45 models): the hard list test
    sel = select("le7b", (4, 8, 12), forced="Llama-2")
    assert [f"{s.objective:.2f}" for s in sel] == ["-25.61", "-10.51", "-7.04"]
    assert set(sel[0].families) == {"Llama-2", "Phi", "CodeLlama"}
    assert set(sel[1].families) == {"Llama-2", "Llama", "Qwen", "Phi", "MPT", "DeepSeek-Coder"}
    assert set(sel[2].families) == set(sel[1].families) | {"Gemma", "Falcon"}
    assert [s.n_models for s in sel] == [4, 8, 12]


def test_fig7a_objectives():
    # note §5.3 Fig. 7a: FLOPs <= 84 complete rows (45 models, 14 families, 15 913 unions)
    masks = family_masks(14, 10)
    assert len(masks) == 15913
    sel = select("flops84", (4, 8, 12, 16, 20, 24), forced=None)
    assert [f"{s.objective:.2f}" for s in sel] == ["-26.76", "-8.84", "-6.31", "-5.27", "-4.55", "-4.08"]


def test_family_masks_errors():
    assert family_masks(3, 2).sum(axis=1).max() == 2
    with pytest.raises(ValueError, match="too many"):
        family_masks(30, 3)
    with pytest.raises(ValueError, match="pool"):
        select("nope")
