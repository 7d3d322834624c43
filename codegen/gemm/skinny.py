"""GEMMs with very few rows of C (matrix-vector products: a classifier at batch 1), without packing.

Packing op(B) costs about as much per element as the few multiply-adds each packed element then feeds when C has
one or two rows (a 1 × 1280 · 1280 × 1000 classifier ran at 4 GFLOP/s through the blocked GEMM), so here op(B) is
read once, where it lies. C is cut into column blocks, one chunk each (parallel over the program's threads; every
element's sum has the same order whatever the blocks, so results are the same for every thread count):

- untransposed B (``B[p, j]`` at ``p·ld + j``): per row i of C, the block of C (zeroed, or kept with
  ``accumulate``) gets ``C += A[i, p] · B[p, block]`` for p = 0 .. K-1 (``llvm.fma``), B's row segments read
  one after the other (whole rows when one thread takes them all: one sequential stream, memory-bound);
- transposed B (``op(B)[p, j] = B[j, p]``, rows of B contiguous along p): per (i, j), a vector of partial sums
  over p in steps of one vector (a masked last step), then the lanes added in a fixed order.

Then C = that (or C + it with ``accumulate``). A partial last vector is loaded and stored with a lane mask.
"""

from __future__ import annotations

import llvmlite.ir as ir

from codegen.gemm.config import GemmConfig
from codegen.gemm.microkernel import splat, vector_suffix
from codegen.llvm import I32, for_range, gep, i64, intrinsic, load_first, store_first
from codegen.parallel import Claim, region

SKINNY_ROWS = 2  # C with at most this many rows goes here
BLOCK = 16  # vectors of C columns per chunk of dot products
C_BLOCK_BYTES = 32 << 10  # a streamed chunk's block of C (it stays in L1 while B streams past)


class _Vectors:
    """Vector loads and stores of ``cfg``'s type, whole or the first ``lanes`` lanes (nothing past them touched)."""

    def __init__(self, module: ir.Module, cfg: GemmConfig) -> None:
        self.cfg = cfg
        self.fma = intrinsic(module, f"llvm.fma.{vector_suffix(cfg)}", cfg.vector, [cfg.vector] * 3)

    def load(self, b: ir.IRBuilder, ptr: ir.Value, lanes: int) -> ir.Value:
        return load_first(b, ptr, self.cfg.vector, lanes)

    def store(self, b: ir.IRBuilder, value: ir.Value, ptr: ir.Value, lanes: int) -> None:
        store_first(b, value, ptr, lanes)


def emit_skinny(module: ir.Module, b: ir.IRBuilder, name: str, cfg: GemmConfig, operands: list[ir.Value],
                m: int, n: int, k: int, batch: int, strides: tuple[int, ...], layout: object, threads: int,
                workspace: ir.Value) -> None:
    """C (+)= op(A) · op(B) for ``m <= SKINNY_ROWS`` (see the module docstring); ``layout`` is the driver's
    :class:`~codegen.gemm.layout.Layout`."""
    a_rs, a_cs, b_rs, b_cs = layout.strides()  # type: ignore[attr-defined]
    width = _chunk_width(cfg, n, threads, streamed=b_cs == 1)
    blocks = -(-n // width)
    vectors = _Vectors(module, cfg)

    def chunk(bb: ir.IRBuilder, index: ir.Value, values: list[ir.Value], _claim: Claim) -> None:
        a, bm, c = values
        t, blk = bb.udiv(index, i64(blocks)), bb.urem(index, i64(blocks))
        col0 = bb.mul(blk, i64(width))
        a = gep(bb, a, bb.mul(t, i64(strides[0])), cfg.scalar)
        bm = gep(bb, bm, bb.mul(t, i64(strides[1])), cfg.scalar)
        c = gep(bb, c, bb.mul(t, i64(strides[2])), cfg.scalar)
        last = n - (blocks - 1) * width
        if last == width:
            _block(bb, cfg, vectors, a, bm, c, col0, width, m, k, a_rs, a_cs, b_rs, b_cs, layout)
            return
        with bb.if_else(bb.icmp_unsigned("==", blk, i64(blocks - 1))) as (tail, full):
            with tail:
                _block(bb, cfg, vectors, a, bm, c, col0, last, m, k, a_rs, a_cs, b_rs, b_cs, layout)
            with full:
                _block(bb, cfg, vectors, a, bm, c, col0, width, m, k, a_rs, a_cs, b_rs, b_cs, layout)

    region(module, b, f"{name}.rows", batch * blocks, threads, operands, chunk, lambda nbytes: workspace)


def _chunk_width(cfg: GemmConfig, n: int, threads: int, streamed: bool) -> int:
    """Columns of C per chunk. Streamed B: as wide as the threads allow (whole rows of B read one after the other
    are one sequential stream; a 1 × 9216 · 9216 × 4096 product ran at 11.5 GB/s in 1 KiB row pieces), with the
    C block at most C_BLOCK_BYTES; dot products: BLOCK vectors."""
    if not streamed:
        return BLOCK * cfg.vec
    share = -(-n // max(threads, 1))
    width = -(-share // cfg.vec) * cfg.vec
    return max(cfg.vec, min(width, C_BLOCK_BYTES // cfg.itemsize))


def _block(b: ir.IRBuilder, cfg: GemmConfig, vectors: _Vectors, a: ir.Value, bm: ir.Value, c: ir.Value,
           col0: ir.Value, cols: int, m: int, k: int, a_rs: int, a_cs: int, b_rs: int, b_cs: int,
           layout: object) -> None:
    """C[0:m, col0:col0+cols] (+)= op(A)[0:m, :] · op(B)[:, col0:col0+cols]."""
    lanes = [min(cfg.vec, cols - v * cfg.vec) for v in range(-(-cols // cfg.vec))]
    ld_c = layout.ld_c  # type: ignore[attr-defined]
    for i in range(m):
        a_row = gep(b, a, i64(i * a_rs), cfg.scalar)
        c_row = gep(b, c, b.add(i64(i * ld_c), col0), cfg.scalar)
        if b_cs == 1:  # B rows contiguous along the columns of C: stream them, C's block accumulating in L1
            _stream_rows(b, cfg, vectors, a_row, a_cs, bm, b_rs, col0, c_row, lanes, k,
                         layout.accumulate)  # type: ignore[attr-defined]
            continue
        # op(B) = Bᵀ: column j of op(B) is row j of B, contiguous along p: one dot product per column
        with for_range(b, 0, cols, name="j") as j:
            column = b.add(col0, j)
            value = _dot(b, cfg, vectors, a_row, a_cs, gep(b, bm, b.mul(column, i64(b_cs)), cfg.scalar), k)
            ptr = gep(b, c_row, j, cfg.scalar)
            if layout.accumulate:  # type: ignore[attr-defined]
                value = b.fadd(value, b.load(ptr, typ=cfg.scalar))
            b.store(value, ptr)


def _stream_rows(b: ir.IRBuilder, cfg: GemmConfig, vectors: _Vectors, a_row: ir.Value, a_cs: int, bm: ir.Value,
                 b_rs: int, col0: ir.Value, c_row: ir.Value, lanes: list[int], k: int, accumulate: bool) -> None:
    """c_row[0:cols] (+)= Σ_p A[p] · B[p, col0:col0+cols], p in order, B's row segments read one after the other
    (contiguous streams; the C block, a few KiB, stays in L1)."""
    full = sum(1 for n_ in lanes if n_ == cfg.vec)
    tail = lanes[-1] if lanes[-1] != cfg.vec else 0
    if not accumulate:
        zero = ir.Constant(cfg.vector, None)
        with for_range(b, 0, full, name="z") as v:
            vectors.store(b, zero, gep(b, c_row, b.mul(v, i64(cfg.vec)), cfg.scalar), cfg.vec)
        if tail:
            vectors.store(b, zero, gep(b, c_row, i64(full * cfg.vec), cfg.scalar), tail)
    with for_range(b, 0, k, name="p", nonempty=True) as p:
        a_val = splat(b, cfg, b.load(gep(b, a_row, b.mul(p, i64(a_cs)), cfg.scalar), typ=cfg.scalar))
        row = gep(b, bm, b.add(b.mul(p, i64(b_rs)), col0), cfg.scalar)

        def update(at: ir.Value, n_: int) -> None:
            ptr = gep(b, c_row, at, cfg.scalar)
            total = b.call(vectors.fma, [a_val, vectors.load(b, gep(b, row, at, cfg.scalar), n_),
                                         vectors.load(b, ptr, n_)])
            vectors.store(b, total, ptr, n_)

        if full:
            with for_range(b, 0, full * cfg.vec, cfg.vec, name="v") as at:
                update(at, cfg.vec)
        if tail:
            update(i64(full * cfg.vec), tail)


def _dot(b: ir.IRBuilder, cfg: GemmConfig, vectors: _Vectors, a_row: ir.Value, a_cs: int, b_row: ir.Value,
         k: int) -> ir.Value:
    """Σ_p A[p] · b_row[p]: partial sums one vector at a time (a masked last step), then the lanes added pairwise
    in a fixed order."""
    full, rest = divmod(k, cfg.vec)
    acc: ir.Value = ir.Constant(cfg.vector, None)
    if full:
        pre = b.block
        with for_range(b, 0, full * cfg.vec, cfg.vec, name="p", nonempty=True) as p:
            phi = b.phi(cfg.vector, name="dot")
            phi.add_incoming(acc, pre)
            av = _a_vector(b, cfg, vectors, a_row, a_cs, p, cfg.vec)
            nxt = b.call(vectors.fma, [av, vectors.load(b, gep(b, b_row, p, cfg.scalar), cfg.vec), phi])
            phi.add_incoming(nxt, b.block)
        acc = nxt
    if rest:
        p0 = i64(full * cfg.vec)
        av = _a_vector(b, cfg, vectors, a_row, a_cs, p0, rest)
        acc = b.call(vectors.fma, [av, vectors.load(b, gep(b, b_row, p0, cfg.scalar), rest), acc])
    return _sum_lanes(b, cfg, acc)


def _a_vector(b: ir.IRBuilder, cfg: GemmConfig, vectors: _Vectors, a_row: ir.Value, a_cs: int, p: ir.Value,
              lanes: int) -> ir.Value:
    """A[p .. p + lanes) of one row as a vector (zero lanes past them)."""
    if a_cs == 1:
        return vectors.load(b, gep(b, a_row, p, cfg.scalar), lanes)
    out = ir.Constant(cfg.vector, None)
    for lane in range(lanes):
        value = b.load(gep(b, a_row, b.mul(b.add(p, i64(lane)), i64(a_cs)), cfg.scalar), typ=cfg.scalar)
        out = b.insert_element(out, value, ir.Constant(I32, lane))
    return out


def _sum_lanes(b: ir.IRBuilder, cfg: GemmConfig, vector: ir.Value) -> ir.Value:
    """Σ lanes, pairwise (halves added until one lane is left): a fixed order."""
    values = [b.extract_element(vector, ir.Constant(I32, lane)) for lane in range(cfg.vec)]
    while len(values) > 1:
        half = len(values) // 2
        values = [b.fadd(values[j], values[j + half]) for j in range(half)]
    return values[0]
