"""Context-aware scaling law (Montgomery et al. 2025): P(C, n_pmt, n_ctx) = f_C(C) f_n(n_pmt) S(n_pmt, n_ctx).

The contract (the same in every pillar)::

    data = context_law.from_frame(df, c_col="C", n_prompt_col="n_pmt", n_ctx_col="n_ctx",
                                  score_col="score", task_col="task")
    fit = context_law.fit(jax.random.key(0), data, context_law.Spec())   # one law per task
    pred = context_law.predict(fit, new_cells_df)                         # score with a 90 % interval

Fitted by JAX differential evolution + a bounded L-BFGS polish, all tasks in one vmapped program
(:func:`fit_core` is the compiled core); ``Spec(bayes=True)`` adds numpyro NUTS and
posterior-predictive intervals.  Named extras: the bundled sources (:func:`load_source`,
:data:`SOURCES`), their presets and paper-style experiments (:data:`PRESETS`,
:func:`evaluate_source`), the design check (:func:`check_identifiability`), the stacked-task fitter
(:func:`fit_many`), :func:`task_summary` and :func:`posterior_summary`.
"""
from typing import TYPE_CHECKING

from jaxscale._lazy import lazy_package

if TYPE_CHECKING:  # the names below load on first use (see _LAZY); these imports are for readers and tools
    from jaxscale.context_law.contract import (Data, Fit, Posterior, fit, from_frame, posterior_summary, predict,
                                               task_summary)
    from jaxscale.context_law.data import load_source
    from jaxscale.context_law.evaluate import PRESETS, evaluate_source
    from jaxscale.context_law.fit import ContextFit, check_identifiability, fit_core, fit_many
    from jaxscale.context_law.model import param_names
    from jaxscale.context_law.spec import SOURCES, Spec

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
    "ContextFit",
    "Posterior",
    "PRESETS",
    "SOURCES",
    "check_identifiability",
    "evaluate_source",
    "fit_many",
    "load_source",
    "param_names",
    "posterior_summary",
    "task_summary",
]

# Each name is imported from its module on first use, so that `import jaxscale.context_law` (and the
# command line's --help) does not import JAX.
_P = "jaxscale.context_law."
_LAZY = {
    **dict.fromkeys(["Data", "Fit", "Posterior", "fit", "from_frame", "predict", "posterior_summary", "task_summary"],
                    _P + "contract"),
    "load_source": _P + "data",
    **dict.fromkeys(["PRESETS", "evaluate_source"], _P + "evaluate"),
    **dict.fromkeys(["ContextFit", "check_identifiability", "fit_core", "fit_many"], _P + "fit"),
    "param_names": _P + "model",
    **dict.fromkeys(["SOURCES", "Spec"], _P + "spec"),
}
__getattr__, __dir__ = lazy_package(__name__, _LAZY, __all__)
