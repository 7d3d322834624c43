"""The GEMM driver in LLVM IR: ``C (+)= op(A) · op(B)`` for static shapes, with transposed and batched forms.

Algorithm (GotoBLAS/BLIS-style, one thread)::

    for each batch item t:                  # A, B, C advanced by per-operand batch strides (0 = broadcast)
      for jc in 0..N step nc:               # column block of B and C
        for pc in 0..K step kc:             # depth block; C accumulates from the second block on
          pack op(B)[pc:pc+kc, jc:jc+nc] into nr-wide panels Bp (zero-padded; kc x nc ~ L2 size)
          for ir in 0..M step mr:
            pack op(A)[ir:ir+mr, pc:pc+kc] into Ap (column-major micro-panel, stays in L1 across the panels)
            for jr in panels of Bp:
              micro-kernel: C[ir:ir+mr, jc+jr:jc+jr+nr] (+)= Ap · Bp[jr]

``op(A) = Aᵀ`` and ``op(B) = Bᵀ`` only change how the packing routines read (strides / in-register transposes),
so no transpose is materialized. Edge tiles: rows past the last full ``mr`` tile use a kernel with fewer
accumulators (a small remainder is merged with the last full tile and split evenly, see :func:`row_tiles`),
columns past the last full ``nr`` panel a kernel whose last vector is loaded and stored with a lane mask, so no
access leaves the operands. The ``kc`` and ``nc`` blocks are balanced (``K = 784``: four blocks of 196, not
3 x 256 + 16). Micro-kernels and packing routines are shared by every GEMM of a module (compile time).

Workspace: the packed B block (``kc * nc`` elements) and one A micro-panel (``mr * kc``, plus one vector of slack),
together at most 512 KiB, in the 64-byte-aligned buffer the caller passes as ``W`` (never the stack: a thread with a
small stack must not overflow); :func:`workspace_bytes` gives its size for given sizes.
"""

from __future__ import annotations

from collections.abc import Sequence

import llvmlite.ir as ir

from codegen.gemm.config import GemmConfig, default_config, host_vector_bits
from codegen.gemm.microkernel import microkernel
from codegen.gemm.pack import pack_a, pack_b
from codegen.llvm import I1, PTR, VOID, for_range, gep, i64
from codegen.parallel import Claim, region

PACK_PANELS = 4  # B panels per parallel packing chunk


def _balanced(total: int, limit: int, multiple: int = 1) -> int:
    """The smallest block size (a multiple of ``multiple``) that splits ``total`` into as few blocks as ``limit``."""
    blocks = max(1, -(-total // limit))
    size = -(-total // blocks)
    return min(limit, -(-size // multiple) * multiple)


def emit_gemm(module: ir.Module, name: str, m: int, n: int, k: int, dtype: str = "float32", trans_a: bool = False,
              trans_b: bool = False, batch: int = 1, batch_strides: Sequence[int] | None = None,
              accumulate: bool = False, config: GemmConfig | None = None, threads: int = 1) -> ir.Function:
    """Add ``void name(ptr noalias A, ptr noalias B, ptr noalias C, ptr noalias W)`` to ``module`` and return it;
    ``W`` is a 64-byte-aligned workspace of :func:`workspace_bytes` bytes.

    Per batch item: ``C[m, n] (+)= op(A) · op(B)`` where ``A`` is ``m x k`` (``k x m`` when ``trans_a``), ``B`` is
    ``k x n`` (``n x k`` when ``trans_b``), all row-major and contiguous. ``batch_strides`` are element offsets
    between consecutive batch items of (A, B, C) — 0 broadcasts an operand; default: dense. With ``accumulate``
    the product is added to C instead of overwriting it. With ``threads`` > 1 each B block is packed and its row
    tiles computed on that many threads (``codegen.parallel``): every C tile is still computed by the same
    micro-kernel from the same packed data, so results are bitwise the same for every thread count.
    """
    if min(m, n, k, batch) < 0:
        raise ValueError(f"negative GEMM size m={m} n={n} k={k} batch={batch}")
    cfg = config or default_config(dtype, host_vector_bits())
    if cfg.dtype != dtype:
        raise ValueError(f"config is for {cfg.dtype}, GEMM asked for {dtype}")
    sa, sb, sc = tuple(batch_strides) if batch_strides is not None else (m * k, k * n, m * n)
    fn = ir.Function(module, ir.FunctionType(VOID, [PTR, PTR, PTR, PTR]), name=name)
    fn.attributes.add("nounwind")
    for arg, label in zip(fn.args, "ABCW"):
        arg.name = label
        arg.add_attribute("noalias")
    a_arg, b_arg, c_arg, w_arg = fn.args
    builder = ir.IRBuilder(fn.append_basic_block("entry"))
    if m == 0 or n == 0 or batch == 0:
        builder.ret_void()
        return fn
    scalar = cfg.scalar
    if k == 0:
        if not accumulate:
            with for_range(builder, 0, batch, name="t") as t:
                with for_range(builder, 0, m * n, name="z") as z:
                    builder.store(ir.Constant(scalar, 0.0), gep(builder, c_arg, builder.add(builder.mul(t, i64(sc)), z),
                                                                 scalar))
        builder.ret_void()
        return fn

    kc = _balanced(k, cfg.kc, cfg.vec)
    nc = _balanced(n, cfg.nc, cfg.nr)
    a_rs, a_cs = (1, m) if trans_a else (k, 1)
    b_rs, b_cs = (1, k) if trans_b else (n, 1)
    packer_b = pack_b(module, cfg, trans_b)
    m_full, tail = row_tiles(m, cfg.mr)
    n_rem = n % cfg.nr
    ld_a, ld_b, ld_c = i64(m if trans_a else k), i64(k if trans_b else n), i64(n)

    b = builder
    bp = w_arg  # kc * nc elements, then the A micro-panel at the next 64-byte boundary (then one per thread)
    panel_bytes = _panel_bytes(kc, cfg)
    ap = b.gep(w_arg, [i64(_packed_b_bytes(kc, nc, cfg))], inbounds=True, source_etype=ir.IntType(8))
    claimed = [_packed_b_bytes(kc, nc, cfg) + panel_bytes]

    def claim(nbytes: int) -> ir.Value:  # the per-thread A panels of the parallel row tiles
        offset = claimed[0]
        claimed[0] += -(-nbytes // 64) * 64
        return b.gep(w_arg, [i64(offset)], inbounds=True, source_etype=ir.IntType(8))

    def row_tile(bb: ir.IRBuilder, row: ir.Value, rows: int, panel: ir.Value, block: list[ir.Value]) -> None:
        """Pack op(A)'s rows row .. row + rows into ``panel``, then one micro-kernel per panel of the B block."""
        a_pc, bp_, c_jc, kcur, npanels, has_rem, load_c = block
        panel_stride = bb.mul(kcur, i64(cfg.nr))
        bb.call(pack_a(module, cfg, rows, trans_a), [gep(bb, a_pc, bb.mul(row, i64(a_rs)), scalar), panel, kcur,
                                                      ld_a])
        c_row = gep(bb, c_jc, bb.mul(row, ld_c), scalar)
        full = microkernel(module, cfg, rows, cfg.nr)
        with for_range(bb, 0, npanels, name="jr") as jr:
            bb.call(full, [panel, gep(bb, bp_, bb.mul(jr, panel_stride), scalar),
                           gep(bb, c_row, bb.mul(jr, i64(cfg.nr)), scalar), ld_c, kcur, load_c])
        if n_rem:
            with bb.if_then(has_rem):
                bb.call(microkernel(module, cfg, rows, n_rem),
                        [panel, gep(bb, bp_, bb.mul(npanels, panel_stride), scalar),
                         gep(bb, c_row, bb.mul(npanels, i64(cfg.nr)), scalar), ld_c, kcur, load_c])

    def pack_columns(bb: ir.IRBuilder, chunk: ir.Value, values: list[ir.Value], _claim: Claim) -> None:
        """One chunk of the B block's packing: PACK_PANELS panels (the last chunk stops at the block's end)."""
        b_blk, bp_, kcur, ncur = values
        col0 = bb.mul(chunk, i64(PACK_PANELS * cfg.nr))
        with bb.if_then(bb.icmp_signed("<", col0, ncur)):
            cols = _min(bb, i64(PACK_PANELS * cfg.nr), bb.sub(ncur, col0))
            src, dst = gep(bb, b_blk, bb.mul(col0, i64(b_cs)), scalar), gep(bb, bp_, bb.mul(col0, kcur), scalar)
            bb.call(packer_b, [src, dst, kcur, cols, ld_b])

    with for_range(b, 0, batch, name="t") as t:
        a_t = gep(b, a_arg, b.mul(t, i64(sa)), scalar)
        b_t = gep(b, b_arg, b.mul(t, i64(sb)), scalar)
        c_t = gep(b, c_arg, b.mul(t, i64(sc)), scalar)
        with for_range(b, 0, n, nc, name="jc") as jc:
            ncur = _min(b, i64(nc), b.sub(i64(n), jc))
            npanels = b.sdiv(ncur, i64(cfg.nr))
            has_rem = b.icmp_signed("<", b.mul(npanels, i64(cfg.nr)), ncur)
            with for_range(b, 0, k, kc, name="pc") as pc:
                kcur = _min(b, i64(kc), b.sub(i64(k), pc))
                load_c = ir.Constant(I1, 1) if accumulate else b.icmp_signed(">", pc, i64(0))
                b_blk = gep(b, b_t, b.add(b.mul(pc, i64(b_rs)), b.mul(jc, i64(b_cs))), scalar)
                if threads > 1:
                    pack_chunks = -(-nc // (PACK_PANELS * cfg.nr))
                    region(module, b, f"{name}.packb", pack_chunks, threads, [b_blk, bp, kcur, ncur], pack_columns,
                           claim)
                else:
                    b.call(packer_b, [b_blk, bp, kcur, ncur, ld_b])
                block = [gep(b, a_t, b.mul(pc, i64(a_cs)), scalar), bp, gep(b, c_t, jc, scalar), kcur, npanels,
                         has_rem, load_c]
                tiles = m_full // cfg.mr
                if threads > 1 and tiles > 1:
                    region(module, b, f"{name}.rows", tiles, threads, block,
                           lambda bb, tile, values, cl: row_tile(bb, bb.mul(tile, i64(cfg.mr)), cfg.mr,
                                                                 cl(panel_bytes), values), claim)
                elif m_full:
                    with for_range(b, 0, m_full, cfg.mr, name="ir") as row:
                        row_tile(b, row, cfg.mr, ap, block)
                start = m_full
                for rows in tail:
                    row_tile(b, i64(start), rows, ap, block)
                    start += rows
    b.ret_void()
    return fn


def row_tiles(m: int, mr: int) -> tuple[int, list[int]]:
    """Rows covered by full ``mr`` tiles, then the heights of the edge tiles.

    A remainder under ``mr / 2`` would leave too few independent accumulators to hide the FMA latency, so it
    is merged with the last full tile and the pair split evenly (M = 128, mr = 6: 20 tiles of 6, then 4 + 4)."""
    full, rem = m - m % mr, m % mr
    if rem == 0:
        return full, []
    if 2 * rem >= mr or full == 0:
        return full, [rem]
    rows = mr + rem
    return full - mr, [rows - rows // 2, rows // 2]


def _min(builder: ir.IRBuilder, x: ir.Value, y: ir.Value) -> ir.Value:
    return builder.select(builder.icmp_signed("<", x, y), x, y)


def _packed_b_bytes(kc: int, nc: int, cfg: GemmConfig) -> int:
    return -(-kc * nc * cfg.itemsize // 64) * 64


def _panel_bytes(kc: int, cfg: GemmConfig) -> int:
    """One packed A micro-panel (``mr x kc`` plus a vector of slack), rounded up to 64 bytes."""
    return -(-(kc * cfg.mr + cfg.vec) * cfg.itemsize // 64) * 64


def workspace_bytes(m: int, n: int, k: int, dtype: str = "float32", config: GemmConfig | None = None,
                    threads: int = 1) -> int:
    """Bytes of the workspace ``W`` the GEMM needs for these sizes (a multiple of 64): the packed B block (rounded
    up to 64 bytes) and the A micro-panel with one vector of slack, plus one more panel per thread when the row
    tiles run in parallel."""
    cfg = config or default_config(dtype, host_vector_bits())
    if min(m, n, k) <= 0:
        return 0
    kc = _balanced(k, cfg.kc, cfg.vec)
    parallel_rows = threads > 1 and row_tiles(m, cfg.mr)[0] // cfg.mr > 1
    panels = 1 + (threads if parallel_rows else 0)
    return _packed_b_bytes(kc, _balanced(n, cfg.nc, cfg.nr), cfg) + panels * _panel_bytes(kc, cfg)
