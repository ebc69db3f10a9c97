"""Observational scaling laws (Ruan, Maddison & Hashimoto 2024, arXiv 2405.10938 v3).

A model's downstream score is a sigmoid of a few *principal capabilities*, the top principal
components of its scores on standard benchmarks; fitted on small models, the law extrapolates to
larger ones. The contract, on your own table (one row per model)::

    from jaxscale import observational as obs
    data = obs.from_frame(df, target_col="gsm8k", metric_cols=["MMLU", "ARC-C", "HellaSwag"])
    fit = obs.fit(jax.random.key(0), data, obs.Spec(k=2, bootstrap=200))
    pred = obs.predict(fit, new_models_df, key=jax.random.key(1))   # mean, 90% interval

Named extras: the paper's experiments (:func:`run_task`, :func:`run_baseline`, :func:`get_task`,
:func:`task_names`), the cut-off sweep and subset-selection drivers (:func:`cutoff_sweep`,
:func:`subset_curve`, :func:`select`), the family-efficiency hierarchy (:func:`fit_family`), the
Bayesian calibration over every task (:func:`calibrate`) and helpers for your own table
(:func:`take_rows`, :func:`cutoff_rows`, :func:`reference_axis`, :func:`capabilities`,
:func:`extrapolation`: how far each model lies outside the training data, :func:`flops_baseline`:
the ln-FLOPs sigmoid to compare against, :func:`mean_score_baseline`: the same on the mean
benchmark accuracy, for tables without FLOPs).

Modules: ``model`` (the contract), ``constants`` / ``data`` / ``tasks`` / ``splits`` (bundled data
and the paper's settings), ``pca`` (imputation and principal capabilities), ``fit`` (sigmoid-link
point fits and bootstraps), ``pipeline`` (a named task end to end), ``bayes`` (numpyro model and
posterior predictive), ``bayes_nuts`` (batched NUTS), ``bayes_eval`` (coverage over the tasks),
``selection`` / ``sweep`` (V-optimal subsets, cut-off sweep), ``family`` (family compute
efficiency), ``report`` (JSON summaries), ``plot``.
"""
from typing import TYPE_CHECKING

from jaxscale._lazy import lazy_package

if TYPE_CHECKING:  # the names below load on first use (see _LAZY); these imports are for readers and tools
    from jaxscale.observational.bayes_eval import calibrate
    from jaxscale.observational.family import fit_family
    from jaxscale.observational.model import (
        ObsData,
        ObsFit,
        capabilities,
        cutoff_rows,
        extrapolation,
        fit,
        fit_core,
        flops_baseline,
        mean_score_baseline,
        from_frame,
        imputed_cells,
        kappa_source,
        predict,
        reference_axis,
        take_rows,
    )
    from jaxscale.observational.pipeline import run_baseline, run_task
    from jaxscale.observational.selection import select
    from jaxscale.observational.spec import ObsSpec
    from jaxscale.observational.sweep import cutoff_sweep, subset_curve
    from jaxscale.observational.tasks import get_task, task_names

    Data = ObsData
    Spec = ObsSpec
    Fit = ObsFit

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
    "take_rows",
    "cutoff_rows",
    "reference_axis",
    "capabilities",
    "extrapolation",
    "imputed_cells",
    "kappa_source",
    "flops_baseline",
    "mean_score_baseline",
    # the paper's experiments
    "run_task",
    "run_baseline",
    "get_task",
    "task_names",
    "cutoff_sweep",
    "subset_curve",
    "select",
    "fit_family",
    "calibrate",
]

# Each name is imported from its module on first use, so that `import jaxscale.observational` (and
# the command line's --help) does not import JAX.
_P = "jaxscale.observational."
_LAZY = {
    "Data": _P + "model:ObsData",
    "Spec": _P + "spec:ObsSpec",
    "Fit": _P + "model:ObsFit",
    "ObsSpec": _P + "spec",
    **dict.fromkeys(["ObsData", "ObsFit", "from_frame", "fit", "fit_core", "predict", "take_rows", "cutoff_rows",
                     "reference_axis", "capabilities", "extrapolation", "imputed_cells", "kappa_source",
                     "flops_baseline", "mean_score_baseline"], _P + "model"),
    **dict.fromkeys(["run_task", "run_baseline"], _P + "pipeline"),
    **dict.fromkeys(["get_task", "task_names"], _P + "tasks"),
    **dict.fromkeys(["cutoff_sweep", "subset_curve"], _P + "sweep"),
    "select": _P + "selection",
    "fit_family": _P + "family",
    "calibrate": _P + "bayes_eval",
}
__getattr__, __dir__ = lazy_package(__name__, _LAZY, __all__)
