"""Fusion: group maximal chains of elementwise/broadcast ops into one kernel.

Algorithm (greedy edge contraction with a cycle check):

1. Every non-leaf node starts in its own group. A node is *fusible* when its op's kind is ``elementwise`` or
   ``broadcast``; every other kind (matmul, conv, pool, reduce, shape, opaque) always stays a one-node kernel.
2. Walk the nodes in topological order; for each fusible node ``c`` and each fusible producer ``p`` among its
   inputs, merge ``group(p)`` into ``group(c)`` when both have the same output shape (the group's *domain*: one
   loop over it computes every node of the group; inputs from outside may broadcast into it) and the merge keeps
   the groups' dependency graph acyclic. A merge of groups A → B creates a cycle exactly when some path leaves A
   through a node outside A ∪ B and comes back into B; a breadth-first search over the group graph (a path
   may enter a group at one member and leave it from another) finds such a path. Nodes are never duplicated, so
   nothing is recomputed: a value that other groups also read simply becomes an output of its group.
3. A ``reshape`` that only inserts or removes extent-1 axes (a per-channel vector viewed as (C, 1, 1)) and that
   only one fused group reads (not an output or update) joins that group: the group reads the reshape's input
   buffer with the reshape's shape (broadcast strides), so nothing is copied.
4. A ``transpose`` that swaps the last two axes of a ``matmul`` operand, and that nothing else reads (no other node,
   program output or update value), joins the matmul's group: the GEMM
   reads the untransposed buffer with a transposed-operand flag, so the transpose is never materialized (the
   backward pass of ``a @ b`` builds ``g @ transpose(b)`` and ``transpose(a) @ g``). Such a group has kind
   ``matmul``.
5. Groups become kernels in a topological order (Kahn's algorithm, lowest first-node id first). A kernel's
   ``inputs`` are the values its nodes read from outside the group (first-use order), its ``outputs`` the group
   values read by another kernel, returned as a program output or used as an update value.

The report has one line per kernel boundary (a producer value read by another kernel) saying why fusion stopped
there: "matmul is not elementwise", "shape differs", "merging would create a cycle through ...", plus, for values
read by several kernels, that they are materialized once and shared (never recomputed).
"""

from __future__ import annotations

import heapq
from collections import deque

from graphc.ir import Node
from ops.registry import get_op
from passes.plan import Kernel

FUSIBLE = ("elementwise", "broadcast")


def _kind(n: Node) -> str:
    return get_op(n.op).kind


def fusible(n: Node) -> bool:
    """True when ``n`` may join a fused elementwise group."""
    return not n.is_leaf and _kind(n) in FUSIBLE


class _Groups:
    """Union-find over nodes with member lists, plus the node-level successor map for cycle checks."""

    def __init__(self, nodes: list[Node]) -> None:
        self.parent: dict[Node, Node] = {n: n for n in nodes}
        self.members: dict[Node, list[Node]] = {n: [n] for n in nodes}
        self.users: dict[Node, list[Node]] = {n: [] for n in nodes}
        self.refused: dict[tuple[int, int], str] = {}  # (anchor, user) ids -> why no epilogue fusion
        for n in nodes:
            for x in dict.fromkeys(n.inputs):
                if x in self.users:
                    self.users[x].append(n)

    def find(self, n: Node) -> Node:
        root = n
        while self.parent[root] is not root:
            root = self.parent[root]
        while self.parent[n] is not root:
            self.parent[n], n = root, self.parent[n]
        return root

    def cycle_through(self, a: Node, b: Node) -> Node | None:
        """A node outside groups a, b on a path from group a to group b (merging them would make a cycle).

        The search runs over groups: entering a group at one member lets the path leave from any member.
        """
        ra, rb = self.find(a), self.find(b)
        # fast paths: nothing leaves A except into B, or nothing enters B except from A
        if all(self.find(u) is ra or self.find(u) is rb for m in self.members[ra] for u in self.users[m]):
            return None
        if all(x.is_leaf or self.find(x) is ra or self.find(x) is rb for m in self.members[rb] for x in m.inputs):
            return None
        seen: set[Node] = {ra, rb}
        queue: deque[tuple[Node, Node]] = deque([(ra, ra)])
        while queue:
            group, first = queue.popleft()
            for m in self.members[group]:
                for u in self.users[m]:
                    ru = self.find(u)
                    if ru is rb and group is not ra:
                        return first
                    if ru not in seen:
                        seen.add(ru)
                        queue.append((ru, u if group is ra else first))
        return None

    def union(self, a: Node, b: Node) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra is rb:
            return
        if len(self.members[ra]) > len(self.members[rb]):
            ra, rb = rb, ra
        self.parent[ra] = rb
        self.members[rb].extend(self.members.pop(ra))


def swaps_last_two(n: Node) -> bool:
    """True for a ``transpose`` that only swaps the last two axes (a matmul reads it with a transpose flag)."""
    if n.op != "transpose" or len(n.shape) < 2:
        return False
    rank = len(n.shape)
    return tuple(n.attrs["axes"]) == tuple(range(rank - 2)) + (rank - 1, rank - 2)


def unit_reshape(n: Node) -> bool:
    """True for a ``reshape`` that only inserts or removes extent-1 axes (same buffer, read in place by a group)."""
    if n.op != "reshape" or not n.inputs:
        return False
    return [d for d in n.shape if d != 1] == [d for d in n.inputs[0].shape if d != 1]


def _view_target(p: Node, groups: _Groups, external: set[int]) -> Node | None:
    """The fused group that reads unit reshape ``p`` in place: every user of ``p`` is in that one elementwise
    group and ``p`` is neither an output nor an update value (so its buffer is never needed)."""
    if p not in groups.parent or not unit_reshape(p) or id(p) in external or not groups.users[p]:
        return None
    targets = {groups.find(u) for u in groups.users[p]}
    if len(targets) != 1 or len(groups.members[groups.find(p)]) != 1:
        return None
    (target,) = targets
    if not all(fusible(m) or unit_reshape(m) for m in groups.members[target]):
        return None
    return target if groups.cycle_through(p, target) is None else None


def epilogue_axis(n: Node) -> int | None:
    """The axis along which an epilogue's other inputs may vary for anchor ``n`` (None: ``n`` takes no epilogue).

    batch_norm in training and conv2d write their output channel by channel (axis 1); a matmul writes C tiles
    whose columns are the last axis."""
    if (n.op == "batch_norm" and n.attrs["training"]) or n.op == "conv2d":
        return 1
    if n.op == "matmul" and n.type.is_float:
        return n.ndim - 1
    return None


def along_axis(shape: tuple[int, ...], domain: tuple[int, ...], axis: int) -> bool:
    """True when ``shape`` broadcast (right-aligned) over ``domain`` varies at most along ``axis``."""
    lead = len(domain) - len(shape)
    return all(d == 1 or i + lead == axis for i, d in enumerate(shape))


def _epilogue_refusal(a: Node, target: Node, groups: _Groups) -> str | None:
    """Why the fused group ``target`` cannot become the epilogue of anchor ``a`` (None: it can)."""
    axis = epilogue_axis(a)
    members = groups.members[target]
    if axis is None:
        return f"{a.op} takes no epilogue"
    if any(not (fusible(m) or unit_reshape(m)) for m in members):
        return f"{a.op} epilogue: the consumer kernel is not an elementwise group"
    if any(m.shape != a.shape for m in members if not unit_reshape(m)):
        return f"shape differs from {a.op}'s output {list(a.shape)}"
    inside = set(members)
    for m in members:
        reads = [(m.inputs[0], m.shape)] if unit_reshape(m) else [(x, x.shape) for x in m.inputs]
        for x, shape in reads:
            if x in inside or (x is a and shape == a.shape):
                continue
            if x is a or not along_axis(shape, a.shape, axis):
                return f"{a.op} epilogue: {m.name} reads {x.name} {list(shape)}, not a scalar or per-axis-{axis} vector"
    through = groups.cycle_through(a, target)
    return None if through is None else f"{a.op} epilogue would create a cycle through {through.name} ({through.op})"


def _merge_epilogues(compute: list[Node], groups: _Groups, refused: dict[tuple[int, int], str]) -> None:
    """Merge into each anchor (batch_norm training, conv2d, matmul) the first fused group of its users that only
    reads the anchor's output at full size (other inputs: scalars or vectors along the epilogue axis)."""
    for a in compute:
        if epilogue_axis(a) is None:
            continue
        for u in groups.users[a]:
            target = groups.find(u)
            if target is groups.find(a) or not fusible(u) or u.shape != a.shape:
                continue
            why = _epilogue_refusal(a, target, groups)
            if why is None:
                groups.union(a, u)
                break
            refused[(id(a), id(u))] = why


def _folds_into(p: Node, c: Node, groups: _Groups, external: set[int]) -> bool:
    """True when transpose ``p`` joins matmul ``c``'s kernel (read by ``c`` alone, not an output or update)."""
    return (p in groups.parent and swaps_last_two(p) and groups.users[p] == [c] and id(p) not in external
            and len(groups.members[groups.find(p)]) == 1)


def _why_not(p: Node, c: Node, groups: _Groups) -> str | None:
    """Why producer ``p`` cannot share a kernel with consumer ``c`` (None: it can)."""
    if unit_reshape(c) and groups.find(c) is not groups.find(p):
        return f"shape differs: {p.name} is {list(p.shape)}, read in place through the unit-axis view {c.name}"
    if (id(p), id(c)) in groups.refused:
        return groups.refused[(id(p), id(c))]
    if not fusible(p):
        return f"{p.op} is not elementwise ({_kind(p)})"
    if not fusible(c):
        return f"{c.op} is not elementwise ({_kind(c)})"
    if p.shape != c.shape:
        return f"shape differs: {p.name} is {list(p.shape)}, {c.name} is {list(c.shape)}"
    through = groups.cycle_through(p, c)
    if through is not None:
        return f"merging would create a cycle through {through.name} ({through.op})"
    return None


def _order_groups(roots: list[Node], groups: _Groups) -> list[list[Node]]:
    """Groups (node lists in id order) in a topological order of the group graph, lowest first id first."""
    preds: dict[Node, set[Node]] = {r: set() for r in roots}
    succs: dict[Node, set[Node]] = {r: set() for r in roots}
    for r in roots:
        for m in groups.members[r]:
            for x in m.inputs:
                if x in groups.parent and groups.find(x) is not r:
                    preds[r].add(groups.find(x))
                    succs[groups.find(x)].add(r)
    first = {r: min(m.id for m in groups.members[r]) for r in roots}
    waiting = {r: len(preds[r]) for r in roots}
    ready = [(first[r], i, r) for i, r in enumerate(roots) if waiting[r] == 0]
    heapq.heapify(ready)
    index = {r: i for i, r in enumerate(roots)}
    order: list[list[Node]] = []
    while ready:
        _, _, r = heapq.heappop(ready)
        order.append(sorted(groups.members[r], key=lambda n: n.id))
        for s in succs[r]:
            waiting[s] -= 1
            if waiting[s] == 0:
                heapq.heappush(ready, (first[s], index[s], s))
    if len(order) != len(roots):
        raise AssertionError("internal error: fusion produced a cyclic group graph")
    return order


def _kernel_name(i: int, members: list[Node]) -> str:
    if len(members) == 1:
        return f"k{i}_{members[0].op}"
    ops = "_".join(dict.fromkeys(m.op for m in members))
    return f"k{i}_fused_{ops}"[:60]


def run(nodes: list[Node], outputs: list[Node],
        updates: list[tuple[Node, Node]]) -> tuple[list[Kernel], list[str]]:
    """Group ``nodes`` (topologically ordered; leaves are skipped) into kernels; return them and the report."""
    compute = [n for n in nodes if not n.is_leaf]
    groups = _Groups(compute)
    for c in compute:
        if not fusible(c):
            continue
        for p in dict.fromkeys(c.inputs):
            if p in groups.parent and groups.find(p) is not groups.find(c) and _why_not(p, c, groups) is None:
                groups.union(p, c)
    external = {id(n) for n in outputs} | {id(v) for _, v in updates}
    for c in compute:
        if _kind(c) == "matmul":
            for p in dict.fromkeys(c.inputs):
                if _folds_into(p, c, groups, external):
                    groups.union(p, c)
    for p in compute:
        target = _view_target(p, groups, external)
        if target is not None:
            groups.union(p, target)
    _merge_epilogues(compute, groups, groups.refused)
    roots = list(dict.fromkeys(groups.find(n) for n in compute))
    ordered = _order_groups(roots, groups)

    kernel_of: dict[Node, int] = {m: i for i, members in enumerate(ordered) for m in members}
    kernels: list[Kernel] = []
    for i, members in enumerate(ordered):
        inside = set(members)
        inputs = [x for m in members for x in m.inputs if x not in inside]
        outs = [m for m in members
                if id(m) in external or any(kernel_of.get(u) != i for u in groups.users[m])]
        kinds = {_kind(m) for m in members if not unit_reshape(m)} or {"shape"}
        anchors = [m for m in members if epilogue_axis(m) is not None]
        if len(members) == 1:
            kind = _kind(members[0])
        elif "matmul" in kinds:
            kind = "matmul"
        elif anchors:
            kind = _kind(anchors[0])
        else:
            kind = "broadcast" if "broadcast" in kinds else "elementwise"
        kernels.append(Kernel(_kernel_name(i, members), kind, tuple(members), tuple(dict.fromkeys(inputs)),
                              tuple(outs)))
    return kernels, _report(kernels, kernel_of, groups, external)


def _report(kernels: list[Kernel], kernel_of: dict[Node, int], groups: _Groups, external: set[int]) -> list[str]:
    """One line per kernel boundary (producer value → consuming kernel), saying why fusion stopped there."""
    fused = sum(1 for k in kernels if len(k.nodes) > 1)
    nodes = sum(len(k.nodes) for k in kernels)
    lines = [f"{nodes} nodes -> {len(kernels)} kernels ({fused} fused groups)"]
    for k in kernels:
        ops = " -> ".join(n.op for n in k.nodes)
        lines.append(f"{k.name} [{k.kind}]: {ops}")
        views = [n.name for n in k.nodes if unit_reshape(n)]
        if views and k.kind in FUSIBLE:
            lines.append(f"  {k.name}: unit-axis reshapes read in place (not materialized): {', '.join(views)}")
        if k.kind == "matmul" and any(swaps_last_two(n) for n in k.nodes):
            lines.append(f"  {k.name}: transposed operands read in place by the GEMM (transpose not materialized)")
        anchor = next((n for n in k.nodes if epilogue_axis(n) is not None), None)
        epilogue = [n.op for n in k.nodes if fusible(n)]
        if anchor is not None and epilogue:
            lines.append(f"  {k.name}: {anchor.op} epilogue: {', '.join(epilogue)} (applied before the store)")
        for x in k.inputs:
            if x.is_leaf:
                continue
            readers = [n for n in k.nodes if x in n.inputs]
            reasons = dict.fromkeys(r for r in (_why_not(x, c, groups) for c in readers) if r)
            if not reasons:  # every pair was fusible on its own, a larger merge was not
                reasons = {f"{x.name} is in {kernels[kernel_of[x]].name} (merged with other nodes first)": None}
            lines.append(f"  boundary {kernels[kernel_of[x]].name} -> {k.name} via {x.name}: " + "; ".join(reasons))
    for k in kernels:
        for x in k.outputs:
            used = sorted({kernels[kernel_of[u]].name for u in groups.users[x] if kernel_of[u] != kernel_of[x]})
            used += ["a program output/update"] if id(x) in external else []
            if len(used) > 1:
                lines.append(f"  {x.name} is an output of {k.name}: value used by {len(used)} consumers "
                             f"({', '.join(used)}); computed once and shared, never recomputed")
    return lines
