"""The layout as a contract (DESIGN §2): no import cycles, imports only go down the layer table, every module
imports on its own in a fresh interpreter, and importing the IR or the public face runs nothing else.

Import edges are read from the source (module-level *and* function-level imports, ``TYPE_CHECKING`` blocks
included): ``import a.b`` is an edge to ``a.b``; ``from a import b`` is an edge to ``a`` and to ``a.b`` (when that
is a module), because the statement runs ``a/__init__.py``. Each name resolves to the longest module of the five
packages it starts with.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import networkx as nx
import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("graphc", "ops", "passes", "codegen", "runtime")
# bottom to top; a module may import modules of its own layer or below
LAYERS = ("graphc.ir", "ops", "passes", "codegen", "runtime", "graphc")
IR = ("graphc.ir", "graphc.errors")  # the IR layer: the IR and its errors (graphc.ir re-exports them)


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


MODULES = _modules()


def _resolve(name: str) -> str | None:
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _imports(module: str, path: Path) -> set[tuple[str, int]]:
    """(imported module of the five packages, line) for every import statement in ``path``."""
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package[: len(package) - node.level + 1] + ([base] if base else []))
            names = [base] + [f"{base}.{alias.name}" for alias in node.names]
        for name in names:
            target = _resolve(name)
            if target is not None and target != module:
                found.add((target, node.lineno))
    return found


def import_graph() -> nx.DiGraph:
    graph = nx.DiGraph()
    graph.add_nodes_from(MODULES)
    for module, path in MODULES.items():
        for target, line in _imports(module, path):
            graph.add_edge(module, target, line=line)
    return graph


def layer(module: str) -> int:
    if module in IR:
        return 0
    return LAYERS.index(module.split(".")[0])


def test_the_import_graph_has_no_cycles():
    cycles = [sorted(c) for c in nx.strongly_connected_components(import_graph()) if len(c) > 1]
    assert not cycles, f"import cycles: {cycles}"


def test_imports_only_go_down_the_layer_table():
    graph = import_graph()
    upward = [f"{a} (layer {LAYERS[layer(a)]}) imports {b} (layer {LAYERS[layer(b)]}) "
              f"at line {graph.edges[a, b]['line']}" for a, b in graph.edges if layer(b) > layer(a)]
    assert not upward, "\n".join(upward)


def test_library_code_never_imports_the_public_face():
    graph = import_graph()
    users = [f"{a} line {graph.edges[a, 'graphc']['line']}" for a in graph.predecessors("graphc")]
    assert not users, f"modules importing the public face `graphc` (import the module that defines the name): {users}"


def test_codegen_reads_only_the_plan_type_from_passes():
    graph = import_graph()
    wrong = [(a, b) for a, b in graph.edges
             if a.startswith("codegen") and b.startswith("passes") and b != "passes.plan"]
    assert not wrong, f"codegen must import only passes.plan from passes: {wrong}"


def test_the_ir_imports_nothing_of_graphc_but_its_errors():
    graph = import_graph()
    assert set(graph.successors("graphc.ir")) <= {"graphc.errors"} and not list(graph.successors("graphc.errors"))


def _fresh_import(module: str) -> tuple[str, int, str]:
    result = subprocess.run([sys.executable, "-c", f"import {module}"], cwd=ROOT, capture_output=True, text=True,
                            timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})
    return module, result.returncode, result.stderr[-2000:]


def test_every_module_imports_on_its_own_in_a_fresh_interpreter():
    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
        results = list(pool.map(_fresh_import, sorted(MODULES)))
    failed = [f"{module}:\n{stderr}" for module, code, stderr in results if code]
    assert not failed, "\n\n".join(failed)


@pytest.mark.parametrize("module, allowed", [("graphc.ir", {"graphc", "graphc.ir", "graphc.errors"}),
                                             ("graphc", {"graphc"})])
def test_importing_the_ir_or_the_face_runs_nothing_else(module, allowed):
    code = (f"import sys, {module}\n"
            f"print(sorted(m for m in sys.modules if m.split('.')[0] in {PACKAGES!r}))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)}).stdout
    assert set(ast.literal_eval(out)) == allowed


def test_the_face_loads_names_lazily_and_completely():
    code = ("import graphc as gc, sys\n"
            "names = [n for n in gc.__all__ if getattr(gc, n, None) is None]\n"
            "assert not names, names\n"
            "g = gc.Graph('g'); x = g.input('x', (2,)); y = (x * 2.0 + 1.0).sum()\n"
            "print(type(gc.grad(y, x)).__name__)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "Node"


def test_graph_and_plan_export_to_networkx():
    import numpy as np

    import graphc as gc
    from passes.pipeline import build_plan

    g = gc.Graph("nx")
    x = g.input("x", (4, 3))
    w = g.param("w", np.ones((3, 2), np.float32))
    h = x @ w
    y = (gc.relu(h) * h).sum()
    graph = g.to_networkx()
    assert nx.is_directed_acyclic_graph(graph)
    assert set(graph.nodes) == {n.name for n in g.nodes}
    assert graph.nodes[h.name]["op"] == "matmul" and graph.nodes[h.name]["shape"] == (4, 2)
    assert graph.edges[x.name, h.name]["positions"] == [0]
    assert list(nx.topological_sort(graph))[-1] == y.name
    plan = build_plan([y], [])
    kernels = plan.to_networkx()
    assert list(nx.topological_sort(kernels)) == [k.name for k in plan.kernels]
    assert kernels.graph["arena_bytes"] == plan.arena_bytes
    (first, second), = kernels.edges  # matmul (with its relu·h epilogue) → sum
    assert kernels.edges[first, second]["bytes"] == 4 * 2 * 4
