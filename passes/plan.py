"""The Plan: the one artifact both backends execute (DESIGN §1).

A Plan is an ordered list of kernels (each a fused group of nodes), the buffer of every value that lives in
the arena (64-byte-aligned offset and size), and the bindings of inputs, params, constants, outputs and state
updates. Values of ``input``/``param``/``const`` nodes are *bound*: they live in the caller's arrays
(feeds, ``graph.state``, the constant's array), not in the arena.
"""

from __future__ import annotations

import bisect
import heapq
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from graphc.ir import Graph, GraphcError, Node
from ops.base import Op
from ops.registry import get_op
from passes.provenance import Provenance

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
    node has the same shape (the loop domain); only the group's inputs may broadcast into it. ``anchor`` is the
    kernel's one structured node (a matmul with folded operand transposes and an epilogue, a conv2d, a pool, ...);
    None for a fused elementwise group, whose members are all elementwise/broadcast ops or views.
    """

    name: str
    kind: str
    nodes: tuple[Node, ...]
    inputs: tuple[Node, ...]
    outputs: tuple[Node, ...]
    anchor: Node | None = None


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
    # in-place state updates (``passes.memplan.choose_state_inplace``), in update order: param -> its update value,
    # which the kernel computing it writes straight into ``graph.state[param]`` (no copy after the call; kernels
    # after it that read the value read the param's state array). Such a value has no arena buffer. The runtime
    # copies every other update value from the arena into ``graph.state`` after the call.
    state_inplace: dict[Node, Node] = field(default_factory=dict)
    # concat slices (``passes.concat_slices``): an input of a concat -> (the concat's value, byte offset): its kernel
    # computes it straight into that part of the concat's buffer, which the concat then does not copy
    slices: dict[Node, tuple[Node, int]] = field(default_factory=dict)
    # user graph node -> the node of ``graph`` (the simplified scratch graph) computing its value, for every user
    # node whose value survives simplification
    node_map: dict[Node, Node] = field(default_factory=dict)
    # seconds each pipeline stage took to build this plan, in pipeline order (``graphc passes --timings``)
    timings: dict[str, float] = field(default_factory=dict)
    # what each pass did to each node (rewrites, CSE, folds, fusion boundaries, in-place reuse): ``graphc explain``
    provenance: Provenance = field(default_factory=Provenance)
    # forward convs' algorithms measured fastest on this machine (``gc.compile(..., tune=True)``,
    # ``runtime.conv_tune``), by ``codegen.conv_choice.tuning_key``; empty: the rule of thumb everywhere
    algorithms: dict[str, str] = field(default_factory=dict)

    @property
    def kept(self) -> set[Node]:
        """The values read after the kernels (program outputs and the update values copied into ``graph.state``):
        they stay live in the arena to the end of the program."""
        in_state = set(self.state_inplace.values())
        return set(self.outputs) | {v for _, v in self.updates if v not in in_state}

    def verify(self) -> Plan:
        """Check the memory invariants (see :func:`verify_plan`); return self."""
        return verify_plan(self)

    def to_networkx(self) -> Any:
        """The kernel dependency graph as a ``networkx.DiGraph``: one node per kernel (by name) with its
        ``index``, ``kind``, ``ops`` and ``outputs`` (value names); an edge producer → consumer per kernel boundary
        with the ``values`` passed and their ``bytes``. ``graph["arena_bytes"]`` is the planned arena size."""
        import networkx as nx

        g = nx.DiGraph(arena_bytes=self.arena_bytes, name=self.graph.name)
        producer: dict[Node, str] = {}
        for i, k in enumerate(self.kernels):
            g.add_node(k.name, index=i, kind=k.kind, ops=[n.op for n in k.nodes], outputs=[v.name for v in k.outputs])
            producer.update((v, k.name) for v in k.outputs)
        for k in self.kernels:
            for x in k.inputs:
                if x in producer:
                    if not g.has_edge(producer[x], k.name):
                        g.add_edge(producer[x], k.name, values=[], bytes=0)
                    edge = g.edges[producer[x], k.name]
                    edge["values"].append(x.name)
                    edge["bytes"] += x.type.nbytes
        return g

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


def concat_offsets(y: Node) -> list[int] | None:
    """Byte offset in the concat ``y`` of each of its inputs when each is one contiguous run of y's bytes (every
    axis before the concatenation axis has extent 1), else None."""
    axis = y.attrs["axis"]
    if math.prod(y.shape[:axis]) != 1:
        return None
    row = math.prod(y.shape[axis + 1:]) * y.type.np_dtype.itemsize
    found, at = [], 0
    for x in y.inputs:
        found.append(at)
        at += x.shape[axis] * row
    return found


class PlanError(GraphcError):
    """A Plan breaks an invariant (overlapping live buffers, a missing or misaligned buffer, ...)."""


# ------------------------------------------------------------------------------------------- in place


def inplace_candidates(kernel: Kernel, output: Node) -> list[Node]:
    """Inputs of ``kernel`` whose buffer ``output`` may take over when they die here (before size/liveness; see
    step 2 of :mod:`passes.memplan`)."""
    if len(kernel.nodes) == 1:
        node = kernel.nodes[0]
        return [node.inputs[0]] if get_op(node.op).inplace and node.inputs else []
    if kernel.anchor is not None or not all(get_op(n.op).fusible for n in kernel.nodes):
        return []
    refused = {id(x) for n in kernel.nodes if not get_op(n.op).inplace for x in n.inputs}
    return [x for x in kernel.inputs if x.shape == output.shape and id(x) not in refused]


def may_fail(kernel: Kernel) -> bool:
    """True when one of ``kernel``'s ops may report bad data at run time through the status word (an out-of-range
    label or index, a failed collective): the ops that define ``Op.status_message``."""
    return any(type(get_op(n.op)).status_message is not Op.status_message for n in kernel.nodes)


@dataclass(frozen=True)
class GradientStep:
    """``value = param − anchor·scale``: the nodes of one plain SGD step on the anchor's output.

    ``optim.SGD`` without momentum or weight decay updates a weight as ``u = p − g·s`` (``sub(p, mul(g, lr))``). When
    ``g`` is a matmul's output — a dense layer's weight gradient xᵀ·δ — that nothing else reads, ``passes.fuse``
    merges the step into the matmul's kernel as its epilogue, ``passes.memplan`` may write ``u`` over ``p``'s state
    (the kernel reads ``p`` only at the index it writes: :func:`reads_at_own_index`), and ``codegen.linalg`` emits
    one GEMM that accumulates ``−s·xᵀ·δ`` straight onto the weight (``emit_gemm(accumulate=True, alpha=−s)``): no
    gradient buffer, no separate update pass over the weight.
    """

    param: Node   # p, a leaf of the anchor's shape and dtype
    scale: Node   # s, one element (the learning rate)
    step: Node    # mul(anchor, s)
    value: Node   # sub(p, step): the new weight


def gradient_step(anchor: Node, chain: Sequence[Node]) -> GradientStep | None:
    """The step when ``chain`` (the nodes fused after ``anchor``, any order) is exactly ``mul(anchor, s)`` (or
    ``mul(s, anchor)``) and ``sub(p, that)``, with ``s`` of one element and ``p`` a leaf of ``anchor``'s shape and
    dtype that the product does not read; else None."""
    if len(chain) != 2:
        return None
    subs = [n for n in chain if n.op == "sub"]
    muls = [n for n in chain if n.op == "mul"]
    if len(subs) != 1 or len(muls) != 1 or subs[0].inputs[1] is not muls[0]:
        return None
    step, value = muls[0], subs[0]
    x, y = step.inputs
    scale = y if x is anchor else x if y is anchor else None
    param = value.inputs[0]
    if scale is None or scale is anchor or scale.size != 1 or not param.is_leaf or param in anchor.inputs:
        return None
    if not (param.shape == step.shape == value.shape == anchor.shape) or param.dtype != anchor.dtype:
        return None
    return GradientStep(param, scale, step, value)


def reads_at_own_index(kernel: Kernel, param: Node, value: Node) -> bool:
    """True when ``kernel``, which computes ``value``, reads ``param`` only at the index where it writes ``value``,
    so ``value`` may overwrite ``param``'s storage element by element: ``param`` is one of the
    :func:`inplace_candidates` of ``value``, or the kernel is a fused group whose only non-fusible members are views
    of other values and every member reading ``param`` is an ``inplace`` op of the group's domain shape, or the
    kernel is a matmul whose only reader of ``param`` is plain SGD's step (``passes.plan.gradient_step``)."""
    if param.shape != value.shape:
        return False
    if param in inplace_candidates(kernel, value):
        return True
    if kernel.anchor is not None and get_op(kernel.anchor.op).kind == "matmul":  # plain SGD's step on its gradient
        step = gradient_step(kernel.anchor, [n for n in kernel.nodes if get_op(n.op).fusible])
        return (step is not None and step.param is param and step.value is value
                and not any(x is param for n in kernel.nodes if n is not value for x in n.inputs))
    if kernel.anchor is not None or len(kernel.nodes) < 2 or not get_op(value.op).fusible:
        return False
    ops = {n: get_op(n.op) for n in kernel.nodes}
    if not all(op.fusible or op.is_view(n) for n, op in ops.items()):
        return False
    return all(ops[n].fusible and ops[n].inplace and n.shape == value.shape
               for n in kernel.nodes if any(x is param for x in n.inputs))


# ------------------------------------------------------------------------------------------- liveness


def intervals(kernels: list[Kernel], keep: set[Node]) -> dict[Node, tuple[int, int]]:
    """Live interval ``(def, last use)`` of every kernel output; values in ``keep`` live to ``len(kernels)``."""
    start: dict[Node, int] = {}
    end: dict[Node, int] = {}
    for i, k in enumerate(kernels):
        for v in k.outputs:
            start[v] = i
            end[v] = i
        for x in k.inputs:
            if x in end:
                end[x] = i
    for v in start:
        if v in keep:
            end[v] = len(kernels)
    return {v: (start[v], end[v]) for v in start}


# ------------------------------------------------------------------------------------------- verification


def verify_plan(plan: Plan) -> Plan:
    """Prove the Plan's memory invariants; raise :class:`PlanError` listing the problems found.

    Checks: every kernel node is produced by exactly one kernel; every kernel input is a leaf or the output of an
    earlier kernel; every kernel output, program output and update value (but the in-place state updates, which
    live in ``graph.state``) is a leaf or has a buffer that is
    64-byte aligned, large enough and inside the arena; declared in-place pairs hand over at the donor's last
    use; in-place state updates (``Plan.state_inplace``) keep their rules (no kernel reads the param after its new
    value is written, none may fail from the first such write on, the param and value are read by nothing after
    the kernels); and at every kernel position no two live buffers overlap.
    """
    problems: list[str] = []
    n_kernels = len(plan.kernels)
    producer: dict[Node, int] = {}
    for i, k in enumerate(plan.kernels):
        for n in k.nodes:
            if n.is_leaf:
                problems.append(f"{k.name}: the leaf {n.name} is not computed by a kernel")
            elif n in producer:
                problems.append(f"{k.name}: {n.name} is already computed by {plan.kernels[producer[n]].name}")
            producer[n] = i
        inside = set(k.nodes)
        for n in k.nodes:
            for x in n.inputs:
                if x not in inside and x not in k.inputs:
                    problems.append(f"{k.name}: {n.name} reads {x.name}, which is neither in the group nor an input")
        for x in k.inputs:
            if not x.is_leaf and (producer.get(x, n_kernels) >= i or x not in plan.kernels[producer[x]].outputs):
                problems.append(f"{k.name}: input {x.name} is not an output of an earlier kernel")
        for v in k.outputs:
            if v not in inside:
                problems.append(f"{k.name}: output {v.name} is not one of its nodes")
    for v in set(plan.outputs) | {v for _, v in plan.updates}:
        if not v.is_leaf and (v not in producer or v not in plan.kernels[producer[v]].outputs):
            problems.append(f"program output/update value {v.name} is not a kernel output")
    problems += _state_problems(plan, producer)
    in_state = set(plan.state_inplace.values())  # they live in graph.state, not in the arena
    live = {v: span for v, span in intervals(plan.kernels, plan.kept).items() if v not in in_state}
    for v in live:
        b = plan.buffers.get(v)
        if b is None:
            problems.append(f"{v.name}: kernel output without a buffer")
        elif b.offset % ALIGN or b.offset < 0 or b.nbytes < v.type.nbytes or b.offset + b.nbytes > plan.arena_bytes:
            problems.append(f"{v.name}: bad buffer {b} for {v.type} ({v.type.nbytes} bytes) in an arena of "
                            f"{plan.arena_bytes} bytes (offsets must be {ALIGN}-byte aligned)")
    for v, x in plan.inplace.items():
        if v not in live or x not in live or plan.buffers.get(v) is None or plan.buffers.get(x) is None:
            problems.append(f"in-place pair {v.name} <- {x.name}: not both arena values")
        elif (live[x][1] != live[v][0] or x not in plan.kernels[live[v][0]].inputs
              or plan.buffers[v].offset != plan.buffers[x].offset):
            problems.append(f"in-place pair {v.name} <- {x.name}: the donor must die at the kernel that writes "
                            f"{v.name}, as one of its inputs, and share its offset")
    problems += _slice_problems(plan, live, producer, n_kernels)
    if all(v in plan.buffers for v in live):
        problems += _overlaps(plan, slice_spans(live, plan.slices), n_kernels)
    if problems:
        raise PlanError(f"plan for graph {plan.graph.name!r} is invalid:\n  " + "\n  ".join(problems[:20]))
    return plan


def _state_problems(plan: Plan, producer: dict[Node, int]) -> list[str]:
    """Why the in-place state updates of ``plan`` could tear the state or change an answer (empty when they
    cannot): the rules of :func:`passes.memplan.choose_state_inplace`, checked again on the finished Plan."""
    if not plan.state_inplace:
        return []
    problems: list[str] = []
    updates = {id(p): v for p, v in plan.updates}
    read_after = [id(n) for n in plan.outputs] + [id(v) for _, v in plan.updates]
    failing = [i for i, k in enumerate(plan.kernels) if may_fail(k)]
    readers: dict[int, list[int]] = {}
    for j, k in enumerate(plan.kernels):
        for x in dict.fromkeys(k.inputs):
            if x.is_leaf:
                readers.setdefault(id(x), []).append(j)
    first = min((producer.get(v, -1) for v in plan.state_inplace.values()), default=-1)
    if failing and first >= 0 and failing[-1] >= first:
        problems.append(f"state in place: kernel {failing[-1]} may fail at run time but runs after kernel {first}, "
                        "which already writes graph.state")
    for p, v in plan.state_inplace.items():
        i = producer.get(v)
        if updates.get(id(p)) is not v or i is None or v not in plan.kernels[i].outputs:
            problems.append(f"state in place: {v.name} is not the kernel-computed update value of {p.name}")
            continue
        if read_after.count(id(v)) > 1 or id(p) in read_after:
            problems.append(f"state in place: {p.name} <- {v.name}: read after the kernels (an output or update)")
        for j in readers.get(id(p), []):
            if j > i or j == i and not reads_at_own_index(plan.kernels[j], p, v):
                problems.append(f"state in place: kernel {j} ({plan.kernels[j].name}) reads {p.name} after or "
                                f"while kernel {i} overwrites it")
    return problems


def _slice_problems(plan: Plan, live: dict[Node, tuple[int, int]], producer: dict[Node, int],
                    n_kernels: int) -> list[str]:
    """Why the concat slices of ``plan`` could be wrong (empty when they cannot): each slice x of y is an arena
    value like y, an input of y's one-node concat kernel at the byte offset y gives it, its buffer that part of
    y's, and no slice is itself a concat holding slices; none is read after the kernels; each has died before a
    value takes y's buffer over in place."""
    problems: list[str] = []
    containers = {y for y, _ in plan.slices.values()}
    kept = plan.kept
    takeover = {x: live[v][0] for v, x in plan.inplace.items() if v in live}
    for x, (y, at) in plan.slices.items():
        k = plan.kernels[producer[y]] if y in producer else None
        places = concat_offsets(y) if y.op == "concat" else None
        bx, by = plan.buffers.get(x), plan.buffers.get(y)
        if (x not in live or y not in live or bx is None or by is None or k is None or k.nodes != (y,)
                or places is None or x not in y.inputs or at not in [p for v, p in zip(y.inputs, places) if v is x]
                or bx.offset != by.offset + at or at + bx.nbytes > by.nbytes or x in containers
                or x in kept or y in kept or live[x][1] >= takeover.get(y, n_kernels + 1)):
            problems.append(f"concat slice {x.name} of {y.name} at byte {at}: not where that concat puts it in "
                            "its buffer, or not an arena value of its own")
    return problems


def slice_spans(live: dict[Node, tuple[int, int]], slices: dict[Node, tuple[Node, int]]
                ) -> dict[Node, tuple[int, int]]:
    """The lifetimes with a concat's slices (which lie inside its buffer) counted as the concat's own bytes, live
    from the first slice's definition to the last use of any of them: what the overlap check compares and the
    memory plan's lower bound sums."""
    spans = {v: span for v, span in live.items() if v not in slices}
    for x, (y, _) in slices.items():
        if x in live and y in spans:
            spans[y] = (min(spans[y][0], live[x][0]), max(spans[y][1], live[x][1]))
    return spans


def _overlaps(plan: Plan, live: dict[Node, tuple[int, int]], steps: int) -> list[str]:
    """Two closed lifetimes intersect iff one starts while the other is live, so each value is checked, when it
    starts, against the values live then. Those are kept sorted by offset; while no conflict has been found they
    are disjoint (in-place pairs share one range), so their ends grow with their offsets and a backward walk from
    the value's end finds every overlap: O(n log n) plus the overlaps reported. Returns the problems found."""
    allowed = {(id(v), id(x)) for v, x in plan.inplace.items()} | {(id(x), id(v)) for v, x in plan.inplace.items()}
    starting: dict[int, list[Node]] = {}
    for v, (s, _) in live.items():
        if plan.buffers[v].nbytes:
            starting.setdefault(s, []).append(v)
    by_offset: list[tuple[int, int, int]] = []  # (offset, end byte, position in ``values``) of live values
    expiry: list[tuple[int, tuple[int, int, int]]] = []  # (last kernel, entry of by_offset): a min-heap
    values: list[Node] = []
    problems: list[str] = []
    for t in sorted(starting):
        while expiry and expiry[0][0] < t:  # each value leaves by_offset once, when its lifetime is over
            _, item = heapq.heappop(expiry)
            del by_offset[bisect.bisect_left(by_offset, item)]
        for v in starting[t]:
            b = plan.buffers[v]
            i = bisect.bisect_left(by_offset, (b.offset + b.nbytes, -1, -1))
            while i > 0 and by_offset[i - 1][1] > b.offset:
                i -= 1
                a = values[by_offset[i][2]]
                if (id(a), id(v)) not in allowed:
                    name = plan.kernels[min(t, steps - 1)].name if steps else "-"
                    problems.append(f"at kernel {t} ({name}): {a.name} {plan.buffers[a]} (live {live[a]}) overlaps "
                                    f"{v.name} {b} (live {live[v]})")
            values.append(v)
            item = (b.offset, b.offset + b.nbytes, len(values) - 1)
            bisect.insort(by_offset, item)
            heapq.heappush(expiry, (live[v][1], item))
    return problems
