"""Cold start of the command line: `--help`, and each pillar's headline command run twice in fresh
processes with an empty persistent compilation cache (the first run compiles, the second reuses
the cached programs). Targets: `--help` (top level and each headline command's) < 1 s; every second
run >= 2x faster than the first.

Usage: python benchmarks/bench_cold_start.py [--only chinchilla,obs]
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


def _run(argv, env) -> float:
    t0 = time.perf_counter()
    res = subprocess.run([sys.executable, "-m", "jaxscale", *argv], env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if res.returncode not in (0,):
        raise RuntimeError(f"{argv}: exit {res.returncode}: {res.stderr[-1500:]}")
    return wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default=None, help=f"comma-separated among {', '.join(COMMANDS)}")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "bench_cold_start.json"))
    args = ap.parse_args()
    names = args.only.split(",") if args.only else list(COMMANDS)
    out = {"benchmark": "cli_cold_start", "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                                                      "loadavg_1min_start": os.getloadavg()[0]}}
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, JAXSCALE_CACHE_DIR=cache, JAXSCALE_NO_CACHE="0", JAXSCALE_PROGRESS="0",
                   OPENBLAS_NUM_THREADS="1")
        out["help_s"] = min(_run(["--help"], env) for _ in range(3))
        out["command_help_s"] = {name: min(_run([*COMMANDS[name][:2], "--help"], env) for _ in range(3))
                                 for name in names}
        rows = {}
        for name in names:
            first = _run(COMMANDS[name], env)
            second = _run(COMMANDS[name], env)
            rows[name] = {"command": "jaxscale " + " ".join(COMMANDS[name]), "first_s": first, "second_s": second,
                          "speedup": first / second}
            print(name, rows[name], file=sys.stderr)
        out["commands"] = rows
    out["targets"] = {"help_under_1s": out["help_s"] < 1.0,
                      "command_help_under_1s": {k: v < 1.0 for k, v in out["command_help_s"].items()},
                      "second_run_2x": {k: v["speedup"] >= 2.0 for k, v in out["commands"].items()}}
    out["machine"]["loadavg_1min_end"] = os.getloadavg()[0]
    Path(args.out).write_text(json.dumps(out, indent=1))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
