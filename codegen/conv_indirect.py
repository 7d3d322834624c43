"""Indirect convolution: yᵀ = im2col(x)ᵀ · Wᵀ with the GEMM's A operand read straight from the image.

With the image zero-padded to the window's reach (``Hp × Wp`` per channel; the image itself when no padding is
needed), column k = (c·kh + p)·kw + q of output pixel j = ho·Wo + wo is one element of it::

    A[j, k] = xpad[pix(j) + off[k]],   pix(j) = ho·sh·Wp + wo·sw,   off[k] = c·Hp·Wp + p·dh·Wp + q·dw

so no column is ever packed: the GEMM's A "micro-panel" for a tile of pixels is an indirection record (the rows'
addresses ``xpad + pix(j)``, then the address of ``off`` at the block's depth), and the indirect micro-kernels
(``codegen.gemm.microkernel``, ``indirect_a``) load each broadcast through it — one extra load of ``off[k]`` per
depth step, shared by the tile's rows. Any stride and dilation; tiles may span output rows. B = Wᵀ is packed by
the GEMM (or once at load, ``codegen.prepack``, in a frozen program); the micro-kernels store the product yᵀ
(P × O) into y transposed at the last depth block, bias and epilogue on their registers, as ``codegen.conv``'s
transposed implicit path does (``emit_gemm(trans_c=True)``). Compared with packing the image into panels, the copy
left is the padded image (when padding is needed).
"""

from __future__ import annotations

import llvmlite.ir as ir
import numpy as np

from codegen.conv_geometry import SCRATCH_BYTES, Geometry
from codegen.gemm.config import GemmConfig
from codegen.gemm.driver import PackA
from codegen.llvm import I32, I64, for_range, gep, i64

PADDED_BYTES = 4 * SCRATCH_BYTES  # at most this much padded image per image in scratch
BLOCK_BYTES = 128 * 1024  # the part of yᵀ one GEMM writes (whole output rows; it stays in L2 over the depth)
BLOCK_PIXELS = 128  # but at least this many pixels (the GEMM re-reads Wᵀ for every block)


def extent(g: Geometry) -> tuple[int, int]:
    """(rows, columns) of the padded image the windows reach: the top-left pad, then as far as the last window."""
    return (g.ho - 1) * g.sh + (g.kh - 1) * g.dh + 1, (g.wo - 1) * g.sw + (g.kw - 1) * g.dw + 1


def needs_padding(g: Geometry) -> bool:
    """Whether some window reaches outside x (then the windows read a zero-padded copy)."""
    hp, wp = extent(g)
    return g.top > 0 or g.left > 0 or hp > g.h or wp > g.w


def pitches(g: Geometry) -> tuple[int, int]:
    """(row pitch, plane pitch) in elements of the image the GEMM reads: the padded copy, or x itself."""
    if needs_padding(g):
        hp, wp = extent(g)
        return wp, hp * wp
    return g.w, g.h * g.w


def applies(g: Geometry) -> bool:
    """One group, yᵀ (the size of the partial sums between depth blocks) within the scratch budget, the padded
    image within ``PADDED_BYTES`` and every offset an i32."""
    row, plane = pitches(g)
    return (g.groups == 1 and g.o * g.p * g.itemsize <= SCRATCH_BYTES and g.c * plane < 2 ** 31
            and (not needs_padding(g) or g.c * plane * g.itemsize <= PADDED_BYTES))


def block_rows(g: Geometry, depth_block: int) -> int:
    """Output rows per GEMM: all of them when the GEMM has one depth block (``Kg <= depth_block``: yᵀ is then
    written once, never re-read); else as many as keep its part of yᵀ within ``BLOCK_BYTES``, but at least
    ``BLOCK_PIXELS`` pixels (each block re-reads all of Wᵀ; ResNet-50's 256 → 1024 1×1 at 14×14 in blocks of two
    rows: 1.16 ms, one GEMM 1.00)."""
    if g.kg <= depth_block:
        return g.ho
    rows = max(BLOCK_BYTES // (g.wo * g.o * g.itemsize), -(-BLOCK_PIXELS // g.wo))
    return max(1, min(g.ho, rows))


def padded_elements(g: Geometry) -> int:
    """Scratch elements of the padded image (0 when x is read as it is)."""
    return g.c * pitches(g)[1] if needs_padding(g) else 0


def pad_image(b: ir.IRBuilder, g: Geometry, x: ir.Value, xpad: ir.Value) -> None:
    """xpad[c, hp, wp] = x[c, hp - top, wp - left], 0 outside x, for the padded extent (typed pointers to one
    image): each padded row is a zero run, a copy of the image row and a zero run, or all zeros."""
    hp, wp = extent(g)
    lo, hi = min(g.left, wp), min(wp, g.left + g.w)  # the columns that come from x
    zero = ir.Constant(xpad.type.pointee, 0.0)
    with for_range(b, 0, g.c * hp, name="prow") as row:
        c, r = b.udiv(row, i64(hp)), b.urem(row, i64(hp))
        h = b.sub(r, i64(g.top))
        dst = b.gep(xpad, [b.mul(row, i64(wp))], inbounds=True)
        inside = b.and_(b.icmp_signed(">=", h, i64(0)), b.icmp_signed("<", h, i64(g.h)))
        with b.if_else(inside) as (copy, blank):
            with copy:
                src = b.gep(x, [b.add(b.mul(c, i64(g.h * g.w)), b.mul(h, i64(g.w)))], inbounds=True)
                with for_range(b, 0, lo, name="pl") as j:
                    b.store(zero, b.gep(dst, [j], inbounds=True))
                with for_range(b, lo, hi, name="pc") as j:
                    b.store(b.load(b.gep(src, [b.sub(j, i64(g.left))], inbounds=True)),
                            b.gep(dst, [j], inbounds=True))
                with for_range(b, hi, wp, name="pr") as j:
                    b.store(zero, b.gep(dst, [j], inbounds=True))
            with blank:
                with for_range(b, 0, wp, name="pz") as j:
                    b.store(zero, b.gep(dst, [j], inbounds=True))


def _offsets(module: ir.Module, g: Geometry) -> ir.GlobalVariable:
    """The i32 table off[k] of the geometry (a constant shared in the module)."""
    row, plane = pitches(g)
    name = f"graphc.conv.indirect.off.{g.c}_{g.kh}_{g.kw}_{g.dh}_{g.dw}_{row}_{plane}"
    existing = module.globals.get(name)
    if existing is not None:
        return existing
    c, p, q = np.meshgrid(np.arange(g.c), np.arange(g.kh), np.arange(g.kw), indexing="ij")
    table = (c * plane + p * g.dh * row + q * g.dw).ravel().astype(np.int64)
    ty = ir.ArrayType(I32, table.size)
    var = ir.GlobalVariable(module, ty, name)
    var.initializer = ir.Constant(ty, [int(v) for v in table])
    var.global_constant = True
    var.linkage = "internal"
    return var


def packer(module: ir.Module, g: Geometry, cfg: GemmConfig) -> PackA:
    """The ``emit_gemm(pack_a=...)`` callback of yᵀ = im2col(x)ᵀ · Wᵀ: for the tile of ``rows`` pixels from
    ``row`` at depth ``pc`` it writes the indirection record into the micro-panel's space — the rows' addresses
    in the image the GEMM is given as A (``xpad + pix(j)``), then at index ``mr`` the address of ``off[pc]``."""
    offsets = _offsets(module, g)
    row_pitch = pitches(g)[0]

    def pack(b: ir.IRBuilder, image: ir.Value, record: ir.Value, pc: ir.Value, row: ir.Value, kc: ir.Value,
             rows: int) -> None:
        base = b.ptrtoint(image, I64)
        for r in range(rows):
            j = b.add(row, i64(r))
            ho, wo = b.udiv(j, i64(g.wo)), b.urem(j, i64(g.wo))
            pix = b.add(b.mul(ho, i64(g.sh * row_pitch)), b.mul(wo, i64(g.sw)))
            b.store(b.add(base, b.mul(pix, i64(cfg.itemsize))), gep(b, record, i64(r), I64))
        table = b.gep(offsets, [ir.Constant(I32, 0), pc], inbounds=True)
        b.store(b.ptrtoint(table, I64), gep(b, record, i64(cfg.mr), I64))

    pack.indirect = True  # type: ignore[attr-defined]
    return pack
