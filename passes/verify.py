"""``verify(graph)``: checks that a graph is well formed.

For every node: its inputs belong to the same graph and were created before it (acyclic, topologically
ordered); leaves have no inputs and params have state of their type; every other op is registered, takes
that many operands, and re-running its type inference on the stored attributes gives the stored type.
Node names are unique, and ``graph.inputs`` / ``graph.params`` name nodes of this graph.
"""

from __future__ import annotations

from graphc.ir import Graph, GraphcError, TensorType
from ops.base import OpError
from ops.registry import REGISTRY


def verify(graph: Graph) -> Graph:
    """Raise :class:`GraphcError` listing every problem found; return the graph when it is well formed."""
    problems = []
    names: set[str] = set()
    for position, node in enumerate(graph.nodes):
        where = f"{node.op} {node.name!r} (at {node.site})"
        if node.id != position or node.graph is not graph:
            problems.append(f"{where}: stale id or foreign node")
        if node.name in names:
            problems.append(f"{where}: another node has the same name")
        names.add(node.name)
        if not isinstance(node.type, TensorType):
            problems.append(f"{where}: type {node.type!r} is not a TensorType")
            continue
        for x in node.inputs:
            if x.graph is not graph or x.id >= node.id or graph.nodes[x.id] is not x:
                problems.append(f"{where}: input {x.name!r} is not an earlier node of this graph")
        if node.is_leaf:
            if node.inputs:
                problems.append(f"{where}: a leaf has inputs")
            if node.op == "param":
                value = graph.state.get(node.name)
                if value is None or value.shape != node.shape or value.dtype != node.type.np_dtype:
                    problems.append(f"{where}: graph.state[{node.name!r}] does not hold a {node.type} array")
            continue
        op = REGISTRY.get(node.op)
        if op is None:
            problems.append(f"{where}: unknown op")
            continue
        if op.arity is not None and len(node.inputs) != op.arity:
            problems.append(f"{where}: {len(node.inputs)} operands, op takes {op.arity}")
            continue
        try:
            types = tuple(x.type for x in node.inputs)
            inferred = op.infer(op.normalize(node.attrs, *types), *types)
        except (OpError, GraphcError, KeyError, TypeError, ValueError) as err:
            problems.append(f"{where}: type inference fails: {err}")
            continue
        if inferred != node.type:
            problems.append(f"{where}: stored type {node.type}, inference gives {inferred}")
    for kind, table in (("input", graph.inputs), ("param", graph.params)):
        for name, node in table.items():
            if node.op != kind or node.name != name or node.graph is not graph or \
                    node.id >= len(graph.nodes) or graph.nodes[node.id] is not node:
                problems.append(f"graph.{kind}s[{name!r}] is not the {kind} node of that name in this graph")
    if problems:
        raise GraphcError(f"graph {graph.name!r} failed verification:\n  " + "\n  ".join(problems))
    return graph
