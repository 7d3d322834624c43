"""The Plan: the one artifact both backends execute (DESIGN §1).

A Plan is an ordered list of kernels (each a fused group of nodes), the buffer of every value that lives in
the arena (64-byte-aligned offset and size), and the bindings of inputs, params, constants, outputs and state
updates. Values of ``input``/``param``/``const`` nodes are *bound*: they live in the caller's arrays
(feeds, ``graph.state``, the constant's array), not in the arena.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from graphc.ir import Graph, Node

ALIGN = 64


@dataclass(frozen=True)
class Buffer:
    """Where one value lives: ``offset`` bytes into the arena, ``nbytes`` long."""

    offset: int
    nbytes: int


@dataclass(frozen=True)
class Kernel:
    """A fused group of nodes executed as one unit.

    ``nodes`` are in execution order; ``inputs`` are the values read from outside the group; ``outputs`` are
    the group's values that someone outside it (another kernel, a program output or an update) reads.
    ``kind`` is the fusion kind (``elementwise``, ``matmul``, ``reduce``, ...) of the group's anchor op; a fused
    group of several nodes is ``broadcast`` when one of them broadcasts, else ``elementwise``. In such a group every
    node has the same shape (the loop domain); only the group's inputs may broadcast into it.
    """

    name: str
    kind: str
    nodes: tuple[Node, ...]
    inputs: tuple[Node, ...]
    outputs: tuple[Node, ...]


@dataclass
class Plan:
    graph: Graph
    kernels: list[Kernel]
    buffers: dict[Node, Buffer]  # arena values only
    arena_bytes: int
    inputs: dict[str, Node]
    params: dict[str, Node]
    consts: list[Node]
    outputs: list[Node]
    updates: list[tuple[Node, Node]]
    report: dict[str, object] = field(default_factory=dict)
    # in-place reuse: output value -> the kernel input whose buffer it took over (same offset). The input dies at
    # that kernel; element i of the output is computed from element i of the input only, but the two pointers
    # alias, so a backend must not mark that pair ``noalias``.
    inplace: dict[Node, Node] = field(default_factory=dict)
    # user graph node -> the node of ``graph`` (the simplified scratch graph) computing its value, for every user
    # node whose value survives simplification
    node_map: dict[Node, Node] = field(default_factory=dict)

    def verify(self) -> Plan:
        """Check the memory invariants (see ``passes.memplan.verify_plan``); return self."""
        from passes.memplan import verify_plan

        return verify_plan(self)

    def describe(self) -> str:
        """Human-readable listing of kernels and buffers."""
        lines = [f"plan for graph {self.graph.name!r}: {len(self.kernels)} kernels, arena {self.arena_bytes} bytes"]
        for k in self.kernels:
            ops = " -> ".join(n.op for n in k.nodes)
            outs = ", ".join(f"{n.name}@{self.buffers[n].offset}" if n in self.buffers else n.name for n in k.outputs)
            lines.append(f"  {k.name} [{k.kind}] {ops}  => {outs}")
        return "\n".join(lines)


def align(nbytes: int) -> int:
    return (nbytes + ALIGN - 1) // ALIGN * ALIGN
