"""Memory planning: liveness intervals over the schedule → offsets in one 64-byte-aligned arena.

Algorithm:

1. Every kernel output is an arena value (leaves are bound outside the arena). Its live interval is
   ``[d, u]`` in kernel positions: ``d`` the kernel that writes it, ``u`` the last kernel that reads it, or the end
   of the program (``len(kernels)``) for program outputs and update values, which the runtime reads after all
   kernels ran.
2. *In place* (decided from liveness alone): at kernel ``d`` an output may take over the buffer of one of the
   kernel's inputs when that input is an arena value that dies here (``u == d``, so never a program output or
   update value), has exactly the output's byte size and has not been taken by another output. Conservatively,
   only for kernels that allow it: a one-node kernel whose op has the ``inplace`` flag (the output takes input 0),
   or a fused elementwise/broadcast group where the input has the group's shape (element ``i`` of every value is
   computed from element ``i`` of that input only) and every node reading it has the ``inplace`` flag. A chain of
   in-place values shares one *slot*, live from the first value's definition to the last one's last use.
   Slots whose lifetimes intersect (closed intervals: a kernel's outputs never share bytes with the inputs it
   reads, except the in-place pairs) must get disjoint byte ranges. Two placements are computed and the smaller
   arena wins (both are reported):
   a. best-fit in schedule order: walk the kernels, place each slot starting there in the smallest free hole
      that holds its 64-byte-aligned size (a hole touching the top may be extended, otherwise the arena grows),
      then free the slots that end there; neighbouring holes coalesce;
   b. largest first: slots sorted by size (descending), each placed in the tightest gap between the already
      placed slots whose lifetimes intersect its own (or above them). This offline order usually reaches the
      lower bound, the peak of the summed live sizes. The intersecting slots come from one sweep over the
      lifetimes (adjacency lists); its cost is the number of intersecting pairs, so when more than
      ``LARGEST_FIRST_PAIRS`` values overlap (thousands live at once) only (a) runs.
   Before placement, a batch-1 concat whose every input can live inside its output (``passes.concat_slices``)
   has its slot merged with its inputs' slots: one slot live from the first input's definition, each input at
   its offset in the concat's bytes, so the kernels computing them write the concat's parts and it copies nothing.
3. ``verify_plan`` checks the result independently: for every kernel position, the buffers of the values live
   there must not overlap (the declared in-place pairs excepted, and only at the kernel that hands over).

*State updates in place* (``Plan.state_inplace``, decided first, from the schedule alone; see
:func:`choose_state_inplace`): the new value ``v`` of a param ``p`` may be written by its kernel ``K`` straight into
``graph.state[p]`` (as JAX's donated buffers), so nothing is copied after the call, when that can never tear the
state or change an answer:

- every other kernel that reads ``p`` runs before ``K``; if ``K`` itself reads ``p`` it reads it only at the index
  it writes ``v`` (an elementwise kernel where ``p`` has ``v``'s shape, the in-place rule of step 2);
- ``p`` is not read after the kernels (it is no program output and no update's value: ``{a: b, b: a}`` swaps
  through the copying path), and ``v`` is the value of no other update and no program output;
- no kernel from the first in-place one on can report bad data (an op with a status message: an out-of-range
  label, a failed collective); the entry returns before the first in-place kernel when an earlier one did, so a
  failed call leaves the state as it was.

Such a ``v`` has no arena buffer (it lives in ``graph.state[p]``, where kernels after ``K`` that read it read it),
which also shrinks the arena. Every other update is computed into the arena and copied by the runtime after the call.
The report lists each update's decision and the reason for each copy.

The report gives the naive size (every value its own buffer), the planned arena size and the lower bound
(the peak of the summed live sizes).
"""

from __future__ import annotations

import bisect
from typing import NamedTuple

from graphc.ir import Node
from passes import concat_slices
from passes.compilation import Compilation, Pass
from passes.plan import (
    Buffer,
    Kernel,
    PlanError,
    align,
    inplace_candidates,
    intervals,
    may_fail,
    reads_at_own_index,
    slice_spans,
    verify_plan,
)
from passes.provenance import Provenance

# largest-first placement costs time proportional to the interfering pairs; beyond this many (thousands of values
# live at once) only the online best-fit runs, which is O(n) allocations over a short list of holes
LARGEST_FIRST_PAIRS = 500_000

__all__ = ["MemoryPlan", "PlanError", "choose_inplace", "choose_state_inplace", "inplace_candidates", "intervals",
           "run", "verify_plan"]


class MemoryPlan(NamedTuple):
    buffers: dict[Node, Buffer]
    arena_bytes: int
    inplace: dict[Node, Node]  # output value -> input value whose buffer it took over
    report: list[str]
    state_inplace: dict[Node, Node]  # param -> update value its kernel writes straight into graph.state
    slices: dict[Node, tuple[Node, int]] = {}  # concat input -> (the concat's value, byte offset inside it)


def choose_state_inplace(kernels: list[Kernel], outputs: list[Node], updates: list[tuple[Node, Node]]
                         ) -> tuple[dict[Node, Node], dict[Node, str]]:
    """({param: value} of the updates written straight into ``graph.state``, {param: why not} of the others), in
    update order: the rules of the module docstring, checked against the scheduled ``kernels``."""
    producer: dict[Node, int] = {}
    last_read: dict[Node, int] = {}
    for i, k in enumerate(kernels):
        producer.update((v, i) for v in k.outputs)
        last_read.update((x, i) for x in k.inputs if x.is_leaf)
    failing = [i for i, k in enumerate(kernels) if may_fail(k)]
    read_after = {id(n) for n in outputs} | {id(v) for _, v in updates}
    uses: dict[int, int] = {}
    for v in list(outputs) + [v for _, v in updates]:
        uses[id(v)] = uses.get(id(v), 0) + 1
    chosen: dict[Node, Node] = {}
    why: dict[Node, str] = {}
    for p, v in updates:
        i = producer.get(v)
        if i is None:
            why[p] = f"its new value {v.name!r} ({v.op}) is no kernel's result"
        elif uses[id(v)] > 1:
            why[p] = f"its new value {v.name!r} is also a program output or another update's value"
        elif id(p) in read_after:
            why[p] = f"{p.name!r} itself is a program output or another update's value (read after the kernels)"
        elif last_read.get(p, -1) > i:
            why[p] = (f"kernel {last_read[p]} ({kernels[last_read[p]].name}) reads {p.name!r} after kernel {i} "
                      f"({kernels[i].name}) computes its new value")
        elif last_read.get(p) == i and not reads_at_own_index(kernels[i], p, v):
            why[p] = f"kernel {i} ({kernels[i].name}) reads {p.name!r} at other indices than it writes"
        elif failing and failing[-1] >= i:
            j = failing[-1]
            why[p] = (f"kernel {j} ({kernels[j].name}) may report bad data at run time and does not run before "
                      f"kernel {i} ({kernels[i].name}), which computes the new value")
        else:
            chosen[p] = v
    return chosen, why


# ------------------------------------------------------------------------------------------- allocator


class _Arena:
    """Best-fit allocator over a growing arena; ``holes`` are sorted, coalesced (offset, size) pairs."""

    def __init__(self) -> None:
        self.holes: list[tuple[int, int]] = []
        self.top = 0

    def alloc(self, size: int) -> int:
        best = None
        for i, (_, hsize) in enumerate(self.holes):
            if hsize >= size and (best is None or hsize < self.holes[best][1]):
                best = i
        if best is not None:
            off, hsize = self.holes[best]
            if hsize == size:
                del self.holes[best]
            else:
                self.holes[best] = (off + size, hsize - size)
            return off
        if self.holes and sum(self.holes[-1]) == self.top:  # extend the hole that touches the top
            off, _ = self.holes.pop()
        else:
            off = self.top
        self.top = off + size
        return off

    def free(self, off: int, size: int) -> None:
        i = bisect.bisect(self.holes, (off, size))
        self.holes.insert(i, (off, size))
        if i + 1 < len(self.holes) and off + size == self.holes[i + 1][0]:
            self.holes[i] = (off, size + self.holes[i + 1][1])
            del self.holes[i + 1]
        if i > 0 and sum(self.holes[i - 1]) == self.holes[i][0]:
            self.holes[i - 1] = (self.holes[i - 1][0], self.holes[i - 1][1] + self.holes[i][1])
            del self.holes[i]


def choose_inplace(kernels: list[Kernel], live: dict[Node, tuple[int, int]],
                   in_state: frozenset[Node] | set[Node] = frozenset()) -> dict[Node, Node]:
    """In-place pairs (output -> donor input): step 2a of the module docstring; depends on liveness only. Values
    written into ``graph.state`` (``in_state``) neither take nor give an arena buffer."""
    inplace: dict[Node, Node] = {}
    for i, k in enumerate(kernels):
        taken: set[Node] = set()
        for v in k.outputs:
            if v in in_state:
                continue
            donor = next((x for x in inplace_candidates(k, v)
                          if x in live and x not in taken and x not in in_state and live[x][1] == i
                          and x.type.nbytes == v.type.nbytes and v.type.nbytes > 0), None)
            if donor is not None:
                taken.add(donor)
                inplace[v] = donor
    return inplace


class _Slot(NamedTuple):
    """Storage shared by a chain of in-place values: one aligned size, live from the first to the last; or a
    concat's value and its slices (``inner``: each slice's byte offset in the slot)."""

    values: list[Node]
    start: int
    end: int
    size: int
    inner: dict[Node, int] = {}


def _with_slices(slots: list[_Slot], slices: concat_slices.Slices) -> list[_Slot]:
    """The slots with each concat's slices moved into its value's slot (live over all of them)."""
    own = {sl.values[0]: sl for sl in slots}
    held: dict[Node, list[Node]] = {}
    for x, (y, _) in slices.items():
        held.setdefault(y, []).append(x)
    merged = [sl for sl in slots if sl.values[0] not in slices and sl.values[0] not in held]
    for y, xs in held.items():
        parts = [own[y]] + [own[x] for x in xs]
        merged.append(_Slot(own[y].values + xs, min(p.start for p in parts), max(p.end for p in parts),
                            own[y].size, {x: slices[x][1] for x in xs}))
    return merged


def _slots(kernels: list[Kernel], live: dict[Node, tuple[int, int]], inplace: dict[Node, Node]) -> list[_Slot]:
    chains: dict[Node, list[Node]] = {}
    for k in kernels:
        for v in k.outputs:
            if v.type.nbytes == 0 or v not in live:  # no bytes, or written into graph.state
                continue
            if v in inplace:
                chain = chains.pop(inplace[v])
                chain.append(v)
                chains[v] = chain
            else:
                chains[v] = [v]
    return [_Slot(c, live[c[0]][0], max(live[v][1] for v in c), align(c[0].type.nbytes)) for c in chains.values()]


def _place_online(slots: list[_Slot]) -> tuple[list[int], int]:
    """Walk the schedule: allocate the slots starting at each kernel best-fit, then free those ending there."""
    arena = _Arena()
    offsets = [0] * len(slots)
    starting: dict[int, list[int]] = {}
    ending: dict[int, list[int]] = {}
    for j, sl in enumerate(slots):
        starting.setdefault(sl.start, []).append(j)
        ending.setdefault(sl.end, []).append(j)
    for t in sorted(set(starting) | set(ending)):
        for j in starting.get(t, []):
            offsets[j] = arena.alloc(slots[j].size)
        for j in ending.get(t, []):
            arena.free(offsets[j], slots[j].size)
    return offsets, arena.top


def interference(slots: list[_Slot]) -> list[list[int]]:
    """For each slot, the slots whose (closed) lifetimes intersect its own: one sweep over the slots by start,
    cost proportional to the number of intersecting pairs. Adjacency lists rather than a ``networkx.Graph``: on a
    graph whose 2,000 outputs all stay live (2M pairs), building the networkx graph took 14.9 s and these lists
    under 1 s."""
    neighbours: list[list[int]] = [[] for _ in slots]
    active: list[int] = []
    for j in sorted(range(len(slots)), key=lambda j: slots[j].start):
        start = slots[j].start
        active = [q for q in active if slots[q].end >= start]
        for q in active:
            neighbours[q].append(j)
            neighbours[j].append(q)
        active.append(j)
    return neighbours


def interfering_pairs(slots: list[_Slot]) -> int:
    """How many pairs of slots have intersecting lifetimes (O(n log n), without listing them)."""
    ends: list[int] = []
    pairs = 0
    for sl in sorted(slots, key=lambda sl: sl.start):
        pairs += len(ends) - bisect.bisect_left(ends, sl.start)  # earlier slots still live at this start
        bisect.insort(ends, sl.end)
    return pairs


def _place_by_size(slots: list[_Slot]) -> tuple[list[int], int]:
    """Largest slots first, each at the tightest gap left by already placed slots whose lifetimes intersect."""
    offsets = [0] * len(slots)
    placed = [False] * len(slots)
    top = 0
    neighbours = interference(slots)
    for j in sorted(range(len(slots)), key=lambda j: (-slots[j].size, slots[j].start)):
        sl = slots[j]
        busy = sorted((offsets[q], offsets[q] + slots[q].size) for q in neighbours[j] if placed[q])
        best, best_gap, cursor = None, None, 0
        for lo, hi in busy:
            gap = lo - cursor
            if gap >= sl.size and (best_gap is None or gap < best_gap):
                best, best_gap = cursor, gap
            cursor = max(cursor, hi)
        offsets[j] = cursor if best is None else best
        placed[j] = True
        top = max(top, offsets[j] + sl.size)
    return offsets, top


def run(kernels: list[Kernel], outputs: list[Node], updates: list[tuple[Node, Node]],
        provenance: Provenance | None = None) -> MemoryPlan:
    """Assign arena offsets to every kernel output of the scheduled ``kernels`` (see the module docstring); the
    in-place pairs are recorded in ``provenance``."""
    state_inplace, copied = choose_state_inplace(kernels, outputs, updates)
    in_state = set(state_inplace.values())  # they live in graph.state: no arena bytes
    keep = set(outputs) | {v for _, v in updates if v not in in_state}
    live = {v: span for v, span in intervals(kernels, keep).items() if v not in in_state}
    inplace = choose_inplace(kernels, live, in_state)
    slots = _slots(kernels, live, inplace)
    handover = {sl.values[0]: live[sl.values[1]][0] if len(sl.values) > 1 else len(kernels) + 1 for sl in slots}
    slices = concat_slices.choose(kernels, live, handover, keep)
    slots = _with_slices(slots, slices)
    candidates = {"best-fit in schedule order": _place_online(slots)}
    pairs = interfering_pairs(slots)
    if pairs <= LARGEST_FIRST_PAIRS:  # its cost grows with the pairs; past the cap best-fit alone is used
        candidates["largest first"] = _place_by_size(slots)
    method = min(candidates, key=lambda m: candidates[m][1])
    offsets, arena_bytes = candidates[method]
    buffers = {v: Buffer(0, 0) for v in live if v.type.nbytes == 0}
    for sl, off in zip(slots, offsets):
        buffers.update({v: Buffer(off + sl.inner.get(v, 0), v.type.nbytes) for v in sl.values})
    naive = sum(align(v.type.nbytes) for v in live)
    lower = _peak_live(live, len(kernels), inplace, slices)
    report = [f"naive (one buffer per value): {naive} bytes for {len(live)} values",
              f"planned arena: {arena_bytes} bytes (peak of live bytes {lower}); {len(inplace)} in-place reuses; "
              f"{len(slices)} values computed into their concat's buffer; "
              f"placement: {method} ({', '.join(f'{m}: {c[1]}' for m, c in candidates.items())}"
              + ("" if len(candidates) > 1 else f"; largest first skipped: {pairs} interfering pairs") + ")",
              f"saved {naive - arena_bytes} bytes ({100.0 * (naive - arena_bytes) / naive if naive else 0.0:.1f}%)"]
    report += [f"  in place: {v.name} ({v.op}) takes the buffer of {x.name}" for v, x in inplace.items()]
    report += [f"  concat slice: {x.name} ({x.op}) is computed into {y.name} at byte {at} (nothing copied)"
               for x, (y, at) in slices.items()]
    report += _state_report(kernels, updates, state_inplace, copied, provenance)
    for v, x in inplace.items() if provenance is not None else ():
        at = f"kernel {live[v][0]} ({kernels[live[v][0]].name})"
        provenance.record(v, "memplan", "inplace", f"in place: overwrites the buffer of {x.name!r} ({x.op}), "
                          f"which dies at {at}", into=x)
        provenance.record(x, "memplan", "donor", f"its buffer is reused in place by {v.name!r} ({v.op}) at {at}",
                          into=v)
    for x, (y, at) in slices.items() if provenance is not None else ():
        provenance.record(x, "memplan", "concat_slice", f"computed straight into its slice of {y.name!r} "
                          f"(byte {at}): the concat copies nothing for it", into=y)
    return MemoryPlan(buffers, arena_bytes, inplace, report, state_inplace, slices)


def _state_report(kernels: list[Kernel], updates: list[tuple[Node, Node]], state_inplace: dict[Node, Node],
                  copied: dict[Node, str], provenance: Provenance | None) -> list[str]:
    """The report lines of the state-update decisions (one per update), also recorded as provenance events."""
    if not updates:
        return []
    producer = {v: i for i, k in enumerate(kernels) for v in k.outputs}
    lines = [f"state updates: {len(state_inplace)} of {len(updates)} written in place into graph.state, "
             f"{len(updates) - len(state_inplace)} copied after the call"]
    for p, v in updates:
        if p in state_inplace:
            k = producer[v]
            text = (f"in place: kernel {k} ({kernels[k].name}) writes the new value of {p.name!r} straight into "
                    f"graph.state[{p.name!r}] (no copy after the call)")
            what = "state_inplace"
        else:
            text = f"copied: the new value of {p.name!r} is copied into graph.state after the call: {copied[p]}"
            what = "state_copy"
        lines.append(f"  {p.name} <- {v.name}: {text}")
        if provenance is not None:
            provenance.record(v, "memplan", what, text, into=p)
    return lines


def _peak_live(live: dict[Node, tuple[int, int]], steps: int, inplace: dict[Node, Node],
               slices: concat_slices.Slices) -> int:
    """The peak of the summed aligned sizes of live values (an in-place donor stops counting at the handover; a
    concat's slices count as their concat's bytes, live from the first slice's definition)."""
    donors = set(inplace.values())
    delta = [0] * (steps + 2)
    for v, (s, e) in slice_spans(live, slices).items():
        delta[s] += align(v.type.nbytes)
        delta[e if v in donors else e + 1] -= align(v.type.nbytes)
    peak = total = 0
    for d in delta:
        total += d
        peak = max(peak, total)
    return peak


def _run(c: Compilation) -> Compilation:
    assert c.kernels is not None, "memplan runs after fuse and schedule"
    mem = run(c.kernels, c.outputs, c.updates, c.provenance)
    return c.but(buffers=mem.buffers, arena_bytes=mem.arena_bytes, inplace=mem.inplace,
                 state_inplace=mem.state_inplace, slices=mem.slices, report={**c.report, "memory": mem.report})


PASS = Pass("memplan", "arena offsets: liveness, in-place reuse, concat slices and in-place state updates, best-fit or "
            "largest-first placement", _run)
