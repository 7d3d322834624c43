"""The B operand of a convolution's GEMM packed straight from the image ("implicit" im2col, ``codegen.conv``).

im2col + GEMM writes the columns ``cols[k, t]`` into scratch and the GEMM then copies them again into its
``nr``-wide panels (``codegen.gemm.pack.pack_b``). Here the GEMM's B-block packer (``emit_gemm(pack_b=...)``) reads
the image itself and writes the panels directly::

    Bp[(j·kc + p)·nr + c] = x[ci, hi, wi]   (0 where (hi, wi) is padding, and for columns past the block)
    k = pc + p = (ci·kh + kp)·kw + kq,  t = col + j·nr + c = r·Wo + jo,
    hi = r·sh + kp·dh - top,  wi = jo·sw + kq·dw - left

— the index map of ``codegen.conv.im2col`` (output pixel t of the group's image, cols row k), so the GEMM computes
exactly the products of the explicit path, in the same order: the results are bitwise those of im2col + GEMM.

Per panel and vector of ``vec`` lanes (columns t .. t + vec - 1) the setup computes each lane's output row r and
column jo once, and from them small tables of lane masks: ``colmask[kq]`` (lanes whose wi is inside the row, and
inside the block) and ``rowmask[kp]`` (lanes whose hi is inside the image). A panel row k then costs, per vector,
two table loads and one masked vector load per output row the lanes span (``segments``: at most
1 + ⌈(vec - 1)/Wo⌉; each lane's value comes from the load of its own row, the loads merged) — consecutive lanes
read consecutive pixels of one input row. With a column stride sw > 1 that holds in the image's *column phases*:
the image is first split once (``split_columns``, into scratch) into sw planes per channel, phase f holding the
columns f, f + sw, f + 2·sw, ...; kernel column kq then reads phase (kq·dw - left) mod sw from column
jo + ⌊(kq·dw - left)/sw⌋ on (only the phases and rows some window reads are copied: a 1×1 stride-2 conv copies a
quarter of the image). Where a vector would span more than ``MAX_SEGMENTS`` output rows (Wo < vec / 3), one
masked gather per vector instead.

The transposed product yᵀ = colsᵀ · Wᵀ (``codegen.conv_implicit.transposed_implicit``) packs its A micro-panels
the same way (:func:`transposed_packer`): a panel of ``rows`` output pixels, one destination row of ``rows``
elements per k.

Masked-off lanes are never accessed (``llvm.masked.load`` / ``llvm.masked.gather``, executed with fault
suppression), so padding, row ends and the block's last columns need no border code of their own and nothing
outside the image is read; the pointers of masked loads may lie outside it and are formed without ``inbounds``.
Panels whose vectors each lie in one output row (most of them when Wo ≥ vec) run a copy of the row loop with one
load per vector.
"""

from __future__ import annotations

from dataclasses import dataclass

import llvmlite.ir as ir

from codegen.conv_geometry import Geometry
from codegen.gemm.config import GemmConfig
from codegen.gemm.driver import PackA, PackB
from codegen.gemm.microkernel import vector_suffix
from codegen.llvm import I1, I32, I64, PTR, VOID, for_range, gep, i64, intrinsic

MAX_SEGMENTS = 4  # masked loads per vector and panel row at most (else one gather): 1 + ⌈(vec - 1)/Wo⌉
SPLIT_BYTES = 4 << 20  # column phases of one image at most this big (else stride > 1 gathers from x)
INDEX_LIMIT = 1 << 31  # lane arithmetic is in i32: images, pixels and offsets stay below this


def applies(g: Geometry) -> bool:
    """Whether this geometry can be packed from the image (i32 lane arithmetic: every offset below 2^31)."""
    return g.c * g.h * (g.w + g.sw) * g.sh < INDEX_LIMIT and g.p + 64 < INDEX_LIMIT


def segments(g: Geometry, cfg: GemmConfig, width: int | None = None) -> int:
    """How many output rows a vector of ``min(vec, width)`` consecutive output columns can span: masked loads per
    vector and panel row."""
    return 1 + -(-(min(cfg.vec, width or cfg.vec) - 1) // g.wo)


def split(g: Geometry, cfg: GemmConfig, width: int | None = None) -> bool:
    """Whether the image is split into column phases first (stride sw > 1, loads rather than gathers for panels
    ``width`` lanes wide, and the phases fit ``SPLIT_BYTES``)."""
    return g.sw > 1 and segments(g, cfg, width) <= MAX_SEGMENTS and \
        split_elements(g) * g.itemsize <= SPLIT_BYTES


def _phase_width(g: Geometry) -> int:
    return -(-g.w // g.sw)


def split_elements(g: Geometry) -> int:
    """Elements of one image's column phases: C channels × sw phases × H rows × ⌈W / sw⌉."""
    return g.c * g.sw * g.h * _phase_width(g)


@dataclass(frozen=True)
class Source:
    """Where the packer reads pixel (ci, hi, wi): at ci·plane + hi·pitch + qoff[kq] + jo·col_stride for the
    kernel column kq and output column jo that give wi (the image itself, or its column phases)."""

    plane: int
    pitch: int
    col_stride: int
    qoff: tuple[int, ...]

    @classmethod
    def of(cls, g: Geometry, phases: bool) -> Source:
        if not phases:
            return cls(g.h * g.w, g.w, g.sw, tuple(q * g.dw - g.left for q in range(g.kw)))
        wp = _phase_width(g)
        # wi = jo·sw + kq·dw - left = (jo + shift)·sw + phase
        return cls(g.sw * g.h * wp, wp, 1, tuple((q * g.dw - g.left) % g.sw * g.h * wp + (q * g.dw - g.left) // g.sw
                                                 for q in range(g.kw)))

    def group_stride(self, g: Geometry) -> int:
        """Elements between the first channels of consecutive groups."""
        return g.cg * self.plane


def copied(g: Geometry) -> tuple[list[int], range]:
    """The column phases and input rows the packer reads (``split_columns`` copies only those): the phases of the
    kernel columns, (kq·dw - left) mod sw, and the rows hi = r·sh + kp·dh - top inside the image — as one range
    when they form one (a 1×1 stride-2 conv reads phase 0 of every other row: a quarter of the image), else all."""
    phases = sorted({(q * g.dw - g.left) % g.sw for q in range(g.kw)})
    rows = sorted({h for r in range(g.ho) for p in range(g.kh) if 0 <= (h := r * g.sh + p * g.dh - g.top) < g.h})
    if len(rows) > 1:
        step = rows[1] - rows[0]
        if rows == list(range(rows[0], rows[-1] + 1, step)):
            return phases, range(rows[0], rows[-1] + 1, step)
    elif rows:
        return phases, range(rows[0], rows[0] + 1)
    return phases, range(g.h)


def split_columns(b: ir.IRBuilder, g: Geometry, x: ir.Value, dst: ir.Value) -> None:
    """dst[(c·sw + f)·H·Wp + h·Wp + u] = x[c, h, u·sw + f] for every column u·sw + f < W (Wp = ⌈W / sw⌉), for the
    phases f and rows h the packer reads (:func:`copied`); the other slots are left unwritten."""
    sw, wp = g.sw, _phase_width(g)
    phases, rows = copied(g)
    whole = g.w // sw  # columns u whose every phase is inside the row
    with for_range(b, 0, g.c, name="sc") as c, for_range(b, 0, len(rows), name="sh") as i:
        h = b.add(i64(rows.start), b.mul(i, i64(rows.step)))
        src = b.gep(x, [b.add(b.mul(c, i64(g.h * g.w)), b.mul(h, i64(g.w)))], inbounds=True)
        out = {f: b.gep(dst, [b.add(b.mul(b.add(b.mul(c, i64(sw)), i64(f)), i64(g.h * wp)), b.mul(h, i64(wp)))],
                        inbounds=True) for f in phases}
        if whole:
            with for_range(b, 0, whole, name="su") as u:
                at = b.mul(u, i64(sw))
                for f in phases:
                    value = b.load(b.gep(src, [b.add(at, i64(f))], inbounds=True))
                    b.store(value, b.gep(out[f], [u], inbounds=True))
        for f in phases:  # the last, partial column group
            if whole * sw + f < g.w:
                b.store(b.load(b.gep(src, [i64(whole * sw + f)], inbounds=True)),
                        b.gep(out[f], [i64(whole)], inbounds=True))


def _form(g: Geometry, cfg: GemmConfig, source: Source, gather: bool | None, width: int | None = None) -> int:
    """Masked loads per vector and row (``segments``), or 0: one gather per vector."""
    if source.col_stride != 1 or gather:
        return 0
    nseg = segments(g, cfg, width)
    return 0 if gather is None and nseg > MAX_SEGMENTS else nseg


def packer(module: ir.Module, g: Geometry, cfg: GemmConfig, phases: bool = False,
           gather: bool | None = None) -> PackB:
    """The B-block packer of the GEMM W[g] (Og × Kg) · cols[g] (Kg × P) for ``emit_gemm(pack_b=...)``: B is the
    group's first channel, of the image (``phases`` False) or of its column phases (``split_columns``).
    ``gather``: force the gather (True) or the masked-load form (False, only where consecutive lanes read
    consecutive elements) — for tests; default: by ``MAX_SEGMENTS``."""
    source = Source.of(g, phases)
    fn = _function(module, g, cfg, source, _form(g, cfg, source, gather), None)

    def pack(b: ir.IRBuilder, x: ir.Value, dst: ir.Value, pc: ir.Value, col: ir.Value, kc: ir.Value,
             ncols: ir.Value) -> None:
        b.call(fn, [b.bitcast(x, PTR), b.bitcast(dst, PTR), pc, col, kc, ncols])

    return pack


def transposed_packer(module: ir.Module, g: Geometry, cfg: GemmConfig, phases: bool = False,
                      gather: bool | None = None) -> PackA:
    """The A micro-panel packer of the transposed GEMM cols[g]ᵀ (P × Kg) · W[g]ᵀ for ``emit_gemm(pack_a=...)``:
    Ap[p·rows + r] = cols[pc + p, row + r], the same lanes and loads as :func:`packer` on a panel of ``rows``
    output pixels (stored a vector at a time in increasing p, each store's surplus lanes overwritten by the next
    one's, the last landing in the micro-panel's slack)."""
    source = Source.of(g, phases)

    def pack(b: ir.IRBuilder, x: ir.Value, dst: ir.Value, pc: ir.Value, row: ir.Value, kc: ir.Value,
             rows: int) -> None:
        fn = _function(b.module, g, cfg, source, _form(g, cfg, source, gather, rows), rows)
        b.call(fn, [b.bitcast(x, PTR), b.bitcast(dst, PTR), pc, row, kc, i64(rows)])

    return pack


def _function(module: ir.Module, g: Geometry, cfg: GemmConfig, source: Source, nseg: int,
              rows: int | None) -> ir.Function:
    """``void pack(x*, dst*, i64 pc, i64 first, i64 kc, i64 count)`` for this geometry (shared in the module): B
    panels of ``count`` columns from output pixel ``first`` (``rows`` None), or one A micro-panel of ``rows``."""
    key = "_".join(map(str, (g.h, g.w, g.wo, g.kh, g.kw, g.sh, g.sw, g.dh, g.dw, g.top, g.left, source.pitch,
                             source.col_stride, nseg)))
    what = "b" if rows is None else f"a{rows}"
    name = f"graphc.conv.pack.{'f32' if cfg.dtype == 'float32' else 'f64'}.{cfg.vec}x{cfg.nv}.{what}.{key}"
    existing = module.globals.get(name)
    if existing is not None:
        return existing
    fn = ir.Function(module, ir.FunctionType(VOID, [PTR, PTR, I64, I64, I64, I64]), name=name)
    fn.linkage = "internal"
    fn.attributes.add("nounwind")
    fn.attributes.add("noinline")
    for arg in fn.args[:2]:
        arg.add_attribute("noalias")
    x, dst, pc, first, kc, count = fn.args
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    packer_ = _Packer(b, g, cfg, source, nseg, cfg.nr if rows is None else rows)
    if rows is None:
        nr = cfg.nr
        npanels = b.sdiv(b.add(count, i64(nr - 1)), i64(nr))
        with for_range(b, 0, npanels, name="panel") as j:
            start = b.mul(j, i64(nr))  # the panel's first column within the block
            packer_.panel(x, gep(b, dst, b.mul(start, kc), cfg.scalar), b.add(first, start),
                          b.sub(count, start), pc, kc)
    else:
        packer_.panel(x, dst, first, count, pc, kc)
    b.ret_void()
    return fn


def _min(b: ir.IRBuilder, x: ir.Value, y: ir.Value) -> ir.Value:
    return b.select(b.icmp_signed("<", x, y), x, y)


class _Packer:
    """Emits the packing loops of one geometry (see the module docstring): panels ``width`` lanes wide (one
    destination row of ``width`` elements per k)."""

    def __init__(self, b: ir.IRBuilder, g: Geometry, cfg: GemmConfig, source: Source, nseg: int,
                 width: int) -> None:
        self.b, self.g, self.cfg, self.source, self.nseg, self.width = b, g, cfg, source, nseg, width
        vec = cfg.vec
        self.nvec = -(-width // vec)
        self.lanes_ty = ir.VectorType(I32, vec)
        self.mask_ty = ir.IntType(vec)
        self.bits_ty = ir.VectorType(I1, vec)
        suffix = vector_suffix(cfg)
        self.load = intrinsic(b.module, f"llvm.masked.load.{suffix}.p0", cfg.vector,
                              [PTR, I32, self.bits_ty, cfg.vector])
        self.gather = intrinsic(b.module, f"llvm.masked.gather.{suffix}.v{vec}p0", cfg.vector,
                                [ir.VectorType(PTR, vec), I32, self.bits_ty, cfg.vector])
        with b.goto_entry_block():  # the per-panel lane tables and the column offsets: a few hundred bytes at most
            self.colmask = b.alloca(self.mask_ty, size=i64(self.nvec * g.kw), name="colmask")
            self.rowmask = b.alloca(self.mask_ty, size=i64(self.nvec * g.kh), name="rowmask")
            self.qoff = b.alloca(I64, size=i64(g.kw), name="qoff")
        for q, off in enumerate(source.qoff):
            b.store(i64(off), b.gep(self.qoff, [i64(q)], inbounds=True))

    def splat(self, value: ir.Value) -> ir.Value:
        b = self.b
        one = b.insert_element(ir.Constant(self.lanes_ty, ir.Undefined), value, ir.Constant(I32, 0))
        return b.shuffle_vector(one, ir.Constant(self.lanes_ty, ir.Undefined),
                                ir.Constant(self.lanes_ty, [0] * self.cfg.vec))

    def bits(self, cond: ir.Value) -> ir.Value:
        return self.b.bitcast(cond, self.mask_ty)

    def i32s(self, value: int) -> ir.Constant:
        return ir.Constant(self.lanes_ty, [value] * self.cfg.vec)

    def panel(self, x: ir.Value, dst: ir.Value, t_first: ir.Value, valid: ir.Value, pc: ir.Value,
              kc: ir.Value) -> None:
        """dst[p·width + c] = cols[pc + p, t_first + c] for c < min(valid, width) (0 for the lanes past it)."""
        b, g, cfg, src = self.b, self.g, self.cfg, self.source
        vec = cfg.vec
        lane_ids = ir.Constant(self.lanes_ty, list(range(vec)))
        row_pitch = g.sh * src.pitch  # between the input rows of consecutive output rows
        limit = self.splat(b.trunc(_min(b, valid, i64(self.width)), I32))
        per_vector = []
        for v in range(self.nvec):
            t0 = b.add(t_first, i64(v * vec))  # the vector's first output pixel
            t = b.add(self.splat(b.trunc(t0, I32)), lane_ids)
            inside = b.icmp_signed("<", b.add(self.i32s(v * vec), lane_ids), limit)
            r = b.udiv(t, self.i32s(g.wo))
            jo = b.sub(t, b.mul(r, self.i32s(g.wo)))
            for q in range(g.kw):
                wi = b.add(b.mul(jo, self.i32s(g.sw)), self.i32s(q * g.dw - g.left))
                ok = b.and_(inside, b.and_(b.icmp_signed(">=", wi, self.i32s(0)),
                                           b.icmp_signed("<", wi, self.i32s(g.w))))
                b.store(self.bits(ok), b.gep(self.colmask, [i64(v * g.kw + q)], inbounds=True))
            for p in range(g.kh):
                hi = b.add(b.mul(r, self.i32s(g.sh)), self.i32s(p * g.dh - g.top))
                ok = b.and_(b.icmp_signed(">=", hi, self.i32s(0)), b.icmp_signed("<", hi, self.i32s(g.h)))
                b.store(self.bits(ok), b.gep(self.rowmask, [i64(v * g.kh + p)], inbounds=True))
            if self.nseg:
                r0 = b.sdiv(t0, i64(g.wo))
                j0 = b.sub(t0, b.mul(r0, i64(g.wo)))
                segs = []
                for s in range(self.nseg):
                    # the lanes of output row r0 + s: lane c reads (row offset) + base + c
                    mask = self.bits(b.icmp_signed("==", r, self.splat(b.trunc(b.add(r0, i64(s)), I32))))
                    row = b.mul(b.add(r0, i64(s)), i64(row_pitch))
                    base = b.add(row, j0) if s == 0 else b.sub(row, b.sub(i64(s * g.wo), j0))
                    segs.append((mask, base))
                per_vector.append(segs)
            else:
                per_vector.append(b.add(b.mul(r, self.i32s(row_pitch)), b.mul(jo, self.i32s(src.col_stride))))
        if self.nseg > 1:  # every vector inside one output row: one load each
            single = None
            for segs in per_vector:
                empty = b.icmp_unsigned("==", segs[1][0], ir.Constant(self.mask_ty, 0))
                single = empty if single is None else b.and_(single, empty)
            with b.if_else(single) as (one, many):
                with one:
                    self.rows(x, dst, pc, kc, [segs[:1] for segs in per_vector])
                with many:
                    self.rows(x, dst, pc, kc, per_vector)
        else:
            self.rows(x, dst, pc, kc, per_vector)

    def rows(self, x: ir.Value, panel: ir.Value, pc: ir.Value, kc: ir.Value, per_vector: list) -> None:
        """The panel's kc rows: k = pc + p walks (ci, kp, kq); the offset of (ci, kp)'s row is kept incrementally,
        kq's column offset comes from the ``qoff`` table."""
        b, g, cfg, src = self.b, self.g, self.cfg, self.source
        taps = g.kh * g.kw
        ci = b.sdiv(pc, i64(taps))
        rest = b.sub(pc, b.mul(ci, i64(taps)))
        kp0 = b.sdiv(rest, i64(g.kw))
        kq0 = b.sub(rest, b.mul(kp0, i64(g.kw)))
        row0 = b.add(b.mul(ci, i64(src.plane)), b.mul(b.sub(b.mul(kp0, i64(g.dh)), i64(g.top)), i64(src.pitch)))
        pre = b.block
        body = b.append_basic_block("rows.body")
        end = b.append_basic_block("rows.end")
        b.branch(body)  # kc >= 1
        b.position_at_end(body)
        p = b.phi(I64, name="p")
        kp = b.phi(I64, name="kp")
        kq = b.phi(I64, name="kq")
        row_off = b.phi(I64, name="row")
        for phi, init in ((p, i64(0)), (kp, kp0), (kq, kq0), (row_off, row0)):
            phi.add_incoming(init, pre)
        dst_row = b.mul(p, i64(self.width))
        zero = ir.Constant(cfg.vector, None)
        align = ir.Constant(I32, cfg.itemsize)
        off = b.add(row_off, b.load(b.gep(self.qoff, [kq], inbounds=True)))
        here = b.gep(x, [off], source_etype=cfg.scalar)  # not inbounds: may point outside the image (masked off)
        for v, form in enumerate(per_vector):
            mask = b.and_(b.load(b.gep(self.colmask, [b.add(kq, i64(v * g.kw))], inbounds=True)),
                          b.load(b.gep(self.rowmask, [b.add(kp, i64(v * g.kh))], inbounds=True)))
            if isinstance(form, list):
                value = zero
                for seg_mask, base in form:
                    lanes = b.bitcast(b.and_(mask, seg_mask), self.bits_ty)
                    value = b.call(self.load, [b.gep(here, [base], source_etype=cfg.scalar), align, lanes, value])
            else:
                ptrs = b.gep(here, [form], source_etype=cfg.scalar)
                ptrs.type = ir.VectorType(PTR, cfg.vec)  # llvmlite types a vector GEP as one pointer
                value = b.call(self.gather, [ptrs, align, b.bitcast(mask, self.bits_ty), zero])
            aligned = self.width % cfg.vec == 0  # B panels: vec-aligned rows (the workspace is 64-byte aligned)
            b.store(value, gep(b, panel, b.add(dst_row, i64(v * cfg.vec)), cfg.scalar),
                    align=(cfg.vec if aligned else 1) * cfg.itemsize)
        # next k: kq + 1, wrapping into kp + 1, wrapping into the next channel
        q_next = b.add(kq, i64(1))
        q_wrap = b.icmp_signed("==", q_next, i64(g.kw))
        p_next = b.select(q_wrap, b.add(kp, i64(1)), kp)
        p_wrap = b.icmp_signed("==", p_next, i64(g.kh))
        step = b.select(q_wrap, i64(g.dh * src.pitch), i64(0))
        step = b.select(p_wrap, i64(src.plane - (g.kh - 1) * g.dh * src.pitch), step)
        nxt = b.add(p, i64(1), flags=("nsw",))
        p.add_incoming(nxt, b.block)
        kp.add_incoming(b.select(p_wrap, i64(0), p_next), b.block)
        kq.add_incoming(b.select(q_wrap, i64(0), q_next), b.block)
        row_off.add_incoming(b.add(row_off, step), b.block)
        b.cbranch(b.icmp_signed("<", nxt, kc), body, end)
        b.position_at_end(end)
