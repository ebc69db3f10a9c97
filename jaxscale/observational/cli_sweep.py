"""``jaxscale obs sweep`` (cut-off sweep + AUE, App. C.4) and ``jaxscale obs subsets`` (Fig. 7a)."""
from __future__ import annotations

__all__ = ["register_sweep", "sweep_handler", "subsets_handler"]


def sweep_handler(args) -> dict:
    """Handler of ``jaxscale obs sweep``: test MSE per test ratio and AUE, PC law vs ln-FLOPs."""
    import numpy as np

    from jaxscale.config import enable_x64

    from .splits import SWEEP_RATIOS
    from .sweep import cutoff_sweep

    enable_x64()
    ratios = SWEEP_RATIOS if args.ratios is None else np.array([float(r) for r in args.ratios.split(",")])
    out = cutoff_sweep(args.task, ratios, rank_by=args.rank_by).to_dict()
    if args.plot:
        from jaxscale import plotting

        fig, ax = plotting.figure(1, 1, size=(4.5, 3.2))
        r = [row["test_ratio"] for row in out["rows"]]
        ax.plot(r, [row["mse_pc"] for row in out["rows"]], "o-", label=f"PC law (AUE {out['aue_pc']:.2e})")
        ax.plot(r, [row["mse_flops"] for row in out["rows"]], "s--",
                label=f"ln FLOPs (AUE {out['aue_flops']:.2e})")
        ax.set_xlabel(f"test ratio (top models by {args.rank_by})")
        ax.set_ylabel("test MSE")
        ax.set_yscale("log")
        ax.invert_xaxis()
        ax.legend(fontsize=8)
        ax.set_title(args.task, fontsize=10)
        out["plot"] = str(plotting.save(fig, args.plot))
    return out


def subsets_handler(args) -> dict:
    """Handler of ``jaxscale obs subsets``: V-optimal vs random training subsets (Fig. 7a)."""
    import jax

    from jaxscale.config import enable_x64

    from .sweep import subset_curve

    enable_x64()
    budgets = tuple(int(b) for b in args.budget.split(","))
    if any(b < 3 for b in budgets):
        raise ValueError(f"--budget must be >= 3 models, got {list(budgets)}")
    key = None if args.random == 0 else jax.random.key(args.seed)
    return subset_curve(key, budgets, n_random=max(args.random, 1))


def register_sweep(sub) -> None:
    """Add ``sweep`` and ``subsets`` to the ``obs`` sub-parsers."""
    from .tasks import task_names

    s = sub.add_parser("sweep", help="cut-off sweep: test MSE vs test ratio and its AUE (App. C.4)")
    s.add_argument("--task", required=True, choices=task_names())
    s.add_argument("--rank-by", choices=["flops", "y"], default="flops",
                   help="hold out the top models by FLOPs (default) or by the target")
    s.add_argument("--ratios", default=None, help="comma-separated test ratios (default 0.60..0.05)")
    s.add_argument("--plot", default=None, help="write the MSE-vs-ratio PNG here")
    s.set_defaults(func=sweep_handler)
    c = sub.add_parser("subsets", help="Fig. 7a: GSM8K test MSE of fits trained on V-optimal subsets")
    c.add_argument("--budget", default="4,8,12,16,20,24", help="comma-separated model budgets")
    c.add_argument("--random", type=int, default=5, help="random family unions per budget (0: none)")
    c.add_argument("--seed", type=int, default=0)
    c.set_defaults(func=subsets_handler)
