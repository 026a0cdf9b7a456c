"""The house's structure (docs/architecture.md): each module imports alone, the error tree drawn in
hearth/errors.py is the real one, modules stay small, and CLI functions stay thin."""

from __future__ import annotations

import ast
import importlib
import pkgutil
import re
import subprocess
import sys
from pathlib import Path

import pytest

import hearth
import hearth.errors

ROOT = Path(hearth.__file__).parent
MODULES = sorted(m.name for m in pkgutil.walk_packages(hearth.__path__, "hearth."))


@pytest.mark.parametrize("module", MODULES)
def test_every_module_imports_alone_in_a_fresh_interpreter(module: str) -> None:
    """As python-zeroconf's test_circular_imports: a cycle hidden by import order shows up only
    when a module is the first one imported."""
    r = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]


def _tree() -> list[tuple[int, str]]:
    """(depth, class name) for each line of the tree in errors.py's docstring."""
    doc = hearth.errors.__doc__ or ""
    rows = []
    for line in doc.splitlines():
        m = re.match(r"^(\s*(?:│\s*)*)(?:├──|└──)\s+([A-Za-z, ]+?)(?:\s{2,}|$)", line)
        if m:
            indent = len(m.group(1).replace("│", " "))
            rows.extend((indent, name.strip()) for name in m.group(2).split(","))
    base = min(indent for indent, _ in rows)
    return [((indent - base) // 4, name) for indent, name in rows]


def _all_errors() -> dict[str, type[hearth.errors.HearthError]]:
    for name in MODULES:
        importlib.import_module(name)
    found: dict[str, type[hearth.errors.HearthError]] = {}
    todo = [hearth.errors.HearthError]
    while todo:
        cls = todo.pop()
        for sub in cls.__subclasses__():
            if sub.__module__.startswith("hearth.") and sub.__name__ not in found:
                found[sub.__name__] = sub
                todo.append(sub)
    return found


def test_the_error_tree_in_the_docstring_is_the_real_one() -> None:
    errors = _all_errors()
    rows = _tree()
    drawn = {name for _, name in rows}
    assert len(rows) > 20
    assert not set(errors) - drawn, f"errors missing from the tree in hearth/errors.py: {set(errors) - drawn}"
    assert not drawn - set(errors), f"the tree names errors that do not exist: {drawn - set(errors)}"
    parents: list[str] = ["HearthError"]
    for depth, name in rows:
        del parents[depth + 1:]
        parent = hearth.errors.HearthError if depth == 0 else errors[parents[depth]]
        assert issubclass(errors[name], parent), f"{name} is drawn under {parent.__name__} but is not one"
        parents.append(name)


def test_category_bases_can_be_caught() -> None:
    from hearth.ggml.hello import RpcUnreachable
    from hearth.node_api.errors import LeaseRefused
    from hearth.orchestrator.planner import DoesNotFit

    with pytest.raises(hearth.errors.OutOfCapacity):
        raise DoesNotFit("no room", needed=2, available=1)
    with pytest.raises(hearth.errors.RefusedByPeer):
        raise LeaseRefused("full")
    with pytest.raises(hearth.errors.LinkFailed):
        raise RpcUnreachable("gone")


def test_no_module_is_over_400_lines() -> None:
    long = {str(p.relative_to(ROOT)): n for p in ROOT.rglob("*.py") if (n := len(p.read_text().splitlines())) > 400}
    assert not long


def test_cli_functions_stay_thin() -> None:
    """The CLI parses, calls one function, prints: no command body grows past 60 lines."""
    for path in (ROOT / "cli").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                body = node.body[1:] if ast.get_docstring(node) else node.body
                lines = (body[-1].end_lineno or 0) - body[0].lineno + 1
                assert lines <= 60, f"{path.name}:{node.name} has {lines} lines"
