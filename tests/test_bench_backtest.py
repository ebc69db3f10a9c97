"""The held-out benchmark script: its cases are real commands of the command line (they parse with
the real parser, in both modes), and its options parse; nothing is fitted."""
import importlib.util
import pathlib
import shlex

import pytest

from jaxscale.cli import build_parser

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _bench():
    spec = importlib.util.spec_from_file_location("bench_backtest", ROOT / "benchmarks" / "bench_backtest.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_every_pillar_has_a_case():
    bench = _bench()
    assert {c.pillar for c in bench.cases()} == set(bench.PILLARS)
    assert len({c.name for c in bench.cases()}) == len(bench.cases())


@pytest.mark.parametrize("mode", ["full", "quick"])
def test_every_case_is_a_command_that_parses(mode):
    bench = _bench()
    for case in bench.cases():
        words = getattr(case, mode) + ["--json"]
        args = build_parser([words[0]]).parse_args(words)
        assert callable(args.func), shlex.join(words)
        if case.table:
            assert any(case.table in w for w in words)


def test_list_and_bad_pillar(capsys):
    bench = _bench()
    assert bench.main(["--list", "--quick", "--only", "chinchilla,ncpl"]) == 0
    out = capsys.readouterr().out
    assert "jaxscale chinchilla fit" in out and "jaxscale ncpl train" in out and "jaxscale obs" not in out
    with pytest.raises(SystemExit) as exc:
        bench.main(["--only", "nope"])
    assert exc.value.code == 2
