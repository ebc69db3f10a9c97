r"""Chinchilla :math:`L(N, D) = E + A/N^\alpha + B/D^\beta`, the shared first law, as a pillar.

The contract (the same in every pillar)::

    data = chinchilla.from_frame(df, n_col="params", d_col="tokens", loss_col="loss")
    fit = chinchilla.fit(key, data, chinchilla.Spec(n_boot=1000))
    pred = chinchilla.predict(fit, new_runs_df)          # loss with 90% prediction intervals
    opt = chinchilla.optimal(fit, [1e21, 1e22])          # N*, D*, loss at each compute budget

Fitted by Epoch AI's method (Huber on log loss, 4,500 L-BFGS starts in one compiled program);
:data:`EPOCH_SPEC` is their setting on their extracted points.
"""
from typing import TYPE_CHECKING

from jaxscale._lazy import lazy_package

if TYPE_CHECKING:  # the names below load on first use (see _LAZY); these imports are for readers and tools
    from jaxscale.chinchilla.bayes import bayes_model, fit_bayes
    from jaxscale.chinchilla.fit import (
        ChinchillaData,
        ChinchillaFit,
        aggregate,
        bootstrap,
        fit,
        fit_core,
        from_frame,
        huber_objective,
        params_dict,
        start_grid,
        take_rows,
    )
    from jaxscale.chinchilla.predict import optimal, optimal_allocation, predict
    from jaxscale.chinchilla.spec import EPOCH_SPEC, ChinchillaSpec

    Data = ChinchillaData
    Spec = ChinchillaSpec
    Fit = ChinchillaFit

__all__ = [
    # the contract
    "Data",
    "Spec",
    "Fit",
    "from_frame",
    "fit",
    "fit_core",
    "predict",
    # named extras
    "ChinchillaData",
    "ChinchillaSpec",
    "ChinchillaFit",
    "EPOCH_SPEC",
    "aggregate",
    "bootstrap",
    "optimal",
    "optimal_allocation",
    "params_dict",
    "start_grid",
    "huber_objective",
    "take_rows",
    "bayes_model",
    "fit_bayes",
]

# Each name is imported from its module on first use, so that `import jaxscale.chinchilla` (and the
# command line's --help) does not import JAX.
_FIT = "jaxscale.chinchilla.fit"
_LAZY = {
    "Data": f"{_FIT}:ChinchillaData",
    "Spec": "jaxscale.chinchilla.spec:ChinchillaSpec",
    "Fit": f"{_FIT}:ChinchillaFit",
    **dict.fromkeys(["from_frame", "fit", "fit_core", "ChinchillaData", "ChinchillaFit", "aggregate", "bootstrap",
                     "params_dict", "start_grid", "huber_objective", "take_rows"], _FIT),
    **dict.fromkeys(["ChinchillaSpec", "EPOCH_SPEC"], "jaxscale.chinchilla.spec"),
    **dict.fromkeys(["predict", "optimal", "optimal_allocation"], "jaxscale.chinchilla.predict"),
    **dict.fromkeys(["bayes_model", "fit_bayes"], "jaxscale.chinchilla.bayes"),
}
__getattr__, __dir__ = lazy_package(__name__, _LAZY, __all__)
