"""Decompose: nodes whose op says they are better computed as simpler ops are rewritten into those ops.

The op decides (``Op.decomposition(node)`` says whether and how, ``Op.decompose(node, inputs, b)`` builds it), so
this pass knows no op by name. Today's case is inference batch norm, which becomes per-channel elementwise math
that fuses with its neighbours::

    scale = γ / sqrt(σᵣ² + ε)                        (C,) — one small kernel, from the CURRENT params
    y     = (x − view(μᵣ)) · view(scale) + view(β)   x's shape — joins the elementwise group of its neighbours

Nothing is folded at compile time: γ, β and the running statistics are params (state that changes between calls).

Algorithm: when no node the outputs and updates need has a decomposition, the input is returned unchanged;
otherwise one topological sweep copies every node into a new scratch graph that shares ``state`` (same names,
sites and backward flags, like ``passes.simplify``), replacing each decomposed node by the nodes its op builds;
the last of them (``b.result``) keeps the original node's name. The old → new node map is returned so callers
can compose it.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from graphc.ir import Attrs, Graph, Node, TensorType, topo_ancestors
from ops.registry import get_op
from passes.compilation import Compilation, Pass
from passes.provenance import Provenance


@dataclass
class Decomposed:
    """The rewritten computation: graph, outputs and updates in the caller's order, old → new node map, report."""

    graph: Graph
    outputs: list[Node]
    updates: list[tuple[Node, Node]]
    mapping: dict[Node, Node]
    report: list[str] = field(default_factory=list)


def decomposition(n: Node) -> str | None:
    """How ``n`` is decomposed (None: it is kept as it is)."""
    return None if n.is_leaf else get_op(n.op).decomposition(n)


class _Copier:
    """Copies nodes into a new graph that shares the old graph's state; the builder ``Op.decompose`` uses."""

    def __init__(self, old: Graph) -> None:
        self.graph = Graph(old.name)
        self.graph.state = old.state
        self.graph.trainable = set(old.trainable)
        self.origin: Node | None = None  # the node being decomposed: its site, backward flag and name

    def _scope(self, n: Node) -> contextlib.AbstractContextManager[None]:
        return self.graph.backward_scope() if n.backward else contextlib.nullcontext()

    def _add(self, op: str, inputs: tuple[Node, ...], attrs: dict[str, Any], name: str) -> Node:
        assert self.origin is not None
        o = get_op(op)
        types = tuple(x.type for x in inputs)
        normalized = Attrs(o.normalize(attrs, *types))
        with self._scope(self.origin):
            return self.graph.add_node(op, inputs, normalized, o.infer(normalized, *types), name=name,
                                       site=self.origin.site)

    def emit(self, op: str, *inputs: Node, **attrs: Any) -> Node:
        """An intermediate node of the expansion (a name derived from the decomposed node's)."""
        assert self.origin is not None
        return self._add(op, inputs, attrs, self.graph.unique_name(f"{self.origin.name}_{op}"))

    def result(self, op: str, *inputs: Node, **attrs: Any) -> Node:
        """The node that stands for the decomposed one (it takes its name)."""
        assert self.origin is not None
        return self._add(op, inputs, attrs, self.origin.name)

    def const(self, value: float, like: Node) -> Node:
        """A scalar constant of ``like``'s dtype."""
        assert self.origin is not None
        array = np.asarray(value, dtype=like.type.np_dtype)
        array.setflags(write=False)
        return self.graph.add_node("const", (), {"value": array}, TensorType((), like.dtype),
                                   name=self.graph.unique_name(f"{self.origin.name}_const"), site=self.origin.site)

    def copy(self, n: Node, inputs: tuple[Node, ...]) -> Node:
        """``n`` with the given (new) inputs: same op, attributes, type, name, site and backward flag."""
        with self._scope(n):
            new = self.graph.add_node(n.op, inputs, n.attrs, n.type, name=n.name, site=n.site)
        if n.op == "input":
            self.graph.inputs[n.name] = new
        elif n.op == "param":
            self.graph.params[n.name] = new
        return new

    def decompose(self, n: Node, inputs: tuple[Node, ...]) -> Node:
        self.origin = n
        try:
            return get_op(n.op).decompose(n, inputs, self)
        finally:
            self.origin = None


def run(graph: Graph, outputs: list[Node], updates: list[tuple[Node, Node]],
        provenance: Provenance | None = None) -> Decomposed:
    """Rewrite every decomposable node the outputs and updates need (unchanged input when there is none); each
    decomposition is recorded in ``provenance``."""
    roots = list(outputs) + [v for _, v in updates] + [p for p, _ in updates]
    nodes = topo_ancestors(roots)
    report = [line for n in nodes if (line := decomposition(n)) is not None]
    if not report:
        return Decomposed(graph, list(outputs), list(updates), {n: n for n in nodes}, [])
    copier = _Copier(graph)
    mapping: dict[Node, Node] = {}
    for n in nodes:
        inputs = tuple(mapping[x] for x in n.inputs)
        how = decomposition(n)
        mapping[n] = copier.decompose(n, inputs) if how is not None else copier.copy(n, inputs)
        if how is not None and provenance is not None:
            provenance.record(n, "decompose", "decompose", f"decomposed: {how}", into=mapping[n])
    return Decomposed(copier.graph, [mapping[n] for n in outputs], [(mapping[p], mapping[v]) for p, v in updates],
                      mapping, report)


def _run(c: Compilation) -> Compilation:
    result = run(c.graph, c.outputs, c.updates, c.provenance)
    return c.remapped(result.graph, result.outputs, result.updates, result.mapping,
                      report={**c.report, "decompose": result.report})


PASS = Pass("decompose", "ops rewritten into simpler ops where the op asks for it (inference batch_norm as "
                         "per-channel elementwise math that fuses)", _run)
