"""How a context-law fit runs (:class:`Spec`) and the names the command line offers.

Imports nothing heavy (no JAX, no pandas), so the command line reads its defaults and choices from
here without loading the fitting code.
"""
from __future__ import annotations

from typing import NamedTuple

from jaxscale._registry import register_serializable

__all__ = ["Spec", "PENALTIES", "LIKELIHOODS", "SOURCES"]

#: Penalty kinds of the shared law (:data:`jaxscale.laws.context.PENALTIES`, the same names; a test
#: keeps the two equal).
PENALTIES = ("none", "step", "logistic", "log_ratio")
#: Noise models of the Bayesian fit.
LIKELIHOODS = ("normal", "laplace", "beta", "binomial")
#: The bundled sources (:func:`jaxscale.context_law.load_source`).
SOURCES = ("ruler", "babilong", "longcontext_icl")


@register_serializable
class Spec(NamedTuple):
    """Everything that configures a context-law fit: the law's form, the optimiser, NUTS.

    Hashable and static under ``jit``; the command line's flags default to ``Spec()``'s fields.

    Attributes:
      penalty: cliff past the context limit: ``none``, ``step`` (one-token sigmoid, the paper's
        literal form), ``logistic`` (relative width, fitted or fixed) or ``log_ratio``.
      fit_scale: fit the penalty scale (log relative width / log kappa) or hold ``scale`` fixed.
      scale: fixed penalty scale when not fitted (relative width for logistic, kappa for log_ratio).
      fit_alpha: fit the compute exponent; needs >= 2 compute levels. Otherwise ``alpha`` is held at
        ``alpha_fixed`` and the compute factor is absorbed into ``a``.
      alpha_fixed: value of alpha when not fitted.
      decay: add the length-decay extension (1 + n_pmt/1e3)^-gamma with gamma fitted.
      loss: ``mse`` (default) or ``mae`` (the metric the paper reports).
      fit_shift: fit an effective context limit c * n_ctx (``log_shift``) for logistic/log_ratio.
      popsize: differential-evolution members per free parameter (SciPy's default 15).
      maxiter: DE generation cap; a run that stops here is reported as not converged.
      tol: DE stops when std(fitness) <= tol * |mean(fitness)|.
      polish: run the bounded L-BFGS polish after DE (kept only when it lowers the loss).
      restarts: independent DE + L-BFGS runs per task (vmapped); the best is kept.
      bayes: also sample every task's posterior with NUTS (started at the point fit); ``predict``
        then returns posterior-predictive intervals.
      likelihood: ``normal``, ``laplace`` or ``beta`` on cell scores, or ``binomial`` on item counts
        (needs an ``n_items`` column).
      num_warmup: NUTS warm-up steps per chain.
      num_samples: NUTS draws per chain.
      num_chains: NUTS chains (vectorised).
      backtest_frac: share of each task's training rows, those with the longest prompts, held out
        inside the training data to learn how fast errors grow outside the training cells (the
        ``drift`` of the fit; intervals widen with the extrapolation distance at that rate); 0
        turns the backtest off (intervals then do not widen).
      target_accept: NUTS target acceptance probability of the step-size adaptation; raise it
        (e.g. 0.95) when the sampler reports divergent transitions (smaller steps, slower).
    """

    penalty: str = "logistic"
    fit_scale: bool = True
    scale: float = 0.05
    fit_alpha: bool = True
    alpha_fixed: float = 0.5
    decay: bool = False
    loss: str = "mse"
    fit_shift: bool = False
    popsize: int = 15
    maxiter: int = 1000
    tol: float = 1e-8
    polish: bool = True
    restarts: int = 2
    bayes: bool = False
    likelihood: str = "normal"
    num_warmup: int = 400
    num_samples: int = 400
    num_chains: int = 4
    backtest_frac: float = 0.25
    target_accept: float = 0.8

    def check(self) -> "Spec":
        """Raise ``ValueError`` on an unknown option or a non-positive setting; return ``self``."""
        if self.penalty not in PENALTIES:
            raise ValueError(f"penalty={self.penalty!r} is unknown; choose one of {PENALTIES}")
        if self.loss not in ("mse", "mae"):
            raise ValueError(f"loss={self.loss!r} is unknown; choose 'mse' or 'mae'")
        if self.likelihood not in LIKELIHOODS:
            raise ValueError(f"likelihood={self.likelihood!r} is unknown; choose one of {LIKELIHOODS}")
        for name in ("popsize", "maxiter", "restarts", "num_warmup", "num_samples", "num_chains"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name}={getattr(self, name)!r} must be >= 1")
        if not float(self.tol) >= 0:
            raise ValueError(f"tol={self.tol!r} must be >= 0")
        if not float(self.scale) > 0:
            raise ValueError(f"scale={self.scale!r} must be > 0")
        if not 0.0 <= float(self.backtest_frac) < 1.0:
            raise ValueError(f"backtest_frac={self.backtest_frac!r} must be in [0, 1) (0 turns the backtest off)")
        if not 0.0 < float(self.target_accept) < 1.0:
            raise ValueError(f"target_accept={self.target_accept!r} must be in (0, 1), e.g. 0.95")
        return self

    def law(self) -> "Spec":
        """The law-form fields only (optimiser and NUTS fields at their defaults): the static
        argument of compiled code, so changing e.g. ``num_samples`` does not recompile DE."""
        return Spec(*self[:8])

    def point(self) -> "Spec":
        """The law form and optimiser fields (NUTS fields at their defaults): the static argument
        of the compiled point fit."""
        return Spec(*self[:13])
