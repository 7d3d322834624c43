"""Scheduling: a topological order of kernels that keeps peak live memory low.

Heuristic (greedy list scheduling, then a safety net):

1. A kernel is *ready* when every kernel producing one of its inputs has run. Among ready kernels pick the one
   with the best net effect on live bytes: ``freed - allocated``, where ``allocated`` is the size of its outputs
   and ``freed`` the size of the arena inputs for which it is the last remaining reader (values in ``keep`` —
   program outputs and update values — are never freed). Ties go to the kernel that came first in the input
   order, so the schedule stays close to the program's creation order (forward then backward) when memory
   does not care.
2. The peak live bytes of the greedy order and of the input order are simulated the way the memory planner
   allocates (a kernel's outputs are allocated while its inputs are still live, then dead values are freed);
   the order with the lower peak is returned. So scheduling never makes the peak worse than the given order.

Ordering for in-place state updates (:func:`state_order`, see ``passes.memplan``): besides the data
dependencies, every other kernel reading a param runs before the kernel computing the param's new value, and every
kernel that may report bad data at run time runs before every kernel computing an update value, wherever that adds
no cycle (a reader that needs the new value itself, a check of a value computed from it). Then the memory planner
can let those kernels write straight into ``graph.state``.

Leaves (inputs, params, constants) are bound outside the arena and count for nothing. The dependencies are a
``networkx.DiGraph`` of kernel indices (a cycle is reported with ``networkx.find_cycle``). The ready kernels sit in
a heap keyed by their current score; a score only changes when one of the kernel's inputs drops to a single
remaining reader, and then that reader is pushed again (stale entries are skipped), so the whole schedule costs
O((K + E) log K) for K kernels and E kernel inputs — a scan of the ready set per step would be quadratic on wide
graphs (2,000 independent branches).
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterable

import networkx as nx

from graphc.ir import Node
from passes.compilation import Compilation, Pass
from passes.plan import Kernel, align, may_fail


def _nbytes(n: Node) -> int:
    return align(math.prod(n.type.shape) * n.type.np_dtype.itemsize)


def dependencies(kernels: list[Kernel]) -> list[set[int]]:
    """For each kernel (by index), the indices of the kernels that produce one of its inputs."""
    producer = {v: i for i, k in enumerate(kernels) for v in k.outputs}
    return [{producer[x] for x in k.inputs if x in producer} for k in kernels]


def peak_bytes(kernels: list[Kernel], keep: Iterable[Node] = ()) -> int:
    """Peak of the summed (64-byte-aligned) sizes of live arena values over an execution of ``kernels``."""
    keep_ids = {id(v) for v in keep}
    last: dict[int, int] = {}
    for i, k in enumerate(kernels):
        for x in k.inputs:
            last[id(x)] = i
    live = peak = 0
    for i, k in enumerate(kernels):
        live += sum(_nbytes(v) for v in k.outputs)
        peak = max(peak, live)
        for v in {id(v): v for v in k.inputs + k.outputs}.values():
            if not v.is_leaf and id(v) not in keep_ids and last.get(id(v), i) == i:
                live -= _nbytes(v)
    return peak


def dependency_graph(kernels: list[Kernel]) -> nx.DiGraph:
    """Kernel indices with an edge producer → consumer for every value one kernel reads from another."""
    g = nx.DiGraph()
    g.add_nodes_from(range(len(kernels)))
    g.add_edges_from((d, i) for i, ds in enumerate(dependencies(kernels)) for d in ds)
    return g


def state_order(kernels: list[Kernel], updates: list[tuple[Node, Node]]) -> list[tuple[int, int]]:
    """Ordering edges ``(before, after)`` between kernel indices that let state updates be written in place (see
    the module docstring): (a reader of param p, the kernel computing p's new value) and (a kernel that may fail,
    a kernel computing an update value), each where the second does not already lead to the first; together they
    keep the dependency graph acyclic (edges that would close a cycle with the others are dropped)."""
    producer = {v: i for i, k in enumerate(kernels) for v in k.outputs}
    computing = {i for p, v in updates if (i := producer.get(v)) is not None}
    if not computing:
        return []
    deps = dependency_graph(kernels)
    after_update = [0] * len(kernels)  # bit k set: kernel k (computing an update value) leads to this kernel
    for i in nx.topological_sort(deps):
        for d in deps.predecessors(i):
            after_update[i] |= after_update[d] | (1 << d if d in computing else 0)
    readers: dict[int, list[int]] = {}
    for j, k in enumerate(kernels):
        for x in dict.fromkeys(k.inputs):
            if x.is_leaf:
                readers.setdefault(id(x), []).append(j)
    edges = [(j, i) for p, v in updates if (i := producer.get(v)) is not None
             for j in readers.get(id(p), []) if j != i and not after_update[j] >> i & 1]
    edges += [(f, i) for f, k in enumerate(kernels) if may_fail(k)
              for i in sorted(computing) if f != i and not after_update[f] >> i & 1]
    edges = list(dict.fromkeys(edges))
    deps.add_edges_from(edges)
    if nx.is_directed_acyclic_graph(deps):
        return edges
    deps.remove_edges_from(edges)  # rare: two updates' orderings conflict; keep those that fit, in order
    kept = []
    for a, b in edges:
        if not nx.has_path(deps, b, a):
            deps.add_edge(a, b)
            kept.append((a, b))
    return kept


def run(kernels: list[Kernel], keep: Iterable[Node] = (), after: Iterable[tuple[int, int]] = ()) -> list[Kernel]:
    """A dependency-respecting order of ``kernels`` with low peak memory (see the module docstring); ``after``:
    extra ``(before, after)`` edges between kernel indices the order must respect too."""
    keep_set = set(keep)
    deps = dependency_graph(kernels)
    deps.add_edges_from(after)
    if not nx.is_directed_acyclic_graph(deps):
        cycle = [kernels[u].name for u, _ in nx.find_cycle(deps)]
        raise ValueError(f"schedule: kernels depend on each other in a cycle: {' -> '.join(cycle)}")
    keep_ids = {id(v) for v in keep_set}
    readers: dict[int, list[int]] = {}  # value id -> the kernels reading it that have not run yet
    for i, k in enumerate(kernels):
        for x in k.inputs:
            readers.setdefault(id(x), []).append(i)
    # (id, size) of the inputs each kernel may free, and the bytes it allocates
    freeable = [[(id(x), _nbytes(x)) for x in k.inputs if not x.is_leaf and id(x) not in keep_ids] for k in kernels]
    allocated = [sum(_nbytes(v) for v in k.outputs) for k in kernels]
    waiting = dict(deps.in_degree())
    ready: set[int] = set()
    heap: list[tuple[int, int, int]] = []  # (allocated - freed, index, version): smallest first
    version = [0] * len(kernels)

    def push(i: int) -> None:
        version[i] += 1
        freed = sum(size for x, size in freeable[i] if len(readers[x]) == 1)
        heapq.heappush(heap, (allocated[i] - freed, i, version[i]))

    for i, w in waiting.items():
        if w == 0:
            ready.add(i)
            push(i)
    order: list[int] = []
    while heap:
        _, best, v = heapq.heappop(heap)
        if v != version[best] or best not in ready:
            continue
        ready.remove(best)
        order.append(best)
        for x in kernels[best].inputs:
            remaining = readers[id(x)]
            remaining.remove(best)
            if len(remaining) == 1 and remaining[0] in ready:  # its last reader would now free it
                push(remaining[0])
        for s in deps.successors(best):
            waiting[s] -= 1
            if waiting[s] == 0:
                ready.add(s)
                push(s)
    greedy = [kernels[i] for i in order]
    in_order = all(d < i for d, i in deps.edges)  # the given order is itself topological
    if in_order and peak_bytes(kernels, keep_set) <= peak_bytes(greedy, keep_set):
        return list(kernels)
    return greedy


def _run(c: Compilation) -> Compilation:
    assert c.kernels is not None, "schedule runs after fuse"
    keep = set(c.roots)
    edges = state_order(c.kernels, c.updates)
    ordered = run(c.kernels, keep=keep, after=edges)
    line = (f"{len(ordered)} kernels; peak live bytes {peak_bytes(ordered, keep)} "
            f"(creation order: {peak_bytes(c.kernels, keep)})")
    lines = [line] + ([f"{len(edges)} ordering edges for in-place state updates (readers of a param before its "
                       "update, kernels that may fail before every update)"] if edges else [])
    return c.but(kernels=ordered, report={**c.report, "schedule": lines})


PASS = Pass("schedule", "kernel order with low peak live memory (greedy list scheduling)", _run)
