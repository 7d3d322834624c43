"""The ordered compiler pipeline: graph → Plan.

For now: one kernel per non-leaf node in topological order and one arena buffer per value (no reuse).
The fuse / schedule / memplan passes replace these steps as they land.
"""

from __future__ import annotations

from graphc.ir import Node, topo_ancestors
from ops.registry import get_op
from passes.plan import Buffer, Kernel, Plan, align


def build_plan(outputs: list[Node], updates: list[tuple[Node, Node]]) -> Plan:
    """Lower the computation of ``outputs`` and ``updates`` to a Plan."""
    roots = list(outputs) + [value for _, value in updates]
    nodes = topo_ancestors(roots)
    graph = roots[0].graph
    users: dict[Node, int] = {}
    for n in nodes:
        for x in n.inputs:
            users[x] = users.get(x, 0) + 1
    kernels, buffers, offset = [], {}, 0
    for n in nodes:
        if n.is_leaf:
            continue
        kernels.append(Kernel(f"k{len(kernels)}_{n.op}", get_op(n.op).kind,
                              (n,), tuple(dict.fromkeys(n.inputs)), (n,)))
        buffers[n] = Buffer(offset, n.type.nbytes)
        offset += align(max(n.type.nbytes, 1))
    return Plan(graph=graph, kernels=kernels, buffers=buffers, arena_bytes=offset,
                inputs={n.name: n for n in nodes if n.op == "input"},
                params={n.name: n for n in nodes if n.op == "param"},
                consts=[n for n in nodes if n.op == "const"], outputs=list(outputs), updates=list(updates))

