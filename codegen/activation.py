"""Lowering of the activations that are not elementwise: the stable two-pass softmax / log_softmax.

softmax along an axis, with x viewed as (outer, n, inner): m = max_j x_j; e_j = exp(x_j - m); s = Σ e_j;
y_j = e_j / s (softmax) or y_j = x_j - m - log s (log_softmax). The
arguments x_j - m are ≤ 0 (or NaN), so the cheaper ``upper=False`` exp applies.
On several threads the rows run in chunks, each row computed as on one thread (the same bits for every thread
count). (Elementwise activations — relu, sigmoid, tanh, gelu, ... — are fused elementwise kernels built from each op's
``scalar`` formula, ``codegen.elementwise``.)
"""

from __future__ import annotations

import math
from collections.abc import Callable

import llvmlite.ir as ir
import numpy as np

import codegen.loops as loops
import codegen.mathlib as mathlib
from codegen.llvm import fold, i64
from codegen.lowering import KernelContext, lowerer
from codegen.reduce import combiner
from codegen.scalar import FAST, LLVMScalarBuilder, load, value_type


def row_loop(b: ir.IRBuilder, n: int, stride: int, base: ir.Value, init: ir.Value,
             step: Callable[[ir.IRBuilder, ir.Value, ir.Value, ir.Value], ir.Value], name: str) -> ir.Value:
    """acc = init; for j in range(n): acc = step(b, acc, base + j·stride, j); returns the final acc (n ≥ 1)."""

    def body(b: ir.IRBuilder, j: ir.Value, accs: list[ir.Value]) -> list[ir.Value]:
        return [step(b, accs[0], b.add(base, b.mul(j, i64(stride))), j)]

    return fold(b, n, [init], body, name)[0]


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
    outer = math.prod(x.shape[:axis])
    n = x.shape[axis]
    inner = math.prod(x.shape[axis + 1:])
    if node.size == 0:
        return

    def row(c: KernelContext, b: ir.IRBuilder, offs: list[ir.Value], _i: list[ir.Value]) -> None:
        base = offs[0]
        m, s = softmax_rows(c, x, n, inner, base)
        if node.op == "softmax":
            inv = b.fdiv(ir.Constant(s.type, 1.0), s)

            def put(b: ir.IRBuilder, acc: ir.Value, off: ir.Value, _j: ir.Value) -> ir.Value:
                e = mathlib.exp(b, b.fsub(load(b, c.elem(x, off), x.dtype), m), upper=False)
                b.store(b.fmul(e, inv, flags=FAST), c.elem(node, off))
                return acc
        else:
            log_s = LLVMScalarBuilder(b).log(s)

            def put(b: ir.IRBuilder, acc: ir.Value, off: ir.Value, _j: ir.Value) -> ir.Value:
                # (x - m) - log s, not x - (m + log s): the latter rounds log s to the spacing of floats near m
                shifted = b.fsub(load(b, c.elem(x, off), x.dtype), m)
                b.store(b.fsub(shifted, log_s), c.elem(node, off))
                return acc

        row_loop(b, n, inner, base, i64(0), put, "put")

    loops.parallel_nest(ctx, (outer, inner), [(n * inner, 1)], row, name="rows",
                        grain=max(1, loops.GRAIN // n))
