"""Cold start of the command line: `--help`, and each pillar's headline command run twice in fresh
processes with an empty persistent compilation cache (the first run compiles, the second reuses
the cached programs). Targets: `--help` (top level and each headline command's) < 1 s; every second
run >= 2x faster than the first.

The same for the "your own table" path of four pillars (`--csv` with the user's column names and
a `--holdout`, on bundled tables read as a user would), reported under `csv_commands` (no target).
For `ncpl_csv` the second run reads another table, of another length (`SECOND_TABLE`): a user's
next CSV, which reuses the programs compiled for the first (small tables are padded to buckets).

Usage: python benchmarks/bench_cold_start.py [--only chinchilla,obs,obs_csv]
Writes benchmarks/results/bench_cold_start.json.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

__all__: list[str] = []

#: pillar -> its headline command on bundled data (settings as in the README)
COMMANDS = {
    "chinchilla": ["chinchilla", "fit", "--json"],
    "lc": ["lc", "evaluate", "--dataset", "nanogpt_large", "--split", "tri", "--restarts", "2", "--steps", "300",
           "--json"],
    "obs": ["obs", "fit", "--task", "gsm8k_cot", "--json"],
    "context": ["context", "fit", "--dataset", "longcontext_icl", "--json"],
    "ncpl": ["ncpl", "evaluate", "--source", "marin", "--split", "ood", "--model", "chinchilla_refit", "--json"],
}

_ROOT = Path(__file__).resolve().parents[1]  # commands run here (paths below are relative to it)
_BUNDLED = Path("jaxscale") / "data" / "bundled"
#: the --csv path on bundled tables read as a user's own (their column names, a held-out split)
CSV_COMMANDS = {
    "chinchilla_csv": ["chinchilla", "fit", "--csv", str(_BUNDLED / "ncpl" / "gadre2024_overtraining_runs.csv"),
                       "--n-col", "params", "--d-col", "tokens", "--loss-col", "loss_c4_val",
                       "--where", "dataset == 'c4_original'", "--holdout", "params > 1e9", "--json"],
    "obs_csv": ["obs", "fit", "--csv", str(_BUNDLED / "obscaling" / "base_llm_leaderboard_v2_eval.csv"),
                "--target", "leaderboard_math_hard", "--metric-cols",
                "leaderboard_bbh,leaderboard_gpqa,leaderboard_ifeval,leaderboard_mmlu_pro,leaderboard_musr",
                "--test-frac", "0.2", "--json"],
    "context_csv": ["context", "fit", "--csv", str(_BUNDLED / "context_law" / "ruler_readme_results.csv"),
                    "--where", "n_params.notna() and train_tokens.notna()", "--n-col", "n_params",
                    "--d-col", "train_tokens", "--n-pmt-col", "n_pmt", "--n-ctx-col", "n_ctx", "--score-col", "score",
                    "--task-col", "task", "--holdout", "n_pmt >= 65536", "--json"],
    "ncpl_csv": ["ncpl", "train", "--csv", str(_BUNDLED / "ncpl" / "gadre2024_overtraining_runs.csv"),
                 "--target-col", "loss_c4_val", "--n-col", "params", "--d-col", "tokens", "--exclude-cols",
                 "name,seed,loss_openlm_val,loss_paloma_c4_en,loss_paloma_dolma_100_programming_languages,"
                 "loss_paloma_falcon_refinedweb,loss_paloma_ptb,loss_paloma_redpajama,loss_de_en",
                 "--where", "dataset == 'c4_original'", "--json"],
}
#: commands whose second run reads another table: the first run's --where replaced by this one
SECOND_TABLE = {"ncpl_csv": "dataset == 'rpj'"}


def _second(name: str, argv: list) -> list:
    """The second run's command line: the same, or with the other table's --where."""
    if name not in SECOND_TABLE:
        return argv
    i = argv.index("--where")
    return [*argv[:i + 1], SECOND_TABLE[name], *argv[i + 2:]]


def _run(argv, env) -> float:
    t0 = time.perf_counter()
    res = subprocess.run([sys.executable, "-m", "jaxscale", *argv], env=env, capture_output=True, text=True, cwd=_ROOT)
    wall = time.perf_counter() - t0
    if res.returncode not in (0,):
        raise RuntimeError(f"{argv}: exit {res.returncode}: {res.stderr[-1500:]}")
    return wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default=None, help=f"comma-separated among {', '.join([*COMMANDS, *CSV_COMMANDS])}")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "bench_cold_start.json"))
    args = ap.parse_args()
    every = {**COMMANDS, **CSV_COMMANDS}
    names = args.only.split(",") if args.only else list(every)
    unknown = sorted(set(names) - set(every))
    if unknown:
        ap.error(f"--only: unknown {unknown}; choose among {list(every)}")
    out = {"benchmark": "cli_cold_start", "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                                                      "loadavg_1min_start": os.getloadavg()[0]}}
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, JAXSCALE_CACHE_DIR=cache, JAXSCALE_NO_CACHE="0", JAXSCALE_PROGRESS="0",
                   OPENBLAS_NUM_THREADS="1")
        out["help_s"] = min(_run(["--help"], env) for _ in range(3))
        out["command_help_s"] = {name: min(_run([*COMMANDS[name][:2], "--help"], env) for _ in range(3))
                                 for name in names if name in COMMANDS}
        rows = {}
        for name in names:
            first = _run(every[name], env)
            second = _run(_second(name, every[name]), env)
            rows[name] = {"command": "jaxscale " + " ".join(every[name]), "first_s": first, "second_s": second,
                          "speedup": first / second}
            if name in SECOND_TABLE:
                rows[name]["second_run_where"] = SECOND_TABLE[name]
            print(name, rows[name], file=sys.stderr)
        out["commands"] = {k: v for k, v in rows.items() if k in COMMANDS}
        out["csv_commands"] = {k: v for k, v in rows.items() if k in CSV_COMMANDS}
    out["targets"] = {"help_under_1s": out["help_s"] < 1.0,
                      "command_help_under_1s": {k: v < 1.0 for k, v in out["command_help_s"].items()},
                      "second_run_2x": {k: v["speedup"] >= 2.0 for k, v in out["commands"].items()}}
    out["machine"]["loadavg_1min_end"] = os.getloadavg()[0]
    Path(args.out).write_text(json.dumps(out, indent=1))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
