r"""Continuous configuration descriptors of the nanoGPT hierarchies, and a leak-free scaler for
tasks that have no training rows.

Descriptors: every task, instance and curve of a nanoGPT dataset has numeric
sizes: ``ln n_embd``, ``ln n_layer`` and ``ln N`` with ``N = nanogpt_total_params(n_layer,
n_embd)``. :func:`descriptor_tables` returns them **standardised over the dataset's
configurations** (these are inputs known for every configuration, held out or not, so using
them for the standardisation leaks no targets). Which descriptor belongs to the task and which
to the instance follows the hierarchy: ``nanogpt_large`` / ``nanogpt_small`` have task = width,
instance = depth; ``nanogpt_large_exchanged`` the reverse.

Held-out tasks (``leave_embd`` on the default hierarchy, ``leave_layer`` on the exchanged one)
have no training rows, so the leak-free per-task z-score (``preprocess.task_scaler``) falls back
to the pooled training constants for them. :func:`regress_task_scaler` replaces that fallback by
a least-squares regression of the observed tasks' constants (mean and ln std) on the task
descriptor, and :func:`with_scaler` re-standardises a problem with it. Only training rows are
used, so it is still leak-free.
"""
from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp
import numpy as np

from jaxscale.laws import nanogpt_total_params
from jaxscale.learning_curves.preprocess import Scaler
from jaxscale.learning_curves.problem import LCProblem, points_from_frame

__all__ = ["DescTables", "descriptor_tables", "observed_tasks", "regress_task_scaler", "with_scaler"]


class DescTables(NamedTuple):
    """Standardised descriptors: ``task (D, 1)``, ``rep (R, 1)``, ``curve (D*R, 1)`` (ln N)."""

    task: jnp.ndarray
    rep: jnp.ndarray
    curve: jnp.ndarray


def _std(v: np.ndarray) -> np.ndarray:
    s = v.std()
    return (v - v.mean()) / (s if s > 0 else 1.0)


def descriptor_tables(problem: LCProblem) -> DescTables:
    """Descriptor tables of a nanoGPT problem (ValueError for datasets without sizes)."""
    f = problem.data.frame
    if not {"n_embd", "n_layer"} <= set(f.columns):
        raise ValueError(f"dataset {problem.data.name!r} has no n_embd / n_layer columns; the descriptor "
                         "model (magp_desc) needs numeric configuration sizes: use a nanogpt_* dataset "
                         "or the plain 'magp' model")
    D, R = problem.n_tasks, problem.n_reps
    by_d = f.groupby("d")[["n_embd", "n_layer"]].nunique()
    task_col = "n_embd" if (by_d["n_embd"] == 1).all() else "n_layer"
    rep_col = "n_layer" if task_col == "n_embd" else "n_embd"
    td = f.groupby("d")[task_col].first().reindex(range(D)).to_numpy(float)
    rd = f.groupby("r")[rep_col].first().reindex(range(R)).to_numpy(float)
    if not (np.all(np.isfinite(td)) and np.all(np.isfinite(rd))):
        raise ValueError(f"dataset {problem.data.name!r}: some task or instance has no rows, so its size is unknown")
    e = td[:, None] if task_col == "n_embd" else rd[None, :]
    l_ = rd[None, :] if task_col == "n_embd" else td[:, None]
    lnN = np.log(np.asarray(nanogpt_total_params(np.broadcast_to(l_, (D, R)), np.broadcast_to(e, (D, R)))))
    return DescTables(jnp.asarray(_std(np.log(td))[:, None]), jnp.asarray(_std(np.log(rd))[:, None]),
                      jnp.asarray(_std(lnN.reshape(-1))[:, None]))


def observed_tasks(problem: LCProblem) -> np.ndarray:
    """(D,) bool: tasks with at least one training row."""
    return np.bincount(np.asarray(problem.train.d), minlength=problem.n_tasks) > 0


def regress_task_scaler(problem: LCProblem, tables: DescTables) -> Scaler:
    """The problem's scaler, with the constants of tasks without training rows predicted by a
    linear least-squares fit of (mean, ln std) of the observed tasks on the task descriptor.

    With fewer than 2 observed tasks (or a leaky problem) the scaler is returned unchanged.
    """
    obs = observed_tasks(problem)
    if problem.leaky or obs.all() or obs.sum() < 2:
        return problem.scaler
    u = np.asarray(tables.task)[:, 0]
    A = np.stack([np.ones_like(u), u], 1)
    coef_m = np.linalg.lstsq(A[obs], problem.scaler.mean[obs], rcond=None)[0]
    coef_s = np.linalg.lstsq(A[obs], np.log(problem.scaler.std[obs]), rcond=None)[0]
    mean = np.where(obs, problem.scaler.mean, A @ coef_m)
    std = np.where(obs, problem.scaler.std, np.exp(A @ coef_s))
    return Scaler(mean, std)


def with_scaler(problem: LCProblem, scaler: Scaler) -> LCProblem:
    """The same problem re-standardised with ``scaler`` (training and held-out points)."""
    f = problem.data.frame
    xg = np.asarray(problem.xgrid)
    R = problem.n_reps
    return problem._replace(scaler=scaler,
                            train=points_from_frame(f.loc[problem.split.train], xg, scaler, R),
                            test=points_from_frame(f.loc[problem.split.test], xg, scaler, R))
