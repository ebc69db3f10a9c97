"""Architecture rules: pillars never import each other; every module declares __all__."""
import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1] / "jaxscale"
PILLARS = ("learning_curves", "observational", "context_law", "config_regression")
SHARED = ("data", "laws", "gp", "infer", "metrics", "plotting", "config", "_log", "chinchilla")
MODULES = sorted(p for p in ROOT.rglob("*.py") if "bundled" not in p.parts)


def _imports(path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module
        elif isinstance(node, ast.ImportFrom) and node.level > 0:
            yield "." * node.level + (node.module or "")


def _pillar_of(path):
    rel = path.relative_to(ROOT).parts
    return rel[0] if rel[0] in PILLARS else None


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(ROOT)))
def test_pillars_never_import_each_other(path):
    own = _pillar_of(path)
    for name in _imports(path):
        if name.startswith("."):
            continue  # relative imports stay inside their package
        parts = name.split(".")
        if parts[0] != "jaxscale" or len(parts) < 2:
            continue
        target = parts[1]
        if own is not None:
            assert target not in PILLARS or target == own, f"{path} imports pillar {name}"
        elif path.name not in ("cli.py", "demo.py") or path.parent != ROOT:
            assert target not in PILLARS, f"shared module {path} imports pillar {name}"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_module_declares_all(path):
    tree = ast.parse(path.read_text())
    names = {t.id for n in tree.body if isinstance(n, ast.Assign) for t in n.targets if isinstance(t, ast.Name)}
    names |= {n.target.id for n in tree.body if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name)}
    assert "__all__" in names, f"{path} has no __all__"


def test_shared_layers_exist():
    for name in ("data", "laws", "gp", "infer"):
        assert (ROOT / name / "__init__.py").exists()
    for name in ("metrics.py", "plotting.py", "cli.py", "config.py"):
        assert (ROOT / name).exists()
