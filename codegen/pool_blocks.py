"""Max pooling on channel blocks: one vector lane per channel, for planes whose rows are too short to vectorize.

The same layout as ``codegen.conv_depthwise``: the V planes of a block are packed, -inf-padded, into
``xt[(r·pitch + col)·V + k]`` by in-register transposes, every output pixel is the lane-wise maximum of its window's
vectors (``llvm.maximum``: NaN propagates; max is order-free, so the value equals the window-by-window one), and
the results are transposed back into y's planes. GoogLeNet's 7×7 to 28×28 pools are where this pays (measured in
``applies``). Used when every image's channels are whole blocks. A block whose input planes hold no NaN (one scan)
takes the plain maximum instead (one ``vmaxps`` against ``llvm.maximum``'s six instructions; taps in window
order, ties keep the first maximum, as the reference does): 192 ch 28×28 3×3 s1 0.157 → 0.079 ms, 480 ch
14×14 0.105 → 0.053, 832 ch 7×7 0.053 → 0.031.
"""

from __future__ import annotations

from typing import Any

import llvmlite.ir as ir
import numpy as np

from codegen.conv_depthwise import Combine, lanes, run_blocks
from codegen.conv_direct import FLAT_SCRATCH_BYTES, Padded, scalar_type
from codegen.conv_geometry import Geometry
from codegen.llvm import i64, intrinsic
from codegen.lowering import KernelContext
from codegen.pool_separable import first_maximum, holds_nan
from graphc.ir import Node

SHORT_ROWS = 2  # blocks for output rows shorter than this many vectors


def geometry(win: Any, x_shape: tuple[int, ...], itemsize: int) -> Geometry:
    """The pool window as a depthwise convolution geometry (one channel per group)."""
    n, c = x_shape[:2]
    return Geometry(n, c, win.h, win.w, c, win.kh, win.kw, win.ho, win.wo, win.sh, win.sw, win.dh, win.dw, win.top,
                    win.left, c, itemsize)


def applies(g: Geometry) -> bool:
    """Whole blocks of channels, output rows shorter than SHORT_ROWS vectors and scratch within budget. Measured
    on GoogLeNet's pools (one thread, float32, AVX-512, µs, flat planes → blocks): 832 ch 7×7 3×3 s1 283 → 43,
    480 ch 14×14 3×3 s1 144 → 97, 192 ch 56×56 3×3 s2 387 → 223, 192 ch 28×28 3×3 s1 159 → 147."""
    v = lanes(g)
    padded = Padded.of(g)
    scratch = (padded.rows * padded.pitch + g.p) * v * g.itemsize
    return g.c % v == 0 and g.wo < SHORT_ROWS * v and scratch <= FLAT_SCRATCH_BYTES and g.p > 0


def max_pool(ctx: KernelContext, node: Node, g: Geometry) -> None:
    """y = max over each window, V channels at a time (see the module docstring)."""
    v = lanes(g)
    vector = ir.VectorType(scalar_type(g), v)
    suffix = f"v{v}{'f64' if g.itemsize == 8 else 'f32'}"

    def prepare(c: KernelContext, _c0: ir.Value) -> tuple[ir.Value, Combine]:
        b = c.builder
        maximum = intrinsic(b.module, f"llvm.maximum.{suffix}", vector, [vector, vector])
        return ir.Constant(vector, [-np.inf] * v), lambda acc, _tap, pixel: b.call(maximum, [acc, pixel])

    def no_nan(c: KernelContext, n: ir.Value, c0: ir.Value) -> tuple[ir.Value, Combine]:
        """Whether the block's V input planes hold no NaN, and then the plain maximum (one vmaxps instead of
        llvm.maximum's six instructions; ties keep the first maximum, as np.maximum does)."""
        b = c.builder
        first = b.mul(b.add(b.mul(n, i64(g.c)), c0), i64(g.h * g.w))
        nan = holds_nan(c, node.inputs[0], first, v * g.h * g.w)
        return b.not_(nan), lambda acc, _tap, pixel: first_maximum(b, acc, pixel)

    run_blocks(ctx, node, g, node.inputs[0], -np.inf, prepare, alternative=no_nan)
