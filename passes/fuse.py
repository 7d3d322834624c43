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
3. A ``transpose`` that swaps the last two axes of a ``matmul`` operand, and that nothing else reads (no other node,
   program output or update value), joins the matmul's group: the GEMM
   reads the untransposed buffer with a transposed-operand flag, so the transpose is never materialized (the
   backward pass of ``a @ b`` builds ``g @ transpose(b)`` and ``transpose(a) @ g``). Such a group has kind
   ``matmul``.
4. Groups become kernels in a topological order (Kahn's algorithm, lowest first-node id first). A kernel's
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


def _folds_into(p: Node, c: Node, groups: _Groups, external: set[int]) -> bool:
    """True when transpose ``p`` joins matmul ``c``'s kernel (read by ``c`` alone, not an output or update)."""
    return (p in groups.parent and swaps_last_two(p) and groups.users[p] == [c] and id(p) not in external
            and len(groups.members[groups.find(p)]) == 1)


def _why_not(p: Node, c: Node, groups: _Groups) -> str | None:
    """Why producer ``p`` cannot share a kernel with consumer ``c`` (None: it can)."""
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
    roots = list(dict.fromkeys(groups.find(n) for n in compute))
    ordered = _order_groups(roots, groups)

    kernel_of: dict[Node, int] = {m: i for i, members in enumerate(ordered) for m in members}
    kernels: list[Kernel] = []
    for i, members in enumerate(ordered):
        inside = set(members)
        inputs = [x for m in members for x in m.inputs if x not in inside]
        outs = [m for m in members
                if id(m) in external or any(kernel_of.get(u) != i for u in groups.users[m])]
        kinds = {_kind(m) for m in members}
        if len(members) == 1:
            kind = _kind(members[0])
        elif "matmul" in kinds:
            kind = "matmul"
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
        if k.kind == "matmul" and len(k.nodes) > 1:
            lines.append(f"  {k.name}: transposed operands read in place by the GEMM (transpose not materialized)")
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
