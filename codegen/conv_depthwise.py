"""Depthwise convolution on channel blocks: one vector lane per channel, for planes too small to vectorize along.

A depthwise conv (one input and one output channel per group) of 14×14 or 7×7 planes gives a row loop of 14 or 7
elements — less than one 16-lane vector — so the plane-by-plane kernels (``codegen.conv_direct``) spend their time
in scalar remainders. Here V = vector-width channels are computed together (the layout onnxruntime's and oneDNN's
NCHWc kernels keep throughout; here only inside the kernel):

1. pack: the block's V planes, zero-padded as ``conv_direct.Padded`` describes, interleaved into scratch
   ``xt[(r·pitch + c)·V + v]`` (every window then lies inside; no bounds tests below);
2. compute, per output pixel (i, j): acc = b[c0:c0+V] + Σ_{p,q} w[c0:c0+V, p, q] · xt[(i·sh + p·dh)·pitch +
   j·sw + q·dw] — whole-vector FMAs (``llvm.fma``, in the order p, q as every other conv path), into
   ``yt[(i·Wo + j)·V + v]``;
3. unpack: per channel, a flat loop over its Ho·Wo outputs applies the fused epilogue and stores y's plane.

Chunks are (image, block) pairs; channels past the last full block run on the plane kernels.
"""

from __future__ import annotations

from collections.abc import Callable

import llvmlite.ir as ir

from codegen.conv_direct import FLAT_SCRATCH_BYTES, Padded, fma, scalar_type
from codegen.conv_geometry import Geometry, zero_fill
from codegen.epilogue import Epilogue
from codegen.gemm.config import host_vector_bits
from codegen.gemm.microkernel import lane_mask
from codegen.gemm.pack import transpose_block
from codegen.llvm import F32, I1, I32, PTR, VOID, for_range, i64, intrinsic
from codegen.lowering import KernelContext
from graphc.ir import Node

SHORT_ROWS = 2  # blocks beat the plane kernels while an output row is shorter than this many vectors (measured)


def lanes(g: Geometry) -> int:
    """Channels per block: one host vector of the dtype."""
    return host_vector_bits() // (8 * g.itemsize)


def blocked_applies(g: Geometry) -> bool:
    """Depthwise with multiplier 1, at least one full block of channels, scratch in budget, and rows the plane
    kernels do poorly: shorter than SHORT_ROWS vectors, or strided (the flat kernel computes sw× the positions).
    Measured (one thread, float32, AVX-512, ms, plane kernel → blocks): 672 ch 14×14 5×5 0.36 → 0.14, 192 ch
    28×28 3×3 0.18 → 0.10, 96 ch 112×112 stride 2 0.45 → 0.31; but 32 ch 112×112 stride 1 0.24 → 0.28."""
    v = lanes(g)
    padded = Padded.of(g)
    scratch = (padded.rows * padded.pitch + g.p) * v * g.itemsize
    short = g.wo < SHORT_ROWS * v or g.sw > 1
    return g.cg == 1 and g.og == 1 and g.c >= v and short and scratch <= FLAT_SCRATCH_BYTES


Combine = Callable[[ir.Value, int, ir.Value], ir.Value]  # (acc, tap index p·kw + q, pixel vector) -> acc
Prepare = Callable[[KernelContext, ir.Value], tuple[ir.Value, Combine]]  # (ctx, first channel) -> (start, combine)


def run_blocks(ctx: KernelContext, node: Node, g: Geometry, x: Node, fill: float, prepare: Prepare) -> int:
    """The channel-block kernel over every (image, block of V channels): pack the block's planes (``fill``
    outside x), then per output pixel acc = start, combined with each window tap's V-channel vector in the order
    (p, q), then unpack into y's planes. ``prepare(ctx, c0)`` gives the block's start vector and combine step.
    Returns how many channels of each image it covers (whole blocks)."""
    v = lanes(g)
    blocks = g.c // v
    padded = Padded.of(g)
    scalar = scalar_type(g)
    vector = ir.VectorType(scalar, v)

    def block(c: KernelContext, index: ir.Value) -> None:
        b = c.builder
        n, blk = b.udiv(index, i64(blocks)), b.urem(index, i64(blocks))
        c0 = b.mul(blk, i64(v))
        size = padded.rows * padded.pitch
        xt = c.scratch((size + g.p) * v * g.itemsize, scalar)
        yt = b.gep(xt, [i64(size * v)], inbounds=True)
        pack_planes(b, c, g, padded, x, n, c0, xt, v, fill=fill)
        start, combine = prepare(c, c0)
        with for_range(b, 0, g.ho, name="i") as i, for_range(b, 0, g.wo, name="j") as j:
            base = b.add(b.mul(b.mul(i, i64(g.sh)), i64(padded.pitch)), b.mul(j, i64(g.sw)))
            acc = start
            for p in range(g.kh):
                for q in range(g.kw):
                    at = b.mul(b.add(base, i64(p * g.dh * padded.pitch + q * g.dw)), i64(v))
                    pixel = b.load(b.bitcast(b.gep(xt, [at], inbounds=True), vector.as_pointer()), align=64)
                    acc = combine(acc, p * g.kw + q, pixel)
            out_at = b.mul(b.add(b.mul(i, i64(g.wo)), j), i64(v))
            b.store(acc, b.bitcast(b.gep(yt, [out_at], inbounds=True), vector.as_pointer()), align=64)
        unpack_planes(b, c, g, node, n, c0, yt, v)

    ctx.parallel("blocks", g.n * blocks, block)
    return blocks * v


def forward_blocks(ctx: KernelContext, node: Node, g: Geometry, x: Node, w: Node, bias: Node | None) -> int:
    """y = conv(x, w) (+ b) on channel blocks: acc = b[c0:c0+V], then acc = fma(w[c0:c0+V, p, q], pixel, acc);
    returns how many channels it covers."""
    v = lanes(g)
    vector = ir.VectorType(scalar_type(g), v)

    def prepare(c: KernelContext, c0: ir.Value) -> tuple[ir.Value, Combine]:
        b = c.builder
        taps = [_gather(b, c.elem(w, b.mul(c0, i64(g.kh * g.kw))), t, g.kh * g.kw, v, vector)
                for t in range(g.kh * g.kw)]
        start = ir.Constant(vector, None) if bias is None else \
            b.load(b.bitcast(c.elem(bias, c0), vector.as_pointer()), align=g.itemsize)
        return start, lambda acc, tap, pixel: fma(b, taps[tap], pixel, acc)

    return run_blocks(ctx, node, g, x, 0.0, prepare)


def _gather(b: ir.IRBuilder, first: ir.Value, tap: int, stride: int, v: int, vector: ir.VectorType) -> ir.Value:
    """The vector (first[tap + k·stride] for k < v): one weight tap of v consecutive channels."""
    out = ir.Constant(vector, None)
    for k in range(v):
        out = b.insert_element(out, b.load(b.gep(first, [i64(tap + k * stride)], inbounds=True)), ir.Constant(I32, k))
    return out


def _masked(b: ir.IRBuilder, name: str, vector: ir.VectorType) -> ir.Function:
    suffix = f"v{vector.count}{'f32' if vector.element == F32 else 'f64'}"
    mask = ir.VectorType(I1, vector.count)
    if name == "load":
        return intrinsic(b.module, f"llvm.masked.load.{suffix}.p0", vector, [PTR, I32, mask, vector])
    return intrinsic(b.module, f"llvm.masked.store.{suffix}.p0", VOID, [vector, PTR, I32, mask])


def _itemsize(vector: ir.VectorType) -> int:
    return 4 if vector.element == F32 else 8


def _load(b: ir.IRBuilder, ptr: ir.Value, vector: ir.VectorType, count: int) -> ir.Value:
    """The first ``count`` elements at ``ptr`` as a vector (zero lanes past them; nothing past them is read)."""
    if count == vector.count:
        return b.load(b.bitcast(ptr, vector.as_pointer()), align=_itemsize(vector))
    return b.call(_masked(b, "load", vector), [b.bitcast(ptr, PTR), ir.Constant(I32, _itemsize(vector)),
                                              lane_mask(count, vector.count), ir.Constant(vector, None)])


def _store(b: ir.IRBuilder, value: ir.Value, ptr: ir.Value, count: int) -> None:
    """Store the first ``count`` lanes of ``value`` at ``ptr`` (nothing past them is written)."""
    vector = value.type
    if count == vector.count:
        b.store(value, b.bitcast(ptr, vector.as_pointer()), align=_itemsize(vector))
        return
    b.call(_masked(b, "store", vector), [value, b.bitcast(ptr, PTR), ir.Constant(I32, _itemsize(vector)),
                                         lane_mask(count, vector.count)])


def _chunked(b: ir.IRBuilder, total: int, v: int, body: Callable[[ir.Value, int], None], name: str) -> None:
    """body(start, count) over [0, total) in chunks of v: full chunks in a loop, then the partial one."""
    full = total // v
    if full:
        with for_range(b, 0, full * v, v, name=name) as start:
            body(start, v)
    if total % v:
        body(i64(full * v), total % v)


def pack_planes(b: ir.IRBuilder, c: KernelContext, g: Geometry, padded: Padded, x: Node, n: ir.Value,
                c0: ir.Value, xt: ir.Value, v: int, fill: float = 0.0) -> None:
    """xt[(r·pitch + col)·v + k] = x[n, c0 + k, r - top, col - left], ``fill`` outside x: per input row, v columns
    of the v planes at a time, loaded as v vectors and transposed in registers."""
    lo_c, hi_c = min(g.left, padded.pitch), min(g.left + g.w, padded.pitch)
    lo_r, hi_r = min(g.top, padded.rows), min(g.top + g.h, padded.rows)
    if lo_r > 0 or hi_r < padded.rows or lo_c > 0 or hi_c < padded.pitch or lo_c >= hi_c:
        if fill == 0.0:
            zero_fill(b, xt, padded.rows * padded.pitch * v)
        else:
            value = ir.Constant(scalar_type(g), fill)
            with for_range(b, 0, padded.rows * padded.pitch * v, name="fill") as k:
                b.store(value, b.gep(xt, [k], inbounds=True))
    if lo_r >= hi_r or lo_c >= hi_c:
        return
    vector = ir.VectorType(scalar_type(g), v)
    planes = [c.elem(x, b.mul(b.add(b.mul(n, i64(g.c)), b.add(c0, i64(k))), i64(g.h * g.w))) for k in range(v)]
    with for_range(b, lo_r, hi_r, name="r") as r:
        src_row = b.mul(b.sub(r, i64(g.top)), i64(g.w))

        def columns(col0: ir.Value, count: int) -> None:  # x columns col0 .. col0 + count of this row
            at = b.add(src_row, col0)
            rows = [_load(b, b.gep(plane, [at], inbounds=True), vector, count) for plane in planes]
            for j, column in enumerate(transpose_block(b, rows)[:count]):
                dst = b.mul(b.add(b.mul(r, i64(padded.pitch)), b.add(col0, i64(g.left + j))), i64(v))
                b.store(column, b.bitcast(b.gep(xt, [dst], inbounds=True), vector.as_pointer()), align=64)

        _chunked(b, hi_c - lo_c, v, columns, "col")


def unpack_planes(b: ir.IRBuilder, c: KernelContext, g: Geometry, node: Node, n: ir.Value, c0: ir.Value,
                  yt: ir.Value, v: int) -> None:
    """y[n, c0 + k] at t = epilogue(yt[t·v + k]) for t < Ho·Wo: v outputs of the v channels at a time,
    transposed in registers into the planes of y's target, then the epilogue over each plane."""
    epi = Epilogue.of(c, node)
    target = epi.target() if epi else node
    vector = ir.VectorType(scalar_type(g), v)
    planes = [c.elem(target, b.mul(b.add(b.mul(n, i64(g.o)), b.add(c0, i64(k))), i64(g.p))) for k in range(v)]

    def outputs(t0: ir.Value, count: int) -> None:
        rows = [b.load(b.bitcast(b.gep(yt, [b.mul(b.add(t0, i64(j)), i64(v))], inbounds=True),
                                 vector.as_pointer()), align=64) if j < count else ir.Constant(vector, None)
                for j in range(v)]
        for plane, channel in zip(planes, transpose_block(b, rows)):
            _store(b, channel, b.gep(plane, [t0], inbounds=True), count)

    _chunked(b, g.p, v, outputs, "t")
    if not epi:
        return
    with for_range(b, 0, v, name="k") as k:
        channel = b.add(c0, k)
        plane_at = b.mul(b.add(b.mul(n, i64(g.o)), channel), i64(g.p))
        per_channel = epi.load(b, channel)
        with for_range(b, 0, g.p, name="e") as t:
            epi.store(b, b.load(c.elem(target, b.add(plane_at, t))), b.add(plane_at, t), per_channel)
