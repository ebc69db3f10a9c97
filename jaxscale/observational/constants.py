"""Model universe of Ruan et al. (2024, arXiv 2405.10938 v3): families, pre-registered models, metrics.

The lists are facts about the bundled data set (ObsScaling commit 4d6e1e4), not code: the 21 core
families (77 models) of the paper, the 7 families and 20 models released after May 2024 that the
paper pre-registered, the families without FLOPs (training tokens unknown), and the benchmarks.
"""
from __future__ import annotations

__all__ = [
    "FLOPS",
    "SIZE",
    "FAMILY",
    "CORE_FAMILIES",
    "PREREG_FAMILIES",
    "EVALUATED_FAMILIES",
    "NO_FLOPS_FAMILIES",
    "FAMILIES_WITH_FLOPS",
    "PREREGISTERED_MODELS",
    "BASE_METRICS",
    "BASE_METRICS_NO_GSM",
    "INSTRUCT_METRICS",
    "LLAMA2_CUTOFF",
    "BBH_MEAN_CHANCE",
]

#: Columns of the bundled tables: training compute (units of 1e21 FLOPs), parameters (billions), family.
FLOPS = "FLOPs (1E21)"
SIZE = "Model Size (B)"
FAMILY = "Model Family"

CORE_FAMILIES = (
    "Llama-2", "Llama", "Llama-3", "Qwen1.5", "Qwen", "Mistral", "Mixtral", "Yi", "Gemma",
    "Falcon", "Phi", "Pythia", "BLOOM", "GPT-Neo/J", "OPT", "MPT", "XGLM", "CodeLlama",
    "StarCoder", "StarCoder2", "DeepSeek-Coder",
)
PREREG_FAMILIES = (
    "Llama-3.1", "Qwen2", "DeepSeek-V2", "DeepSeek-Coder-V2", "Gemma-2", "Yi-1.5", "Jamba",
)
EVALUATED_FAMILIES = CORE_FAMILIES + PREREG_FAMILIES
NO_FLOPS_FAMILIES = ("Mistral", "Mixtral", "Qwen2")
FAMILIES_WITH_FLOPS = tuple(f for f in EVALUATED_FAMILIES if f not in NO_FLOPS_FAMILIES)

PREREGISTERED_MODELS = (
    "meta-llama/Meta-Llama-3.1-405B-FP8", "meta-llama/Meta-Llama-3.1-70B",
    "meta-llama/Meta-Llama-3.1-8B", "Qwen/Qwen1.5-110B", "Qwen/Qwen2-72B",
    "Qwen/Qwen2-57B-A14B", "Qwen/Qwen2-7B", "Qwen/Qwen2-1.5B", "Qwen/Qwen2-0.5B",
    "deepseek-ai/DeepSeek-V2", "deepseek-ai/DeepSeek-Coder-V2-Base", "google/gemma-2-27b",
    "google/gemma-2-9b", "google/gemma-2-2b", "mistralai/Mixtral-8x22B-v0.1",
    "mistralai/Mistral-Nemo-Base-2407", "01-ai/Yi-1.5-34B", "01-ai/Yi-1.5-9B", "01-ai/Yi-1.5-6B",
    "ai21labs/Jamba-v0.1",
)

BASE_METRICS = ("MMLU", "ARC-C", "HellaSwag", "Winograd", "TruthfulQA", "GSM8K", "XWinograd",
                "HumanEval")
BASE_METRICS_NO_GSM = tuple(m for m in BASE_METRICS if m != "GSM8K")
INSTRUCT_METRICS = ("MMLU", "ARC-C", "HellaSwag", "Winogrande", "TruthfulQA", "GSM8K", "HumanEval")

LLAMA2_CUTOFF = 84.0  # FLOPs (1E21) of Llama-2-7B
BBH_MEAN_CHANCE = 0.26243  # mean random-guess rate over the 27 BBH tasks (``utils/constants.py`` of the original code)
