"""What every backend's program shares: the output spec, state updates, feed validation and the call contract.

``Program.__call__(**feeds)`` validates names, shapes and dtypes of the feeds before any kernel runs, runs the
backend, applies state updates in place and returns fresh output arrays as a dict (or list, or one array,
matching how ``outputs`` was given).

State updates: every update is computed from the state before the call (simultaneous: ``{a: b, b: a}`` swaps)
and written into the existing ``graph.state`` arrays (they are never replaced). The native backend writes some
of them straight from their kernel (``plan.state_inplace``, see :mod:`runtime.native`); the others are copied in
by :meth:`Program._apply_updates` after the backend ran. A call that raises before its kernels completed (bad
feeds, a kernel reporting bad data) leaves the state as it was; once they completed, the step is completed too.
Every updated param's state array must be writeable (a read-only one is a :class:`GraphcError` before anything
runs).

Threads and interrupts: a Program may be called from any number of threads. Every call holds its graph's
``state_lock`` from reading the state to writing the updates, so the calls of all programs compiled from one graph
(a training step, an evaluation program, ...) run one at a time: each reads a consistent state and its updates
are all applied before another call reads it. The updates themselves are applied with Ctrl-C held back (SIGINT's
handler only records it meanwhile), so Ctrl-C during a step leaves the state as before the step or after it, never
in between; the KeyboardInterrupt is raised once the step is complete.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from graphc.ir import MAX_TENSOR_BYTES, FeedError, GraphcError, Node, int64_overflow, topo_ancestors
from passes.plan import ALIGN, Plan

MAX_ARENA_BYTES = MAX_TENSOR_BYTES  # 1 TiB of intermediate values per program

OutputSpec = Mapping[str, Node] | list[Node] | tuple[Node, ...] | Node


class Program:
    """A compiled (or interpreted) computation of ``outputs`` with optional state ``updates``."""

    backend = "abstract"

    def __init__(self, outputs: OutputSpec, updates: Any = None) -> None:
        self.output_names, self.output_nodes, self._form = _normalize_outputs(outputs)
        self.graph = self.output_nodes[0].graph
        explicit = _normalize_updates(self.graph, updates)
        self.updates = _with_implicit_updates(self.graph, self.output_nodes, explicit)
        roots = self.output_nodes + [value for _, value in self.updates]
        self.nodes = topo_ancestors(roots)
        self.inputs = {n.name: n for n in self.nodes if n.op == "input"}
        self.params = {n.name: n for n in self.nodes if n.op == "param"}
        updated = {p.name for p, _ in self.updates}
        checked = {**self.params, **{p.name: p for p, _ in self.updates}}  # on every call (_check_state)
        self._state_checks = [(name, node, node.shape, node.type.np_dtype, name in updated)
                              for name, node in checked.items()]

    # -- calling ---------------------------------------------------------------------------------------
    def __call__(self, named: Mapping[str, Any] | None = None, /, **feeds: Any) -> Any:
        """Run on ``feeds`` given as keywords, ``prog(x=a)``, or as one dict, ``prog({"x": a})``."""
        if named is not None:
            if not isinstance(named, Mapping):
                raise FeedError(f"a program takes its inputs by name: prog(x=...) or prog({{'x': ...}}), got a "
                                f"positional {type(named).__name__}")
            both = sorted(set(named) & set(feeds))
            if both:
                raise FeedError(f"input {both[0]!r} is given twice (in the dict and as a keyword)")
            feeds = {**named, **feeds}
        arrays = validate_feeds(self.graph, self.inputs, feeds)
        with self.graph.state_lock:
            self._check_state()
            values = self._run(arrays)
            outputs, new_state = values[: len(self.output_nodes)], values[len(self.output_nodes):]
            copies = any(value is not self.graph.state[p.name] for (p, _), value in zip(self.updates, new_state))
            with interrupts_deferred() if copies else contextlib.nullcontext():  # else the state is complete
                try:  # outputs are fresh arrays holding the values computed from the state *before* the updates
                    outputs = self._fresh(outputs)
                finally:  # some updates may already be in the state: the step is always completed
                    self._apply_updates(new_state)
        return self._package(outputs, arrays)

    def _fresh(self, values: list[np.ndarray]) -> list[np.ndarray]:
        """Fresh copies of the output values (a backend whose ``_run`` returns some fresh arrays overrides it)."""
        return [np.array(v, copy=True) for v in values]

    def _apply_updates(self, new_state: list[np.ndarray]) -> None:
        """Write every update into ``graph.state`` in place, all computed from the old state (simultaneous:
        ``{a: b, b: a}`` swaps). A new value that aliases some state array (a param, or a view of one) is copied
        before any write. A value that *is* its target array was written in place by the backend already."""
        targets = [self.graph.state[param.name] for param, _ in self.updates]
        pending = [(t, v) for t, v in zip(targets, new_state) if v is not t]
        pending = [(t, np.array(v, copy=True) if any(np.may_share_memory(v, u) for u in targets) else v)
                   for t, v in pending]
        for target, value in pending:
            np.copyto(target, value)

    def _run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        """Values of ``output_nodes`` then of the update values, in that order."""
        raise NotImplementedError

    def _check_state(self) -> None:
        """The graph's state arrays must still match their params (a user may have replaced one), and those this
        program updates must be writeable."""
        state = self.graph.state
        for name, node, shape, dtype, updated in self._state_checks:
            array = state.get(name)
            if not isinstance(array, np.ndarray) or array.shape != shape or array.dtype != dtype:
                got = "missing" if array is None else f"{getattr(array, 'dtype', type(array).__name__)}" \
                      f"{list(getattr(array, 'shape', ()))}"
                raise GraphcError(f"graph.state[{name!r}] must be a {node.type} array, found {got}")
            if updated and not array.flags.writeable:
                raise GraphcError(f"graph.state[{name!r}] is read-only, but this program updates it in place; "
                                  f"assign a writeable array (e.g. graph.state[{name!r}] = np.array(...))")

    def _package(self, arrays: list[np.ndarray], feeds: Mapping[str, np.ndarray] | None = None) -> Any:
        if self._form == "dict":
            return Results(zip(self.output_names, arrays), feeds=feeds or {}, program=self)
        if self._form == "single":
            return arrays[0]
        return arrays

    # -- inspection ------------------------------------------------------------------------------------
    @property
    def provenance(self) -> Any:
        """What each compiler pass did to each node (``passes.provenance.Provenance``); None without a Plan."""
        plan = getattr(self, "plan", None)
        return plan.provenance if isinstance(plan, Plan) else None

    def explain(self, tensor: Node | str) -> Any:
        """How this program computes ``tensor`` (a tensor or a node name), from its creation site through the
        passes, its buffer, to the LLVM IR and assembly: an ``Explanation`` (see :mod:`runtime.explain`)."""
        from runtime.explain import explain

        return explain(self, tensor)

    def render_memory(self, path: str | None = None) -> Any:
        """The memory plan as a timeline (x: kernel order, y: arena offset, one rectangle per buffer): a matplotlib
        Figure when ``path`` is None, else the file written (``graphc.memory_view``)."""
        return _viewer("graphc.memory_view").render_memory(self, path)

    def render_kernels(self, path: str | None = None) -> Any:
        """The fused kernels as clusters over the op graph, each boundary labelled with the fusion report's reason:
        a ``graphc.viz.Picture`` when ``path`` is None, else the file written (``graphc.pictures``)."""
        return _viewer("graphc.pictures").render_kernels(self, path)

    def __repr__(self) -> str:
        return (f"<{type(self).__name__} backend={self.backend} outputs={self.output_names} "
                f"inputs={list(self.inputs)} updates={[p.name for p, _ in self.updates]}>")


def _viewer(module: str) -> Any:
    """A picture module of the top layer (graphviz/matplotlib drawing), imported by name on first use: the runtime
    layer keeps no import edge up to ``graphc`` (tests/test_architecture.py)."""
    import importlib

    return importlib.import_module(module)


class Results(dict):
    """A program's dict of outputs that also remembers the call: ``feeds`` (the validated feed arrays, by input
    name) and ``program``. ``gc.render(..., values=results)`` uses them to recompute every intermediate value.
    The feed arrays are kept by reference, not copied.
    """

    def __init__(self, items: Any = (), *, feeds: Mapping[str, np.ndarray] | None = None,
                 program: Program | None = None) -> None:
        super().__init__(items)
        self.feeds: dict[str, np.ndarray] = dict(feeds or {})
        self.program = program

    def __reduce__(self) -> tuple:  # pickles as a plain dict (the program is not picklable)
        return (dict, (dict(self),))


def _normalize_outputs(outputs: OutputSpec) -> tuple[list[str], list[Node], str]:
    if isinstance(outputs, Node):
        return [outputs.name], [outputs], "single"
    if isinstance(outputs, Mapping):
        names, nodes, form = [str(k) for k in outputs], list(outputs.values()), "dict"
    elif isinstance(outputs, (list, tuple)):
        nodes, form = list(outputs), "list"
        names = [getattr(n, "name", str(i)) for i, n in enumerate(nodes)]
    else:
        raise GraphcError(f"compile: outputs must be a tensor, a dict of tensors or a list of tensors, "
                          f"got {type(outputs).__name__}")
    if not nodes:
        raise GraphcError("compile: no outputs given")
    for name, n in zip(names, nodes):
        if not isinstance(n, Node):
            raise GraphcError(f"compile: output {name!r} is a {type(n).__name__}, not a graphc tensor")
    graphs = {id(n.graph) for n in nodes}
    if len(graphs) > 1:
        raise GraphcError("compile: all outputs must belong to one graph")
    return names, nodes, form


def _normalize_updates(graph, updates: Any) -> list[tuple[Node, Node]]:
    if updates is None:
        return []
    pairs = list(updates.items()) if isinstance(updates, Mapping) else list(updates)
    seen: set[str] = set()
    for pair in pairs:
        if not (isinstance(pair, tuple) and len(pair) == 2):
            raise GraphcError("compile: updates must be a dict {param: new_value} or a list of (param, new_value)")
        param, value = pair
        if not isinstance(param, Node) or param.op != "param" or param.graph is not graph:
            raise GraphcError(f"compile: update target {param!r} is not a param of graph {graph.name!r}")
        if not isinstance(value, Node) or value.graph is not graph:
            raise GraphcError(f"compile: the new value of {param.name!r} must be a tensor of graph {graph.name!r}")
        if value.type != param.type:
            raise GraphcError(f"compile: the update of {param.name!r} ({param.type}) has type {value.type}, "
                              f"created at {value.site}")
        if param.name in seen:
            raise GraphcError(f"compile: {param.name!r} is updated twice")
        seen.add(param.name)
    return pairs


def _with_implicit_updates(graph, outputs: list[Node], explicit: list[tuple[Node, Node]]) -> list[tuple[Node, Node]]:
    """Add the updates that ops computed by this program asked for (e.g. batch-norm running statistics)."""
    if not graph.implicit_updates:
        return explicit
    pairs = list(explicit)
    targets = {p.name for p, _ in pairs}
    for node in topo_ancestors(outputs + [v for _, v in explicit]):
        for param, value in graph.implicit_updates.get(node, ()):
            if param.name not in targets:
                pairs.append((param, value))
                targets.add(param.name)
    return pairs


@contextlib.contextmanager
def interrupts_deferred() -> Iterator[None]:
    """Hold back Ctrl-C while the body runs: SIGINT's Python handler (which runs in the main thread, whichever
    thread the signal hit) is swapped for one that only records it, and a recorded SIGINT goes to the previous
    handler (KeyboardInterrupt by default) after the body. Calls from other threads need nothing: Python never
    raises the interrupt in them."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[tuple[int, Any]] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: caught.append((signum, frame)))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if caught and callable(previous):
            previous(*caught[0])  # the default handler raises KeyboardInterrupt here
        elif caught and previous == signal.SIG_DFL:
            os.kill(os.getpid(), signal.SIGINT)


def allocate_arena(plan: Plan) -> tuple[np.ndarray, np.ndarray]:
    """(owner, view): ``plan.arena_bytes`` zeroed bytes, 64-byte aligned; a clear error when they cannot exist."""
    return aligned_bytes(plan.arena_bytes, "arena", f"; largest values: {_largest(plan)}")


def aligned_bytes(nbytes: int, what: str, detail: str = "") -> tuple[np.ndarray, np.ndarray]:
    """(owner, view): ``nbytes`` zeroed bytes, 64-byte aligned, for the program's ``what``; a clear GraphcError
    (never a raw MemoryError) when they exceed ``MAX_ARENA_BYTES`` or memory."""
    if nbytes > MAX_ARENA_BYTES:
        raise GraphcError(f"the program's {what} of {nbytes} bytes is more than graphc's limit of "
                          f"{MAX_ARENA_BYTES} bytes{detail}")
    try:
        owner = np.zeros(nbytes + ALIGN, dtype=np.uint8)
    except MemoryError:
        raise GraphcError(f"cannot allocate the program's {what} of {nbytes} bytes (out of memory){detail}") from None
    start = (-owner.ctypes.data) % ALIGN
    return owner, owner[start:start + nbytes]


def _largest(plan: Plan, count: int = 3) -> str:
    values = sorted(plan.buffers, key=lambda n: -n.type.nbytes)[:count]
    return "; ".join(f"{n.name} {n.type} ({n.type.nbytes} bytes, created at {n.site})" for n in values)


# ------------------------------------------------------------------------------------------ feed checks


def _describe(node: Node) -> str:
    return f"{node.name!r} ({node.type}, declared at {node.site})"


def validate_feeds(graph, inputs: dict[str, Node], feeds: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Check every feed against the declared inputs; return C-contiguous arrays of the declared dtypes.

    Values convert when NumPy's ``same_kind`` rule allows it (float64 → float32, int → float); anything that
    would change meaning (float → int labels, a wrong shape, an unknown or missing name) is a :class:`FeedError`.
    """
    unknown = [k for k in feeds if k not in graph.inputs]
    if unknown:
        expected = ", ".join(_describe(n) for n in inputs.values()) or "no inputs"
        raise FeedError(f"unknown feed {', '.join(map(repr, unknown))}; this program takes {expected}")
    missing = [n for name, n in inputs.items() if name not in feeds]
    if missing:
        raise FeedError("missing feed " + ", ".join(_describe(n) for n in missing))
    arrays = {}
    for name, node in inputs.items():
        value = feeds[name]
        if isinstance(value, Node):
            raise FeedError(f"feed {name!r}: got the symbolic tensor {value.name!r}; feed a concrete array")
        try:
            array = np.asarray(value)
        except (TypeError, ValueError) as err:
            raise FeedError(f"feed {name!r}: cannot convert {type(value).__name__} to an array ({err})") from None
        want = node.type.np_dtype
        if array.dtype.kind not in "biuf" or not np.can_cast(array.dtype, want, "same_kind"):
            raise FeedError(f"feed {name!r}: expected {node.type.dtype}, got {array.dtype} "
                            f"(declared as {_describe(node)}); convert it explicitly")
        if array.shape != node.shape:
            raise FeedError(f"feed {name!r}: expected shape {node.shape}, got {array.shape} "
                            f"(declared as {_describe(node)})")
        outside = int64_overflow(array) if node.dtype == "int64" else None
        if outside is not None:
            raise FeedError(f"feed {name!r}: the value {outside} does not fit in int64 (declared as {_describe(node)})")
        arrays[name] = np.asarray(array, dtype=want, order="C")
    return arrays
