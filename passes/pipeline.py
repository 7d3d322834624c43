"""The compile pipeline: graph → Plan, as data (DESIGN §1, §5).

``PIPELINE`` is the ordered tuple of pass objects (each a name, a description and ``run(c) -> c`` over a
:class:`~passes.compilation.Compilation`); ``build_plan`` is a loop over it that times every pass, re-verifies
the graph after each one under ``GRAPHC_DEBUG=1``, and always checks the finished Plan's memory invariants
(``verify_plan``, linear in the plan size). ``graphc passes`` and ``gc.compile(..., dump_dir=...)`` read their
stages from the same tuple.

Autodiff is not a stage here: ``gc.grad`` adds the gradient nodes when the graph is built (:data:`BEFORE`), so the
pipeline starts from the nodes the outputs and updates need. Simplify and decompose build scratch graphs that
share the user graph's ``state``; the user's graph is never changed (``Plan.node_map`` maps its nodes to the
scratch nodes computing them).
"""

from __future__ import annotations

import os
import time

import passes.decompose as decompose
import passes.fuse as fuse
import passes.memplan as memplan
import passes.schedule as schedule
import passes.simplify as simplify
from graphc.ir import Node
from passes.compilation import Compilation, Pass
from passes.plan import Plan, verify_plan
from passes.verify import verify

BEFORE = Pass("autodiff", "gradients as graph nodes (gc.grad, when the graph is built; not a compile stage)",
              lambda c: c)
PIPELINE: tuple[Pass, ...] = (simplify.PASS, decompose.PASS, fuse.PASS, schedule.PASS, memplan.PASS)
CHECK = "verify_plan"  # the invariant check after the last pass (its time is reported too)


def debug() -> bool:
    return os.environ.get("GRAPHC_DEBUG", "") not in ("", "0")


def build_plan(outputs: list[Node], updates: list[tuple[Node, Node]],
               pipeline: tuple[Pass, ...] = PIPELINE) -> Plan:
    """Lower the computation of ``outputs`` and ``updates`` to a verified Plan by running ``pipeline``."""
    c = Compilation.start(outputs, updates)
    if debug():
        verify(c.graph)
    timings: dict[str, float] = {}
    for stage in pipeline:
        start = time.perf_counter()
        c = stage.run(c)
        timings[stage.name] = time.perf_counter() - start
        if debug():
            verify(c.graph)
    start = time.perf_counter()
    plan = to_plan(c, timings)
    verify_plan(plan)
    plan.timings[CHECK] = time.perf_counter() - start
    return plan


def to_plan(c: Compilation, timings: dict[str, float] | None = None) -> Plan:
    """The Plan of a Compilation that went through the whole pipeline."""
    if c.kernels is None or c.buffers is None:
        raise ValueError("to_plan: the compilation has not been fused and memory-planned yet")
    nodes = c.nodes()
    return Plan(graph=c.graph, kernels=list(c.kernels), buffers=c.buffers, arena_bytes=c.arena_bytes,
                inputs={n.name: n for n in nodes if n.op == "input"},
                params={n.name: n for n in nodes if n.op == "param"},
                consts=[n for n in nodes if n.op == "const"], outputs=c.outputs, updates=c.updates,
                report=dict(c.report), inplace=c.inplace, state_inplace=c.state_inplace, slices=c.slices,
                node_map=c.node_map, timings=dict(timings or {}), provenance=c.provenance)
