r"""Active learning of a scaling law: which learning curve to train next.

Start from the five 8-layer nanoGPT-large curves; at every round refit the curve model on the
observed curves, predict the missing ones, score the probabilistic law against the ground truth
(AbC), and query one more curve until 25 queries are done. The training cost of a queried curve is
its final cumulative compute (PetaFLOPs, :func:`.compute.curve_cost_pf`).

Strategies:

* ``uncertainty`` (the original): mean over the 11 points of the across-restart variance of the
  restarts' predictive means; argmax.
* ``random``, ``smallest`` (ascending total parameters), ``largest`` (descending).
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
import json
import time
from pathlib import Path
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxscale.learning_curves.compute import curve_cost_pf, total_params
from jaxscale.learning_curves.frontier import FrontierPlan, law_from_loss, make_plan
from jaxscale.metrics import abc_loglinear

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
    "round_predictor",
]

STRATEGIES = ("uncertainty", "random", "smallest", "largest", "ours")


class RoundPrediction(NamedTuple):
    """A fitted model's predictions of ALL K curves (observed rows are ignored), original units.

    restart_means: (restarts, K, P) per-restart predictive means.
    mean: (K*P,) joint predictive mean; chol: (K*P, K*P) Cholesky factor of the joint covariance
      (rows of observed curves may be anything finite, they are masked out).
    warm: opaque state handed back to ``fit_fn`` next round (e.g. parameters for a warm start).
    """

    restart_means: jax.Array
    mean: jax.Array
    chol: jax.Array
    warm: object = None


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


def masked_laws(plan: FrontierPlan, truth: jax.Array, missing: jax.Array, curves: jax.Array, gt_b1, gt_b0):
    """Law + AbC for curve sets (..., K, P): missing rows from ``curves``, observed rows from ``truth``."""
    loss = jnp.where(missing[:, None], curves, truth)
    law = law_from_loss(plan, loss)
    return law, abc_loglinear(law.b1, law.b0, gt_b1, gt_b0)


@functools.partial(jax.jit, static_argnames=("n_samples",))
def _round(key, plan, truth, missing, restart_means, mean, chol, cost_pf, gt_b1, gt_b0, n_samples):
    K, P = truth.shape
    floor = 1e-3 * jnp.min(truth)
    n_bad = jnp.sum((restart_means <= 0) & missing[:, None])
    law_r, abc_r = masked_laws(plan, truth, missing, jnp.maximum(restart_means, floor), gt_b1, gt_b0)
    eps = jax.random.normal(key, (n_samples, K * P), dtype=mean.dtype)
    draws = (mean + eps @ chol.T).reshape(n_samples, K, P)
    draws = jnp.where(missing[:, None], draws, truth)
    n_bad = n_bad + jnp.sum(draws <= 0)
    draws = jnp.maximum(draws, floor)  # a Gaussian predictive can put mass below 0 loss; counted + warned
    law_j, abc_j = masked_laws(plan, truth, missing, draws, gt_b1, gt_b0)
    unc = uncertainty_scores(restart_means, missing)
    ours = variance_reduction_scores(law_j.b1, draws, cost_pf, missing)
    return abc_r, abc_j, law_j.b1, unc, ours, n_bad


def _fixed_order(labels, strategy):
    n = total_params([l for _, l in labels], [e for e, _ in labels])
    order = np.argsort(n, kind="stable")
    return order if strategy == "smallest" else order[::-1]


def run_active(key, fit_fn: Callable, labels, loss, compute, strategy: str, n_queries: int = 25,
               n_samples: int = 1000, rule: str = "interp", initial=None, progress_desc: str | None = None
               ) -> ActiveTrace:
    """Run one active-learning trajectory.

    Args:
      key: PRNG key (first positional argument): model fits, joint draws and the random strategy.
      fit_fn: ``fit_fn(key, observed_mask (K,) bool np.ndarray, warm) -> RoundPrediction``.
      labels: K (n_embd, n_layer) tuples; loss, compute: (K, P) true curves and their compute.
      strategy: one of :data:`STRATEGIES`.
      initial: observed labels at the start (default: every curve with the smallest n_layer).
    """
    from jaxscale._log import get_logger, progress

    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; choose one of {STRATEGIES}")
    labels = [tuple(l) for l in labels]
    truth = np.asarray(loss, dtype=np.float64)
    K, P = truth.shape
    plan = make_plan(compute, rule=rule)
    gt = law_from_loss(plan, jnp.asarray(truth))
    cost = curve_cost_pf(compute)
    if initial is None:
        min_layer = min(l for _, l in labels)
        initial = [lab for lab in labels if lab[1] == min_layer]
    observed = np.array([lab in set(map(tuple, initial)) for lab in labels])
    n_queries = min(int(n_queries), int((~observed).sum()))
    fixed = _fixed_order(labels, strategy) if strategy in ("smallest", "largest") else None
    log = get_logger(__name__)
    rows, queried, warm = [], [], None
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
        abc_r, abc_j, b1, unc, ours, n_bad = _round(k_draw, plan, jnp.asarray(truth), jnp.asarray(missing),
                                              jnp.asarray(pred.restart_means), jnp.asarray(pred.mean),
                                              jnp.asarray(pred.chol), jnp.asarray(cost), gt.b1, gt.b0,
                                              n_samples=n_samples)
        abc_r, abc_j, b1 = np.asarray(abc_r), np.asarray(abc_j), np.asarray(b1)
        if int(n_bad):
            log.warning("round %d (%s): %d predicted/drawn loss values <= 0 were floored at 1e-3 x the smallest "
                        "observed loss; the curve model is poorly fitted (more Adam steps?)", q, strategy, int(n_bad))
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
    return ActiveTrace(strategy, queried, a[:, 0], a[:, 1], a[:, 2], a[:, 3], a[:, 4], a[:, 5])


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
            "cum_pf": {"mean": pf.mean(0).tolist(), "std": pf.std(0).tolist()},
            "abc_joint": {"mean": aj.mean(0).tolist(), "std": aj.std(0).tolist()},
            "abc_restart": {"mean": ar.mean(0).tolist(), "std": ar.std(0).tolist()},
            "queried": [list(map(list, t.queried)) for t in ts],
            "auc_abc_vs_log_pf": float(np.mean([np.trapezoid(a, np.log(p)) for a, p in zip(aj, pf)])),
        }
        for thr in (0.2, 0.1, 0.05):
            costs = [_cost_to_stay_below(a, p, thr) for a, p in zip(aj, pf)]
            out[s][f"pf_to_abc_{thr}"] = {"mean": float(np.mean(costs)), "per_seed": costs}
    return out


def active_experiment(seed: int, strategies, seeds: int = 3, n_queries: int = 25, n_samples: int = 500,
                      restarts: int = 4, steps: int = 150, dataset: str = "nanogpt_large", model: str = "magp",
                      out_dir: Path | None = None, cold_steps: int = 600, n_h: int = 8, fit_fn=None) -> dict:
    """Run every strategy for ``seeds`` seeds with the curve model; JSON + plot into ``out_dir``."""
    from jaxscale.learning_curves.compute import load_nanogpt_curves

    bad = [s for s in strategies if s not in STRATEGIES]
    if bad:
        raise ValueError(f"unknown strategies {bad}; choose from {STRATEGIES} or 'all'")
    if seeds < 1 or n_queries < 1:
        raise ValueError("--seeds and --queries must be >= 1")
    labels, L, C = load_nanogpt_curves(dataset).flat()
    if fit_fn is None:
        fit_fn = round_predictor(dataset, labels, model=model, restarts=restarts, steps=steps,
                                 cold_steps=cold_steps, n_h=n_h)
    t0 = time.perf_counter()
    traces = []
    keys = jax.random.split(jax.random.key(seed), seeds)
    seconds = {}
    for s in strategies:
        t1 = time.perf_counter()
        for i in range(seeds):  # seeds x strategies are sequential model refits (each round depends on the last)
            traces.append(run_active(keys[i], fit_fn, labels, L, C, s, n_queries=n_queries, n_samples=n_samples,
                                     progress_desc=f"active {s} seed {i}"))
        seconds[s] = time.perf_counter() - t1
        if out_dir is not None:  # partial results after every strategy
            Path(out_dir).mkdir(parents=True, exist_ok=True)
            (Path(out_dir) / "active_partial.json").write_text(json.dumps(
                {"seconds_per_strategy": seconds, "results": summarize_traces(traces)}, indent=1))
    summary = summarize_traces(traces)
    out = {"dataset": dataset, "model": model, "strategies": list(strategies), "seeds": seeds,
           "queries": n_queries, "samples": n_samples, "restarts_per_refit": restarts, "steps_per_refit": steps,
           "cold_steps": cold_steps, "n_h": n_h, "seconds": time.perf_counter() - t0,
           "seconds_per_strategy": seconds, "results": summary}
    if out_dir is not None:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "active.json").write_text(json.dumps(out, indent=1))
        from jaxscale.learning_curves.plot import plot_active

        plot_active(out_dir / "active_abc.png", summary)
        out["files"] = [str(out_dir / "active.json"), str(out_dir / "active_abc.png")]
    return out


def _masked_neg_elbo(params, eps, xgrid, pts, mask):
    """MaGP negative ELBO over the points flagged by ``mask`` (padding rows become independent N(0, 1)
    dummies with y = 0: a constant offset, so gradients are those of the unpadded problem)."""
    import jax
    import jax.numpy as jnp

    from jaxscale.gp import JITTER_LADDER, gaussian_nll, magp_gram
    from jaxscale.learning_curves.magp import magp_constrained

    c = magp_constrained(params)
    std = jnp.exp(params.log_h_std)
    hs = params.h_mean[None] + std[None] * eps
    y = jnp.where(mask, pts.y, 0.0)
    mm = mask[:, None] & mask[None, :]
    eye = jnp.eye(y.shape[0], dtype=y.dtype)

    def one(h):
        K = magp_gram(xgrid, pts.p, pts.r, pts.d, pts.p, pts.r, pts.d, c["g_var"], c["g_scale"], c["f_var"],
                      c["f_scale"], h, c["h_scale"]) + jnp.diag(c["noise"][pts.d])
        return gaussian_nll(jnp.where(mm, K, eye), y, JITTER_LADDER[0])

    nll, _ = jax.vmap(one)(hs)
    kl = 0.5 * jnp.sum(std**2 + params.h_mean**2 - 1.0 - 2.0 * params.log_h_std)
    return jnp.mean(nll) + kl


def _al_fit_predict_impl(keys, params0, xgrid, pts, mask, query, steps, learning_rate, n_h):
    """Adam from ``params0`` (R restarts, vmapped) then the q(h)-integrated joint predictive of ``query``."""
    import jax
    import jax.numpy as jnp
    import optax

    from jaxscale.gp import JITTER_LADDER, gp_condition, magp_gram
    from jaxscale.learning_curves.magp import magp_constrained

    opt = optax.adam(learning_rate)
    D, Q = params0.h_mean.shape[-2:]
    y = jnp.where(mask, pts.y, 0.0)
    mm = mask[:, None] & mask[None, :]
    eye = jnp.eye(y.shape[0], dtype=y.dtype)

    def one(key, x0):
        k_run, k_h = jax.random.split(key)
        vg = jax.value_and_grad(_masked_neg_elbo)

        def step(carry, k):
            x, st = carry
            val, g = vg(x, jax.random.normal(k, (1, D, Q), y.dtype), xgrid, pts, mask)
            upd, st = opt.update(g, st, x)
            return (optax.apply_updates(x, upd), st), val

        (x, _), hist = jax.lax.scan(step, (x0, opt.init(x0)), jax.random.split(k_run, steps))
        c = magp_constrained(x)
        hs = x.h_mean[None] + jnp.exp(x.log_h_std)[None] * jax.random.normal(k_h, (n_h, D, Q), y.dtype)

        def gram(h, a, b):
            return magp_gram(xgrid, a.p, a.r, a.d, b.p, b.r, b.d, c["g_var"], c["g_scale"], c["f_var"],
                             c["f_scale"], h, c["h_scale"])

        def body(carry, h):
            s1, s2 = carry
            Kxx = jnp.where(mm, gram(h, pts, pts) + jnp.diag(c["noise"][pts.d]), eye)
            Kxs = jnp.where(mask[:, None], gram(h, pts, query), 0.0)
            m, C, _ = gp_condition(Kxx, Kxs, gram(h, query, query), y, JITTER_LADDER[0])
            return (s1 + m, s2 + C + jnp.outer(m, m)), None

        M = query.x.shape[0]
        (s1, s2), _ = jax.lax.scan(body, (jnp.zeros(M, y.dtype), jnp.zeros((M, M), y.dtype)), hs)
        mean = s1 / n_h
        return x, hist[-1], mean, s2 / n_h - jnp.outer(mean, mean)

    return jax.vmap(one)(keys, params0)


_al_jit = {}


def round_predictor(dataset: str, labels, model: str = "magp", restarts: int = 4, steps: int = 150,
                    cold_steps: int = 600, n_h: int = 8, learning_rate: float = 1e-2, bucket: int = 55):
    """``fit_fn(key, observed_mask, warm) -> active.RoundPrediction`` for :func:`.active.run_active` (MaGP).

    Cheap refits for active learning (changes vs the original's 10 cold restarts x 2000 Adam steps
    per query): ``restarts`` restarts, ``cold_steps`` Adam steps in the first round, then
    ``steps`` steps warm-started from the previous round's parameters; q(h) integrated with ``n_h``
    draws; training points padded with masked dummies to a multiple of ``bucket`` so that 25 rounds
    compile only ~6 programs. Predicts all K curves jointly (observed rows are masked by the loop).
    """
    import jax
    import jax.numpy as jnp

    from jaxscale.learning_curves.heldout import frame_labels, heldout_problem
    from jaxscale.learning_curves.magp import init_magp
    from jaxscale.learning_curves.problem import Points, points_from_frame
    from jaxscale.learning_curves.psl import cholesky_with_jitter

    if model != "magp":
        raise ValueError(f"active learning supports model 'magp' only, got {model!r}")
    labels = [tuple(l) for l in labels]
    fn = _al_jit.get("fn")
    if fn is None:
        fn = jax.jit(_al_fit_predict_impl, static_argnames=("steps", "n_h"))
        _al_jit["fn"] = fn

    def fit_fn(key, observed, warm):
        held = [lab for lab, o in zip(labels, observed) if not o]
        problem = heldout_problem(dataset, held, "active")
        f = problem.data.frame
        all_labels, P = frame_labels(f)
        if list(all_labels) != labels:
            raise ValueError("dataset curve order differs from the active-learning labels")
        query = points_from_frame(f, np.asarray(problem.xgrid), problem.scaler, problem.n_reps)
        tr = problem.train
        N = int(tr.x.shape[0])
        n_pad = -(-N // bucket) * bucket - N
        pad = lambda a, v: jnp.concatenate([a, jnp.full((n_pad,), v, a.dtype)])  # noqa: E731
        pts = Points(pad(tr.x, 0.0), pad(tr.p, 0), pad(tr.r, 0), pad(tr.d, 0), pad(tr.c, 0), pad(tr.y, 0.0))
        mask = jnp.arange(N + n_pad) < N
        k_init, k_run = jax.random.split(key)
        if warm is None:
            params0 = jax.vmap(lambda k: init_magp(k, problem.n_tasks))(jax.random.split(k_init, restarts))
            n_steps = cold_steps
        else:
            params0, n_steps = warm, steps
        x, loss, m, C = fn(jax.random.split(k_run, restarts), params0, problem.xgrid, pts, mask, query,
                           steps=n_steps, learning_rate=learning_rate, n_h=n_h)
        loss = np.asarray(loss)
        ok = np.isfinite(loss) & np.all(np.isfinite(np.asarray(m)), axis=1)
        if not ok.any():
            raise ValueError("active-learning refit: every restart went non-finite")
        sd = np.asarray(problem.scaler.std)[np.asarray(query.d)]
        mu = np.asarray(problem.scaler.mean)[np.asarray(query.d)]
        m = np.asarray(m)[ok] * sd + mu
        C = np.asarray(C)[ok] * np.outer(sd, sd)
        mean = m.mean(0)
        cov = (C + m[:, :, None] * m[:, None, :]).mean(0) - np.outer(mean, mean)
        miss = np.repeat(~np.asarray(observed), P)
        keep = miss[:, None] & miss[None, :]
        cov = np.where(keep, cov, np.eye(cov.shape[0]) * 1e-6)
        chol = cholesky_with_jitter(cov, what="active-learning joint predictive")
        if not ok.all():  # keep the restart count (fixed shapes): refill dead restarts with a live one
            good = int(np.flatnonzero(ok)[0])
            x = jax.tree.map(lambda a: a.at[~jnp.asarray(ok)].set(a[good]), x)
        return RoundPrediction(m.reshape(len(m), len(labels), P), mean, np.asarray(chol), warm=x)

    return fit_fn
