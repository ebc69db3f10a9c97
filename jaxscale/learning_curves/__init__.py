"""Zero-shot learning curves (Schram et al. 2025): MaGP, descriptor MaGP and DHGP curve models,
the probabilistic scaling law from predicted curves, and active learning of that law.

The contract (your own runs)::

    data = from_frame(df, task_col="n_embd", instance_col="n_layer", x_col="step", y_col="loss")
    fitted = fit(jax.random.key(0), data.rows(train_mask), Spec(model="magp"))
    pred = predict(fitted, data.rows(~train_mask))          # jaxscale.Prediction

Named extras: the paper's bundled datasets and splits (``load_lc``, ``make_problem``,
``fit_model``, ``predict_joint``, ``sample_joint``, ``evaluate_model``), scoring of your own table
(``evaluate_holdout``, with the naive baselines of ``heldout_details``), the probabilistic law
(``table_law``), active learning replayed on your finished runs (``table_active``) and the run
to train next among planned ones (``recommend``), and runs in progress
(``tail_from_frame``, ``extrapolate``, ``evaluate_tail``: the rest of each curve from its early
part).
"""
from typing import TYPE_CHECKING

from jaxscale._lazy import lazy_package

if TYPE_CHECKING:  # the names below load on first use (see _LAZY); these imports are for readers and tools
    from jaxscale.learning_curves.active import recommend, table_active
    from jaxscale.learning_curves.core import Fit, fit, fit_core, predict, predict_restarts
    from jaxscale.learning_curves.data import LCData, load_lc
    from jaxscale.learning_curves.evaluate import evaluate_prediction
    from jaxscale.learning_curves.extrapolate import TailData, evaluate_tail, tail_from_frame
    from jaxscale.learning_curves.extrapolate import extrapolate as extrapolate
    from jaxscale.learning_curves.frame import Data, from_frame
    from jaxscale.learning_curves.law import table_law
    from jaxscale.learning_curves.models import fit_model, predict_joint, sample_joint
    from jaxscale.learning_curves.pipeline import evaluate_holdout, evaluate_model, heldout_details
    from jaxscale.learning_curves.problem import LCProblem, make_problem
    from jaxscale.learning_curves.splits import Split, make_split
    from jaxscale.learning_curves.spec import MODELS, ExtrapolateSpec, Spec

__all__ = [
    # the contract
    "Data",
    "Spec",
    "Fit",
    "from_frame",
    "fit",
    "fit_core",
    "predict",
    # your own table
    "MODELS",
    "predict_restarts",
    "evaluate_holdout",
    "heldout_details",
    "table_law",
    "table_active",
    "recommend",
    # runs in progress
    "ExtrapolateSpec",
    "TailData",
    "tail_from_frame",
    "extrapolate",
    "evaluate_tail",
    # paper reproductions on the bundled datasets
    "LCData",
    "LCProblem",
    "Split",
    "load_lc",
    "make_problem",
    "make_split",
    "fit_model",
    "predict_joint",
    "sample_joint",
    "evaluate_prediction",
    "evaluate_model",
]

# Each name is imported from its module on first use, so that `import jaxscale.learning_curves` (and
# the command line's --help) does not import JAX.
_P = "jaxscale.learning_curves."
_LAZY = {
    **dict.fromkeys(["table_active", "recommend"], _P + "active"),
    **dict.fromkeys(["Fit", "fit", "fit_core", "predict", "predict_restarts"], _P + "core"),
    **dict.fromkeys(["LCData", "load_lc"], _P + "data"),
    "evaluate_prediction": _P + "evaluate",
    **dict.fromkeys(["TailData", "evaluate_tail", "tail_from_frame", "extrapolate"], _P + "extrapolate"),
    **dict.fromkeys(["Data", "from_frame"], _P + "frame"),
    "table_law": _P + "law",
    **dict.fromkeys(["fit_model", "predict_joint", "sample_joint"], _P + "models"),
    **dict.fromkeys(["evaluate_holdout", "evaluate_model", "heldout_details"], _P + "pipeline"),
    **dict.fromkeys(["LCProblem", "make_problem"], _P + "problem"),
    **dict.fromkeys(["MODELS", "Spec", "ExtrapolateSpec"], _P + "spec"),
    **dict.fromkeys(["Split", "make_split"], _P + "splits"),
}
__getattr__, __dir__ = lazy_package(__name__, _LAZY, __all__)
