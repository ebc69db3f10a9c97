"""NCPL: the configuration-to-performance law (Zhang, Wen & Ma 2026).

A run's whole training configuration is serialised as ``key: value`` text (numbers become number
tokens embedded by a small MLP of their scaled value), read by a frozen pretrained text encoder
(all-MiniLM-L6-v2, ported to Flax), and a deep ensemble of heads predicts the final loss as a
residual over a Chinchilla law. The contract::

    data = ncpl.from_frame(df, target_col="loss", n_col="N", d_col="D")
    fit = ncpl.fit(jax.random.key(0), data, ncpl.Spec(members=5, steps=1000))
    pred = ncpl.predict(fit, new_df)          # jaxscale.Prediction; samples = member means

Extras: :func:`extrapolation` (how far queries lie outside the training data),
:func:`infer_fields` (which columns are text / numeric), :func:`prepare` (the arrays
:func:`fit_core` trains on), :func:`stage2` (encoder fine-tuning), and the reproduction drivers on
the bundled Marin + StepLaw runs: :func:`runs_frame`, :func:`ncpl_fields`, :func:`fit_ncpl`,
:func:`ncpl_model`, :func:`evaluate`, :func:`evaluate_table`, :func:`tune_cell`,
:func:`curve_evaluation`.
"""
from typing import TYPE_CHECKING

from jaxscale._lazy import lazy_package

if TYPE_CHECKING:  # the names below load on first use (see _LAZY); these imports are for readers and tools
    from jaxscale.ncpl.curve_model import curve_evaluation
    from jaxscale.ncpl.data import Data, from_frame
    from jaxscale.ncpl.model import (
        Fit,
        extrapolation,
        fit,
        fit_core,
        fit_ncpl,
        predict,
        prepare,
        stage2,
    )
    from jaxscale.ncpl.pipeline import evaluate, evaluate_table, ncpl_model, runs_frame
    from jaxscale.ncpl.serialize import NumField, infer_fields, ncpl_fields
    from jaxscale.ncpl.spec import Spec
    from jaxscale.ncpl.tune import tune_cell

__all__ = [
    "Data",
    "Spec",
    "Fit",
    "from_frame",
    "fit",
    "fit_core",
    "predict",
    # extras
    "extrapolation",
    "NumField",
    "infer_fields",
    "prepare",
    "stage2",
    "runs_frame",
    "ncpl_fields",
    "fit_ncpl",
    "ncpl_model",
    "evaluate",
    "evaluate_table",
    "tune_cell",
    "curve_evaluation",
]

# Each name is imported from its module on first use, so that `import jaxscale.ncpl` (and the
# command line's --help) imports neither JAX nor Flax.
_P = "jaxscale.ncpl."
_LAZY = {
    "curve_evaluation": _P + "curve_model",
    **dict.fromkeys(["Data", "from_frame"], _P + "data"),
    **dict.fromkeys(["Fit", "extrapolation", "fit", "fit_core", "fit_ncpl", "predict", "prepare", "stage2"],
                    _P + "model"),
    **dict.fromkeys(["evaluate", "evaluate_table", "ncpl_model", "runs_frame"], _P + "pipeline"),
    **dict.fromkeys(["NumField", "infer_fields", "ncpl_fields"], _P + "serialize"),
    "Spec": _P + "spec",
    "tune_cell": _P + "tune",
}
__getattr__, __dir__ = lazy_package(__name__, _LAZY, __all__)
