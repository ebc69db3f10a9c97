"""V-optimal model-subset selection (Ruan et al. 2024 §5, Table 1; reproduced exactly)."""
from __future__ import annotations

import jax
import numpy as np
import pytest

from jaxscale.observational.selection import family_masks, select

jax.config.update("jax_enable_x64", True)


@pytest.mark.slow
def test_table1_full_pool():
    # Table 1: 77 models, Llama-2 forced, 431 909 unions; objectives for 4..20 models
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
    # Fig. 7a: FLOPs <= 84 complete rows (45 models, 14 families, 15 913 unions)
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


@pytest.mark.slow
def test_fig7a_test_mse_curve(key):
    """Fig. 7a: fits trained on the V-optimal subsets only, geometric-mean test MSE over GSM8K
    Naive / CoT / CoT+SC on the 28 post-cut-off models (reproduced digits).

    Budgets 8, 12, 24 and "all" match the note to the printed 2 digits except "all" (2.68e-3 vs
    2.63e-3) and 16/20 (5.36e-3 vs 5.3e-3, 3.81e-3 vs 3.9e-3); 4 models give 1.30e-2 vs 1.15e-2.
    The gap is the GSM8K Naive optimiser endpoint the note documents (§5.2: our L-BFGS endpoint
    gives Naive 7.2e-4 vs the original's 6.9e-4 on the full set) and, at 4 models, a 5-parameter
    law fitted to 4 points. Tolerance: 15% relative on every budget (measured max 13%).
    """
    from jaxscale.observational.sweep import subset_curve

    out = subset_curve(key, budgets=(4, 8, 12, 16, 20, 24), n_random=5)
    want = [1.15e-2, 7.6e-3, 5.1e-3, 5.3e-3, 3.9e-3, 2.8e-3]
    got = [r["geo_mse"] for r in out["rows"]]
    np.testing.assert_allclose(got, want, rtol=0.15)
    assert [f"{r['objective']:.2f}" for r in out["rows"]] == ["-26.76", "-8.84", "-6.31", "-5.27",
                                                               "-4.55", "-4.08"]
    np.testing.assert_allclose(out["all_geo_mse"], 2.63e-3, rtol=0.05)
    # the paper's point: V-optimal beats random unions of the same size (median over 5 draws)
    for r in out["rows"][1:]:
        assert len(r["random_geo_mse"]) == 5
        assert r["geo_mse"] < np.median(r["random_geo_mse"]), r


def test_cutoff_sweep_aue():
    """App. C.4 sweep (test ratio 0.60 -> 0.05 by FLOPs): the PC law has a lower AUE than the
    ln-FLOPs baseline on word unscramble (measured 4.09e-3 vs 1.22e-2) and every MSE is finite."""
    from jaxscale.observational.splits import SWEEP_RATIOS
    from jaxscale.observational.sweep import cutoff_sweep

    s = cutoff_sweep("word_unscramble")
    assert len(s.ratios) == len(SWEEP_RATIOS) == 12
    assert np.all(np.isfinite(s.mse_pc)) and np.all(np.isfinite(s.mse_flops))
    assert np.all(np.diff(s.n_train) > 0)  # fewer test models -> more training models
    np.testing.assert_allclose(s.aue_pc, 4.09e-3, rtol=0.05)
    assert s.aue_pc < 0.5 * s.aue_flops
    d = s.to_dict()
    assert d["rows"][0]["test_ratio"] == 0.6 and len(d["rows"]) == 12
    with pytest.raises(ValueError, match="rank_by"):
        cutoff_sweep("word_unscramble", rank_by="size")
