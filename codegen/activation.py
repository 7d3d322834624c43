"""Lowering of the activations that are not elementwise: the stable two-pass softmax / log_softmax.

softmax along an axis, with x viewed as (outer, n, inner): m = max_j x_j; e_j = exp(x_j - m); s = Σ e_j;
y_j = e_j·(1/s) (softmax) or y_j = (x_j - m) - log s (log_softmax). The arguments x_j - m are ≤ 0 (or NaN),
so the cheaper ``upper=False`` exp applies. NaN anywhere in a row makes the row NaN (max propagates it); a row of
-inf (or one holding +inf) is NaN too (-inf - -inf), as in NumPy.

- inner == 1 (the last axis): each row is a contiguous loop over j (``lower_softmax``).
- inner > 1: a loop over j at stride ``inner`` would vectorize only through gathers, so the rows are computed
  side by side (``lower_columns``), in tasks of one outer index o and a block of B inner positions i. For n ≤
  ``UNROLL`` one loop over i holds a position's n values in registers (rows unrolled). Otherwise m and s are rows
  of B elements in the kernel's scratch: pass 1 m[i] = max_j x[o, j, i]; pass 2 e = exp(x[o, j, i] - m[i]),
  s[i] = Σ_j e (softmax also stores e in y), then s[i] ← 1/s[i] or log s[i]; pass 3 y[o, j, i] = e·s[i] or
  (x[o, j, i] - m[i]) - s[i]. Every innermost loop runs over i, contiguous in x, y, m and s, and vectorizes. Per
  position, s is summed in the order j = 0..n-1 (in place, y = x, each element is read before it is written).

On several threads the rows (or (outer, block) tasks) run in chunks, each computed as on one thread (the same bits
for every thread count). (Elementwise activations — relu, sigmoid, tanh, gelu, ... — are fused elementwise kernels
built from each op's ``scalar`` formula, ``codegen.elementwise``.)
"""

from __future__ import annotations

import math
from collections.abc import Callable

import llvmlite.ir as ir
import numpy as np

import codegen.loops as loops
import codegen.mathlib as mathlib
from codegen.llvm import fold, for_range, i64
from codegen.lowering import KernelContext, lowerer
from codegen.reduce import combiner
from codegen.scalar import FAST, LLVMScalarBuilder, load, value_type
from graphc.ir import Node


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
    if inner > 1:
        lower_columns(ctx, node, outer, n, inner)
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


BLOCK_BYTES = 1 << 18  # x of one (outer, block) task, n·B elements: passes 2 and 3 reread it from L2
MAX_BLOCK = 2048  # the m and s rows (2·B elements of scratch) stay in L1
UNROLL = 32  # n at most this: the rows of a position are held in registers (no scratch, one exp per element)


def inner_block(n: int, inner: int, itemsize: int) -> int:
    """B, the inner positions per task: all of ``inner`` when n·inner elements fit :data:`BLOCK_BYTES`, else the
    inner axis cut into equal blocks (a multiple of 16, at least 64, at most :data:`MAX_BLOCK`) and a shorter tail."""
    cap = max(64, min(MAX_BLOCK, BLOCK_BYTES // (n * itemsize)) // 16 * 16)
    if cap >= inner:
        return inner
    blocks = -(-inner // cap)
    return -(-inner // (blocks * 16)) * 16


def over_positions(b: ir.IRBuilder, count: int, name: str, step: Callable[[ir.IRBuilder, ir.Value], None]) -> None:
    """for i in range(count): step(b, i) — the contiguous innermost loop the vectorizer widens."""
    with for_range(b, 0, count, name=name) as i:
        step(b, i)


def lower_columns(ctx: KernelContext, node: Node, outer: int, n: int, inner: int) -> None:
    """softmax / log_softmax of x viewed as (outer, n, inner), inner > 1, rows side by side (module docstring):
    per task (o, block of B positions) m[i] = max_j x[o, j, i]; s[i] = Σ_j exp(x[o, j, i] - m[i]); then
    y[o, j, i] = exp(x[o, j, i] - m[i])·(1/s[i]) or (x[o, j, i] - m[i]) - log s[i]."""
    x = node.inputs[0]
    dt = x.dtype
    ty = value_type(dt)
    itemsize = 8 if isinstance(ty, ir.DoubleType) else 4
    width = inner_block(n, inner, itemsize)
    blocks = -(-inner // width)
    tail = inner - (blocks - 1) * width
    mx = combiner("max", dt)
    softmax = node.op == "softmax"

    def columns(c: KernelContext, b: ir.IRBuilder, base: ir.Value, count: int, rows: range, name: str,
                step: Callable[[ir.IRBuilder, ir.Value, ir.Value, ir.Value], None]) -> None:
        """for j in rows: for i in range(count): step(b, i, x's element (o, j, i), y's)."""
        if len(rows) == 0:
            return
        if len(rows) == 1:
            row = b.add(base, i64(rows[0] * inner))
            over_positions(b, count, f"{name}.i", lambda b, i: step(b, i, c.elem(x, b.add(row, i)),
                                                                    c.elem(node, b.add(row, i))))
            return
        with for_range(b, rows.start, rows.stop, name=f"{name}.j") as j:
            row = b.add(base, b.mul(j, i64(inner)))

            def at(b: ir.IRBuilder, i: ir.Value) -> None:
                off = b.add(row, i)
                step(b, i, c.elem(x, off), c.elem(node, off))

            over_positions(b, count, f"{name}.i", at)

    def block(c: KernelContext, b: ir.IRBuilder, base: ir.Value, count: int, m: ir.Value | None,
              s: ir.Value | None) -> None:
        """The three passes over positions base .. base + count - 1 of rows j = 0..n-1."""
        def m_at(b: ir.IRBuilder, i: ir.Value) -> ir.Value:
            return b.gep(m, [i], inbounds=True)

        def s_at(b: ir.IRBuilder, i: ir.Value) -> ir.Value:
            return b.gep(s, [i], inbounds=True)

        def shifted(b: ir.IRBuilder, i: ir.Value, xp: ir.Value) -> ir.Value:
            return b.fsub(load(b, xp, dt), b.load(m_at(b, i)))  # <= 0

        # pass 1: m = row 0, then m[i] = max(m[i], x[j, i]) (max(-inf, x0) is x0 bit for bit, NaN included)
        columns(c, b, base, count, range(1), "max0", lambda b, i, xp, _y: b.store(load(b, xp, dt), m_at(b, i)))
        columns(c, b, base, count, range(1, n), "max",
                lambda b, i, xp, _y: b.store(mx(b, b.load(m_at(b, i)), load(b, xp, dt)), m_at(b, i)))

        # pass 2: s = e of row 0 (0 + e0 is e0), then s[i] += exp(x[j, i] - m[i])
        def first_exp(b: ir.IRBuilder, i: ir.Value, xp: ir.Value, yp: ir.Value) -> None:
            e = mathlib.exp(b, shifted(b, i, xp), upper=False)
            if softmax:
                b.store(e, yp)
            b.store(e, s_at(b, i))

        def add_exp(b: ir.IRBuilder, i: ir.Value, xp: ir.Value, yp: ir.Value) -> None:
            e = mathlib.exp(b, shifted(b, i, xp), upper=False)
            if softmax:
                b.store(e, yp)
            b.store(b.fadd(b.load(s_at(b, i)), e, flags=FAST), s_at(b, i))

        columns(c, b, base, count, range(1), "sum0", first_exp)
        columns(c, b, base, count, range(1, n), "sum", add_exp)

        # s[i] <- 1/s[i] (softmax) or log s[i] (log_softmax)
        def finish(b: ir.IRBuilder, i: ir.Value) -> None:
            value = b.load(s_at(b, i))
            out = b.fdiv(ir.Constant(ty, 1.0), value) if softmax else LLVMScalarBuilder(b).log(value)
            b.store(out, s_at(b, i))

        over_positions(b, count, "fin", finish)

        # pass 3: y[j, i] = exp(x - m)·(1/s) or (x - m) - log s
        def put(b: ir.IRBuilder, i: ir.Value, xp: ir.Value, yp: ir.Value) -> None:
            if softmax:
                b.store(b.fmul(b.load(yp), b.load(s_at(b, i)), flags=FAST), yp)
            else:
                b.store(b.fsub(shifted(b, i, xp), b.load(s_at(b, i))), yp)

        columns(c, b, base, count, range(n), "put", put)

    def unrolled(c: KernelContext, b: ir.IRBuilder, base: ir.Value, count: int, _m: ir.Value | None,
                 _s: ir.Value | None) -> None:
        """n ≤ :data:`UNROLL`: one loop over positions, rows j unrolled and held in registers (no scratch)."""
        def at(b: ir.IRBuilder, i: ir.Value) -> None:
            offs = [b.add(base, i64(j * inner)) for j in range(n)]
            offs = [b.add(off, i) for off in offs]
            xs = [load(b, c.elem(x, off), dt) for off in offs]
            m = xs[0]
            for v in xs[1:]:
                m = mx(b, m, v)
            zs = [b.fsub(v, m) for v in xs]  # <= 0
            es = [mathlib.exp(b, z, upper=False) for z in zs]
            s = es[0]
            for e in es[1:]:
                s = b.fadd(s, e, flags=FAST)
            if softmax:
                inv = b.fdiv(ir.Constant(ty, 1.0), s)
                outs = [b.fmul(e, inv, flags=FAST) for e in es]
            else:
                log_s = LLVMScalarBuilder(b).log(s)
                outs = [b.fsub(z, log_s) for z in zs]
            for off, out in zip(offs, outs):
                b.store(out, c.elem(node, off))

        over_positions(b, count, "pos", at)

    run = unrolled if n <= UNROLL else block

    def task(c: KernelContext, b: ir.IRBuilder, offs: list[ir.Value], _i: list[ir.Value]) -> None:
        small = n <= UNROLL
        m = None if small else c.scratch(width * itemsize, ty)
        s = None if small else c.scratch(width * itemsize, ty)
        t = offs[0]  # task index: o·blocks + k
        if blocks == 1:
            run(c, b, b.mul(t, i64(n * inner)), inner, m, s)
            return
        k = b.urem(t, i64(blocks))
        base = b.add(b.mul(b.udiv(t, i64(blocks)), i64(n * inner)), b.mul(k, i64(width)))
        if tail == width:
            run(c, b, base, width, m, s)
            return
        with b.if_else(b.icmp_unsigned("==", k, i64(blocks - 1))) as (last, full):
            with last:
                run(c, b, base, tail, m, s)
            with full:
                run(c, b, base, width, m, s)

    loops.parallel_nest(ctx, (outer * blocks,), [(1,)], task, name="cols",
                        grain=max(1, loops.GRAIN // (n * width)))
