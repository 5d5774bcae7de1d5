"""The package's shape, read from its source: imports that point one way, pure modules pure."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent / "agent"


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """Every agent module `path` imports, at any depth (a function-level import counts too)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
            out.update(f"{node.module}.{a.name}" for a in node.names)
    return {m for m in out if m.startswith("agent")}


def graph() -> dict[str, set[str]]:
    modules = {module_name(p): p for p in ROOT.rglob("*.py")}
    return {name: imports(path) & modules.keys() - {name} for name, path in modules.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The import cycles (each once, from its smallest module), by depth-first search."""
    found, state = [], {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == "open":
                cycle = stack[stack.index(nxt) :]
                i = cycle.index(min(cycle))
                found.append(cycle[i:] + cycle[:i])
            elif nxt not in state:
                visit(nxt, [*stack, nxt])
        state[node] = "done"

    for node in sorted(edges):
        if node not in state:
            visit(node, [node])
    return found


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_the_capture_package_has_no_import_cycle():
    edges = graph()
    capture = {k: {m for m in v if m.startswith("agent.capture")} for k, v in edges.items()}
    capture = {k: v for k, v in capture.items() if k.startswith("agent.capture")}
    assert len(capture) >= 10, sorted(capture)  # the graph was read
    assert cycles(capture) == []


def test_capture_and_deliver_meet_only_in_the_spool():
    for name, deps in graph().items():
        if name.startswith("agent.capture"):
            assert not [d for d in deps if d.startswith("agent.deliver")], name
        if name.startswith("agent.deliver"):
            assert not [d for d in deps if d.startswith("agent.capture")], name


@pytest.mark.parametrize(
    "module",
    [
        "capture/motion.py",
        "capture/gate.py",
        "capture/segmenter.py",
        "capture/detection.py",
        "capture/keyframes.py",
        "deliver/acs.py",
        "layout.py",
    ],
)
def test_pure_modules_import_no_io_library(module):
    tree = ast.parse((ROOT / module).read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module.split(".")[0])
    assert not names & {"av", "sqlite3", "sqlite_utils", "httpx", "oss2", "socket"}, names


def test_the_package_has_no_import_cycle():
    edges = graph()
    assert len(edges) >= 40, sorted(edges)  # the graph was read
    assert cycles(edges) == []


def test_no_module_imports_another_modules_private_names():
    private = []
    for path in ROOT.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("agent"):
                names = [a.name for a in node.names]
                private += [f"{path}: {n}" for n in names if n.startswith("_") and n[1] != "_"]
    assert private == []


def test_no_class_over_about_200_lines():
    long = []
    for path in ROOT.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and node.end_lineno - node.lineno >= 210:
                long.append(f"{path}:{node.lineno} {node.name}")
    assert long == []


def test_the_readme_map_names_every_module_and_no_other():
    readme = (ROOT.parent / "README.md").read_text()
    block = readme.split("The package, in the order data flows", 1)[1].split("```")[1]
    listed, folder = set(), ""
    for line in block.splitlines()[1:]:
        names = line.strip().split("  ")[0]
        if not names:
            continue
        if names.endswith("/"):
            folder = "" if line.startswith("agent/") else names
            continue
        sub = folder if line.startswith("    ") else ""
        listed |= {sub + n.strip() for n in names.split(",") if n.strip()}
    modules = {str(p.relative_to(ROOT)) for p in ROOT.rglob("*.py") if p.name != "__init__.py"}
    assert listed == modules, (sorted(modules - listed), sorted(listed - modules))
