"""Named experiments of the paper (settings recovered from the original code and notebooks) and
the data preparation they share.

The task list imports nothing heavy (no JAX, no pandas: the bundled tables load in :func:`prepare`),
so the command line offers the task names without loading the fitting code.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from jaxscale._registry import register_serializable

from .constants import (
    BASE_METRICS,
    BASE_METRICS_NO_GSM,
    BBH_MEAN_CHANCE,
    INSTRUCT_METRICS,
    LLAMA2_CUTOFF,
)

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["TaskSpec", "TASKS", "task_names", "get_task", "prepare", "Prepared", "target_bounds"]

_PT = "base_llm_post_training_eval"
_EM = "base_llm_emergent_capability_eval"
_LB = "base_llm_leaderboard_v2_eval"
_AG = "instruct_llm_agent_eval"


@register_serializable
class TaskSpec(NamedTuple):
    """One experiment: data, target normalisation, split rule, link and loss (as in the paper's experiment)."""

    name: str
    description: str
    table: str
    column: str
    lo: float = 0.0
    hi: float = 1.0
    universe: str = "base"  # base | instruct
    families: str = "evaluated"  # evaluated | with_flops
    prereg: str = "force_test"  # force_test | include | exclude
    metrics: tuple = BASE_METRICS
    split: str = "cutoff"  # cutoff | rank_top
    split_value: float = LLAMA2_CUTOFF
    floor: bool = False
    loss: str = "huber"
    ref_family: str = "Llama-2"
    k: int = 3
    y_range: tuple | None = None  # support of the normalised target; None: see target_bounds


def target_bounds(spec: TaskSpec) -> tuple[float, float]:
    """Support ``(y_lo, y_hi)`` of the normalised target ``y = (raw - lo) / (hi - lo)``.

    Default: the raw score lies in ``[0, max(1, hi)]`` (a fraction, or a score out of ``hi``
    such as BLEU / 100), so ``y_lo = -lo / (hi - lo)`` (below-chance scores are possible) and
    ``y_hi = (max(1, hi) - lo) / (hi - lo)``; ``spec.y_range`` overrides it (already
    chance-normalised columns, user tables validated to ``[lo, hi]``)."""
    if spec.y_range is not None:
        return float(spec.y_range[0]), float(spec.y_range[1])
    lo, hi = float(spec.lo), float(spec.hi)
    return -lo / (hi - lo), (max(1.0, hi) - lo) / (hi - lo)


def _em(name, col, desc, lo=0.0, hi=1.0, arith=False):
    return TaskSpec(name, desc, _EM, col, lo, hi, families="with_flops",
                    metrics=BASE_METRICS_NO_GSM if arith else BASE_METRICS,
                    split_value=22.0 if arith else LLAMA2_CUTOFF)


def _pt(name, col, desc, y_range=None):
    return TaskSpec(name, desc, _PT, col, metrics=BASE_METRICS_NO_GSM, floor=True, y_range=y_range)


# BBH "norm" columns are already chance-normalised, (acc - c) / (1 - c): they can be negative
_BBH_NORM_RANGE = (-BBH_MEAN_CHANCE / (1.0 - BBH_MEAN_CHANCE), 1.0)


def _lb(name, col, desc, lo, cut):
    return TaskSpec(name, desc, _LB, col, lo, 1.0, families="with_flops", prereg="include",
                    metrics=BASE_METRICS_NO_GSM, split_value=cut)


def _ag(name, col, desc, hi):
    return TaskSpec(name, desc, _AG, col, 0.0, hi, universe="instruct", prereg="include",
                    metrics=INSTRUCT_METRICS, split="rank_top", split_value=0.1, floor=True,
                    loss="ols", ref_family="Llama-2-Chat")


_LIST = [
    _em("word_unscramble", "word_unscrambling_2_exact_match", "BIG-bench word unscramble EM (Fig. 4)"),
    _em("persian_qa", "parsinlu_qa_2_acc", "BIG-bench Persian QA acc, chance 0.25 (Fig. 4)", lo=0.25),
    _em("ipa_bleu", "ipa_transliterate_2_bleu", "BIG-bench IPA transliterate BLEU / 100 (C.14)", hi=100.0),
    _em("arith_3ds", "arithmetic_3ds_2_acc", "3-digit subtraction, cut 22, no GSM8K (Fig. 4)", arith=True),
    _em("arith_3da", "arithmetic_3da_2_acc", "3-digit addition, cut 22, no GSM8K (C.14)", arith=True),
    _em("arith_2dm", "arithmetic_2dm_2_acc", "2-digit multiplication, cut 22, no GSM8K (Fig. 4)", arith=True),
    _em("arith_2da", "arithmetic_2da_2_acc", "2-digit addition, cut 22, no GSM8K (C.14)", arith=True),
    _pt("gsm8k_naive", "gsm8k_5_exact_match,flexible-extract", "GSM8K 5-shot greedy (Fig. C.5)"),
    _pt("gsm8k_cot", "gsm8k_cot_8_exact_match,flexible-extract", "GSM8K 8-shot CoT greedy (Fig. C.5)"),
    _pt("gsm8k_cot_sc", "gsm8k_cot_self_consistency_8_exact_match,maj@5-flexible-extract",
        "GSM8K CoT + self-consistency maj@5 (Fig. C.5)"),
    _pt("bbh_naive", "bbh_fewshot_overall_3_exact_match,flexible-extract,norm", "BBH 3-shot, chance-normalised (C.6)",
        _BBH_NORM_RANGE),
    _pt("bbh_cot", "bbh_cot_fewshot_overall_3_exact_match,flexible-extract,norm", "BBH 3-shot CoT, chance-normalised (C.6)",
        _BBH_NORM_RANGE),
    _ag("agentbench", "ABench-OA", "AgentBench overall score / 10 (Fig. 5)", 10.0),
    _ag("agentboard", "ABoard-Avg_SR", "AgentBoard average success rate / 100 (Fig. 5)", 100.0),
    _lb("lbv2_gpqa", "leaderboard_gpqa", "Open LLM Leaderboard v2 GPQA, chance 0.25 (C.3)", 0.25, 168.0),
    _lb("lbv2_math", "leaderboard_math_hard", "Open LLM Leaderboard v2 MATH Lvl 5 (C.3)", 0.0, 252.0),
    _lb("lbv2_bbh", "leaderboard_bbh", "Open LLM Leaderboard v2 BBH, chance 0.2624 (C.3)", BBH_MEAN_CHANCE, 84.0),
]
TASKS = {t.name: t for t in _LIST}


def task_names() -> list[str]:
    """Names of every registered experiment."""
    return list(TASKS)


def get_task(name: str, **overrides) -> TaskSpec:
    """A registered task, optionally with fields replaced (e.g. ``k=2``)."""
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; choose one of {task_names()} "
                         "(see `jaxscale obs tasks`)")
    return TASKS[name]._replace(**overrides)


class Prepared(NamedTuple):
    """A task's table (one row per model, normalised target ``y``) and its train mask."""

    spec: TaskSpec
    df: pd.DataFrame
    train: np.ndarray


def _universe(spec: TaskSpec) -> pd.DataFrame:
    from . import data as _data

    if spec.universe == "instruct":
        return _data.instruct_models()
    from .constants import EVALUATED_FAMILIES, FAMILIES_WITH_FLOPS

    fams = FAMILIES_WITH_FLOPS if spec.families == "with_flops" else EVALUATED_FAMILIES
    df = _data.base_models(fams, include_prereg=spec.prereg != "exclude")
    return df


def prepare(spec: TaskSpec) -> Prepared:
    """Merge target, normalise, and split as the original code does for ``spec``."""
    from . import data as _data
    from .splits import cutoff_split, rank_top_split

    df = _data.merge_target(_universe(spec), spec.table, spec.column, spec.lo, spec.hi)
    if spec.split == "cutoff":
        force = df["prereg"].to_numpy() if spec.prereg == "force_test" else None
        train = cutoff_split(df, _data.FLOPS, spec.split_value, force)
    elif spec.split == "rank_top":
        train = rank_top_split(df["y"].to_numpy(float), spec.split_value)
    else:
        raise ValueError(f"task {spec.name}: unknown split {spec.split!r}")
    return Prepared(spec, df, train)
