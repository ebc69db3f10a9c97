"""Every `jaxscale ...` command shown in the README and the docs parses with the real parser
(flags that do not exist would exit with status 2)."""
import pathlib
import re
import shlex

import pytest

from jaxscale.cli import build_parser

ROOT = pathlib.Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md"] + sorted((ROOT / "docs").glob("*.md"))


def _commands(path):
    text = path.read_text()
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        block = block.replace("\\\n", " ")
        for line in block.splitlines():
            line = line.split(" #")[0].strip()
            if line.startswith("jaxscale "):
                yield line


CASES = [(p.name, c) for p in PAGES for c in _commands(p)]


def test_the_pages_show_commands():
    assert len([c for name, c in CASES if name == "README.md"]) >= 15
    groups = {c.split()[1] for name, c in CASES if name == "README.md"}
    assert {"chinchilla", "lc", "obs", "context", "ncpl"} <= groups


@pytest.mark.parametrize("page, command", CASES, ids=[f"{p}:{c[:60]}" for p, c in CASES])
def test_command_parses(page, command):
    argv = shlex.split(command)[1:]
    try:
        build_parser().parse_args(argv)
    except SystemExit as exc:  # argparse error
        pytest.fail(f"{page}: `{command}` does not parse (exit {exc.code})")
