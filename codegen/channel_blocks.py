"""The channel-block layout of ``codegen.conv_depthwise`` (and ``codegen.pool_blocks``): V planes interleaved, one
vector lane per channel, moved in and out of NCHW by in-register V × V transposes.

- ``pack_planes``: xt[(r·pitch + col)·V + k] = x[n, c0 + k, r - top, col - left], ``fill`` outside x (the padded
  frame of ``conv_direct.Padded``; only the frame is filled, the inside written once from x);
- ``store_pixels``: V-channel vectors of consecutive pixels t0, t0 + 1, ... of the block's output planes,
  transposed and stored straight into y (masked on a partial group; nothing past the pixels is written);
- ``unpack_planes``: the same from a packed output yt[t·V + k] for t < Ho·Wo;
- ``apply_epilogue``: the fused epilogue over the block's written planes, in place.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import llvmlite.ir as ir

from codegen.conv_direct import Padded, scalar_type
from codegen.conv_geometry import Geometry
from codegen.epilogue import Epilogue
from codegen.gemm.transpose import transpose_block
from codegen.llvm import for_range, i64, load_first, store_first
from codegen.lowering import KernelContext
from graphc.ir import Node

FLAT_PIXELS = 512  # planes with rows narrower than a vector and at most this many pixels are packed flat


def chunked(b: ir.IRBuilder, total: int, v: int, body: Callable[[ir.Value, int], None], name: str) -> None:
    """body(start, count) over [0, total) in chunks of v: full chunks in a loop, then the partial one."""
    full = total // v
    if full:
        with for_range(b, 0, full * v, v, name=name) as start:
            body(start, v)
    if total % v:
        body(i64(full * v), total % v)


def vector_at(b: ir.IRBuilder, base: ir.Value, pixel: ir.Value, v: int, vector: ir.VectorType) -> ir.Value:
    """Pointer to the V-lane vector of ``pixel`` in a packed buffer."""
    return b.bitcast(b.gep(base, [b.mul(pixel, i64(v))], inbounds=True), vector.as_pointer())


def _fill_pixels(b: ir.IRBuilder, xt: ir.Value, start: ir.Value | int, stop: int, value: ir.Value, v: int,
                 name: str) -> None:
    """Pixels [start, start + stop) of xt (one vector each) = value."""
    if stop <= 0:
        return
    first = i64(start) if isinstance(start, int) else start
    with for_range(b, 0, stop, name=name) as k:
        b.store(value, vector_at(b, xt, b.add(first, k), v, value.type), align=64)


def pack_planes(b: ir.IRBuilder, c: KernelContext, g: Geometry, padded: Padded, x: Node, n: ir.Value,
                c0: ir.Value, xt: ir.Value, v: int, fill: float = 0.0) -> None:
    """xt[(r·pitch + col)·v + k] = x[n, c0 + k, r - top, col - left], ``fill`` outside x: the frame (rows above
    and below x, columns left and right of it) filled, then per input row v columns of the v planes at a time,
    loaded as v vectors and transposed in registers."""
    rows, pitch = padded.rows, padded.pitch
    lo_c, hi_c = min(g.left, pitch), min(g.left + g.w, pitch)
    lo_r, hi_r = min(g.top, rows), min(g.top + g.h, rows)
    vector = ir.VectorType(scalar_type(g), v)
    value = ir.Constant(vector, [fill] * v)
    if lo_r >= hi_r or lo_c >= hi_c:
        _fill_pixels(b, xt, 0, rows * pitch, value, v, "fill")
        return
    _fill_pixels(b, xt, 0, lo_r * pitch, value, v, "fill.top")
    _fill_pixels(b, xt, hi_r * pitch, (rows - hi_r) * pitch, value, v, "fill.bottom")
    with for_range(b, lo_r, hi_r, name="r") as r:
        dst_row = b.mul(r, i64(pitch))
        _fill_pixels(b, xt, dst_row, lo_c, value, v, "fill.left")
        _fill_pixels(b, xt, b.add(dst_row, i64(hi_c)), pitch - hi_c, value, v, "fill.right")
    planes = [c.elem(x, b.mul(b.add(b.mul(n, i64(g.c)), b.add(c0, i64(k))), i64(g.h * g.w))) for k in range(v)]
    if hi_r - lo_r == g.h and hi_c - lo_c == g.w and g.h * g.w <= FLAT_PIXELS and g.w < v:
        _pack_flat(b, g, pitch, lo_r * pitch + lo_c, planes, xt, v)  # every pixel of x lies inside the frame
        return
    with for_range(b, lo_r, hi_r, name="r") as r:
        src_row = b.mul(b.sub(r, i64(g.top)), i64(g.w))
        dst_row = b.mul(r, i64(pitch))

        def columns(col0: ir.Value, count: int) -> None:  # x columns col0 .. col0 + count of this row
            at = b.add(src_row, col0)
            loaded = [load_first(b, b.gep(plane, [at], inbounds=True), vector, count) for plane in planes]
            for j, column in enumerate(transpose_block(b, loaded)[:count]):
                dst = b.add(dst_row, b.add(col0, i64(lo_c + j)))
                b.store(column, vector_at(b, xt, dst, v, vector), align=64)

        chunked(b, hi_c - lo_c, v, columns, "col")


def _pack_flat(b: ir.IRBuilder, g: Geometry, pitch: int, corner: int, planes: list[ir.Value], xt: ir.Value,
               v: int) -> None:
    """Small planes with rows narrower than v: v flat pixels t of the v planes at a time, transposed and stored
    at pixel corner + (t / w)·pitch + t % w of xt (unrolled: static indices)."""
    vector = ir.VectorType(xt.type.pointee, v)
    for t0 in range(0, g.h * g.w, v):
        count = min(v, g.h * g.w - t0)
        loaded = [load_first(b, b.gep(plane, [i64(t0)], inbounds=True), vector, count) for plane in planes]
        for m, column in enumerate(transpose_block(b, loaded)[:count]):
            row, col = divmod(t0 + m, g.w)
            b.store(column, vector_at(b, xt, i64(corner + row * pitch + col), v, vector), align=64)


def output_planes(c: KernelContext, g: Geometry, node: Node, n: ir.Value, c0: ir.Value, v: int) -> list[ir.Value]:
    """Pointers to the block's v planes of y's target (where raw results go before the epilogue)."""
    b = c.builder
    epi = Epilogue.of(c, node)
    target = epi.target() if epi else node
    return [c.elem(target, b.mul(b.add(b.mul(n, i64(g.o)), b.add(c0, i64(k))), i64(g.p))) for k in range(v)]


def store_pixels(b: ir.IRBuilder, planes: Sequence[ir.Value], t0: ir.Value, pixels: Sequence[ir.Value]) -> None:
    """planes[k][t0 + m] = pixels[m][k]: v pixels at a time transposed in registers into the planes."""
    v = len(planes)
    for m0 in range(0, len(pixels), v):
        group = list(pixels[m0:m0 + v])
        count = len(group)
        group += [ir.Constant(group[0].type, None)] * (v - count)
        at = b.add(t0, i64(m0))
        for plane, channel in zip(planes, transpose_block(b, group)):
            store_first(b, channel, b.gep(plane, [at], inbounds=True), count)


def unpack_planes(b: ir.IRBuilder, c: KernelContext, g: Geometry, node: Node, n: ir.Value, c0: ir.Value,
                  yt: ir.Value, v: int) -> None:
    """y[n, c0 + k] at t = epilogue(yt[t·v + k]) for t < Ho·Wo: v outputs of the v channels at a time,
    transposed in registers into the planes of y's target, then the epilogue over each plane."""
    vector = ir.VectorType(scalar_type(g), v)
    planes = output_planes(c, g, node, n, c0, v)

    def outputs(t0: ir.Value, count: int) -> None:
        pixels = [b.load(vector_at(b, yt, b.add(t0, i64(j)), v, vector), align=64) for j in range(count)]
        store_pixels(b, planes, t0, pixels)

    chunked(b, g.p, v, outputs, "t")
    apply_epilogue(c, g, node, n, c0, v)


def apply_epilogue(c: KernelContext, g: Geometry, node: Node, n: ir.Value, c0: ir.Value, v: int) -> None:
    """The fused epilogue (if any) over the block's v output planes of y's target, in place."""
    epi = Epilogue.of(c, node)
    if not epi:
        return
    b = c.builder
    target = epi.target()
    with for_range(b, 0, v, name="k") as k:
        channel = b.add(c0, k)
        plane_at = b.mul(b.add(b.mul(n, i64(g.o)), channel), i64(g.p))
        per_channel = epi.load(b, channel)
        with for_range(b, 0, g.p, name="e") as t:
            epi.store(b, b.load(c.elem(target, b.add(plane_at, t))), b.add(plane_at, t), per_channel)
