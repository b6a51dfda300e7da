"""The import graph of ``src/skillmerge``, read from the AST (function-local imports included).

Two rules of DESIGN.md are checked here without importing anything:

- no import cycle (a module reaching itself through imports), inside a package or across packages;
  imports under ``if TYPE_CHECKING:`` never run and are not edges (type annotations only);
- no stage imports a later one (data, models → train, merge, evaluate → experiment → report), and train,
  merge and evaluate never import each other.

Run it as a script (``python tests/test_import_graph.py``) to print every cycle and stage violation.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
ROOT = "skillmerge"
# The stage of each top-level subpackage; a module may import only its own stage or earlier ones. Modules
# directly under ``skillmerge`` (cli, demo, errors, ...) are not staged: the CLI and the demo orchestrate.
STAGES = {
    "data": 0,
    "models": 0,
    "world": 0,
    "train": 1,
    "merge": 1,
    "evaluate": 1,
    "experiment": 2,
    "report": 3,
}
PEERS = {"train", "merge", "evaluate"}  # one stage, never importing each other


def module_files() -> dict[str, Path]:
    """``{dotted module name: file}`` for every module of the package (``__init__`` named by its package)."""
    found = {}
    for path in sorted((SRC / ROOT).rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The longest known module prefix of ``name`` (``a.b.func`` → ``a.b``); ``None`` outside the package."""
    parts = name.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in modules:
            return candidate
        parts.pop()
    return None


def imports_of(module: str, modules: dict[str, Path]) -> set[str]:
    """Every module of the package that ``module`` imports anywhere in its file (any scope)."""
    path = modules[module]
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    targets: set[str] = set()
    for node in _executed_nodes(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                source = ".".join(anchor + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            # ``from pkg import sub`` imports the submodule when ``sub`` is one.
            names = [f"{source}.{alias.name}" for alias in node.names] or [source]
            names.append(source)
        else:
            continue
        for name in names:
            resolved = _resolve(name, modules)
            if resolved is not None and resolved != module:
                targets.add(resolved)
    # Importing a module always imports its parent packages first; that is not an edge one can remove.
    ancestors = {".".join(module.split(".")[:i]) for i in range(1, module.count(".") + 1)}
    return targets - ancestors


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _executed_nodes(tree: ast.AST) -> list[ast.AST]:
    """Every node that can run (any scope), minus ``if TYPE_CHECKING:`` bodies: those imports never execute,
    they only name types for a checker (their ``else`` branch does run and is kept)."""
    found: list[ast.AST] = []
    stack = [tree]
    while stack:
        node = stack.pop()
        found.append(node)
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
            continue
        stack.extend(ast.iter_child_nodes(node))
    return found


def import_graph() -> dict[str, set[str]]:
    modules = module_files()
    return {module: imports_of(module, modules) for module in modules}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected group of two or more modules (Tarjan), each sorted; none means no cycle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(groups)


def _stage(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and parts[1] in STAGES) else None


def stage_violations(graph: dict[str, set[str]]) -> list[str]:
    """``a imports b`` lines where b's stage is later than a's, or a and b are different peer stages."""
    bad = []
    for module, targets in sorted(graph.items()):
        own = _stage(module)
        if own not in STAGES:
            continue
        for target in sorted(targets):
            other = _stage(target)
            if other not in STAGES or other == own:
                continue
            if STAGES[other] > STAGES[own] or (own in PEERS and other in PEERS):
                bad.append(f"{module} imports {target} ({own} → {other})")
    return bad


def test_the_package_has_modules_and_edges() -> None:
    graph = import_graph()
    assert len(graph) > 50
    # The reader sees function-local imports: the CLI imports the experiment runner inside a command.
    assert "skillmerge.experiment.runner" in graph["skillmerge.experiment.command"]


def test_no_import_cycle_anywhere_in_the_package() -> None:
    found = cycles(import_graph())
    assert found == [], "cycles among: " + "; ".join(", ".join(group) for group in found)


def test_no_stage_imports_a_later_stage() -> None:
    violations = stage_violations(import_graph())
    assert violations == [], "\n".join(violations)


def test_function_local_imports_count_and_type_checking_imports_do_not(tmp_path: Path) -> None:
    source = (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from skillmerge.report import tables\n"
        "def f():\n    from skillmerge.merge import engine\n"
    )
    modules = {
        "skillmerge.x": tmp_path / "x.py",
        "skillmerge.report.tables": Path(),
        "skillmerge.merge.engine": Path(),
    }
    modules["skillmerge.x"].write_text(source)
    assert imports_of("skillmerge.x", modules) == {"skillmerge.merge.engine"}


def test_the_checker_finds_a_planted_cycle() -> None:
    graph = {"p.a": {"p.b"}, "p.b": {"p.c"}, "p.c": {"p.a"}, "p.d": {"q.x"}, "q.x": set()}
    assert cycles(graph) == [["p.a", "p.b", "p.c"]]
    assert stage_violations({"skillmerge.train.sft": {"skillmerge.merge.engine"}}) == [
        "skillmerge.train.sft imports skillmerge.merge.engine (train → merge)"
    ]


if __name__ == "__main__":
    g = import_graph()
    for group in cycles(g):
        print("cycle among:", ", ".join(group))
    for line in stage_violations(g):
        print("stage:", line)
    sys.exit(0)
