"""``verify(graph)``: checks that a graph is well formed.

For every node: its inputs belong to the same graph and were created before it (acyclic, topologically
ordered); leaves have no inputs and params have state of their type; every other op is registered, takes
that many operands, and re-running its type inference on the stored attributes gives the stored type.
"""

from __future__ import annotations

from graphc.ir import Graph, GraphcError
from ops.base import OpError
from ops.registry import REGISTRY


def verify(graph: Graph) -> Graph:
    """Raise :class:`GraphcError` listing every problem found; return the graph when it is well formed."""
    problems = []
    for position, node in enumerate(graph.nodes):
        where = f"{node.op} {node.name!r} (at {node.site})"
        if node.id != position or node.graph is not graph:
            problems.append(f"{where}: stale id or foreign node")
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
        except OpError as err:
            problems.append(f"{where}: {err}")
            continue
        if inferred != node.type:
            problems.append(f"{where}: stored type {node.type}, inference gives {inferred}")
    if problems:
        raise GraphcError(f"graph {graph.name!r} failed verification:\n  " + "\n  ".join(problems))
    return graph
