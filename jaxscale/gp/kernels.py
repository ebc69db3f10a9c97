r"""Kernels of the hierarchical learning-curve GPs, as tinygp single-point kernels.

MaGP (Ma et al. 2023 HMOGP-LV, as used by Schram et al. 2025): inputs are ``(x, r, d)``
(scalar input, instance/replicate index, task index); each task has a latent vector ``h_d``::

    k((x,r,d), (x',r',d')) = k_H(h_d, h_d') * [k_g(x, x') + 1[r = r'] k_f(x, x')]

with Matérn-3/2 ``k_g``, ``k_f`` and an ARD-RBF ``k_H``.

DHGP (Hensman et al. 2013): inputs ``(x, d, c)`` (task and curve ids)::

    k = k_cluster(x,x') + 1[d = d'] k_task(x,x') + 1[c = c'] k_curve(x,x')      (all Matérn-3/2)

``magp_gram`` / ``dhgp_gram`` build the same Gram matrices by gathering from small per-grid
matrices (the fast path used inside the fitters); the tests check they equal the tinygp kernels.
``gather2`` does those gathers: by one-hot matrix products for small tables, whose gradient is two
more products instead of a scatter-add (on CPU the scatter-adds of a few hundred points cost more
than the Gram's Cholesky).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import tinygp

__all__ = ["matern32", "rbf_ard", "gather2", "MaGPKernel", "DHGPKernel", "magp_gram", "dhgp_gram"]

#: Largest table side that :func:`gather2` reads by one-hot products (above: a plain gather, whose
#: cost does not grow with the table).
ONEHOT_MAX = 64

_SQRT3 = 1.7320508075688772


def matern32(x1, x2, variance, scale):
    """Matérn-3/2 covariance of scalar inputs (broadcasts)."""
    r = _SQRT3 * jnp.abs(x1 - x2) / scale
    return variance * (1.0 + r) * jnp.exp(-r)


def rbf_ard(h1, h2, variance, scales):
    """ARD squared-exponential covariance of vectors (last axis = dimensions; broadcasts)."""
    z = (h1 - h2) / scales
    return variance * jnp.exp(-0.5 * jnp.sum(z * z, axis=-1))


class MaGPKernel(tinygp.kernels.Kernel):
    """MaGP covariance on single points ``X = (x, r, d)``; ``h`` is the (D, Q) table of task latents."""

    g_var: jnp.ndarray
    g_scale: jnp.ndarray
    f_var: jnp.ndarray
    f_scale: jnp.ndarray
    h: jnp.ndarray
    h_scale: jnp.ndarray
    h_var: jnp.ndarray | float = 1.0

    def evaluate(self, X1, X2):
        x1, r1, d1 = X1
        x2, r2, d2 = X2
        kh = rbf_ard(self.h[d1], self.h[d2], self.h_var, self.h_scale)
        kg = matern32(x1, x2, self.g_var, self.g_scale)
        kf = matern32(x1, x2, self.f_var, self.f_scale)
        return kh * (kg + jnp.where(r1 == r2, kf, 0.0))


class DHGPKernel(tinygp.kernels.Kernel):
    """DHGP three-level hierarchy on single points ``X = (x, d, c)`` (task id d, curve id c)."""

    variances: jnp.ndarray  # (3,) cluster, task, curve
    scales: jnp.ndarray  # (3,)

    def evaluate(self, X1, X2):
        x1, d1, c1 = X1
        x2, d2, c2 = X2
        k = [matern32(x1, x2, self.variances[i], self.scales[i]) for i in range(3)]
        return k[0] + jnp.where(d1 == d2, k[1], 0.0) + jnp.where(c1 == c2, k[2], 0.0)


def gather2(table, i1, i2):
    """``table[i1[:, None], i2[None, :]]`` for integer index vectors (the last two axes of ``table``).

    A table of at most :data:`ONEHOT_MAX` rows and columns is read as ``E1 @ table @ E2^T`` with
    one-hot ``E``: the same values (each entry is one table entry plus exact zeros), and a gradient
    of two small matrix products instead of a scatter-add. Larger tables use the plain gather.
    """
    m, n = table.shape[-2:]
    if max(m, n) > ONEHOT_MAX:
        return table[..., i1[:, None], i2[None, :]]
    hi = jax.lax.Precision.HIGHEST  # accelerators may otherwise round float32 products
    e1 = jax.nn.one_hot(i1, m, dtype=table.dtype)
    e2 = e1 if i2 is i1 else jax.nn.one_hot(i2, n, dtype=table.dtype)
    return jnp.matmul(jnp.matmul(e1, table, precision=hi), e2.T, precision=hi)


def magp_gram(xgrid, p1, r1, d1, p2, r2, d2, g_var, g_scale, f_var, f_scale, h, h_scale, h_var=1.0):
    """MaGP Gram matrix for points given by grid index ``p`` into ``xgrid``, replicate ``r``, task ``d``.

    Costs O(G^2 + D^2) kernel evaluations plus O(N1 N2) gathers (G = grid size, D = tasks).
    """
    kg = matern32(xgrid[:, None], xgrid[None, :], g_var, g_scale)
    kf = matern32(xgrid[:, None], xgrid[None, :], f_var, f_scale)
    kh = rbf_ard(h[:, None, :], h[None, :, :], h_var, h_scale)
    same_r = r1[:, None] == r2[None, :]
    kx = gather2(kg, p1, p2) + jnp.where(same_r, gather2(kf, p1, p2), 0.0)
    return gather2(kh, d1, d2) * kx


def dhgp_gram(xgrid, p1, d1, c1, p2, d2, c2, variances, scales):
    """DHGP Gram matrix for grid-indexed points (see :func:`magp_gram`)."""
    ks = matern32(xgrid[None, :, None], xgrid[None, None, :], variances[:, None, None], scales[:, None, None])
    g = gather2(ks, p1, p2)
    return (
        g[0]
        + jnp.where(d1[:, None] == d2[None, :], g[1], 0.0)
        + jnp.where(c1[:, None] == c2[None, :], g[2], 0.0)
    )
