"""``jaxscale lc`` command: ``lc evaluate`` (issue 4) plus pillar-1b leaves from ``cli_psl`` if present."""
from __future__ import annotations

import importlib.util

__all__ = ["register", "evaluate_handler"]


def evaluate_handler(args) -> dict:
    """Handler of ``jaxscale lc evaluate``: fit, predict held-out curves, metrics as a dict."""
    import jax

    from jaxscale.config import enable_x64
    from jaxscale.learning_curves.pipeline import evaluate_model

    enable_x64()
    return evaluate_model(
        jax.random.key(args.seed), args.dataset, args.split, args.model, restarts=args.restarts,
        steps=args.steps, learning_rate=args.lr, leaky=args.leaky, holdout=args.holdout, plot=args.plot,
        nuts_warmup=args.nuts_warmup, nuts_samples=args.nuts_samples,
    )


def register(subparsers) -> None:
    """Add the ``lc`` command (with ``evaluate`` and, if available, the pillar-1b leaves)."""
    from jaxscale.learning_curves.data import LC_DATASETS
    from jaxscale.learning_curves.pipeline import MODEL_CHOICES

    lc = subparsers.add_parser("lc", help="zero-shot learning-curve models (MaGP, descriptor MaGP, DHGP, BNN) and laws")
    sub = lc.add_subparsers(dest="lc_command", required=True)
    ev = sub.add_parser("evaluate", help="fit a curve model on a split and score its held-out curves")
    ev.add_argument("--dataset", default="nanogpt_large", choices=sorted(LC_DATASETS))
    ev.add_argument("--split", default="quad",
                    help="quad | tri | t1 | leave_embd | leave_layer (nanoGPT); zeroshot (bilingual); "
                         "extrapolate9 (multilingual)")
    ev.add_argument("--model", default="magp", choices=MODEL_CHOICES)
    ev.add_argument("--restarts", type=int, default=10)
    ev.add_argument("--steps", type=int, default=2000, help="Adam steps per restart (magp, magp_desc)")
    ev.add_argument("--nuts-warmup", type=int, default=300, help="NUTS warm-up steps per chain (bnn, bnn_orig)")
    ev.add_argument("--nuts-samples", type=int, default=300, help="NUTS draws per chain (bnn, bnn_orig)")
    ev.add_argument("--lr", type=float, default=1e-2)
    ev.add_argument("--seed", type=int, default=0, help="restart i uses fold_in(key(seed), i)")
    ev.add_argument("--leaky", action="store_true",
                    help="z-score with constants over every curve of a task (the original; leaks held-out data)")
    ev.add_argument("--holdout", type=int, default=None, help="index held out by leave_embd / leave_layer")
    ev.add_argument("--plot", default=None, help="write a PNG of predicted vs true held-out curves here")
    ev.set_defaults(func=evaluate_handler)
    if importlib.util.find_spec("jaxscale.learning_curves.cli_psl") is not None:
        from jaxscale.learning_curves.cli_psl import register_psl

        register_psl(sub)
