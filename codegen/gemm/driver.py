"""The GEMM driver in LLVM IR: ``C (+)= op(A) · op(B)`` for static shapes, with transposed and batched forms.

Algorithm (GotoBLAS/BLIS-style) of one block of C::

    for jc in 0..N step nc:               # column block of B and C
      for pc in 0..K step kc:             # depth block; C accumulates from the second block on
        pack op(B)[pc:pc+kc, jc:jc+nc] into nr-wide panels Bp (zero-padded; kc x nc ~ L2 size)
        for ir in 0..M step mr:
          pack op(A)[ir:ir+mr, pc:pc+kc] into Ap (column-major micro-panel, stays in L1 across the panels)
          for jr in panels of Bp:
            micro-kernel: C[ir:ir+mr, jc+jr:jc+jr+nr] (+)= Ap · Bp[jr]

On one thread that block is the whole of C, for each batch item in turn (A, B, C advanced by per-operand batch
strides; 0 broadcasts). On several threads (``threads`` > 1, a compile-time count) C is cut into a grid of row
bands (multiples of ``mr``) × column slices (multiples of ``nr``) per batch item, and one parallel region
(``codegen.parallel``) runs the chunks, each the algorithm above on its band and slice with the full operands'
leading dimensions and its thread's own workspace. :func:`partition` picks the grid from a cost model: the
micro-kernel work of the busiest thread plus the packing every chunk repeats (a slice repacks A's rows, a band
repacks B's columns). ``K`` is never split, so every element of C is the same chain of FMAs over the same ``kc``
blocks whatever the grid: results are bitwise identical for every thread count.

``op(A) = Aᵀ`` and ``op(B) = Bᵀ`` only change how the packing routines read (strides / in-register transposes),
so no transpose is materialized. Edge tiles: rows past the last full ``mr`` tile use a kernel with fewer
accumulators (a small remainder is merged with the last full tile and split evenly, see :func:`row_tiles`),
columns past the last full ``nr`` panel a kernel whose last vector is loaded and stored with a lane mask, so no
access leaves the operands. The ``kc`` and ``nc`` blocks are balanced (``K = 784``: four blocks of 196, not
3 x 256 + 16). Micro-kernels and packing routines are shared by every GEMM of a module (compile time).

Packing reads memory the micro-kernels could not overlap with arithmetic; so each micro-kernel call also prefetches
(a cache line per k step, into L2) its share of what the next packing will read: the next B block's source, or,
when the caller packs B, the next row tile's A rows (a convolution's weights).

Workspace: per thread, the packed B block (``kc * nc`` elements) and one A micro-panel (``mr * kc``, plus one
vector of slack), together at most 512 KiB, in the 64-byte-aligned buffer the caller passes as ``W`` (never the
stack: a thread with a small stack must not overflow); :func:`workspace_bytes` gives its size.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import llvmlite.ir as ir

from codegen.gemm.blocking import (
    a_panel_bytes,
    balanced_block,
    chunk_workspace,
    packed_b_bytes,
    partial_sums_bytes,
    partition,
    row_tiles,
)
from codegen.gemm.config import GemmConfig, default_config, host_vector_bits
from codegen.gemm.layout import Layout
from codegen.gemm.microkernel import microkernel
from codegen.gemm.pack import pack_a, pack_b
from codegen.gemm.skinny import SKINNY_ROWS, emit_skinny
from codegen.gemm.store_epilogue import StoreEpilogue, apply_pass, operands_at
from codegen.gemm.stream import min_value, next_block, next_prepacked_block, next_tile
from codegen.llvm import I1, I8, I64, PTR, VOID, for_range, gep, i64
from codegen.parallel import Claim, region

# A caller's packer of op(B) blocks (``emit_gemm(pack_b=...)``): pack_b(builder, B, Bp, pc, col, kc, ncols) emits at
# ``builder`` the packing of op(B)[pc:pc+kc, col:col+ncols] into ``nr``-wide zero-padded panels,
# Bp[(j*kc + p)*nr + c] = op(B)[pc + p, col + j*nr + c] (0 for j*nr + c >= ncols), like :func:`pack.pack_b`; ``B`` is
# the batch item's B pointer (advanced by its batch stride only, never by ``col``), the others i64 values.
PackB = Callable[[ir.IRBuilder, ir.Value, ir.Value, ir.Value, ir.Value, ir.Value, ir.Value], ir.Value | None]
# A caller's packer of op(A) micro-panels (``emit_gemm(pack_a=...)``): pack_a(builder, A, Ap, pc, row, kc, rows) emits
# Ap[p*rows + r] = op(A)[row + r, pc + p] for p < kc, r < rows (``rows`` <= mr, a Python int), like
# :func:`pack.pack_a` (it may write up to one vector past rows*kc: the micro-panel has that slack); ``A`` is the batch
# item's A pointer (advanced by its batch stride only, never by ``row``).
PackA = Callable[[ir.IRBuilder, ir.Value, ir.Value, ir.Value, ir.Value, ir.Value, int], ir.Value | None]
# Either packer may instead return a pointer to where its block / micro-panel already lies in that layout (an operand
# packed once, at compile time: ``codegen.prepack``); the micro-kernels then read there and ``Bp`` / ``Ap`` are left
# alone. A pack_a that does so must carry the attribute ``prepacked = True``: the thread grid then keeps every row
# tile where :func:`row_tiles` of the whole ``m`` puts it (see :func:`partition`), the layout it was packed in.
# A pack_a with the attribute ``indirect = True`` writes an indirection record into ``Ap`` instead of a micro-panel
# (``codegen.gemm.microkernel``: the rows' addresses and the depth offsets' table at ``pc``), read by the
# indirect micro-kernels.


def reads_b_in_place(m: int, n: int, k: int, trans_b: bool, cfg: GemmConfig) -> bool:
    """Whether the micro-kernels read B's full panels in place (rows contiguous: not ``trans_b``) rather than
    packed: always when B's rows are contiguous. Packing B buys a contiguous panel, but the micro-kernel streams its
    panel from L2 either way (a ``kc x nr`` panel is L1's size), so the copy is pure cost, largest when few row
    tiles share it. Measured (1 thread, Zen 4, medians of interleaved rounds, bitwise equal results):
    8x512x784 98.5 → 64.0 us, 32x512x784 266 → 235, W1's 128x512x784 965 → 935, 128x256x512 315 → 302,
    784x512x128 and 1000³ within 1 %, 256x1024x784 (rows 4 KiB apart) equal."""
    return not trans_b and n >= cfg.nr


def _declare(module: ir.Module, name: str, internal: bool = False, origin: bool = False,
             scalar: bool = False, epilogue: StoreEpilogue | None = None) -> ir.Function:
    """``void name(A, B, C, W)``; with ``scalar`` one more, ``S`` (the scalar the product is scaled by); then the
    store epilogue's operands (``E0``, ``E1``, ...); with ``origin`` two more, the chunk's first row of op(A) and first
    column of op(B) (for a caller's packers, which address their operand by index rather than by pointer)."""
    labels = ["A", "B", "C", "W"] + (["S"] if scalar else [])
    if epilogue:
        labels += [f"E{i}" for i in range(epilogue.pointers())]
    fn = ir.Function(module, ir.FunctionType(VOID, [PTR] * len(labels) + ([I64, I64] if origin else [])),
                     name=name)
    fn.attributes.add("nounwind")
    if internal:
        fn.linkage = "internal"
    for arg, label in zip(fn.args, labels):
        arg.name = label
        arg.add_attribute("noalias")
    return fn


def emit_gemm(module: ir.Module, name: str, m: int, n: int, k: int, dtype: str = "float32", trans_a: bool = False,
              trans_b: bool = False, batch: int = 1, batch_strides: Sequence[int] | None = None,
              accumulate: bool = False, config: GemmConfig | None = None, threads: int = 1,
              lds: Sequence[int] | None = None, pack_a: PackA | None = None,
              pack_b: PackB | None = None, alpha: float | None = None, alpha_scalar: bool = False,
              b_in_place: bool = True, epilogue: StoreEpilogue | None = None, trans_c: bool = False) -> ir.Function:
    """Add ``void name(ptr noalias A, ptr noalias B, ptr noalias C, ptr noalias W)`` to ``module`` and return it;
    ``W`` is a 64-byte-aligned workspace of :func:`workspace_bytes` bytes (for the same sizes and ``threads``).

    Per batch item: ``C[m, n] (+)= op(A) · op(B)`` where ``A`` is ``m x k`` (``k x m`` when ``trans_a``), ``B`` is
    ``k x n`` (``n x k`` when ``trans_b``), all row-major and contiguous. ``batch_strides`` are element offsets
    between consecutive batch items of (A, B, C) — 0 broadcasts an operand; default: dense. With ``accumulate``
    the product is added to C instead of overwriting it. ``threads``: run on that many threads (bitwise the same
    result for every count). ``lds``: the leading dimensions (row strides, in elements) of A, B and C as stored,
    for operands that are blocks of larger matrices (default: contiguous). ``alpha``: ``C (+)= alpha·op(A)·op(B)``,
    the product scaled on registers by the micro-kernels before it meets C (with ``accumulate``: plain SGD's step
    ``W += -lr·xᵀδ`` written straight into the weight; the matrix-vector path is then not used). ``alpha_scalar``:
    the function takes a fifth argument ``S``, a pointer to one element s read at run time, and the scale is
    ``alpha·s`` (a learning rate that is state, not a constant). ``b_in_place``: read B's full panels where it
    lies when :func:`reads_b_in_place` allows (False: always pack B, for tests and comparisons).

    ``epilogue``: C's final values go through this chain (``codegen.gemm.store_epilogue``: bias, batch norm,
    residual, relu), applied by the micro-kernels on registers at the last depth block's store; the function then
    takes the chain's operands as further pointers after ``W`` (and ``S``), one per reading step: a row vector
    (advancing by ``m`` per batch item), a column vector (shared by the batch), the residual (laid out like C: C's
    leading dimension and batch stride; it must not be C's memory, which holds partial sums before the last depth
    block). The matrix-vector path and ``k == 0`` apply it as a pass over C instead.

    ``trans_c``: C is stored transposed — element (i, j) at ``C[j*ldc + i]`` (default ``ldc = m``), the residual
    likewise; the micro-kernels store each column of their tile as one vector at the last depth block
    (``codegen.gemm.transpose``; the partial sums before it stay in the workspace), so a product computed as
    yᵀ = op(A)·op(B) writes y itself. Not with ``accumulate``, nor an epilogue when ``k == 0``.

    ``pack_b``: the caller packs op(B)'s blocks (see :data:`PackB`) — B is then whatever that packer reads (an image
    for ``codegen.conv_pack``), never read by the GEMM itself; ``trans_b`` and B's leading dimension are ignored,
    and the unpacked matrix-vector path (``codegen.gemm.skinny``) is not used. ``pack_a`` likewise for op(A)'s
    micro-panels (:data:`PackA`).
    """
    if min(m, n, k, batch) < 0:
        raise ValueError(f"negative GEMM size m={m} n={n} k={k} batch={batch}")
    cfg = config or default_config(dtype, host_vector_bits())
    if cfg.dtype != dtype:
        raise ValueError(f"config is for {cfg.dtype}, GEMM asked for {dtype}")
    strides = tuple(batch_strides) if batch_strides is not None else (m * k, k * n, m * n)
    c_row = m if trans_c else n  # the length of C's rows as stored
    ld_a, ld_b, ld_c = tuple(lds) if lds is not None else (m if trans_a else k, k if trans_b else n, c_row)
    if min(ld_a - (m if trans_a else k), ld_b - (k if trans_b else n), ld_c - c_row) < 0:
        raise ValueError(f"leading dimensions {(ld_a, ld_b, ld_c)} are shorter than the rows they hold")
    if alpha_scalar and alpha is None:
        raise ValueError("alpha_scalar scales by alpha·s: give alpha (the constant factor) too")
    epilogue = epilogue or None  # an empty chain is none
    if trans_c and (accumulate or epilogue and k == 0):
        raise ValueError("a transposed C is written, not accumulated into, and takes a store epilogue only from "
                         "the micro-kernels (k > 0)")
    fn = _declare(module, name, scalar=alpha_scalar, epilogue=epilogue)
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    if m == 0 or n == 0 or batch == 0:
        b.ret_void()
        return fn
    s_arg = [fn.args[4]] if alpha_scalar else []
    e_args = list(fn.args[4 + len(s_arg):])
    layout = Layout(ld_a, ld_b, ld_c, trans_a, trans_b, accumulate, alpha, alpha_scalar,
                    b_in_place and reads_b_in_place(m, n, k, trans_b, cfg), epilogue, trans_c)
    if k == 0:
        if not accumulate:
            with for_range(b, 0, batch, name="t") as t, for_range(b, 0, m, name="zr") as r, \
                    for_range(b, 0, n, name="z") as z:
                at = b.add(b.mul(t, i64(strides[2])), layout.c_offset(b, r, z))
                b.store(ir.Constant(cfg.scalar, 0.0), gep(b, fn.args[2], at, cfg.scalar))
        if epilogue:
            apply_pass(b, cfg, epilogue, fn.args[2], e_args, m, n, ld_c, batch, strides[2])
        b.ret_void()
        return fn
    custom = pack_a is not None or pack_b is not None
    # matrix-vector products: no packing (codegen.gemm.skinny)
    if m <= SKINNY_ROWS and not custom and alpha is None and not trans_c:
        emit_skinny(module, b, name, cfg, list(fn.args[:3]), m, n, k, batch, strides, layout, threads, fn.args[3])
        if epilogue:  # C has at most SKINNY_ROWS rows: a pass over it costs little
            apply_pass(b, cfg, epilogue, fn.args[2], e_args, m, n, ld_c, batch, strides[2])
        b.ret_void()
        return fn
    grid = partition(m, n, k, batch, cfg, threads, global_tiles=getattr(pack_a, "prepacked", False))
    if grid is None:
        a, bm, c, w = fn.args[:4]
        with for_range(b, 0, batch, name="t") as t:
            offsets = [b.mul(t, i64(s)) for s in strides]
            e_at = operands_at(b, cfg, epilogue, e_args, b.mul(t, i64(m)), i64(0), offsets[2])
            _block(module, b, cfg, [gep(b, p, o, cfg.scalar) for p, o in zip((a, bm, c), offsets)] + s_arg + e_at,
                   w, m, n, k, layout, pack_a, pack_b)
        b.ret_void()
        return fn
    parts = {}
    for rows, cols in grid.shapes():
        part = _declare(module, f"{name}.part{rows}x{cols}", internal=True, origin=custom, scalar=alpha_scalar,
                        epilogue=epilogue)
        pb = ir.IRBuilder(part.append_basic_block("entry"))
        extra = part.args[4:]  # [S], [E0, E1, ...], [row0, col0]
        pointers = len(s_arg) + len(e_args)
        _block(module, pb, cfg, list(part.args[:3]) + list(extra[:pointers]), part.args[3], rows, cols, k, layout,
               pack_a, pack_b, tuple(extra[pointers:]) if custom else None)
        pb.ret_void()
        parts[rows, cols] = part
    chunk_bytes = chunk_workspace(grid, k, cfg, trans_c)
    a_rs, a_cs, b_rs, b_cs = layout.strides()

    def chunk(bb: ir.IRBuilder, index: ir.Value, values: list[ir.Value], claim: Claim) -> None:
        a, bm, c = values[:3]
        per_item = grid.rows * grid.cols
        t, rest = bb.udiv(index, i64(per_item)), bb.urem(index, i64(per_item))
        band, slice_ = bb.udiv(rest, i64(grid.cols)), bb.urem(rest, i64(grid.cols))
        row0, col0 = bb.mul(band, i64(grid.band)), bb.mul(slice_, i64(grid.width))
        a_at = bb.mul(t, i64(strides[0])) if pack_a is not None else \
            bb.add(bb.mul(t, i64(strides[0])), bb.mul(row0, i64(a_rs)))
        b_at = bb.mul(t, i64(strides[1])) if pack_b is not None else \
            bb.add(bb.mul(t, i64(strides[1])), bb.mul(col0, i64(b_cs)))
        c_at = bb.add(bb.mul(t, i64(strides[2])), layout.c_offset(bb, row0, col0))
        ops = [gep(bb, a, a_at, cfg.scalar), gep(bb, bm, b_at, cfg.scalar), gep(bb, c, c_at, cfg.scalar)]
        workspace = claim(chunk_bytes)
        rest = values[3:3 + len(s_arg)] + operands_at(bb, cfg, epilogue, values[3 + len(s_arg):],
                                                      bb.add(bb.mul(t, i64(m)), row0), col0, c_at)
        last_band = bb.icmp_unsigned("==", band, i64(grid.rows - 1))
        last_slice = bb.icmp_unsigned("==", slice_, i64(grid.cols - 1))

        def call(rows: int, cols: int) -> None:
            bb.call(parts[rows, cols], ops + [workspace] + rest + ([row0, col0] if custom else []))

        def by_width(rows: int) -> None:
            if grid.width == grid.last_width:
                call(rows, grid.width)
                return
            with bb.if_else(last_slice) as (last, other):
                with last:
                    call(rows, grid.last_width)
                with other:
                    call(rows, grid.width)

        if grid.band == grid.last_band:
            by_width(grid.band)
        else:
            with bb.if_else(last_band) as (last, other):
                with last:
                    by_width(grid.last_band)
                with other:
                    by_width(grid.band)

    def whole_workspace(nbytes: int) -> ir.Value:  # the threads' slices of W (workspace_bytes counts them)
        assert nbytes <= threads * chunk_bytes
        return fn.args[3]

    region(module, b, name, batch * grid.rows * grid.cols, threads, list(fn.args[:3]) + s_arg + e_args, chunk,
           whole_workspace)
    b.ret_void()
    return fn


def _block(module: ir.Module, b: ir.IRBuilder, cfg: GemmConfig, operands: list[ir.Value], w_arg: ir.Value, m: int,
           n: int, k: int, layout: Layout, custom_a: PackA | None = None, custom_b: PackB | None = None,
           origin: tuple[ir.Value, ir.Value] | None = None) -> None:
    """Emit at ``b`` the blocked GEMM of one ``m x n`` block of C over the whole depth ``k`` (``k`` > 0). With
    ``custom_a`` / ``custom_b`` the caller's packers fill the A micro-panels and B blocks, told their first row /
    column in op(A) / op(B): ``origin`` (the block's first row and column; default 0, 0) + the tile's."""
    row0, col0 = origin if origin is not None else (None, None)
    scale = []  # the micro-kernels' alpha argument: the constant, or times the scalar S read once here
    if layout.alpha is not None:
        factor = ir.Constant(cfg.scalar, layout.alpha)
        scale = [b.fmul(factor, b.load(operands[3], typ=cfg.scalar)) if layout.alpha_scalar else factor]
    a_t, b_t, c_t = operands[:3]
    epilogue = layout.epilogue
    e_ptrs = operands[3 + layout.alpha_scalar:]  # the store epilogue's operands at this block's origin
    scalar = cfg.scalar
    kc = balanced_block(k, cfg.kc, cfg.vec)
    nc = balanced_block(n, cfg.nc, cfg.nr)
    a_rs, a_cs, b_rs, b_cs = layout.strides()
    packer_b = pack_b(module, cfg, layout.trans_b) if custom_b is None else None
    direct_b = custom_b is None and layout.direct_b
    indirect_a = getattr(custom_a, "indirect", False)  # its "micro-panels" are indirection records
    m_full, tail = row_tiles(m, cfg.mr)
    n_rem = n % cfg.nr
    ld_a, ld_b, ld_c = i64(layout.ld_a), i64(layout.ld_b), i64(layout.ld_c)
    bp = w_arg  # kc * nc elements, then the A micro-panel at the next 64-byte boundary
    ap = b.gep(w_arg, [i64(packed_b_bytes(kc, nc, cfg))], inbounds=True, source_etype=I8)
    # a transposed C's partial sums (m rows nc apart) after the A micro-panel; one depth block needs none
    partial = b.gep(ap, [i64(a_panel_bytes(kc, cfg) if partial_sums_bytes(m, n, k, cfg) else 0)], inbounds=True,
                    source_etype=I8) if layout.trans_c else None
    with for_range(b, 0, n, nc, name="jc") as jc:
        ncur = min_value(b, i64(nc), b.sub(i64(n), jc))
        npanels = b.sdiv(ncur, i64(cfg.nr))
        has_rem = b.icmp_signed("<", b.mul(npanels, i64(cfg.nr)), ncur)
        with for_range(b, 0, k, kc, name="pc") as pc:
            kcur = min_value(b, i64(kc), b.sub(i64(k), pc))
            load_c = ir.Constant(I1, 1) if layout.accumulate else b.icmp_signed(">", pc, i64(0))
            # the last depth block
            final = [b.icmp_signed(">=", b.add(pc, kcur), i64(k))] if epilogue or layout.trans_c else []
            b_panels = bp  # where the micro-kernels read the block: the workspace, or a prepacked operand's block
            panel_stride = b.mul(kcur, i64(cfg.nr))
            rem_panel = None  # where the last, partial panel lies (None: after the full ones, in b_panels)
            if custom_b is not None:
                b_panels = custom_b(b, b_t, bp, pc, jc if col0 is None else b.add(col0, jc), kcur, ncur) or bp
            elif direct_b:  # full panels read in place, row p at b_blk + p*ld_b; only the partial one is packed
                b_panels = gep(b, b_t, b.add(b.mul(pc, ld_b), jc), scalar)
                panel_stride, rem_panel = i64(cfg.nr), bp
                if n_rem:
                    with b.if_then(has_rem):
                        full_cols = b.mul(npanels, i64(cfg.nr))
                        b.call(packer_b, [gep(b, b_panels, full_cols, scalar), bp, kcur, b.sub(ncur, full_cols), ld_b])
            else:
                b_blk = gep(b, b_t, b.add(b.mul(pc, i64(b_rs)), b.mul(jc, i64(b_cs))), scalar)
                b.call(packer_b, [b_blk, bp, kcur, ncur, ld_b])
            a_pc = gep(b, a_t, b.mul(pc, i64(a_cs)), scalar)
            c_jc = gep(b, c_t, layout.c_offset(b, i64(0), jc), scalar)
            calls_per_tile = b.add(npanels, b.zext(has_rem, I64))
            ntiles = m_full // cfg.mr + len(tail)
            if custom_b is None:  # stream the next B block's source into L2 (its packing then reads the cache)
                next_b = next_block(b, cfg, layout, b_t, jc, pc, kc, nc, k, n, b.mul(i64(ntiles), calls_per_tile),
                                     kcur)
            elif getattr(custom_b, "prepacked", False):  # the next prepacked block itself, as it lies
                next_b = next_prepacked_block(b, cfg, custom_b, b_t, bp, jc, col0, pc, kc, nc, k, n,
                                               b.mul(i64(ntiles), calls_per_tile))

            def row_tile(row: ir.Value, rows: int, tile: ir.Value) -> None:
                a_panel = ap
                if custom_a is not None:
                    a_panel = custom_a(b, a_t, ap, pc, row if row0 is None else b.add(row0, row), kcur, rows) or ap
                else:
                    b.call(pack_a(module, cfg, rows, layout.trans_a),
                           [gep(b, a_pc, b.mul(row, i64(a_rs)), scalar), ap, kcur, ld_a])
                c_row = gep(b, c_jc, layout.c_offset(b, row, i64(0)), scalar)
                scaled = layout.alpha is not None
                full = microkernel(module, cfg, rows, cfg.nr, scaled, strided_b=direct_b, indirect_a=indirect_a,
                                   epilogue=epilogue, trans_c=layout.trans_c)

                def tile_epilogue(jr: ir.Value) -> list[ir.Value]:  # final, [Y, ldy], the operands at the tile
                    col = b.add(jc, b.mul(jr, i64(cfg.nr)))
                    y_tile = [gep(b, c_row, layout.c_offset(b, i64(0), b.mul(jr, i64(cfg.nr))), scalar), ld_c] \
                        if layout.trans_c else []
                    return final + y_tile + operands_at(b, cfg, epilogue, e_ptrs, row, col,
                                                        layout.c_offset(b, row, col))

                def c_tile(jr: ir.Value) -> ir.Value:  # where the tile at (row, jc + jr·nr) is stored (partial sums)
                    if layout.trans_c:
                        return gep(b, partial, b.add(b.mul(row, i64(nc)), b.mul(jr, i64(cfg.nr))), scalar)
                    return gep(b, c_row, b.mul(jr, i64(cfg.nr)), scalar)
                c_ld = i64(nc) if layout.trans_c else ld_c
                b_step = [ld_b] if direct_b else []
                if custom_b is None or getattr(custom_b, "prepacked", False):
                    first_call = b.mul(tile, calls_per_tile)
                    stream = lambda jr: next_b(b.add(first_call, jr))  # noqa: E731
                elif custom_a is None:  # B is the caller's: stream the next row tile's A rows instead
                    stream = next_tile(b, cfg, layout, a_t, row, rows, jc, pc, kc, nc, k, m, n, calls_per_tile)
                else:
                    stream = lambda jr: [a_t, i64(0), i64(1), i64(0)]  # noqa: E731  (nothing to fetch)
                with for_range(b, 0, npanels, name="jr") as jr:
                    b.call(full, [a_panel, gep(b, b_panels, b.mul(jr, panel_stride), scalar), c_tile(jr), c_ld,
                                  kcur, load_c]
                           + stream(jr) + b_step + scale + tile_epilogue(jr))
                if n_rem:
                    with b.if_then(has_rem):
                        b.call(microkernel(module, cfg, rows, n_rem, scaled, indirect_a=indirect_a,
                                           epilogue=epilogue, trans_c=layout.trans_c),
                               [a_panel, rem_panel or gep(b, b_panels, b.mul(npanels, panel_stride), scalar),
                                c_tile(npanels), c_ld, kcur, load_c]
                               + stream(npanels) + scale + tile_epilogue(npanels))

            if m_full:
                with for_range(b, 0, m_full, cfg.mr, name="ir") as row:
                    row_tile(row, cfg.mr, b.sdiv(row, i64(cfg.mr)))
            start = m_full
            for i, rows in enumerate(tail):
                row_tile(i64(start), rows, i64(m_full // cfg.mr + i))
                start += rows
