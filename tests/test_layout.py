"""The layout is the architecture: one idea per folder, a map in each, no import cycle, short files.

These read the source, not the behaviour: every `import` and `from ... import` of toyds/
(those inside functions too) makes the graph that must have no cycle."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "toyds"
MODULES = sorted(p for p in PKG.rglob("*.py"))


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


NAMES = {module_name(p): p for p in MODULES}


def imports(path: Path) -> set[str]:
    """Every toyds module `path` imports, at any depth of its code (a package import counts as its __init__)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        else:
            continue
        for t in targets:
            while t and t not in NAMES:
                t = t.rpartition(".")[0]
            if t.startswith("toyds"):
                out.add(t)
    out.discard(module_name(path))
    return out


def test_no_import_cycle_anywhere():
    graph = {name: imports(path) for name, path in NAMES.items()}
    state, cycles = {}, []

    def visit(node, stack):
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_subpackage_maps_name_every_module_and_import_nothing():
    for init in sorted(PKG.glob("*/__init__.py")):
        text = init.read_text()
        tree = ast.parse(text)
        assert ast.get_docstring(tree), f"{init} has no map"
        assert not any(isinstance(n, (ast.Import, ast.ImportFrom)) for n in ast.walk(tree)), f"{init} imports"
        for module in sorted(init.parent.glob("*.py")):
            if module.name not in ("__init__.py", "__main__.py"):
                assert module.name in text, f"{init.relative_to(ROOT)}'s map does not name {module.name}"
    top = PKG / "__init__.py"
    for folder in sorted(p.name for p in PKG.iterdir() if (p / "__init__.py").is_file()):
        assert f"{folder}/" in top.read_text(), f"toyds/__init__.py's map does not name {folder}/"


def test_few_top_level_modules_and_short_files():
    assert len(list(PKG.glob("*.py"))) <= 6
    long = {p.relative_to(ROOT).as_posix(): n for p in MODULES if (n := len(p.read_text().splitlines())) > 300}
    assert not long, f"modules over 300 lines: {long}"


def test_every_module_opens_with_its_idea():
    for path in MODULES:
        doc = ast.get_docstring(ast.parse(path.read_text()))
        assert doc and len(doc.splitlines()[0]) > 10, f"{path.relative_to(ROOT)} has no opener"


@pytest.mark.parametrize("script", sorted((ROOT / "examples").rglob("*.py")), ids=lambda p: p.name)
def test_example_docstrings_are_at_most_30_lines(script):
    doc = ast.get_docstring(ast.parse(script.read_text()), clean=False)
    assert doc and len(doc.strip("\n").splitlines()) <= 30, f"{script.name}: {len(doc.splitlines())} lines"


def test_the_readme_is_a_tutorial_not_a_notebook():
    assert len((ROOT / "README.md").read_text().splitlines()) <= 320
