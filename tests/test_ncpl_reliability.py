"""NCPL reliability: checkpoints that survive a kill and refuse another run's state, and a clean
bundled evaluation that warns nothing.

The kill test runs ``jaxscale ncpl train --ckpt-dir D`` as a subprocess and kills it by PID at
three random points (drawn from a seeded generator: while the model or the backtest trains, or
while a checkpoint is written), resumes, and checks the result is identical to an uninterrupted
run; then a resume with other data, settings or seed is refused.
"""
import json
import os
import re
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from jaxscale.cli import main

ROOT = Path(__file__).resolve().parents[1]
#: Many short chunks (one checkpoint after each), so a kill lands mid-training.
SETTINGS = ["--members", "2", "--steps", "300", "--eval-every", "10", "--patience", "1000", "--lr", "3e-3",
            "--batch-size", "16", "--width", "16"]
LAW = ["--target-col", "loss", "--n-col", "N", "--d-col", "D", "--exclude-cols", "run"]


def _runs(n=48, seed=0):
    rng = np.random.default_rng(seed)
    N = np.resize([2e7, 5e7, 1e8, 3e8], n)
    D = N * np.resize([10.0, 20.0, 40.0], n)
    lr = 10 ** rng.uniform(-3.5, -2.0, n)
    opt = np.resize(["adamw", "lion"], n)
    loss = 1.8 + 400 / N**0.34 + 400 / D**0.28 + 0.05 * (np.log10(lr) + 2.7) ** 2 + 0.02 * (opt == "lion")
    return pd.DataFrame({"run": [f"run-{i}" for i in range(n)], "N": N, "D": D, "lr": lr, "optimizer": opt,
                         "loss": loss + 0.002 * rng.normal(size=n)})


def _command(csv, preds, *extra):
    return [sys.executable, "-m", "jaxscale", "ncpl", "train", "--csv", str(csv), *LAW, *SETTINGS, "--holdout",
            "N >= 3e8", "--predictions", str(preds), "--json", *extra]


def _env(cache=None):
    """The subprocesses' environment; with ``cache``, a persistent compilation cache shared by the runs
    (the first run compiles, the others reuse its programs: the same programs, so the same numbers)."""
    env = dict(os.environ, JAXSCALE_PROGRESS="0", PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    if cache is not None:
        env.update(JAXSCALE_NO_CACHE="0", JAXSCALE_CACHE_DIR=str(cache))
    return env


def _progress(folder: Path) -> int:
    """Steps done so far: the model's latest checkpoint, plus the backtest's once it has any."""
    def latest(d):
        steps = [int(p.stem.split("_")[1]) for p in d.glob("step_*.npz")]
        return max(steps, default=0)

    return latest(folder) + latest(folder / "backtest")


@pytest.mark.slow
def test_killed_training_resumes_to_the_identical_result(tmp_path):
    csv = tmp_path / "runs.csv"
    _runs().to_csv(csv, index=False)
    env = _env(tmp_path / "xla")
    full = subprocess.run(_command(csv, tmp_path / "full.csv"), env=env, capture_output=True, text=True,
                          timeout=600)
    assert full.returncode == 0, full.stderr[-3000:]
    ck = tmp_path / "ck"
    rng = np.random.default_rng(7)
    targets = np.sort(rng.choice(np.arange(20, 580, 10), size=3, replace=False))  # of 300 + 300 steps
    kills = []
    for target in targets:
        proc = subprocess.Popen(_command(csv, tmp_path / "part.csv", "--ckpt-dir", str(ck)), env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        t0 = time.time()
        while proc.poll() is None and _progress(ck) < target and time.time() - t0 < 300:
            time.sleep(0.002)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)  # no clean-up: files may be half written
            proc.wait()
            kills.append((int(target), _progress(ck)))
        else:
            proc.stderr.read()
    assert len(kills) == 3, kills
    assert not (tmp_path / "part.csv").exists()  # no run got as far as writing its outputs
    resumed = subprocess.run(_command(csv, tmp_path / "part.csv", "--ckpt-dir", str(ck)), env=env,
                             capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resumed from step" in resumed.stderr
    assert re.search(r"resumed at step \d+ of its checkpoint, \d+ more steps in", resumed.stderr)
    a, b = pd.read_csv(tmp_path / "full.csv"), pd.read_csv(tmp_path / "part.csv")
    for col in ("mean", "lower", "upper", "extrapolation"):
        np.testing.assert_array_equal(a[col].to_numpy(), b[col].to_numpy(), err_msg=col)
    ja, jb = json.loads(full.stdout), json.loads(resumed.stdout)
    assert ja["holdout"] == jb["holdout"] and ja["info"]["extrapolation_model"] == jb["info"]["extrapolation_model"]


def test_a_checkpoint_of_another_run_is_refused(tmp_path, capsys):
    csv = tmp_path / "runs.csv"
    _runs().to_csv(csv, index=False)
    ck = ["--ckpt-dir", str(tmp_path / "ck")]
    small = ["--members", "2", "--steps", "20", "--eval-every", "10", "--patience", "100", "--batch-size", "16",
             "--width", "16", "--backtest-frac", "0"]
    base = ["ncpl", "train", "--csv", str(csv), *LAW, *small, *ck, "--json"]
    assert main([*base, "--lr", "3e-3"]) == 0
    first = json.loads(capsys.readouterr().out)
    # the same run again resumes from its last checkpoint: the same model
    assert main([*base, "--lr", "3e-3"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["train"] == first["train"]
    # another learning rate or seed: refused, naming what differs
    assert main([*base, "--lr", "1e-2"]) == 2
    err = capsys.readouterr().err
    assert "another run" in err and "lr 0.003 -> 0.01" in err and "--force-new" in err
    assert main([*base, "--lr", "3e-3", "--seed", "1"]) == 2
    assert "seed" in capsys.readouterr().err
    # a checkpoint file damaged on disk is refused too (a kill cannot do this: writes are atomic)
    step = sorted((tmp_path / "ck").glob("step_*.npz"))[-1]
    step.write_bytes(step.read_bytes()[:100])
    assert main([*base, "--lr", "3e-3"]) == 2
    assert "damaged" in capsys.readouterr().err
    assert main([*base, "--lr", "1e-2", "--force-new"]) == 0
    assert json.loads(capsys.readouterr().out)["spec"]["lr"] == 0.01


@pytest.mark.slow
def test_clean_bundled_evaluate_warns_nothing(capsys):
    """``ncpl evaluate --source marin --split ood`` on the bundled runs (the small preset, the
    setting the other bundled tests use): no UserWarning or RuntimeWarning; the held-out report
    has the baselines and the distance outside the training runs."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        warnings.simplefilter("error", RuntimeWarning)
        assert main(["ncpl", "evaluate", "--source", "marin", "--split", "ood", "--preset", "small", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["converged"] and out["extrapolation"]["n_outside"] == out["n"]
    base = out["baselines"]
    assert base["model_loses_to"] == []
    assert base["chinchilla_on_training_rows"]["mae"] > out["mae"]
    assert base["chinchilla_ncpl_column"]["mae"] > out["mae"]
