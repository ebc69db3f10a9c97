r"""Convergence of the learning-curve optimisers and samplers: measured, reported, warned.

* Adam on the Monte-Carlo ELBO (MaGP, descriptor MaGP, active-learning refits) runs a fixed
  number of steps. A restart is **converged** when the negative ELBO stopped falling: with
  ``w = max(steps // 10, 5)``, the mean over the last ``w`` steps is lower than the mean over the
  ``w`` steps before by at most ``3 se + 1e-3 (|loss| + 1)``, where ``se`` is the standard error of
  that difference from the spread of the per-step (noisy) estimates.
* L-BFGS (DHGP) is converged when its gradient norm met the tolerance.
* NUTS (BNN baselines, the power-law extrapolation): R-hat, effective sample size, divergences
  and the number of chains, as :func:`jaxscale.infer.nuts_diagnostics` computes them.

Every report is a JSON-ready dict with ``converged`` and ``reason``; a ``False`` is also warned
(``RuntimeWarning``) once.
"""
from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["adam_convergence", "adam_report", "lbfgs_report", "warn_report", "nuts_report", "first_nonfinite_step"]


def _window(steps: int) -> int:
    return max(int(steps) // 10, 5)


def adam_convergence(history):
    """``(R,)`` bool: the restart's negative ELBO has stopped falling (see the module docstring).

    Args:
      history: ``(R, steps)`` per-step loss estimates (a JAX array, traced or not, or NumPy: then
        computed on the host and returned as NumPy).

    Returns:
      ``(converged, drop, tolerance)``: the fall of the windowed mean over the last window and the
      tolerance it was compared with, each ``(R,)``.
    """
    xp = jnp if isinstance(history, jax.Array) else np  # NumPy history: computed on the host
    h = xp.atleast_2d(xp.asarray(history))
    steps = h.shape[1]
    w = _window(steps)
    if steps < 2 * w:
        nan = xp.full(h.shape[:1], xp.nan, h.dtype)
        return xp.zeros(h.shape[:1], bool), nan, nan
    a, b = h[:, steps - 2 * w:steps - w], h[:, steps - w:]
    drop = xp.mean(a, 1) - xp.mean(b, 1)
    se = xp.sqrt(xp.var(a, 1) / w + xp.var(b, 1) / w)
    tol = 3.0 * se + 1e-3 * (xp.abs(xp.mean(b, 1)) + 1.0)
    return xp.isfinite(drop) & (drop <= tol), drop, tol


def adam_report(history, ok, steps: int, what: str) -> dict:
    """``{converged, n_converged, n_restarts, reason}`` of Adam restarts (only finite ``ok`` ones count)."""
    ok = np.asarray(ok, bool)
    conv, drop, tol = adam_convergence(np.asarray(history))
    n = int(ok.sum())
    good = conv & ok
    out = {"converged": bool(n > 0 and good[ok].all()), "n_converged": int(good.sum()), "n_restarts": n}
    w = _window(steps)
    if out["converged"]:
        out["reason"] = (f"every restart's negative ELBO changed by less than its Monte-Carlo noise over the last "
                         f"{w} of {steps} Adam steps")
    else:
        bad = np.flatnonzero(ok & ~conv).tolist()
        if steps < 2 * w:
            out["reason"] = f"{what}: only {steps} Adam steps, too few to judge convergence; raise the steps"
        else:
            i = bad[0] if bad else 0
            out["reason"] = (f"{what}: the negative ELBO of restart(s) {bad[:10]} was still falling over the last {w} "
                             f"of {steps} Adam steps (restart {i}: by {float(drop[i]):.3g}, noise tolerance "
                             f"{float(tol[i]):.3g}); raise the Adam steps (Spec.steps, CLI --steps)")
    return out


def lbfgs_report(converged, ok, max_steps: int, what: str) -> dict:
    """``{converged, n_converged, n_restarts, reason}`` of L-BFGS fits."""
    ok = np.asarray(ok, bool)
    conv = np.asarray(converged, bool) & ok
    n = int(ok.sum())
    out = {"converged": bool(n > 0 and conv[ok].all()), "n_converged": int(conv.sum()), "n_restarts": n}
    out["reason"] = ("L-BFGS met its gradient tolerance" if out["converged"] else
                     f"{what}: L-BFGS stopped after {max_steps} iterations without meeting its gradient tolerance; "
                     "raise Spec.lbfgs_steps")
    return out


def warn_report(report: dict, stacklevel: int = 3) -> None:
    """Warn (``RuntimeWarning``) with the report's reason when it did not converge."""
    if not report.get("converged", True):
        warnings.warn(report["reason"], RuntimeWarning, stacklevel=stacklevel)


def nuts_report(samples_by_chain: dict, divergences: int, what: str, warn: bool = True) -> dict:
    """NUTS diagnostics (R-hat, ESS per chain, divergences, chains) as a JSON-ready dict; warns on
    R-hat > 1.01, ESS < 100 per chain, any divergence and fewer than 2 chains."""
    from jaxscale.infer.bayes import nuts_diagnostics

    diag, msgs = nuts_diagnostics(samples_by_chain, int(divergences))
    chains = int(diag["num_chains"])
    shown = [m for m in msgs if not m.startswith("only") or chains < 2]
    if chains < 2:
        shown = [m if not m.startswith("only") else f"only {chains} chain: R-hat cannot be computed; run >= 2 chains"
                 for m in shown]
    out = {"converged": not shown, "max_r_hat": diag["max_r_hat"], "min_ess": diag["min_ess"],
           "divergences": int(diag["divergences"]), "num_chains": chains, "num_samples": int(diag["num_samples"]),
           "reason": "; ".join(shown) if shown else "R-hat <= 1.01, ESS >= 100 per chain, no divergences",
           "warnings": [f"{what}: {m}" for m in shown]}
    if not np.isfinite(out["max_r_hat"]):
        out["max_r_hat"], out["max_r_hat_reason"] = None, "R-hat needs >= 2 chains of >= 4 draws"
    if warn:
        for m in out["warnings"]:
            warnings.warn(m, RuntimeWarning, stacklevel=3)
    return out


def first_nonfinite_step(history) -> int | None:
    """The first Adam step whose loss estimate was non-finite (over all restarts), or ``None``."""
    if history is None:
        return None
    h = np.atleast_2d(np.asarray(history))
    bad = ~np.isfinite(h)
    if not bad.any():
        return None
    return int(np.min(np.argmax(bad, axis=1)[bad.any(1)]))
