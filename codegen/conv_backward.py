"""Lowering of conv2d's two gradients on the im2col columns (see :mod:`codegen.conv` for the geometry and the
index map):

- input gradient: cols[g] = W[g]ᵀ · ḡ[n, g] (``trans_a``), then col2im scatters cols back (the adjoint of im2col:
  the same index map, ``+=`` instead of a copy) into dx[n], zeroed first; pointwise convs: dx[n] = Wᵀ · ḡ[n];
- weight gradient: dw[g] += ḡ[n, g] (Og × P) · cols[g]ᵀ (``trans_b``, ``accumulate``), summed over the images of
  a slab, then the slabs in order — or dw[g]ᵀ += cols[g] · ḡ[n, g]ᵀ into scratch, transposed at the end, when that
  shape fills the GEMM's register tiles better (1→32 channels 3×3: a 9 × 32 instead of a 32 × 9 output).

Both keep the explicit columns (the forward's implicit packing is forward-only) and the same scratch bounds as the
forward: one image at a time, blocks of whole output rows when its columns exceed the budget.
"""

from __future__ import annotations

import llvmlite.ir as ir

import codegen.conv_direct as conv_direct
import codegen.loops as loops
from codegen.conv import algorithm_of, col2im, im2col
from codegen.conv_gemm import conv_gemm, copy_rows, images, row_blocks, scratch, tile_use
from codegen.conv_geometry import SCRATCH_BYTES, Geometry, geometry, zero_fill
from codegen.llvm import for_range, i64
from codegen.lowering import KernelContext, lowerer
from graphc.ir import Node

MAX_SLABS = 32  # partial weight gradients at most (see weight_gradient_slabs)
PARTIALS_BYTES = 8 << 20  # and at most this much memory for them


def _backward_scratch(ctx: KernelContext, g: Geometry, dtype: str) -> tuple[ir.Value, ir.Value | None]:
    """Scratch of the two backward lowerers: the im2col block, and a block of ḡ's rows (None when one block
    covers the whole image, so ḡ[n] is used where it lies)."""
    rows = g.block_rows()
    cols = scratch(ctx, dtype, g.k * rows * g.wo)
    gblock = None if rows == g.ho else scratch(ctx, dtype, g.o * rows * g.wo)
    return cols, gblock


def _grad_rows(b: ir.IRBuilder, g: Geometry, g_n: ir.Value, gblock: ir.Value | None, row0: ir.Value,
               pb: int) -> ir.Value:
    """ḡ[n]'s output rows row0 .. row0 + pb/Wo as a contiguous (O, pb) block."""
    if gblock is None:
        return g_n
    copy_rows(b, g.o, pb, b.gep(g_n, [b.mul(row0, i64(g.wo))], inbounds=True), g.p, gblock, pb)
    return gblock


@lowerer("conv2d_backward_input")
def lower_conv2d_backward_input(ctx: KernelContext) -> None:
    """dx = convᵀ(ḡ, w): per image, dx[n] = 0, cols = Wᵀ · ḡ[n], then col2im into dx[n] (pointwise convs: dx[n] =
    Wᵀ · ḡ[n] directly)."""
    (node,) = ctx.kernel.nodes
    gy, w = node.inputs
    algorithm, g = algorithm_of(geometry(node.shape, w.shape, gy.shape, node.attrs, node.dtype), node)
    if node.size == 0 or gy.size == 0:
        zero_fill(ctx.builder, ctx.ptr(node), node.size)
        return
    if algorithm == "direct":
        conv_direct.backward_input(ctx, node, g, gy, w)
        return

    def image(c: KernelContext, n: ir.Value) -> None:
        b = c.builder
        g_n = c.elem(gy, b.mul(n, i64(g.o * g.p)))
        dx_n = c.elem(node, b.mul(n, i64(g.c * g.h * g.w)))
        if g.pointwise:  # dx[n] = Wᵀ · ḡ[n]: no columns, no col2im, every element written once
            gemm = conv_gemm(c, "bwdx1", g, g.kg, g.p, g.og, node.dtype, (g.og * g.kg, g.og * g.p, g.kg * g.p),
                         trans_a=True)
            gemm(c.ptr(w), g_n, dx_n)
            return
        cols, gblock = _backward_scratch(c, g, node.dtype)
        zero_fill(b, dx_n, g.c * g.h * g.w)

        def block(row0: ir.Value, r: int) -> None:
            pb = r * g.wo
            src = _grad_rows(b, g, g_n, gblock, row0, pb)
            gemm = conv_gemm(c, "bwdx", g, g.kg, pb, g.og, node.dtype, (g.og * g.kg, g.og * pb, g.kg * pb),
                         trans_a=True)
            gemm(c.ptr(w), src, cols)
            col2im(b, g, cols, dx_n, row0, r)

        row_blocks(b, g, block)

    images(ctx, g, image)


def transposed_weight_gradient(g: Geometry, dtype: str) -> bool:
    """Whether dwᵀ = cols · ḡᵀ (Kg × Og per group, into scratch, transposed at the end) fills the GEMM tiles
    better than dw = ḡ · colsᵀ (Og × Kg): e.g. 1→32 channels 3×3 gives a 32 × 9 dw, a poor fit for 32-wide
    panels. Only when the weights fit the scratch budget (a quarter of it)."""
    small = g.o * g.kg * g.itemsize <= SCRATCH_BYTES // 4
    return small and tile_use(g.kg, g.og, dtype) > tile_use(g.og, g.kg, dtype)


def weight_gradient_slabs(g: Geometry) -> int:
    """How many partial weight gradients the images are summed into (consecutive images per slab, then the slabs
    added in order): from the sizes only, so that every thread count computes the same sums."""
    dw_bytes = g.o * g.kg * g.itemsize
    return max(1, min(g.n, MAX_SLABS, PARTIALS_BYTES // max(dw_bytes, 1)))


@lowerer("conv2d_backward_weight")
def lower_conv2d_backward_weight(ctx: KernelContext) -> None:
    """dw = Σ_slabs Σ_{n in slab} ḡ[n] · im2col(x[n])ᵀ per group (or its transpose, see
    ``transposed_weight_gradient``), each slab's images accumulated by the GEMM into the slab's partial, the
    partials then added in slab order (one slab: straight into dw). Slabs run in parallel when there are at least
    as many as threads, else one after the other with the GEMMs on the threads."""
    (node,) = ctx.kernel.nodes
    x, gy = node.inputs
    algorithm, g = algorithm_of(geometry(x.shape, node.shape, gy.shape, node.attrs, node.dtype), node)
    b = ctx.builder
    if node.size == 0 or gy.size == 0:
        zero_fill(b, ctx.ptr(node), node.size)
        return
    if algorithm == "direct":
        conv_direct.backward_weight(ctx, node, g, x, gy)
        return
    flip = transposed_weight_gradient(g, node.dtype)
    slabs = weight_gradient_slabs(g)
    per = -(-g.n // slabs)
    slabs = -(-g.n // per)
    direct = slabs == 1 and not flip
    partials = ctx.ptr(node) if direct else scratch(ctx, node.dtype, slabs * node.size)

    def slab(c: KernelContext, s: ir.Value, partials: ir.Value) -> None:
        b = c.builder
        acc = b.gep(partials, [b.mul(s, i64(node.size))], inbounds=True)
        zero_fill(b, acc, node.size)
        cols, gblock = (None, None) if g.pointwise else _backward_scratch(c, g, node.dtype)
        first = b.mul(s, i64(per))
        last = b.select(b.icmp_signed("<", b.add(first, i64(per)), i64(g.n)), b.add(first, i64(per)), i64(g.n))
        with for_range(b, first, last, name="n") as n:
            g_n = c.elem(gy, b.mul(n, i64(g.o * g.p)))
            image = c.elem(x, b.mul(n, i64(g.c * g.h * g.w)))

            def block(row0: ir.Value, r: int) -> None:
                pb = r * g.wo
                if g.pointwise:  # the columns are x[n] itself: one GEMM over all P positions
                    if flip:
                        gemm = conv_gemm(c, "bwdwt1", g, g.kg, g.og, g.p, node.dtype,
                                         (g.kg * g.p, g.og * g.p, g.og * g.kg), trans_b=True, accumulate=True)
                        gemm(image, g_n, acc)
                    else:
                        gemm = conv_gemm(c, "bwdw1", g, g.og, g.kg, g.p, node.dtype,
                                         (g.og * g.p, g.kg * g.p, g.og * g.kg), trans_b=True, accumulate=True)
                        gemm(g_n, image, acc)
                    return
                im2col(b, g, image, cols, row0, r)
                src = _grad_rows(b, g, g_n, gblock, row0, pb)
                if flip:
                    gemm = conv_gemm(c, "bwdwt", g, g.kg, g.og, pb, node.dtype, (g.kg * pb, g.og * pb, g.og * g.kg),
                                 trans_b=True, accumulate=True)
                    gemm(cols, src, acc)
                else:
                    gemm = conv_gemm(c, "bwdw", g, g.og, g.kg, pb, node.dtype, (g.og * pb, g.kg * pb, g.og * g.kg),
                                 trans_b=True, accumulate=True)
                    gemm(src, cols, acc)

            if g.pointwise:
                block(i64(0), g.ho)
            else:
                row_blocks(b, g, block)

    if ctx.threads > 1 and slabs >= ctx.threads:
        ctx.parallel("slabs", slabs, slab, shared=[partials])
    else:
        with for_range(b, 0, slabs, name="slab") as s:
            slab(ctx, s, partials)
    if not direct:
        _add_partials(ctx, g, node, partials, slabs, flip)


def _add_partials(ctx: KernelContext, g: Geometry, node: Node, partials: ir.Value, slabs: int, flip: bool) -> None:
    """dw[grp, o, k] = Σ_s partial_s[grp, o, k] (or partial_s[grp, k, o] when flipped), s in order."""
    size = node.size
    strides = [(g.og * g.kg, g.kg, 1), (g.og * g.kg, 1, g.og) if flip else (g.og * g.kg, g.kg, 1)]

    def body(c: KernelContext, b: ir.IRBuilder, offs: list[ir.Value], _idx: list[ir.Value], parts: ir.Value) -> None:
        total = b.load(b.gep(parts, [offs[1]], inbounds=True))
        for s in range(1, slabs):
            total = b.fadd(total, b.load(b.gep(parts, [b.add(offs[1], i64(s * size))], inbounds=True)))
        b.store(total, c.elem(node, offs[0]))

    loops.parallel_nest(ctx, (g.groups, g.og, g.kg), strides, body, name="partials", grain=loops.GRAIN // slabs,
                        shared=[partials])


