"""Demo section for ``jaxscale demo``: compute table check + many-shot ICL fit with the cliff plot."""
from __future__ import annotations

import time
from pathlib import Path

__all__ = ["run_demo"]


def run_demo(key, out_dir: Path, smoke: bool) -> dict:
    """Fit the context law to the many-shot ICL set (all tasks in one vmapped DE + L-BFGS program).

    ``smoke`` skips the extrapolation fit and uses one DE run per task instead of two.
    """
    import numpy as np

    from jaxscale.context_law.cli import plot_fit
    from jaxscale.context_law.data import load_compute_table
    from jaxscale.context_law.evaluate import default_spec, evaluate_source
    from jaxscale.laws.context import context_compute

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    table = load_compute_table()
    C = np.asarray(context_compute(table["N_nonembedding"].to_numpy(float), table["n_ctx_tokens"].to_numpy(float)))
    rel = float(np.max(np.abs(C / table["C_reported"].to_numpy(float) - 1)))

    spec = default_spec("longcontext_icl")
    res = evaluate_source(key, "longcontext_icl", spec, restarts=1 if smoke else 2, extrapolate=not smoke)
    maes = {r["task"]: r["mae_in"]["all"] for r in res["tasks"]}
    png = plot_fit(res, out_dir / "context_law_icl.png", task="nlu" if "nlu" in maes else None)
    summary = {"compute_table_max_rel_err": rel, "icl_mae_in": maes,
               "icl_mae_in_mean": float(np.mean(list(maes.values()))), "seconds": time.perf_counter() - t0}
    lines = [
        "Context-aware scaling law (Montgomery et al. 2025): P = f_C(C) f_n(n_pmt) S(n_pmt, n_ctx).",
        "",
        f"* Paper compute rule C = 6 N (2e12 + 400*64*n_ctx) reproduces all 12 rows of Table 1 "
        f"(max relative error {rel:.1e}).",
        "* Many-shot ICL (Bertsch et al. 2024), one fit per task pooled over 7 models, logistic cliff with "
        "fitted width and effective limit, chance floor 1/n_labels; JAX DE + L-BFGS, all tasks vmapped:",
        "",
        "| task | MAE in-distribution |" + (" MAE extrapolated (>= 10k tokens) |" if not smoke else ""),
        "| --- | --- |" + (" --- |" if not smoke else ""),
    ]
    for r in res["tasks"]:
        extra = f" {r['mae_out']['all']:.3f} |" if not smoke else ""
        lines.append(f"| {r['task']} | {r['mae_in']['all']:.3f} |{extra}")
    if not smoke:
        summary["icl_mae_out"] = {r["task"]: r["mae_out"]["all"] for r in res["tasks"]}
    lines += ["", f"![context law cliff]({Path(png).name})", "",
              "Reference: a plain scipy DE fit with a logistic penalty reached 0.047-0.052 per task. "
              "The law fails on distractor-filled prompts (RULER, BABILong), where scores fall with length: "
              "see `jaxscale context fit --dataset babilong --decay` for the length-decay extension."]
    return {"title": "Context-aware scaling law", "markdown": "\n".join(lines), "summary": summary}
