"""Lowering of ``allreduce``: a call into the MPI library inside the native program.

The kernel calls two symbols the JIT resolves at link time (``runtime.collective`` registers them before any
program containing an allreduce is linked — also one loaded from the object cache, since the code holds only
their names, never an address or an MPI handle)::

    i32 graphc_rt_allreduce(i8* send, i8* recv, i64 count, i32 kind)   # MPI_Allreduce(send == recv ? MPI_IN_PLACE
                                                                        #   : send, recv, count, f32/f64, SUM, comm)
    i64 graphc_rt_world_size()                                          # p

    status = graphc_rt_allreduce(x, y, n, kind)      # y = Σ_r x_r (in place when y took over x's buffer)
    if status != 0: *status_word = code(node)
    mean: y[i] = y[i] · (1/p)                        # 1/p divided in y's dtype, as the NumPy reference does
"""

from __future__ import annotations

import llvmlite.ir as ir

import codegen.loops as loops
from codegen.llvm import I8P, I32, I64, i64
from codegen.lowering import KernelContext, lowerer
from codegen.scalar import value_type

ALLREDUCE = "graphc_rt_allreduce"
WORLD_SIZE = "graphc_rt_world_size"
KINDS = {"float32": 0, "float64": 1}  # the ``kind`` argument: which MPI datatype the elements are


def _runtime(module: ir.Module) -> tuple[ir.Function, ir.Function]:
    call = module.globals.get(ALLREDUCE) or ir.Function(
        module, ir.FunctionType(I32, [I8P, I8P, I64, I32]), ALLREDUCE)
    size = module.globals.get(WORLD_SIZE) or ir.Function(module, ir.FunctionType(I64, []), WORLD_SIZE)
    return call, size


@lowerer("allreduce")
def lower_allreduce(ctx: KernelContext) -> None:
    """y = Σ_r x_r through MPI (in place when the plan gave y x's buffer), then y ·= 1/p for "mean"."""
    (node,) = ctx.kernel.nodes
    (x,) = node.inputs
    b = ctx.builder
    call, size_fn = _runtime(ctx.module)
    send, recv = b.bitcast(ctx.ptr(x), I8P), b.bitcast(ctx.ptr(node), I8P)
    status = b.call(call, [send, recv, i64(node.size), ir.Constant(I32, KINDS[node.dtype])])
    with b.if_then(b.icmp_signed("!=", status, ir.Constant(I32, 0)), likely=False):
        b.store(i64(ctx.error_code(node)), ctx.status)
    if node.attrs["op"] != "mean" or node.size == 0:
        return
    ty = value_type(node.dtype)
    scale = b.fdiv(ir.Constant(ty, 1.0), b.sitofp(b.call(size_fn, []), ty), name="inv_p")

    def body(b: ir.IRBuilder, offs: list[ir.Value], _i: list[ir.Value]) -> None:
        ptr = ctx.elem(node, offs[0])
        b.store(b.fmul(b.load(ptr), scale), ptr)

    loops.emit_nest(b, (node.size,), [(1,)], body, "scale")
