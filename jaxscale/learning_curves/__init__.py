"""Pillar 1: zero-shot learning-curve models (MaGP, DHGP, BNN baselines) and probabilistic laws."""
from jaxscale.learning_curves.data import LCData, load_lc
from jaxscale.learning_curves.evaluate import evaluate_prediction
from jaxscale.learning_curves.models import LCFit, fit_model, predict_joint, sample_joint
from jaxscale.learning_curves.problem import LCProblem, Points, make_problem
from jaxscale.learning_curves.splits import Split, make_split

__all__ = [
    "LCData",
    "LCFit",
    "LCProblem",
    "Points",
    "Split",
    "evaluate_prediction",
    "fit_model",
    "load_lc",
    "make_problem",
    "make_split",
    "predict_joint",
    "sample_joint",
]
