"""CLI for pillar 1b: ``jaxscale lc law`` and ``jaxscale lc active``.

``register_psl(lc_subparsers)`` is called by the pillar's ``cli.py`` and adds the two leaves.
Handlers return JSON-serialisable dicts (the main CLI prints them); logs go to stderr.

This module is also the adapter between the issue-4 curve models (MaGP / DHGP) and the law code:
:func:`predict_heldout` fits a model on the training curves and returns per-restart means and a
joint predictive of the held-out curves in original loss units.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import NamedTuple

import numpy as np

__all__ = ["SPLITS", "HeldoutPrediction", "split_heldout", "predict_heldout", "round_predictor", "law_handler",
           "active_handler", "register_psl"]

_EMBD = (512, 768, 960, 1024, 1600)
_LAYERS = (8, 10, 12, 24, 32, 48)
# research note zeroshot_lc.md §4 (HMOGPLV/Load_data.py); labels are (n_embd, n_layer)
SPLITS = {
    "quad": tuple((e, l) for e in (768, 960, 1024, 1600) for l in (24, 32, 48)),
    "tri": ((768, 48), (960, 32), (960, 48), (1024, 24), (1024, 32), (1024, 48),
            (1600, 12), (1600, 24), (1600, 32), (1600, 48)),
    "t1": ((1600, 48),),
}


class HeldoutPrediction(NamedTuple):
    """A fitted model's predictions of held-out curves (original loss units, curve-major)."""

    held_labels: tuple
    restart_means: np.ndarray  # (restarts, K_held, P)
    mean: np.ndarray  # (M,) or (S, M) joint predictive mean(s), M = K_held * P
    cov: np.ndarray  # (M, M) or (S, M, M)
    fit_seconds: float
    warm: object = None


def split_heldout(split: str) -> tuple:
    """Held-out (n_embd, n_layer) curves of a named nanoGPT-large split."""
    key = split.lower()
    if key not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of {sorted(SPLITS)}")
    return SPLITS[key]


def _lc_problem(dataset: str, held_labels, name: str, leaky: bool = False):
    """The issue-4 problem holding out whole curves given as (n_embd, n_layer); ``leaky=True`` uses the
    original's z-score constants over all curves of a task (held-out curves leak in)."""
    from jaxscale.learning_curves.data import load_lc
    from jaxscale.learning_curves.problem import make_problem as lc_make_problem
    from jaxscale.learning_curves.splits import curve_mask_split

    data = load_lc(dataset)
    f = data.frame
    pairs = {}
    for e, l, d, r in zip(f["n_embd"], f["n_layer"], f["d"], f["r"]):
        pairs[(int(e), int(l))] = (int(d), int(r))
    missing = [h for h in held_labels if tuple(h) not in pairs]
    if missing:
        raise ValueError(f"curves {missing} are not in dataset {dataset!r}")
    split = curve_mask_split(data, name, {pairs[tuple(h)] for h in held_labels})
    return lc_make_problem(data, split, leaky=leaky)


def _frame_labels(frame):
    """(n_embd, n_layer) of each curve in frame order, and the points per curve."""
    lab = list(zip(frame["n_embd"].astype(int), frame["n_layer"].astype(int)))
    order = list(dict.fromkeys(lab))
    counts = {o: lab.count(o) for o in order}
    P = counts[order[0]]
    if any(c != P for c in counts.values()) or lab != [o for o in order for _ in range(P)]:
        raise ValueError("held-out rows are not whole curves in curve-major order; cannot reshape to (curves, points)")
    return tuple(order), P


def predict_heldout(key, dataset: str, held_labels, model: str = "magp", restarts: int = 10, steps: int = 2000,
                    warm=None, n_h: int = 32, leaky: bool = False) -> HeldoutPrediction:
    """Fit ``model`` on every curve except ``held_labels`` and predict the held-out curves jointly.

    Uses the issue-4 API (``models.fit_model`` / ``models.predict_joint``; leak-free z-scoring). The
    joint predictive is an equal-weight mixture over the finite restarts, each the q(h)-integrated
    moment-matched Gaussian of the latent curves (no observation noise) in original units.
    """
    import jax

    from jaxscale.learning_curves.models import fit_model, predict_joint

    problem = _lc_problem(dataset, held_labels, "psl", leaky=leaky)
    k_fit, k_pred = jax.random.split(key)
    fit = fit_model(k_fit, problem, model, restarts=restarts, steps=steps)
    pred = predict_joint(k_pred, fit, problem, n_h=n_h)
    labels, P = _frame_labels(problem.data.frame.loc[problem.split.test])
    mean = np.asarray(pred.mean, dtype=np.float64)
    cov = np.asarray(pred.cov, dtype=np.float64)
    return HeldoutPrediction(labels, mean.reshape(mean.shape[0], len(labels), P), mean, cov, fit.fit_seconds)


def _masked_neg_elbo(params, eps, xgrid, pts, mask):
    """MaGP negative ELBO over the points flagged by ``mask`` (padding rows become independent N(0, 1)
    dummies with y = 0: a constant offset, so gradients are those of the unpadded problem)."""
    import jax
    import jax.numpy as jnp

    from jaxscale.gp import JITTER_LADDER, gaussian_nll, magp_gram
    from jaxscale.learning_curves.magp import magp_constrained

    c = magp_constrained(params)
    std = jnp.exp(params.log_h_std)
    hs = params.h_mean[None] + std[None] * eps
    y = jnp.where(mask, pts.y, 0.0)
    mm = mask[:, None] & mask[None, :]
    eye = jnp.eye(y.shape[0], dtype=y.dtype)

    def one(h):
        K = magp_gram(xgrid, pts.p, pts.r, pts.d, pts.p, pts.r, pts.d, c["g_var"], c["g_scale"], c["f_var"],
                      c["f_scale"], h, c["h_scale"]) + jnp.diag(c["noise"][pts.d])
        return gaussian_nll(jnp.where(mm, K, eye), y, JITTER_LADDER[0])

    nll, _ = jax.vmap(one)(hs)
    kl = 0.5 * jnp.sum(std**2 + params.h_mean**2 - 1.0 - 2.0 * params.log_h_std)
    return jnp.mean(nll) + kl


def _al_fit_predict_impl(keys, params0, xgrid, pts, mask, query, steps, learning_rate, n_h):
    """Adam from ``params0`` (R restarts, vmapped) then the q(h)-integrated joint predictive of ``query``."""
    import jax
    import jax.numpy as jnp
    import optax

    from jaxscale.gp import JITTER_LADDER, gp_condition, magp_gram
    from jaxscale.learning_curves.magp import magp_constrained

    opt = optax.adam(learning_rate)
    D, Q = params0.h_mean.shape[-2:]
    y = jnp.where(mask, pts.y, 0.0)
    mm = mask[:, None] & mask[None, :]
    eye = jnp.eye(y.shape[0], dtype=y.dtype)

    def one(key, x0):
        k_run, k_h = jax.random.split(key)
        vg = jax.value_and_grad(_masked_neg_elbo)

        def step(carry, k):
            x, st = carry
            val, g = vg(x, jax.random.normal(k, (1, D, Q), y.dtype), xgrid, pts, mask)
            upd, st = opt.update(g, st, x)
            return (optax.apply_updates(x, upd), st), val

        (x, _), hist = jax.lax.scan(step, (x0, opt.init(x0)), jax.random.split(k_run, steps))
        c = magp_constrained(x)
        hs = x.h_mean[None] + jnp.exp(x.log_h_std)[None] * jax.random.normal(k_h, (n_h, D, Q), y.dtype)

        def gram(h, a, b):
            return magp_gram(xgrid, a.p, a.r, a.d, b.p, b.r, b.d, c["g_var"], c["g_scale"], c["f_var"],
                             c["f_scale"], h, c["h_scale"])

        def body(carry, h):
            s1, s2 = carry
            Kxx = jnp.where(mm, gram(h, pts, pts) + jnp.diag(c["noise"][pts.d]), eye)
            Kxs = jnp.where(mask[:, None], gram(h, pts, query), 0.0)
            m, C, _ = gp_condition(Kxx, Kxs, gram(h, query, query), y, JITTER_LADDER[0])
            return (s1 + m, s2 + C + jnp.outer(m, m)), None

        M = query.x.shape[0]
        (s1, s2), _ = jax.lax.scan(body, (jnp.zeros(M, y.dtype), jnp.zeros((M, M), y.dtype)), hs)
        mean = s1 / n_h
        return x, hist[-1], mean, s2 / n_h - jnp.outer(mean, mean)

    return jax.vmap(one)(keys, params0)


_al_jit = {}


def round_predictor(dataset: str, labels, model: str = "magp", restarts: int = 4, steps: int = 150,
                    cold_steps: int = 600, n_h: int = 8, learning_rate: float = 1e-2, bucket: int = 55):
    """``fit_fn(key, observed_mask, warm) -> active.RoundPrediction`` for :func:`.active.run_active` (MaGP).

    Cheap refits for active learning (changes vs the original's 10 cold restarts x 2000 Adam steps
    per query): ``restarts`` restarts, ``cold_steps`` Adam steps in the first round, then
    ``steps`` steps warm-started from the previous round's parameters; q(h) integrated with ``n_h``
    draws; training points padded with masked dummies to a multiple of ``bucket`` so that 25 rounds
    compile only ~6 programs. Predicts all K curves jointly (observed rows are masked by the loop).
    """
    import jax
    import jax.numpy as jnp

    from jaxscale.learning_curves.active import RoundPrediction
    from jaxscale.learning_curves.magp import init_magp
    from jaxscale.learning_curves.problem import Points, points_from_frame
    from jaxscale.learning_curves.psl import cholesky_with_jitter

    if model != "magp":
        raise ValueError(f"active learning supports model 'magp' only, got {model!r}")
    labels = [tuple(l) for l in labels]
    fn = _al_jit.get("fn")
    if fn is None:
        fn = jax.jit(_al_fit_predict_impl, static_argnames=("steps", "n_h"))
        _al_jit["fn"] = fn

    def fit_fn(key, observed, warm):
        held = [lab for lab, o in zip(labels, observed) if not o]
        problem = _lc_problem(dataset, held, "active")
        f = problem.data.frame
        all_labels, P = _frame_labels(f)
        if list(all_labels) != labels:
            raise ValueError("dataset curve order differs from the active-learning labels")
        query = points_from_frame(f, np.asarray(problem.xgrid), problem.scaler, problem.n_reps)
        tr = problem.train
        N = int(tr.x.shape[0])
        n_pad = -(-N // bucket) * bucket - N
        pad = lambda a, v: jnp.concatenate([a, jnp.full((n_pad,), v, a.dtype)])  # noqa: E731
        pts = Points(pad(tr.x, 0.0), pad(tr.p, 0), pad(tr.r, 0), pad(tr.d, 0), pad(tr.c, 0), pad(tr.y, 0.0))
        mask = jnp.arange(N + n_pad) < N
        k_init, k_run = jax.random.split(key)
        if warm is None:
            params0 = jax.vmap(lambda k: init_magp(k, problem.n_tasks))(jax.random.split(k_init, restarts))
            n_steps = cold_steps
        else:
            params0, n_steps = warm, steps
        x, loss, m, C = fn(jax.random.split(k_run, restarts), params0, problem.xgrid, pts, mask, query,
                           steps=n_steps, learning_rate=learning_rate, n_h=n_h)
        loss = np.asarray(loss)
        ok = np.isfinite(loss) & np.all(np.isfinite(np.asarray(m)), axis=1)
        if not ok.any():
            raise ValueError("active-learning refit: every restart went non-finite")
        sd = np.asarray(problem.scaler.std)[np.asarray(query.d)]
        mu = np.asarray(problem.scaler.mean)[np.asarray(query.d)]
        m = np.asarray(m)[ok] * sd + mu
        C = np.asarray(C)[ok] * np.outer(sd, sd)
        mean = m.mean(0)
        cov = (C + m[:, :, None] * m[:, None, :]).mean(0) - np.outer(mean, mean)
        miss = np.repeat(~np.asarray(observed), P)
        keep = miss[:, None] & miss[None, :]
        cov = np.where(keep, cov, np.eye(cov.shape[0]) * 1e-6)
        chol = cholesky_with_jitter(cov, what="active-learning joint predictive")
        if not ok.all():  # keep the restart count (fixed shapes): refill dead restarts with a live one
            good = int(np.flatnonzero(ok)[0])
            x = jax.tree.map(lambda a: a.at[~jnp.asarray(ok)].set(a[good]), x)
        return RoundPrediction(m.reshape(len(m), len(labels), P), mean, np.asarray(chol), warm=x)

    return fit_fn


def law_handler(args) -> dict:
    """``jaxscale lc law``: probabilistic scaling law from zero-shot predictions of a split."""
    import jax

    from jaxscale.config import enable_x64
    from jaxscale.learning_curves.compute import load_nanogpt_curves
    from jaxscale.learning_curves.psl import make_problem, probabilistic_law, restart_law, summarize

    enable_x64()
    if args.samples < 1:
        raise ValueError(f"--samples must be >= 1, got {args.samples}")
    held = split_heldout(args.split)
    labels, L, C = load_nanogpt_curves(args.dataset, tokens_per_step=args.tokens_per_step).flat()
    key = jax.random.key(args.seed)
    k_fit, k_draw = jax.random.split(key)
    pred = predict_heldout(k_fit, args.dataset, held, model=args.model, restarts=args.restarts, steps=args.steps,
                           leaky=args.leaky)
    out = {"dataset": args.dataset, "split": args.split, "model": args.model, "rule": args.rule, "leaky": args.leaky,
           "restarts": args.restarts, "steps": args.steps, "fit_seconds": pred.fit_seconds}
    t0 = time.perf_counter()
    for rule in ([args.rule] if args.rule != "both" else ["interp", "nearest"]):
        problem = make_problem(labels, L, C, pred.held_labels, rule=rule)
        res = probabilistic_law(k_draw, problem, pred.mean, pred.cov, n_samples=args.samples)
        s = summarize(res, problem.gt)
        r = summarize(restart_law(problem, pred.restart_means), problem.gt)
        block = {k: s[k] for k in ("b1", "b0", "abc", "abc_of_mean_law", "gt", "gt_in_band_b1", "gt_in_band_b0",
                                   "n_samples")}
        block["restart_means"] = {k: r[k] for k in ("b1", "b0", "abc", "abc_of_mean_law", "gt_in_band_b1")}
        if rule == args.rule or (args.rule == "both" and rule == "interp"):
            out.update(block)
        else:
            out[rule] = block
    out["psl_seconds"] = time.perf_counter() - t0
    return out


def active_handler(args) -> dict:
    """``jaxscale lc active``: active learning of the law from the five 8-layer curves."""
    from jaxscale.config import enable_x64
    from jaxscale.learning_curves.demo_psl import active_experiment

    enable_x64()
    strategies = ["uncertainty", "random", "smallest", "largest", "ours"] if args.strategy == "all" else \
        [s.strip() for s in args.strategy.split(",")]
    return active_experiment(args.seed, strategies, seeds=args.seeds, n_queries=args.queries,
                             n_samples=args.samples, restarts=args.restarts, steps=args.steps,
                             cold_steps=args.cold_steps, n_h=args.n_h, dataset=args.dataset, model=args.model,
                             out_dir=Path(args.out_dir) if args.out_dir else None)


def register_psl(lc_subparsers) -> None:
    """Add ``law`` and ``active`` to the ``lc`` command's subparsers."""
    p = lc_subparsers.add_parser("law", help="probabilistic scaling law from zero-shot curve predictions",
                                 description=law_handler.__doc__)
    p.add_argument("--dataset", default="nanogpt_large", choices=["nanogpt_large"])
    p.add_argument("--split", default="tri", choices=sorted(SPLITS))
    p.add_argument("--samples", type=int, default=1000, help="joint posterior draws R")
    p.add_argument("--rule", default="interp", choices=["interp", "nearest", "both"],
                   help="frontier rule: log-log interpolation (default) or the original nearest-C")
    p.add_argument("--model", default="magp", choices=["magp", "dhgp"])
    p.add_argument("--restarts", type=int, default=10)
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tokens-per-step", type=float, default=491_520)
    p.add_argument("--leaky", action="store_true",
                   help="original preprocessing: z-score constants include the held-out curves (parity only)")
    p.set_defaults(func=law_handler)

    a = lc_subparsers.add_parser("active", help="active learning of the scaling law (which curve to train next)",
                                 description=active_handler.__doc__)
    a.add_argument("--strategy", default="all",
                   help="uncertainty|random|smallest|largest|ours, comma-separated, or all")
    a.add_argument("--dataset", default="nanogpt_large", choices=["nanogpt_large"])
    a.add_argument("--model", default="magp", choices=["magp"])
    a.add_argument("--queries", type=int, default=25)
    a.add_argument("--seeds", type=int, default=3)
    a.add_argument("--samples", type=int, default=500)
    a.add_argument("--restarts", type=int, default=4, help="restarts per refit (original: 10)")
    a.add_argument("--steps", type=int, default=150, help="Adam steps per refit, warm-started (original: 2000 cold)")
    a.add_argument("--cold-steps", type=int, default=600, help="Adam steps of the first (cold) fit")
    a.add_argument("--n-h", type=int, default=8, help="q(h) draws in the joint predictive")
    a.add_argument("--seed", type=int, default=0)
    a.add_argument("--out-dir", default=None, help="write active.json + active_abc.png here")
    a.set_defaults(func=active_handler)
