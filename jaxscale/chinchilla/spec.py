"""How a Chinchilla fit runs: :class:`ChinchillaSpec` and Epoch AI's setting :data:`EPOCH_SPEC`.

Imports nothing heavy (no JAX, no pandas), so the command line reads its defaults from here without
loading the fitting code.
"""
from __future__ import annotations

from typing import NamedTuple

from jaxscale._registry import register_serializable

__all__ = ["ChinchillaSpec", "EPOCH_SPEC", "HUBER_DELTA"]

HUBER_DELTA = 1e-3


@register_serializable
class ChinchillaSpec(NamedTuple):
    """How to fit (every field has the default used by Python and the CLI alike).

    Attributes:
      exclude_top_loss: leave this many highest-loss rows out of the fit (weight 0, reported in
        ``Fit.excluded``). 0 for your own runs; Epoch used 5 on their extracted points.
      n_boot: bootstrap refits (rows resampled with replacement); 0 = none. With refits,
        predictions carry parameter uncertainty as well as residual noise.
      boot_steps: damped-Newton steps of each bootstrap refit.
      screen_steps: L-BFGS iterations given to every grid start.
      polish_top: how many of the best screened starts are run to convergence.
      screen_rows: on a larger table the starts are screened, and the ``polish_top`` best
        polished, on this many of its rows (evenly spaced in file order); the best
        ``FULL_POLISH`` of those are then polished on every row, which decides. Time and memory
        grow with ``starts x screen_rows + rows``; tables of at most this many rows use every row
        throughout.
      max_steps: iteration cap of the polishing run.
      huber_delta: Huber threshold on log-loss residuals.
      backtest_frac: share of the fitted runs (the highest compute) held out inside the training
        data to learn how fast prediction errors grow with extrapolation (``Fit.kappa``); 0 turns
        it off. Needs at least 20 fitted runs.
    """

    exclude_top_loss: int = 0
    n_boot: int = 0
    boot_steps: int = 60
    screen_steps: int = 10
    polish_top: int = 32
    screen_rows: int = 2048
    max_steps: int = 1000
    huber_delta: float = HUBER_DELTA
    backtest_frac: float = 0.25


#: Epoch AI's published setting for their 245 points: the 5 highest-loss points left out.
EPOCH_SPEC = ChinchillaSpec(exclude_top_loss=5)
