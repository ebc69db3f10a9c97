"""Point fitters: L-BFGS (optax, zoom line search), damped Newton and Adam, all fully compiled.

Both take ``loss_fn(x, *args)`` of an unconstrained pytree ``x`` and return a
:class:`~jaxscale.infer.results.FitResult`. They are pure, so :func:`multistart` simply
``vmap``s them over a leading axis of start values; everything runs in one compiled program.
Pass module-level loss functions and put data in ``args``: a new lambda per call retraces.
"""
from __future__ import annotations

import warnings
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxscale.infer.results import FitResult, reason_text

__all__ = ["minimize_lbfgs", "minimize_newton", "minimize_adam", "multistart", "best", "check_finite", "bucket"]


def _tree_norm(tree):
    return jnp.sqrt(sum(jnp.sum(jnp.square(leaf)) for leaf in jax.tree_util.tree_leaves(tree)))


@partial(
    jax.jit,
    static_argnames=("loss_fn", "max_steps", "memory_size", "max_linesearch_steps", "linesearch"),
)
def minimize_lbfgs(
    loss_fn,
    x0,
    *args,
    max_steps: int = 500,
    tol: float = 1e-9,
    ftol: float = 1e-15,
    memory_size: int = 10,
    max_linesearch_steps: int = 30,
    linesearch: str = "zoom",
):
    """Minimise ``loss_fn(x, *args)`` with L-BFGS (optax) and a line search.

    ``linesearch="zoom"`` (strong Wolfe, the default) is robust; ``"backtracking"`` (Armijo,
    halving) needs far fewer function evaluations per step, which matters under ``vmap``:
    a batched line search runs as many trials as its slowest member.

    Stops when the gradient norm falls below ``tol``, when the objective changes by less than
    ``ftol * |f|`` over one step (relative to ``f`` itself, so small objectives such as a
    Huber loss with a tiny delta are not stopped early), after ``max_steps``, or when the objective turns non-finite
    (``reason`` 3, ``n_steps`` = the failing step; see :func:`check_finite`).

    Example:
      >>> import jax.numpy as jnp
      >>> def quad(x, c): return jnp.sum((x - c) ** 2)
      >>> r = minimize_lbfgs(quad, jnp.zeros(2), jnp.array([1.0, -2.0]))
      >>> [round(float(v), 4) for v in r.params], bool(r.converged)
      ([1.0, -2.0], True)
    """

    def fun(x):
        return loss_fn(x, *args)

    if linesearch == "zoom":
        ls = optax.scale_by_zoom_linesearch(max_linesearch_steps=max_linesearch_steps)
    elif linesearch == "backtracking":
        ls = optax.scale_by_backtracking_linesearch(
            max_backtracking_steps=max_linesearch_steps,
            decrease_factor=0.5,
            increase_factor=1.0,
            store_grad=True,
        )
    else:
        raise ValueError(f"linesearch must be 'zoom' or 'backtracking', got {linesearch!r}")
    opt = optax.lbfgs(memory_size=memory_size, linesearch=ls)
    value_and_grad = optax.value_and_grad_from_state(fun)
    state0 = opt.init(x0)
    f0, g0 = jax.value_and_grad(fun)(x0)
    inf = jnp.asarray(jnp.inf, dtype=jnp.result_type(f0))

    def cond(carry):
        _, _, k, f, fprev, gnorm = carry
        finite = jnp.isfinite(f) & jnp.isfinite(gnorm)
        rel = jnp.abs(fprev - f) <= ftol * jnp.abs(f)
        return (k < max_steps) & (gnorm > tol) & finite & ~rel

    def body(carry):
        x, state, k, f, _, _ = carry
        value, grad = value_and_grad(x, state=state)
        updates, state = opt.update(grad, state, x, value=value, grad=grad, value_fn=fun)
        x = optax.apply_updates(x, updates)
        fnew = optax.tree_utils.tree_get(state, "value")
        gnew = _tree_norm(optax.tree_utils.tree_get(state, "grad"))
        return x, state, k + 1, fnew, value, gnew

    carry = (x0, state0, jnp.asarray(0), f0, inf, _tree_norm(g0))
    x, _, k, f, fprev, gnorm = jax.lax.while_loop(cond, body, carry)
    finite = jnp.isfinite(f) & jnp.isfinite(gnorm)
    rel = jnp.abs(fprev - f) <= ftol * jnp.abs(f)
    reason = jnp.where(
        ~finite, 3, jnp.where(gnorm <= tol, 0, jnp.where(rel, 1, 2))
    )
    return FitResult(x, f, reason <= 1, k, gnorm, reason, None)


@partial(jax.jit, static_argnames=("loss_fn", "steps", "with_hessian"))
def minimize_newton(loss_fn, x0, *args, steps: int = 50, tol: float = 1e-8, ftol: float = 0.0,
                    damping: float = 1e-3, with_hessian: bool = False):
    """Minimise ``loss_fn(x, *args)`` with Levenberg-Marquardt-damped Newton steps.

    For small problems (a handful of parameters, any pytree ``x``): the exact Hessian is formed
    (forward-over-reverse, together with the value and gradient in one pass) and every step
    solves ``(H + lam I) dx = -g``. A step is accepted when it lowers the objective (then
    ``lam /= 3``), otherwise rejected (``lam *= 4``). The loop is a fixed-length ``lax.scan``, so
    under ``vmap`` (bootstraps, restarts) there is no slowest-member ``while_loop`` and no nested
    line search: every member costs the same ``steps`` Hessian evaluations, and the objective is
    traced (and compiled) twice only: the start and the scan body. Near an optimum convergence is
    quadratic.

    ``converged`` means the final gradient norm is below ``tol`` (reason 0) or, with ``ftol > 0``,
    that the objective fell by at most ``ftol * |f|`` over the last fifth of the steps (reason 1:
    it stopped falling; the test for objectives whose gradient does not vanish in floating point,
    e.g. a Huber loss with most residuals in its linear part, or a flat valley of near-equal fits);
    otherwise reason 2 (budget used up) or 3 (non-finite start). ``n_steps`` counts accepted steps.
    ``with_hessian=True`` returns ``(result, H)`` with the (flat, symmetrised) Hessian at the
    result, e.g. for a Laplace approximation.

    Example:
      >>> import jax.numpy as jnp
      >>> def rosen(x): return (1 - x[0]) ** 2 + 100 * (x[1] - x[0] ** 2) ** 2
      >>> r = minimize_newton(rosen, jnp.array([-1.2, 1.0]), steps=60)
      >>> [round(float(v), 6) for v in r.params], bool(r.converged)
      ([1.0, 1.0], True)
    """
    from jax.flatten_util import ravel_pytree

    flat0, unravel = ravel_pytree(x0)
    value_grad = jax.value_and_grad(lambda v: loss_fn(unravel(v), *args))

    def fgh(v):  # value, gradient and Hessian in one forward-over-reverse pass
        H, (f, g) = jax.jacfwd(lambda u: (lambda fg: (fg[1], fg))(value_grad(u)), has_aux=True)(v)
        return f, g, 0.5 * (H + H.T)

    eye = jnp.eye(flat0.size, dtype=flat0.dtype)

    def step(carry, _):
        v, f, g, H, lam, n_acc = carry
        dv = -jnp.linalg.solve(H + lam * (1.0 + jnp.abs(jnp.diag(H))) * eye, g)
        vn = v + dv
        fn, gn, Hn = fgh(vn)
        ok = (jnp.isfinite(fn) & jnp.all(jnp.isfinite(dv)) & (fn <= f)
              & jnp.all(jnp.isfinite(gn)) & jnp.all(jnp.isfinite(Hn)))
        v, f, g, H = (jnp.where(ok, a, b) for a, b in ((vn, v), (fn, f), (gn, g), (Hn, H)))
        lam = jnp.clip(jnp.where(ok, lam / 3.0, lam * 4.0), 1e-12, 1e12)
        return (v, f, g, H, lam, n_acc + ok.astype(n_acc.dtype)), f

    f0, g0, H0 = fgh(flat0)
    lam0 = jnp.asarray(damping, flat0.dtype)
    (v, f, g, H, _, n_acc), fs = jax.lax.scan(step, (flat0, f0, g0, H0, lam0, jnp.asarray(0)), None,
                                              length=steps)
    gnorm = jnp.linalg.norm(g)
    finite = jnp.isfinite(f) & jnp.isfinite(gnorm)
    f_before = jnp.concatenate([f0[None], fs])[steps - max(steps // 5, 1)]
    flat = (ftol > 0) & (f_before - f <= ftol * jnp.abs(f))
    reason = jnp.where(~finite, 3, jnp.where(gnorm <= tol, 0, jnp.where(flat, 1, 2)))
    res = FitResult(unravel(v), f, reason <= 1, n_acc, gnorm, reason, None)
    return (res, H) if with_hessian else res


@partial(jax.jit, static_argnames=("loss_fn", "steps"))
def minimize_adam(loss_fn, x0, *args, steps: int = 1000, learning_rate: float = 1e-2):
    """Minimise ``loss_fn(x, *args)`` with ``steps`` Adam updates inside one ``lax.scan``.

    ``history`` holds the objective before each step, so :func:`check_finite` can name the
    first non-finite step. ``reason`` is 4 (fixed budget) or 3 (non-finite).
    """
    opt = optax.adam(learning_rate)
    vg = jax.value_and_grad(loss_fn)

    def step(carry, _):
        x, state = carry
        value, grad = vg(x, *args)
        updates, state = opt.update(grad, state, x)
        return (optax.apply_updates(x, updates), state), value

    (x, _), history = jax.lax.scan(step, (x0, opt.init(x0)), None, length=steps)
    f, g = vg(x, *args)
    gnorm = _tree_norm(g)
    finite = jnp.isfinite(f) & jnp.all(jnp.isfinite(history))
    reason = jnp.where(finite, 4, 3)
    bad = ~jnp.isfinite(history)
    n_steps = jnp.where(jnp.any(bad), jnp.argmax(bad), steps)
    return FitResult(x, f, finite, n_steps, gnorm, reason, history)


def multistart(minimize_fn, loss_fn, X0, *args, uneven: bool = False, **kwargs) -> FitResult:
    """Run ``minimize_fn(loss_fn, x0, *args, **kwargs)`` for every start along ``X0``'s leading axis.

    The starts are ``vmap``ped, so all of them compile into a single program, and split over all
    devices (:func:`jaxscale.infer.sharding.sharded_vmap`). ``uneven=True`` says the starts need
    very different numbers of steps: on a single CPU device they then run one after another, each
    to its own stop, instead of all for as long as the slowest. The returned :class:`FitResult` has
    a leading restart axis on every leaf.
    """
    from jaxscale.infer.sharding import sharded_vmap

    return sharded_vmap(lambda x0: minimize_fn(loss_fn, x0, *args, **kwargs), X0, uneven=uneven)


def bucket(n: int) -> int:
    """Padded length for ``n`` rows: multiples of 64 up to 1,024, then of 1,024. Fits of tables
    whose lengths share a bucket reuse one compiled program (padding rows carry weight 0)."""
    return max(64, -(-n // 64) * 64) if n <= 1024 else -(-n // 1024) * 1024


def check_finite(result: FitResult, what: str = "fit", policy: str = "raise") -> np.ndarray:
    """Host-side check of a (multi-start) result for non-finite objectives or parameters.

    Args:
      result: a :class:`FitResult`, with or without a leading restart axis.
      what: a name for the fit, used in messages.
      policy: ``"raise"`` raises ``ValueError`` naming restart ids and steps;
        ``"warn"`` warns and returns the mask of good restarts so callers exclude the bad ones.

    Returns:
      Boolean mask of finite restarts (shape ``(n_restarts,)``, or ``()`` for a single fit).
    """
    loss = np.asarray(result.loss)
    ok = np.isfinite(loss)
    for leaf in jax.tree_util.tree_leaves(result.params):
        leaf = np.asarray(leaf)
        ok &= np.isfinite(leaf).reshape(leaf.shape[: loss.ndim] + (-1,)).all(axis=-1)
    if np.all(ok):
        return ok
    steps = np.atleast_1d(np.asarray(result.n_steps))
    bad = np.flatnonzero(~np.atleast_1d(ok))
    detail = ", ".join(f"restart {i} (non-finite at step {int(steps[i])})" for i in bad[:10])
    msg = (
        f"{what}: {bad.size} of {np.atleast_1d(ok).size} restarts produced non-finite values: "
        f"{detail}. Check the data for extreme values, use float64 (jaxscale.enable_x64()), "
        "or lower the learning rate / tighten parameter bounds."
    )
    if policy == "raise" or np.atleast_1d(ok).sum() == 0:
        raise ValueError(msg)
    warnings.warn(msg + " These restarts are excluded.", RuntimeWarning, stacklevel=2)
    return ok


def best(result: FitResult, mask=None) -> FitResult:
    """Select the restart with the lowest finite objective (host side).

    Warns when the winning restart did not converge, quoting the reason.
    """
    loss = np.asarray(result.loss, dtype=float)
    loss = np.where(np.isfinite(loss), loss, np.inf)
    if mask is not None:
        loss = np.where(np.asarray(mask), loss, np.inf)
    if not np.isfinite(loss).any():
        raise ValueError("every restart has a non-finite objective; see check_finite()")
    i = int(np.argmin(loss))
    out = jax.tree_util.tree_map(lambda leaf: leaf[i], result)
    if not bool(out.converged):
        warnings.warn(
            f"best restart {i} did not converge: {reason_text(out.reason)}",
            RuntimeWarning,
            stacklevel=2,
        )
    return out
