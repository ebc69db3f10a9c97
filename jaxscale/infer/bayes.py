"""Thin numpyro wrappers: NUTS with diagnostics that warn, and posterior predictive draws."""
from __future__ import annotations

import contextlib
import warnings
from typing import NamedTuple


import numpy as np

from jaxscale._log import heartbeat, progress_enabled

__all__ = ["PosteriorResult", "run_nuts", "posterior_predictive", "nuts_diagnostics"]


class PosteriorResult(NamedTuple):
    """Posterior samples plus diagnostics.

    Attributes:
      samples: dict ``site -> array (num_chains * num_samples, ...)`` (chains flattened).
      samples_by_chain: dict ``site -> array (num_chains, num_samples, ...)``.
      diagnostics: dict with ``r_hat`` and ``ess`` (``site -> array``), ``max_r_hat``,
        ``min_ess``, ``divergences`` (int), ``num_chains``, ``num_samples``.
      warnings: tuple of warning messages raised after sampling.
    """

    samples: dict
    samples_by_chain: dict
    diagnostics: dict
    warnings: tuple

    def to_arviz(self):
        """Return an ``arviz.InferenceData`` (needs the ``plots`` extra: arviz)."""
        import arviz as az

        return az.from_dict(posterior={k: np.asarray(v) for k, v in self.samples_by_chain.items()})


def nuts_diagnostics(samples_by_chain: dict, divergences: int) -> tuple[dict, list[str]]:
    """R-hat / ESS per site and the warnings they call for: split R-hat > 1.01 (computed on split
    halves, so it also checks a single chain), ESS < 100 per chain, divergences, fewer than 2 chains."""
    from numpyro.diagnostics import effective_sample_size, split_gelman_rubin

    r_hat, ess, msgs = {}, {}, []
    num_chains = next(iter(samples_by_chain.values())).shape[0]
    for name, value in samples_by_chain.items():
        value = np.asarray(value, dtype=float)
        ess[name] = np.asarray(effective_sample_size(value))
        r_hat[name] = np.asarray(split_gelman_rubin(value)) if value.shape[1] >= 4 else np.full(
            value.shape[2:], np.nan
        )
    max_r_hat = float(np.nanmax([np.nanmax(v) for v in r_hat.values()])) if r_hat else np.nan
    min_ess = float(np.nanmin([np.nanmin(v) for v in ess.values()])) if ess else np.nan
    if max_r_hat > 1.01:
        worst = max(r_hat, key=lambda k: np.nanmax(r_hat[k]))
        msgs.append(
            f"max R-hat {max_r_hat:.3f} > 1.01 (site {worst!r}): chains disagree; run longer, "
            "reparameterise, or tighten priors"
        )
    if min_ess < 100 * num_chains:
        worst = min(ess, key=lambda k: np.nanmin(ess[k]))
        msgs.append(
            f"min ESS {min_ess:.0f} < {100 * num_chains} (100 per chain; site {worst!r}): "
            "draw more samples"
        )
    if divergences > 0:
        msgs.append(
            f"{divergences} divergent transitions: raise target_accept_prob (e.g. 0.95) or "
            "reparameterise the model"
        )
    if num_chains < 2:
        msgs.append(f"only {num_chains} chain: chains cannot be compared; run at least 2 (4 recommended)")
    diag = {
        "r_hat": r_hat,
        "ess": ess,
        "max_r_hat": max_r_hat,
        "min_ess": min_ess,
        "divergences": int(divergences),
        "num_chains": int(num_chains),
        "num_samples": int(next(iter(samples_by_chain.values())).shape[1]),
    }
    return diag, msgs


def run_nuts(
    key,
    model,
    *model_args,
    num_warmup: int = 500,
    num_samples: int = 500,
    num_chains: int = 4,
    chain_method: str = "vectorized",
    target_accept_prob: float = 0.8,
    progress_bar: bool | None = None,
    init_strategy=None,
    dense_mass: bool = False,
    warn: bool = True,
    **model_kwargs,
) -> PosteriorResult:
    """Sample ``model(*model_args, **model_kwargs)`` with NUTS and check the diagnostics.

    Chains are vectorised by default (one compiled program on one device). ``dense_mass``
    adapts a full mass matrix during warm-up instead of a diagonal one: for a model of a few
    strongly correlated parameters it shortens the trajectories (a dense matrix costs
    ``O(d^2)`` per step, so keep the diagonal default for models of many parameters). Warnings
    are issued (and stored in the result) for R-hat > 1.01, ESS < 100 per chain, divergences,
    and fewer than 2 chains.
    """
    from numpyro.infer import MCMC, NUTS, init_to_median

    kernel = NUTS(
        model,
        target_accept_prob=target_accept_prob,
        init_strategy=init_strategy or init_to_median(num_samples=15),
        dense_mass=dense_mass,
    )
    bar = progress_enabled() if progress_bar is None else progress_bar
    mcmc = MCMC(kernel, num_warmup=num_warmup, num_samples=num_samples, num_chains=num_chains,
                chain_method=chain_method, progress_bar=bar)
    # without a progress bar (a log file, CI) a line every half minute says the sampler still runs
    with (contextlib.nullcontext() if bar else
          heartbeat(f"NUTS ({num_chains} chains x {num_warmup} warm-up + {num_samples} draws)")):
        mcmc.run(key, *model_args, extra_fields=("diverging",), **model_kwargs)
        by_chain = {k: np.asarray(v) for k, v in mcmc.get_samples(group_by_chain=True).items()}
    flat = {k: v.reshape((-1,) + v.shape[2:]) for k, v in by_chain.items()}
    divergences = int(np.asarray(mcmc.get_extra_fields()["diverging"]).sum())
    # diagnostics on the sampled (latent) sites only: deterministic sites can be exactly
    # constant (e.g. a score of 0 past a cliff), which would fake a tiny ESS
    latent = _latent_sites(model, key, model_args, model_kwargs)
    diag, msgs = nuts_diagnostics({k: v for k, v in by_chain.items() if k in latent}, divergences)
    if warn:
        for m in msgs:
            if not m.startswith("only"):
                warnings.warn(m, RuntimeWarning, stacklevel=2)
    return PosteriorResult(flat, by_chain, diag, tuple(msgs))


def _latent_sites(model, key, model_args, model_kwargs) -> set:
    from numpyro import handlers

    tr = handlers.trace(handlers.seed(model, key)).get_trace(*model_args, **model_kwargs)
    return {name for name, site in tr.items()
            if site["type"] == "sample" and not site.get("is_observed", False)}


def posterior_predictive(key, model, samples: dict, *model_args, return_sites=None, **model_kwargs):
    """Posterior predictive draws of ``model`` given flattened posterior ``samples``."""
    from numpyro.infer import Predictive

    predictive = Predictive(model, posterior_samples=samples, return_sites=return_sites)
    out = predictive(key, *model_args, **model_kwargs)
    return {k: np.asarray(v) for k, v in out.items()}


