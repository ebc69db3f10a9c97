"""CLI wiring of ``jaxscale context fit`` (cheap checks; the full fits run in the demo / benchmarks)."""
import argparse

import pytest

from jaxscale.cli.context import register, run_fit


def _parser():
    p = argparse.ArgumentParser()
    register(p.add_subparsers(dest="cmd"))
    return p


def test_register_adds_context_fit():
    args = _parser().parse_args(["context", "fit", "--dataset", "babilong", "--penalty", "log_ratio", "--decay",
                                 "--bayes", "--json"])
    assert args.dataset == "babilong" and args.penalty == "log_ratio" and args.decay and args.bayes
    assert callable(args.func)


def test_bad_dataset_and_penalty():
    with pytest.raises(SystemExit):
        _parser().parse_args(["context", "fit", "--dataset", "mmlu"])
    with pytest.raises(ValueError, match="penalty"):
        run_fit("ruler", penalty="sigmoid")
    with pytest.raises(ValueError, match="dataset"):
        run_fit("mmlu")
