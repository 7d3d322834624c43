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
(masked vector loads; stride > 1 reads the image's column phases, split once into scratch), one GEMM per image
over all P pixels, then bias and epilogue over y[n]. Where that fills the register tiles clearly better
(``transposed_implicit``: ResNet's 7×7 layers) it computes yᵀ = colsᵀ · Wᵀ instead, the A micro-panels
packed from the image, its micro-kernels storing each tile into y transposed at the last depth block (a transposed
C, ``codegen.gemm.transpose``), bias and epilogue on their registers. Each column element is written and read once
instead of twice; the products and their order are those of im2col + GEMM (bitwise the same result in the same
orientation). Measured (one thread, batch 1, Zen 4, 117 GFLOP/s FMA peak; medians of interleaved rounds of
thread CPU time on a shared machine): ResNet-18's 64-channel 56×56 3×3 layer 2.64 → 2.26 ms (75 → 87 % of peak;
onnxruntime 2.05 ms), 128-channel 28×28 2.50 → 2.23 ms, 256-channel 14×14 2.66 → 2.31 ms, the 7×7 stem
3.18 → 2.34 ms (63 → 86 %); the 7×7 layers stay near 2.7 ms (~73 %): the weights' transposed packing, streamed
from L3, is what is left there (frozen programs pack the weights once at load, ``codegen.prepack``: 7×7 layer
2.67 → 2.31 ms). The gradients keep the explicit columns (:mod:`codegen.conv_backward`).

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
import codegen.conv_indirect as conv_indirect
import codegen.conv_pack as conv_pack
import codegen.prepack as prepack
from codegen.conv_geometry import SCRATCH_BYTES, Geometry, geometry, zero_range
from codegen.epilogue import Epilogue, StoreForm
from codegen.gemm.blocking import tile_origins, workspace_bytes
from codegen.gemm.config import default_config, host_vector_bits
from codegen.gemm.driver import PackA, PackB, emit_gemm
from codegen.gemm.microkernel import vector_lanes
from codegen.gemm.skinny import SKINNY_ROWS
from codegen.llvm import F64, PTR, for_range, i64
from codegen.lowering import KernelContext, lowerer
from codegen.scalar import FAST, value_type
from graphc.ir import Node

FLIP_MAX_POSITIONS = 128  # transposed forward products only for this few output positions (see transposed_forward)
FLIP_GAIN = 1.08  # ... and only when they fill the register tiles this much better


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


def scratch(ctx: KernelContext, dtype: str, count: int) -> ir.Value:
    """``count`` elements of ``dtype`` from the kernel's scratch memory."""
    ty = value_type(dtype)
    return ctx.scratch(count * (8 if ty == F64 else 4), ty)


def copy_rows(b: ir.IRBuilder, channels: int, width: int, src: ir.Value, src_ld: int, dst: ir.Value, dst_ld: int,
              bias: ir.Value | None = None) -> None:
    """dst[ch, e] = src[ch·src_ld + e] (+ bias[ch]) for ch < channels, e < width."""
    with for_range(b, 0, channels, name="ch") as ch:
        s = b.gep(src, [b.mul(ch, i64(src_ld))], inbounds=True)
        d = b.gep(dst, [b.mul(ch, i64(dst_ld))], inbounds=True)
        add = None if bias is None else b.load(b.gep(bias, [ch], inbounds=True))
        with for_range(b, 0, width, name="e") as e:
            v = b.load(b.gep(s, [e], inbounds=True))
            b.store(v if add is None else b.fadd(v, add, flags=FAST), b.gep(d, [e], inbounds=True))


def row_blocks(b: ir.IRBuilder, g: Geometry, body: Callable[[ir.Value, int], None]) -> None:
    """body(row0, rows) over the row blocks of one image: full blocks in a loop, then the remainder."""
    rows = g.block_rows()
    full, rem = divmod(g.ho, rows)
    if full == 1:
        body(i64(0), rows)
    elif full:
        with for_range(b, 0, full, name="blk") as blk:
            body(b.mul(blk, i64(rows)), rows)
    if rem:
        body(i64(full * rows), rem)


def conv_gemm(ctx: KernelContext, tag: str, g: Geometry, m: int, n: int, k: int, dtype: str, strides: tuple[int, ...],
          lds: tuple[int, int, int] | None = None, pack_a: PackA | None = None, pack_b: PackB | None = None,
          form: StoreForm | None = None, **flags: bool) -> Callable[..., None]:
    """A GEMM batched over the groups, cached per size in the module; returns a caller on typed pointers (A, B, C;
    ``store_at``: C's first element as a flat offset into y, where the store epilogue reads its operands).
    ``lds``: leading dimensions of operands that are blocks of larger matrices; ``pack_a`` / ``pack_b``: the
    caller's packers (see ``emit_gemm``); ``form``: the kernel's epilogue applied by the micro-kernels at their
    store (``Epilogue.store_form``)."""
    epilogue = form.chain if form else None
    name = f"{ctx.function.name}.{tag}.{m}x{n}x{k}" + ("" if lds is None else ".ld" + "_".join(map(str, lds))) \
        + (f".store_{epilogue.tag()}" if epilogue else "")
    fn = ctx.module.globals.get(name) or emit_gemm(ctx.module, name, m, n, k, dtype=dtype, batch=g.groups,
                                                    batch_strides=strides, threads=ctx.threads, lds=lds,
                                                    pack_a=pack_a, pack_b=pack_b, epilogue=epilogue, **flags)
    b = ctx.builder
    workspace = b.bitcast(ctx.scratch(workspace_bytes(m, n, k, dtype, threads=ctx.threads, batch=g.groups,
                                                      global_tiles=getattr(pack_a, "prepacked", False),
                                                      trans_c=flags.get("trans_c", False))), PTR)

    def call(a: ir.Value, bb: ir.Value, c: ir.Value, store_at: ir.Value | None = None) -> None:
        args = [b.bitcast(a, PTR), b.bitcast(bb, PTR), b.bitcast(c, PTR), workspace]
        if form:
            form.call(b, fn, args, store_at)
        else:
            b.call(fn, args)

    return call


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
        _implicit_forward(ctx, node, g, x, w, bias, indirect=algorithm == "indirect")
        return

    rows = g.block_rows()
    flip = rows == g.ho and transposed_forward(g, node.dtype)
    cfg = default_config(node.dtype, host_vector_bits())
    # a constant W packed at compile time (codegen.prepack): as B of the transposed product, else as A (not for
    # GEMMs of so few rows that they run unpacked, codegen.gemm.skinny)
    packed = (flip or g.og > SKINNY_ROWS) and _prepacked(
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
            if flip:  # yᵀ = colsᵀ · Wᵀ (P × O), its micro-kernels storing y itself (a transposed C)
                if not g.pointwise:
                    im2col(b, g, pixels, cols, row0, r)
                gemm = conv_gemm(c, "fwdt" + tag, g, g.p, g.o, g.k, node.dtype, (0, 0, 0), lds=(g.p, g.k, g.p),
                                 trans_a=True, trans_b=True, trans_c=True, form=form, **pack_w)
                gemm(pixels if g.pointwise else cols, c.ptr(w), y_n, store_at=y_base)
                if form:
                    return
                if epi:
                    _epilogue_rows(b, epi, g, y_n, g.p, y_base, g.p, bias_ptr)
                elif bias_ptr is not None:
                    copy_rows(b, g.o, g.p, y_n, g.p, y_n, g.p, bias_ptr)
                return
            if g.pointwise:  # y[n][:, block] = W · x[n][:, block], both with row stride P
                at = b.mul(row0, i64(g.wo))
                here = b.gep(y_n, [at], inbounds=True)
                gemm = conv_gemm(c, "fwd1" + tag, g, g.og, pb, g.kg, node.dtype, (g.og * g.kg, g.kg * g.p, g.og * g.p),
                             lds=(g.kg, g.p, g.p), form=form, **pack_w)
                gemm(c.ptr(w), b.gep(pixels, [at], inbounds=True), here, store_at=b.add(y_base, at))
                if form:
                    return
                if epi:
                    _epilogue_rows(b, epi, g, here, g.p, b.add(y_base, at), pb, bias_ptr)
                elif bias_ptr is not None:
                    copy_rows(b, g.o, pb, here, g.p, here, g.p, bias_ptr)
                return
            im2col(b, g, pixels, cols, row0, r)
            gemm = conv_gemm(c, "fwd" + tag, g, g.og, pb, g.kg, node.dtype, (g.og * g.kg, g.kg * pb, g.og * pb),
                             form=form, **pack_w)
            gemm(c.ptr(w), cols, y_n if single else out, store_at=y_base)
            if form:
                return
            if epi:
                src, src_ld = (y_n, g.p) if single else (out, pb)
                _epilogue_rows(b, epi, g, src, src_ld, b.add(y_base, b.mul(row0, i64(g.wo))), pb, bias_ptr)
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


def _implicit_forward(ctx: KernelContext, node: Node, g: Geometry, x: Node, w: Node, bias: Node | None,
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
    packed = _prepacked(
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
                _epilogue_rows(bb, Epilogue.of(cc, node), g, cc.elem(target, at), g.p, at, g.p, bias_ptr,
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


def _prepacked(ctx: KernelContext, w: Node, spec: prepack.PackSpec) -> bool:
    """Whether the kernel reads the weights ``w`` packed at compile time as ``spec`` (``codegen.prepack``: a
    constant of a frozen program that no other operand of the kernel reads; its pointer then addresses the packed
    operand)."""
    uses = sum(1 for n in ctx.kernel.nodes for v in n.inputs if v is w)
    return uses == 1 and ctx.prepacked(w, spec) is not None


def images(ctx: KernelContext, g: Geometry, image: Callable[[KernelContext, ir.Value], None]) -> None:
    """image(c, n) for every image: in parallel when there are at least as many images as threads (each with its
    own scratch and one-thread GEMMs), else one after the other (the GEMMs then use the threads)."""
    if ctx.threads > 1 and g.n >= ctx.threads:
        ctx.parallel("images", g.n, image)
        return
    with for_range(ctx.builder, 0, g.n, name="n") as n:
        image(ctx, n)


def _epilogue_rows(b: ir.IRBuilder, epi: Epilogue, g: Geometry, src: ir.Value, src_ld: int, base: ir.Value,
                   width: int, bias: ir.Value | None, channels: int | None = None,
                   first: ir.Value | None = None) -> None:
    """For ch < O, e < width: v = src[ch·src_ld + e] (+ bias[ch]); the epilogue stores chain(v) into every kernel
    output at base + ch·P + e (the per-channel inputs are loaded once per channel). ``channels`` (default O) rows
    from channel ``first`` (default 0): src, base and bias then start at that channel's row."""
    count = g.o if channels is None else channels
    with for_range(b, 0, count, name="ch") as ch:
        s = b.gep(src, [b.mul(ch, i64(src_ld))], inbounds=True)
        row = b.add(base, b.mul(ch, i64(g.p)))
        add = None if bias is None else b.load(b.gep(bias, [ch], inbounds=True))
        per_channel = epi.load(b, ch if first is None else b.add(first, ch))
        with for_range(b, 0, width, name="e") as e:
            v = b.load(b.gep(s, [e], inbounds=True))
            epi.store(b, v if add is None else b.fadd(v, add, flags=FAST), b.add(row, e), per_channel)


def tile_use(m: int, n: int, dtype: str) -> float:
    """Fraction of the FMA work of an m × n GEMM output's micro-kernel tiles that is useful. Columns: an edge tile
    runs whole vectors, a narrow last one (``codegen.gemm.microkernel.vector_lanes``) counting its own lanes.
    Rows: edge tiles are instantiations of their own height (``codegen.gemm.blocking.row_tiles`` keeps them at
    ``mr / 2`` rows or more where it can), so only a tile under ``mr / 2`` rows, too few accumulators to hide
    the FMA latency, counts as wasting work — 49 positions as rows fill their tiles, as columns 49 of 56 lanes."""
    cfg = default_config(dtype, host_vector_bits())
    full, rest = divmod(n, cfg.nr)
    lanes = full * cfg.nr + (sum(vector_lanes(cfg, rest)) if rest else 0)
    rows = sum(max(height, cfg.mr // 2) for _, height in tile_origins(m, cfg.mr))
    return m / rows * n / lanes


def transposed_forward(g: Geometry, dtype: str) -> bool:
    """Whether the forward runs as yᵀ = colsᵀ · Wᵀ (P × O, its micro-kernels storing y transposed): one
    group, few output positions (P ≤ FLIP_MAX_POSITIONS) and clearly better use of the GEMM's register tiles — at
    batch 1, ResNet's 7×7 layers fill 49 of 64 tile columns as an O × 49 product but 49 of 56 tile rows as
    49 × O (512-channel layer 3.4 → 2.8 ms). Not at 196 positions: the CNN benchmark's 64-channel 14×14 layer went
    5.6 → 8.1 ms (packing the transposed operands costs more than the fuller tiles save)."""
    if g.groups != 1 or g.p > FLIP_MAX_POSITIONS or g.o * g.p * g.itemsize > SCRATCH_BYTES:
        return False
    return tile_use(g.p, g.o, dtype) > FLIP_GAIN * tile_use(g.o, g.p, dtype)


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
