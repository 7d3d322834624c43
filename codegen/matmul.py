"""GEMM in LLVM IR: ``C (+)= op(A) · op(B)`` for static shapes, with transposed and batched forms.

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

Scratch: two ``alloca``s, the packed B block (``kc * nc`` elements) and one A micro-panel (``mr * kc``), together
at most 512 KiB; :func:`workspace_bytes` gives the figure for given sizes.
"""

from __future__ import annotations

from collections.abc import Sequence

import llvmlite.ir as ir

from codegen.epilogue import Epilogue
from codegen.gemm_kernel import (
    I1,
    PTR,
    VOID,
    GemmConfig,
    default_config,
    for_range,
    gep,
    i64,
    microkernel,
    pack_a,
    pack_b,
)
from codegen.loops import broadcast_strides, collapse, contiguous_strides
from codegen.lowering import KernelContext, LoweringError, lowerer
from codegen.scalar import load
from codegen.target import has_avx512
from graphc.ir import Node
from ops.registry import get_op
from passes.plan import Kernel


def host_vector_bits() -> int:
    """Width of the host's widest vector registers that LLVM will use (512 with AVX-512F, else 256)."""
    return 512 if has_avx512() else 256


def _balanced(total: int, limit: int, multiple: int = 1) -> int:
    """The smallest block size (a multiple of ``multiple``) that splits ``total`` into as few blocks as ``limit``."""
    blocks = max(1, -(-total // limit))
    size = -(-total // blocks)
    return min(limit, -(-size // multiple) * multiple)


def emit_gemm(module: ir.Module, name: str, m: int, n: int, k: int, dtype: str = "float32", trans_a: bool = False,
              trans_b: bool = False, batch: int = 1, batch_strides: Sequence[int] | None = None,
              accumulate: bool = False, config: GemmConfig | None = None) -> ir.Function:
    """Add ``void name(ptr noalias A, ptr noalias B, ptr noalias C)`` to ``module`` and return it.

    Per batch item: ``C[m, n] (+)= op(A) · op(B)`` where ``A`` is ``m x k`` (``k x m`` when ``trans_a``), ``B`` is
    ``k x n`` (``n x k`` when ``trans_b``), all row-major and contiguous. ``batch_strides`` are element offsets
    between consecutive batch items of (A, B, C) — 0 broadcasts an operand; default: dense. With ``accumulate``
    the product is added to C instead of overwriting it.
    """
    if min(m, n, k, batch) < 0:
        raise ValueError(f"negative GEMM size m={m} n={n} k={k} batch={batch}")
    cfg = config or default_config(dtype, host_vector_bits())
    if cfg.dtype != dtype:
        raise ValueError(f"config is for {cfg.dtype}, GEMM asked for {dtype}")
    sa, sb, sc = tuple(batch_strides) if batch_strides is not None else (m * k, k * n, m * n)
    fn = ir.Function(module, ir.FunctionType(VOID, [PTR, PTR, PTR]), name=name)
    fn.attributes.add("nounwind")
    for arg, label in zip(fn.args, "ABC"):
        arg.name = label
        arg.add_attribute("noalias")
    a_arg, b_arg, c_arg = fn.args
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
    bp = b.alloca(scalar, size=i64(kc * nc), name="bpack")
    bp.align = 64
    ap = b.alloca(scalar, size=i64(kc * cfg.mr + cfg.vec), name="apack")  # + slack of the vector pack
    ap.align = 64
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
                b.call(packer_b, [b_blk, bp, kcur, ncur, ld_b])
                panel_stride = b.mul(kcur, i64(cfg.nr))
                a_pc = gep(b, a_t, b.mul(pc, i64(a_cs)), scalar)
                c_jc = gep(b, c_t, jc, scalar)

                def row_tile(row: ir.Value, rows: int) -> None:
                    b.call(pack_a(module, cfg, rows, trans_a), [gep(b, a_pc, b.mul(row, i64(a_rs)), scalar), ap,
                                                                  kcur, ld_a])
                    c_row = gep(b, c_jc, b.mul(row, ld_c), scalar)
                    full = microkernel(module, cfg, rows, cfg.nr)
                    with for_range(b, 0, npanels, name="jr") as jr:
                        b.call(full, [ap, gep(b, bp, b.mul(jr, panel_stride), scalar),
                                      gep(b, c_row, b.mul(jr, i64(cfg.nr)), scalar), ld_c, kcur, load_c])
                    if n_rem:
                        with b.if_then(has_rem):
                            b.call(microkernel(module, cfg, rows, n_rem),
                                   [ap, gep(b, bp, b.mul(npanels, panel_stride), scalar),
                                    gep(b, c_row, b.mul(npanels, i64(cfg.nr)), scalar), ld_c, kcur, load_c])

                if m_full:
                    with for_range(b, 0, m_full, cfg.mr, name="ir") as row:
                        row_tile(row, cfg.mr)
                start = m_full
                for rows in tail:
                    row_tile(i64(start), rows)
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


def workspace_bytes(m: int, n: int, k: int, dtype: str = "float32", config: GemmConfig | None = None) -> int:
    """Stack bytes the GEMM's ``alloca``s (packed B block and A micro-panel) take for these sizes."""
    cfg = config or default_config(dtype, host_vector_bits())
    if min(m, n, k) <= 0:
        return 0
    kc = _balanced(k, cfg.kc, cfg.vec)
    return (kc * _balanced(n, cfg.nc, cfg.nr) + kc * cfg.mr + cfg.vec) * cfg.itemsize


# ------------------------------------------------------------------------------------------------ lowering


def batch_layout(a_shape: Sequence[int], b_shape: Sequence[int], out_shape: Sequence[int]
                 ) -> tuple[tuple[int, ...], list[tuple[int, ...]]]:
    """Collapsed batch loop nest of a NumPy ``matmul``: (dims, [A strides, B strides, C strides]) in elements.

    Broadcast batch axes get stride 0; size-1 axes vanish and axes every operand walks contiguously merge."""
    m, k, n = a_shape[-2], a_shape[-1], b_shape[-1]
    bo = tuple(out_shape[:-2])
    sa = [s * m * k for s in broadcast_strides(tuple(a_shape[:-2]), bo)]
    sb = [s * k * n for s in broadcast_strides(tuple(b_shape[:-2]), bo)]
    sc = [s * m * n for s in contiguous_strides(bo)]
    return collapse(bo, [sa, sb, sc])


def matmul_operands(kernel: Kernel) -> tuple[Node, tuple[Node, bool], tuple[Node, bool]]:
    """The kernel's matmul node and, per operand, (the node whose buffer is read, whether it is transposed).

    A kernel may hold, besides its matmul, ``transpose`` nodes swapping the last two axes of a matmul operand that
    nothing outside the kernel reads: those are folded into ``trans_a`` / ``trans_b`` (never materialized)."""
    node = kernel.anchor
    rest = [x for x in kernel.nodes if x is not node and not get_op(x.op).fusible and not get_op(x.op).is_view(x)]
    if node is None or any(not get_op(x.op).swaps_last_two_axes(x) or x not in node.inputs or x in kernel.outputs
                           for x in rest):
        ops = " -> ".join(x.op for x in kernel.nodes)
        raise LoweringError(f"a matmul kernel may only fold last-two-axes transposes of its operands and an "
                            f"elementwise epilogue, got ({ops})")
    operands = tuple((x.inputs[0], True) if x in rest else (x, False) for x in node.inputs)
    return node, operands[0], operands[1]


@lowerer("matmul")
def lower_matmul(ctx: KernelContext) -> None:
    """``matmul`` kernel: one GEMM function, called under loops over all but the innermost batch axis.

    Folded operand transposes become ``trans_a`` / ``trans_b``. A batch of A against one shared B (``x @ W`` with
    ``x`` of rank > 2) is a single GEMM with ``M' = batch * M`` rows, so B is packed once."""
    node, (a_src, trans_a), (b_src, trans_b) = matmul_operands(ctx.kernel)
    epi = Epilogue.of(ctx, node)
    target = epi.target() if epi else node  # the GEMM's C: an output of the matmul's shape
    a, b = node.inputs
    m, k, n = a.shape[-2], a.shape[-1], b.shape[-1]
    dims, (sa, sb, sc) = batch_layout(a.shape, b.shape, node.shape)
    if len(dims) == 1 and sb[0] == 0 and sa[0] == m * k and not trans_a:
        m, dims, (sa, sb, sc) = m * dims[0], (), ((), (), ())
    inner = dims[-1] if dims else 1
    strides = (sa[-1], sb[-1], sc[-1]) if dims else (0, 0, 0)
    gemm = emit_gemm(ctx.module, f"{ctx.function.name}.gemm", m, n, k, dtype=node.dtype, trans_a=trans_a,
                     trans_b=trans_b, batch=inner, batch_strides=strides)
    builder = ctx.builder
    base = [builder.bitcast(ctx.ptr(x), PTR) for x in (a_src, b_src, target)]
    scalar = default_config(node.dtype, host_vector_bits()).scalar

    def call(level: int, offsets: list[ir.Value]) -> None:
        if level >= len(dims) - 1:
            builder.call(gemm, [gep(builder, p, off, scalar) for p, off in zip(base, offsets)])
            return
        with for_range(builder, 0, dims[level], name=f"batch{level}") as t:
            call(level + 1, [builder.add(off, builder.mul(t, i64(s[level])))
                             for off, s in zip(offsets, (sa, sb, sc))])

    call(0, [i64(0)] * 3)
    if epi and node.size:
        _epilogue_pass(builder, epi, target, n)


def _epilogue_pass(b: ir.IRBuilder, epi: Epilogue, target: Node, n: int) -> None:
    """C viewed as (rows, n): every kernel output [r, j] = chain(C[r, j]) with the epilogue's inputs at column j
    (a bias row, scalars); one contiguous, vectorizable pass right after the GEMM."""
    with for_range(b, 0, target.size // n, name="ep_r") as r:
        row = b.mul(r, i64(n))
        with for_range(b, 0, n, name="ep_j") as j:
            off = b.add(row, j)
            epi.store(b, load(b, epi.ctx.elem(target, off), target.dtype), off, epi.load(b, j))
