"""Every pillar's held-out evaluation on the bundled data, in one run, against naive baselines.

Each case runs one ``jaxscale`` command in this process (the same handler the command line runs,
so the numbers are those of ``jaxscale ... --json``) and keeps, from its JSON: the model's
held-out MAE and RMSE, the same scores of every naive baseline the command computes on the same
rows (``baselines``, ``model_loses_to``), the 90 % interval coverage with the verdict of
:func:`jaxscale.metrics.coverage_check` (``interval``), the rows scored, the wall seconds and the
command line that regenerates it.

Cases (the headline held-out case of each pillar):

* chinchilla: the Epoch data, the 10 highest-compute runs held out, vs a power law in compute.
* observational: the paper's held-out splits of gsm8k_cot and word_unscramble (Bayesian law,
  ``obs calibrate``), pooled, vs the ln-FLOPs sigmoid on the held-out models that have FLOPs.
* context: many-shot ICL, prompts of >= 10k tokens held out, vs carrying each (model, task)'s
  score at its longest training prompt forward.
* learning curves: nanoGPT-large ``leave_embd`` (index 4) and ``leave_layer`` (index 5) with
  ``magp_desc`` vs the ``nearest_curve`` / ``size_trend`` baselines; and runs in progress
  (``lc extrapolate``): every nanoGPT-large curve cut at 25 % of its last step, the rest predicted,
  vs a scipy least-squares power law per curve.
* NCPL: StepLaw runs of the two smallest shapes train NCPL, the five larger shapes are scored, vs
  a Chinchilla law fitted on the same training rows and the mean of the training losses.

Two cases read a table that the bundled data gives only through the library (the cut nanoGPT
curves, the StepLaw runs); they are written to CSV files (a temporary folder, or ``--tables DIR``
to keep them) and the command reads them like any table of yours. ``--write-tables DIR`` writes
only those tables, so that the printed commands can be run as they are.

``--quick`` shrinks every case (fewer restarts, steps, draws, members) for a run of a few minutes
on 2 CPU cores; without it every command runs with the library's defaults (on 2 cores the learning
curve and NCPL cases then take several minutes each). ``--only PILLAR,...`` runs some pillars
(chinchilla, observational, context, learning_curves, ncpl). The compact table goes to stderr,
the result (one strict JSON object) to stdout and to ``--out``; the file keeps one entry per mode
(``quick`` / ``full``), and a run replaces only the cases it ran (each case carries its own
machine and time stamp; the run records the commit and the uncommitted library files).
``--markdown`` prints the README table of a mode from the file; ``--list`` prints the commands.

    OPENBLAS_NUM_THREADS=1 python benchmarks/bench_backtest.py --quick
    python benchmarks/bench_backtest.py --only chinchilla,observational,context
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import sys
import tempfile
import time
import traceback
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PILLARS = ("chinchilla", "observational", "context", "learning_curves", "ncpl")
OUT = Path(__file__).parent / "results" / "bench_backtest.json"
TABLES = "TABLES"  # placeholder of the tables folder in the printed commands

#: The two observational tasks pooled (the paper's own held-out splits).
OBS_TASKS = "gsm8k_cot,word_unscramble"
#: The StepLaw columns the NCPL case trains on; the two smallest shapes are the training rows.
STEPLAW_COLUMNS = ["N_million", "D_billion", "lr", "batch_seqs", "final_loss"]
#: Fraction of each nanoGPT-large curve's last step that is the early part in ``lc extrapolate``.
LC_CUT = 0.25


class Case(NamedTuple):
    """One held-out evaluation: the command's words after ``jaxscale`` (full and quick settings),
    the function reading its JSON, and the table it needs (``None``: bundled data)."""

    pillar: str
    name: str
    full: list
    quick: list
    extract: Callable[[dict], dict]
    units: str
    table: str | None = None


# ----------------------------------------------------------------------------- reading the JSON
def _num(d: dict | None, key: str):
    return None if d is None else d.get(key)


def _baselines(block: dict, *, skip=("model", "model_loses_to")) -> dict:
    """``{name: {n, mae, rmse}}`` of the baselines in a ``baselines`` block of the command's JSON."""
    out = {}
    for name, s in block.items():
        if name in skip or name.endswith("_reason") or not isinstance(s, dict) or "mae" not in s:
            continue
        out[name] = {"n": s.get("n"), "mae": s.get("mae"), "rmse": s.get("rmse")}
    return out


def _chinchilla(out: dict) -> dict:
    h = out["holdout"]
    return dict(model={"n": h["n"], "mae": h["mae"], "rmse": h["rmse"]}, coverage_90=h["coverage"],
                coverage_n=h["n"], baselines=_baselines(out["baselines"]),
                model_loses_to=out["baselines"]["model_loses_to"],
                extra={"max_compute_ratio": h.get("max_compute_ratio"),
                       "max_extrapolation_decades": h.get("max_extrapolation_decades"),
                       "converged": out.get("converged"), "interval": out.get("interval"),
                       "bootstrap_n": out.get("bootstrap_n")})


def _pool(scores: list[dict]) -> dict:
    """Row-weighted pooling of per-task ``{n, mae, rmse}``."""
    n = sum(s["n"] for s in scores)
    mae = sum(s["n"] * s["mae"] for s in scores) / n
    rmse = (sum(s["n"] * s["rmse"] ** 2 for s in scores) / n) ** 0.5
    return {"n": n, "mae": mae, "rmse": rmse}


def _observational(out: dict) -> dict:
    rows = [r for r in out["rows"] if r.get("baselines")]
    model = _pool([r["baselines"]["model"] for r in rows])
    names = sorted({k for r in rows for k in _baselines(r["baselines"])})
    base = {k: _pool([_baselines(r["baselines"])[k] for r in rows]) for k in names}
    per_task = {r["task"]: {"n_test": r["n_test"], "coverage_90": r["coverage_90"],
                            "model": {k: r["baselines"]["model"][k] for k in ("n", "mae", "rmse")},
                            "baselines": _baselines(r["baselines"]), "max_r_hat": r.get("max_r_hat"),
                            "min_ess": r.get("min_ess"), "model_loses_to": r["baselines"]["model_loses_to"]}
                for r in out["rows"]}
    pooled = out["pooled"]
    return dict(model=model, coverage_90=pooled["coverage_90"], coverage_n=pooled["n_test"], baselines=base,
                model_loses_to=[k for k, v in base.items() if v["mae"] < model["mae"]],
                rows=("MAE / RMSE: the held-out models with FLOPs (the baseline needs them), pooled over the tasks; "
                      "coverage: every held-out model"),
                extra={"tasks": per_task, "max_r_hat": pooled.get("max_r_hat"),
                       "divergences": pooled.get("divergences"), "settings": out.get("settings")})


def _context(out: dict) -> dict:
    b = out["baselines"]
    m = b["model"]
    return dict(model={"n": m["n"], "mae": m["mae"], "rmse": m["rmse"]}, coverage_90=m["coverage"], coverage_n=m["n"],
                baselines=_baselines(b), model_loses_to=b["model_loses_to"],
                extra={k: out.get(k) for k in ("coverage_90_point", "drift", "converged", "fit_seconds")
                       if k in out})


def _lc_evaluate(out: dict) -> dict:
    b = out["baselines"]
    m = b["model"]
    base = _baselines(b)
    for name in base:
        base[name]["mae_last"] = b[name]["last"]["mae"]
    return dict(model={"n": m["n"], "mae": m["mae"], "rmse": m["rmse"], "mae_last": m["last"]["mae"]},
                coverage_90=m["coverage"], coverage_n=m["n"], baselines=base, model_loses_to=b["model_loses_to"],
                rows="every point of the held-out curves (mae_last: the final point of each)",
                extra={k: out.get(k) for k in ("n_heldout_curves", "converged", "extrapolation", "split")})


def _lc_extrapolate(out: dict) -> dict:
    b = out["baselines"]
    m = b["model"]
    base = _baselines(b)
    for name in base:
        base[name]["rmsle"] = b[name].get("rmsle")
    return dict(model={"n": m["n"], "mae": m["mae"], "rmse": m["rmse"], "rmsle": m.get("rmsle")},
                coverage_90=m["coverage"], coverage_n=m["n"], baselines=base, model_loses_to=b["model_loses_to"],
                rows="every point after the cut (the tail) of the curves in progress",
                extra={k: out.get(k) for k in ("n_curves", "n_train", "n_tail", "converged", "diagnostics")})


def _ncpl(out: dict) -> dict:
    m = out["holdout"]["ncpl"]
    n = out["holdout"]["n"] - out["holdout"]["n_missing_truth"]
    return dict(model={"n": n, "mae": m["mae"], "rmse": m["rmse"]}, coverage_90=m.get("coverage_90"), coverage_n=n,
                baselines=_baselines(out["baselines"]), model_loses_to=out["baselines"]["model_loses_to"],
                extra={"n_train": out.get("n_train"), "converged": out.get("converged"),
                       "extrapolation": out["holdout"].get("extrapolation"), "fit_seconds": out.get("fit_seconds"),
                       "spearman": m.get("spearman")})


# ----------------------------------------------------------------------------- the cases
def cases() -> list[Case]:
    """Every case, full and quick settings (words after ``jaxscale``; ``TABLES`` = the tables folder)."""
    lc = ["lc", "evaluate", "--dataset", "nanogpt_large", "--model", "magp_desc"]
    lc_quick = ["--restarts", "2", "--steps", "1500"]
    ext = ["lc", "extrapolate", "--csv", f"{TABLES}/nanogpt_large_cut25.csv", "--curve-col", "curve",
           "--x-col", "ln_step", "--x-is-log", "--y-col", "loss", "--train-col", "early"]
    ncpl = ["ncpl", "train", "--csv", f"{TABLES}/steplaw_runs.csv", "--target-col", "final_loss",
            "--n-col", "N_million", "--d-col", "D_billion", "--holdout", "N_million > 120"]
    return [
        Case("chinchilla", "epoch_chinchilla top-10-compute holdout",
             ["chinchilla", "fit", "--dataset", "epoch_chinchilla", "--holdout-top", "10", "--bootstrap", "1000"],
             ["chinchilla", "fit", "--dataset", "epoch_chinchilla", "--holdout-top", "10", "--bootstrap", "200"],
             _chinchilla, "final loss (nats)"),
        Case("observational", f"paper splits pooled ({OBS_TASKS.replace(',', ' + ')})",
             ["obs", "calibrate", "--tasks", OBS_TASKS],
             ["obs", "calibrate", "--tasks", OBS_TASKS, "--warmup", "100", "--samples", "100"],
             _observational, "normalised target (raw - lo) / (hi - lo)"),
        Case("context", "longcontext_icl prompts >= 10k held out",
             ["context", "fit", "--dataset", "longcontext_icl"],
             ["context", "fit", "--dataset", "longcontext_icl", "--restarts", "1"],
             _context, "score in [0, 1]"),
        Case("learning_curves", "nanogpt_large leave_embd 4 (magp_desc)",
             lc + ["--split", "leave_embd", "--leave-index", "4"],
             lc + ["--split", "leave_embd", "--leave-index", "4"] + lc_quick, _lc_evaluate, "validation loss (nats)"),
        Case("learning_curves", "nanogpt_large leave_layer 5 (magp_desc)",
             lc + ["--split", "leave_layer", "--leave-index", "5"],
             lc + ["--split", "leave_layer", "--leave-index", "5"] + lc_quick, _lc_evaluate, "validation loss (nats)"),
        Case("learning_curves", f"nanogpt_large cut at {LC_CUT:.0%} (lc extrapolate)", ext,
             ext + ["--warmup", "200", "--samples", "200"], _lc_extrapolate, "validation loss (nats)",
             table="nanogpt_large_cut25.csv"),
        Case("ncpl", "steplaw two smallest shapes -> five larger", ncpl,
             ncpl + ["--members", "2", "--steps", "300"], _ncpl, "final loss (nats)", table="steplaw_runs.csv"),
    ]


def write_tables(folder: Path) -> dict:
    """Write the tables the CSV cases read into ``folder``; returns ``{file name: rows}``."""
    import numpy as np

    from jaxscale.learning_curves import load_lc
    from jaxscale.learning_curves.extrapolate import cut_curves
    from jaxscale.ncpl import pipeline as pl

    folder.mkdir(parents=True, exist_ok=True)
    f = load_lc("nanogpt_large").frame  # x holds ln(step)
    x = np.exp(f["x"].to_numpy(float))
    code = f["curve"].to_numpy()
    curves = f.assign(ln_step=f["x"].to_numpy(float), loss=f["value"].to_numpy(float),
                      early=cut_curves(code, x, LC_CUT))[["curve", "ln_step", "loss", "early"]]
    curves.to_csv(folder / "nanogpt_large_cut25.csv", index=False)
    runs = pl.runs_frame()
    steplaw = runs.loc[runs.source == "steplaw", STEPLAW_COLUMNS]
    steplaw.to_csv(folder / "steplaw_runs.csv", index=False)
    return {"nanogpt_large_cut25.csv": len(curves), "steplaw_runs.csv": len(steplaw)}


# ----------------------------------------------------------------------------- running
def machine() -> dict:
    import jax

    cpu = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"platform": platform.platform(), "cpu": cpu, "cpu_count": os.cpu_count(),
            "python": platform.python_version(), "jax": jax.__version__, "device": str(jax.devices()[0]),
            "loadavg": list(os.getloadavg())}


def git_state() -> dict | None:
    """The checkout the run measured: commit and the paths with uncommitted changes."""
    import subprocess

    root = Path(__file__).resolve().parents[1]
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                                check=True).stdout.strip()
        status = subprocess.run(["git", "status", "--porcelain", "--", "jaxscale"], cwd=root, capture_output=True,
                                text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    return {"commit": commit, "uncommitted_in_jaxscale": [line[3:] for line in status.splitlines()]}


def run_case(case: Case, words: list, tables: Path) -> dict:
    """Run one command in this process and read its JSON."""
    from jaxscale._json import to_jsonable
    from jaxscale.cli import build_parser

    shown = words + ["--json"]
    argv = [w.replace(TABLES, str(tables)) for w in shown]
    row = {"pillar": case.pillar, "case": case.name, "units": case.units, "command": "jaxscale " + shlex.join(shown),
           "tables": f"{TABLES}: the folder written by `python benchmarks/bench_backtest.py --write-tables "
                     f"{TABLES}`" if case.table else None,
           "started": datetime.datetime.now().isoformat(timespec="seconds"), "loadavg_start": list(os.getloadavg())}
    t0 = time.perf_counter()
    try:
        args = build_parser([words[0]]).parse_args(argv)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            out = to_jsonable(args.func(args))
        row["seconds"] = time.perf_counter() - t0
        row.update(case.extract(out))
        if row.get("coverage_90") is not None:
            from jaxscale.metrics import coverage_check

            row["interval"] = coverage_check(row["coverage_90"], row["coverage_n"], 0.9)
        row["warnings"] = sorted({str(w.message)[:240] for w in caught})
    except Exception as exc:  # one failing case does not lose the others
        row["seconds"] = time.perf_counter() - t0
        row["error"] = f"{type(exc).__name__}: {exc}"
        row["traceback"] = traceback.format_exc()[-2000:]
    best = min(row.get("baselines", {}).items(), key=lambda kv: (kv[1]["mae"] is None, kv[1]["mae"] or 0),
               default=(None, None))
    row["best_baseline"] = None if best[0] is None else {"name": best[0], **best[1]}
    row["loadavg_end"] = list(os.getloadavg())
    return row


def _fmt(v, spec=".4g"):
    return "-" if v is None else format(v, spec)


def _off(row: dict) -> str | None:
    """The interval's verdict when it is not "consistent" (too narrow / too wide), else None."""
    verdict = (row.get("interval") or {}).get("verdict", "consistent")
    return None if verdict == "consistent" else verdict


def table(rows: list[dict]) -> str:
    """The compact table (one line per case)."""
    head = (f"{'pillar':15s} {'case':44s} {'n':>5s} {'model MAE':>10s} {'best baseline (MAE)':>32s} {'cov90':>6s} "
            f"{'s':>6s}")
    lines = [head, "-" * len(head)]
    for r in rows:
        if "error" in r:
            lines.append(f"{r['pillar']:15s} {r['case'][:44]:44s} FAILED: {r['error'][:80]}")
            continue
        b = r["best_baseline"]
        base = "-" if b is None else f"{b['name']} ({_fmt(b['mae'])})"
        lose = " *" if r.get("model_loses_to") else ""
        lose += " !" if _off(r) else ""
        lines.append(f"{r['pillar']:15s} {r['case'][:44]:44s} {r['model']['n']:5d} {_fmt(r['model']['mae']):>10s} "
                     f"{base:>32s} {_fmt(r['coverage_90'], '.2f'):>6s} {r['seconds']:6.0f}{lose}")
    if any(r.get("model_loses_to") for r in rows):
        lines.append("* a baseline beats the model (model_loses_to: on MAE; on RMSLE for lc extrapolate)")
    if any(_off(r) for r in rows):
        lines.append("! the 90 % interval's coverage is outside what a calibrated one shows (interval.verdict)")
    return "\n".join(lines)


def markdown(saved: dict, mode: str) -> str:
    """The README table of one mode of a results file."""
    lines = ["| pillar | held-out case | rows | model MAE | best baseline MAE | 90 % coverage | command |",
             "|---|---|---|---|---|---|---|"]
    for r in saved["modes"][mode]["cases"]:
        if "error" in r:
            lines.append(f"| {r['pillar']} | {r['case']} | | failed | | | `{r['command']}` |")
            continue
        b = r["best_baseline"]
        base = "-" if b is None else f"{_fmt(b['mae'], '.3g')} ({b['name']})"
        cov = _fmt(r["coverage_90"], ".2f") + ("" if r["coverage_n"] == r["model"]["n"] else f" (of {r['coverage_n']})")
        cov += f" ({_off(r)})" if _off(r) else ""
        lines.append(f"| {r['pillar']} | {r['case']} | {r['model']['n']} | {_fmt(r['model']['mae'], '.3g')} | {base} | "
                     f"{cov} | `{r['command']}` |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__.split("\n\n", 1)[1],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="shrink every case (a few minutes on 2 CPU cores)")
    ap.add_argument("--only", default=None, metavar="PILLAR,...", help=f"comma-separated subset of {','.join(PILLARS)}")
    ap.add_argument("--tables", default=None, metavar="DIR",
                    help="write (and keep) the CSV tables here (default: a temporary folder, removed after)")
    ap.add_argument("--write-tables", default=None, metavar="DIR", help="only write the CSV tables into DIR and exit")
    ap.add_argument("--out", default=str(OUT), help="results file (one entry per mode)")
    ap.add_argument("--list", action="store_true", help="print the cases and their commands, run nothing")
    ap.add_argument("--markdown", action="store_true",
                    help="print the README table of the results in --out (the mode of --quick), run nothing")
    args = ap.parse_args(argv)
    only = PILLARS if args.only is None else tuple(p.strip() for p in args.only.split(",") if p.strip())
    unknown = sorted(set(only) - set(PILLARS))
    if unknown:
        ap.error(f"--only: unknown pillar(s) {unknown}; choose from {', '.join(PILLARS)}")
    mode = "quick" if args.quick else "full"
    chosen = [c for c in cases() if c.pillar in only]
    if args.markdown:
        print(markdown(json.loads(Path(args.out).read_text()), mode))
        return 0
    if args.list:
        for c in chosen:
            words = (c.quick if args.quick else c.full) + ["--json"]
            print(f"{c.pillar:15s} {c.name}\n    jaxscale {shlex.join(words)}")
        return 0

    from jaxscale.config import enable_compilation_cache, enable_x64

    if args.write_tables:
        print(json.dumps(write_tables(Path(args.write_tables))))
        return 0
    enable_x64()
    cache = enable_compilation_cache()  # as the command line does
    tmp = None
    if args.tables:
        tables = Path(args.tables)
    else:
        tmp = tempfile.TemporaryDirectory(prefix="jaxscale_backtest_")
        tables = Path(tmp.name)
    if any(c.table for c in chosen):
        write_tables(tables)
    rows = []
    started = datetime.datetime.now().isoformat(timespec="seconds")
    t0 = time.perf_counter()
    for c in chosen:
        print(f"[bench_backtest] {c.pillar}: {c.name} ...", file=sys.stderr, flush=True)
        row = run_case(c, c.quick if args.quick else c.full, tables)
        row.update(mode=mode, machine=machine())
        rows.append(row)
        print(f"[bench_backtest]   {row['seconds']:.0f} s" + (f"  FAILED: {row['error']}" if "error" in row else ""),
              file=sys.stderr, flush=True)
    if tmp is not None:
        tmp.cleanup()
    result = {"benchmark": "backtest", "mode": mode, "only": list(only), "started": started, "machine": machine(),
              "git": git_state(),
              "compilation_cache": cache is not None, "seconds_total": time.perf_counter() - t0,
              "score": ("MAE of the mean prediction on the held-out rows (RMSE beside it); each baseline on the same "
                        "rows"),
              "coverage": "share of the held-out rows inside the model's central 90 % interval",
              "cases": rows}
    from jaxscale._json import dumps

    path = Path(args.out)
    saved = json.loads(path.read_text()) if path.exists() else {}
    if saved.get("benchmark") != "backtest":
        saved = {"benchmark": "backtest", "modes": {}}
    kept = saved["modes"].get(mode, {}).get("cases", [])
    ran = {r["case"] for r in rows}
    entry = {"mode": mode, "score": result["score"], "coverage": result["coverage"],
             "last_run": {k: result[k] for k in ("only", "started", "machine", "git", "compilation_cache",
                                                 "seconds_total")},
             "cases": [r for r in kept if r["case"] not in ran] + rows}
    order = {c.name: i for i, c in enumerate(cases())}
    entry["cases"].sort(key=lambda r: order.get(r["case"], len(order)))
    saved["modes"][mode] = entry
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(dumps(saved, indent=1) + "\n")
    print(table(rows), file=sys.stderr)
    print(dumps(result))
    return 1 if any("error" in r for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
