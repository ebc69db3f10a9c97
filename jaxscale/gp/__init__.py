"""Shared Gaussian-process layer: tinygp kernels for hierarchical multi-output GPs and fast
exact-GP linear algebra (Cholesky with jitter escalation, NLL with a cheap custom gradient)."""
from jaxscale.gp.kernels import (
    DHGPKernel,
    MaGPKernel,
    dhgp_gram,
    gather2,
    magp_gram,
    matern32,
    rbf_ard,
)
from jaxscale.gp.linalg import (
    JITTER_LADDER,
    cholesky_escalate,
    gaussian_nll,
    gp_condition,
    gp_condition_diag,
    tri_inv,
)

__all__ = [
    "DHGPKernel",
    "JITTER_LADDER",
    "MaGPKernel",
    "cholesky_escalate",
    "dhgp_gram",
    "gather2",
    "gaussian_nll",
    "gp_condition",
    "gp_condition_diag",
    "magp_gram",
    "matern32",
    "rbf_ard",
    "tri_inv",
]
