"""How an observational law fits (:class:`ObsSpec`) and the names the command line offers.

Imports nothing heavy (no JAX, no pandas), so the command line reads its defaults and choices from
here without loading the fitting code.
"""
from __future__ import annotations

from typing import NamedTuple

from jaxscale._registry import register_serializable

__all__ = ["ObsSpec", "LIKELIHOODS", "FLOPS_UNIT"]

#: Likelihoods of the Bayesian law (:mod:`jaxscale.observational.bayes`).
LIKELIHOODS = ("extrap", "censored", "hetero", "normal", "student", "beta", "binomial", "betabinomial")

#: Unit of the bundled ``FLOPs (1E21)`` column and of ``ObsData.flops``: 1e21 FLOPs.
FLOPS_UNIT = 1e21


@register_serializable
class ObsSpec(NamedTuple):
    """How to fit (every field has a default; the CLI reads its defaults from ``ObsSpec()``).

    Attributes:
      k: number of principal capabilities in the law.
      floor: ``True``: floor ``b`` in ``[0, 0.2]`` (the paper's post-training / agent link);
        ``False``: plain sigmoid (``b = 0``, the emergent-capability link).
      loss: ``"huber"`` (δ = 1) or ``"ols"`` (least squares; same optimum on ``[0, 1]`` targets).
      bootstrap: number of bootstrap refits (0 = none, else >= 10).
      bootstrap_steps: damped-Newton steps per bootstrap refit.
      bayes: also run the Bayesian law (NUTS); ``predict`` then uses its posterior predictive.
      likelihood: Bayesian likelihood (see :data:`LIKELIHOODS`).
      num_warmup, num_samples, num_chains: NUTS sizes.
      n_items: items of the target benchmark (binomial likelihoods only; 0 = unknown).
      ref_family: reference family of the f-equivalent FLOPs axis (:func:`reference_axis`).
      max_steps: L-BFGS steps of the point fit.
      impute_iters: hard-impute EM iterations.
    """

    k: int = 3
    floor: bool = True
    loss: str = "huber"
    bootstrap: int = 0
    bootstrap_steps: int = 40
    bayes: bool = False
    likelihood: str = "extrap"
    num_warmup: int = 300
    num_samples: int = 500
    num_chains: int = 4
    n_items: int = 0
    ref_family: str = "Llama-2"
    max_steps: int = 1000
    impute_iters: int = 1000
