"""The NumPy reference backend: evaluates each node with its op's ``reference`` in topological order.

It checks, for every node it runs, that the reference returned exactly the inferred shape and dtype, so an
op whose inference and semantics disagree is caught at its first use.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from graphc.ir import GraphcError, Node
from ops.registry import get_op
from passes.pipeline import build_plan
from runtime.program import Program, allocate_arena


def evaluate(nodes: list[Node], feeds: dict[str, np.ndarray], state: dict[str, np.ndarray],
             wanted: list[Node]) -> list[np.ndarray]:
    """Values of ``wanted`` given topologically ordered ``nodes``; intermediates are freed after last use."""
    last_use: dict[int, int] = {}
    for i, n in enumerate(nodes):
        for x in n.inputs:
            last_use[id(x)] = i
    keep = {id(n) for n in wanted}
    values: dict[int, np.ndarray] = {}
    for i, n in enumerate(nodes):
        values[id(n)] = _value(n, feeds, state, values)
        for x in n.inputs:
            if last_use.get(id(x)) == i and id(x) not in keep:
                values.pop(id(x), None)
    return [values[id(n)] for n in wanted]


def _value(n: Node, feeds: dict[str, np.ndarray], state: dict[str, np.ndarray],
           values: dict[int, np.ndarray]) -> np.ndarray:
    if n.op == "input":
        return feeds[n.name]
    if n.op == "param":
        return state[n.name]
    if n.op == "const":
        return n.attrs["value"]
    if n.size == 0:  # every op's value with no elements is the empty array of its type (as native code gives it)
        return np.zeros(n.shape, n.type.np_dtype)
    args = [values[id(x)] for x in n.inputs]
    try:
        result = np.asarray(get_op(n.op).reference(n.attrs, *args))
    except (ValueError, FloatingPointError, IndexError) as err:
        raise GraphcError(f"{n.op} ({n.name!r}, created at {n.site}): {err}") from err
    if result.shape != n.shape or result.dtype != n.type.np_dtype:
        raise GraphcError(f"internal error: {n.op}.reference returned {result.dtype}{list(result.shape)}, "
                          f"inferred {n.type} ({n.name!r} at {n.site})")
    return result


class InterpreterProgram(Program):
    """``backend="numpy"``: the reference semantics, node by node."""

    backend = "numpy"

    def __init__(self, outputs: Any, updates: Any = None) -> None:
        super().__init__(outputs, updates)

    def _run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        wanted = self.output_nodes + [value for _, value in self.updates]
        with np.errstate(all="ignore"):
            return evaluate(self.nodes, feeds, self.graph.state, wanted)


class PlanInterpreterProgram(Program):
    """``backend="numpy-plan"``: executes the compiled Plan (fusion, schedule, memory plan) with NumPy.

    One arena (64-byte aligned, allocated once per program) holds every kernel output at its planned offset;
    kernels run in plan order, each node evaluated with its op's ``reference``; a kernel reads its inputs from
    their arena views (or bound arrays) and writes its outputs into theirs, so in-place reuse really aliases
    memory. If fusion, scheduling or memory planning broke meaning (a buffer reused too early), this program
    disagrees with ``backend="numpy"`` — which is what the tests check. State updates are all copied after the
    run (the native backend writes the plan's ``state_inplace`` ones from their kernel): such a value has no arena
    buffer, so it is kept in an array of its own, which later kernels read.
    """

    backend = "numpy-plan"

    def __init__(self, outputs: Any, updates: Any = None) -> None:
        super().__init__(outputs, updates)
        self.plan = build_plan(self.output_nodes, self.updates)
        self._arena_owner, self.arena = allocate_arena(self.plan)
        self.views: dict[Node, np.ndarray] = {
            n: self.arena[b.offset:b.offset + n.type.nbytes].view(n.type.np_dtype).reshape(n.shape)
            for n, b in self.plan.buffers.items()}

    def _run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        state = self.graph.state
        taken: dict[Node, np.ndarray] = {}  # the plan's state_inplace values (not in the arena)

        def read(x: Node) -> np.ndarray:
            if x in taken:
                return taken[x]
            return self.views[x] if x in self.views else _value(x, feeds, state, {})

        with np.errstate(all="ignore"):
            for kernel in self.plan.kernels:
                local: dict[int, np.ndarray] = {id(x): read(x) for x in kernel.inputs}
                for n in kernel.nodes:
                    local[id(n)] = _value(n, feeds, state, local)
                # a reference may return a view of an input buffer that an in-place output overwrites: copy first
                results = [np.array(r, copy=True) if np.may_share_memory(r, self.arena) else r
                           for r in (local[id(v)] for v in kernel.outputs)]
                for v, r in zip(kernel.outputs, results):
                    if v in self.views:
                        np.copyto(self.views[v], r)
                    else:
                        taken[v] = np.array(r, copy=True)
        wanted = self.plan.outputs + [value for _, value in self.plan.updates]  # simplified nodes, same order
        # copies of bound values, so applying one update never changes what another update reads
        return [taken[n] if n in taken else self.views[n] if n in self.views else np.array(read(n), copy=True)
                for n in wanted]
