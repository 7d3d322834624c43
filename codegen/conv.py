"""Lowering of conv2d (forward) on a GEMM: implicit or explicit im2col; the gradients are in
:mod:`codegen.conv_backward`, on the same index map.

Geometry (static): x (N, C, H, W), w (O, C/G, kh, kw), y (N, O, Ho, Wo), stride (sh, sw), dilation (dh, dw), pads
(top, left, ...), G groups; per group Cg = C/G input and Og = O/G output channels, Kg = Cg·kh·kw, P = Ho·Wo.

im2col of image n, output rows [r0, r0 + R): ``cols[k, r·Wo + j] = x[n, c, hi, wi]`` with k = (c·kh + p)·kw + q,
hi = (r0 + r)·sh + p·dh - top, wi = j·sw + q·dw - left, and 0 where (hi, wi) is outside x. Per (c, p, q, r) the
row is written as three runs — zeros for j < j_lo, a strided copy for j_lo ≤ j < j_hi, zeros after — with
j_lo = ⌈(left - q·dw)/sw⌉⁺ and j_hi = min(Wo, ⌈(W + left - q·dw)/sw⌉⁺), so every index read is inside x by
construction (no per-element bounds test). Group g's rows of cols are the contiguous block [g·Kg, (g+1)·Kg).

- forward:  y[n, g] = W[g] (Og × Kg) · cols[g] (Kg × P)  — a GEMM batched over groups, then + b[o] and a fused
  elementwise epilogue (``codegen.epilogue``: relu, a per-channel add, ...) in the same pass over the output rows;
  where the GEMM writes y itself and the epilogue is a bias, a residual, relu and clip, the micro-kernels apply
  it on their registers at the store instead (``codegen.gemm.store_epilogue``: no pass);
- input gradient: cols[g] = W[g]ᵀ · ḡ[n, g] (``trans_a``), then col2im scatters cols back (the adjoint of im2col:
  the same index map, ``+=`` instead of a copy) into dx[n], zeroed first;
- weight gradient: dw[g] += ḡ[n, g] (Og × P) · cols[g]ᵀ (``trans_b``, ``accumulate``), summed over n — or
  dw[g]ᵀ += cols[g] · ḡ[n, g]ᵀ into scratch, transposed at the end, when that shape fills the GEMM's register
  tiles better (1→32 channels 3×3: a 9 × 32 instead of a 32 × 9 output; 5.8 ms → 1.1 ms on the benchmark layer).

The forward's default is "implicit" (``codegen.conv_choice``): the same GEMM without the columns — the GEMM's
B-block packer (``codegen.conv_pack``) writes its nr-wide panels straight from the image with the index map above
(masked vector loads; stride > 1 reads the image's column phases, split once into scratch), one GEMM per image over
all P pixels, then bias and epilogue over y[n] (``codegen.conv_implicit``). Where that fills the register tiles
clearly better (``transposed_implicit``: ResNet's 7×7 layers) it computes yᵀ = colsᵀ · Wᵀ instead, the A
micro-panels packed from the image, its micro-kernels storing each tile into y transposed at the last depth block (a
transposed C, ``codegen.gemm.transpose``), bias and epilogue on their registers. Each column element is written and
read once instead of twice; the products and their order are those of im2col + GEMM (bitwise the same result in the
same orientation). Measured (one thread, batch 1, Zen 4, 117 GFLOP/s FMA peak; medians of interleaved rounds of
thread CPU time on a shared machine): ResNet-18's 64-channel 56×56 3×3 layer 2.64 → 2.26 ms (75 → 87 % of peak;
onnxruntime 2.05 ms), 128-channel 28×28 2.50 → 2.23 ms, 256-channel 14×14 2.66 → 2.31 ms, the 7×7 stem 3.18 → 2.34
ms (63 → 86 %); the 7×7 layers stay near 2.7 ms (~73 %): the weights' transposed packing, streamed from L3, is what
is left there (frozen programs pack the weights once at load, ``codegen.prepack``: 7×7 layer 2.67 → 2.31 ms). The
gradients keep the explicit columns (:mod:`codegen.conv_backward`).

Scratch (the program's planned scratch buffer, ``KernelContext.scratch``, never the stack) is bounded: one image
at a time, and when its columns exceed 1 MiB, blocks of whole output rows (then the GEMM's strided operand — y,
ḡ — goes through a second scratch block and a copy); a geometry whose single output row needs more than 4 MiB is
a LoweringError.

Measured (batch 64, float32, one thread, on a shared 2-core machine, so ±30 %; A/B runs in one process):
on the CNN benchmark layers 1→32 3×3 pad 1 on 28×28 and 32→64 3×3 pad 1 on 14×14, im2col + GEMM took 1.2 ms and
17 ms, a direct loop nest (``y[i, j] += w·x[hi, wi]`` over the same valid ranges, vectorized over j) 7.3 ms and
115 ms — so im2col + GEMM is the one path here (the direct nest was removed). The 32→64 forward is about 1.5-1.8×
the time of OpenBLAS on its 64 per-image GEMMs alone; the rest is im2col plus the GEMM's own packing of cols.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import llvmlite.ir as ir

import codegen.conv_choice as conv_choice
import codegen.conv_depthwise as conv_depthwise
import codegen.conv_direct as conv_direct
import codegen.prepack as prepack
from codegen.conv_gemm import (
    FLIP_GAIN,
    conv_gemm,
    copy_rows,
    epilogue_rows,
    images,
    prepacked,
    row_blocks,
    scratch,
    tile_use,
)
from codegen.conv_geometry import SCRATCH_BYTES, Geometry, geometry, zero_range
from codegen.conv_implicit import implicit_forward
from codegen.epilogue import Epilogue
from codegen.gemm.config import default_config, host_vector_bits
from codegen.gemm.skinny import SKINNY_ROWS
from codegen.llvm import for_range, i64
from codegen.lowering import KernelContext, lowerer
from codegen.scalar import FAST
from graphc.ir import Node

FLIP_MAX_POSITIONS = 128  # transposed forward products only for this few output positions (see transposed_forward)


def _ceil_pos(b: ir.IRBuilder, a: ir.Value, s: int) -> ir.Value:
    """max(⌈a / s⌉, 0) for s > 0 (as i64)."""
    up = b.sdiv(b.add(a, i64(s - 1)), i64(s))
    return b.select(b.icmp_signed(">", a, i64(0)), up, i64(0))


def _clamp(b: ir.IRBuilder, v: ir.Value, lo: ir.Value, hi: int) -> ir.Value:
    v = b.select(b.icmp_signed("<", v, lo), lo, v)
    return b.select(b.icmp_signed(">", v, i64(hi)), i64(hi), v)


Visit = Callable[[ir.IRBuilder, ir.Value, ir.Value], None]  # (builder, x offset in the image, cols pointer)


def _windows(b: ir.IRBuilder, g: Geometry, cols: ir.Value, row0: ir.Value, rows: int, visit: Visit,
             pad: bool) -> None:
    """The index map shared by im2col and col2im over output rows [row0, row0 + rows): for every cols row
    (c, p, q) and output row r, ``visit(b, x_offset, cols_pointer)`` for each valid j in [j_lo, j_hi); with
    ``pad`` the invalid runs of cols are zeroed (im2col) — col2im skips them."""
    ld = rows * g.wo
    with for_range(b, 0, g.c, name="c") as c, for_range(b, 0, g.kh, name="p") as p, \
            for_range(b, 0, g.kw, name="q") as q:
        k = b.add(b.mul(b.add(b.mul(c, i64(g.kh)), p), i64(g.kw)), q)
        shift = b.sub(i64(g.left), b.mul(q, i64(g.dw)))  # wi = j·sw - shift
        j_lo = _clamp(b, _ceil_pos(b, shift, g.sw), i64(0), g.wo)
        j_hi = _clamp(b, _ceil_pos(b, b.add(shift, i64(g.w)), g.sw), j_lo, g.wo)
        plane = b.mul(c, i64(g.h * g.w))
        with for_range(b, 0, rows, name="r") as r:
            hi = b.sub(b.add(b.mul(b.add(row0, r), i64(g.sh)), b.mul(p, i64(g.dh))), i64(g.top))
            ok = b.and_(b.icmp_signed(">=", hi, i64(0)), b.icmp_signed("<", hi, i64(g.h)))
            lo_ = b.select(ok, j_lo, i64(g.wo))
            hi_ = b.select(ok, j_hi, i64(g.wo))
            row = b.gep(cols, [b.add(b.mul(k, i64(ld)), b.mul(r, i64(g.wo)))], inbounds=True)
            base = b.sub(b.add(plane, b.mul(b.select(ok, hi, i64(0)), i64(g.w))), shift)
            if pad:
                zero_range(b, row, 0, lo_)
            with for_range(b, lo_, hi_, name="j") as j:
                visit(b, b.add(base, b.mul(j, i64(g.sw))), b.gep(row, [j], inbounds=True))
            if pad:
                zero_range(b, row, hi_, g.wo)


def im2col(b: ir.IRBuilder, g: Geometry, image: ir.Value, cols: ir.Value, row0: ir.Value, rows: int) -> None:
    """cols (K × rows·Wo) = the receptive fields of output rows [row0, row0 + rows) of ``image`` (C, H, W)."""
    _windows(b, g, cols, row0, rows, lambda b, off, dst: b.store(b.load(b.gep(image, [off], inbounds=True)), dst),
             pad=True)


def col2im(b: ir.IRBuilder, g: Geometry, cols: ir.Value, image: ir.Value, row0: ir.Value, rows: int) -> None:
    """image (C, H, W) += the adjoint of im2col applied to cols (K × rows·Wo)."""

    def add(b: ir.IRBuilder, off: ir.Value, src: ir.Value) -> None:
        ptr = b.gep(image, [off], inbounds=True)
        b.store(b.fadd(b.load(ptr), b.load(src), flags=FAST), ptr)

    _windows(b, g, cols, row0, rows, add, pad=False)


def algorithm_of(g: Geometry, node: Node) -> tuple[str, Geometry]:
    """The algorithm for this gradient node ("pointwise", "direct" or "im2col", see
    ``conv_direct.choose_algorithm``; the gradients have no "implicit" form: a forced "implicit" runs them on
    im2col) and the geometry to run it with (x itself as the GEMM operand only for "pointwise")."""
    requested = node.attrs.get("algorithm", "auto")
    algorithm = conv_direct.choose_algorithm(g, "im2col" if requested == "implicit" else requested)
    return algorithm, (g if algorithm == "pointwise" else dataclasses.replace(g, gemm_on_x=False))


@lowerer("conv2d")
def lower_conv2d(ctx: KernelContext) -> None:
    """y = conv2d(x, w) (+ b): per image, im2col then W · cols (see the module docstring). With several threads
    the images run in parallel when there are at least as many as threads (each with its own columns and a
    one-thread GEMM), else their blocks of output rows when there are enough of those, else one image after the
    other with the GEMM itself parallel. Every output element is the same chain of FMAs in each case."""
    node = ctx.kernel.anchor
    x, w = node.inputs[:2]
    bias = node.inputs[2] if len(node.inputs) == 3 else None
    g = geometry(x.shape, w.shape, node.shape, node.attrs, node.dtype)
    algorithm = conv_choice.forward_algorithm(node, g, ctx.threads, ctx.algorithms)
    if algorithm != "pointwise":
        g = dataclasses.replace(g, gemm_on_x=False)
    if node.size == 0:
        return
    if algorithm == "direct":
        blocked = conv_depthwise.forward_blocks(ctx, node, g, x, w, bias) if conv_depthwise.blocked_applies(g) else 0
        conv_direct.forward(ctx, node, g, x, w, bias, first_channel=blocked)
        return
    if algorithm in ("implicit", "indirect"):
        implicit_forward(ctx, node, g, x, w, bias, indirect=algorithm == "indirect")
        return

    rows = g.block_rows()
    flip = rows == g.ho and transposed_forward(g, node.dtype)
    cfg = default_config(node.dtype, host_vector_bits())
    # a constant W packed at compile time (codegen.prepack): as B of the transposed product, else as A (not for
    # GEMMs of so few rows that they run unpacked, codegen.gemm.skinny)
    packed = (flip or g.og > SKINNY_ROWS) and prepacked(
        ctx, w, prepack.spec_b(cfg, 1, g.k, g.o, trans=True) if flip else prepack.spec_a(cfg, g.groups, g.og, g.kg))
    pack_w = {"pack_b": prepack.packer_b(cfg, g.o)} if packed and flip else \
        {"pack_a": prepack.packer_a(cfg, g.og)} if packed else {}
    tag = "p" if packed else ""

    def blocks_of(c: KernelContext, n: ir.Value) -> Callable[[ir.Value, int], None]:
        """Set up image n (its scratch, pointers); returns block(row0, r), which computes output rows
        row0 .. row0 + r of it: im2col, GEMM, bias and epilogue."""
        b = c.builder
        epi = Epilogue.of(c, node)
        target = epi.target() if epi else node  # the GEMM's destination: an output of y's shape
        single = rows == g.ho or g.pointwise  # pointwise: the GEMM reads x and writes y in place, block by block
        # bias and epilogue on the micro-kernels' registers where the GEMM writes y itself (not scratch); the
        # transposed product's output channels are its columns
        form = epi.store_form("col" if flip else "row", bias) if single else None
        cols = None if g.pointwise else scratch(c, node.dtype, g.k * rows * g.wo)
        out = None if single else scratch(c, node.dtype, g.o * rows * g.wo)
        bias_ptr = None if bias is None else c.ptr(bias)
        pixels = c.elem(x, b.mul(n, i64(g.c * g.h * g.w)))
        y_base = b.mul(n, i64(g.o * g.p))
        y_n = c.elem(target, y_base)

        def block(row0: ir.Value, r: int) -> None:
            pb = r * g.wo
            if g.pointwise and not flip:  # y[n][:, block] = W · x[n][:, block], both with row stride P
                at = b.mul(row0, i64(g.wo))
                here = b.gep(y_n, [at], inbounds=True)
                gemm = conv_gemm(c, "fwd1" + tag, g, g.og, pb, g.kg, node.dtype, (g.og * g.kg, g.kg * g.p, g.og * g.p),
                             lds=(g.kg, g.p, g.p), form=form, **pack_w)
                gemm(c.ptr(w), b.gep(pixels, [at], inbounds=True), here, store_at=b.add(y_base, at))
                if form:
                    return
                if epi:
                    epilogue_rows(b, epi, g, here, g.p, b.add(y_base, at), pb, bias_ptr)
                elif bias_ptr is not None:
                    copy_rows(b, g.o, pb, here, g.p, here, g.p, bias_ptr)
                return
            if not g.pointwise:
                im2col(b, g, pixels, cols, row0, r)
            if flip:  # yᵀ = colsᵀ · Wᵀ (P × O, one block), its micro-kernels storing y itself (a transposed C)
                gemm = conv_gemm(c, "fwdt" + tag, g, g.p, g.o, g.k, node.dtype, (0, 0, 0), lds=(g.p, g.k, g.p),
                                 trans_a=True, trans_b=True, trans_c=True, form=form, **pack_w)
                gemm(pixels if g.pointwise else cols, c.ptr(w), y_n, store_at=y_base)
            else:
                gemm = conv_gemm(c, "fwd" + tag, g, g.og, pb, g.kg, node.dtype, (g.og * g.kg, g.kg * pb, g.og * pb),
                                 form=form, **pack_w)
                gemm(c.ptr(w), cols, y_n if single else out, store_at=y_base)
            if form:
                return
            if epi:
                src, src_ld = (y_n, g.p) if single else (out, pb)
                epilogue_rows(b, epi, g, src, src_ld, b.add(y_base, b.mul(row0, i64(g.wo))), pb, bias_ptr)
            elif single and bias_ptr is not None:
                copy_rows(b, g.o, g.p, y_n, g.p, y_n, g.p, bias_ptr)
            elif not single:
                copy_rows(b, g.o, pb, out, pb, b.gep(y_n, [b.mul(row0, i64(g.wo))], inbounds=True), g.p, bias_ptr)

        return block

    full, rem = divmod(g.ho, rows)
    nblocks = full + (1 if rem else 0)
    if 1 < ctx.threads and g.n < ctx.threads <= g.n * nblocks:  # few images, big ones: their row blocks in parallel

        def image_block(c: KernelContext, index: ir.Value) -> None:
            b = c.builder
            n, blk = b.udiv(index, i64(nblocks)), b.urem(index, i64(nblocks))
            block = blocks_of(c, n)
            row0 = b.mul(blk, i64(rows))
            if not rem:
                block(row0, rows)
                return
            with b.if_else(b.icmp_unsigned("==", blk, i64(nblocks - 1))) as (last, other):
                with last:
                    block(row0, rem)
                with other:
                    block(row0, rows)

        ctx.parallel("blocks", g.n * nblocks, image_block)
        return
    images(ctx, g, lambda c, n: row_blocks(c.builder, g, blocks_of(c, n)))


def transposed_forward(g: Geometry, dtype: str) -> bool:
    """Whether the forward runs as yᵀ = colsᵀ · Wᵀ (P × O, its micro-kernels storing y transposed): one
    group, few output positions (P ≤ FLIP_MAX_POSITIONS) and clearly better use of the GEMM's register tiles — at
    batch 1, ResNet's 7×7 layers fill 49 of 64 tile columns as an O × 49 product but 49 of 56 tile rows as
    49 × O (512-channel layer 3.4 → 2.8 ms). Not at 196 positions: the CNN benchmark's 64-channel 14×14 layer went
    5.6 → 8.1 ms (packing the transposed operands costs more than the fuller tiles save)."""
    if g.groups != 1 or g.p > FLIP_MAX_POSITIONS or g.o * g.p * g.itemsize > SCRATCH_BYTES:
        return False
    return tile_use(g.p, g.o, dtype) > FLIP_GAIN * tile_use(g.o, g.p, dtype)


