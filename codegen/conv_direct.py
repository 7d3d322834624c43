"""Direct convolution: the window sums as loop nests over whole output rows, no im2col and no GEMM — the
algorithm for depthwise and other thin-group convolutions (C/G·kh·kw small), where im2col's copy and a GEMM with a
tiny reduction dimension cost more than the arithmetic (geometry and index conventions: ``codegen.conv``).

For output column j and kernel column q the input column is wi = j·sw + q·dw - left; it lies inside the row for
j in [lo_q, hi_q) = [⌈(left - q·dw)/sw⌉⁺, ⌈(W + left - q·dw)/sw⌉⁺) ∩ [0, Wo) — static, since the geometry is.
Columns in [J0, J1) = ∩_q [lo_q, hi_q) are interior: there all kw taps of a kernel row are summed in one pass
(kw loads, kw FMAs, one read-modify-write of the accumulator row); the edge columns of each tap run on their own.
Input rows hi = i·sh + p·dh - top outside [0, H) are skipped (zero padding contributes nothing), so every read is
in bounds by construction.

- forward, per (image, output channel) plane: y[n,o,i,:] = b[o] + Σ_{c,p,q} w[o,c,p,q] · x[n, g·Cg + c, hi, wi],
  either over a zero-padded copy of the plane in one flat loop (``Padded``, ``flat_applies``) or accumulated tap
  row by tap row in y's row as above, then the fused epilogue;
- input gradient, per (image, input channel) plane (each written by its own chunk): dx[n,c,hi,wi] +=
  w[o,c,p,q] · ḡ[n,o,i,j] over the group's output channels, in a fixed order;
- weight gradient, per output channel: dw[o,c,p,q] = Σ_{n,i,j} ḡ[n,o,i,j] · x[n, g·Cg + c, hi, wi], one
  accumulator per kernel column, the same loop (so the same sum) for every thread count.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import llvmlite.ir as ir

from codegen.conv_geometry import Geometry, zero_fill
from codegen.epilogue import Epilogue
from codegen.llvm import float_intrinsic, fold, for_range, i64, intrinsic
from codegen.lowering import KernelContext
from codegen.scalar import FAST
from graphc.ir import Node


def fma(b: ir.IRBuilder, a: ir.Value, x: ir.Value, acc: ir.Value) -> ir.Value:
    """a·x + acc with one rounding (``llvm.fma``): per-element sums in a fixed order, the same bits on every build
    (contraction flags leave FMA fusion to the optimizer, which may fuse a different set per build). Scalars or
    vectors."""
    if isinstance(a.type, ir.VectorType):
        suffix = f"v{a.type.count}{'f64' if isinstance(a.type.element, ir.DoubleType) else 'f32'}"
        return b.call(intrinsic(b.module, f"llvm.fma.{suffix}", a.type, [a.type] * 3), [a, x, acc])
    return b.call(float_intrinsic(b, "llvm.fma", a.type, 3), [a, x, acc])


MAX_DIRECT_TAPS = 32  # "auto" takes the direct algorithm when C/G · kh · kw is at most this (see choose_algorithm)
FLAT_SCRATCH_BYTES = 4 << 20  # the flat kernel's padded planes + output run per thread: at most this much


def choose_algorithm(g: Geometry, requested: str) -> str:
    """"pointwise" (a 1×1 conv as a GEMM on x itself), "direct" or "im2col" for this geometry. ``requested`` is
    the conv's ``algorithm`` attribute: "auto" picks pointwise for 1×1 convs with more than one input channel
    per group, direct for thin groups (Cg·kh·kw ≤ MAX_DIRECT_TAPS with more than one group: ResNeXt-like) and for
    every depthwise conv (Cg = 1, any kernel: a GEMM with one row of weights per group is no GEMM), where a GEMM's
    reduction dimension is too short to pay for im2col and packing, else im2col + GEMM. Measured (one thread,
    b1, float32): depthwise 3×3 and 5×5 layers of MobileNet-v2 / EfficientNet-B0 2-20× faster direct than
    im2col; ConvNeXt's depthwise 7×7 (Cg·49 = 49 taps) 96 ch 56×56 3.5 → 0.30 ms, 768 ch 7×7 2.6 → 0.045 ms
    (and its gradients 1-4× faster direct); 64-channel 56×56 grouped 3×3 with 2 channels per group 0.27 vs
    0.48 ms direct, but with 4 (Cg·9 = 36) 0.41 vs 0.34 ms and with 8 0.84 vs 0.41 ms: im2col wins past ~32
    taps."""
    if requested in ("direct", "im2col"):
        return requested
    if g.pointwise and g.cg > 1:
        return "pointwise"
    if g.groups > 1 and (g.kg <= MAX_DIRECT_TAPS or g.cg == 1):
        return "direct"
    return "pointwise" if g.pointwise else "im2col"


def _columns(g: Geometry) -> tuple[list[tuple[int, int]], int, int]:
    """Per kernel column q the valid output columns [lo_q, hi_q); and the interior [J0, J1) valid for every q
    (empty, J0 == J1, when no column is)."""
    ranges = []
    for q in range(g.kw):
        shift = g.left - q * g.dw  # wi = j·sw - shift
        lo = min(max(-(-shift // g.sw), 0), g.wo)
        hi = min(max(-(-(shift + g.w) // g.sw), lo), g.wo)
        ranges.append((lo, hi))
    j0 = max(lo for lo, _ in ranges)
    j1 = max(min(hi for _, hi in ranges), j0)
    return ranges, j0, j1


def _edges(lo: int, hi: int, j0: int, j1: int) -> list[tuple[int, int]]:
    """[lo, hi) minus the interior [j0, j1) (which lies inside [lo, hi) when non-empty)."""
    parts = [(lo, min(hi, j0)), (max(lo, j1), hi)]
    return [(a, b) for a, b in parts if a < b]


def _input_row(b: ir.IRBuilder, g: Geometry, i: ir.Value, p: ir.Value) -> tuple[ir.Value, ir.Value]:
    """(hi, whether 0 <= hi < H) for output row i and kernel row p."""
    hi = b.sub(b.add(b.mul(i, i64(g.sh)), b.mul(p, i64(g.dh))), i64(g.top))
    ok = b.and_(b.icmp_signed(">=", hi, i64(0)), b.icmp_signed("<", hi, i64(g.h)))
    return hi, ok


def _column(b: ir.IRBuilder, g: Geometry, j: ir.Value, q: int) -> ir.Value:
    """wi = j·sw + q·dw - left."""
    return b.add(b.mul(j, i64(g.sw)), i64(q * g.dw - g.left))


@dataclass(frozen=True)
class Padded:
    """The zero-padded copy of one plane that the flat direct kernel reads: ``rows`` × ``pitch`` elements, x's
    pixel (h, w) at row h + top, column w + left; ``span`` flat output positions t = i·pitch + j (j < Wo valid,
    the others wrap into the next row and are discarded)."""

    rows: int
    pitch: int
    span: int

    @classmethod
    def of(cls, g: Geometry) -> Padded:
        return cls.window(g.ho, g.wo, g.sh, g.sw, g.kh, g.kw, g.dh, g.dw)

    @classmethod
    def window(cls, ho: int, wo: int, sh: int, sw: int, kh: int, kw: int, dh: int, dw: int) -> Padded:
        """The rows and columns that Ho × Wo windows of kh × kw (strides, dilations) reach, and the flat span."""
        rows = (ho - 1) * sh + (kh - 1) * dh + 1
        pitch = (wo - 1) * sw + (kw - 1) * dw + 1
        return cls(rows, pitch, (ho - 1) * pitch + wo)

    def scratch_elements(self, g: Geometry) -> int:
        return g.cg * self.rows * self.pitch + self.span


def flat_applies(g: Geometry) -> bool:
    """Whether the flat kernel runs this geometry: few taps (all in registers), equal strides (so that a flat
    index t = i·pitch + j maps to the input as sw·t + p·dh·pitch + q·dw) and a padded plane that fits the budget."""
    return g.kg <= MAX_DIRECT_TAPS and g.sh == g.sw and \
        Padded.of(g).scratch_elements(g) * g.itemsize <= FLAT_SCRATCH_BYTES


def forward(ctx: KernelContext, node: Node, g: Geometry, x: Node, w: Node, bias: Node | None,
            first_channel: int = 0) -> None:
    """y = conv2d(x, w) (+ b), then the kernel's epilogue: one (image, output channel) plane per chunk, for the
    output channels from ``first_channel`` on (those before it: ``codegen.conv_depthwise``).

    Flat kernel (``flat_applies``): the group's input planes are copied zero-padded into scratch (``Padded``), so
    every window is inside; then one loop over the flat positions t sums all Cg·kh·kw taps in registers
    (out[t] = b + Σ_{c,p,q} w[o,c,p,q] · pad_c[sw·t + p·dh·pitch + q·dw] — long, fully vectorized runs even for
    7×7 planes), and the valid positions go through the epilogue into y. Otherwise each output row accumulates
    its tap rows in y's row (``_accumulated_row``). Both run each output's FMAs in the same order (bias, then c,
    p, q)."""
    flat = flat_applies(g)
    padded = Padded.of(g)
    count = g.o - first_channel  # output channels per image on these kernels

    def plane(c: KernelContext, index: ir.Value) -> None:
        b = c.builder
        epi = Epilogue.of(c, node)
        target = epi.target() if epi else node
        n = b.udiv(index, i64(count))
        o = b.add(b.urem(index, i64(count)), i64(first_channel))
        plane_index = b.add(b.mul(n, i64(g.o)), o)
        first = b.mul(b.udiv(o, i64(g.og)), i64(g.cg))  # the group's first input channel
        start = ir.Constant(scalar_type(g), 0.0)
        if bias is not None:
            start = b.load(c.elem(bias, o))
        per_channel = epi.load(b, o) if epi else None

        def emit(v: ir.Value, at: ir.Value) -> None:
            if epi:
                epi.store(b, v, at, per_channel)
            else:
                b.store(v, c.elem(target, at))

        if not flat:
            with for_range(b, 0, g.ho, name="i") as i:
                _accumulated_row(c, g, x, w, n, o, first, i, b.add(b.mul(plane_index, i64(g.p)), b.mul(i, i64(g.wo))),
                                 target, start, epi, per_channel)
            return
        scratch = c.scratch(padded.scratch_elements(g) * g.itemsize, scalar_type(g))
        size = padded.rows * padded.pitch
        pads = [b.gep(scratch, [i64(ch * size)], inbounds=True) for ch in range(g.cg)]
        out = b.gep(scratch, [i64(g.cg * size)], inbounds=True)
        for ch in range(g.cg):
            source = c.elem(x, b.mul(b.add(b.mul(n, i64(g.c)), b.add(first, i64(ch))), i64(g.h * g.w)))
            pad_plane(b, padded, source, pads[ch], g.h, g.w, g.top, g.left, ir.Constant(scalar_type(g), 0.0))
        weights = c.elem(w, b.mul(o, i64(g.kg)))
        taps = [b.load(b.gep(weights, [i64(t)], inbounds=True)) for t in range(g.kg)]
        with for_range(b, 0, padded.span, name="t") as t:
            base = b.mul(t, i64(g.sw))
            v = start
            for ch in range(g.cg):
                for p in range(g.kh):
                    for q in range(g.kw):
                        xv = b.load(b.gep(pads[ch], [b.add(base, i64(p * g.dh * padded.pitch + q * g.dw))],
                                          inbounds=True))
                        v = fma(b, taps[(ch * g.kh + p) * g.kw + q], xv, v)
            b.store(v, b.gep(out, [t], inbounds=True))
        with for_range(b, 0, g.ho, name="i") as i:
            row = b.gep(out, [b.mul(i, i64(padded.pitch))], inbounds=True)
            row_at = b.add(b.mul(plane_index, i64(g.p)), b.mul(i, i64(g.wo)))
            with for_range(b, 0, g.wo, name="j") as j:
                emit(b.load(b.gep(row, [j], inbounds=True)), b.add(row_at, j))

    ctx.parallel("planes", g.n * count, plane)


def scalar_type(g: Geometry) -> ir.Type:
    return ir.FloatType() if g.itemsize == 4 else ir.DoubleType()


def pad_plane(b: ir.IRBuilder, padded: Padded, source: ir.Value, dst: ir.Value, h: int, w: int, top: int,
              left: int, fill: ir.Constant) -> None:
    """dst (rows × pitch) = the h × w plane at ``source`` shifted by (top, left), ``fill`` elsewhere: only the rows
    and columns the windows reach are written (static bounds), each once."""
    rows, pitch = padded.rows, padded.pitch
    lo_c, hi_c = min(left, pitch), min(left + w, pitch)  # padded columns holding the plane
    lo_r, hi_r = min(top, rows), min(top + h, rows)

    def fill_range(row: ir.Value, start: int, stop: int) -> None:
        if start < stop:
            with for_range(b, start, stop, name="fill") as k:
                b.store(fill, b.gep(row, [k], inbounds=True))

    fill_range(dst, 0, lo_r * pitch)
    fill_range(dst, max(hi_r, lo_r) * pitch, rows * pitch)
    if lo_r >= hi_r:
        return
    with for_range(b, lo_r, hi_r, name="r") as r:
        row = b.gep(dst, [b.mul(r, i64(pitch))], inbounds=True)
        src = b.gep(source, [b.mul(b.sub(r, i64(top)), i64(w))], inbounds=True)
        fill_range(row, 0, lo_c)
        fill_range(row, max(hi_c, lo_c), pitch)
        if lo_c < hi_c:
            with for_range(b, lo_c, hi_c, name="cp") as col:
                b.store(b.load(b.gep(src, [b.sub(col, i64(left))], inbounds=True)), b.gep(row, [col], inbounds=True))


def _accumulated_row(c: KernelContext, g: Geometry, x: Node, w: Node, n: ir.Value, o: ir.Value, first: ir.Value,
                     i: ir.Value, row_at: ir.Value, target: Node, start: ir.Value, epi: Epilogue,
                     per_channel: dict | None) -> None:
    """Output row i of plane (n, o): y's row = start, then + each tap row (valid kernel rows only; per kernel
    column its valid output columns), then the epilogue over the row."""
    b = c.builder
    ranges, j0, j1 = _columns(g)
    acc = c.elem(target, row_at)
    with for_range(b, 0, g.wo, name="init") as j:
        b.store(start, b.gep(acc, [j], inbounds=True))
    with for_range(b, 0, g.cg, name="c") as ch, for_range(b, 0, g.kh, name="p") as p:
        hi, ok = _input_row(b, g, i, p)
        with b.if_then(ok):
            plane_at = b.mul(b.add(b.mul(n, i64(g.c)), b.add(first, ch)), i64(g.h * g.w))
            xrow = c.elem(x, b.add(plane_at, b.mul(hi, i64(g.w))))
            wrow = c.elem(w, b.mul(b.add(b.mul(b.add(b.mul(o, i64(g.cg)), ch), i64(g.kh)), p), i64(g.kw)))
            row_taps = [b.load(b.gep(wrow, [i64(q)], inbounds=True)) for q in range(g.kw)]

            def add(j: ir.Value, qs: range) -> None:
                ptr = b.gep(acc, [j], inbounds=True)
                v = b.load(ptr)
                for q in qs:
                    xv = b.load(b.gep(xrow, [_column(b, g, j, q)], inbounds=True))
                    v = fma(b, row_taps[q], xv, v)
                b.store(v, ptr)

            if j0 < j1:
                with for_range(b, j0, j1, name="j") as j:
                    add(j, range(g.kw))
            for q, (lo, hi_q) in enumerate(ranges):
                for a, z in _edges(lo, hi_q, j0, j1):
                    with for_range(b, a, z, name="je") as j:
                        add(j, range(q, q + 1))
    if epi:
        with for_range(b, 0, g.wo, name="e") as j:
            epi.store(b, b.load(b.gep(acc, [j], inbounds=True)), b.add(row_at, j), per_channel)


def backward_input(ctx: KernelContext, node: Node, g: Geometry, gy: Node, w: Node) -> None:
    """dx = convᵀ(ḡ, w): one (image, input channel) plane of dx per chunk, zeroed, then every tap's
    contribution of the group's output channels scattered into it, in a fixed order."""
    ranges, _, _ = _columns(g)

    def plane(c: KernelContext, index: ir.Value) -> None:
        b = c.builder
        n, ch = b.udiv(index, i64(g.c)), b.urem(index, i64(g.c))
        local = b.urem(ch, i64(g.cg))
        first_o = b.mul(b.udiv(ch, i64(g.cg)), i64(g.og))
        dx = c.elem(node, b.mul(index, i64(g.h * g.w)))
        zero_fill(b, dx, g.h * g.w)
        with for_range(b, 0, g.og, name="o") as ol, for_range(b, 0, g.ho, name="i") as i, \
                for_range(b, 0, g.kh, name="p") as p:
            o = b.add(first_o, ol)
            hi, ok = _input_row(b, g, i, p)
            with b.if_then(ok):
                grow = c.elem(gy, b.add(b.mul(b.add(b.mul(n, i64(g.o)), o), i64(g.p)), b.mul(i, i64(g.wo))))
                dxrow = b.gep(dx, [b.mul(hi, i64(g.w))], inbounds=True)
                wrow = c.elem(w, b.mul(b.add(b.mul(b.add(b.mul(o, i64(g.cg)), local), i64(g.kh)), p), i64(g.kw)))
                for q, (lo, hi_q) in enumerate(ranges):
                    if lo >= hi_q:
                        continue
                    tap = b.load(b.gep(wrow, [i64(q)], inbounds=True))
                    with for_range(b, lo, hi_q, name="j") as j:
                        ptr = b.gep(dxrow, [_column(b, g, j, q)], inbounds=True)
                        gv = b.load(b.gep(grow, [j], inbounds=True))
                        b.store(fma(b, tap, gv, b.load(ptr)), ptr)

    ctx.parallel("planes", g.n * g.c, plane)


def _when(b: ir.IRBuilder, cond: ir.Value, inits: list[ir.Value],
          then: Callable[[ir.IRBuilder], list[ir.Value]]) -> list[ir.Value]:
    """``then(b)`` if cond else ``inits``, as values after the branch (phis)."""
    pre = b.block
    body = b.append_basic_block("when")
    done = b.append_basic_block("when.done")
    b.cbranch(cond, body, done)
    b.position_at_end(body)
    results = then(b)
    last = b.block
    b.branch(done)
    b.position_at_end(done)
    out = []
    for init, result in zip(inits, results):
        phi = b.phi(init.type)
        phi.add_incoming(init, pre)
        phi.add_incoming(result, last)
        out.append(phi)
    return out


def backward_weight(ctx: KernelContext, node: Node, g: Geometry, x: Node, gy: Node) -> None:
    """dw = Σ_{n,i,j} ḡ · x-window: one output channel's Cg·kh·kw weights per chunk; per (c, p) one pass over the
    images' rows with kw accumulators (the interior columns feed all of them in one loop, each tap's edge columns
    its own)."""
    ranges, j0, j1 = _columns(g)
    zero = ir.Constant(scalar_type(g), 0.0)

    def channel(c: KernelContext, o: ir.Value) -> None:
        b = c.builder
        first = b.mul(b.udiv(o, i64(g.og)), i64(g.cg))
        with for_range(b, 0, g.cg, name="c") as ch, for_range(b, 0, g.kh, name="p") as p:

            def image(b: ir.IRBuilder, n: ir.Value, accs: list[ir.Value]) -> list[ir.Value]:
                gplane = b.mul(b.add(b.mul(n, i64(g.o)), o), i64(g.p))
                xplane = b.mul(b.add(b.mul(n, i64(g.c)), b.add(first, ch)), i64(g.h * g.w))

                def row(b: ir.IRBuilder, i: ir.Value, accs: list[ir.Value]) -> list[ir.Value]:
                    hi, ok = _input_row(b, g, i, p)

                    def valid(b: ir.IRBuilder) -> list[ir.Value]:
                        grow = c.elem(gy, b.add(gplane, b.mul(i, i64(g.wo))))
                        xrow = c.elem(x, b.add(xplane, b.mul(hi, i64(g.w))))

                        def taps(qs: list[int], start: int) -> Callable[..., list[ir.Value]]:
                            def step(b: ir.IRBuilder, k: ir.Value, part: list[ir.Value]) -> list[ir.Value]:
                                j = b.add(k, i64(start))
                                gv = b.load(b.gep(grow, [j], inbounds=True))
                                return [b.fadd(a, b.fmul(gv, b.load(b.gep(xrow, [_column(b, g, j, q)], inbounds=True)),
                                                         flags=FAST), flags=FAST) for a, q in zip(part, qs)]
                            return step

                        out = list(accs)
                        if j0 < j1:
                            out = fold(b, j1 - j0, out, taps(list(range(g.kw)), j0), name="j")
                        for q, (lo, hi_q) in enumerate(ranges):
                            for a, z in _edges(lo, hi_q, j0, j1):
                                out[q] = fold(b, z - a, [out[q]], taps([q], a), name="je")[0]
                        return out

                    return _when(b, ok, accs, valid)

                return fold(b, g.ho, accs, row, name="i")

            sums = fold(b, g.n, [zero] * g.kw, image, name="n")
            dw = c.elem(node, b.mul(b.add(b.mul(b.add(b.mul(o, i64(g.cg)), ch), i64(g.kh)), p), i64(g.kw)))
            for q in range(g.kw):
                b.store(sums[q], b.gep(dw, [i64(q)], inbounds=True))

    ctx.parallel("channels", g.o, channel)
