"""Pillar 2: observational scaling laws (Ruan, Maddison & Hashimoto 2024, arXiv 2405.10938 v3).

Modules: ``constants`` (model universe), ``data`` (bundled tables), ``pca`` (imputation and
principal capabilities), ``fit`` (sigmoid-link point fits), ``splits``, ``tasks`` (named
experiments), ``pipeline`` (end to end), ``selection`` (V-optimal subsets), ``sweep`` (cut-off
sweep with AUE, Fig. 7a subset curve), ``bayes`` / ``bayes_nuts`` / ``bayes_eval`` (numpyro
model, batched NUTS, coverage table), ``family`` (family compute-efficiency hierarchy,
f-equivalent FLOPs with uncertainty), ``usertable`` (your own CSV), ``plot``, ``cli*``, ``demo``.
"""
from jaxscale.observational.pipeline import run_baseline, run_task
from jaxscale.observational.tasks import get_task, task_names

__all__ = ["run_task", "run_baseline", "get_task", "task_names"]
