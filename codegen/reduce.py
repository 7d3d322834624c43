"""Reductions: sum, mean, max over any axes, keepdims.

Reductions: the output is set to the identity (0, or -inf / the smallest integer for max), then one loop nest
walks the input in memory order doing ``out[o(idx)] = out[o(idx)] ⊕ x[idx]`` with ``o`` having stride 0 on the
reduced axes. When the innermost axis is reduced the accumulator is loop-invariant (kept in a register and
vectorized as a reassociated reduction); when it is kept, the update vectorizes over the output row. Mean
divides by the count afterwards (0/0 = nan for an empty reduction, as NumPy).

Threads: the longest kept axis is cut into chunks (each owns its outputs, and each output is still combined in
memory order); a reduction of ≥ 32K elements to one value reduces fixed chunks (≥ 16K elements, ≤ 256 chunks,
from the size only) into partials, then combines them in chunk order. Either way the result has the same bits
for every thread count.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import llvmlite.ir as ir
import numpy as np

import codegen.loops as loops
from codegen.llvm import float_intrinsic, fold, i64
from codegen.lowering import KernelContext, lowerer
from codegen.scalar import FAST, load, store, value_type
from graphc.ir import Node

Combine = Callable[[ir.IRBuilder, ir.Value, ir.Value], ir.Value]


def identity(op: str, dtype: str) -> ir.Constant:
    """The neutral element of ``op`` ("sum" or "max") for ``dtype``."""
    ty = value_type(dtype)
    if op == "sum":
        return ir.Constant(ty, 0.0 if dtype.startswith("float") else 0)
    return ir.Constant(ty, -np.inf) if dtype.startswith("float") else ir.Constant(ty, int(np.iinfo(np.int64).min))


def combiner(op: str, dtype: str) -> Combine:
    """acc ⊕ x: fast-math fadd / integer add for sums; NaN-propagating ``llvm.maximum`` / smax for max."""
    is_float = dtype.startswith("float")
    if op == "sum":
        return (lambda b, a, x: b.fadd(a, x, flags=FAST)) if is_float else (lambda b, a, x: b.add(a, x))
    if is_float:
        return lambda b, a, x: b.call(float_intrinsic(b, "llvm.maximum", a.type, 2), [a, x])
    return lambda b, a, x: b.select(b.icmp_signed(">", a, x), a, x)


def fill(ctx: KernelContext, node, value: ir.Constant) -> None:
    """node[:] = value."""
    loops.emit_nest(ctx.builder, (node.size,), [(1,)],
                    lambda b, offs, _i: store(b, value, ctx.elem(node, offs[0]), node.dtype), name="fill")


@lowerer("sum", "mean", "max")
def lower_reduce(ctx: KernelContext) -> None:
    """y = ⊕ over ``axis`` of x (see module docstring)."""
    (node,) = ctx.kernel.nodes
    x = node.inputs[0]
    axes = node.attrs["axis"]
    op = "max" if node.op == "max" else "sum"
    fill(ctx, node, identity(op, node.dtype))
    kept = [d for i, d in enumerate(x.shape) if i not in axes]
    kept_strides = iter(loops.contiguous_strides(kept))
    out_strides = tuple(0 if i in axes else next(kept_strides) for i in range(x.ndim))
    shape, strides = loops.collapse(x.shape, [loops.contiguous_strides(x.shape), out_strides])
    combine = combiner(op, node.dtype)

    def body_in(c: KernelContext, b: ir.IRBuilder, offs: list[ir.Value]) -> None:
        ptr = c.elem(node, offs[1])
        store(b, combine(b, load(b, ptr, node.dtype), load(b, c.elem(x, offs[0]), x.dtype)), ptr, node.dtype)

    def body(b: ir.IRBuilder, offs: list[ir.Value], _i: list[ir.Value]) -> None:
        body_in(ctx, b, offs)

    kept_axes = [a for a in range(len(shape)) if strides[1][a] != 0]
    if kept_axes:  # chunks of a kept axis own their outputs; each output still sums in memory order
        axis = max(kept_axes, key=lambda a: shape[a])
        loops.parallel_nest(ctx, shape, strides, lambda c, b, offs, idx: body_in(c, b, offs), name="red", axis=axis)
    elif math.prod(shape) >= 2 * loops.GRAIN:  # to one value: partials of fixed chunks, combined in order
        _reduce_in_chunks(ctx, node, x, math.prod(shape), op)
    else:
        loops.emit_nest(ctx.builder, shape, strides, body, name="red")
    if node.op == "mean":
        count = float(math.prod(x.shape[a] for a in axes))
        scale = ir.Constant(value_type(node.dtype), count)

        def divide(b: ir.IRBuilder, offs: list[ir.Value], _i: list[ir.Value]) -> None:
            ptr = ctx.elem(node, offs[0])
            b.store(b.fdiv(b.load(ptr), scale), ptr)

        loops.emit_nest(ctx.builder, (node.size,), [(1,)], divide, name="mean")


MAX_PARTIALS = 256  # chunks of a reduction to one value, at most


def _reduce_in_chunks(ctx: KernelContext, node: Node, x: Node, size: int, op: str) -> None:
    """out = ⊕ of x's ``size`` elements: chunk c reduces its elements into partial[c] (fixed chunks, from the size
    only), then the partials are combined in chunk order — the same bits for every thread count."""
    per = max(loops.GRAIN, -(-size // MAX_PARTIALS))
    chunks = -(-size // per)
    tail = size - (chunks - 1) * per
    partials = ctx.scratch(chunks * 8, value_type(node.dtype))  # one register-typed slot per chunk
    combine = combiner(op, node.dtype)
    start = identity(op, node.dtype)

    def chunk(c: KernelContext, index: ir.Value, parts: ir.Value) -> None:
        b = c.builder
        first = b.mul(index, i64(per))

        def span(count: int) -> None:
            def step(b: ir.IRBuilder, k: ir.Value, accs: list[ir.Value]) -> list[ir.Value]:
                return [combine(b, accs[0], load(b, c.elem(x, b.add(first, k)), x.dtype))]

            b.store(fold(b, count, [start], step, "part")[0], b.gep(parts, [index], inbounds=True))

        if tail == per:
            span(per)
            return
        with b.if_else(b.icmp_signed("==", index, i64(chunks - 1))) as (last, full):
            with last:
                span(tail)
            with full:
                span(per)

    ctx.parallel("partials", chunks, chunk, shared=[partials])
    b = ctx.builder
    out = ctx.elem(node, i64(0))
    total = b.load(b.gep(partials, [i64(0)], inbounds=True))
    strict = _strict_combiner(op, node.dtype)  # no fast-math: LLVM must not reorder these in one build only
    for j in range(1, chunks):  # in chunk order, unrolled: at most MAX_PARTIALS loads
        total = strict(b, total, b.load(b.gep(partials, [i64(j)], inbounds=True)))
    store(b, total, out, node.dtype)


def _strict_combiner(op: str, dtype: str) -> Combine:
    """:func:`combiner` without reassociation: floating sums are added exactly in the order given."""
    if op == "sum" and dtype.startswith("float"):
        return lambda b, a, x: b.fadd(a, x)
    return combiner(op, dtype)
