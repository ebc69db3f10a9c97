"""Chinchilla end to end: Epoch's fit reproduced, bootstraps, numpyro posterior, CLI."""
import json

import numpy as np
import pytest

from jaxscale import chinchilla as ch
from jaxscale.cli import main
from jaxscale.data import load
from jaxscale.laws import chinchilla_theta_to_params as ch_params

# Epoch AI's data_analysis notebook re-run here with scipy (issue "Foundation", item 7):
# E 1.8172, A 478.0, B 2142, alpha 0.3473, beta 0.3671. Tolerance: 2% relative each.
EPOCH = {"E": 1.8172, "A": 478.0, "B": 2142.0, "alpha": 0.3473, "beta": 0.3671}


@pytest.fixture(scope="module")
def epoch_fit():
    import jax

    return ch.fit(jax.random.key(0), ch.from_frame(load("epoch_chinchilla")), ch.EPOCH_SPEC)


@pytest.mark.slow
def test_epoch_replication_reproduces(epoch_fit):
    got = {k: float(v) for k, v in ch.params_dict(epoch_fit.params).items()}
    for k, ref in EPOCH.items():
        assert abs(got[k] - ref) / ref < 0.02, (k, got[k], ref)
    assert epoch_fit.converged and epoch_fit.n_starts == 4500 and int(epoch_fit.dof) + 5 == 240
    # Epoch excluded the five highest-loss points: the first five rows of the file.
    assert np.flatnonzero(np.asarray(epoch_fit.excluded)).tolist() == [0, 1, 2, 3, 4]


@pytest.mark.slow
def test_bootstrap_intervals_bracket_the_fit(epoch_fit, key):
    data = ch.take_rows(ch.from_frame(load("epoch_chinchilla")), ~np.asarray(epoch_fit.excluded))
    theta, n_excluded = ch.bootstrap(key, data, epoch_fit.theta, n_boot=64)
    boot = ch.params_dict(ch_params(theta))
    assert n_excluded <= 6  # at most ~10% of 64 refits may fail to converge
    for k in EPOCH:
        lo, hi = np.percentile(boot[k], [5, 95])
        assert lo < float(getattr(epoch_fit.params, k)) < hi, k
        assert hi > lo
    # The refits must really move: 90% widths of the exponents are a few hundredths
    # (a full 4,000-refit run here gave alpha [0.321, 0.369], beta [0.340, 0.406]).
    for k in ("alpha", "beta"):
        width = np.percentile(boot[k], 95) - np.percentile(boot[k], 5)
        assert 0.015 < width < 0.15, (k, width)


@pytest.mark.slow
def test_bayesian_chinchilla_agrees_with_point_fit(epoch_fit, key):
    data = ch.take_rows(ch.from_frame(load("epoch_chinchilla")), ~np.asarray(epoch_fit.excluded))
    post = ch.fit_bayes(key, data, num_warmup=200, num_samples=200, num_chains=2)
    for k in ("alpha", "beta"):
        med = float(np.median(post.samples[k]))
        assert abs(med - float(getattr(epoch_fit.params, k))) < 0.03, (k, med)
    assert post.diagnostics["divergences"] < 10


def test_fit_rejects_underdetermined_and_bad_rows(key):
    import pandas as pd

    df = pd.DataFrame({"N": [1e8] * 8, "D": np.logspace(9, 10, 8), "loss": np.linspace(3, 2.5, 8)})
    with pytest.raises(ValueError, match="need >= 2 distinct values of 'N'"):
        ch.fit(key, ch.from_frame(df))
    df2 = pd.DataFrame({"N": [1e8, 2e8, 0.0], "D": [1e9, 2e9, 3e9], "loss": [3.0, 2.9, 2.8]})
    with pytest.raises(ValueError, match=r"'N' has 1 non-positive"):
        ch.from_frame(df2)


def test_cli_datasets_json(capsys):
    assert main(["datasets", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    names = {d["name"]: d for d in out["datasets"]}
    assert names["epoch_chinchilla"]["rows"] == 245
    assert names["epoch_chinchilla"]["columns"] == ["N", "D", "C", "loss"]


def test_cli_bad_csv_exits_nonzero(tmp_path, capsys):
    p = tmp_path / "runs.csv"
    p.write_text("params,tokens,final_loss\n1e8,1e9,3.1\n2e8,2e9,-1\n")
    code = main(["chinchilla", "fit", "--csv", str(p), "--n-col", "params", "--d-col", "tokens",
                 "--loss-col", "final_loss", "--json"])
    err = capsys.readouterr().err
    assert code == 2
    assert "'final_loss' has 1 non-positive" in err and "rows [3]" in err  # line 3 of the file


@pytest.mark.slow
def test_cli_fit_on_user_csv(tmp_path, capsys, epoch_fit):
    # the Epoch table under a user's own column names, fitted through the --csv path
    df = load("epoch_chinchilla").rename(columns={"N": "params", "D": "tokens", "loss": "val_loss"})
    p = tmp_path / "runs.csv"
    df.to_csv(p, index=False)
    code = main(["chinchilla", "fit", "--csv", str(p), "--n-col", "params", "--d-col", "tokens",
                 "--loss-col", "val_loss", "--exclude-top-loss", "5", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0
    for k in EPOCH:
        assert out[k] == pytest.approx(float(getattr(epoch_fit.params, k)), rel=1e-6)
    # the same five rows, named by their line in the user's file (header = line 1)
    assert out["excluded_rows"] == [2, 3, 4, 5, 6] and out["source"].endswith("runs.csv")
