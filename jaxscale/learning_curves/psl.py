r"""Monte-Carlo probabilistic scaling law from joint posterior draws of held-out curves.

Given a Gaussian (or equal-weight Gaussian-mixture, e.g. over samples of q(h)) joint predictive of
all held-out curve points in original loss units, we draw R joint samples, merge each with the
observed curves, compute the compute-efficient frontier and fit :math:`\ln L = b_1 \ln C + b_0`
per draw (:mod:`.frontier`), and score every draw by its AbC against the ground-truth law
(closed form, :func:`jaxscale.metrics.abc_loglinear`). The sample axis is sharded over all devices
(the package's one device mesh, :func:`jaxscale.infer.sharding.device_mesh`, + ``NamedSharding``);
with JAX's partitionable threefry the numbers do not depend on the device count.

The original paper's mode (R independently restarted fits, frontier of each restart's predictive
mean) is :func:`restart_law`.
"""
from __future__ import annotations

from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

from jaxscale.gp.linalg import cholesky_with_jitter
from jaxscale.infer.sharding import device_mesh
from jaxscale.learning_curves.frontier import (
    FrontierPlan,
    LawParams,
    fit_law,
    frontier_log_loss,
    ground_truth_law,
    make_plan,
    min_log_loss,
    subplan,
)
from jaxscale.metrics import abc_loglinear

__all__ = [
    "LawProblem",
    "PSLResult",
    "make_problem",
    "sample_mesh",
    "joint_draws",
    "laws_from_draws",
    "probabilistic_law",
    "restart_law",
    "summarize",
]


class LawProblem(NamedTuple):
    """Observed curves + the frontier plan over [observed; held-out] curves + the ground-truth law."""

    plan: FrontierPlan
    observed: jax.Array  # (K_obs, P) losses of the observed curves
    n_held: int
    n_points: int
    gt: LawParams  # floats
    observed_labels: tuple
    held_labels: tuple


class PSLResult(NamedTuple):
    """Per-draw law and AbC against the ground truth (leading axis = draws)."""

    law: LawParams
    abc: jax.Array


def make_problem(labels: Sequence, loss, compute, held_labels: Sequence, rule: str = "interp",
                 extrapolate: str = "mask", grid=None) -> LawProblem:
    """Split curves (K, P) into observed / held-out and build the plan over [observed; held-out].

    The ground-truth law uses all K true curves with the same ``rule`` (so AbC compares like with like).
    """
    labels = [tuple(l) for l in labels]
    held = [tuple(l) for l in held_labels]
    missing = [h for h in held if h not in labels]
    if missing:
        raise ValueError(f"held-out curves {missing} are not in the dataset; known labels: {labels}")
    loss = np.asarray(loss, dtype=np.float64)
    compute = np.asarray(compute, dtype=np.float64)
    obs_idx = [i for i, l in enumerate(labels) if l not in held]
    held_idx = [labels.index(h) for h in held]
    order = obs_idx + held_idx
    plan = make_plan(compute[order], grid=grid, rule=rule, extrapolate=extrapolate)
    gt = ground_truth_law(loss, compute, rule=rule, grid=grid, extrapolate=extrapolate)
    return LawProblem(plan, jnp.asarray(loss[obs_idx]), len(held_idx), loss.shape[1], gt,
                      tuple(labels[i] for i in obs_idx), tuple(held))


def sample_mesh(devices=None) -> jax.sharding.Mesh:
    """1-D mesh over ``devices`` (default: all devices) for the sample axis: the package's shared
    :func:`jaxscale.infer.sharding.device_mesh` (kept under this name for existing callers)."""
    return device_mesh(devices)


def joint_draws(key, mean, chol, n_per_component: int) -> jax.Array:
    """Stratified draws from an equal-weight Gaussian mixture: (S, n, M) = mean[s] + chol[s] @ eps."""
    mean = jnp.atleast_2d(mean)
    chol = chol if chol.ndim == 3 else chol[None]
    S, M = mean.shape
    eps = jax.random.normal(key, (S, n_per_component, M), dtype=mean.dtype)
    return mean[:, None, :] + jnp.einsum("snm,skm->snk", eps, chol)


def laws_from_draws(plan: FrontierPlan, observed, draws, gt_b1, gt_b0) -> PSLResult:
    """Frontier + law + AbC for held-out draws (..., K_held, P) merged with observed (K_obs, P).

    ``plan`` covers [observed; held-out] curves in that order. The observed curves' frontier is the
    same for every draw, so it is computed once and only the held-out curves are gathered per draw.
    """
    k_obs = observed.shape[0]
    k_all = plan.lo.shape[0]
    held_plan = subplan(plan, np.arange(k_obs, k_all))
    base = min_log_loss(subplan(plan, np.arange(k_obs)), observed) if k_obs else None
    log_f = frontier_log_loss(held_plan, draws, base)
    law = fit_law(plan.log_c, log_f, plan.weight)
    abc = abc_loglinear(law.b1, law.b0, gt_b1, gt_b0)
    return PSLResult(law, abc)


_laws_from_draws_jit = jax.jit(laws_from_draws)


def _pipeline(key, plan, observed, mean, chol, gt_b1, gt_b0, *, n_per, n_held, n_points, sharding):
    S, M = mean.shape
    eps = jax.random.normal(key, (S, n_per, M), dtype=mean.dtype)
    if sharding is not None:
        eps = jax.lax.with_sharding_constraint(eps, sharding)
    draws = mean[:, None, :] + jnp.einsum("snm,skm->snk", eps, chol)
    draws = draws.reshape(S, n_per, n_held, n_points)
    return laws_from_draws(plan, observed, draws, gt_b1, gt_b0)


_compiled = {}


def probabilistic_law(key, problem: LawProblem, mean, cov=None, n_samples: int = 1000, *, chol=None,
                      mesh=None) -> PSLResult:
    """R = ``n_samples`` joint draws of the held-out curves -> per-draw law and AbC (sharded over ``mesh``).

    Args:
      key: PRNG key (first positional argument).
      problem: from :func:`make_problem`.
      mean: (M,) or (S, M) predictive mean(s) of the held-out points, M = K_held * P, curve-major in
        ``problem.held_labels`` order, original loss units; S mixture components (equal weights).
      cov: (M, M) or (S, M, M) joint predictive covariance(s) (or pass ``chol``).
      n_samples: total draws R (split evenly over components, padded to a multiple of the devices).
      mesh: a 1-D mesh over the sample axis; default all devices (:func:`jaxscale.infer.device_mesh`).

    Returns:
      :class:`PSLResult` with leaves of shape (R,).
    """
    mean = jnp.atleast_2d(jnp.asarray(mean))
    S, M = mean.shape
    if M != problem.n_held * problem.n_points:
        raise ValueError(f"mean has {M} points per component but the problem holds out {problem.n_held} curves "
                         f"x {problem.n_points} points = {problem.n_held * problem.n_points}")
    if chol is None:
        if cov is None:
            raise ValueError("pass the joint predictive covariance `cov` (M, M) or its Cholesky factor `chol`")
        chol = cholesky_with_jitter(cov)
    chol = jnp.asarray(chol)
    chol = chol if chol.ndim == 3 else chol[None]
    if chol.shape != (S, M, M):
        raise ValueError(f"chol/cov must have shape ({S}, {M}, {M}) or ({M}, {M}), got {chol.shape}")
    if n_samples < 1:
        raise ValueError(f"n_samples must be >= 1, got {n_samples}")
    mesh = device_mesh() if mesh is None else mesh
    n_dev = mesh.devices.size
    n_per = -(-int(n_samples) // S)
    n_per = -(-n_per // n_dev) * n_dev
    axis = mesh.axis_names[0]  # any 1-D mesh (e.g. one of the caller's own) works
    sharding = NamedSharding(mesh, PartitionSpec(None, axis, None))
    out_sharding = NamedSharding(mesh, PartitionSpec(None, axis))
    ck = (mesh, S, M, n_per, problem.n_held, problem.n_points, problem.observed.shape, problem.plan.lo.shape,
          str(mean.dtype))
    fn = _compiled.get(ck)
    if fn is None:
        import functools

        f = functools.partial(_pipeline, n_per=n_per, n_held=problem.n_held, n_points=problem.n_points,
                              sharding=sharding if n_dev > 1 else None)
        fn = jax.jit(f, out_shardings=PSLResult(LawParams(out_sharding, out_sharding), out_sharding))
        _compiled[ck] = fn
    res = fn(key, problem.plan, problem.observed, mean, chol, problem.gt.b1, problem.gt.b0)
    # draw-major interleaving over components keeps the mixture balanced after truncation
    return jax.tree.map(lambda a: a.T.reshape(-1)[:n_samples], res)


def restart_law(problem: LawProblem, restart_means) -> PSLResult:
    """The original mode: one law per restart from its predictive-mean curves (R, K_held, P)."""
    restart_means = jnp.asarray(restart_means)
    if restart_means.shape[1:] != (problem.n_held, problem.n_points):
        raise ValueError(f"restart_means must have shape (restarts, {problem.n_held}, {problem.n_points}), "
                         f"got {restart_means.shape}")
    return _laws_from_draws_jit(problem.plan, problem.observed, restart_means, problem.gt.b1, problem.gt.b0)


def summarize(result: PSLResult, gt: LawParams, level: float = 0.9) -> dict:
    """Host-side summary: {mean, std, lo, hi} of b1, b0, abc; gt; whether gt lies in the central band."""
    b1 = np.asarray(result.law.b1, dtype=np.float64).ravel()
    b0 = np.asarray(result.law.b0, dtype=np.float64).ravel()
    abc = np.asarray(result.abc, dtype=np.float64).ravel()
    for name, a in (("b1", b1), ("b0", b0), ("abc", abc)):
        if not np.all(np.isfinite(a)):
            bad = np.flatnonzero(~np.isfinite(a))[:5].tolist()
            raise ValueError(f"non-finite {name} for draws {bad}: a draw produced a non-positive loss or the "
                             "predictive is degenerate; check the model's predictive mean/covariance")
    q = (1 - level) / 2

    def stats(a):
        return {"mean": float(a.mean()), "std": float(a.std()), "lo": float(np.quantile(a, q)),
                "hi": float(np.quantile(a, 1 - q))}

    s = {"b1": stats(b1), "b0": stats(b0), "abc": stats(abc), "gt": {"b1": float(gt.b1), "b0": float(gt.b0)},
         "n_samples": int(b1.size), "level": level}
    # AbC of the posterior-mean law (<= mean AbC over draws, since the mean of |.| >= |mean|)
    s["abc_of_mean_law"] = float(abc_loglinear(b1.mean(), b0.mean(), gt.b1, gt.b0))
    s["gt_in_band_b1"] = bool(s["b1"]["lo"] <= gt.b1 <= s["b1"]["hi"])
    s["gt_in_band_b0"] = bool(s["b0"]["lo"] <= gt.b0 <= s["b0"]["hi"])
    return s
