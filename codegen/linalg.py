"""Lowering of ``matmul`` (NumPy semantics for rank >= 2, broadcast batch axes) onto the GEMM driver.

One GEMM function per kernel, called under loops over all but the innermost batch axis; operands are read in
place through the views fusion folded into the kernel (transposes, slices, reshapes: a leading dimension, a
transposed flag and batch strides); a batch of A against one shared B is a single GEMM with
``M' = batch * M`` rows (B packed once). An elementwise epilogue made of a bias row, a residual, relu and clip
runs on the micro-kernels' registers at their store (``codegen.gemm.store_epilogue``); any other runs as one
contiguous, vectorizable pass over C right after the GEMM.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import llvmlite.ir as ir

import codegen.prepack as prepack
from codegen.epilogue import Epilogue
from codegen.gemm.blocking import workspace_bytes
from codegen.gemm.config import GemmConfig, default_config, host_vector_bits
from codegen.gemm.driver import emit_gemm
from codegen.gemm.skinny import SKINNY_ROWS
from codegen.llvm import I64, PTR, for_range, gep, i64
from codegen.loops import collapse, contiguous_strides
from codegen.lowering import KernelContext, LoweringError, lowerer
from codegen.scalar import load, store
from graphc.ir import Node
from ops.registry import get_op
from ops.views import chain_layout, gemm_operand, transpose_store_strides
from passes.plan import Kernel, gradient_step


class Operand(NamedTuple):
    """How the GEMM reads one matmul operand: the buffer of ``source`` from element ``offset``, the matrix
    transposed or not with leading dimension ``ld``, and per batch axis of the operand an element stride."""

    source: Node
    offset: int
    transposed: bool
    ld: int
    batch_strides: tuple[int, ...]


def matmul_operands(kernel: Kernel) -> tuple[Node, Operand, Operand, Operand | None]:
    """The kernel's matmul node, how its GEMM reads each operand — through the chain of views that fusion folded
    into the kernel (``passes.fuse`` rule 4), composed into one strided layout (:mod:`ops.views`) — and how it
    writes C when it writes through a folded transpose of the result (else None: C is the epilogue's target)."""
    node = kernel.anchor
    folded = {x for x in kernel.nodes if x is not node and not get_op(x.op).fusible}
    if node is None or get_op(node.op).kind != "matmul" or any(x.is_leaf for x in folded):
        raise LoweringError(f"not a matmul kernel: ({' -> '.join(x.op for x in kernel.nodes)})")
    stores = [x for x in folded if x.op == "transpose" and x.inputs[0] is node]
    reached = {v for x in node.inputs for v in _walk(x, folded)} | set(stores)
    if folded - reached or len(stores) > 1:
        raise LoweringError(f"a matmul kernel may only fold views of its operands and an elementwise epilogue, got "
                            f"({' -> '.join(x.op for x in kernel.nodes)})")
    operands = []
    for x in node.inputs:
        found = chain_layout(x, lambda n: n in folded)
        read = None if found is None else gemm_operand(x.shape, found[1][1])
        if found is None or read is None:
            raise LoweringError(f"matmul operand {x.name} {list(x.shape)}: its folded views are not a layout the "
                                f"GEMM reads ({' -> '.join(v.op for v in kernel.nodes)})")
        source, (offset, strides) = found
        batch = tuple(0 if d == 1 else st for d, st in zip(x.shape[:-2], strides[:-2]))  # size 1: broadcast
        operands.append(Operand(source, offset, read[0], read[1], batch))
    if not stores:
        return node, operands[0], operands[1], None
    strides = transpose_store_strides(stores[0])
    write = gemm_operand(node.shape, strides)
    if write is None:
        raise LoweringError(f"matmul {node.name}: C cannot be written through {stores[0].name} (neither rows nor "
                            f"columns contiguous)")
    return node, operands[0], operands[1], Operand(stores[0], 0, write[0], write[1], strides[:-2])


def _walk(x: Node, folded: set[Node]) -> list[Node]:
    """The folded views on the way back from operand ``x`` to its source."""
    chain = []
    while x in folded:
        chain.append(x)
        x = x.inputs[0]
    return chain


def batch_layout(a: Operand, b: Operand, out_shape: Sequence[int], c: Operand | None = None
                 ) -> tuple[tuple[int, ...], list[tuple[int, ...]]]:
    """Collapsed batch loop nest of a NumPy ``matmul``: (dims, [A strides, B strides, C strides]) in elements.

    Broadcast batch axes (missing or of size 1 in an operand) get stride 0; size-1 axes vanish and axes every
    operand walks contiguously merge. C is contiguous unless written through a view (``c``)."""
    bo = tuple(out_shape[:-2])
    m, n = out_shape[-2], out_shape[-1]
    sa, sb = ([0] * (len(bo) - len(x.batch_strides)) + list(x.batch_strides) for x in (a, b))
    sc = list(c.batch_strides) if c is not None else [st * m * n for st in contiguous_strides(bo)]
    return collapse(bo, [sa, sb, sc])


@lowerer("matmul")
def lower_matmul(ctx: KernelContext) -> None:
    """``matmul`` kernel: one GEMM function, called under loops over all but the innermost batch axis.

    Each operand is read in place through its folded views (leading dimension, transposed flag, batch strides).
    A batch of A against one shared B (``x @ W`` with ``x`` of rank > 2, rows evenly spaced) is a single GEMM
    with ``M' = batch * M`` rows, so B is packed once. A C written column-major (through a transpose that moves
    its last axis, as NHWC → NCHW) is computed as Cᵀ = op(B)ᵀ·op(A)ᵀ: the operands swap roles and flip flags."""
    node, a_op, b_op, c_op = matmul_operands(ctx.kernel)
    epi = Epilogue.of(ctx, node)
    # the GEMM's C: a folded transpose of the result written through its strides, or an output of matmul's shape
    target = c_op.source if c_op else epi.target() if epi else node
    sgd = gradient_step(node, epi.nodes) if epi and not c_op else None
    alpha, alpha_scalar = None, False  # plain SGD's step: C starts as the weight, the GEMM adds −lr·A·B
    if (sgd is not None and sgd.param not in (a_op.source, b_op.source) and node not in ctx.kernel.outputs
            and sgd.scale.dtype == node.dtype):
        scale = epi.constants.get(sgd.scale)  # a constant learning rate is embedded, else read at run time
        alpha, alpha_scalar = (-float(scale.constant), False) if scale is not None else (-1.0, True)
    a, b = node.inputs
    m, k, n = a.shape[-2], a.shape[-1], b.shape[-1]
    ldc, c_transposed = (c_op.ld, c_op.transposed) if c_op else (n, False)
    dims, (sa, sb, sc) = batch_layout(a_op, b_op, node.shape, c_op)
    if (len(dims) == 1 and sb[0] == 0 and sa[0] == m * _row_step(a_op.transposed, a_op.ld)
            and sc[0] == m * _row_step(c_transposed, ldc)
            and (not a_op.transposed or a_op.ld >= m * dims[0]) and (not c_transposed or ldc >= m * dims[0])):
        m, dims, (sa, sb, sc) = m * dims[0], (), ((), (), ())
    inner = dims[-1] if dims else 1
    strides = [sa[-1], sb[-1], sc[-1]] if dims else [0, 0, 0]
    first, second = (a_op, b_op) if not c_transposed else (b_op, a_op)
    if c_transposed:
        m, n = n, m
        strides[:2] = strides[1], strides[0]
        sa, sb = sb, sa
    trans_b = second.transposed != c_transposed
    # the epilogue on the micro-kernels' registers (bias row, residual, relu) when C is the output itself
    form = epi.store_form("col") if epi and not c_op and sgd is None else None
    cfg = default_config(node.dtype, host_vector_bits())
    packed = _prepacked_b(ctx, second, m, n, k, trans_b, sb if dims else (), strides[1], cfg)
    gemm = emit_gemm(ctx.module, f"{ctx.function.name}.gemm" + (".p" if packed else "")
                     + (f".store_{form.chain.tag()}" if form else ""), m, n, k, dtype=node.dtype,
                     trans_a=first.transposed != c_transposed, trans_b=trans_b,
                     batch=inner, batch_strides=strides, threads=ctx.threads, lds=(first.ld, second.ld, ldc),
                     pack_b=prepack.packer_b(cfg, n) if packed else None, accumulate=alpha is not None, alpha=alpha,
                     alpha_scalar=alpha_scalar, epilogue=form.chain if form else None)
    builder = ctx.builder
    scalar = cfg.scalar
    base = [gep(builder, builder.bitcast(ctx.ptr(x.source), PTR), i64(x.offset), scalar) for x in (first, second)]
    if alpha is not None:
        _copy_unless_same(builder, ctx, sgd.param, target)
    # the GEMM's C: scratch when an epilogue pass must still read the weight that the step's value overwrites
    c_typed = ctx.scratch(node.size * cfg.itemsize, scalar) if sgd is not None and alpha is None else ctx.ptr(target)
    base.append(builder.bitcast(c_typed, PTR))
    workspace = builder.bitcast(ctx.scratch(workspace_bytes(m, n, k, node.dtype, threads=ctx.threads,
                                                               batch=inner)), PTR)

    scale_arg = [builder.bitcast(ctx.ptr(sgd.scale), PTR)] if alpha_scalar else []

    def call(level: int, offsets: list[ir.Value]) -> None:
        if level >= len(dims) - 1:
            args = [gep(builder, p, off, scalar) for p, off in zip(base, offsets)] + [workspace] + scale_arg
            if form:
                form.call(builder, gemm, args, offsets[2])
            else:
                builder.call(gemm, args)
            return
        with for_range(builder, 0, dims[level], name=f"batch{level}") as t:
            call(level + 1, [builder.add(off, builder.mul(t, i64(s[level])))
                             for off, s in zip(offsets, (sa, sb, sc))])

    call(0, [i64(0)] * 3)
    if epi and node.size and alpha is None and form is None:
        _epilogue_pass(builder, epi, c_typed, n, target.size // n)


def _prepacked_b(ctx: KernelContext, x: Operand, m: int, n: int, k: int, trans: bool, batch_strides: Sequence[int],
                 inner_stride: int, cfg: GemmConfig) -> bool:
    """Whether the GEMM's B (``x``) is read packed at compile time (``codegen.prepack``): a constant of a frozen
    program read whole (from its first element, rows contiguous, the same matrix for every batch item) and by
    nothing else in the kernel, under a GEMM of more rows than the unpacked matrix-vector path takes."""
    source = x.source
    if m <= SKINNY_ROWS or source.size != k * n or x.offset != 0 or x.ld != (k if trans else n) \
            or inner_stride != 0 or any(batch_strides):
        return False
    if sum(1 for v in ctx.kernel.nodes for operand in v.inputs if operand is source) != 1:
        return False
    return ctx.prepacked(source, prepack.spec_b(cfg, 1, k, n, trans=trans)) is not None


def _row_step(transposed: bool, ld: int) -> int:
    """Elements between consecutive rows of a matrix stored with this flag and leading dimension."""
    return 1 if transposed else ld


def _epilogue_pass(b: ir.IRBuilder, epi: Epilogue, c: ir.Value, n: int, rows: int) -> None:
    """C (at ``c``) viewed as (rows, n): every kernel output [r, j] = chain(C[r, j]) with the epilogue's inputs at
    column j (a bias row, scalars); one contiguous, vectorizable pass right after the GEMM."""
    with for_range(b, 0, rows, name="ep_r") as r:
        row = b.mul(r, i64(n))
        with for_range(b, 0, n, name="ep_j") as j:
            off = b.add(row, j)
            epi.store(b, load(b, b.gep(c, [off], inbounds=True), epi.anchor.dtype), off, epi.load(b, j))


def _copy_unless_same(b: ir.IRBuilder, ctx: KernelContext, source: Node, dest: Node) -> None:
    """dest = source, element by element, unless both are the same buffer (a weight updated in place)."""
    src, dst = ctx.ptr(source), ctx.ptr(dest)
    with b.if_then(b.icmp_unsigned("!=", b.ptrtoint(src, I64), b.ptrtoint(dst, I64))):
        with for_range(b, 0, dest.size, name="copy") as i:
            store(b, load(b, ctx.elem(source, i), source.dtype), ctx.elem(dest, i), dest.dtype)
