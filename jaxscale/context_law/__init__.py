"""Pillar 3: context-aware scaling law (Montgomery et al. 2025) fitted with JAX DE + L-BFGS and numpyro."""
from jaxscale.context_law.data import SOURCES, load_source, split_mask, stack_tasks, to_context_data
from jaxscale.context_law.fit import ContextFit, check_identifiability, fit_law, fit_many, theta_dict
from jaxscale.context_law.model import ContextData, LawSpec, mse_loss, param_bounds, param_names, predict

__all__ = [
    "SOURCES",
    "ContextData",
    "ContextFit",
    "LawSpec",
    "check_identifiability",
    "fit_law",
    "fit_many",
    "load_source",
    "mse_loss",
    "param_bounds",
    "param_names",
    "predict",
    "split_mask",
    "stack_tasks",
    "theta_dict",
    "to_context_data",
]
