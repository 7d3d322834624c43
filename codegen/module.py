"""Plan → one LLVM module: one internal function per kernel and the entry ``void graphc_main(i8** buffers)``.

The binding table (the one definition; ``runtime.native`` fills it):

    buffers[0]        arena base (64-byte aligned); an arena value lives at base + plan.buffers[node].offset
    buffers[1]        an ``i64`` status word, zero on entry; a kernel that meets bad data (an out-of-range label)
                      stores a nonzero code and ``Module.error_nodes[code - 1]`` names the node
    buffers[2 + j]    the first element of ``Module.slots[j]``: every bound value (input, param, const) that some
                      kernel reads, in plan order (inputs, then params, then consts)

``graphc_main`` calls the kernels in plan order. Kernel arguments are typed pointers (inputs, then outputs),
marked ``noalias`` unless two arguments of the same kernel share arena bytes (in-place reuse).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import llvmlite.ir as ir

from codegen.lowering import KernelContext, find_lowerer, pointer_type
from codegen.target import new_module
from graphc.ir import Node
from passes.plan import Kernel, Plan

I8P = ir.IntType(8).as_pointer()
I64 = ir.IntType(64)
ENTRY = "graphc_main"
ARENA, STATUS, FIRST_SLOT = 0, 1, 2


@dataclass
class Module:
    """The generated IR text and the facts the runtime needs to bind and call it."""

    ir_text: str
    slots: list[Node]
    error_nodes: list[Node] = field(default_factory=list)
    kernel_functions: dict[str, str] = field(default_factory=dict)  # kernel name → LLVM function name


def _bound_slots(plan: Plan) -> list[Node]:
    used: dict[Node, None] = {}
    for k in plan.kernels:
        for x in k.inputs:
            if x.is_leaf:
                used[x] = None
    ordered = list(plan.inputs.values()) + list(plan.params.values()) + list(plan.consts)
    return [n for n in ordered if n in used]


def _noalias(plan: Plan, args: list[Node]) -> list[bool]:
    """Per argument: True unless its arena bytes overlap another argument's (bound values are read-only)."""
    spans = [(plan.buffers[n].offset, plan.buffers[n].offset + plan.buffers[n].nbytes) if n in plan.buffers
             else None for n in args]
    flags = []
    for i, a in enumerate(spans):
        overlap = a is not None and any(b is not None and j != i and a[0] < b[1] and b[0] < a[1]
                                        for j, b in enumerate(spans))
        flags.append(not overlap)
    return flags


def _function_name(kernel: Kernel, index: int) -> str:
    safe = "".join(c if c.isalnum() or c == "_" else "_" for c in kernel.name)
    return f"gk{index}_{safe}"


def build_module(plan: Plan, name: str = "graphc") -> Module:
    """Generate the module of ``plan`` (raises ``LoweringError`` for a kernel nothing can lower)."""
    module = new_module(name)
    slots = _bound_slots(plan)
    slot_index = {n: i for i, n in enumerate(slots)}
    error_nodes: list[Node] = []
    functions: list[tuple[Kernel, ir.Function, list[Node]]] = []
    names: dict[str, str] = {}
    for index, kernel in enumerate(plan.kernels):
        lower = find_lowerer(kernel)
        args = list(kernel.inputs) + list(kernel.outputs)
        fnty = ir.FunctionType(ir.VoidType(), [pointer_type(n) for n in args] + [I64.as_pointer()])
        fn = ir.Function(module, fnty, _function_name(kernel, index))
        fn.linkage = "internal"
        fn.attributes.add("nounwind")
        fn.attributes.add("noinline")  # kernels stay separate functions (per-kernel asm facts)
        for arg, noalias in zip(fn.args, _noalias(plan, args) + [True]):
            if noalias:
                arg.add_attribute("noalias")
        builder = ir.IRBuilder(fn.append_basic_block("entry"))
        ctx = KernelContext(module, kernel, fn, builder, dict(zip(args, fn.args)), fn.args[-1], error_nodes)
        lower(ctx)
        ctx.builder.ret_void()
        functions.append((kernel, fn, args))
        names[kernel.name] = fn.name
    entry = ir.Function(module, ir.FunctionType(ir.VoidType(), [I8P.as_pointer()]), ENTRY)
    b = ir.IRBuilder(entry.append_basic_block("entry"))
    table = entry.args[0]
    base = b.load(b.gep(table, [ir.Constant(I64, ARENA)]), name="arena")
    status = b.bitcast(b.load(b.gep(table, [ir.Constant(I64, STATUS)])), I64.as_pointer(), name="status")
    bound: dict[Node, ir.Value] = {}
    for n, j in slot_index.items():
        raw = b.load(b.gep(table, [ir.Constant(I64, FIRST_SLOT + j)]), name=f"slot{j}")
        bound[n] = b.bitcast(raw, pointer_type(n))
    for _kernel, fn, args in functions:
        ptrs = []
        for n in args:
            if n in bound:
                ptrs.append(bound[n])
            else:
                raw = b.gep(base, [ir.Constant(I64, plan.buffers[n].offset)], inbounds=True)
                ptrs.append(b.bitcast(raw, pointer_type(n)))
        b.call(fn, ptrs + [status])
    b.ret_void()
    return Module(str(module), slots, error_nodes, names)
