"""Fused elementwise/broadcast kernels: one loop nest over the group's output shape.

Every node of the group has the same shape (the loop domain); the group's inputs broadcast into it by index
arithmetic (stride 0 on broadcast axes, nothing materialized). Inside the innermost loop the nodes' ``scalar``
formulas are composed in order with values in registers; every kernel output is stored. Scalar constants are
embedded as IR constants (so ``x ** 2`` becomes ``x * x``). A unit-axis ``reshape`` member (a (C,) vector viewed
as (C, 1, 1)) is not computed: its source buffer is read with the reshape's shape. Axes are collapsed so the inner
loop is long and contiguous, which the loop vectorizer turns into full-width vector code.
"""

from __future__ import annotations

import llvmlite.ir as ir

import codegen.loops as loops
from codegen.lowering import KernelContext, lowerer
from codegen.nodemap import computing, positions
from codegen.scalar import LLVMScalarBuilder, load, store, value_type
from graphc.ir import Node
from ops.registry import get_op


def embedded_constant(ctx: KernelContext, node: Node) -> ir.Constant | None:
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
    views = [n for n in kernel.nodes if get_op(n.op).is_view(n)]
    embedded = {x: c for x in kernel.inputs if (c := embedded_constant(ctx, x)) is not None}
    embedded.update({r: embedded[r.inputs[0]] for r in views if r.inputs[0] in embedded})
    # (value, buffer read, shape it is read with): a unit reshape reads its source's buffer with its own shape
    direct = {x for n in kernel.nodes if n not in views for x in n.inputs}
    loaded = [(x, x, x.shape) for x in kernel.inputs if x not in embedded and x in direct]
    loaded += [(r, r.inputs[0], r.shape) for r in views if r not in embedded]
    strides = [loops.broadcast_strides(shp, domain) for _, _, shp in loaded]
    strides += [loops.contiguous_strides(domain) for _ in kernel.outputs]
    shape, strides = loops.collapse(domain, strides)
    where = positions(kernel)

    def body(c: KernelContext, b: ir.IRBuilder, offsets: list[ir.Value], _indices: list[ir.Value]) -> None:
        sb = LLVMScalarBuilder(b)
        values: dict[Node, ir.Value] = dict(embedded)
        for (x, buf, _), off in zip(loaded, offsets):
            values[x] = load(b, c.elem(buf, off), buf.dtype)
        for n in kernel.nodes:
            if n not in views:
                with computing(c.module, b, n, where[n]):
                    values[n] = get_op(n.op).scalar(sb, n.attrs, *(values[x] for x in n.inputs))
        for out, off in zip(kernel.outputs, offsets[len(loaded):]):
            with computing(c.module, b, out, where[out]):
                store(b, values[out], c.elem(out, off), out.dtype)

    loops.parallel_nest(ctx, shape, strides, body, name=kernel.name)
