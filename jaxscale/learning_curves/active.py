r"""Active learning of a scaling law: which learning curve to train next.

Replayed on finished runs: start from some observed curves (the paper: the five 8-layer
nanoGPT-large curves, :func:`active_experiment`; your own table: the curves outside the hold-out,
:func:`table_active`); at every round refit the curve model on the observed curves, predict the
missing ones, score the probabilistic law against the law of the true curves (AbC), and query one
more curve. The training cost of a queried curve is its final cumulative compute (PetaFLOPs,
:func:`.compute.curve_cost_pf`).

Strategies:

* ``uncertainty`` (the original): mean over the 11 points of the across-restart variance of the
  restarts' predictive means; argmax.
* ``random``, ``smallest`` (ascending size: nanoGPT total parameters, or the cost on your own
  table), ``largest`` (descending).
* ``ours``: expected reduction of Var(b1) per PetaFLOP. From R joint posterior draws of all missing
  curves we have draws of b1 and of every candidate curve y_c; observing y_c removes (linear-Gaussian
  approximation) :math:`\Sigma_{b y_c} \Sigma_{y_c y_c}^{-1} \Sigma_{y_c b}` of Var(b1). All candidates
  are scored at once with ``vmap``.

Every round uses ONE compiled program: the law is evaluated over all K curves with a fixed shape,
held-out rows filled from the draws and observed rows from the truth (``jnp.where`` on a mask).
The model is injected as ``fit_fn(key, observed_mask, warm) -> RoundPrediction`` so the loop works
with any curve model (MaGP, DHGP, a synthetic stand-in in tests).
"""
from __future__ import annotations

import functools
import time
import warnings
from pathlib import Path
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxscale.learning_curves.compute import curve_cost_pf, total_params
from jaxscale.learning_curves.frontier import FrontierPlan, law_from_loss, make_plan
from jaxscale.metrics import U0_DEFAULT, U1_DEFAULT, abc_loglinear

__all__ = [
    "STRATEGIES",
    "RoundPrediction",
    "ActiveTrace",
    "uncertainty_scores",
    "variance_reduction_scores",
    "masked_laws",
    "run_active",
    "summarize_traces",
    "active_experiment",
    "table_active",
    "recommend",
    "round_predictor",
    "table_round_predictor",
    "write_active",
]

STRATEGIES = ("uncertainty", "random", "smallest", "largest", "ours")
#: Whether the refits decay Adam's rate (``learning_curves.magp.lr_schedule``): no, they keep the
#: constant ``learning_rate`` the strategies' reported costs were measured with.
REFIT_LR_DECAY = False


class RoundPrediction(NamedTuple):
    """A fitted model's predictions of ALL K curves (observed rows are ignored), original units.

    restart_means: (restarts, K, P) per-restart predictive means.
    mean: (K*P,) joint predictive mean; chol: (K*P, K*P) a square-root factor ``A`` of the joint
      covariance (``A A^T``; the Cholesky factor, or rows of one repeated for padded points). Rows of
      observed curves may be anything finite, they are masked out.
    warm: opaque state handed back to ``fit_fn`` next round (e.g. parameters for a warm start).
    """

    restart_means: jax.Array
    mean: jax.Array
    chol: jax.Array
    warm: object = None
    converged: bool | None = None  # every restart of this round's refit converged (None: not measured)


class ActiveTrace(NamedTuple):
    """One active-learning run: row q = the state after q queries (q = 0..n_queries)."""

    strategy: str
    queried: list  # labels in query order
    cum_pf: np.ndarray  # (Q+1,) cumulative training cost, PetaFLOPs
    abc_restart_mean: np.ndarray  # (Q+1,) original mode: mean over restarts of AbC of predictive means
    abc_restart_std: np.ndarray
    abc_joint_mean: np.ndarray  # (Q+1,) joint posterior draws
    abc_joint_std: np.ndarray
    b1_joint_std: np.ndarray  # (Q+1,) posterior std of b1
    n_floored: int = 0  # predicted / drawn loss values <= 0 floored before the log-log law (all rounds)
    n_refits: int = 0  # refits whose convergence was measured
    n_refits_unconverged: int = 0  # of those, refits with a restart whose negative ELBO was still falling


def uncertainty_scores(restart_means: jax.Array, missing: jax.Array) -> jax.Array:
    """Original acquisition: (1/P) sum_j Var_i(mu_i(x_j)) per curve (population variance); -inf if observed."""
    s = jnp.mean(jnp.var(restart_means, axis=0), axis=-1)
    return jnp.where(missing, s, -jnp.inf)


def variance_reduction_scores(b1: jax.Array, curve_draws: jax.Array, cost_pf: jax.Array, missing: jax.Array,
                              ridge: float = 1e-9) -> jax.Array:
    """Expected reduction of Var(b1) per PetaFLOP for observing each curve (linear-Gaussian, from draws).

    Args:
      b1: (R,) slope of each draw. curve_draws: (R, K, P) the draws' curves. cost_pf: (K,). missing: (K,).
    """
    bc = b1 - jnp.mean(b1)

    def one(y):  # y (R, P)
        yc = y - jnp.mean(y, axis=0)
        n = y.shape[0]
        syy = yc.T @ yc / n
        syb = yc.T @ bc / n
        scale = jnp.maximum(jnp.trace(syy) / y.shape[1], 1e-300)
        sol = jnp.linalg.solve(syy + ridge * scale * jnp.eye(y.shape[1], dtype=y.dtype), syb)
        return jnp.clip(syb @ sol, 0.0, jnp.var(b1))

    red = jax.vmap(one, in_axes=1)(curve_draws)
    return jnp.where(missing, red / cost_pf, -jnp.inf)


def masked_laws(plan: FrontierPlan, truth: jax.Array, missing: jax.Array, curves: jax.Array, gt_b1, gt_b0,
                u0=U0_DEFAULT, u1=U1_DEFAULT):
    """Law + AbC (over ``ln C`` in [u0, u1]) for curve sets (..., K, P): missing rows from ``curves``,
    observed rows from ``truth``."""
    loss = jnp.where(missing[:, None], curves, truth)
    law = law_from_loss(plan, loss)
    return law, abc_loglinear(law.b1, law.b0, gt_b1, gt_b0, u0, u1)


#: Predicted or drawn losses <= 0 (a Gaussian predictive puts mass there) are raised to this
#: fraction of the smallest observed loss before the log-log law, and counted for a warning.
FLOOR_FRACTION = 1e-3


def _loss_floor(truth):
    return FLOOR_FRACTION * jnp.min(truth)


def _joint_draws(key, truth, missing, mean, chol, n_samples: int):
    """``(n_samples, K, P)`` joint draws of every curve: the missing curves from the Gaussian
    predictive ``N(mean, chol chol^T)`` over their flattened rows, the observed ones from ``truth``.
    A Gaussian predictive can put mass below 0 loss: such values are floored at
    :data:`FLOOR_FRACTION` x the smallest loss of ``truth`` and counted (the count is returned,
    for a warning)."""
    K, P = truth.shape
    eps = jax.random.normal(key, (n_samples, K * P), dtype=mean.dtype)
    draws = jnp.where(missing[:, None], (mean + eps @ chol.T).reshape(n_samples, K, P), truth)
    return jnp.maximum(draws, _loss_floor(truth)), jnp.sum(draws <= 0)


@functools.partial(jax.jit, static_argnames=("n_samples",))
def _round(key, plan, truth, missing, restart_means, mean, chol, cost_pf, gt_b1, gt_b0, u0, u1, n_samples):
    means = jnp.maximum(restart_means, _loss_floor(truth))
    law_r, abc_r = masked_laws(plan, truth, missing, means, gt_b1, gt_b0, u0, u1)
    draws, n_floored = _joint_draws(key, truth, missing, mean, chol, n_samples)
    n_bad = jnp.sum((restart_means <= 0) & missing[:, None]) + n_floored
    law_j, abc_j = masked_laws(plan, truth, missing, draws, gt_b1, gt_b0, u0, u1)
    unc = uncertainty_scores(restart_means, missing)
    ours = variance_reduction_scores(law_j.b1, draws, cost_pf, missing)
    return abc_r, abc_j, law_j.b1, unc, ours, n_bad


def _fixed_order(labels, strategy, sizes=None):
    n = total_params([l for _, l in labels], [e for e, _ in labels]) if sizes is None else np.asarray(sizes)
    order = np.argsort(n, kind="stable")
    return order if strategy == "smallest" else order[::-1]


def run_active(key, fit_fn: Callable, labels, loss, compute, strategy: str, n_queries: int = 25,
               n_samples: int = 1000, rule: str = "interp", initial=None, progress_desc: str | None = None,
               grid=None, sizes=None, abc_range=None) -> ActiveTrace:
    """Run one active-learning trajectory.

    Args:
      key: PRNG key (first positional argument): model fits, joint draws and the random strategy.
      fit_fn: ``fit_fn(key, observed_mask (K,) bool np.ndarray, warm) -> RoundPrediction``.
      labels: K curve labels (nanoGPT: (n_embd, n_layer)); loss, compute: (K, P) true curves and
        their compute.
      strategy: one of :data:`STRATEGIES`.
      initial: observed labels at the start (default: every curve with the smallest n_layer).
      grid: compute grid of the law (default 1e18..1e20 FLOPs, the nanoGPT grid).
      sizes: (K,) order of the ``smallest`` / ``largest`` strategies (default: nanoGPT total
        parameters of the (n_embd, n_layer) labels).
      abc_range: ``(ln C_min, ln C_max)`` of the AbC (default ln 1e15 .. ln 1e20).
    """
    from jaxscale._log import get_logger, progress

    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; choose one of {STRATEGIES}")
    labels = [tuple(l) for l in labels]
    truth = np.asarray(loss, dtype=np.float64)
    K, P = truth.shape
    plan = make_plan(compute, grid=grid, rule=rule)
    u0, u1 = (U0_DEFAULT, U1_DEFAULT) if abc_range is None else (float(abc_range[0]), float(abc_range[1]))
    gt = law_from_loss(plan, jnp.asarray(truth))
    cost = curve_cost_pf(compute)
    if initial is None:
        min_layer = min(l for _, l in labels)
        initial = [lab for lab in labels if lab[1] == min_layer]
    observed = np.array([lab in set(map(tuple, initial)) for lab in labels])
    n_queries = min(int(n_queries), int((~observed).sum()))
    fixed = _fixed_order(labels, strategy, sizes) if strategy in ("smallest", "largest") else None
    log = get_logger(__name__)
    rows, queried, warm, n_floored, n_refits, n_unconv = [], [], None, 0, 0, 0
    keys = jax.random.split(key, n_queries + 1)
    for q in progress(range(n_queries + 1), desc=progress_desc or f"active[{strategy}]"):
        missing = ~observed
        cum = float(cost[observed].sum())
        if not missing.any():
            rows.append((cum, 0.0, 0.0, 0.0, 0.0, 0.0))
            break
        k_fit, k_draw, k_pick = jax.random.split(keys[q], 3)
        pred = fit_fn(k_fit, observed.copy(), warm)
        warm = pred.warm
        if getattr(pred, "converged", None) is not None:
            n_refits += 1
            n_unconv += int(not pred.converged)
        abc_r, abc_j, b1, unc, ours, n_bad = _round(k_draw, plan, jnp.asarray(truth), jnp.asarray(missing),
                                              jnp.asarray(pred.restart_means), jnp.asarray(pred.mean),
                                              jnp.asarray(pred.chol), jnp.asarray(cost), gt.b1, gt.b0, u0, u1,
                                              n_samples=n_samples)
        abc_r, abc_j, b1 = np.asarray(abc_r), np.asarray(abc_j), np.asarray(b1)
        n_floored += int(n_bad)
        if int(n_bad):
            log.warning("round %d (%s): %d predicted/drawn loss values <= 0 were floored at %g x the smallest "
                        "observed loss; the curve model is poorly fitted (more Adam steps?)", q, strategy, int(n_bad),
                        FLOOR_FRACTION)
        if not (np.all(np.isfinite(abc_r)) and np.all(np.isfinite(abc_j))):
            raise ValueError(f"round {q} ({strategy}): non-finite AbC; the model predicted a non-positive "
                             "loss or a degenerate covariance")
        rows.append((cum, abc_r.mean(), abc_r.std(), abc_j.mean(), abc_j.std(), b1.std()))
        if q == n_queries:
            break
        if strategy == "uncertainty":
            pick = int(np.argmax(np.asarray(unc)))
        elif strategy == "ours":
            pick = int(np.argmax(np.asarray(ours)))
        elif strategy == "random":
            pick = int(jax.random.choice(k_pick, np.flatnonzero(missing)))
        else:
            pick = int(next(i for i in fixed if missing[i]))
        observed[pick] = True
        queried.append(labels[pick])
        log.debug("round %d %s: query %s, AbC %.3f", q, strategy, labels[pick], abc_j.mean())
    a = np.asarray(rows, dtype=np.float64)
    return ActiveTrace(strategy, queried, a[:, 0], a[:, 1], a[:, 2], a[:, 3], a[:, 4], a[:, 5], n_floored, n_refits,
                       n_unconv)


def _cost_to_stay_below(abc, pf, thr):
    """Cumulative PF from which the AbC stays <= thr for all later queries."""
    above = np.flatnonzero(np.asarray(abc) > thr)
    i = 0 if above.size == 0 else above[-1] + 1
    return float(pf[i]) if i < len(pf) else float("inf")


def summarize_traces(traces: list, budgets_pf=None) -> dict:
    """Mean +- std over seeds of AbC vs queries, plus the cost to reach AbC thresholds."""
    by = {}
    for t in traces:
        by.setdefault(t.strategy, []).append(t)
    out = {}
    for s, ts in by.items():
        n = min(len(t.cum_pf) for t in ts)
        pf = np.stack([t.cum_pf[:n] for t in ts])
        aj = np.stack([t.abc_joint_mean[:n] for t in ts])
        ar = np.stack([t.abc_restart_mean[:n] for t in ts])
        out[s] = {
            "seeds": len(ts),
            "n_floored_values": int(sum(t.n_floored for t in ts)),
            "n_refits": int(sum(t.n_refits for t in ts)),
            "n_refits_unconverged": int(sum(t.n_refits_unconverged for t in ts)),
            "cum_pf": {"mean": pf.mean(0).tolist(), "std": pf.std(0).tolist()},
            "abc_joint": {"mean": aj.mean(0).tolist(), "std": aj.std(0).tolist()},
            "abc_restart": {"mean": ar.mean(0).tolist(), "std": ar.std(0).tolist()},
            "queried": [list(map(list, t.queried)) for t in ts],
            "auc_abc_vs_log_pf": float(np.mean([np.trapezoid(a, np.log(p)) for a, p in zip(aj, pf)])),
        }
        for thr in (0.2, 0.1, 0.05):
            costs = [_cost_to_stay_below(a, p, thr) for a, p in zip(aj, pf)]
            never = [i for i, c in enumerate(costs) if not np.isfinite(c)]
            entry = {"mean": float(np.mean(costs)) if not never else None,
                     "per_seed": [c if np.isfinite(c) else None for c in costs]}
            if never:
                entry["mean_reason"] = (f"seed(s) {never} never stayed at AbC <= {thr} within the queries made, so "
                                        "their cost is undefined (null in per_seed)")
            out[s][f"pf_to_abc_{thr}"] = entry
    return out


#: The file in ``out_dir`` that lets a killed replay resume: its fingerprint and every finished
#: (strategy, seed) trajectory with the PRNG key it ran with.
CHECKPOINT = "active_checkpoint.json"


def _fingerprint(key, settings: dict, labels, L, C, kw: dict) -> dict:
    """What decides the trajectories: the root key (each trajectory's own key is split from it),
    the caller's model settings, the loop's settings and a digest of the curves (labels, losses,
    compute)."""
    from jaxscale import __version__
    from jaxscale._checkpoint import array_digest

    loop = {k: (array_digest(np.asarray(v, float)) if k in ("grid", "sizes") else v)
            for k, v in kw.items() if v is not None}
    if "initial" in loop:
        loop["initial"] = sorted(map(str, loop["initial"]))
    return {"format": 1, "jaxscale": __version__, "key": np.asarray(jax.random.key_data(key)).ravel().tolist(),
            "settings": settings, "loop": loop,
            "curves": array_digest(np.asarray(L, float), np.asarray(C, float)),
            "labels": array_digest(np.asarray([str(tuple(l)) for l in labels]))}


def _trace_record(t: ActiveTrace, strategy: str, seed: int, key_data: list, seconds: float) -> dict:
    return {"strategy": strategy, "seed": seed, "key": key_data, "seconds": seconds,
            "queried": [list(q) for q in t.queried],
            **{f: np.asarray(getattr(t, f), float).tolist() for f in ActiveTrace._fields[2:8]},
            **{f: int(getattr(t, f)) for f in ActiveTrace._fields[8:]}}


def _trace_from_record(r: dict) -> ActiveTrace:
    return ActiveTrace(r["strategy"], [tuple(q) for q in r["queried"]],
                       *[np.asarray(r[f], np.float64) for f in ActiveTrace._fields[2:8]],
                       *[int(r[f]) for f in ActiveTrace._fields[8:]])


def _open_checkpoint(out_dir, fingerprint: dict, overwrite: bool) -> dict:
    """``{(strategy, seed): record}`` of the trajectories a run with this fingerprint finished in
    ``out_dir``; a checkpoint of another run is an error naming what differs (``overwrite``:
    discarded instead)."""
    import json

    from jaxscale._checkpoint import refuse_other_run
    from jaxscale._json import dumps

    path = Path(out_dir) / CHECKPOINT
    if not path.exists():
        return {}
    try:
        old = json.loads(path.read_text())
        records = {(r["strategy"], int(r["seed"])): r for r in old["trajectories"]}
        old_fp = old["fingerprint"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        if overwrite:
            return {}
        raise ValueError(f"active learning: {path} is damaged ({exc}); remove it or pass --overwrite "
                         "(Python: overwrite=True) to start again") from exc
    fingerprint = json.loads(dumps(fingerprint))  # as it reads back from the file
    stale = refuse_other_run(old_fp, fingerprint, overwrite, f"active learning: {path}",
                             "resuming would mix its trajectories with this run's",
                             "Choose a new --out-dir, or discard it with --overwrite (Python: overwrite=True)")
    return {} if stale else records


def _save_checkpoint(out_dir, fingerprint: dict, records: dict) -> None:
    from jaxscale._checkpoint import write_atomic
    from jaxscale._json import dumps

    Path(out_dir).mkdir(parents=True, exist_ok=True)
    text = dumps({"fingerprint": fingerprint, "trajectories": list(records.values())}, indent=1).encode()
    write_atomic(Path(out_dir) / CHECKPOINT, lambda fh: fh.write(text))


def _run_strategies(key, strategies, seeds, fit_fn, labels, L, C, out_dir, settings=None, overwrite=False, **kw):
    """Every strategy x seed (sequential: each round depends on the last); partial JSON after each
    strategy. With ``out_dir``, every finished trajectory is checkpointed there
    (:data:`CHECKPOINT`), and a run with the same settings and curves (``settings``: those of the
    caller's ``fit_fn``) takes the trajectories it finds instead of running them again: a killed
    replay resumes, and more strategies or seeds can be added later. Returns ``(traces,
    seconds_per_strategy, n_resumed)``; the seconds of a resumed trajectory are those it took."""
    bad = [s for s in strategies if s not in STRATEGIES]
    if bad:
        raise ValueError(f"unknown strategies {bad}; choose from {STRATEGIES} or 'all'")
    if seeds < 1 or kw.get("n_queries", 1) < 1:
        raise ValueError("--seeds and --queries must be >= 1")
    from jaxscale._json import dumps
    from jaxscale._log import get_logger, progress

    fingerprint = _fingerprint(key, settings or {}, labels, L, C, kw)
    records = {} if out_dir is None else _open_checkpoint(out_dir, fingerprint, overwrite)
    traces, seconds, n_resumed = [], {}, 0
    keys = jax.random.split(key, seeds)
    overall = progress(total=len(strategies) * seeds, desc="active learning: trajectories (strategy x seed)")
    for s in strategies:
        seconds[s] = 0.0
        for i in range(seeds):
            kd = np.asarray(jax.random.key_data(keys[i])).tolist()
            rec = records.get((s, i))
            if rec is not None and rec["key"] == kd:
                traces.append(_trace_from_record(rec))
                seconds[s] += float(rec["seconds"])
                n_resumed += 1
                overall.update(1)
                continue
            t1 = time.perf_counter()
            traces.append(run_active(keys[i], fit_fn, labels, L, C, s, progress_desc=f"active {s} seed {i}", **kw))
            dt = time.perf_counter() - t1
            seconds[s] += dt
            overall.update(1)
            if out_dir is not None:
                records[(s, i)] = _trace_record(traces[-1], s, i, kd, dt)
                _save_checkpoint(out_dir, fingerprint, records)
        if out_dir is not None:
            Path(out_dir).mkdir(parents=True, exist_ok=True)
            (Path(out_dir) / "active_partial.json").write_text(dumps(
                {"seconds_per_strategy": seconds, "results": summarize_traces(traces)}, indent=1))
    overall.close()
    if n_resumed:
        get_logger(__name__).info("active learning: %d of %d trajectories taken from %s (same settings and "
                                  "curves)", n_resumed, len(traces), Path(out_dir) / CHECKPOINT)
    n_ref = sum(t.n_refits for t in traces)
    n_bad = sum(t.n_refits_unconverged for t in traces)
    if n_bad:
        warnings.warn(f"active learning: {n_bad} of {n_ref} curve-model refits had a restart whose negative ELBO "
                      "was still falling at the end of its Adam steps; raise --steps / --cold-steps", RuntimeWarning,
                      stacklevel=3)
    return traces, seconds, n_resumed


def write_active(out: dict, out_dir) -> dict:
    """Write ``active.json`` (strict JSON: undefined numbers are ``null`` with a ``*_reason``) and
    ``active_abc.png`` into ``out_dir`` (when given); list them under ``files``."""
    from jaxscale._json import dumps

    if out_dir is not None:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "active.json").write_text(dumps(out, indent=1))
        from jaxscale.learning_curves.plot import plot_active

        plot_active(out_dir / "active_abc.png", out["results"])
        out["files"] = [str(out_dir / "active.json"), str(out_dir / "active_abc.png")]
    return out


def active_experiment(seed: int, strategies, seeds: int = 3, n_queries: int = 25, n_samples: int = 500,
                      restarts: int = 4, steps: int = 150, dataset: str = "nanogpt_large", model: str = "magp",
                      out_dir: Path | None = None, cold_steps: int = 600, n_h: int = 8, fit_fn=None,
                      overwrite: bool = False) -> dict:
    """Run every strategy for ``seeds`` seeds on a bundled nanoGPT grid; JSON + plot into ``out_dir``,
    where every finished trajectory is also checkpointed: the same call again resumes a killed run
    (a checkpoint of other settings is an error; ``overwrite``: discarded). A custom ``fit_fn`` is
    recognised by its name only."""
    from jaxscale.learning_curves.compute import load_nanogpt_curves

    labels, L, C = load_nanogpt_curves(dataset).flat()
    settings = {"dataset": dataset, "model": model, "restarts": restarts, "steps": steps, "cold_steps": cold_steps,
                "n_h": n_h}
    if fit_fn is None:
        fit_fn = round_predictor(dataset, labels, model=model, restarts=restarts, steps=steps,
                                 cold_steps=cold_steps, n_h=n_h)
    else:
        settings = {"dataset": dataset, "fit_fn": getattr(fit_fn, "__qualname__", type(fit_fn).__name__)}
    t0 = time.perf_counter()
    traces, seconds, n_resumed = _run_strategies(jax.random.key(seed), strategies, seeds, fit_fn, labels, L, C,
                                                 out_dir, settings, overwrite, n_queries=n_queries,
                                                 n_samples=n_samples)
    out = {"dataset": dataset, "model": model, "strategies": list(strategies), "seeds": seeds,
           "queries": n_queries, "samples": n_samples, "restarts_per_refit": restarts, "steps_per_refit": steps,
           "cold_steps": cold_steps, "n_h": n_h, "seconds": time.perf_counter() - t0,
           "seconds_per_strategy": seconds, "resumed_trajectories": n_resumed, "results": summarize_traces(traces)}
    return write_active(out, out_dir)


def _candidate_curves(data, held):
    """``(curve table, candidates (K,) bool)``: the curves whose rows are all in ``held``. Refuses a
    hold-out that cuts a curve, or that leaves no candidate or no observed curve."""
    from jaxscale.learning_curves.frame import curve_ids
    from jaxscale.learning_curves.law import check_law_data, curve_table

    held = np.asarray(held, bool)
    table = curve_table(data)
    check_law_data(data, table)
    pos = np.searchsorted(table.curve, curve_ids(data))  # curve position of every row
    n_held = np.bincount(pos, weights=held, minlength=len(table.curve)).astype(int)
    n_rows = table.valid.sum(1)
    partial = np.flatnonzero((n_held > 0) & (n_held < n_rows))
    if partial.size:
        lab = table.labels[int(partial[0])]
        raise ValueError(f"active learning queries whole curves, but --holdout selects {n_held[partial[0]]} of the "
                         f"{n_rows[partial[0]]} rows of curve {lab} ({partial.size} such curves); hold out whole "
                         "curves, e.g. by task or instance. A run in progress (its first steps logged): predict its "
                         "rest with lc extrapolate")
    candidates = n_held == n_rows
    if not candidates.any() or candidates.all():
        raise ValueError("active learning needs some held-out curves (candidates) and some observed curves")
    return table, candidates


@functools.partial(jax.jit, static_argnames=("n_samples",))
def _score_candidates(key, plan, truth, missing, restart_means, mean, chol, cost_pf, n_samples):
    """Joint draws of every curve (observed rows from ``truth``), one law per draw, and both
    acquisition scores: ``(b1 (S,), b0 (S,), final loss draws (S, K), uncertainty (K,),
    Var(b1) reduction per PF (K,), number of floored values)``."""
    draws, n_bad = _joint_draws(key, truth, missing, mean, chol, n_samples)
    law = law_from_loss(plan, draws)
    return (law.b1, law.b0, draws[:, :, -1], uncertainty_scores(restart_means, missing),
            variance_reduction_scores(law.b1, draws, cost_pf, missing), n_bad)


def recommend(key, data, held, *, model: str = "magp", restarts: int = 4, cold_steps: int = 600, n_h: int = 8,
              n_samples: int = 2000, learning_rate: float = 1e-2, rule: str = "interp", grid=None,
              grid_size: int = 100, level: float = 0.9) -> dict:
    """Which of your candidate runs to train next, for the scaling law of your curves.

    The curves whose rows are all in ``held`` are the candidates: runs you could train, given by
    their configuration, the steps they would log and the compute of every step (their loss may be
    missing: NaN). The other curves are your finished runs. One fit of the curve model (``model``,
    ``cold_steps`` Adam steps, ``restarts`` restarts; see :func:`table_round_predictor`) on the
    finished runs predicts every candidate jointly; ``n_samples`` joint draws give one law
    ``ln L = b1 ln C + b0`` each. Every candidate is scored by the expected reduction of
    Var(b1) from observing its curve (linear-Gaussian, from the draws) per PetaFLOP of its training
    compute, the cost-aware strategy ``ours`` of :func:`run_active`; the original strategy's score
    (the restarts' disagreement) and the cheapest candidate (what smallest-first would train) are
    reported beside it.

    Args:
      key: PRNG key (the fit and the draws).
      data: every row, with compute; finished runs need their loss on every row.
      held: ``(n,)`` mask that selects whole candidate curves.
      level: central band of the predicted final losses and of b1, b0.

    Returns:
      A JSON-ready dict: ``ranking`` (best first: label, cost, expected Var(b1) reduction in absolute
      terms, as a fraction of today's Var(b1) and per PetaFLOP, the original uncertainty score, the
      predicted final loss with its band), ``next``, ``smallest_first``, the law today
      (``b1``, ``b0``), the finished runs (``finished``: cost and final loss), and the fit's
      convergence.
    """
    from jaxscale.config import warn_if_float32
    from jaxscale.learning_curves.core import Spec, _check_training
    from jaxscale.learning_curves.law import default_grid, law_stats

    warn_if_float32("recommend")
    if n_samples < 2:
        raise ValueError(f"n_samples must be >= 2 (the scores are covariances over draws), got {n_samples}")
    table, candidates = _candidate_curves(data, held)
    held = np.asarray(held, bool)
    y = np.asarray(data.y, float)
    bad = ~held & ~np.isfinite(y)
    if bad.any():
        from jaxscale.learning_curves.core import _ids

        raise ValueError(f"{int(bad.sum())} rows of finished runs (outside the candidates) have no loss, at rows "
                         f"{_ids(data, bad)}; fill or remove them, or include their runs in the candidates")
    _check_training(data.rows(~held), Spec(model=model, restarts=restarts, steps=max(cold_steps, 1)))
    _warn_unseen_tasks(data, held, model)
    g = default_grid(table, grid_size) if grid is None else np.asarray(grid, float)
    plan = make_plan(table.compute, grid=g, rule=rule)
    fill = float(np.max(y[~held]))  # candidates' rows are never read from the truth (masked); any finite value
    truth = np.where(np.isfinite(y), y, fill)[table.index]
    cost = curve_cost_pf(table.compute)
    # the candidates' losses (when present) are never read: the fit sees the finished runs only
    fit_fn = table_round_predictor(data, table, restarts=restarts, cold_steps=cold_steps, n_h=n_h,
                                   learning_rate=learning_rate, model=model)
    k_fit, k_draw = jax.random.split(key)
    t0 = time.perf_counter()
    pred = fit_fn(k_fit, ~candidates, None)
    fit_s = time.perf_counter() - t0
    b1, b0, final, unc, per_pf, n_bad = _score_candidates(
        k_draw, plan, jnp.asarray(truth), jnp.asarray(candidates), jnp.asarray(pred.restart_means),
        jnp.asarray(pred.mean), jnp.asarray(pred.chol), jnp.asarray(cost), n_samples=int(n_samples))
    b1, b0, final = np.asarray(b1), np.asarray(b0), np.asarray(final)
    unc, per_pf = np.asarray(unc), np.asarray(per_pf)
    if int(n_bad):
        from jaxscale._log import get_logger

        get_logger(__name__).warning("%d drawn loss values <= 0 were floored at %g x the smallest observed "
                                     "loss before the log-log law; the curve model is poorly fitted (more "
                                     "--cold-steps or restarts?)", int(n_bad), FLOOR_FRACTION)
    if not (np.all(np.isfinite(b1)) and np.all(np.isfinite(per_pf[candidates]))):
        raise ValueError("the law's draws or the candidates' scores are not finite: the curve model predicted a "
                         "degenerate covariance; try more --cold-steps or restarts")
    var_b1 = float(np.var(b1))
    q = (1 - level) / 2
    idx = np.flatnonzero(candidates)
    order = idx[np.argsort(-per_pf[idx], kind="stable")]
    ranking = []
    for rank, k in enumerate(order, 1):
        red = float(per_pf[k] * cost[k])
        ranking.append({"rank": rank, "curve": list(table.labels[k]), "cost_pf": float(cost[k]),
                        "var_b1_reduction": red, "var_b1_reduction_fraction": red / var_b1 if var_b1 > 0 else 0.0,
                        "var_b1_reduction_per_pf": float(per_pf[k]), "restart_disagreement": float(unc[k]),
                        "final_loss": {"mean": float(final[:, k].mean()), "lo": float(np.quantile(final[:, k], q)),
                                       "hi": float(np.quantile(final[:, k], 1 - q))}})
    cheapest = idx[int(np.argmin(cost[idx]))]
    best = ranking[0]
    cheap = next(r for r in ranking if r["curve"] == list(table.labels[cheapest]))
    out = {"model": model, "strategy": "ours (expected reduction of Var(b1) per PetaFLOP)",
           "n_curves": len(table.labels), "n_candidates": int(candidates.sum()), "samples": int(n_samples),
           "restarts": restarts, "cold_steps": cold_steps, "level": level, "next": best["curve"],
           "ranking": ranking,
           "smallest_first": {"curve": cheap["curve"], "rank": cheap["rank"],
                              "var_b1_reduction_per_pf": cheap["var_b1_reduction_per_pf"],
                              "note": "the cheapest candidate, what the smallest-first strategy would train"},
           "original_strategy": {"curve": list(table.labels[idx[int(np.argmax(unc[idx]))]]),
                                 "note": "the candidate whose restarts disagree most (the original acquisition)"},
           "law": {"b1": law_stats(b1, level), "b0": law_stats(b0, level)},
           "finished": [{"curve": list(table.labels[k]), "cost_pf": float(cost[k]), "final_loss": float(truth[k, -1])}
                        for k in np.flatnonzero(~candidates)],
           "grid": {"min": float(g[0]), "max": float(g[-1]), "size": int(len(g)), "default": grid is None},
           "n_padded_points": table.n_padded, "n_floored_values": int(n_bad),
           "converged": pred.converged, "fit_seconds": fit_s,
           "caveat": "one round, scored from the model's own joint predictive: the expected reductions are as good "
                     "as its intervals (check them with lc evaluate on your finished runs)"}
    if pred.converged is False:
        warnings.warn(f"recommend: a restart of the curve-model fit was still improving after --cold-steps "
                      f"{cold_steps}; raise it before trusting the ranking", RuntimeWarning, stacklevel=2)
    return out


def _warn_unseen_tasks(data, held, model: str) -> None:
    """MaGP has no way to predict a task (first grouping column) with no finished run: it returns its
    prior mean. Say so, and name the model that can (a law in the configuration descriptors)."""
    if model != "magp":
        return
    task = np.asarray(data.task)
    unseen = sorted(set(task[held].tolist()) - set(task[~held].tolist()))
    if unseen:
        names = [str(data.task_labels[t]) for t in unseen]
        warnings.warn(f"recommend: {len(unseen)} candidate task value(s) {names[:5]} have no finished run; MaGP "
                      "predicts them from its prior mean only. Use --model magp_law with --descriptor-cols "
                      "(a scaling law in the configuration) for sizes you have not trained", RuntimeWarning,
                      stacklevel=3)


def table_active(key, data, held, strategies=("uncertainty", "random", "smallest", "largest", "ours"), *,
                 seeds: int = 3, n_queries: int | None = None, n_samples: int = 500, restarts: int = 4,
                 steps: int = 150, cold_steps: int = 600, n_h: int = 8, learning_rate: float = 1e-2,
                 rule: str = "interp", grid=None, grid_size: int = 100, out_dir=None, model: str = "magp",
                 overwrite: bool = False) -> dict:
    """Active learning replayed on your own finished runs: which held-out curve to train next.

    The curves whose rows are all in ``held`` are the candidates; the others start observed. Every
    round refits the curve model (``model``: MaGP warm-started, or a cold fit of ``magp_desc`` /
    ``magp_law``, see :func:`table_round_predictor`) on the observed curves,
    scores the probabilistic law of all curves against the law of the true curves (AbC over the
    law's compute grid), and queries one candidate by ``strategy``. A candidate's cost is its final
    cumulative compute (PetaFLOPs); ``smallest`` / ``largest`` order candidates by that cost.

    Args:
      key: PRNG key.
      data: every row, with compute and the true loss of every row.
      held: ``(n,)`` mask of held-out rows; it must select whole curves.
      strategies: subset of :data:`STRATEGIES`.
      n_queries: queries per run (default: every candidate).
      grid: compute grid of the law (default: the data's range, :func:`.law.default_grid`).
      out_dir: folder for ``active.json`` and ``active_abc.png``; every finished (strategy, seed)
        trajectory is checkpointed there, so the same call again resumes a killed replay, and a
        call with more strategies or seeds runs only the new ones. A checkpoint of other settings or
        another table is an error naming what differs (``overwrite``: discarded instead).

    Returns:
      A JSON-ready dict with per-strategy AbC-vs-queries/cost summaries (``results``) and
      ``resumed_trajectories``, the number taken from the checkpoint.
    """
    from jaxscale.learning_curves.law import abc_range_info, default_grid

    table, candidates = _candidate_curves(data, held)
    held = np.asarray(held, bool)
    y = np.asarray(data.y, float)
    if not np.all(np.isfinite(y)):
        raise ValueError(f"{int((~np.isfinite(y)).sum())} rows have no loss; active learning is replayed on "
                         "finished runs, so every row (held-out ones included) needs its true loss. To rank "
                         "candidate runs you have not trained yet, use recommend (CLI: lc active --recommend)")
    from jaxscale.learning_curves.core import Spec, _check_training

    # the first refit trains on the observed curves: refuse what fit() refuses (constant targets, too few points)
    _check_training(data.rows(~held), Spec(model=model, restarts=restarts, steps=max(steps, 1)))
    g = default_grid(table, grid_size) if grid is None else np.asarray(grid, float)
    L, C = y[table.index], table.compute
    labels = list(table.labels)
    fit_fn = table_round_predictor(data, table, restarts=restarts, steps=steps, cold_steps=cold_steps, n_h=n_h,
                                   learning_rate=learning_rate, model=model)
    n_queries = int(candidates.sum()) if n_queries is None else int(n_queries)
    from jaxscale._checkpoint import array_digest

    settings = {"model": model, "restarts": restarts, "steps": steps, "cold_steps": cold_steps, "n_h": n_h,
                "learning_rate": learning_rate, "table": array_digest(data)}
    t0 = time.perf_counter()
    traces, seconds, n_resumed = _run_strategies(
        key, list(strategies), seeds, fit_fn, labels, L, C, out_dir, settings, overwrite, n_queries=n_queries,
        n_samples=n_samples, rule=rule, initial=[labels[i] for i in np.flatnonzero(~candidates)], grid=g,
        sizes=curve_cost_pf(C), abc_range=(float(np.log(g[0])), float(np.log(g[-1]))))
    out = {"model": model, "strategies": list(strategies), "seeds": seeds, "queries": n_queries,
           "n_curves": len(labels), "n_candidates": int(candidates.sum()),
           "candidates": [list(labels[i]) for i in np.flatnonzero(candidates)],
           "candidate_cost_pf": curve_cost_pf(C)[candidates].tolist(),
           "grid": {"min": float(g[0]), "max": float(g[-1]), "size": int(len(g)), "default": grid is None},
           "abc_range": abc_range_info(g[0], g[-1], "the compute grid"),
           "n_padded_points": table.n_padded, "samples": n_samples, "restarts_per_refit": restarts,
           "steps_per_refit": steps, "cold_steps": cold_steps, "n_h": n_h, "seconds": time.perf_counter() - t0,
           "seconds_per_strategy": seconds, "resumed_trajectories": n_resumed, "results": summarize_traces(traces)}
    return write_active(out, out_dir)


def _al_fit_predict_impl(keys, params0, xgrid, pts, query, steps, learning_rate, n_h):
    """Adam from ``params0`` (R restarts, split over all devices, one after another on one CPU
    device; :func:`.magp.adam_elbo`, the same loop as every MaGP fit) on the training points ``pts``
    (padding rows have weight ``pts.w = 0``), then the q(h)-integrated joint predictive of
    ``query``: ``(params, last loss, mean (R, M), cov (R, M, M), converged (R,))`` (see
    :mod:`.diagnostics`)."""
    from jaxscale.learning_curves.diagnostics import adam_convergence
    from jaxscale.learning_curves.magp import adam_elbo, magp_loss
    from jaxscale.learning_curves.magp_predict import joint_from_latents, latent_draws

    D, Q = params0.h_mean.shape[-2:]
    dtype = pts.y.dtype

    def one(key, x0):
        k_run, k_h = jax.random.split(key)
        x, loss, hist, _ = adam_elbo(magp_loss, x0, k_run, None, (D, Q), steps, learning_rate, 1, dtype, xgrid, pts,
                                     decay=REFIT_LR_DECAY)
        hs = latent_draws(x, jax.random.normal(k_h, (n_h, D, Q), dtype))
        mean, cov, _, _ = joint_from_latents(x, hs, xgrid, pts, query)
        return x, loss, mean, cov, adam_convergence(hist)[0][0]

    from jaxscale.infer.sharding import sharded_vmap

    return sharded_vmap(lambda kx: one(*kx), (keys, params0), linalg=True)  # restarts split over all devices


_al_jit = {}


def _al_fn():
    fn = _al_jit.get("fn")
    if fn is None:
        fn = jax.jit(_al_fit_predict_impl, static_argnames=("steps", "n_h"))
        _al_jit["fn"] = fn
    return fn


def _refit(key, warm, train, query, xgrid, n_tasks: int, mu_q, sd_q, *, restarts, steps, cold_steps, n_h,
           learning_rate, bucket):
    """One active-learning refit: pad ``train`` (standardised Points) to a multiple of ``bucket`` with
    inert rows, Adam from ``warm`` (or a fresh start with ``cold_steps``), predict ``query``.
    ``xgrid``: the grid ``train.p`` indexes, or ``None`` when ``train.p = arange(N)`` (pointwise).

    Returns ``(params for the next warm start, restart means (R_ok, M), mixture mean (M,),
    mixture covariance (M, M), converged)`` in original units (``mu_q``, ``sd_q`` per query point);
    ``converged``: every finite restart's negative ELBO stopped falling."""
    from jaxscale.learning_curves.magp import init_magp
    from jaxscale.learning_curves.problem import Points

    N = int(train.x.shape[0])
    n_pad = _round_up(N, bucket) - N
    # on the host: the padded length changes every round, and eager device code would compile a
    # small program per operation and length
    pad = lambda a, v: np.concatenate([np.asarray(a), np.full((n_pad,), v, np.asarray(a).dtype)])  # noqa: E731
    w = (np.arange(N + n_pad) < N).astype(np.asarray(train.y).dtype)
    pts = Points(pad(train.x, 0.0), pad(train.p, 0), pad(train.r, 0), pad(train.d, 0), pad(train.c, 0),
                 pad(train.y, 0.0), w)
    xgrid = pts.x if xgrid is None else xgrid  # None: every training point is its own grid entry
    k_init, k_run = jax.random.split(key)
    if warm is None:
        params0 = jax.vmap(lambda k: init_magp(k, n_tasks))(jax.random.split(k_init, restarts))
        n_steps = cold_steps
    else:
        params0, n_steps = warm, steps
    x, loss, m, C, conv = _al_fn()(jax.random.split(k_run, restarts), params0, xgrid, pts, query,
                                   steps=n_steps, learning_rate=learning_rate, n_h=n_h)
    loss = np.asarray(loss)
    ok = np.isfinite(loss) & np.all(np.isfinite(np.asarray(m)), axis=1)
    if not ok.any():
        raise ValueError("active-learning refit: every restart went non-finite")
    sd, mu = np.asarray(sd_q), np.asarray(mu_q)
    m = np.asarray(m)[ok] * sd + mu
    mean, cov = _mixture(m, np.asarray(C)[ok] * np.outer(sd, sd))
    if not ok.all():  # keep the restart count (fixed shapes): refill dead restarts with a live one
        good = int(np.flatnonzero(ok)[0])
        x = jax.tree.map(lambda a: a.at[~jnp.asarray(ok)].set(a[good]), x)
    return x, m, mean, cov, bool(np.asarray(conv)[ok].all())


def _mixture(m, C):
    """Equal-weight mixture of the restarts' joint predictives ``m (R, M)``, ``C (R, M, M)``:
    ``(mean (M,), cov (M, M))``."""
    mean = m.mean(0)
    cov = (C + m[:, :, None] * m[:, None, :]).mean(0) - np.outer(mean, mean)
    return mean, cov


def _round_up(n: int, bucket: int) -> int:
    """``n`` rounded up to a multiple of ``bucket`` (the padded size of a refit's training points)."""
    return -(-n // bucket) * bucket


def _law_refit(key, problem, query, model: str, *, restarts, steps, n_h, learning_rate, bucket):
    """One cold refit of a descriptor model (``magp_desc`` / ``magp_law``) on a bundled problem, its
    training points padded to a multiple of ``bucket`` (one compiled program per padded size), and
    the restart mixture of its joint predictive of ``query``: ``(restart means (R_ok, M), mean, cov,
    converged)`` in original units."""
    from jaxscale.learning_curves.diagnostics import adam_convergence
    from jaxscale.learning_curves.models import fit_model, predict_joint

    k_fit, k_pred = jax.random.split(key)
    N = int(problem.train.x.shape[0])
    fit = fit_model(k_fit, problem, model, restarts=restarts, steps=steps, learning_rate=learning_rate,
                    pad_to=_round_up(N, bucket), lr_decay=REFIT_LR_DECAY)
    ok = np.asarray(fit.result.ok)
    if not ok.any():
        raise ValueError(f"active-learning refit ({model}): every restart went non-finite")
    jp = predict_joint(k_pred, fit, problem, query, n_h=n_h)
    m = np.asarray(jp.mean)
    mean, cov = _mixture(m, np.asarray(jp.cov))
    conv = np.asarray(adam_convergence(fit.result.history)[0])
    return m, mean, cov, bool(conv[ok].all())


def _masked_chol(cov, missing_rows):
    """Cholesky factor of the covariance restricted to missing rows (observed rows: 1e-6 I)."""
    from jaxscale.gp.linalg import cholesky_with_jitter

    keep = missing_rows[:, None] & missing_rows[None, :]
    cov = np.where(keep, cov, np.eye(cov.shape[0]) * 1e-6)
    return np.asarray(cholesky_with_jitter(cov, what="active-learning joint predictive"))


def round_predictor(dataset: str, labels, model: str = "magp", restarts: int = 4, steps: int = 150,
                    cold_steps: int = 600, n_h: int = 8, learning_rate: float = 1e-2, bucket: int = 55):
    """``fit_fn(key, observed_mask, warm) -> RoundPrediction`` for :func:`run_active` on a bundled dataset.

    ``model="magp"``: cheap refits (changes vs the original's 10 cold restarts x 2000 Adam steps
    per query): ``restarts`` restarts, ``cold_steps`` Adam steps in the first round, then
    ``steps`` steps warm-started from the previous round's parameters. ``"magp_desc"`` /
    ``"magp_law"``: a cold refit of ``cold_steps`` steps every round (the law-informed model refits
    its law on the observed curves first). q(h) is integrated with ``n_h`` draws; training points
    are padded with inert rows to a multiple of ``bucket`` so that 25 rounds compile only ~6
    programs. Predicts all K curves jointly (observed rows are masked by the loop).
    """
    from jaxscale.learning_curves.heldout import frame_labels, heldout_problem
    from jaxscale.learning_curves.problem import points_from_frame
    from jaxscale.learning_curves.spec import ACTIVE_MODELS

    if model not in ACTIVE_MODELS:
        raise ValueError(f"active learning supports models {ACTIVE_MODELS}, got {model!r}")
    labels = [tuple(l) for l in labels]

    def fit_fn(key, observed, warm):
        held = [lab for lab, o in zip(labels, observed) if not o]
        problem = heldout_problem(dataset, held, "active")
        f = problem.data.frame
        all_labels, P = frame_labels(f)
        if list(all_labels) != labels:
            raise ValueError("dataset curve order differs from the active-learning labels")
        query = points_from_frame(f, np.asarray(problem.xgrid), problem.scaler, problem.n_reps)
        if model != "magp":  # cold refit every round (the law is refitted on the observed curves)
            m, mean, cov, conv = _law_refit(key, problem, query, model, restarts=restarts, steps=cold_steps,
                                            n_h=n_h, learning_rate=learning_rate, bucket=bucket)
            chol = _masked_chol(cov, np.repeat(~np.asarray(observed), P))
            return RoundPrediction(m.reshape(len(m), len(labels), P), mean, chol, warm=None, converged=conv)
        qd = np.asarray(query.d)
        x, m, mean, cov, conv = _refit(key, warm, problem.train, query, problem.xgrid, problem.n_tasks,
                                       np.asarray(problem.scaler.mean)[qd], np.asarray(problem.scaler.std)[qd],
                                       restarts=restarts, steps=steps, cold_steps=cold_steps, n_h=n_h,
                                       learning_rate=learning_rate, bucket=bucket)
        chol = _masked_chol(cov, np.repeat(~np.asarray(observed), P))
        return RoundPrediction(m.reshape(len(m), len(labels), P), mean, chol, warm=x, converged=conv)

    return fit_fn


def table_round_predictor(data, table, restarts: int = 4, steps: int = 150, cold_steps: int = 600, n_h: int = 8,
                          learning_rate: float = 1e-2, bucket: int = 55, model: str = "magp"):
    """``fit_fn(key, observed_mask, warm) -> RoundPrediction`` for :func:`run_active` on your own
    table. ``model="magp"``: the cheap warm-started refits of :func:`round_predictor`;
    ``"magp_desc"`` / ``"magp_law"``: a cold fit of the learning-curve contract
    (:func:`.core.fit`, ``cold_steps`` Adam steps) on the observed curves every round, which needs
    the table's descriptor columns.

    ``data``: every row (the loss of every row is known: active learning is replayed on finished
    runs); ``table``: its :func:`.law.curve_table` layout (K curves x P padded points).
    """
    from jaxscale.learning_curves.core import _points, _task_scaler
    from jaxscale.learning_curves.frame import curve_ids

    cid = curve_ids(data)
    K, P = table.index.shape
    D, R = data.n_tasks, data.n_instances
    x_all = jnp.asarray(data.x)
    d_all, r_all = jnp.asarray(data.task, jnp.int32), jnp.asarray(data.instance, jnp.int32)
    y_all = jnp.asarray(data.y)
    flat = table.index.reshape(-1)
    n = len(data)

    def layout(m, mean, cov, rows, conv):
        L = _masked_chol(cov, ~rows)
        A = np.zeros((K * P, K * P))
        A[:, :n] = L[flat]  # padded entries repeat their curve's last row exactly
        return RoundPrediction(m[:, table.index], mean[flat], A, warm=None, converged=conv)

    def fit_contract(key, observed, warm):
        from jaxscale.learning_curves.core import Spec, fit, predict_restarts

        rows = np.isin(cid, table.curve[np.asarray(observed)])
        spec = Spec(model=model, restarts=restarts, steps=cold_steps, learning_rate=learning_rate, n_h=n_h,
                    lr_decay=REFIT_LR_DECAY)
        with warnings.catch_warnings():
            # counted per refit (``converged``) and warned once at the end, naming --cold-steps: the
            # contract's own message names --steps, which is not what sets these refits
            warnings.filterwarnings("ignore", message=r".*still falling over the last", category=RuntimeWarning)
            f = fit(key, data.rows(rows), spec)
        jp = predict_restarts(f, data)
        m = np.asarray(jp.mean)
        mean, cov = _mixture(m, np.asarray(jp.cov))
        return layout(m, mean, cov, rows, bool(np.asarray(f.converged)[np.asarray(f.ok)].all()))

    def fit_fn(key, observed, warm):
        if model != "magp":
            return fit_contract(key, observed, warm)
        rows = np.isin(cid, table.curve[np.asarray(observed)])
        sel = np.flatnonzero(rows)
        mean_d, std_d = _task_scaler(d_all[sel], y_all[sel], D)
        d_tr = d_all[sel]
        train = _points(x_all[sel], d_tr, r_all[sel], R, (y_all[sel] - mean_d[d_tr]) / std_d[d_tr])
        query = _points(x_all, d_all, r_all, R, jnp.zeros_like(y_all))
        x, m, mean, cov, conv = _refit(key, warm, train, query, None, D, mean_d[d_all], std_d[d_all],
                                       restarts=restarts, steps=steps, cold_steps=cold_steps, n_h=n_h,
                                       learning_rate=learning_rate, bucket=bucket)
        return layout(m, mean, cov, rows, conv)._replace(warm=x)

    return fit_fn
