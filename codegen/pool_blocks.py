"""Max pooling on channel blocks: one vector lane per channel, for planes whose rows are too short to vectorize.

The same layout as ``codegen.conv_depthwise``: the V planes of a block are packed, -inf-padded, into
``xt[(r·pitch + col)·V + k]`` by in-register transposes, every output pixel is the lane-wise maximum of its window's
vectors (``llvm.maximum``: NaN propagates; max is order-free, so the value equals the window-by-window one), and
the results are transposed back into y's planes. GoogLeNet's 7×7 to 28×28 pools are where this pays (measured in
``applies``). Used when every image's channels are whole blocks.
"""

from __future__ import annotations

from typing import Any

import llvmlite.ir as ir
import numpy as np

from codegen.conv_depthwise import lanes, pack_planes, unpack_planes
from codegen.conv_direct import FLAT_SCRATCH_BYTES, Padded, scalar_type
from codegen.conv_geometry import Geometry
from codegen.llvm import for_range, i64, intrinsic
from codegen.lowering import KernelContext
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
    x = node.inputs[0]
    v = lanes(g)
    blocks = g.c // v
    padded = Padded.of(g)
    scalar = scalar_type(g)
    vector = ir.VectorType(scalar, v)
    suffix = f"v{v}{'f64' if g.itemsize == 8 else 'f32'}"
    low = ir.Constant(vector, [-np.inf] * v)

    def block(c: KernelContext, index: ir.Value) -> None:
        b = c.builder
        maximum = intrinsic(b.module, f"llvm.maximum.{suffix}", vector, [vector, vector])
        n, blk = b.udiv(index, i64(blocks)), b.urem(index, i64(blocks))
        c0 = b.mul(blk, i64(v))
        size = padded.rows * padded.pitch
        xt = c.scratch((size + g.p) * v * g.itemsize, scalar)
        yt = b.gep(xt, [i64(size * v)], inbounds=True)
        pack_planes(b, c, g, padded, x, n, c0, xt, v, fill=-np.inf)
        with for_range(b, 0, g.ho, name="i") as i, for_range(b, 0, g.wo, name="j") as j:
            base = b.add(b.mul(b.mul(i, i64(g.sh)), i64(padded.pitch)), b.mul(j, i64(g.sw)))
            acc = low
            for p in range(g.kh):
                for q in range(g.kw):
                    at = b.mul(b.add(base, i64(p * g.dh * padded.pitch + q * g.dw)), i64(v))
                    pixel = b.load(b.bitcast(b.gep(xt, [at], inbounds=True), vector.as_pointer()), align=64)
                    acc = b.call(maximum, [acc, pixel])
            out_at = b.mul(b.add(b.mul(i, i64(g.wo)), j), i64(v))
            b.store(acc, b.bitcast(b.gep(yt, [out_at], inbounds=True), vector.as_pointer()), align=64)
        unpack_planes(b, c, g, node, n, c0, yt, v)

    if ctx.threads > 1 and g.n * blocks > 1:
        ctx.parallel("blocks", g.n * blocks, block)
    else:
        with for_range(ctx.builder, 0, g.n * blocks, name="blk") as index:
            block(ctx, index)
