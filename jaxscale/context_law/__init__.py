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
(:func:`fit_many`) and :func:`task_summary`.
"""
from jaxscale.context_law.contract import Data, Fit, Posterior, fit, from_frame, predict, task_summary
from jaxscale.context_law.data import SOURCES, load_source
from jaxscale.context_law.evaluate import PRESETS, evaluate_source
from jaxscale.context_law.fit import ContextFit, check_identifiability, fit_core, fit_many
from jaxscale.context_law.model import Spec, param_names

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
    "task_summary",
]
