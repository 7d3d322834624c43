"""Reductions (sum, mean, max over any axes, keepdims) and the stable two-pass softmax / log_softmax.

Reductions: the output is set to the identity (0, or -inf / the smallest integer for max), then one loop nest
walks the input in memory order doing ``out[o(idx)] = out[o(idx)] ⊕ x[idx]`` with ``o`` having stride 0 on the
reduced axes. When the innermost axis is reduced the accumulator is loop-invariant (kept in a register and
vectorized as a reassociated reduction); when it is kept, the update vectorizes over the output row. Mean
divides by the count afterwards (0/0 = nan for an empty reduction, as NumPy).

softmax along an axis, with x viewed as (outer, n, inner): m = max_j x_j; e_j = exp(x_j - m); s = Σ e_j;
y_j = e_j / s (softmax) or y_j = x_j - m - log s (log_softmax). The
arguments x_j - m are ≤ 0 (or NaN), so the cheaper ``upper=False`` exp applies.
"""

from __future__ import annotations

from collections.abc import Callable

import llvmlite.ir as ir
import numpy as np

from codegen import loops, mathlib
from codegen.lowering import KernelContext, lowerer
from codegen.scalar import FAST, LLVMScalarBuilder, load, store, value_type

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
        return lambda b, a, x: b.call(mathlib.intrinsic(b, "llvm.maximum", a.type, 2), [a, x])
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

    def body(b: ir.IRBuilder, offs: list[ir.Value], _i: list[ir.Value]) -> None:
        ptr = ctx.elem(node, offs[1])
        store(b, combine(b, load(b, ptr, node.dtype), load(b, ctx.elem(x, offs[0]), x.dtype)), ptr, node.dtype)

    loops.emit_nest(ctx.builder, shape, strides, body, name="red")
    if node.op == "mean":
        count = float(np.prod([x.shape[a] for a in axes], dtype=np.int64))
        scale = ir.Constant(value_type(node.dtype), count)

        def divide(b: ir.IRBuilder, offs: list[ir.Value], _i: list[ir.Value]) -> None:
            ptr = ctx.elem(node, offs[0])
            b.store(b.fdiv(b.load(ptr), scale), ptr)

        loops.emit_nest(ctx.builder, (node.size,), [(1,)], divide, name="mean")


def row_loop(b: ir.IRBuilder, n: int, stride: int, base: ir.Value, init: ir.Value,
             step: Callable[[ir.IRBuilder, ir.Value, ir.Value, ir.Value], ir.Value], name: str) -> ir.Value:
    """acc = init; for j in range(n): acc = step(b, acc, base + j·stride, j); returns the final acc (n ≥ 1)."""
    pre = b.block
    loop = loops.counted_loop(b, n, name)
    acc = b.phi(init.type, name=f"{name}.acc")
    acc.add_incoming(init, pre)
    off = b.add(base, b.mul(loop.index, loops.const(stride)))
    new = step(b, acc, off, loop.index)
    acc.add_incoming(new, b.block)
    loops.close_loop(b, loop)
    return new


def softmax_rows(ctx: KernelContext, x, n: int, stride: int, base: ir.Value
                 ) -> tuple[ir.Value, ir.Value]:
    """(m, s) of one row: m = max_j x_j, s = Σ_j exp(x_j - m)."""
    b, dt = ctx.builder, x.dtype
    ty = value_type(dt)
    mx = combiner("max", dt)
    m = row_loop(b, n, stride, base, ir.Constant(ty, -np.inf),
                 lambda b, acc, off, _j: mx(b, acc, load(b, ctx.elem(x, off), dt)), "max")
    def add_exp(b: ir.IRBuilder, acc: ir.Value, off: ir.Value, _j: ir.Value) -> ir.Value:
        shifted = b.fsub(load(b, ctx.elem(x, off), dt), m)  # <= 0
        return b.fadd(acc, mathlib.exp(b, shifted, upper=False), flags=FAST)

    s = row_loop(b, n, stride, base, ir.Constant(ty, 0.0), add_exp, "sum")
    return m, s


@lowerer("softmax", "log_softmax")
def lower_softmax(ctx: KernelContext) -> None:
    """Stable softmax / log_softmax along ``axis`` (see module docstring)."""
    (node,) = ctx.kernel.nodes
    x = node.inputs[0]
    axis = node.attrs["axis"]
    outer = int(np.prod(x.shape[:axis], dtype=np.int64))
    n = x.shape[axis]
    inner = int(np.prod(x.shape[axis + 1:], dtype=np.int64))
    if node.size == 0:
        return
    sb = LLVMScalarBuilder(ctx.builder)

    def row(b: ir.IRBuilder, offs: list[ir.Value], _i: list[ir.Value]) -> None:
        base = offs[0]
        m, s = softmax_rows(ctx, x, n, inner, base)
        if node.op == "softmax":
            inv = b.fdiv(ir.Constant(s.type, 1.0), s)

            def put(b: ir.IRBuilder, acc: ir.Value, off: ir.Value, _j: ir.Value) -> ir.Value:
                e = mathlib.exp(b, b.fsub(load(b, ctx.elem(x, off), x.dtype), m), upper=False)
                b.store(b.fmul(e, inv, flags=FAST), ctx.elem(node, off))
                return acc
        else:
            log_s = sb.log(s)

            def put(b: ir.IRBuilder, acc: ir.Value, off: ir.Value, _j: ir.Value) -> ir.Value:
                # (x - m) - log s, not x - (m + log s): the latter rounds log s to the spacing of floats near m
                shifted = b.fsub(load(b, ctx.elem(x, off), x.dtype), m)
                b.store(b.fsub(shifted, log_s), ctx.elem(node, off))
                return acc

        row_loop(b, n, inner, base, loops.const(0), put, "put")

    loops.emit_nest(ctx.builder, (outer, inner), [(n * inner, 1)], row, name="rows")
