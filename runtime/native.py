"""``backend="llvm"``: the Plan compiled to native code and run with one ``graphc_main`` call per execution.

The program owns one 64-byte-aligned arena (a NumPy byte buffer) and a status word. Each call fills the binding
table (``codegen.module`` defines it) with raw pointers to the validated feeds, the *current* ``graph.state``
arrays (zero-copy; re-read every call since a user may replace one) and the constants, calls the entry, then
checks the status word. Raw pointers live only inside that call, while the arrays that own them are referenced.
Program outputs computed by kernels are *direct*: each call allocates a fresh array per such output, binds it as a
slot and the kernel writes into it, so the result is returned without the arena → output copy.

State updates in place (``plan.state_inplace``, decided by ``passes.memplan``): the kernel computing such an
update writes straight into the bound ``graph.state`` array (as JAX's donated buffers), so nothing is copied after
the call; the other updates are computed into the arena and copied by ``Program._apply_updates``. Before each call
the runtime makes sure that writing a param's state array in place cannot change what another binding reads: when
that array shares memory with another bound array (a feed, another param's state, a view of one), with the state
of another updated param, or is not the C-contiguous array itself, the call binds a private copy of it instead and
copies the result in after the call, exactly as the copying path does (same answer, one copy more). A kernel that
fails at run time does so before any in-place write (the entry returns first), so the state is left as it was.
"""

from __future__ import annotations

import ctypes
import os
import time
from collections.abc import Mapping
from typing import Any

import numpy as np

try:
    from numpy.lib.array_utils import byte_bounds
except ImportError:  # NumPy < 2
    from numpy import byte_bounds

import codegen.prepack as prepack
import runtime.collective as collective
import runtime.conv_tune as conv_tune
import runtime.parallel as parallel
from codegen.cache import cache_enabled, discard, load
from codegen.module import (
    ARENA,
    ENTRY,
    FIRST_SLOT,
    PROFILE,
    SCRATCH,
    STATUS,
    CodeSwitches,
    Module,
    binding_slots,
    build_module,
    plan_key,
)
from codegen.target import Jit
from graphc.ir import GraphcError, Node
from ops.registry import get_op
from passes.pipeline import build_plan
from runtime.asm import asm_functions, callees, vector_width
from runtime.profile import KernelTime, Profile, machine_peak, median_times
from runtime.program import MAX_ARENA_BYTES, Program, aligned_bytes, allocate_arena

_MAIN = ctypes.CFUNCTYPE(None, ctypes.POINTER(ctypes.c_void_p))
_PROFILE = ctypes.CFUNCTYPE(None, ctypes.POINTER(ctypes.c_void_p), ctypes.POINTER(ctypes.c_int64))


class NativeProgram(Program):
    """A program compiled by the LLVM backend."""

    backend = "llvm"

    def __init__(self, outputs: Any, updates: Any = None, cache: bool = True, threads: int | None = None,
                 tune: bool | None = None, algorithms: Mapping[str, str] | None = None) -> None:
        """``tune``: time every forward conv's candidate algorithms on this machine and run the fastest
        (``runtime.conv_tune``; default: ``GRAPHC_TUNE=1``); ``algorithms``: such choices given instead."""
        super().__init__(outputs, updates)
        self.threads = parallel.threads(threads)  # compiled in: kernels split their work into chunks for it
        self.plan = build_plan(self.output_nodes, self.updates)
        if algorithms is not None:
            self.plan.algorithms.update(algorithms)
        elif _tuning(tune):
            conv_tune.tune(self.plan, self.threads, _compile_conv)
        collective.prepare(self.plan)  # MPI entry points bound before linking (runtime.collective)
        self._module: Module | None = None
        self._switches = CodeSwitches.now()  # what the code is generated under, now or when inspected later
        self.slots, direct = binding_slots(self.plan)
        key, nodes = plan_key(self.plan, self.graph.name, threads=self.threads) if cache and cache_enabled() \
            else (None, [])
        entry = load(key) if key else None
        cached = _decode_meta(entry.meta, nodes) if entry is not None else None
        if cached is None:  # no usable cached object: generate the IR now
            if entry is not None:
                discard(key)  # an intact entry whose metadata does not fit this plan: compile and replace it
            self.error_nodes, scratch_bytes = self.module.error_nodes, self.module.scratch_bytes
            self.packs = self.module.packs
            position = {n: i for i, n in enumerate(nodes)}
            meta = {"error_nodes": [position[n] for n in self.error_nodes],
                    "scratch_bytes": scratch_bytes,
                    "packs": [[position[n], spec.to_json()] for n, spec in self.packs]} if key else {}
            self.jit = Jit(self.module.ir_text, name=self.graph.name, cache=cache, key=key, meta=meta)
        else:  # the IR is generated only if someone inspects it
            self.error_nodes, scratch_bytes, self.packs = cached
            self.jit = Jit(lambda: self.module.ir_text, name=self.graph.name, cache=cache, key=key, entry=entry)
        self._main = _MAIN(self.jit.address(ENTRY))
        self._profiled = _PROFILE(self.jit.address(PROFILE))
        self._ns: np.ndarray | None = None
        self._arena_owner, self.arena = allocate_arena(self.plan)
        self._status = np.zeros(1, dtype=np.int64)
        self._scratch_owner, self._scratch = aligned_bytes(scratch_bytes, "scratch memory")
        self._table = (ctypes.c_void_p * (FIRST_SLOT + len(self.slots) + len(self.packs)))()
        self._table[ARENA] = self.arena.ctypes.data
        self._table[STATUS] = self._status.ctypes.data
        self._table[SCRATCH] = self._scratch.ctypes.data
        self._consts = {n: _contiguous(n.attrs["value"]) for n in self.plan.consts}
        # constants packed once as GEMM operands (codegen.prepack): table entries after the slots, never rebound
        self._packed = [prepack.pack(n.attrs["value"], spec) for n, spec in self.packs]
        for i, array in enumerate(self._packed):
            self._table[FIRST_SLOT + len(self.slots) + i] = array.ctypes.data
        self._direct = set(direct)
        first = {n: self.plan.outputs.index(n) for n in self._direct}  # plan nodes, in the order of output_nodes
        self._fresh_output = [first.get(n) == i for i, n in enumerate(self.plan.outputs)]
        slot = {n: j for j, n in enumerate(self.slots)}
        # (position among the updates, binding slot, state name) of every update written in place
        self._in_state = [(i, slot[p], p.name) for i, (p, _) in enumerate(self.plan.updates)
                          if p in self.plan.state_inplace]
        # the other updated params' state: bound arrays too when some kernel reads them, else checked on their own
        self._unbound_targets = [p.name for p, _ in self.plan.updates if p not in slot]
        self._own_spans = [byte_bounds(self.arena), byte_bounds(self._scratch)]
        self._remember = [n.op in ("param", "const") for n in self.slots]  # their addresses are reused (_addresses)
        self._not_direct = [n not in self._direct for n in self.slots]
        self._known: list[tuple[np.ndarray, int] | None] = [None] * len(self.slots)
        self._wanted = self.plan.outputs + [value for _, value in self.plan.updates]  # simplified nodes, same order
        in_state = set(self.plan.state_inplace.values())
        self._computed = [n not in in_state for n in self._wanted]

    @property
    def module(self) -> Module:
        """The generated LLVM module (built on first use when the object code came from the cache)."""
        if self._module is None:
            self._module = build_module(self.plan, name=self.graph.name, threads=self.threads,
                                        switches=self._switches)
        return self._module

    # -- running -----------------------------------------------------------------------------------------
    def _bound_array(self, node: Node, feeds: dict[str, np.ndarray]) -> np.ndarray:
        if node.op == "input":
            return feeds[node.name]
        if node.op == "param":
            return _contiguous(self.graph.state[node.name])
        if node in self._direct:
            return np.empty(node.shape, dtype=node.type.np_dtype)  # fresh per call, written by its kernel
        return self._consts[node]

    def _value(self, node: Node, feeds: dict[str, np.ndarray], bound: dict[Node, np.ndarray]) -> np.ndarray:
        if node in bound:
            return bound[node]
        if node.is_leaf:
            return self._bound_array(node, feeds)
        buf = self.plan.buffers[node]
        raw = self.arena[buf.offset:buf.offset + buf.nbytes]
        return raw.view(node.type.np_dtype).reshape(node.shape)

    def profile(self, feeds: Mapping[str, Any] | None = None, repeat: int = 10, peak: bool = True,
                **named: Any) -> Profile:
        """Time every kernel over ``repeat`` calls (after one warm-up) of the program's profiling entry, which runs
        the same code with a clock read around each kernel; state updates are applied as on any call. Feeds come
        as a dict, as keywords, or both. See :mod:`runtime.profile` for what is reported and how the peaks are
        measured."""
        if isinstance(repeat, bool) or not isinstance(repeat, int) or repeat < 1:
            raise GraphcError(f"profile: repeat must be a positive int, got {repeat!r}")
        if feeds is not None and not isinstance(feeds, Mapping):
            raise GraphcError(f"profile: feeds must be a dict of name -> array, got {type(feeds).__name__}")
        feeds = {**(feeds or {}), **named}
        samples = np.zeros((repeat, len(self.plan.kernels)), dtype=np.int64)
        calls = []
        with self.graph.state_lock:  # no other thread's call lands in these samples
            self(**feeds)
            for i in range(repeat):
                self._ns = samples[i]
                start = time.perf_counter()
                try:
                    self(**feeds)
                finally:
                    self._ns = None
                calls.append(time.perf_counter() - start)
        seconds = median_times(samples)
        kernels = [KernelTime(k.name, k.kind, tuple(n.op for n in k.nodes), float(t),
                              sum(get_op(n.op).flops(n) for n in k.nodes),
                              sum(x.type.nbytes for x in k.inputs) + sum(x.type.nbytes for x in k.outputs))
                   for k, t in zip(self.plan.kernels, seconds)]
        return Profile(self.threads, repeat, kernels, float(np.median(calls)),
                       machine_peak(self.threads) if peak else None)

    def _run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        with self.graph.state_lock:  # held by Program.__call__ already; also guards direct _run calls
            keep = [self._bound_array(n, feeds) for n in self.slots]  # owners outlive the call
            addresses = self._addresses(keep)
            if self._in_state:
                self._claim_state(keep, addresses)
            for j, address in enumerate(addresses):
                self._table[FIRST_SLOT + j] = address
            self._status[0] = 0
            if self._ns is None:
                self._main(self._table)
            else:  # profiling: the same kernels, each timed into the row of nanosecond counters
                self._profiled(self._table, self._ns.ctypes.data_as(ctypes.POINTER(ctypes.c_int64)))
            for j in range(len(keep)):
                self._table[FIRST_SLOT + j] = None
            code = int(self._status[0])
            if code:
                self._raise(code)
            # direct outputs are fresh arrays; the other values are arena views, which Program copies (outputs)
            # or copies into graph.state (updates) before the next call
            bound = {n: a for n, a in zip(self.slots, keep) if n in self._direct}
            values = [self._value(n, feeds, bound) if computed else None
                      for n, computed in zip(self._wanted, self._computed)]
            for i, j, _ in self._in_state:  # the state array itself (Program skips it) or this call's private copy
                values[len(self.plan.outputs) + i] = keep[j]
            return values

    def _addresses(self, keep: list[np.ndarray]) -> list[int]:
        """The data address of every bound array (checked C-contiguous and native-endian). ``ndarray.ctypes.data``
        costs ~2.5 us, so the address of a param's or constant's array is remembered with the array (held here, so
        its data cannot move: NumPy refuses to resize a referenced array) and reused while the same array object is
        bound."""
        known = self._known
        addresses = []
        for j, array in enumerate(keep):
            seen = known[j]
            if seen is not None and seen[0] is array:
                addresses.append(seen[1])
                continue
            if not array.flags.c_contiguous or array.dtype != array.dtype.newbyteorder("="):
                raise GraphcError(f"internal error: binding of {self.slots[j].name!r} is not contiguous")
            address = array.ctypes.data
            if self._remember[j]:
                known[j] = (array, address)
            addresses.append(address)
        return addresses

    def _claim_state(self, keep: list[np.ndarray], addresses: list[int]) -> None:
        """Replace in ``keep`` (and ``addresses``) the state array of every in-place update that may not be written
        in place on this call by a private copy (see the module docstring); the copy is then applied after the call
        like a computed value. The check is one sort of the byte ranges of the bound arrays, the other updated
        params' state, the arena and the scratch memory."""
        state = self.graph.state
        spans = [(address, address + array.nbytes) if bound else (0, 0)  # direct outputs: fresh, share nothing
                 for address, array, bound in zip(addresses, keep, self._not_direct)]
        spans += [byte_bounds(state[name]) for name in self._unbound_targets]
        spans += self._own_spans
        shared = _overlapping(spans)
        for _, j, name in self._in_state:
            if j in shared and keep[j] is state[name]:  # else _contiguous already bound a copy of its own
                keep[j] = np.array(keep[j], copy=True)
                addresses[j] = keep[j].ctypes.data

    def _fresh(self, values: list[np.ndarray]) -> list[np.ndarray]:
        """Outputs as fresh arrays: a direct output's first occurrence is returned as is, the rest are copied."""
        return [v if fresh else np.array(v, copy=True) for v, fresh in zip(values, self._fresh_output)]

    def _raise(self, code: int) -> None:
        nodes = self.error_nodes
        node = nodes[code - 1] if 0 < code <= len(nodes) else None
        if node is None:
            raise GraphcError(f"a kernel reported invalid data (status {code})")
        raise GraphcError(f"{node.op} ({node.name!r}, created at {node.site}): {get_op(node.op).status_message(node)}")

    # -- inspection --------------------------------------------------------------------------------------
    def llvm_ir(self, optimized: bool = False) -> str:
        """The module's LLVM IR, before or after O3."""
        return self.jit.optimized_ir if optimized else self.module.ir_text

    def asm(self) -> str:
        """Host assembly of the whole module."""
        return self.jit.asm

    def kernels_info(self) -> list[dict[str, Any]]:
        """Per kernel: name, LLVM function, ops, widest vector register seen in its asm, FLOPs and bytes moved."""
        bodies = asm_functions(self.asm())
        info = []
        for k in self.plan.kernels:
            fn = self.module.kernel_functions[k.name]  # with its chunk bodies and the GEMM helpers it calls
            width = vector_width("\n".join(bodies[name] for name in callees(bodies, [fn])))
            info.append({"name": k.name, "function": fn, "kind": k.kind, "ops": [n.op for n in k.nodes],
                         "vector_width": width, "flops": sum(get_op(n.op).flops(n) for n in k.nodes),
                         "bytes": sum(x.type.nbytes for x in k.inputs) + sum(x.type.nbytes for x in k.outputs)})
        return info


def _tuning(tune: bool | None) -> bool:
    """Whether to tune: ``tune`` when given (True or False), else the ``GRAPHC_TUNE`` variable."""
    if tune is None:
        value = os.environ.get("GRAPHC_TUNE", "0").strip().lower()
        if value not in ("", "0", "1", "false", "true", "no", "yes", "off", "on"):
            raise GraphcError(f"GRAPHC_TUNE must be 0 or 1, got {value!r}")
        return value in ("1", "true", "yes", "on")
    if not isinstance(tune, bool):
        raise GraphcError(f"compile: tune must be True or False, got {tune!r}")
    return tune


def _compile_conv(outputs: list[Node], threads: int, algorithms: dict[str, str]) -> NativeProgram:
    """A program for the tuner's measurements (``runtime.conv_tune``)."""
    return NativeProgram(outputs, threads=threads, algorithms=algorithms)


def _decode_meta(meta: dict[str, Any], nodes: list[Node]) -> tuple[list[Node], int, list[tuple[Node, Any]]] | None:
    """(error nodes, scratch bytes, packed constants) recorded in cached metadata (nodes as positions in the plan
    key's node order); None if unusable."""
    positions, scratch = meta.get("error_nodes"), meta.get("scratch_bytes")
    packs = []
    for item in meta.get("packs", []) if isinstance(meta.get("packs", []), list) else [None]:
        if not isinstance(item, list) or len(item) != 2 or not isinstance(item[0], int) \
                or not 0 <= item[0] < len(nodes) or nodes[item[0]].op != "const":
            return None
        spec = prepack.PackSpec.from_json(item[1])
        if spec is None or spec.batch * spec.rows * spec.cols != nodes[item[0]].size:
            return None
        packs.append((nodes[item[0]], spec))
    if not isinstance(positions, list) or not all(isinstance(i, int) and 0 <= i < len(nodes) for i in positions):
        return None
    if not isinstance(scratch, int) or not 0 <= scratch <= MAX_ARENA_BYTES:
        return None
    return [nodes[i] for i in positions], scratch, packs


def _overlapping(spans: list[tuple[int, int]]) -> set[int]:
    """Positions of the nonempty spans that overlap another nonempty span: sorted by start, a span overlaps a later
    one when the next start is inside it and an earlier one when the largest end before it is past its start."""
    order = sorted((s for s in range(len(spans)) if spans[s][1] > spans[s][0]), key=lambda s: spans[s])
    found: set[int] = set()
    reach = None
    for position, s in enumerate(order):
        start, end = spans[s]
        if reach is not None and reach > start:
            found.add(s)
        if position + 1 < len(order) and spans[order[position + 1]][0] < end:
            found.add(s)
        reach = end if reach is None else max(reach, end)
    return found


def _contiguous(array: np.ndarray) -> np.ndarray:
    """``array`` itself when C-contiguous, else a C-contiguous copy (0-d arrays stay 0-d)."""
    return array if array.flags.c_contiguous else np.array(array, order="C")




