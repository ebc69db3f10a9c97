"""Architecture rules, read from the source: layers, no import circles, curated namespaces.

* pillars (``chinchilla`` and the four pillar packages) never import each other;
* shared layers never import a pillar or the command line;
* no library module imports ``jaxscale.cli`` (the face sits on top);
* the module import graph (function-level imports included) has no circle;
* every module declares ``__all__``;
* every pillar exports the one contract;
* no public result type of a pillar holds a str / DataFrame / dict / list leaf.
"""
import ast
import dataclasses
import importlib
import pathlib
import typing

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1] / "jaxscale"
PILLARS = ("learning_curves", "observational", "context_law", "ncpl", "chinchilla")
FACE = "cli"
SHARED = ("_version", "_xla", "_registry", "data", "laws", "gp", "infer", "metrics", "plotting", "config", "_log", "_json", "_pytree", "io")
MODULES = sorted(p for p in ROOT.rglob("*.py") if "bundled" not in p.parts)
KNOWN = {".".join(p.relative_to(ROOT.parent).with_suffix("").parts).removesuffix(".__init__") for p in MODULES}
#: Pillars already converted to the contract (the list grows as each lands).
CONVERTED = PILLARS
CONTRACT = ("Data", "Spec", "Fit", "from_frame", "fit", "fit_core", "predict")


def _module_name(path: pathlib.Path) -> str:
    rel = path.relative_to(ROOT.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports(path):
    """Absolute names of every module imported anywhere in ``path`` (relative imports resolved)."""
    tree = ast.parse(path.read_text())
    pkg = _module_name(path).split(".")
    if path.name != "__init__.py":
        pkg = pkg[:-1]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(pkg[: len(pkg) - node.level + 1] + ([base] if base else []))
            subs = [f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in KNOWN]
            yield from subs  # `from jaxscale.x import module`: an edge to the module
            if len(subs) < len(node.names):
                yield base


def _layer(name: str):
    parts = name.split(".")
    if parts[0] != "jaxscale" or len(parts) < 2:
        return None
    return parts[1]


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(ROOT)))
def test_layers(path):
    own = _layer(_module_name(path))
    for name in _imports(path):
        target = _layer(name)
        if target is None or target == own:
            continue
        if own == FACE or own in (None, "__main__"):
            continue
        assert target != FACE, f"{path} imports the command line ({name}); library code must not"
        if own in PILLARS:
            assert target not in PILLARS, f"pillar module {path} imports another pillar ({name})"
        else:
            assert target not in PILLARS, f"shared module {path} imports pillar {name}"


def _graph():
    known = {_module_name(p) for p in MODULES}
    graph = {}
    for path in MODULES:
        mod = _module_name(path)
        edges = set()
        for name in _imports(path):
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name and name != mod:
                edges.add(name)
        graph[mod] = edges
    return graph


def test_no_import_circles():
    graph = _graph()
    state, stack, cycles = {}, [], []

    def visit(node):
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    assert not cycles, "import circles: " + "; ".join(" -> ".join(c) for c in cycles)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_module_declares_all(path):
    tree = ast.parse(path.read_text())
    names = {t.id for n in tree.body if isinstance(n, ast.Assign) for t in n.targets if isinstance(t, ast.Name)}
    names |= {n.target.id for n in tree.body if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name)}
    assert "__all__" in names, f"{path} has no __all__"


def test_shared_layers_and_face_exist():
    for name in ("data", "laws", "gp", "infer", "cli"):
        assert (ROOT / name / "__init__.py").exists()
    for name in ("metrics.py", "plotting.py", "config.py", "io.py"):
        assert (ROOT / name).exists()
    assert not list(ROOT.glob("*/cli*.py")) + [p for p in ROOT.glob("*/demo*.py") if p.parent.name != FACE], \
        "command-line and demo modules belong in jaxscale/cli/"


@pytest.mark.parametrize("pillar", CONVERTED)
def test_pillar_exports_the_contract(pillar):
    mod = importlib.import_module(f"jaxscale.{pillar}")
    missing = [n for n in CONTRACT if n not in getattr(mod, "__all__", ())]
    assert not missing, f"jaxscale.{pillar} does not export {missing}"
    assert dataclasses.is_dataclass(mod.Fit) and dataclasses.is_dataclass(mod.Data)
    hash(mod.Spec())  # frozen and hashable


_BAD_LEAVES = ("str", "DataFrame", "dict", "list", "object", "Callable")


@pytest.mark.parametrize("pillar", CONVERTED)
def test_result_types_have_array_leaves(pillar):
    """Exported result types (``*Fit``, ``*Result``, ``*Prediction``) keep names out of their leaves."""
    mod = importlib.import_module(f"jaxscale.{pillar}")
    for name in mod.__all__:
        cls = getattr(mod, name)
        if not isinstance(cls, type) or not name.endswith(("Fit", "Result", "Prediction")):
            continue
        if dataclasses.is_dataclass(cls):
            fields = {f.name: f.type for f in dataclasses.fields(cls) if not f.metadata.get("static")}
        elif hasattr(cls, "_fields"):
            fields = dict(getattr(cls, "__annotations__", {}))
        else:
            continue
        for field, ann in fields.items():
            text = ann if isinstance(ann, str) else typing.get_type_hints(cls).get(field, ann).__name__
            assert not any(tok in str(text).replace("jax.Array", "") .split("|")[0].strip() for tok in _BAD_LEAVES), \
                f"jaxscale.{pillar}.{name}.{field}: {text} cannot be a pytree leaf; make it static"
