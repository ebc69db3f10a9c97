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
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxscale.learning_curves.compute import curve_cost_pf, total_params
from jaxscale.learning_curves.frontier import FrontierPlan, LawParams, law_from_loss, make_plan
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
