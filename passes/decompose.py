"""Decompose: inference batch norm becomes per-channel elementwise math, so it fuses with its neighbours.

``batch_norm(x, γ, β, μᵣ, σᵣ², training=False)`` is rewritten into

    scale = γ / sqrt(σᵣ² + ε)                        (C,) — one small elementwise kernel, from the CURRENT params
    y     = (x − view(μᵣ)) · view(scale) + view(β)   x's shape — joins the elementwise group of its neighbours

where ``view(v)`` is ``v`` for a 2-D ``x`` ((C,) broadcasts along axis 1 of (N, C)) and ``reshape(v, (C, 1, …))``
for rank > 2 (a unit-axis reshape that fusion reads in place, see ``passes.fuse``). Nothing is folded at compile
time: γ, β and the running statistics are params (state that changes between calls), so the scale is recomputed
by the program on every call. ``(x − μ)·s + β`` rather than ``x·s + (β − μ·s)`` keeps the interpreter's rounding
behaviour when |μ| ≫ σ (no cancellation between two large products); both forms are one pass over x.

Algorithm: when the computation holds no inference batch norm the input is returned unchanged; otherwise one
topological sweep copies every node into a new scratch graph that shares ``state`` (same names, sites and backward
flags, like ``passes.simplify``), replacing each inference batch norm by the nodes above; the last node of the
expansion keeps the batch norm's name. The mapping from old to new nodes is returned so callers can compose it.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from graphc.ir import Attrs, Graph, Node, TensorType, topo_ancestors
from ops.registry import get_op


@dataclass
class Decomposed:
    """The rewritten computation: graph, outputs and updates in the caller's order, old → new node map, report."""

    graph: Graph
    outputs: list[Node]
    updates: list[tuple[Node, Node]]
    mapping: dict[Node, Node]
    report: list[str] = field(default_factory=list)


def _scalar(value: float, like: Node) -> np.ndarray:
    array = np.asarray(value, dtype=like.type.np_dtype)
    array.setflags(write=False)
    return array


def inference_batch_norm(n: Node) -> bool:
    return n.op == "batch_norm" and not n.attrs["training"]


class _Copier:
    """Copies nodes into a new graph that shares the old graph's state."""

    def __init__(self, old: Graph) -> None:
        self.graph = Graph(old.name)
        self.graph.state = old.state
        self.graph.trainable = set(old.trainable)

    def add(self, op: str, inputs: tuple[Node, ...], attrs: dict[str, Any] | Attrs, origin: Node,
            name: str | None = None) -> Node:
        """A node ``op(inputs)`` with ``origin``'s site and backward flag (a derived name unless ``name``)."""
        o = get_op(op)
        types = tuple(x.type for x in inputs)
        if not isinstance(attrs, Attrs):
            attrs = Attrs(o.normalize(attrs, *types))
        out_type = o.infer(attrs, *types)
        scope = self.graph.backward_scope() if origin.backward else contextlib.nullcontext()
        with scope:
            return self.graph.add_node(op, inputs, attrs, out_type, site=origin.site,
                                       name=name or self.graph.unique_name(f"{origin.name}_{op}"))

    def copy(self, n: Node, inputs: tuple[Node, ...]) -> Node:
        """``n`` with the given (new) inputs: same op, attributes, type, name, site and backward flag."""
        scope = self.graph.backward_scope() if n.backward else contextlib.nullcontext()
        with scope:
            new = self.graph.add_node(n.op, inputs, n.attrs, n.type, name=n.name, site=n.site)
        if n.op == "input":
            self.graph.inputs[n.name] = new
        elif n.op == "param":
            self.graph.params[n.name] = new
        return new

    def batch_norm(self, n: Node, x: Node, gamma: Node, beta: Node, mean: Node, var: Node) -> Node:
        """The elementwise expansion of one inference batch norm (see the module docstring)."""
        eps = self.graph.add_node("const", (), {"value": _scalar(n.attrs["eps"], x)}, TensorType((), x.dtype),
                                  name=self.graph.unique_name(f"{n.name}_eps"), site=n.site)
        root = self.add("sqrt", (self.add("add", (var, eps), {}, n),), {}, n)
        scale = self.add("div", (gamma, root), {}, n)

        def view(v: Node) -> Node:
            if x.ndim == 2:
                return v
            return self.add("reshape", (v,), {"shape": (x.shape[1],) + (1,) * (x.ndim - 2)}, n)

        centered = self.add("sub", (x, view(mean)), {}, n)
        return self.add("add", (self.add("mul", (centered, view(scale)), {}, n), view(beta)), {}, n, name=n.name)


def run(graph: Graph, outputs: list[Node], updates: list[tuple[Node, Node]]) -> Decomposed:
    """Rewrite every inference batch norm the outputs and updates need (unchanged input when there is none)."""
    roots = list(outputs) + [v for _, v in updates] + [p for p, _ in updates]
    nodes = topo_ancestors(roots)
    found = [n for n in nodes if inference_batch_norm(n)]
    if not found:
        return Decomposed(graph, list(outputs), list(updates), {n: n for n in nodes}, [])
    copier = _Copier(graph)
    mapping: dict[Node, Node] = {}
    for n in nodes:
        inputs = tuple(mapping[x] for x in n.inputs)
        mapping[n] = copier.batch_norm(n, *inputs) if inference_batch_norm(n) else copier.copy(n, inputs)
    report = [f"inference batch_norm {n.name} -> (x - running_mean) * gamma / sqrt(running_var + eps) + beta "
              f"(elementwise, scale from the current params)" for n in found]
    return Decomposed(copier.graph, [mapping[n] for n in outputs], [(mapping[p], mapping[v]) for p, v in updates],
                      mapping, report)
