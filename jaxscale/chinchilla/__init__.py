r"""Chinchilla :math:`L(N, D) = E + A/N^\alpha + B/D^\beta`, the shared first law, as a pillar.

The contract (the same in every pillar)::

    data = chinchilla.from_frame(df, n_col="params", d_col="tokens", loss_col="loss")
    fit = chinchilla.fit(key, data, chinchilla.Spec(n_boot=1000))
    pred = chinchilla.predict(fit, new_runs_df)          # loss with 90% prediction intervals
    opt = chinchilla.optimal(fit, [1e21, 1e22])          # N*, D*, loss at each compute budget

Fitted by Epoch AI's method (Huber on log loss, 4,500 L-BFGS starts in one compiled program);
:data:`EPOCH_SPEC` is their setting on their extracted points.
"""
from jaxscale.chinchilla.bayes import bayes_model, fit_bayes
from jaxscale.chinchilla.fit import (
    EPOCH_SPEC,
    ChinchillaData,
    ChinchillaFit,
    ChinchillaSpec,
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
