"""The ordered compiler pipeline: graph → Plan (DESIGN §1, §5).

``PASSES`` lists the stages in order, for ``graphc passes`` and dumps. Autodiff already ran when the graph was
built (``gc.grad`` adds gradient nodes), so the Plan is lowered from the nodes the outputs and updates need:

0. ``simplify``: constant folding, algebraic identities, CSE and DCE into a scratch graph that shares the user
   graph's ``state`` (the user's graph is never changed; ``Plan.graph`` is the scratch graph and ``Plan.outputs``
   / ``Plan.updates`` hold its nodes in the order given, ``Plan.node_map`` maps user nodes to them);
0b. ``decompose``: inference batch norm becomes (x − μᵣ)·γ/√(σᵣ² + ε) + β, elementwise ops that fuse with their
   neighbours (``passes.decompose``; a new scratch graph only when there is such a batch norm);
1. ``fuse``: elementwise/broadcast chains become one kernel each; everything else one kernel per node;
2. ``schedule``: a kernel order that keeps peak live memory low;
3. ``memplan``: arena offsets with best-fit reuse and in-place updates;
4. ``verify_plan``: the Plan's invariants (no overlapping live buffers, ...) are checked on every build — it is
   linear in the plan size, so it always runs (``GRAPHC_DEBUG=1`` additionally re-verifies the graph).
"""

from __future__ import annotations

import os

from graphc.ir import Node, topo_ancestors
from passes import decompose, fuse, memplan, schedule, simplify
from passes.plan import Plan
from passes.verify import verify

PASSES: tuple[tuple[str, str], ...] = (
    ("autodiff", "gradients as graph nodes (done by gc.grad when the graph is built)"),
    ("simplify", "constant folding, algebraic identities, CSE, dead-code elimination"),
    ("fuse", "inference batch_norm as elementwise math (passes.decompose), then elementwise/broadcast chains "
             "into one kernel"),
    ("schedule", "kernel order with low peak live memory"),
    ("memplan", "arena offsets: liveness, best-fit reuse, in-place"),
    ("verify_plan", "no overlapping live buffers, every value bound or buffered"),
)


def debug() -> bool:
    return os.environ.get("GRAPHC_DEBUG", "") not in ("", "0")


def build_plan(outputs: list[Node], updates: list[tuple[Node, Node]]) -> Plan:
    """Lower the computation of ``outputs`` and ``updates`` to a verified Plan."""
    if debug():
        verify((list(outputs) or [v for _, v in updates])[0].graph)
    simple = simplify.run(outputs, updates)
    dec = decompose.run(simple.graph, simple.outputs, simple.updates)
    outputs, updates, graph = dec.outputs, dec.updates, dec.graph
    node_map = {user: dec.mapping[n] for user, n in simple.mapping.items() if n in dec.mapping}
    roots = outputs + [value for _, value in updates]
    nodes = topo_ancestors(roots)
    if debug():
        verify(graph)
    kernels, fusion_report = fuse.run(nodes, outputs, updates)
    fusion_report[1:1] = dec.report
    keep = set(roots)
    ordered = schedule.run(kernels, keep=keep)
    mem = memplan.run(ordered, outputs, updates)
    plan = Plan(graph=graph, kernels=ordered, buffers=mem.buffers, arena_bytes=mem.arena_bytes,
                inputs={n.name: n for n in nodes if n.op == "input"},
                params={n.name: n for n in nodes if n.op == "param"},
                consts=[n for n in nodes if n.op == "const"], outputs=outputs, updates=updates,
                report={"simplify": simple.report, "fusion": fusion_report, "memory": mem.report,
                        "schedule": [f"{len(ordered)} kernels; peak live bytes {schedule.peak_bytes(ordered, keep)}"
                                     f" (creation order: {schedule.peak_bytes(kernels, keep)})"]},
                inplace=mem.inplace, node_map=node_map)
    memplan.verify_plan(plan)
    return plan
