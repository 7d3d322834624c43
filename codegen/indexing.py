"""Lowering of the indexing ops: slice, slice_backward, concat, pad — strided copies over static index maps —
and check_index, a copy that stores the node's status code for an index outside its range (the runtime then
raises an error naming the node; the value is copied unchanged and nothing reads memory with it here).

A basic index (``ops.indexing``, canonical form) is an affine map from output indices to input offsets:
``offset = base + Σ_a idx_a·stride_a`` where an ``int`` entry adds ``i·s`` to ``base``, a slice
(start, step) adds ``start·s`` to ``base`` and gives its output axis the stride ``step·s`` (negative for a
negative step), and a newaxis gives a size-1 output axis stride 0. The canonical form has every start and int
inside its axis, so every offset is inside the input.

- slice: y[idx] = x[map(idx)];  slice_backward: y = 0, then y[map(idx)] = g[idx];
- concat: each input copied into its block of y (offset Σ earlier sizes along the axis);
- pad: y = value, then x copied into the middle block (offset Σ before_a·stride_a).
"""

from __future__ import annotations

import contextlib
import math

import llvmlite.ir as ir
import numpy as np

import codegen.loops as loops
from codegen.llvm import I64, i64
from codegen.lowering import KernelContext, lowerer
from codegen.scalar import value_type
from graphc.ir import Node
from ops.indexing import Index, index_layout
from passes.plan import concat_offsets


def affine(index: Index, shape: tuple[int, ...]) -> tuple[int, tuple[int, ...]]:
    """(base offset, stride per output axis) in elements of the map of ``index`` over a contiguous ``shape``."""
    return index_layout(index, 0, loops.contiguous_strides(shape))


def copy(ctx: KernelContext, src: Node, dst: Node, domain: tuple[int, ...], src_map: tuple[int, tuple[int, ...]],
         dst_map: tuple[int, tuple[int, ...]]) -> None:
    """dst[dst_base + Σ i·dst_strides] = src[src_base + Σ i·src_strides] over ``domain``."""
    (sb, ss), (db, ds) = src_map, dst_map
    shape, (ss2, ds2) = loops.collapse(domain, [ss, ds])

    def body(b: ir.IRBuilder, offs: list[ir.Value], _i: list[ir.Value]) -> None:
        value = b.load(ctx.elem(src, b.add(offs[0], i64(sb))))
        b.store(value, ctx.elem(dst, b.add(offs[1], i64(db))))

    if math.prod(domain):
        loops.emit_nest(ctx.builder, shape, [ss2, ds2], body, name="ix")


def fill(ctx: KernelContext, node: Node, value: float) -> None:
    """node[:] = value, converted to node's dtype as NumPy converts it."""
    v = np.array([value]).astype(node.dtype)[0]
    ty = value_type(node.dtype)
    if node.dtype == "bool":
        const = ir.Constant(ir.IntType(8), int(bool(v)))
    elif node.type.is_float:
        const = ir.Constant(ty, float(v))
    else:
        const = ir.Constant(ty, int(v))
    if node.size:
        loops.emit_nest(ctx.builder, (node.size,), [(1,)],
                        lambda b, offs, _i: b.store(const, ctx.elem(node, offs[0])), name="fill")


def _dense(shape: tuple[int, ...]) -> tuple[int, tuple[int, ...]]:
    return 0, loops.contiguous_strides(shape)


@lowerer("slice")
def lower_slice(ctx: KernelContext) -> None:
    """y = x[index]."""
    (node,) = ctx.kernel.nodes
    x = node.inputs[0]
    copy(ctx, x, node, node.shape, affine(node.attrs["index"], x.shape), _dense(node.shape))


@lowerer("slice_backward")
def lower_slice_backward(ctx: KernelContext) -> None:
    """y = zeros(shape); y[index] = g."""
    (node,) = ctx.kernel.nodes
    g = node.inputs[0]
    fill(ctx, node, 0.0)
    copy(ctx, g, node, g.shape, _dense(g.shape), affine(node.attrs["index"], node.shape))


@lowerer("concat")
def lower_concat(ctx: KernelContext) -> None:
    """y = concatenate(xs, axis). An input whose buffer already is its part of y (a slice planned into y's
    buffer, ``passes.concat_slices``: its kernel computed it there) is not copied: the pointers are compared at
    run time, so the kernel is right whatever the plan placed where."""
    (node,) = ctx.kernel.nodes
    axis = node.attrs["axis"]
    strides = loops.contiguous_strides(node.shape)
    b = ctx.builder
    contiguous = concat_offsets(node) is not None  # each input one run of y's elements: it may already be there
    offset = 0
    for x in node.inputs:
        start = offset * strides[axis]
        elsewhere = None  # copy unless x's pointer already is its part of y
        if contiguous and x.size:
            elsewhere = b.icmp_unsigned("!=", b.ptrtoint(ctx.elem(x, i64(0)), I64),
                                        b.ptrtoint(ctx.elem(node, i64(start)), I64))
        with b.if_then(elsewhere) if elsewhere is not None else contextlib.nullcontext():
            copy(ctx, x, node, x.shape, _dense(x.shape), (start, strides))
        offset += x.shape[axis]


@lowerer("pad")
def lower_pad(ctx: KernelContext) -> None:
    """y = value everywhere, x in the middle."""
    (node,) = ctx.kernel.nodes
    x = node.inputs[0]
    strides = loops.contiguous_strides(node.shape)
    fill(ctx, node, node.attrs["value"])
    base = sum(before * s for (before, _), s in zip(node.attrs["pads"], strides))
    copy(ctx, x, node, x.shape, _dense(x.shape), (base, strides))


@lowerer("check_index")
def lower_check_index(ctx: KernelContext) -> None:
    """y = i; status = code(node) when i is outside the valid range (see ``ops.indexing.CheckIndex``)."""
    (node,) = ctx.kernel.nodes
    x = node.inputs[0]
    attrs = node.attrs
    if not node.size:
        return
    low, depth, ignore = (-attrs["depth"] if attrs["negative"] else 0), attrs["depth"], attrs["ignore"]
    code = i64(ctx.error_code(node))

    def body(b: ir.IRBuilder, offs: list[ir.Value], _i: list[ir.Value]) -> None:
        v = b.load(ctx.elem(x, offs[0]))
        ok = b.and_(b.icmp_signed(">=", v, i64(low)), b.icmp_signed("<", v, i64(depth)))
        if ignore is not None:
            ok = b.or_(ok, b.icmp_signed("==", v, i64(ignore)))
        with b.if_then(b.not_(ok), likely=False):
            b.store(code, ctx.status)
        b.store(v, ctx.elem(node, offs[0]))

    loops.emit_nest(ctx.builder, (node.size,), [(1,)], body, name="chk")
