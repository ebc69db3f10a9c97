"""Fitting engines: parameter specs, compiled point fitters, NUTS wrappers, result types."""
from jaxscale.infer.evolution import DEInfo, DEState, de_init, de_run, de_step
from jaxscale.infer.batched_nuts import batched_nuts, map_laplace, map_laplace_batched, nuts_chain, warn_nuts
from jaxscale.infer.importance import laplace_importance, pareto_khat
from jaxscale.infer.bayes import PosteriorResult, nuts_diagnostics, posterior_predictive, run_nuts
from jaxscale.infer.losses import huber, squared
from jaxscale.infer.optimize import (
    best,
    bucket,
    check_finite,
    minimize_adam,
    minimize_lbfgs,
    minimize_newton,
    multistart,
)
from jaxscale.infer.params import Bounded, ParamSpec, Positive, Real
from jaxscale.infer.prediction import Prediction, from_normal, from_samples
from jaxscale.infer.results import REASONS, FitResult, reason_text
from jaxscale.infer.sharding import device_mesh, shard_batch, sharded_vmap

__all__ = [
    "DEInfo",
    "DEState",
    "de_init",
    "de_run",
    "de_step",
    "Bounded",
    "FitResult",
    "ParamSpec",
    "Positive",
    "PosteriorResult",
    "Prediction",
    "REASONS",
    "Real",
    "batched_nuts",
    "best",
    "check_finite",
    "device_mesh",
    "from_normal",
    "from_samples",
    "huber",
    "laplace_importance",
    "map_laplace",
    "map_laplace_batched",
    "minimize_adam",
    "minimize_lbfgs",
    "minimize_newton",
    "multistart",
    "bucket",
    "nuts_chain",
    "nuts_diagnostics",
    "pareto_khat",
    "posterior_predictive",
    "reason_text",
    "run_nuts",
    "shard_batch",
    "sharded_vmap",
    "squared",
    "warn_nuts",
]
