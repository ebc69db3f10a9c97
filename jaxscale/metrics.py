r"""Point, probabilistic and scaling-law metrics (pure ``jnp``, jit/vmap-able; the rank
correlation :func:`spearman` and :func:`rmsle` are numpy on the host, in float64).

Conventions: ``y`` is the truth; ``mean``/``var``/``std`` describe a Gaussian prediction;
``samples`` has the sample axis first.
"""
from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np
from jax.scipy.stats import norm

__all__ = [
    "rmse",
    "mae",
    "rmsle",
    "spearman",
    "rank_average",
    "gaussian_nlpd",
    "interval_coverage",
    "sample_interval_coverage",
    "coverage_check",
    "NARROW_ALPHA",
    "crps_gaussian",
    "crps_samples",
    "abc_loglinear",
    "ABC_RANGE_DEFAULT",
    "U0_DEFAULT",
    "U1_DEFAULT",
]

#: Default compute range (FLOPs) of :func:`abc_loglinear`: the published nanoGPT laws' ``[1e15, 1e20]``.
ABC_RANGE_DEFAULT = (1e15, 1e20)
#: The same range in ``ln C``.
U0_DEFAULT = math.log(ABC_RANGE_DEFAULT[0])
U1_DEFAULT = math.log(ABC_RANGE_DEFAULT[1])


def rmse(y, pred):
    """Root mean squared error."""
    return jnp.sqrt(jnp.mean(jnp.square(jnp.asarray(pred) - jnp.asarray(y))))


def mae(y, pred):
    """Mean absolute error."""
    return jnp.mean(jnp.abs(jnp.asarray(pred) - jnp.asarray(y)))


def rmsle(y, pred) -> float:
    """Root mean squared error of ``ln``, for a positive truth such as a loss (a prediction <= 0
    counts as 1e-300); numpy float64 on the host, whatever JAX's precision."""
    y, pred = np.asarray(y, np.float64), np.asarray(pred, np.float64)
    return float(np.sqrt(np.mean((np.log(np.maximum(pred, 1e-300)) - np.log(y)) ** 2)))


def rank_average(a) -> np.ndarray:
    """Ranks 1..n of a 1-d array, tied values sharing the mean of their ranks (float64, on the host)."""
    a = np.asarray(a, float).ravel()
    order = np.argsort(a, kind="mergesort")
    s = a[order]
    new = np.r_[True, s[1:] != s[:-1]]  # first element of every group of equal values
    group = np.cumsum(new) - 1
    starts = np.flatnonzero(np.r_[new, True])  # group i spans sorted positions starts[i]..starts[i+1]-1
    mean_rank = (starts[:-1] + starts[1:] + 1) / 2.0  # mean of the 1-based ranks in each group
    out = np.empty_like(a)
    out[order] = mean_rank[group]
    return out


def spearman(y, pred) -> float:
    """Spearman rank correlation (ties get their mean rank): the Pearson correlation of the ranks.

    NaN when either side is constant (no ranking to compare), as for a Pearson correlation, or
    holds a NaN (as scipy's default).
    """
    y, pred = np.asarray(y, float).ravel(), np.asarray(pred, float).ravel()
    if y.size != pred.size:
        raise ValueError(f"spearman: {y.size} targets and {pred.size} predictions")
    if np.isnan(y).any() or np.isnan(pred).any():
        return float("nan")
    ry, rp = rank_average(y), rank_average(pred)
    ry, rp = ry - ry.mean(), rp - rp.mean()
    den = math.sqrt(float(ry @ ry) * float(rp @ rp))
    return float(ry @ rp) / den if den > 0 else float("nan")


def gaussian_nlpd(y, mean, var):
    r"""Mean negative log predictive density of ``y`` under :math:`\mathcal N(\text{mean}, \text{var})`."""
    y, mean, var = jnp.asarray(y), jnp.asarray(mean), jnp.asarray(var)
    return jnp.mean(0.5 * jnp.log(2 * jnp.pi * var) + 0.5 * jnp.square(y - mean) / var)


def interval_coverage(y, lo, hi):
    """Fraction of ``y`` inside ``[lo, hi]``."""
    y = jnp.asarray(y)
    return jnp.mean(((y >= lo) & (y <= hi)).astype(jnp.result_type(float)))


def sample_interval_coverage(y, samples, level: float = 0.9):
    """Coverage of the central ``level`` interval of ``samples`` (sample axis first)."""
    q = jnp.quantile(jnp.asarray(samples), jnp.array([(1 - level) / 2, (1 + level) / 2]), axis=0)
    return interval_coverage(y, q[0], q[1])


#: An interval that covers (nearly) every row is called too wide when its median half-width is more
#: than this many times that of a calibrated normal interval, relative to the median absolute error.
WIDE_FACTOR = 3.0

#: Significance of the exact one-sided binomial test that calls an interval too narrow on
#: independent rows (:func:`coverage_check` with ``independent=True``).
NARROW_ALPHA = 0.05


def coverage_check(coverage: float, n: int, level: float, width_ratio: float | None = None, *,
                   independent: bool = False) -> dict:
    """Whether a central ``level`` interval that covered ``coverage`` of ``n`` scored rows is
    consistent with its level.

    A calibrated interval misses ``1 - level`` of the rows. The accepted range allows miss rates
    from 0.3x to 2x that (for a 90 % interval: 80-97 % coverage, the range this package's own
    calibration targets use), widened on both sides by two binomial standard errors of a fraction
    of ``n`` independent rows. Rows of one run or model are usually correlated, so the real
    sampling error is larger and the check errs towards "consistent" on few rows.

    So a coverage of 100 % is within the range on up to a few dozen rows, even when the interval is
    many times wider than the errors. ``width_ratio``, the median half-width of the interval over
    the median absolute error of its point prediction, tells those apart: a calibrated normal
    interval has ``z / 0.674`` (2.44 at 90 %), heavier tails a little more. An interval that
    covers more than ``1 - 0.3 (1 - level)`` of 20 or more rows with a ratio above
    :data:`WIDE_FACTOR` times that is "too wide" too.

    ``independent``: the rows are independent of each other (e.g. each held-out row is another
    model), so the rows a calibrated interval covers are Binomial(``n``, ``level``). An exact
    one-sided test is then added on the low side: when ``P(X <= covered)`` (``p_covered_at_most``)
    is below :data:`NARROW_ALPHA` the verdict is "too narrow" (9 of 14 rows at 90 %: P = 0.009,
    which the general range accepts), and ``expected[0]`` is the larger of the two lower ends.

    Returns:
      ``{"level", "coverage", "n", "expected": [low, high], "verdict"}`` with ``verdict`` one of
      ``"consistent"``, ``"too narrow"`` (coverage below the range: the real uncertainty is larger)
      or ``"too wide"`` (above it, or by its width as above; then ``width_ratio`` and
      ``width_ratio_calibrated`` are given); with ``independent``, also ``covered`` (rows inside)
      and ``p_covered_at_most``.
    """
    level, coverage, n = float(level), float(coverage), int(n)
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    miss = 1.0 - level
    se = 2.0 * math.sqrt(level * miss / max(n, 1))
    low, high = max(0.0, 1.0 - 2.0 * miss - se), min(1.0, 1.0 - 0.3 * miss + se)
    verdict = "too narrow" if coverage < low else "too wide" if coverage > high else "consistent"
    out = {"level": level, "coverage": coverage, "n": n, "expected": [low, high], "verdict": verdict}
    if independent:
        from scipy.stats import binom

        covered = int(round(coverage * n))
        p_low = float(binom.cdf(covered, n, level))
        out.update(covered=covered, p_covered_at_most=p_low)
        out["expected"][0] = max(low, float(binom.ppf(NARROW_ALPHA, n, level)) / n)
        if verdict == "consistent" and p_low < NARROW_ALPHA:
            out["verdict"] = "too narrow"
    if width_ratio is not None and math.isfinite(width_ratio):
        from statistics import NormalDist

        calibrated = NormalDist().inv_cdf((1.0 + level) / 2.0) / NormalDist().inv_cdf(0.75)
        out.update(width_ratio=float(width_ratio), width_ratio_calibrated=calibrated)
        wide = n >= 20 and coverage > 1.0 - 0.3 * miss and width_ratio > WIDE_FACTOR * calibrated
        if verdict == "consistent" and wide:
            out["verdict"] = "too wide"
    return out


def crps_gaussian(y, mean, std):
    r"""Mean CRPS of a Gaussian forecast (closed form of Gneiting & Raftery 2007)."""
    y, mean, std = jnp.asarray(y), jnp.asarray(mean), jnp.asarray(std)
    z = (y - mean) / std
    crps = std * (z * (2 * norm.cdf(z) - 1) + 2 * norm.pdf(z) - 1 / jnp.sqrt(jnp.pi))
    return jnp.mean(crps)


def crps_samples(y, samples):
    r"""Mean CRPS from an ensemble: :math:`E|X - y| - \tfrac12 E|X - X'|` (sample axis first).

    Uses the sorted-sample identity for :math:`E|X-X'|`, so the cost is ``O(m log m)``.
    """
    x = jnp.sort(jnp.asarray(samples), axis=0)
    m = x.shape[0]
    term1 = jnp.mean(jnp.abs(x - jnp.asarray(y)), axis=0)
    i = jnp.arange(1, m + 1).reshape((m,) + (1,) * (x.ndim - 1))
    term2 = jnp.sum((2 * i - m - 1) * x, axis=0) / (m * m)
    return jnp.mean(term1 - term2)


def abc_loglinear(b1, b0, b1_ref, b0_ref, u0: float = U0_DEFAULT, u1: float = U1_DEFAULT):
    r"""Area between two lines :math:`\ln L = b_1 \ln C + b_0` over :math:`u = \ln C \in [u_0, u_1]`.

    Closed form of :math:`\int_{u_0}^{u_1} |\Delta m\, u + \Delta b|\, du` with
    :math:`\Delta m = b_1 - b_1^{ref}`, :math:`\Delta b = b_0 - b_0^{ref}` and crossing
    :math:`u^* = -\Delta b/\Delta m`:

    * no crossing inside: :math:`|\Delta m (u_1^2 - u_0^2)/2 + \Delta b (u_1 - u_0)|`
    * crossing inside: :math:`\tfrac{|\Delta m|}{2}[(u^* - u_0)^2 + (u_1 - u^*)^2]`

    This is the AbC of Schram et al. (polygon area in the ``(ln C, ln L)`` plane, C in
    [1e15, 1e20]). Broadcasts over arrays of coefficients.

    Example:
      >>> round(float(abc_loglinear(-0.05, 3.5, -0.05, 3.4)), 4)  # parallel lines: 0.1 * width
      1.1513
    """
    dm = jnp.asarray(b1) - jnp.asarray(b1_ref)
    db = jnp.asarray(b0) - jnp.asarray(b0_ref)
    no_cross = jnp.abs(dm * (u1 * u1 - u0 * u0) / 2 + db * (u1 - u0))
    safe_dm = jnp.where(dm == 0, 1.0, dm)
    u_star = -db / safe_dm
    inside = (dm != 0) & (u_star > u0) & (u_star < u1)
    cross = jnp.abs(dm) / 2 * (jnp.square(u_star - u0) + jnp.square(u1 - u_star))
    return jnp.where(inside, cross, no_cross)
