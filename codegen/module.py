"""Plan → one LLVM module: one internal function per kernel and the entry ``void graphc_main(i8** buffers)``.

The binding table (the one definition; ``runtime.native`` fills it):

    buffers[0]        arena base (64-byte aligned); an arena value lives at base + plan.buffers[node].offset
    buffers[1]        an ``i64`` status word, zero on entry; a kernel that meets bad data (an out-of-range label)
                      stores a nonzero code and ``Module.error_nodes[code - 1]`` names the node
    buffers[2]        the scratch buffer (64-byte aligned, ``Module.scratch_bytes`` long): kernels' temporary
                      memory (im2col columns, the GEMM's packed panels), planned instead of stack allocations
    buffers[3 + j]    the first element of ``Module.slots[j]``: every bound value (input, param, const) that some
                      kernel reads or, for a param, whose state a kernel updates in place (``plan.state_inplace``),
                      in plan order (inputs, then params, then consts), then the *direct outputs*
                      (``Module.direct``): program outputs computed by a kernel, which the kernel writes straight
                      into a fresh array the runtime allocates per call and returns as is (no arena → output copy;
                      their arena bytes, still planned, are never touched)
    buffers[3 + len(slots) + i]  ``Module.packs[i]``: a constant packed once as a GEMM operand (``codegen.prepack``),
                      which the kernels that asked for it get instead of the constant's own slot

``graphc_main`` calls the kernels in plan order. Kernel arguments are typed pointers (inputs, then outputs),
marked ``noalias`` unless two arguments of the same kernel share arena bytes. An in-place output (``plan.inplace``:
it took over the buffer of an input dying there) is addressed inside the kernel through that input's pointer, so
the loop vectorizer sees one base with equal indices (no runtime overlap check, which would fail and run the
scalar fallback loop) and its own, unused argument keeps ``noalias``.

In-place state updates (``plan.state_inplace``: param p ← value v): the kernel computing v gets p's slot (the
current ``graph.state[p]`` array) as v's pointer, addressed through p's own argument when the kernel also reads p
(it reads p only at the index it writes), and every later kernel that reads v reads that slot. The runtime checks
before the call that no other bound array shares memory with p's. The entry returns before the first such kernel
when an earlier kernel stored a nonzero status (no kernel from there on can fail, ``Plan.verify``), so a call that
raises has written nothing into the state; :func:`build_module` refuses a module whose lowering disagrees.

:func:`plan_key` names the object code of a Plan *before* any IR is generated: sha256 over a canonical description
(every kernel's nodes with op, dtype, shape, attributes and input references, const values, arena offsets, in-place
pairs, in-place state updates, the binding table's slot order, outputs and updates) and
:func:`codegen.target.fingerprint`. Nodes are referenced by their position in that description (first use order),
which also encodes the metadata cached with the object (``Module.error_nodes``); everything else the runtime needs
is recomputed from the Plan.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import llvmlite.ir as ir
import numpy as np

import codegen.lowerers  # noqa: F401  (registers every op family's lowerers before find_lowerer runs)
from codegen.epilogue import store_epilogues_enabled
from codegen.llvm import I8P, I64
from codegen.lowering import KernelContext, LoweringError, embeddable, find_lowerer, pointer_type
from codegen.prepack import enabled as prepack_enabled
from codegen.target import fingerprint, new_module
from graphc.ir import Node
from passes.plan import Kernel, Plan

ENTRY = "graphc_main"
PROFILE = "graphc_profile"
ARENA, STATUS, SCRATCH, FIRST_SLOT = 0, 1, 2, 3


@dataclass
class Module:
    """The generated IR text and the facts the runtime needs to bind and call it."""

    ir_text: str
    slots: list[Node]
    error_nodes: list[Node] = field(default_factory=list)
    kernel_functions: dict[str, str] = field(default_factory=dict)  # kernel name → LLVM function name
    direct: list[Node] = field(default_factory=list)  # the tail of ``slots``: outputs written into fresh arrays
    scratch_bytes: int = 0  # the largest scratch any kernel claims
    # derived constant buffers (``codegen.prepack``): (constant, spec) of table entry FIRST_SLOT + len(slots) + i,
    # the constant's value packed once as a GEMM operand, which the kernels that asked for it read instead
    packs: list[tuple[Node, Any]] = field(default_factory=list)


def _bound_slots(plan: Plan) -> list[Node]:
    used: dict[Node, None] = dict.fromkeys(plan.state_inplace)
    for k in plan.kernels:
        for x in k.inputs:
            if x.is_leaf:
                used[x] = None
    params = list(plan.params.values())
    params += [p for p in plan.state_inplace if p not in plan.params.values()]  # updated, never read
    ordered = list(plan.inputs.values()) + params + list(plan.consts)
    return [n for n in ordered if n in used]


def direct_outputs(plan: Plan) -> list[Node]:
    """Program outputs that live in the arena (computed by a kernel), each once, in output order."""
    return list(dict.fromkeys(n for n in plan.outputs if n in plan.buffers))


def binding_slots(plan: Plan, direct: bool = True) -> tuple[list[Node], list[Node]]:
    """(slots, direct outputs) of the binding table; the direct outputs are the tail of the slots."""
    outs = direct_outputs(plan) if direct else []
    return _bound_slots(plan) + outs, outs


def _shared(plan: Plan, kernel: Kernel, direct: set[Node]) -> dict[Node, Node]:
    """In-place outputs of ``kernel`` (not written to a direct array) → the input whose memory they write: the
    arena buffer they took over, or the param whose state they update in place when the kernel also reads it."""
    in_state = {v: p for p, v in plan.state_inplace.items()}
    shared = {out: src for out in kernel.outputs if out not in direct
              and (src := plan.inplace.get(out)) is not None and src in kernel.inputs}
    shared.update((out, in_state[out]) for out in kernel.outputs if out in in_state and in_state[out] in kernel.inputs)
    return shared


def _noalias(plan: Plan, args: list[Node], skip: set[Node]) -> list[bool]:
    """Per argument: True unless its arena bytes overlap another argument's (bound values are read-only; the
    ``skip`` arguments — direct outputs, fresh arrays of their own, and unused in-place outputs — overlap none)."""
    spans = [(plan.buffers[n].offset, plan.buffers[n].offset + plan.buffers[n].nbytes)
             if n in plan.buffers and n not in skip else None for n in args]
    flags = []
    for i, a in enumerate(spans):
        overlap = a is not None and any(b is not None and j != i and a[0] < b[1] and b[0] < a[1]
                                        for j, b in enumerate(spans))
        flags.append(not overlap)
    return flags


def _function_name(kernel: Kernel, index: int) -> str:
    safe = "".join(c if c.isalnum() or c == "_" else "_" for c in kernel.name)
    return f"gk{index}_{safe}"


def kernel_signature(kernel: Kernel, args: list[Node], shared: dict[Node, Node], noalias: list[bool],
                     prepack: bool = False) -> str | None:
    """What decides the code of ``kernel``'s function, independent of where its buffers live: every node's op,
    type, attributes and operands (as positions within the kernel), the argument types and single-element constant
    values, which output takes over which input's buffer, and the ``noalias`` flags. Two kernels with the same
    signature compile to the same function (a chain's repeated fused groups, a network's repeated blocks), so it is
    generated once and called for each. None when an attribute has no canonical form (then the kernel gets its own
    function). With ``prepack`` the larger constant arguments are marked (their kernels may read them packed,
    ``codegen.prepack``)."""
    position = {n: f"a{i}" for i, n in enumerate(args)}
    local: dict[Node, str] = {}
    parts = [kernel.kind]
    try:
        for n in kernel.nodes:
            operands = ",".join(local.get(x) or position[x] for x in n.inputs)
            parts.append(f"{n.op}|{n.type}|{_canon(n.attrs)}|{operands}")
            local[n] = f"n{len(local)}"
        parts.append("args " + " ".join(f"{x.type}" + (_canon(x.attrs["value"]) if embeddable(x) else
                                                        "k" if prepack and x.op == "const" else "") for x in args))
    except _Uncacheable:
        return None
    parts.append("outputs " + " ".join(local[v] for v in kernel.outputs))
    parts.append("anchor " + (local[kernel.anchor] if kernel.anchor is not None else "-"))
    parts.append("shared " + " ".join(f"{local[out]}<{position[src]}" for out, src in shared.items()))
    parts.append("noalias " + "".join("1" if flag else "0" for flag in noalias))
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def _kernel_function(module: ir.Module, plan: Plan, kernel: Kernel, index: int, args: list[Node],
                     shared: dict[Node, Node], noalias: list[bool], error_nodes: list[Node], threads: int,
                     prepack: bool = False, store_epilogues: bool = True
                     ) -> tuple[ir.Function, int, list[tuple[int, Any]]]:
    """The LLVM function computing ``kernel`` from pointer arguments (inputs, outputs, the status word, the
    scratch buffer), the scratch bytes it uses and the arguments it reads packed ((position, spec))."""
    lower = find_lowerer(kernel)
    fnty = ir.FunctionType(ir.VoidType(), [pointer_type(n) for n in args] + [I64.as_pointer(), I8P])
    fn = ir.Function(module, fnty, _function_name(kernel, index))
    fn.linkage = "internal"
    fn.attributes.add("nounwind")
    fn.attributes.add("noinline")  # kernels stay separate functions (per-kernel asm facts)
    for arg, flag in zip(fn.args, noalias + [True, True]):
        if flag:
            arg.add_attribute("noalias")
    builder = ir.IRBuilder(fn.append_basic_block("entry"))
    pointers: dict[Node, ir.Value] = dict(zip(args, fn.args))
    for out, src in shared.items():
        pointers[out] = builder.bitcast(pointers[src], pointer_type(out))
    ctx = KernelContext(module, kernel, fn, builder, pointers, fn.args[-2], error_nodes, scratch_base=fn.args[-1],
                        threads=threads, in_place=frozenset(shared), aliases=shared, packs=[] if prepack else None,
                        algorithms=plan.algorithms, store_epilogues=store_epilogues)
    lower(ctx)
    ctx.builder.ret_void()
    return fn, ctx.scratch_bytes, [(args.index(node), spec) for node, spec in ctx.packs or []]


@dataclass(frozen=True)
class CodeSwitches:
    """The environment switches that shape the generated code (both in the object cache key): ``GRAPHC_PREPACK``
    (``codegen.prepack``) and ``GRAPHC_STORE_EPILOGUE`` (``codegen.epilogue``)."""

    prepack: bool
    store_epilogues: bool

    @classmethod
    def now(cls) -> CodeSwitches:
        """The switches as the environment sets them now."""
        return cls(prepack_enabled(), store_epilogues_enabled())


def build_module(plan: Plan, name: str = "graphc", direct: bool = True, threads: int = 1,
                 switches: CodeSwitches | None = None) -> Module:
    """Generate the module of ``plan`` (raises ``LoweringError`` for a kernel nothing can lower); with ``direct``
    the program outputs are written into caller arrays (see the binding table). Kernels with equal signatures
    share one function (see :func:`kernel_signature`), unless their code reports errors naming a node.
    ``switches``: the environment switches to generate under (default: as set now; a program built from cached
    object code passes the ones it was compiled under, so its IR is the IR of the code that runs)."""
    switches = switches or CodeSwitches.now()
    module = new_module(name)
    slots, outs = binding_slots(plan, direct)
    slot_index = {n: i for i, n in enumerate(slots)}
    in_state = set(plan.state_inplace.values())  # bound to their param's slot, not to their arena bytes
    first_write = first_state_write(plan)
    error_nodes: list[Node] = []
    functions: list[tuple[Kernel, ir.Function, list[Node], dict[int, int]]] = []
    names: dict[str, str] = {}
    reusable: dict[str, ir.Function] = {}
    scratch = 0
    prepack = switches.prepack
    packed_args: dict[ir.Function, list[tuple[int, Any]]] = {}  # per function: the arguments it reads packed
    packs: dict[tuple[Node, Any], int] = {}  # derived buffer -> its index in Module.packs
    for index, kernel in enumerate(plan.kernels):
        args = list(kernel.inputs) + list(kernel.outputs)
        shared = _shared(plan, kernel, set(outs))
        noalias = _noalias(plan, args, set(outs) | set(shared) | in_state)
        signature = kernel_signature(kernel, args, shared, noalias, prepack)
        fn = reusable.get(signature) if signature is not None else None
        if fn is None:
            codes = len(error_nodes)
            fn, used, packed_args[fn] = _kernel_function(module, plan, kernel, index, args, shared, noalias,
                                                         error_nodes, threads, prepack, switches.store_epilogues)
            scratch = max(scratch, used)
            if signature is not None and len(error_nodes) == codes:  # its status codes would name this node
                reusable[signature] = fn
            if len(error_nodes) > codes and first_write is not None and index >= first_write:
                raise LoweringError(f"internal error: kernel {kernel.name} may report bad data, but it runs after "
                                    f"kernel {plan.kernels[first_write].name} has written graph.state in place")
        replaced = {position: FIRST_SLOT + len(slots) + packs.setdefault((args[position], spec), len(packs))
                    for position, spec in packed_args[fn]}
        functions.append((kernel, fn, args, replaced))
        names[kernel.name] = fn.name
    for profiled in (False, True):
        _entry(module, plan, slot_index, functions, profiled, first_write)
    return Module(str(module), slots, error_nodes, names, outs, scratch, list(packs))


def first_state_write(plan: Plan) -> int | None:
    """The index of the first kernel that writes a param's state in place (``plan.state_inplace``), or None."""
    producer = {v: i for i, k in enumerate(plan.kernels) for v in k.outputs}
    return min((producer[v] for v in plan.state_inplace.values()), default=None)


def _entry(module: ir.Module, plan: Plan, slot_index: dict[Node, int],
           functions: list[tuple[Kernel, ir.Function, list[Node], dict[int, int]]], profiled: bool,
           first_write: int | None) -> None:
    """``graphc_main(i8** table)``: every kernel in plan order. ``graphc_profile(i8** table, i64* ns)`` does the
    same and adds each kernel's wall time (CLOCK_MONOTONIC nanoseconds) to ``ns[kernel]``. Both return before
    kernel ``first_write`` (the first to write ``graph.state``) when the status word is nonzero."""
    params = [I8P.as_pointer()] + ([I64.as_pointer()] if profiled else [])
    entry = ir.Function(module, ir.FunctionType(ir.VoidType(), params), PROFILE if profiled else ENTRY)
    b = ir.IRBuilder(entry.append_basic_block("entry"))
    table = entry.args[0]
    base = b.load(b.gep(table, [ir.Constant(I64, ARENA)]), name="arena")
    status = b.bitcast(b.load(b.gep(table, [ir.Constant(I64, STATUS)])), I64.as_pointer(), name="status")
    scratch_base = b.load(b.gep(table, [ir.Constant(I64, SCRATCH)]), name="scratch")
    bound: dict[Node, ir.Value] = {}
    for n, j in slot_index.items():
        raw = b.load(b.gep(table, [ir.Constant(I64, FIRST_SLOT + j)]), name=f"slot{j}")
        bound[n] = b.bitcast(raw, pointer_type(n))
    for p, v in plan.state_inplace.items():
        bound[v] = bound[p]  # written into, and read later from, the param's state array
    clock = _clock(module, b) if profiled else None
    packed: dict[int, ir.Value] = {}  # table entry -> its pointer, loaded once
    for index, (_kernel, fn, args, replaced) in enumerate(functions):
        if index == first_write:  # a kernel before it failed: leave the state as it was
            failed = b.icmp_signed("!=", b.load(status), ir.Constant(I64, 0))
            with b.if_then(failed, likely=False):
                b.ret_void()
        ptrs = []
        for position, n in enumerate(args):
            if position in replaced:  # a constant this kernel reads packed (codegen.prepack)
                at = replaced[position]
                if at not in packed:
                    packed[at] = b.load(b.gep(table, [ir.Constant(I64, at)]), name=f"packed{at}")
                ptrs.append(b.bitcast(packed[at], pointer_type(n)))
            elif n in bound:
                ptrs.append(bound[n])
            else:
                raw = b.gep(base, [ir.Constant(I64, plan.buffers[n].offset)], inbounds=True)
                ptrs.append(b.bitcast(raw, pointer_type(n)))
        start = clock() if clock else None
        b.call(fn, ptrs + [status, scratch_base])
        if clock:
            slot = b.gep(entry.args[1], [ir.Constant(I64, index)])
            b.store(b.add(b.load(slot), b.sub(clock(), start)), slot)
    b.ret_void()


def _clock(module: ir.Module, b: ir.IRBuilder) -> Callable[[], ir.Value]:
    """A function emitting ``clock_gettime(CLOCK_MONOTONIC)`` in nanoseconds (libc's, resolved by the JIT)."""
    timespec = ir.LiteralStructType([I64, I64])
    gettime = module.globals.get("clock_gettime") or ir.Function(
        module, ir.FunctionType(ir.IntType(32), [ir.IntType(32), timespec.as_pointer()]), "clock_gettime")
    with b.goto_entry_block():
        ts = b.alloca(timespec, name="ts")

    def now() -> ir.Value:
        b.call(gettime, [ir.Constant(ir.IntType(32), 1), ts])  # CLOCK_MONOTONIC
        seconds = b.load(b.gep(ts, [ir.Constant(ir.IntType(32), 0), ir.Constant(ir.IntType(32), 0)]))
        nanos = b.load(b.gep(ts, [ir.Constant(ir.IntType(32), 0), ir.Constant(ir.IntType(32), 1)]))
        return b.add(b.mul(seconds, ir.Constant(I64, 1_000_000_000)), nanos)

    return now


# ------------------------------------------------------------------------------------------- plan key


def _canon(value: Any) -> str:
    """A canonical string of an attribute value (arrays by dtype, shape and a digest of their bytes)."""
    if isinstance(value, (np.ndarray, np.generic)):
        array = np.ascontiguousarray(value)
        return f"nd{array.dtype.str}{array.shape}{hashlib.sha256(array.tobytes()).hexdigest()}"
    if isinstance(value, Mapping):
        items = sorted((_canon(k), _canon(v)) for k, v in value.items())
        return "{" + ",".join(f"{k}:{v}" for k, v in items) + "}"
    if isinstance(value, (list, tuple)):
        return f"{type(value).__name__}(" + ",".join(_canon(v) for v in value) + ")"
    if value is None or isinstance(value, (bool, int, float, complex, str, bytes)):
        return f"{type(value).__name__}:{value!r}"
    raise _Uncacheable(type(value).__name__)  # an unknown type's repr may hide what decides the code


class _Uncacheable(Exception):
    """An attribute value without a trusted canonical form: the Plan gets no key (the IR hash is used)."""


def plan_key(plan: Plan, name: str = "graphc", direct: bool = True, threads: int = 1
             ) -> tuple[str | None, list[Node]]:
    """(key, nodes): the cache key of ``build_module(plan, name, direct)``'s object code and the canonical node
    order that cached metadata refers to (see the module docstring); key None when some attribute has no
    canonical form (then only the IR-hash key of :class:`codegen.target.Jit` applies)."""
    try:
        return _plan_key(plan, name, direct, threads)
    except _Uncacheable:
        return None, []


def _plan_key(plan: Plan, name: str, direct: bool, threads: int) -> tuple[str, list[Node]]:
    index: dict[Node, int] = {}
    switches = CodeSwitches.now()
    parts = [fingerprint(), name, str(direct), f"threads={threads}", str(plan.arena_bytes),
             f"prepack={switches.prepack}", f"store_epilogue={switches.store_epilogues}"]

    def ref(n: Node) -> int:
        if n not in index:
            inputs = ",".join(str(ref(x)) for x in n.inputs) if not n.is_leaf else ""
            attrs = _canon(n.attrs) if n.op != "input" else ""
            buf = plan.buffers.get(n)
            where = f"@{buf.offset}+{buf.nbytes}" if buf is not None else ""
            index[n] = len(index)
            parts.append(f"{n.op}|{n.type}|{attrs}|{inputs}|{where}")
        return index[n]

    for k in plan.kernels:
        for n in k.nodes:
            ref(n)
        parts.append(f"kernel {k.name} {k.kind} " + " ".join(str(ref(n)) for n in k.nodes) + " in "
                     + " ".join(str(ref(x)) for x in k.inputs) + " out " + " ".join(str(ref(x)) for x in k.outputs))
    slots, outs = binding_slots(plan, direct)
    parts.append("slots " + " ".join(str(ref(n)) for n in slots))
    parts.append("direct " + " ".join(str(ref(n)) for n in outs))
    parts.append("inplace " + " ".join(f"{ref(a)}<{ref(b)}" for a, b in plan.inplace.items()))
    parts.append("state " + " ".join(f"{ref(p)}<{ref(v)}" for p, v in plan.state_inplace.items()))
    parts.append("outputs " + " ".join(str(ref(n)) for n in plan.outputs))
    parts.append("updates " + " ".join(f"{ref(p)}={ref(v)}" for p, v in plan.updates))
    parts.append("algorithms " + repr(sorted(plan.algorithms.items())))
    digest = hashlib.sha256("\n".join(parts).encode()).hexdigest()
    return digest, list(index)
