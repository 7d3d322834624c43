"""Lowering of the shape ops that move elements: reshape (a contiguous copy, or no code when the memory plan let it
take over its input's buffer) and transpose (a strided copy over the output, axes collapsed). Unit-axis reshapes
inside fused groups are never copied (``codegen.elementwise`` reads them in place), nor are transposes a GEMM folds
(``codegen.linalg``)."""

from __future__ import annotations

import llvmlite.ir as ir

import codegen.loops as loops
from codegen.lowering import KernelContext, lowerer


def _copy(ctx: KernelContext, domain: tuple[int, ...], src_strides: tuple[int, ...]) -> None:
    (node,) = ctx.kernel.nodes
    x = node.inputs[0]
    shape, strides = loops.collapse(domain, [src_strides, loops.contiguous_strides(domain)])

    def body(b: ir.IRBuilder, offs: list[ir.Value], _i: list[ir.Value]) -> None:
        b.store(b.load(ctx.elem(x, offs[0])), ctx.elem(node, offs[1]))

    loops.emit_nest(ctx.builder, shape, strides, body, name="copy")


@lowerer("reshape")
def lower_reshape(ctx: KernelContext) -> None:
    """y = x (same elements, row-major order): a copy, or nothing at all when the memory plan gave y the buffer of
    x (x dies here: the reshape is a view of the same bytes)."""
    node = ctx.kernel.nodes[0]
    if node in ctx.in_place:
        return
    _copy(ctx, (node.size,), (1,))


@lowerer("transpose")
def lower_transpose(ctx: KernelContext) -> None:
    """y[i_0, …] = x[i_{axes⁻¹}…]: read x with its strides permuted into the output's axis order."""
    node = ctx.kernel.nodes[0]
    x = node.inputs[0]
    own = loops.contiguous_strides(x.shape)
    _copy(ctx, node.shape, tuple(own[a] for a in node.attrs["axes"]))
