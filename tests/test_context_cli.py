"""CLI wiring of ``jaxscale context fit`` (cheap checks; the full fits run in the demo / benchmarks)."""
import argparse

import pytest

from jaxscale.cli.context import register, spec_from_args
from jaxscale.context_law import PRESETS, Spec
from jaxscale.context_law.evaluate import default_spec


def _parser():
    p = argparse.ArgumentParser()
    register(p.add_subparsers(dest="cmd"))
    return p


def test_register_adds_context_fit():
    args = _parser().parse_args(["context", "fit", "--dataset", "babilong", "--penalty", "log_ratio", "--decay",
                                 "--bayes", "--json"])
    assert args.dataset == "babilong" and args.penalty == "log_ratio" and args.decay and args.bayes
    assert callable(args.func)


def test_flags_default_to_spec_and_override_presets():
    args = _parser().parse_args(["context", "fit", "--csv", "x.csv"])
    assert spec_from_args(args) == Spec()  # the CLI's defaults are Spec()'s
    for field in Spec._fields:
        assert getattr(args, field) == getattr(Spec(), field), field
    # a bundled preset keeps its own form unless a flag is given explicitly
    args = _parser().parse_args(["context", "fit", "--dataset", "longcontext_icl", "--restarts", "2",
                                 "--no-fit-shift"])
    spec = spec_from_args(args, default_spec("longcontext_icl"))
    assert spec == PRESETS["longcontext_icl"]._replace(fit_shift=False)
    assert spec.fit_alpha is False  # from the preset, although Spec().fit_alpha is True


def test_bad_dataset_and_penalty():
    with pytest.raises(SystemExit):
        _parser().parse_args(["context", "fit", "--dataset", "mmlu"])
    with pytest.raises(SystemExit):
        _parser().parse_args(["context", "fit", "--dataset", "ruler", "--penalty", "sigmoid"])
    with pytest.raises(ValueError, match="penalty"):
        default_spec("ruler", penalty="sigmoid")
    with pytest.raises(ValueError, match="dataset"):
        default_spec("mmlu")
