"""Max pooling in two passes, rows then columns: the window's maximum is the maximum of its rows' maxima.

For output row i of a plane, with the input rows r_p = i·sh + p·dh - top (p < kh):

1. vertical pass: v[c] = max_p x[r_p, c] for every input column c, a row of -inf standing in for rows outside
   the plane (padding, ceil mode) — a contiguous loop over the row, vectorized, each input row read once per
   output row that needs it;
2. horizontal pass: y[i, j] = max_q v[j·sw + q·dw - left] over a copy of v with -inf on both sides (written once
   per plane), so no column needs a bounds test.

A plane is first scanned for NaN. With one, the passes use ``llvm.maximum``, which propagates NaN like
``np.maximum`` and is associative and commutative (NaN included), so every output equals the window-by-window
value. Without, they use the plain maximum ``v > acc ? v : acc`` (one ``vmaxps``; ``llvm.maximum`` takes six
instructions a vector on AVX-512): the same values, up to the sign of a zero maximum when a window holds both
+0 and -0 (the reference keeps the first in row-major order, the passes visit the window column-wise). A 3×3
window costs kh loads per input column and kw per output instead of kh·kw per output, all of them contiguous
(stride 1) or interleaved (stride 2) row loads. Measured in :func:`applies`. Planes run in chunks on the
program's threads, each plane by the same code.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import llvmlite.ir as ir
import numpy as np

from codegen.llvm import I1, float_intrinsic, fold, for_range, i64
from codegen.lowering import KernelContext
from codegen.scalar import value_type
from graphc.ir import Node

MIN_WIDTH = 48  # input rows at least this wide (shorter ones: codegen.pool_blocks / pool_flat, see applies)


def holds_nan(c: KernelContext, x: Node, first: ir.Value, count: int) -> ir.Value:
    """Whether any of x's ``count`` elements from element ``first`` is NaN (one vectorized scan)."""
    return fold(c.builder, count, [ir.Constant(I1, 0)], lambda b, t, acc: [
        b.or_(acc[0], b.fcmp_unordered("uno", *[b.load(c.elem(x, b.add(first, t)))] * 2))], "nan")[0]


def first_maximum(b: ir.IRBuilder, acc: ir.Value, v: ir.Value) -> ir.Value:
    """``v > acc ? v : acc`` (one ``vmaxps``): the running maximum of NaN-free values, ties keep the first."""
    return b.select(b.fcmp_ordered(">", v, acc), v, acc)


def row_length(win: Any) -> int:
    """Elements of the -inf-bordered row the horizontal pass reads: every column a window reaches, from -left."""
    reach = (win.wo - 1) * win.sw + (win.kw - 1) * win.dw + 1 if win.wo > 0 else 0
    return max(reach, win.left + win.w)


def applies(win: Any) -> bool:
    """Input rows of at least MIN_WIDTH elements. Measured (one thread, float32, AVX-512, medians of 30 calls, ms,
    NaN-free data): ResNet's 64 ch 112×112 3×3 s2 p1 0.46 window by window (flat plane 0.52) → 0.14 separable,
    at batch 8 3.74 → 1.67; GoogLeNet's 192 ch 56×56 3×3 s2 0.14 on channel blocks → 0.12. On 28×28 and
    smaller planes channel blocks win (192 ch 28×28 3×3 s1: 0.08 blocks, 0.10 separable): the rows are short."""
    return win.w >= MIN_WIDTH and win.ho > 0 and win.wo > 0


def max_pool(ctx: KernelContext, node: Node, win: Any) -> None:
    """y = max over each window of x (see the module docstring)."""
    x = node.inputs[0]
    ty = value_type(node.dtype)
    itemsize = 8 if node.dtype == "float64" else 4
    low = ir.Constant(ty, -np.inf)
    length = row_length(win)

    def plane(c: KernelContext, index: ir.Value) -> None:
        b = c.builder
        maximum = float_intrinsic(b, "llvm.maximum", ty, 2)
        row = c.scratch(length * itemsize, ty)  # row[left + c] = v[c]; -inf around
        for lo, hi in ((0, win.left), (win.left + win.w, length)):
            with for_range(b, lo, hi, name="edge") as k:
                b.store(low, b.gep(row, [k], inbounds=True))
        plane_in = b.mul(index, i64(win.h * win.w))
        plane_out = b.mul(index, i64(win.ho * win.wo))
        middle = b.gep(row, [i64(win.left)], inbounds=True)
        nan = holds_nan(c, x, plane_in, win.h * win.w)

        def passes(larger: Callable[[ir.Value, ir.Value], ir.Value]) -> None:
            with for_range(b, 0, win.ho, name="i") as i:
                sources = []
                for p in range(win.kh):
                    r = b.add(b.mul(i, i64(win.sh)), i64(p * win.dh - win.top))
                    inside = b.icmp_unsigned("<", r, i64(win.h))  # 0 <= r < H
                    sources.append((inside, b.add(plane_in, b.mul(b.select(inside, r, i64(0)), i64(win.w)))))
                with for_range(b, 0, win.w, name="col") as col:
                    value = low
                    for inside, start in sources:
                        read = b.load(c.elem(x, b.add(start, col)))
                        value = larger(value, b.select(inside, read, low))
                    b.store(value, b.gep(middle, [col], inbounds=True))
                out_row = b.add(plane_out, b.mul(i, i64(win.wo)))
                with for_range(b, 0, win.wo, name="j") as j:
                    corner = b.mul(j, i64(win.sw))
                    value = low
                    for q in range(win.kw):
                        value = larger(value, b.load(b.gep(row, [b.add(corner, i64(q * win.dw))], inbounds=True)))
                    b.store(value, c.elem(node, b.add(out_row, j)))

        with b.if_else(nan) as (slow, fast):
            with slow:  # NaN propagates (llvm.maximum: six instructions a vector on AVX-512)
                passes(lambda acc, v: b.call(maximum, [acc, v]))
            with fast:  # no NaN in the plane: the first maximum, as np.maximum keeps it (one vmaxps)
                passes(lambda acc, v: first_maximum(b, acc, v))

    ctx.parallel("planes", win.planes, plane)
