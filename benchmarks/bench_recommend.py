"""Is the run ``lc active --recommend`` picks the one worth training? Checked against the truth on nanoGPT-large.

The 30 nanoGPT-large curves are written as a user's table (``n_embd``, ``n_layer``, ``step``,
``loss``, ``params``). Some runs count as finished, the others are the candidates. ``recommend``
fits once on the finished runs and ranks the candidates. Then every candidate is in turn added to
the finished runs with its true curve, the model is refitted, and two things are measured:

* the realised fall of Var(b1) of the law's joint draws;
* the AbC of those draws against the law of the 30 true curves (the ground truth).

Each is divided by the candidate's cost, its final compute in PetaFLOPs. The result reports:

* where the recommended run and the cheapest run (what smallest-first would train) rank by realised
  AbC gain per PetaFLOP, and the rank of the run recommended with seeds 1 and 2 (another fit and
  other draws; near-tied candidates can swap);
* the Spearman correlation of predicted and realised Var(b1) reductions;
* the AbC of the finished runs alone refitted with two other keys: the refit's own noise, against
  which the realised gains must be read.

Scenarios (``--cases``):

* ``magp:layer8``: the paper's start, the six 8-layer curves finished; the plain MaGP model.
* ``magp_law:small``: the 10 smallest runs (total parameters) finished; the law-informed model
  with descriptors ``n_embd``, ``n_layer``.

Each refit is one fit with the library's defaults (4 restarts, 600 Adam steps), so the realised
numbers carry the refit's own noise. A case takes 3-12 minutes on 2 CPU cores.

    OPENBLAS_NUM_THREADS=1 python benchmarks/bench_recommend.py --cases magp_law:small
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from jaxscale.config import enable_x64
from jaxscale.learning_curves.active import _candidate_curves, _round, recommend, table_round_predictor
from jaxscale.learning_curves.compute import TOKENS_PER_STEP, curve_cost_pf, load_nanogpt_curves, total_params
from jaxscale.learning_curves.frame import from_frame
from jaxscale.learning_curves.frontier import law_from_loss, make_plan
from jaxscale.learning_curves.law import default_grid

DEFAULT = "magp:layer8,magp_law:small"


def nanogpt_table() -> pd.DataFrame:
    c = load_nanogpt_curves("nanogpt_large")
    rows = [dict(n_embd=int(e), n_layer=int(lay), step=float(s), loss=float(c.loss[i, j, p]),
                 params=float(total_params(lay, e)))
            for i, e in enumerate(c.n_embd) for j, lay in enumerate(c.n_layer) for p, s in enumerate(c.steps)]
    return pd.DataFrame(rows)


def run_case(model: str, start: str, seed: int = 0, n_samples: int = 2000, n_seeds: int = 3) -> dict:
    df = nanogpt_table()
    if start == "layer8":
        held = (df.n_layer != df.n_layer.min()).to_numpy()
    elif start == "small":
        held = (~df.params.isin(np.sort(df.params.unique())[:10])).to_numpy()
    else:
        raise ValueError(f"unknown start {start!r}: layer8 or small")
    desc = ("n_embd", "n_layer") if model != "magp" else ()
    data = from_frame(df, task_col="n_embd", instance_col="n_layer", x_col="step", y_col="loss",
                      params_col="params", tokens_per_step=TOKENS_PER_STEP, descriptor_cols=desc)
    t0 = time.perf_counter()
    rec = recommend(jax.random.key(seed), data, held, model=model, n_samples=n_samples)
    rec_s = time.perf_counter() - t0
    table, cand = _candidate_curves(data, held)
    L, C = np.asarray(data.y)[table.index], table.compute
    g = default_grid(table)
    plan = make_plan(C, grid=g)
    gt = law_from_loss(plan, jnp.asarray(L))
    cost = curve_cost_pf(C)
    fit_fn = table_round_predictor(data, table, model=model)

    def state(observed, fit_seed=seed):
        pred = fit_fn(jax.random.key(fit_seed), observed, None)
        _, abc, b1, *_ = _round(jax.random.key(seed + 1), plan, jnp.asarray(L), jnp.asarray(~observed),
                                jnp.asarray(pred.restart_means), jnp.asarray(pred.mean), jnp.asarray(pred.chol),
                                jnp.asarray(cost), gt.b1, gt.b0, float(np.log(g[0])), float(np.log(g[-1])),
                                n_samples=n_samples)
        return float(np.var(np.asarray(b1))), float(np.mean(np.asarray(abc)))

    var0, abc0 = state(~cand)
    # the refit's own noise: the same finished runs refitted from other keys, no new data
    noise = [state(~cand, s)[1] for s in (seed + 1, seed + 2)]
    rows = []
    for r in rec["ranking"]:
        observed = ~cand
        observed[table.labels.index(tuple(r["curve"]))] = True
        var1, abc1 = state(observed)
        rows.append(dict(curve=r["curve"], rank=r["rank"], cost_pf=r["cost_pf"],
                         predicted_var_b1_reduction=r["var_b1_reduction"], realised_var_b1_reduction=var0 - var1,
                         abc_after=abc1, abc_gain_per_pf=(abc0 - abc1) / r["cost_pf"]))
        print(json.dumps(rows[-1]), flush=True)
    gain = np.array([x["abc_gain_per_pf"] for x in rows])
    by_gain = list(np.argsort(-gain, kind="stable"))
    cheapest = int(np.argmin([x["cost_pf"] for x in rows]))
    curves = [x["curve"] for x in rows]
    picks = {seed: rows[0]["curve"]}
    for s in range(seed + 1, seed + n_seeds):  # the pick of other seeds (fit and draws), scored on the same refits
        picks[s] = recommend(jax.random.key(s), data, held, model=model, n_samples=n_samples)["next"]
    pick_ranks = {s: by_gain.index(curves.index(c)) + 1 for s, c in picks.items()}
    return {"model": model, "start": start, "n_candidates": len(rows), "recommend_seconds": rec_s,
            "converged": rec["converged"], "var_b1_before": var0, "abc_before": abc0,
            "abc_before_refitted_with_other_keys": noise,
            "recommended": rows[0]["curve"], "recommended_rank_by_realised_abc_gain_per_pf": by_gain.index(0) + 1,
            "recommended_per_seed": {str(k): v for k, v in picks.items()},
            "recommended_rank_per_seed": {str(k): v for k, v in pick_ranks.items()},
            "cheapest": rows[cheapest]["curve"],
            "cheapest_rank_by_realised_abc_gain_per_pf": by_gain.index(cheapest) + 1,
            "best_by_realised_abc_gain_per_pf": rows[by_gain[0]]["curve"],
            "abc_after_recommended": rows[0]["abc_after"], "abc_after_cheapest": rows[cheapest]["abc_after"],
            "spearman_predicted_vs_realised_var_b1_reduction": float(spearmanr(
                [x["predicted_var_b1_reduction"] for x in rows], [x["realised_var_b1_reduction"] for x in rows])[0]),
            "candidates": rows}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cases", default=DEFAULT, help="model:start, comma-separated (start: layer8 | small)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "bench_recommend.json"))
    args = p.parse_args(argv)
    enable_x64()  # as the command line: the GP fits and the law in float64
    path = Path(args.out)
    results = json.loads(path.read_text()) if path.exists() else {}
    for case in args.cases.split(","):
        model, start = case.split(":")
        row = run_case(model, start, args.seed)
        results[case] = {"device": jax.devices()[0].device_kind, **row}
        summary = {k: v for k, v in row.items() if k != "candidates"}
        print(json.dumps(summary, indent=1), flush=True)
        path.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
