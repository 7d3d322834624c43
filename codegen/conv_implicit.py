"""The forward convolution as one GEMM per image without columns (see ``codegen.conv``'s docstring): "implicit"
(the GEMM's packer reads the image through the im2col index map, ``codegen.conv_pack``) and "indirect" (the
transposed GEMM reads the zero-padded image through an offset table, ``codegen.conv_indirect``), with bias and
epilogue on the micro-kernels' registers or as a pass over y's channels."""

from __future__ import annotations

import llvmlite.ir as ir

import codegen.conv_indirect as conv_indirect
import codegen.conv_pack as conv_pack
import codegen.prepack as prepack
from codegen.conv_gemm import FLIP_GAIN, conv_gemm, copy_rows, epilogue_rows, images, prepacked, scratch, tile_use
from codegen.conv_geometry import SCRATCH_BYTES, Geometry
from codegen.epilogue import Epilogue
from codegen.gemm.config import default_config, host_vector_bits
from codegen.llvm import for_range, i64
from codegen.lowering import KernelContext
from graphc.ir import Node


def implicit_forward(ctx: KernelContext, node: Node, g: Geometry, x: Node, w: Node, bias: Node | None,
                     indirect: bool = False) -> None:
    """y[n, g] = W[g] · im2col(x[n])[g] as one GEMM per image (N = all P output pixels) whose B packer reads x[n]
    (``codegen.conv_pack``; with stride > 1 its column phases, split into scratch first): no columns, no row
    blocks; then bias and epilogue over y[n] (by output channels on the threads when the GEMM used them). Where
    ``transposed_implicit`` holds, yᵀ = im2col(x[n])ᵀ · Wᵀ instead, its A micro-panels packed from the image,
    its micro-kernels storing y transposed (a transposed C). Images in parallel when there are at least as many as
    threads, else the GEMM splits each image's product (never K: every output is the same chain of FMAs on every
    thread count). ``indirect``: yᵀ likewise, its A read straight from the (padded) image (``codegen.conv_indirect``).
    """
    cfg = default_config(node.dtype, host_vector_bits())
    flip = indirect or transposed_implicit(g, node.dtype)
    # a constant W (a frozen program) is packed once, at compile time, in the layout the micro-kernels read
    # (codegen.prepack): its GEMM packer then only points at the panels; the kernel reads W through nothing else
    packed = prepacked(
        ctx, w, prepack.spec_b(cfg, 1, g.kg, g.o, trans=True) if flip else prepack.spec_a(cfg, g.groups, g.og, g.kg))

    def image(c: KernelContext, n: ir.Value) -> None:
        b = c.builder
        epi = Epilogue.of(c, node)
        target = epi.target() if epi else node
        pixels = c.elem(x, b.mul(n, i64(g.c * g.h * g.w)))
        y_base = b.mul(n, i64(g.o * g.p))
        phases = False if indirect else conv_pack.split(g, cfg, cfg.mr if flip else None)
        source = conv_pack.Source.of(g, phases)
        if indirect and conv_indirect.needs_padding(g):
            padded = scratch(c, node.dtype, conv_indirect.padded_elements(g))
            conv_indirect.pad_image(b, g, pixels, padded)
            pixels = padded
        if phases:  # stride > 1: the packer reads the image's column phases
            split = scratch(c, node.dtype, conv_pack.split_elements(g))
            conv_pack.split_columns(b, g, pixels, split)
            pixels = split
        # bias and epilogue on the micro-kernels' registers (the transposed product's channels are its columns)
        form = epi.store_form("col" if flip else "row", bias)
        if flip and indirect:
            _indirect_gemms(c, node, g, packed, pixels, y_base, form is not None)
        elif flip:  # yᵀ = im2col(x)ᵀ · Wᵀ, its micro-kernels storing y itself (a transposed C)
            gemm = conv_gemm(c, "fwdtip" if packed else "fwdti", g, g.p, g.o, g.kg, node.dtype, (0, 0, 0),
                             lds=(g.p, g.kg, g.p), trans_a=True, trans_b=True, trans_c=True,
                             pack_a=conv_pack.transposed_packer(c.module, g, cfg, phases),
                             pack_b=prepack.packer_b(cfg, g.o) if packed else None, form=form)
            gemm(pixels, c.ptr(w), c.elem(target, y_base), store_at=y_base)
        else:
            gemm = conv_gemm(c, "fwdip" if packed else "fwdi", g, g.og, g.p, g.kg, node.dtype,
                             (g.og * g.kg, source.group_stride(g), g.og * g.p),
                             pack_a=prepack.packer_a(cfg, g.og) if packed else None,
                             pack_b=conv_pack.packer(c.module, g, cfg, phases), form=form)
            gemm(c.ptr(w), pixels, c.elem(target, y_base), store_at=y_base)
        if form or not epi and bias is None:
            return

        def channels(cc: KernelContext, first: ir.Value, count: int, base: ir.Value) -> None:
            """Bias and epilogue of output channels first .. first + count, in place."""
            bb = cc.builder
            bias_ptr = None if bias is None else bb.gep(cc.ptr(bias), [first], inbounds=True)
            at = bb.add(base, bb.mul(first, i64(g.p)))
            if epi:
                epilogue_rows(bb, Epilogue.of(cc, node), g, cc.elem(target, at), g.p, at, g.p, bias_ptr,
                               channels=count, first=first)
            else:
                copy_rows(bb, count, g.p, cc.elem(target, at), g.p, cc.elem(target, at), g.p, bias_ptr)

        if c.threads > 1 and g.o > 1:  # the GEMM ran on the threads: so does the epilogue, a few channels a chunk
            per = max(1, -(-g.o // (4 * c.threads)))
            chunks, last = -(-g.o // per), g.o - (-(-g.o // per) - 1) * per

            def chunk(cc: KernelContext, index: ir.Value, base: ir.Value) -> None:
                bb = cc.builder
                first = bb.mul(index, i64(per))
                if last == per:
                    channels(cc, first, per, base)
                    return
                with bb.if_else(bb.icmp_unsigned("==", index, i64(chunks - 1))) as (end, other):
                    with end:
                        channels(cc, first, last, base)
                    with other:
                        channels(cc, first, per, base)

            c.parallel("epilogue", chunks, chunk, shared=[y_base])
        else:
            channels(c, i64(0), g.o, y_base)

    images(ctx, g, image)


def _indirect_gemms(c: KernelContext, node: Node, g: Geometry, packed: bool, image: ir.Value, y_base: ir.Value,
                    on_registers: bool) -> None:
    """yᵀ = im2col(image)ᵀ · Wᵀ by ``codegen.conv_indirect``, its micro-kernels storing y itself (a transposed C
    at flat element ``y_base`` of the kernel's output; ``on_registers``: with the epilogue's store form), in blocks
    of whole output rows whose part of y stays in L2 across the GEMM's depth blocks (~``conv_indirect.BLOCK_BYTES``):
    one GEMM of the whole P would stream all of y from L3 once per depth block. A block's GEMM reads the image from its
    first window row (the record's pixel offsets are affine within whole rows). On several threads, an image of
    at least ``BLOCK_PIXELS`` pixels per thread runs whole blocks on the threads (a one-thread GEMM each, a
    multiple of the thread count of them); a smaller one splits each block's GEMM (ResNet-18's 56×56 layer on two
    threads, against "implicit": 9 % slower splitting each GEMM, 4 % with whole blocks on the threads)."""
    dtype, (w, bias) = node.dtype, (node.inputs[1], node.inputs[2] if len(node.inputs) == 3 else None)
    cfg = default_config(dtype, host_vector_bits())
    rows = conv_indirect.block_rows(g, cfg.kc)
    on_threads = c.threads > 1 and g.p >= c.threads * conv_indirect.BLOCK_PIXELS
    if on_threads:
        count = -(-max(-(-g.ho // rows), c.threads) // c.threads) * c.threads
        rows = -(-g.ho // count)
    full, tail = divmod(g.ho, rows)
    row_pitch = conv_indirect.pitches(g)[0]

    def block(cc: KernelContext, count: int, first_row: ir.Value, src: ir.Value, base: ir.Value) -> None:
        m, b = count * g.wo, cc.builder
        epi = Epilogue.of(cc, node)
        form = epi.store_form("col", bias) if on_registers else None
        call = conv_gemm(cc, "fwdind" + ("p" if packed else ""), g, m, g.o, g.kg, dtype, (0, 0, 0),
                         lds=(m, g.kg, g.p), trans_a=True, trans_b=True, trans_c=True,
                         pack_a=conv_indirect.packer(cc.module, g, cfg),
                         pack_b=prepack.packer_b(cfg, g.o) if packed else None, form=form)
        at = b.add(base, b.mul(first_row, i64(g.wo)))
        call(b.gep(src, [b.mul(first_row, i64(g.sh * row_pitch))], inbounds=True), cc.ptr(w),
             cc.elem(epi.target() if epi else node, at), store_at=at)

    if on_threads:
        def chunk(cc: KernelContext, index: ir.Value, src: ir.Value, base: ir.Value) -> None:
            bb = cc.builder
            first = bb.mul(index, i64(rows))
            if not tail:
                block(cc, rows, first, src, base)
                return
            with bb.if_else(bb.icmp_unsigned("==", index, i64(full))) as (last, other):
                with last:
                    block(cc, tail, first, src, base)
                with other:
                    block(cc, rows, first, src, base)

        c.parallel("iblocks", full + (1 if tail else 0), chunk, shared=[image, y_base])
        return
    with for_range(c.builder, 0, full, name="rblk") as index:
        block(c, rows, c.builder.mul(index, i64(rows)), image, y_base)
    if tail:
        block(c, tail, i64(full * rows), image, y_base)


def transposed_implicit(g: Geometry, dtype: str) -> bool:
    """Whether the implicit forward runs as yᵀ = im2col(x)ᵀ · Wᵀ (A micro-panels packed from the image): one group,
    yᵀ fits the scratch budget and fills the GEMM's register tiles clearly better (:func:`tile_use`) — output
    channels across the vector lanes, pixels across the tile's rows: ResNet's 7×7 layers (49 pixels fill 49 of 56
    lanes as columns, all of their tile rows transposed). Not its 14×14 layers since narrow edge vectors: 196 pixels
    fill 196 of 200 lanes as columns; measured (1 thread, interleaved) the 512 → 1024 1×1 stride-2 layer took
    2.12 ms transposed and 1.90 ms not, the 256-channel 3×3 one 2.15 and 2.16."""
    if g.groups != 1 or g.o * g.p * g.itemsize > SCRATCH_BYTES:
        return False
    return tile_use(g.p, g.o, dtype) > FLIP_GAIN * tile_use(g.o, g.p, dtype)
