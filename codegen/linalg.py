"""Lowering of ``matmul`` (NumPy semantics for rank >= 2, broadcast batch axes) onto the GEMM driver.

One GEMM function per kernel, called under loops over all but the innermost batch axis; folded operand
transposes become ``trans_a`` / ``trans_b``; a batch of A against one shared B is a single GEMM with
``M' = batch * M`` rows (B packed once). An elementwise epilogue (bias row, activation) runs as one contiguous,
vectorizable pass over C right after the GEMM.
"""

from __future__ import annotations

from collections.abc import Sequence

import llvmlite.ir as ir

from codegen.epilogue import Epilogue
from codegen.gemm.config import default_config, host_vector_bits
from codegen.gemm.driver import emit_gemm, workspace_bytes
from codegen.llvm import PTR, for_range, gep, i64
from codegen.loops import broadcast_strides, collapse, contiguous_strides
from codegen.lowering import KernelContext, LoweringError, lowerer
from codegen.scalar import load
from graphc.ir import Node
from ops.registry import get_op
from passes.plan import Kernel


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
                     trans_b=trans_b, batch=inner, batch_strides=strides, threads=ctx.threads)
    builder = ctx.builder
    base = [builder.bitcast(ctx.ptr(x), PTR) for x in (a_src, b_src, target)]
    workspace = builder.bitcast(ctx.scratch(workspace_bytes(m, n, k, node.dtype, threads=ctx.threads,
                                                               batch=inner)), PTR)
    scalar = default_config(node.dtype, host_vector_bits()).scalar

    def call(level: int, offsets: list[ir.Value]) -> None:
        if level >= len(dims) - 1:
            builder.call(gemm, [gep(builder, p, off, scalar) for p, off in zip(base, offsets)] + [workspace])
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
