"""No import loops in the package: every module can be read, and imported alone, without another
module that needs it half-imported (issue 27: openapi <-> handlers/pages, errors <-> ratelimit/limiter)."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "monoai_tornado"


def _name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_name(path): path for path in PACKAGE.rglob("*.py")}


def _imports(module: str) -> set[str]:
    """The package's modules ``module`` imports anywhere: at the top, inside functions (an import
    put off to run time is still a loop) and under ``TYPE_CHECKING`` (one the type checker follows)."""
    path = MODULES[module]
    here = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = ".".join((here[: len(here) - node.level + 1] if node.level else []) + [node.module or ""]).strip(".")
            targets = [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in MODULES:  # "pkg.mod.Name" names the module "pkg.mod"
                target = target.rpartition(".")[0]
            if target and target != module:
                found.add(target)
    return found


def _loops(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    loops: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in graph[node]:
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            group = stack[stack.index(node):]
            del stack[stack.index(node):]
            if len(group) > 1:
                loops.append(sorted(group))

    for node in graph:
        if node not in index:
            visit(node)
    return loops


def test_the_package_has_no_import_loop() -> None:
    graph = {module: _imports(module) for module in MODULES}
    assert graph["monoai_tornado.handlers.pages"] >= {"monoai_tornado.openapi"}  # the graph is read
    # On a failure: move what both modules need into a third one that imports neither (like
    # openapi_parts.py, static_files.py, ratelimit/state.py, version.py), or pass it as data.
    assert _loops(graph) == []


@pytest.mark.slow
@pytest.mark.parametrize("module", ["monoai_tornado.openapi", "monoai_tornado.handlers.pages",
                                    "monoai_tornado.errors", "monoai_tornado.ratelimit.limiter",
                                    "monoai_tornado.openapi_v1", "monoai_tornado.routes"])
def test_each_module_imports_alone_in_a_fresh_interpreter(module: str) -> None:
    done = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
