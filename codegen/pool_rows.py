"""Max pooling of stride 1 on short rows held in registers: GoogLeNet's 3×3 pools at 28×28, 14×14 and 7×7.

Each input row (W ≤ ``ROW_VECTORS`` host vectors) is loaded once per plane as one wide vector, -inf past W. For
output row i the vertical maximum over the window's rows r = i + p - top (rows outside the plane are padding:
skipped) takes one vector operation per row; the horizontal maximum over the taps q takes that vector shifted by
q - left lanes with -inf shifted in (a lane permute, ``vpermt2ps`` / ``valignd``). An output row costs kh - 1 +
2·(kw - 1) vector operations and one store — no packing into channel blocks and back, no padded copy, no second
pass over the plane. Rows are unrolled (planes of at most ``MAX_ROWS`` rows).

NaN: an unordered compare of every loaded row decides, per plane, between the plain maximum ``v > acc ? v : acc``
(one ``vmaxps``) and ``llvm.maximum``, which propagates NaN as ``np.maximum`` does (six instructions a vector on
AVX-512). Either equals the window-by-window value, up to the sign of a zero maximum when a window holds both +0
and -0 (rows first, as ``codegen.pool_separable``). Planes run in chunks on the program's threads, each plane by
the same code. Measured against channel blocks (1 thread, AVX-512, 3×3 s1 p1, medians of interleaved rounds):
480 ch 14×14 53 → 26 µs, 832 ch 7×7 30 → 23 µs, 192 ch 28×28 76 → 62 µs; at batch 8, 480 ch 14×14 320 → 105 µs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import llvmlite.ir as ir
import numpy as np

from codegen.gemm.config import host_vector_bits
from codegen.llvm import I1, I32, i64, intrinsic, load_first, store_first
from codegen.lowering import KernelContext
from codegen.pool_separable import first_maximum
from codegen.scalar import value_type
from graphc.ir import Node

ROW_VECTORS = 2  # input and output rows of at most this many host vectors
MAX_ROWS = 32  # input and output rows per plane (unrolled)


def row_lanes(win: Any, itemsize: int) -> int:
    """Lanes of the wide vector a row is held in: whole host vectors covering the input and the output row."""
    vec = host_vector_bits() // (8 * itemsize)
    return -(-max(win.w, win.wo) // vec) * vec


def applies(win: Any, itemsize: int) -> bool:
    """Stride 1, no dilation, rows of at most ROW_VECTORS host vectors, at most MAX_ROWS rows."""
    vec = host_vector_bits() // (8 * itemsize)
    return (win.sh == win.sw == 1 and win.dh == win.dw == 1 and 0 < win.ho <= MAX_ROWS and 0 < win.h <= MAX_ROWS
            and 0 < win.wo and max(win.w, win.wo) <= ROW_VECTORS * vec)


def _lanes_constant(values: list[int]) -> ir.Constant:
    return ir.Constant(ir.VectorType(I32, len(values)), values)


def max_pool(ctx: KernelContext, node: Node, win: Any) -> None:
    """y = max over each window of x (see the module docstring)."""
    x = node.inputs[0]
    scalar = value_type(node.dtype)
    itemsize = 8 if node.dtype == "float64" else 4
    width = row_lanes(win, itemsize)
    vector = ir.VectorType(scalar, width)
    suffix = f"v{width}{'f64' if itemsize == 8 else 'f32'}"
    low = ir.Constant(vector, [-np.inf] * width)

    def plane(c: KernelContext, index: ir.Value) -> None:
        b = c.builder
        module = b.module
        maximum = intrinsic(module, f"llvm.maximum.{suffix}", vector, [vector, vector])
        any_set = intrinsic(module, f"llvm.vector.reduce.or.v{width}i1", I1, [ir.VectorType(I1, width)])
        plane_in = b.mul(index, i64(win.h * win.w))
        plane_out = b.mul(index, i64(win.ho * win.wo))
        rows = [load_first(b, c.elem(x, b.add(plane_in, i64(r * win.w))), vector, win.w, fill=low)
                for r in range(win.h)]  # -inf past the row's W elements
        nan = b.fcmp_unordered("uno", rows[0], rows[0])
        for row in rows[1:]:
            nan = b.or_(nan, b.fcmp_unordered("uno", row, row))
        shifts = {}
        for q in range(win.kw):  # output lane j takes lane j + q - left: -inf where that is outside the row
            s = q - win.left
            shifts[q] = _lanes_constant([j + s if 0 <= j + s < width else width for j in range(width)])

        def rows_out(larger: Callable[[ir.Value, ir.Value], ir.Value]) -> None:
            for i in range(win.ho):
                inside = [rows[r] for r in (i + p - win.top for p in range(win.kh)) if 0 <= r < win.h]
                vertical = inside[0] if inside else low
                for row in inside[1:]:
                    vertical = larger(vertical, row)
                out = None
                for q in range(win.kw):
                    tap = b.shuffle_vector(vertical, low, shifts[q])
                    out = tap if out is None else larger(out, tap)
                store_first(b, out, c.elem(node, b.add(plane_out, i64(i * win.wo))), win.wo)

        with b.if_else(b.call(any_set, [nan])) as (slow, fast):
            with slow:  # a NaN in the plane propagates (llvm.maximum)
                rows_out(lambda acc, v: b.call(maximum, [acc, v]))
            with fast:  # the plain maximum, ties keep the first (one vmaxps)
                rows_out(lambda acc, v: first_maximum(b, acc, v))

    ctx.parallel("planes", win.planes, plane)
