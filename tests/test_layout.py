"""The import order of memokit's modules: the one docs/architecture.md states, no cycles.

Every import that runs (at module level or inside a function) must go to a
module listed on a line above the importing one's under "Import order" in
docs/architecture.md (modules on one line never import each other). Imports
under ``if TYPE_CHECKING:`` never run and are left out: a module may name a type
of a module above it.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Imports that still point upward, each with why; the list only shrinks.
KNOWN_UPWARD: set[tuple[str, str]] = set()  # none: every import runs downwards
PACKAGE = ROOT / "memokit"
DOC = ROOT / "docs" / "architecture.md"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _runtime_nodes(tree: ast.AST) -> Iterator[ast.AST]:
    """Every node, except the bodies of ``if TYPE_CHECKING:`` (their else branches run)."""
    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
            continue
        stack.extend(ast.iter_child_nodes(node))


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The memokit modules ``name`` imports when it runs."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in _runtime_nodes(ast.parse(path.read_text(), str(path))):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                origin = ".".join([*base, node.module] if node.module else base)
            else:
                origin = node.module or ""
            # `from . import counters` imports the module memokit.counters.
            targets = [
                f"{origin}.{alias.name}" if f"{origin}.{alias.name}" in known else origin
                for alias in node.names
            ]
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target.startswith("memokit") and target != name:
                found.add(target)
    return found


def documented_order() -> list[str]:
    text = DOC.read_text()
    section = text.split("## Import order", 1)[1]
    block = re.search(r"```text\n(.*?)```", section, re.DOTALL)
    assert block is not None, "docs/architecture.md: no ```text block under ## Import order"
    order = []
    for line in block.group(1).splitlines():
        order += [word for word in line.split() if word.startswith("memokit")]
    return order


def graph() -> dict[str, set[str]]:
    found = modules()
    known = set(found)
    return {
        name: {t for t in imports_of(name, path, known) if (name, t) not in KNOWN_UPWARD}
        for name, path in found.items()
    }


def test_every_module_is_in_the_documented_order_once() -> None:
    order = documented_order()
    assert len(order) == len(set(order)), "a module is listed twice"
    missing, unknown = set(modules()) - set(order), set(order) - set(modules())
    where = "docs/architecture.md's import order must list every module of memokit/"
    assert not missing, f"{where}: missing {sorted(missing)}"
    assert not unknown, f"{where}: not in memokit/: {sorted(unknown)}"


def test_modules_import_only_modules_below_them() -> None:
    position = {name: i for i, name in enumerate(documented_order())}
    wrong = [
        f"{name} imports {target}, listed above it"
        for name, targets in sorted(graph().items())
        for target in sorted(targets)
        if position[target] > position[name]
    ]
    assert not wrong, "\n".join(wrong)


def test_no_module_imports_the_package_itself() -> None:
    # The conformance kit's tests import memokit as a caller's tests would.
    kit_tests = "memokit.testing.contract.test_"
    offenders = [
        name
        for name, targets in graph().items()
        if "memokit" in targets and not name.startswith(kit_tests)
    ]
    assert offenders == [], f"{offenders} import memokit/__init__.py: import the module itself"


def test_no_import_cycle() -> None:
    edges = graph()
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(name: str) -> list[str] | None:
        state[name] = 1
        path.append(name)
        for target in sorted(edges.get(name, ())):
            if state.get(target) == 1:
                return [*path[path.index(target) :], target]
            if target not in state:
                cycle = visit(target)
                if cycle:
                    return cycle
        path.pop()
        state[name] = 2
        return None

    for name in sorted(edges):
        if name not in state:
            cycle = visit(name)
            assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_modules_on_one_line_never_import_each_other() -> None:
    # docs/architecture.md: "modules on one line never import each other". Found by
    # the issue 16 review (failed on bbcc8ca: memokit.switches imports memokit.config,
    # both on one line); the test above compares positions, so it let that through.
    section = DOC.read_text().split("## Import order", 1)[1]
    block = re.search(r"```text\n(.*?)```", section, re.DOTALL)
    assert block is not None
    line_of = {
        word: number
        for number, line in enumerate(block.group(1).splitlines())
        for word in line.split()
    }
    same = [
        f"{name} imports {target}, on the same line"
        for name, targets in sorted(graph().items())
        for target in sorted(targets)
        if line_of.get(name) == line_of.get(target)
    ]
    assert not same, "\n".join(same)
