"""Max pooling over a padded copy of each plane: every window inside, one long vectorized loop per plane.

The window-by-window lowering (``codegen.pool``) tests every position of the border windows and runs its
row-wise interior loops over rows as short as 14 or 28 elements — mostly scalar remainders. GoogLeNet's 3×3
stride-1 pools there took 0.6-1.2 ms each where onnxruntime takes 30-50 µs. Here, per (n, c) plane:

1. the plane is copied into scratch with -inf around it (``rows × pitch``, as ``conv_direct.Padded``: the rows
   and columns the windows reach, ceil mode's extra ones included), so no window needs a bounds test;
2. for the flat positions t = i·pitch + j, t < span: out[t] = max_{p,q} pad[sw·t + p·dh·pitch + q·dw]
   (``llvm.maximum``: NaN propagates, as ``np.maximum``; max is order-free, so the value equals the window-by-window
   one) — equal strides make sw·t the window's corner, and the positions with j ≥ Wo wrap into the next row and
   are dropped;
3. y's rows are copied out of the flat result.

Planes run in chunks on the program's threads, each plane by the same code whatever the thread count.
"""

from __future__ import annotations

from typing import Any

import llvmlite.ir as ir
import numpy as np

from codegen.conv_direct import Padded, pad_plane
from codegen.llvm import float_intrinsic, for_range, i64
from codegen.lowering import KernelContext
from codegen.scalar import value_type
from graphc.ir import Node

SCRATCH_LIMIT = 4 << 20  # padded plane + flat output per thread, bytes
SHORT_ROWS = 32  # strided pools take this kernel only for output rows shorter than this


def geometry(win: Any) -> Padded:
    """The padded plane and the flat output run of a ``codegen.pool.Window``."""
    return Padded.window(win.ho, win.wo, win.sh, win.sw, win.kh, win.kw, win.dh, win.dw)


def applies(win: Any, itemsize: int) -> bool:
    """Equal strides (the flat index trick), a padded plane within the scratch budget, and a geometry where it
    wins: stride 1, or output rows shorter than SHORT_ROWS elements (with stride s the flat loop computes s× the
    positions; on wide rows the window-by-window kernel's row loops vectorize well). Measured (one thread):
    192 ch 28×28 3×3 s1 0.91 → 0.17 ms, 192 ch 56×56 s2 0.98 → 0.38 ms, but 64 ch 112×112 s2 0.31 → 0.58 ms."""
    padded = geometry(win)
    fits = (padded.rows * padded.pitch + padded.span) * itemsize <= SCRATCH_LIMIT and win.ho > 0 and win.wo > 0
    return win.sh == win.sw and fits and (win.sw == 1 or win.wo < SHORT_ROWS)


def max_pool(ctx: KernelContext, node: Node, win: Any) -> None:
    """y = max over each window of x (see the module docstring)."""
    x = node.inputs[0]
    ty = value_type(node.dtype)
    itemsize = 8 if node.dtype == "float64" else 4
    padded = geometry(win)
    rows, pitch, span = padded.rows, padded.pitch, padded.span
    low = ir.Constant(ty, -np.inf)

    def plane(c: KernelContext, index: ir.Value) -> None:
        b = c.builder
        maximum = float_intrinsic(b, "llvm.maximum", ty, 2)
        scratch = c.scratch((rows * pitch + span) * itemsize, ty)
        pad = scratch
        out = b.gep(scratch, [i64(rows * pitch)], inbounds=True)
        pad_plane(b, padded, c.elem(x, b.mul(index, i64(win.h * win.w))), pad, win.h, win.w, win.top, win.left, low)
        with for_range(b, 0, span, name="t") as t:
            corner = b.mul(t, i64(win.sw))
            value = low
            for p in range(win.kh):
                for q in range(win.kw):
                    at = b.add(corner, i64(p * win.dh * pitch + q * win.dw))
                    value = b.call(maximum, [value, b.load(b.gep(pad, [at], inbounds=True))])
            b.store(value, b.gep(out, [t], inbounds=True))
        plane_out = b.mul(index, i64(win.ho * win.wo))
        with for_range(b, 0, win.ho, name="i") as i:
            src = b.gep(out, [b.mul(i, i64(pitch))], inbounds=True)
            dst = b.add(plane_out, b.mul(i, i64(win.wo)))
            with for_range(b, 0, win.wo, name="j") as j:
                b.store(b.load(b.gep(src, [j], inbounds=True)), c.elem(node, b.add(dst, j)))

    ctx.parallel("planes", win.planes, plane)
