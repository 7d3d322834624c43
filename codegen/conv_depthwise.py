"""Depthwise convolution on channel blocks: V = vector-width channels computed together, one lane per channel
(the layout onnxruntime's and oneDNN's NCHWc kernels keep throughout; here only inside the kernel). Faster than the
plane-by-plane kernels (``codegen.conv_direct``) for every depthwise shape measured (``blocked_applies``): rows
of 7 or 14 pixels need no scalar remainders, and a register tile reuses each loaded pixel for many outputs.

1. pack: the block's V planes, zero-padded as ``conv_direct.Padded`` describes, interleaved into scratch
   ``xt[(r·pitch + c)·V + v]`` (every window then lies inside; no bounds tests below), and the block's weights
   ``wt[t·V + v] = w[c0 + v, t]`` (``codegen.channel_blocks``: in-register V × V transposes);
2. compute a tile of output pixels (i, j) in registers (``tile_shape``: e.g. 1×14 of a 56-wide row, 2×7 of a
   7×7 plane): acc = b[c0:c0+V] + Σ_{p,q} wt[p·kw + q] · xt[(i·sh + p·dh)·pitch + j·sw + q·dw] — whole-vector
   FMAs (``llvm.fma``) in the order p, q as every other conv path, so the same bits on every thread count; each
   packed pixel is loaded once per tile and feeds every accumulator whose window holds it (7×7 stride 1, 1×14
   tile: per kernel row 20 pixel and 7 weight loads for 98 FMAs, which then run at the core's FMA peak);
3. the tile's accumulators, consecutive pixels of y's planes, are transposed back and stored into y (other tile
   shapes, as the pooling kernel's single pixels: through ``yt[(i·Wo + j)·V + v]`` and ``unpack_planes``); then
   the fused epilogue over the block's planes.

Chunks are (image, block) pairs; channels past the last full block run on the plane kernels.
"""

from __future__ import annotations

from collections.abc import Callable

import llvmlite.ir as ir

from codegen.channel_blocks import (
    apply_epilogue,
    chunked,
    output_planes,
    pack_planes,
    store_pixels,
    unpack_planes,
    vector_at,
)
from codegen.conv_direct import FLAT_SCRATCH_BYTES, Padded, fma, scalar_type
from codegen.conv_geometry import Geometry
from codegen.gemm.config import host_vector_bits
from codegen.gemm.transpose import transpose_block
from codegen.llvm import for_range, i64, load_first
from codegen.lowering import KernelContext
from graphc.ir import Node

TILE_TAPS = 1024  # taps per register tile at most (each an FMA; the tile's code is unrolled) ...
MIN_TILE = 4  # ... unless that leaves fewer pixels than this


def lanes(g: Geometry) -> int:
    """Channels per block: one host vector of the dtype."""
    return host_vector_bits() // (8 * g.itemsize)


def blocked_applies(g: Geometry) -> bool:
    """Depthwise with multiplier 1, at least one full block of channels and scratch in budget. Measured (one
    thread, float32, AVX-512, µs, plane kernels → register-tiled blocks): 3×3 32 ch 112×112 184 → 128, 144 ch
    56×56 369 → 146, 96 ch 112×112 stride 2 426 → 209, 960 ch 7×7 43 → 18; 5×5 48 ch 112×112 637 → 356, 672 ch
    14×14 275 → 84; 7×7 96 ch 56×56 754 → 307, 768 ch 7×7 147 → 45."""
    v = lanes(g)
    padded = Padded.of(g)
    scratch = (padded.rows * padded.pitch + g.p + g.kg) * v * g.itemsize
    return g.cg == 1 and g.og == 1 and g.c >= v and scratch <= FLAT_SCRATCH_BYTES


Combine = Callable[[ir.Value, int, ir.Value], ir.Value]  # (acc, tap index p·kw + q, pixel vector) -> acc
Prepare = Callable[[KernelContext, ir.Value], tuple[ir.Value, Combine]]  # (ctx, first channel) -> (start, combine)
# (ctx, image, first channel) -> (condition, combine): when the condition holds, the block runs that combine instead
Alternative = Callable[[KernelContext, ir.Value, ir.Value], tuple[ir.Value, Combine]]


def run_blocks(ctx: KernelContext, node: Node, g: Geometry, x: Node, fill: float, prepare: Prepare,
               tile: tuple[int, int] = (1, 1), alternative: Alternative | None = None) -> int:
    """The channel-block kernel over every (image, block of V channels): pack the block's planes (``fill``
    outside x), then per output pixel acc = start, combined with each window tap's V-channel vector in the order
    (p, q), into y's planes. ``prepare(ctx, c0)`` gives the block's start vector and combine step. Pixels are
    computed ``tile`` = (rows, columns) at a time (``_tile``); a tile of consecutive pixels of y's planes (one
    row, or whole rows) of at most V pixels is transposed and stored straight into y, others go through a
    packed output and ``unpack_planes``. ``alternative(ctx, n, c0)``: a run-time condition and a second combine
    step the block's pixels use when it holds (the code is emitted for both). Returns how many channels of each
    image it covers (whole blocks)."""
    v = lanes(g)
    blocks = g.c // v
    padded = Padded.of(g)
    scalar = scalar_type(g)
    vector = ir.VectorType(scalar, v)
    rows, cols = min(tile[0], g.ho), min(tile[1], g.wo)
    direct = 1 < rows * cols <= v and (rows == 1 or cols == g.wo)

    def block(c: KernelContext, index: ir.Value) -> None:
        b = c.builder
        n, blk = b.udiv(index, i64(blocks)), b.urem(index, i64(blocks))
        c0 = b.mul(blk, i64(v))
        size = padded.rows * padded.pitch
        xt = c.scratch((size + (0 if direct else g.p)) * v * g.itemsize, scalar)
        yt = b.gep(xt, [i64(size * v)], inbounds=True)
        planes = output_planes(c, g, node, n, c0, v)
        pack_planes(b, c, g, padded, x, n, c0, xt, v, fill=fill)
        start, combine = prepare(c, c0)

        def emit(i0: ir.Value, j0: ir.Value, shape: tuple[int, int], combine: Combine) -> None:
            accs = _tile(b, g, padded, xt, v, i0, j0, shape, start, combine)
            t0 = b.add(b.mul(i0, i64(g.wo)), j0)
            if direct:
                store_pixels(b, planes, t0, accs)
                return
            for m, acc in enumerate(accs):
                at = b.add(t0, i64(m // shape[1] * g.wo + m % shape[1]))
                b.store(acc, vector_at(b, yt, at, v, vector), align=64)

        def span(total: int, step: int, body: Callable[[ir.Value, int], None], name: str) -> None:
            if total >= step:
                with for_range(b, 0, total - total % step, step, name=name) as at:
                    body(at, step)
            if total % step:
                body(i64(total - total % step), total % step)

        def pixels(step: Combine) -> None:
            span(g.ho, rows, lambda i0, r: span(g.wo, cols, lambda j0, a: emit(i0, j0, (r, a), step), "j"), "i")

        if alternative is None:
            pixels(combine)
        else:
            condition, other = alternative(c, n, c0)
            with b.if_else(condition) as (then, otherwise):
                with then:
                    pixels(other)
                with otherwise:
                    pixels(combine)
        if direct:
            apply_epilogue(c, g, node, n, c0, v)
        else:
            unpack_planes(b, c, g, node, n, c0, yt, v)

    ctx.parallel("blocks", g.n * blocks, block)
    return blocks * v


def _tile(b: ir.IRBuilder, g: Geometry, padded: Padded, xt: ir.Value, v: int, i0: ir.Value,
          j0: ir.Value, shape: tuple[int, int], start: ir.Value, combine: Combine) -> list[ir.Value]:
    """Output pixels (i0 + i, j0 + a), i < rows, a < cols, in registers: each packed pixel of the tile's window is
    loaded once (input row r = i·sh + p·dh, column k = a·sw + q·dw of the tile) and combined into every
    accumulator it feeds. Visiting r, then k, ascending keeps each accumulator's taps in the order (p, q).
    Returns the accumulators, row by row."""
    rows, cols = shape
    vector = ir.VectorType(scalar_type(g), v)
    by_row: dict[int, list[tuple[int, int]]] = {}
    by_col: dict[int, list[tuple[int, int]]] = {}
    for i in range(rows):
        for p in range(g.kh):
            by_row.setdefault(i * g.sh + p * g.dh, []).append((i, p))
    for a in range(cols):
        for q in range(g.kw):
            by_col.setdefault(a * g.sw + q * g.dw, []).append((a, q))
    base = b.add(b.mul(b.mul(i0, i64(g.sh)), i64(padded.pitch)), b.mul(j0, i64(g.sw)))
    accs = {(i, a): start for i in range(rows) for a in range(cols)}
    for r in sorted(by_row):
        for k in sorted(by_col):
            pixel = b.load(vector_at(b, xt, b.add(base, i64(r * padded.pitch + k)), v, vector), align=64)
            for i, p in by_row[r]:
                for a, q in by_col[k]:
                    accs[i, a] = combine(accs[i, a], p * g.kw + q, pixel)
    return list(accs.values())


def forward_blocks(ctx: KernelContext, node: Node, g: Geometry, x: Node, w: Node, bias: Node | None) -> int:
    """y = conv(x, w) (+ b) on channel blocks: acc = b[c0:c0+V], then acc = fma(w[c0:c0+V, p, q], pixel, acc);
    returns how many channels it covers. The block's weights are transposed once into scratch
    (wt[t·V + k] = w[c0 + k, t]), read by the FMAs from there."""
    v = lanes(g)
    vector = ir.VectorType(scalar_type(g), v)

    def prepare(c: KernelContext, c0: ir.Value) -> tuple[ir.Value, Combine]:
        b = c.builder
        wt = c.scratch(g.kg * v * g.itemsize, scalar_type(g))
        first = [c.elem(w, b.mul(b.add(c0, i64(k)), i64(g.kg))) for k in range(v)]

        def taps(t0: ir.Value, count: int) -> None:
            rows = [load_first(b, b.gep(f, [t0], inbounds=True), vector, count) for f in first]
            for t, column in enumerate(transpose_block(b, rows)[:count]):
                at = b.add(t0, i64(t))
                b.store(column, vector_at(b, wt, at, v, vector), align=64)

        chunked(b, g.kg, v, taps, "tap")
        slots = [b.bitcast(b.gep(wt, [i64(t * v)], inbounds=True), vector.as_pointer()) for t in range(g.kg)]
        start = ir.Constant(vector, None) if bias is None else \
            b.load(b.bitcast(c.elem(bias, c0), vector.as_pointer()), align=g.itemsize)
        return start, lambda acc, tap, pixel: fma(b, b.load(slots[tap], align=64), pixel, acc)

    return run_blocks(ctx, node, g, x, 0.0, prepare, tile=tile_shape(g))


def tile_shape(g: Geometry) -> tuple[int, int]:
    """(rows, columns) of output pixels per register tile: at most V of them (one transpose into y) and at most
    TILE_TAPS window taps in all (code size), but at least MIN_TILE (independent FMA chains to cover the FMA
    latency). Rows of up to that many pixels are computed whole, as many rows at a time as fit; longer rows in
    equal parts. Measured (one thread, µs): 7×7 28×28 1×16 166, 1×14 151; 56×56 1×16 302, 1×14 303, 1×8 307;
    31×31 on 64 ch 28×28 1×1 7348, 1×4 1202."""
    v = lanes(g)
    most = min(v, max(MIN_TILE, TILE_TAPS // (g.kh * g.kw)))
    if g.wo <= most:
        return max(1, most // g.wo), g.wo
    return 1, -(-g.wo // -(-g.wo // most))
