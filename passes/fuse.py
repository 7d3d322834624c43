"""Fusion: group maximal chains of elementwise/broadcast ops into one kernel; fold views, operand transposes and
elementwise epilogues into their anchors.

Algorithm (greedy edge contraction on the group graph, a ``networkx.DiGraph`` whose nodes are groups):

1. Every non-leaf node starts in its own group; the group graph has an edge G → H when a member of H reads a
   member of G. A node is *fusible* when its op says so (``Op.fusible``: elementwise or broadcast); every other
   op (matmul, conv, pool, reduce, shape, opaque) stays a one-node kernel unless a rule below folds into it.
2. Walk the nodes in topological order; for each fusible node ``c`` and each fusible producer ``p`` among its
   inputs, merge ``group(p)`` into ``group(c)`` when both have the same output shape (the group's *domain*: one
   loop over it computes every member; inputs from outside may broadcast into it), the merged group stays within
   the kernel budget (the summed ``Op.cost`` of its members: LLVM's optimizer is superlinear in a function's
   size, so a 1,000-op chain becomes kernels of bounded size and compiles in linear time), and the merge keeps
   the group graph acyclic. Merging A into B creates a cycle exactly when another successor S of A reaches B.
   That search only visits groups whose smallest node id is below B's largest (ids are a topological order, so
   nothing later can lead back into B): merges along a chain cost O(1), and the whole pass is near linear where
   the old member-by-member check was quadratic (a 1,000-op chain: 1.0 s → 0.03 s). Nodes are never duplicated,
   so nothing is recomputed: a value that other groups also read becomes an output of its group.
3. A node that is a *view* of its input (``Op.is_view``: a reshape inserting or removing extent-1 axes) and that
   only one fused group reads (not an output or update) joins that group, which reads the view's input buffer
   with the view's shape (broadcast strides): nothing is copied.
4. A chain of views feeding a ``matmul`` operand (transposes, slices, reshapes: ops with ``Op.view_layout``, each
   read by the next alone and none an output or update) joins the matmul's group when the composed layout is one a
   GEMM reads (``ops.views.gemm_operand``: rows or columns contiguous, any non-negative batch strides): the GEMM
   reads the chain's source buffer through its leading dimension, transposed flag and batch strides, so
   attention's head split/merge transposes are never materialized. A transpose that is the only reader of a
   matmul's result (which is not an output) joins the kernel too when C's rows or columns stay contiguous: the
   GEMM writes C through the transpose's strides (column-major C as Cᵀ = op(B)ᵀ·op(A)ᵀ).
5. An *anchor* (``Op.epilogue_axis`` is not None: conv2d, training batch_norm, matmul) absorbs the first fused
   group of its users that reads the anchor's output at full size and whose other inputs vary at most along the
   epilogue axis (a bias, a per-channel scale, a scalar) or have the anchor's shape (ResNet's residual add, read
   at the same offset): the chain is applied before the anchor's store. A chain that reads a param the program
   updates is refused (the update stays an elementwise kernel that may write the state in place), except plain
   SGD's step on a matmul's weight gradient (``passes.plan.gradient_step``), which the GEMM accumulates onto the weight.
6. Groups become kernels in a topological order of the group graph (``networkx.lexicographical_topological_sort``,
   lowest first node id first). A kernel's ``inputs`` are the values its nodes read from outside the group (first
   use order), its ``outputs`` the group values read by another kernel, returned as a program output or used as an
   update value; its ``anchor`` is its one structured node (None for a fused elementwise group).

The report has one line per kernel boundary (a producer value read by another kernel) saying why fusion stopped
there: "matmul is not elementwise", "shape differs", "merging would create a cycle through ...", "the kernel
budget", plus, for values read by several kernels, that they are materialized once and shared (never recomputed).
"""

from __future__ import annotations

import networkx as nx

from graphc.ir import Node
from ops.base import Op
from ops.registry import get_op
from ops.views import chain_layout, gemm_operand, transpose_store_strides
from passes.compilation import Compilation, Pass
from passes.plan import Kernel, gradient_step
from passes.provenance import Provenance

FUSION_BUDGET = 1024  # summed Op.cost of one fused group (≈ 40 tanh or 1,000 adds)


def fusible(n: Node) -> bool:
    """True when ``n`` may join a fused elementwise group."""
    return not n.is_leaf and get_op(n.op).fusible


def is_view(n: Node) -> bool:
    return not n.is_leaf and get_op(n.op).is_view(n)


def epilogue_axis(n: Node) -> int | None:
    return None if n.is_leaf else get_op(n.op).epilogue_axis(n)


def along_axis(shape: tuple[int, ...], domain: tuple[int, ...], axis: int) -> bool:
    """True when ``shape`` broadcast (right-aligned) over ``domain`` varies at most along ``axis``."""
    lead = len(domain) - len(shape)
    return all(d == 1 or i + lead == axis for i, d in enumerate(shape))


class _Groups:
    """Union-find over nodes; the group graph (a networkx DiGraph over group representatives) with each group's
    member list, cost and node-id range; the node-level users for the rules and the report."""

    def __init__(self, nodes: list[Node]) -> None:
        self.parent: dict[Node, Node] = {n: n for n in nodes}
        self.members: dict[Node, list[Node]] = {n: [n] for n in nodes}
        self.cost: dict[Node, int] = {n: get_op(n.op).cost for n in nodes}
        self.lo: dict[Node, int] = {n: n.id for n in nodes}
        self.hi: dict[Node, int] = {n: n.id for n in nodes}
        self.users: dict[Node, list[Node]] = {n: [] for n in nodes}
        self.refused: dict[tuple[int, int], str] = {}  # (anchor, user) ids -> why no epilogue fusion
        self.graph = nx.DiGraph()
        self.graph.add_nodes_from(nodes)
        for n in nodes:
            for x in dict.fromkeys(n.inputs):
                if x in self.users:
                    self.users[x].append(n)
                    self.graph.add_edge(x, n)

    def find(self, n: Node) -> Node:
        root = n
        while self.parent[root] is not root:
            root = self.parent[root]
        while self.parent[n] is not root:
            self.parent[n], n = root, self.parent[n]
        return root

    def cycle_through(self, a: Node, b: Node) -> Node | None:
        """A member of a group outside a, b on a path from group a to group b (merging them would make a cycle)."""
        ra, rb = self.find(a), self.find(b)
        bound = self.hi[rb]
        for start in self.graph.successors(ra):
            if start is rb or self.lo[start] >= bound:
                continue
            seen, stack = {start}, [start]
            while stack:
                group = stack.pop()
                for nxt in self.graph.successors(group):
                    if nxt is rb:
                        return start
                    if nxt not in seen and self.lo[nxt] < bound:
                        seen.add(nxt)
                        stack.append(nxt)
        return None

    def over_budget(self, a: Node, b: Node) -> int | None:
        """The merged cost when merging the groups of a and b would exceed the kernel budget, else None."""
        ra, rb = self.find(a), self.find(b)
        total = self.cost[ra] + self.cost[rb]
        return total if total > FUSION_BUDGET else None

    def union(self, a: Node, b: Node) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra is rb:
            return
        if len(self.members[ra]) > len(self.members[rb]):
            ra, rb = rb, ra
        g = self.graph
        g.add_edges_from((p, rb) for p in g.predecessors(ra) if p is not rb)
        g.add_edges_from((rb, s) for s in g.successors(ra) if s is not rb)
        g.remove_node(ra)
        self.parent[ra] = rb
        self.members[rb].extend(self.members.pop(ra))
        self.cost[rb] += self.cost.pop(ra)
        self.lo[rb], self.hi[rb] = min(self.lo[rb], self.lo.pop(ra)), max(self.hi[rb], self.hi.pop(ra))


# ------------------------------------------------------------------------------------------------ rules


def _why_not(p: Node, c: Node, groups: _Groups) -> str | None:
    """Why producer ``p`` cannot share a kernel with consumer ``c`` (None: it can)."""
    if is_view(c) and groups.find(c) is not groups.find(p):
        return f"shape differs: {p.name} is {list(p.shape)}, read in place through the unit-axis view {c.name}"
    if (id(p), id(c)) in groups.refused:
        return groups.refused[(id(p), id(c))]
    if not fusible(p):
        return f"{p.op} is not elementwise ({get_op(p.op).kind})"
    if not fusible(c):
        return f"{c.op} is not elementwise ({get_op(c.op).kind})"
    if p.shape != c.shape:
        return f"shape differs: {p.name} is {list(p.shape)}, {c.name} is {list(c.shape)}"
    if groups.find(p) is groups.find(c):
        return None
    cost = groups.over_budget(p, c)
    if cost is not None:
        return f"kernel budget: the merged group would cost {cost} > {FUSION_BUDGET} (bounds LLVM compile time)"
    through = groups.cycle_through(p, c)
    if through is not None:
        return f"merging would create a cycle through {through.name} ({through.op})"
    return None


def _view_target(p: Node, groups: _Groups, external: set[int]) -> Node | None:
    """The fused group that reads view ``p`` in place: every user of ``p`` is in that one elementwise group and
    ``p`` is neither an output nor an update value (so its buffer is never needed)."""
    if not is_view(p) or id(p) in external or not groups.users[p]:
        return None
    targets = {groups.find(u) for u in groups.users[p]}
    if len(targets) != 1 or len(groups.members[groups.find(p)]) != 1:
        return None
    (target,) = targets
    if not all(fusible(m) or is_view(m) for m in groups.members[target]):
        return None
    return target if groups.cycle_through(p, target) is None else None


def _epilogue_refusal(a: Node, target: Node, groups: _Groups, updated: set[int]) -> str | None:
    """Why the fused group ``target`` cannot become the epilogue of anchor ``a`` (None: it can)."""
    axis = epilogue_axis(a)
    members = groups.members[target]
    if axis is None:
        return f"{a.op} takes no epilogue"
    if any(not (fusible(m) or is_view(m)) for m in members):
        return f"{a.op} epilogue: the consumer kernel is not an elementwise group"
    if any(m.shape != a.shape for m in members if not is_view(m)):
        return f"shape differs from {a.op}'s output {list(a.shape)}"
    inside = set(members)
    sgd = gradient_step(a, members) if get_op(a.op).kind == "matmul" else None
    for m in members:
        reads = [(m.inputs[0], m.shape)] if is_view(m) else [(x, x.shape) for x in m.inputs]
        for x, shape in reads:
            if x in inside or (x is a and shape == a.shape) or (sgd is not None and x is sgd.param):
                continue  # plain SGD's step reads its weight at the index it writes (passes.plan.gradient_step)
            if shape == a.shape and id(x) in updated and not along_axis(shape, a.shape, axis):
                return (f"{a.op} epilogue: {m.name} reads the param {x.name} that this program updates (its update "
                        f"stays an elementwise kernel, which may write the state in place)")
            if x is a or not (along_axis(shape, a.shape, axis) or shape == a.shape):
                return (f"{a.op} epilogue: {m.name} reads {x.name} {list(shape)}, not a scalar, a per-axis-{axis} "
                        f"vector or a tensor of {a.op}'s shape")
    through = groups.cycle_through(a, target)
    return None if through is None else f"{a.op} epilogue would create a cycle through {through.name} ({through.op})"


def _merge_epilogues(compute: list[Node], groups: _Groups, updated: set[int]) -> None:
    """Merge into each anchor the first fused group of its users that only reads the anchor's output at full size
    (other inputs: scalars or vectors along the epilogue axis)."""
    for a in compute:
        if epilogue_axis(a) is None:
            continue
        for u in groups.users[a]:
            target = groups.find(u)
            if target is groups.find(a) or not fusible(u) or u.shape != a.shape:
                continue
            why = _epilogue_refusal(a, target, groups, updated)
            if why is None:
                groups.union(a, u)
                break
            groups.refused[(id(a), id(u))] = why


def _operand_chain(p: Node, c: Node, groups: _Groups, external: set[int]) -> list[Node]:
    """The view nodes that fold into matmul ``c``'s kernel as its operand ``p`` (rule 4), innermost last; empty
    when ``p`` is not such a chain or its layout is not one a GEMM reads."""
    chain: list[Node] = []
    user = c
    while (p in groups.parent and get_op(p.op).view_layout is not Op.view_layout and groups.users[p] == [user]
           and id(p) not in external and len(groups.members[groups.find(p)]) == 1):
        chain.append(p)
        user, p = p, p.inputs[0]
    while chain:
        found = chain_layout(chain[0], lambda n: n in chain)
        if found is not None and gemm_operand(chain[0].shape, found[1][1]) is not None:
            return chain
        chain.pop()  # a shorter chain from a materialized intermediate may still fold
    return chain


def _store_view(c: Node, groups: _Groups, external: set[int]) -> bool:
    """True when matmul ``c``'s one reader is a transpose the GEMM can write C through (rule 4)."""
    users = groups.users[c]
    if id(c) in external or len(users) != 1 or users[0].op != "transpose":
        return False
    if len(groups.members[groups.find(users[0])]) != 1:
        return False
    return gemm_operand(c.shape, transpose_store_strides(users[0])) is not None


# ------------------------------------------------------------------------------------------------ kernels


def _kernel_name(i: int, members: list[Node]) -> str:
    if len(members) == 1:
        return f"k{i}_{members[0].op}"
    ops = "_".join(dict.fromkeys(m.op for m in members))
    return f"k{i}_fused_{ops}"[:60]


def _anchor(members: list[Node]) -> Node | None:
    """The kernel's one structured node (None when every member is fusible or a view)."""
    if any(get_op(m.op).kind == "matmul" for m in members):  # its operand views and epilogue are not anchors
        return next(m for m in members if get_op(m.op).kind == "matmul")
    anchors = [m for m in members if not (fusible(m) or is_view(m))]
    if not anchors and len(members) == 1 and not (fusible(members[0]) or is_view(members[0])):
        return members[0]
    return anchors[0] if len(anchors) == 1 else None


def _kind(members: list[Node], anchor: Node | None) -> str:
    if len(members) == 1:
        return get_op(members[0].op).kind
    if anchor is not None:
        return get_op(anchor.op).kind
    kinds = {get_op(m.op).kind for m in members if not is_view(m)}
    return "broadcast" if "broadcast" in kinds else "elementwise"


def run(nodes: list[Node], outputs: list[Node], updates: list[tuple[Node, Node]],
        provenance: Provenance | None = None) -> tuple[list[Kernel], list[str]]:
    """Group ``nodes`` (topologically ordered; leaves are skipped) into kernels; return them and the report
    (its per-kernel lines are also recorded in ``provenance``, boundaries by the value crossing them)."""
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
        if get_op(c.op).kind == "matmul":
            for p in dict.fromkeys(c.inputs):
                for view in _operand_chain(p, c, groups, external):
                    groups.union(view, c)
    for c in compute:
        if get_op(c.op).kind == "matmul" and _store_view(c, groups, external):
            groups.union(groups.users[c][0], c)
    for p in compute:
        target = _view_target(p, groups, external)
        if target is not None:
            groups.union(p, target)
    _merge_epilogues(compute, groups, {id(p) for p, _ in updates})
    order = nx.lexicographical_topological_sort(groups.graph, key=lambda r: groups.lo[r])
    ordered = [sorted(groups.members[r], key=lambda n: n.id) for r in order]

    kernel_of: dict[Node, int] = {m: i for i, members in enumerate(ordered) for m in members}
    kernels: list[Kernel] = []
    for i, members in enumerate(ordered):
        inside = set(members)
        inputs = [x for m in members for x in m.inputs if x not in inside]
        outs = [m for m in members
                if id(m) in external or any(kernel_of.get(u) != i for u in groups.users[m])]
        anchor = _anchor(members)
        kernels.append(Kernel(_kernel_name(i, members), _kind(members, anchor), tuple(members),
                              tuple(dict.fromkeys(inputs)), tuple(outs), anchor))
    return kernels, _report(kernels, kernel_of, groups, external, provenance or Provenance())


def _report(kernels: list[Kernel], kernel_of: dict[Node, int], groups: _Groups, external: set[int],
            provenance: Provenance) -> list[str]:
    """One line per kernel boundary (producer value → consuming kernel), saying why fusion stopped there."""
    fused = sum(1 for k in kernels if len(k.nodes) > 1)
    nodes = sum(len(k.nodes) for k in kernels)
    lines = [f"{nodes} nodes -> {len(kernels)} kernels ({fused} fused groups)"]

    def note(k: Kernel, line: str, value: Node | None = None) -> None:
        """A report line about kernel ``k`` (and the kernel producing ``value``, the value crossing a boundary)."""
        lines.append(line)
        provenance.kernel_note(k.name, line.strip())
        if value is not None:
            provenance.record(value, "fuse", "boundary", line.strip())
            if kernels[kernel_of[value]] is not k:
                provenance.kernel_note(kernels[kernel_of[value]].name, line.strip())

    for k in kernels:
        lines.append(f"{k.name} [{k.kind}]: {' -> '.join(n.op for n in k.nodes)}")
        views = [n.name for n in k.nodes if is_view(n)]
        if views and k.anchor is None:
            note(k, f"  {k.name}: unit-axis reshapes read in place (not materialized): {', '.join(views)}")
        folded = [n.name for n in k.nodes if k.kind == "matmul" and n is not k.anchor and not fusible(n)]
        if folded:
            note(k, f"  {k.name}: views read or written in place by the GEMM through its strides (not "
                    f"materialized): {', '.join(folded)}")
        epilogue = [n.op for n in k.nodes if fusible(n)]
        if k.anchor is not None and epilogue_axis(k.anchor) is not None and epilogue:
            note(k, f"  {k.name}: {k.anchor.op} epilogue: {', '.join(epilogue)} (applied before the store)")
        for x in k.inputs:
            if x.is_leaf:
                continue
            readers = [n for n in k.nodes if x in n.inputs]
            reasons = dict.fromkeys(r for r in (_why_not(x, c, groups) for c in readers) if r)
            if not reasons:  # every pair was fusible on its own, a larger merge was not
                reasons = {f"{x.name} is in {kernels[kernel_of[x]].name} (merged with other nodes first)": None}
            note(k, f"  boundary {kernels[kernel_of[x]].name} -> {k.name} via {x.name}: " + "; ".join(reasons), x)
    for k in kernels:
        for x in k.outputs:
            used = sorted({kernels[kernel_of[u]].name for u in groups.users[x] if kernel_of[u] != kernel_of[x]})
            used += ["a program output/update"] if id(x) in external else []
            if len(used) > 1:
                note(k, f"  {x.name} is an output of {k.name}: value used by {len(used)} consumers "
                        f"({', '.join(used)}); computed once and shared, never recomputed", x)
    return lines


def _run(c: Compilation) -> Compilation:
    kernels, report = run(c.nodes(), c.outputs, c.updates, c.provenance)
    return c.but(kernels=kernels, report={**c.report, "fusion": report})


PASS = Pass("fuse", "elementwise/broadcast chains into one kernel (within a cost budget); views, GEMM operand "
                    "transposes and elementwise epilogues folded into their anchors", _run)
