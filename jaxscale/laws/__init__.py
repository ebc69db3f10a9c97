"""Pure functional forms ``law(params, inputs)``: no fitting here."""
from jaxscale.laws.power import (
    ChinchillaParams,
    PowerLawParams,
    SaturatingPowerLawParams,
    chinchilla,
    chinchilla_admissible,
    chinchilla_log_lse,
    chinchilla_params_to_theta,
    chinchilla_squared_exponents,
    chinchilla_sqrt_exponents,
    chinchilla_theta_to_params,
    compute_6nd,
    nanogpt_total_params,
    power_law,
    saturating_power_law,
)
from jaxscale.laws.sigmoid import logit, sigmoid, sigmoid_link

__all__ = [
    "ChinchillaParams",
    "PowerLawParams",
    "SaturatingPowerLawParams",
    "chinchilla",
    "chinchilla_admissible",
    "chinchilla_log_lse",
    "chinchilla_params_to_theta",
    "chinchilla_squared_exponents",
    "chinchilla_sqrt_exponents",
    "chinchilla_theta_to_params",
    "compute_6nd",
    "nanogpt_total_params",
    "power_law",
    "saturating_power_law",
    "logit",
    "sigmoid",
    "sigmoid_link",
]
