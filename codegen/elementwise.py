"""Fused elementwise/broadcast kernels: one loop nest over the group's output shape.

Every node of the group has the same shape (the loop domain); the group's inputs broadcast into it by index
arithmetic (stride 0 on broadcast axes, nothing materialized). Inside the innermost loop the nodes' ``scalar``
formulas are composed in order with values in registers; every kernel output is stored. Scalar constants are
embedded as IR constants (so ``x ** 2`` becomes ``x * x``). Axes are collapsed so the inner loop is long and
contiguous, which the loop vectorizer turns into full-width vector code.
"""

from __future__ import annotations

import llvmlite.ir as ir

from codegen import loops
from codegen.lowering import KernelContext, lowerer
from codegen.scalar import LLVMScalarBuilder, load, store, value_type
from graphc.ir import Node
from ops.registry import get_op


def _embedded(ctx: KernelContext, node: Node) -> ir.Constant | None:
    """A size-1 constant input as an IR constant."""
    value = ctx.const_value(node)
    if value is None or value.size != 1:
        return None
    v = value.reshape(()).item()
    ty = value_type(node.dtype)
    if node.dtype == "bool":
        return ir.Constant(ty, int(bool(v)))
    return ir.Constant(ty, float(v) if node.type.is_float else int(v))


@lowerer("elementwise", "broadcast")
def lower_elementwise(ctx: KernelContext) -> None:
    """out_j[idx] = f_j(in_1[bcast(idx)], …) for the group's composed formulas f_j."""
    kernel = ctx.kernel
    domain = kernel.outputs[0].shape
    embedded = {x: c for x in kernel.inputs if (c := _embedded(ctx, x)) is not None}
    loaded = [x for x in kernel.inputs if x not in embedded]
    strides = [loops.broadcast_strides(x.shape, domain) for x in loaded]
    strides += [loops.contiguous_strides(domain) for _ in kernel.outputs]
    shape, strides = loops.collapse(domain, strides)
    sb = LLVMScalarBuilder(ctx.builder)

    def body(b: ir.IRBuilder, offsets: list[ir.Value], _indices: list[ir.Value]) -> None:
        values: dict[Node, ir.Value] = dict(embedded)
        for x, off in zip(loaded, offsets):
            values[x] = load(b, ctx.elem(x, off), x.dtype)
        for n in kernel.nodes:
            values[n] = get_op(n.op).scalar(sb, n.attrs, *(values[x] for x in n.inputs))
        for out, off in zip(kernel.outputs, offsets[len(loaded):]):
            store(b, values[out], ctx.elem(out, off), out.dtype)

    loops.emit_nest(ctx.builder, shape, strides, body, name=kernel.name)
