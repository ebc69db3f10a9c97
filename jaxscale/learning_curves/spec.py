"""How learning-curve models fit and the names the command line offers: :class:`Spec`,
:data:`MODELS`, :data:`DEFAULT_COLUMNS`, :class:`ExtrapolateSpec`, the bundled datasets
(:data:`LC_DATASETS`) and the paper's splits (:data:`SPLITS`, :data:`MODEL_CHOICES`).

Imports nothing heavy (no JAX, no pandas), so the command line reads its defaults and choices from
here without loading the fitting code.
"""
from __future__ import annotations

from typing import NamedTuple

from jaxscale._registry import register_serializable

__all__ = ["MODELS", "DESC_MODELS", "ACTIVE_MODELS", "Spec", "DEFAULT_COLUMNS", "ExtrapolateSpec", "MODEL_CHOICES",
           "SPLITS", "LC_DATASETS", "MULTILINGUAL_LANGS"]

#: Curve models of :func:`jaxscale.learning_curves.fit` (``Spec.model``).
MODELS = ("magp", "magp_desc", "magp_law", "dhgp")

#: The models that read the descriptor columns (the descriptor MaGP and the law-informed model on it).
DESC_MODELS = ("magp_desc", "magp_law")

#: The curve models active learning refits every round (:func:`jaxscale.learning_curves.active.round_predictor`).
ACTIVE_MODELS = ("magp", *DESC_MODELS)


@register_serializable
class Spec(NamedTuple):
    """How to fit (every field has a default; the CLI reads its defaults from ``Spec()``).

    Attributes:
      model: ``"magp"`` | ``"magp_desc"`` | ``"magp_law"`` (law-informed, positive losses) | ``"dhgp"``.
      restarts: random restarts, all in one compiled program (DHGP is deterministic: repeats).
      steps: Adam steps per restart (magp, magp_desc, magp_law).
      learning_rate: Adam's peak learning rate: held for the first 30% of the steps, then
        cosine-decayed to 2% of it (``jaxscale.learning_curves.magp.lr_schedule``). 600 steps from
        5e-2 reach the optimum the original code's 2000 steps at a constant 1e-2 reach.
      lr_decay: ``False`` keeps ``learning_rate`` constant (the original code's optimiser).
      q: dimension of the task latents ``h_d`` (magp, magp_desc; 0 allowed for magp_desc).
      n_mc: latent draws per Adam step in the ELBO estimate.
      n_h: latent draws integrating ``q(h)`` in predictions (fixed at fit time).
      n_samples: joint draws returned by ``predict`` when it is given a key.
      log_descriptors: take ``ln`` of the descriptors (they must then be > 0) before standardising.
      lbfgs_steps: L-BFGS iterations of the DHGP fit.
      ckpt_dir: folder for the checkpoints of :func:`jaxscale.learning_curves.fit` (Adam models:
        one after every chunk of steps; the same fit again resumes from the last); ``None``: none.
      ckpt_force_new: discard the checkpoints in ``ckpt_dir`` written by another fit instead of
        refusing them.
    """

    model: str = "magp"
    restarts: int = 10
    steps: int = 600
    learning_rate: float = 5e-2
    q: int = 2
    n_mc: int = 1
    n_h: int = 32
    n_samples: int = 256
    log_descriptors: bool = True
    lbfgs_steps: int = 1000
    lr_decay: bool = True
    ckpt_dir: str | None = None
    ckpt_force_new: bool = False


#: Default column name per role.
DEFAULT_COLUMNS = {"task": "task", "instance": "instance", "x": "x", "target": "y"}


#: Training points above which a GP fit on a CPU warns of its cost, and above which it is refused
#: there. Each Adam step factorises an ``n x n`` kernel matrix: on 2 CPU cores one restart-step took
#: 12 ms at 330 points and 160-185 ms at 990 (magp, magp_law), so the default 10 x 600 steps take
#: about 70 s and 18 min; 20,000 points would need a 3.2 GB kernel matrix per copy.
GP_WARN_POINTS, GP_MAX_POINTS = 1_000, 20_000
#: Seconds per restart-step at 330 points on 2 CPU cores, and the measured growth exponent (the
#: two timings above), for the warning's estimate.
GP_STEP_SECONDS, GP_STEP_POINTS, GP_STEP_EXPONENT = 0.012, 330, 2.5


#: Most runs ``ExtrapolateSpec.sampler == "auto"`` samples by NUTS: those that fail the Pareto
#: k-hat check in both importance passes (the second: the failing runs alone, with more
#: proposals); when more fail, their importance draws are kept and warned.
AUTO_IMPORTANCE_RUNS = 100
#: Samplers of :class:`ExtrapolateSpec` (``auto``: importance sampling, again with more proposals
#: for the runs whose k-hat > 0.7, then NUTS for at most :data:`AUTO_IMPORTANCE_RUNS` runs that
#: still fail).
SAMPLERS = ("auto", "nuts", "importance")


class ExtrapolateSpec(NamedTuple):
    """How to sample (every field has a default; the CLI reads its defaults from here).

    Attributes:
      warmup: NUTS warm-up steps per chain.
      samples: NUTS draws per chain.
      chains: chains, vectorised in one program.
      target_accept: NUTS target acceptance probability.
      nu: degrees of freedom of the Student-t noise on ``ln L``.
      level: central interval level of the prediction.
      calibrate: correct the interval by a split-conformal growth with the horizon (or a margin)
        learnt on the finished runs of the table (their late rows held back); see
        :func:`jaxscale.learning_curves.extrapolate.extrapolate`.
      sampler: ``"nuts"`` (one NUTS over the joint model of all runs), ``"importance"`` (each run
        on its own by Laplace importance sampling, ``chains x samples`` draws per run; the noise
        prior set by empirical Bayes; seconds for thousands of runs) or ``"auto"`` (importance
        sampling, kept for every run whose Pareto k-hat is at most 0.7, at first or with 4x the
        proposals; NUTS for the runs that still fail, each on its own, when at most
        :data:`AUTO_IMPORTANCE_RUNS` do).
      follow_finished: when the table has finished runs and, on the backtest that calibrates the
        interval (their late rows held back), following the nearest other finished run predicted
        those rows better than the law, each run in progress follows its nearest finished run
        (shifted to meet it at its last early step) with an interval at least the law's calibrated
        one and that backtest's errors; ``False`` keeps the law.
    """

    warmup: int = 500
    samples: int = 500
    chains: int = 4
    target_accept: float = 0.9
    nu: float = 4.0
    level: float = 0.9
    calibrate: bool = True
    sampler: str = "auto"
    follow_finished: bool = True


#: Models of the bundled-dataset experiments (:func:`jaxscale.learning_curves.evaluate_model`).
MODEL_CHOICES = ("magp", "dhgp", "magp_desc", "magp_law", "bnn", "bnn_orig")

#: Held-out curves of the paper's nanoGPT-large splits as (n_embd, n_layer) labels (the original
#: code's ``Missing_Quad_d4_r3`` / ``Missing_Tri_d4`` / ``Missing_Tri_d1``).
SPLITS = {
    "quad": tuple((e, l) for e in (768, 960, 1024, 1600) for l in (24, 32, 48)),
    "tri": ((768, 48), (960, 32), (960, 48), (1024, 24), (1024, 32), (1024, 48),
            (1600, 12), (1600, 24), (1600, 32), (1600, 48)),
    "t1": ((1600, 48),),
}

#: Languages of the bundled multilingual datasets.
MULTILINGUAL_LANGS = ("en", "id", "jv", "ms", "ta", "tl")

#: name -> (relative csv path, pdata suffix, kind)
LC_DATASETS = {
    "nanogpt_large": ("nanogpt_large/layer_over_embd.csv", "_pdata.csv", "nanogpt"),
    "nanogpt_large_exchanged": ("nanogpt_large/embd_over_layer.csv", "_pdata.csv", "nanogpt_exch"),
    "nanogpt_large_regen": ("nanogpt_large_regen/layer_over_embd.csv", "_pdata.csv", "nanogpt"),
    "nanogpt_small": ("nanogpt_small/layer_over_embd.csv", "_pdata.csv", "nanogpt_small"),
}
for _dir in ("src_over_tgt", "tgt_over_src"):
    for _m in ("mBart", "Transformer"):
        for _met in ("bleu", "chrf"):
            LC_DATASETS[f"bilingual_{_dir}_{_m}_{_met}"] = (f"bilingual/{_dir}_{_m}_{_met}.csv", "_pdata.csv", "bilingual")
for _side, _pre in (("same_source", "source"), ("same_target", "target")):
    for _lang in MULTILINGUAL_LANGS:
        LC_DATASETS[f"multilingual_{_side}_{_lang}"] = (
            f"multilingual/{_side}/{_pre}_{_lang}_task_2_m2m100_metric_bleu.csv", "_pdata_log.csv", "multilingual")
del _dir, _m, _met, _side, _pre, _lang
