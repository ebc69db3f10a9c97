r"""Point fits of the observational law :math:`y = b + (1-b)\,\sigma(\alpha + \beta^\top S)` (paper §3.2-3.3, Eq. 6).

The link is :func:`jaxscale.laws.sigmoid_link` (the Bayesian model calls the same function).
Parameters are a flat vector ``theta = [alpha, beta_1..beta_K, u]`` with floor
``b = floor_max * sigmoid(u)``; ``floor_max = 0`` gives the plain sigmoid (``b`` fixed at 0),
``floor_max = 0.2`` the paper's ``sigmoid-parametric`` link with ``b`` in ``[0, 0.2]``.
Huber(δ=1) equals ½·SSE on normalised targets; ``delta=inf`` is OLS (same optimum).
"""
from __future__ import annotations

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import export as jax_export

from jaxscale import _programs as programs
from jaxscale._pytree import register_serializable
from jaxscale.infer import huber, minimize_lbfgs, minimize_newton, sharded_vmap
from jaxscale.laws import sigmoid_link

__all__ = [
    "SigmoidLaw",
    "FLOOR_MAX",
    "START_BETA",
    "U_FLOOR_START",
    "start_theta",
    "unpack",
    "predict",
    "objective",
    "fit_law",
    "fit_law_batch",
    "bootstrap_law",
    "bootstrap_band",
    "mse",
    "predict_np",
    "fequiv_axis",
    "ln_regressor",
]

FLOOR_MAX = 0.2
START_BETA = 0.03  # paper start: alpha = 0, beta_k = 0.03, b = 0 (commit c10551f onwards)
U_FLOOR_START = -8.0  # b = 0.2 * sigmoid(-8) = 6.7e-5, the interior point closest to b = 0


@register_serializable
class SigmoidLaw(NamedTuple):
    """Fitted law in PC (or log-compute) space: ``y = floor + (1-floor) σ(intercept + slopes·x)``."""

    intercept: jax.Array
    slopes: jax.Array  # (K,)
    floor: jax.Array


# a traced program returning a SigmoidLaw can be kept on disk (jaxscale._programs)
jax_export.register_namedtuple_serialization(SigmoidLaw, serialized_name="jaxscale.observational.SigmoidLaw")


def _start(k: int) -> np.ndarray:
    return np.concatenate([np.zeros(1), np.full(k, START_BETA), np.full(1, U_FLOOR_START)])


def start_theta(k: int, dtype=jnp.float64):
    """The original start point (alpha 0, beta 0.03, floor ~0) as a flat vector."""
    return jnp.asarray(_start(k), dtype)


def unpack(theta, floor_max=FLOOR_MAX) -> SigmoidLaw:
    """Flat vector -> :class:`SigmoidLaw` (floor mapped into ``[0, floor_max]``)."""
    return SigmoidLaw(theta[0], theta[1:-1], floor_max * jax.nn.sigmoid(theta[-1]))


def predict(params: SigmoidLaw, X):
    """Predicted normalised accuracy for design rows ``X`` (M, K)."""
    z = jnp.asarray(X) @ params.slopes
    return sigmoid_link(z, 1.0, params.intercept, floor=params.floor)


def objective(theta, X, y, w, delta, floor_max):
    """Weighted mean Huber(δ) loss (δ = inf: ½·squared error)."""
    p = unpack(theta, floor_max)
    r = predict(p, X) - y
    loss = jnp.where(jnp.isinf(delta), 0.5 * r * r, huber(r, jnp.where(jnp.isinf(delta), 1.0, delta)))
    return jnp.sum(w * loss) / jnp.sum(w)


KMAX = 5


def _pad(X, y, w):
    """Zero-weight padding of rows to a bucket (128, then multiples of 64) and zero columns up
    to ``KMAX`` regressors: every task, K and baseline shares one compiled fitter.
    (A zero column has zero gradient, so its coefficient never moves and the path is unchanged.)"""
    n, k = X.shape
    npad = max(128, -(-n // 64) * 64)
    extra = npad - n
    X = np.pad(np.asarray(X, float), ((0, extra), (0, max(KMAX - k, 0))))
    y = np.pad(np.asarray(y, float), (0, extra))
    w = np.asarray(w, float)
    w = np.pad(w, [(0, 0)] * (w.ndim - 1) + [(0, extra)])
    return X, y, w


def _pad_theta(theta, kpad):
    theta = np.asarray(theta, float)
    k = theta.shape[-1] - 2
    return np.concatenate([theta[:1 + k], np.zeros(kpad - k), theta[-1:]])


def _trim(theta, k):
    """Drop the padded coefficients (on the host: slicing on the device would compile small programs)."""
    theta = np.asarray(theta)
    return jax.device_put(np.concatenate([theta[..., :1 + k], theta[..., -1:]], axis=-1))


def _fit(theta0, X, y, w, delta, floor_max, max_steps):
    """The L-BFGS fit and its law (slopes still padded): one program kept on disk between
    processes (:mod:`jaxscale._programs`)."""
    res = minimize_lbfgs(objective, theta0, X, y, w, delta, floor_max, max_steps=max_steps,
                         tol=1e-12, ftol=1e-15)
    return res, unpack(res.params, floor_max)


def fit_law(X, y, *, floor: bool, loss: str = "huber", w=None, theta0=None, max_steps: int = 1000):
    """Fit the law on design ``X`` (M, K) and targets ``y`` (M,).

    Args:
      floor: ``True`` for ``b`` in ``[0, 0.2]`` (post-training / agents), ``False`` for plain σ.
      loss: ``"huber"`` (δ = 1) or ``"ols"``.
      w: optional nonnegative row weights (bootstrap multiplicities, padding masks).
    Returns (SigmoidLaw, FitResult).
    """
    X = np.asarray(X, float)
    y = np.asarray(y, float)
    if X.ndim != 2 or y.shape != (X.shape[0],):
        raise ValueError(f"fit_law: X must be (M, K) and y (M,); got X {X.shape}, y {y.shape}")
    if not (np.all(np.isfinite(X)) and np.all(np.isfinite(y))):
        raise ValueError("fit_law: X and y must be finite; impute or drop missing rows first")
    if loss not in ("huber", "ols"):
        raise ValueError(f"fit_law: loss must be 'huber' or 'ols', got {loss!r}")
    w = np.ones_like(y) if w is None else np.asarray(w, float)
    k = X.shape[1]
    X, y, w = _pad(X, y, w)
    theta0 = _start(X.shape[1]) if theta0 is None else _pad_theta(theta0, X.shape[1])
    fmax = FLOOR_MAX if floor else 0.0
    delta = 1.0 if loss == "huber" else float("inf")
    res, law = programs.call("obs_fit_law", _fit, (theta0, X, y, w, np.float64(delta), np.float64(fmax)),
                             (max_steps,))
    res = res._replace(params=_trim(res.params, k))
    return law._replace(slopes=jax.device_put(np.asarray(law.slopes)[:k])), res


@partial(jax.jit, static_argnames=("steps",))
def _fit_batch(theta0, X, y, W, delta, floor_max, steps):
    def one(w):
        return minimize_newton(objective, theta0, X, y, w, delta, floor_max, steps=steps, tol=1e-9)

    return sharded_vmap(one, W)  # refits split over all devices


def fit_law_batch(X, y, W, *, floor: bool, loss: str = "huber", theta0=None, steps: int = 40):
    """Refit the law for every weight row of ``W`` (B, M) in one vmapped program (bootstrap).

    Every refit starts from ``theta0`` (default: the full-data :func:`fit_law` optimum) and runs
    ``steps`` damped-Newton iterations (:func:`jaxscale.infer.minimize_newton`: a fixed-length
    scan, so a batch costs the same whatever its slowest member). The refits are split over all
    devices (:func:`jaxscale.infer.sharded_vmap`; one device: a plain ``vmap``). Returns
    ``(SigmoidLaw with a leading batch axis, FitResult)``; ``FitResult.converged`` flags refits
    whose gradient norm did not reach 1e-9 (e.g. a steep sigmoid running off to infinity).
    """
    X = np.asarray(X, float)
    k = X.shape[1]
    W = np.asarray(W, float)
    if W.ndim != 2 or W.shape[1] != X.shape[0]:
        raise ValueError(f"fit_law_batch: W must be (B, {X.shape[0]}) row weights, got {W.shape}")
    if theta0 is None:
        _, full = fit_law(X, y, floor=floor, loss=loss)
        theta0 = full.params
    fmax = FLOOR_MAX if floor else 0.0
    delta = 1.0 if loss == "huber" else float("inf")
    Xp, yp, Wp = _pad(X, np.asarray(y), W)
    res = _fit_batch(_pad_theta(theta0, Xp.shape[1]), Xp, yp, Wp, delta, fmax, steps=steps)
    res = res._replace(params=_trim(res.params, k))
    return jax.vmap(lambda t: unpack(t, fmax))(res.params), res


def bootstrap_law(key, X, y, n: int = 1000, *, floor: bool, loss: str = "huber", steps: int = 40):
    """Non-parametric bootstrap of the law: ``n`` resamples of the training rows (multiplicity
    weights), refitted in ONE vmapped program by :func:`fit_law_batch`.

    Returns ``(SigmoidLaw (n, ...), FitResult (n, ...))``; refits that did not converge should be
    excluded by the caller (``FitResult.converged``), see :func:`bootstrap_band`.
    """
    m = np.asarray(y).shape[0]
    idx = jax.random.randint(key, (n, m), 0, m)
    W = jax.vmap(lambda i: jnp.bincount(i, length=m))(idx)
    return fit_law_batch(X, y, np.asarray(W, float), floor=floor, loss=loss, steps=steps)


def bootstrap_band(params: SigmoidLaw, converged, X, probs=(0.05, 0.95)) -> np.ndarray:
    """Quantiles (len(probs), M) over converged bootstrap refits of the predicted curve at ``X``.

    Warns with the count when refits are excluded; raises if none converged.
    """
    import warnings

    ok = np.asarray(converged, bool)
    if not ok.any():
        raise ValueError("bootstrap_band: no bootstrap refit converged; check the fit (steep sigmoid?)")
    if not ok.all():
        warnings.warn(f"bootstrap: {int((~ok).sum())} of {ok.size} refits did not converge and are "
                      "excluded from the band", RuntimeWarning, stacklevel=2)
    X = jnp.asarray(X, float)
    preds = jax.vmap(lambda p: predict(p, X))(jax.tree_util.tree_map(lambda a: a[ok], params))
    return np.quantile(np.asarray(preds), np.asarray(probs), axis=0)


_predict_jit = jax.jit(predict)


def predict_np(params: SigmoidLaw, X) -> np.ndarray:
    """Host-side :func:`predict` on rows padded to a fixed bucket (no recompiles per row count)."""
    X = np.asarray(X, float)
    n, k = X.shape
    Xp, _, _ = _pad(X, np.zeros(n), np.zeros(n))
    sl = np.zeros(Xp.shape[1])
    sl[:k] = np.asarray(params.slopes, float)
    p = SigmoidLaw(np.float64(params.intercept), sl, np.float64(params.floor))
    return np.asarray(_predict_jit(p, Xp))[:n]


def mse(params: SigmoidLaw, X, y) -> float:
    """Mean squared error of the law on (X, y) (nan for zero rows)."""
    y = np.asarray(y)
    if y.size == 0:
        return float("nan")
    return float(np.mean((predict_np(params, X) - y) ** 2))


def fequiv_axis(params: SigmoidLaw, S_ref, flops_ref):
    """Reference-family-equivalent FLOPs axis (paper §3.4, Eqs. 7-8).

    OLS of ``P = intercept + slopes·S`` on ``log10 C`` over the reference-family models gives
    ``P ≈ w log10 C + c``; returns ``(w, c)``: the printed law is ``σ(w x + c)`` with
    ``x = log10`` of the equivalent FLOPs (1E21) and ``x(S) = (P(S) - c) / w``.
    """
    P = float(params.intercept) + np.asarray(S_ref, float) @ np.asarray(params.slopes, float)
    x = np.log10(np.asarray(flops_ref, float))
    A = np.stack([x, np.ones_like(x)], 1)
    (w, c), *_ = np.linalg.lstsq(A, P, rcond=None)
    return float(w), float(c)


def ln_regressor(values):
    """Compute / size baseline regressor ``ln(v + 1e-9)`` as an (M, 1) design."""
    return np.log(np.asarray(values, float) + 1e-9)[:, None]
