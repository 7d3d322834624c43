"""Epilogues: the elementwise chain fused after an anchor (training batch_norm, conv2d, matmul), applied to each
output value before it is stored.

``passes.fuse`` merges into an anchor kernel a fused group whose nodes all have the anchor's shape and whose other
inputs vary at most along the anchor's epilogue axis (axis 1 for batch_norm and conv2d, the last axis for matmul):
a per-channel bias, a bias row, a scalar. The anchor's lowerer computes its value ``v`` at flat offset ``off``
(index ``i`` along the epilogue axis) and calls::

    per = epi.load(b, i)          # the per-axis inputs at i (call it outside the inner loop when i is invariant)
    epi.store(b, v, off, per)     # the chain's scalar formulas composed on v, every kernel output stored at off

An input that varies along the axis is contiguous with every other extent 1, so its element ``i`` is at offset
``i``; a size-1 input is read at offset 0, a size-1 constant embedded in the IR; an input of the anchor's own
shape (a residual added to a conv's output, a param beside its gradient) is read at the output's flat offset
``off`` inside ``store``. A unit-axis ``reshape`` in the chain reads its source buffer the same way (nothing
materialized).
"""

from __future__ import annotations

from dataclasses import dataclass

import llvmlite.ir as ir

from codegen.elementwise import embedded_constant
from codegen.llvm import i64
from codegen.lowering import KernelContext
from codegen.nodemap import computing, positions
from codegen.scalar import LLVMScalarBuilder, load, store
from graphc.ir import Node
from ops.registry import get_op


@dataclass
class Epilogue:
    """The chain of ``anchor``'s kernel (empty when the kernel is the anchor alone)."""

    ctx: KernelContext
    anchor: Node
    nodes: list[Node]                     # chain members in execution order (unit reshapes included)
    constants: dict[Node, ir.Constant]    # size-1 constants, embedded
    reads: list[tuple[Node, Node, bool]]  # (value, buffer read, varies along the axis), loaded by ``load``
    full: list[tuple[Node, Node]]         # (value, buffer read) of the anchor's size, loaded by ``store``
    outputs: list[Node]                   # kernel outputs among the anchor and the chain

    @classmethod
    def of(cls, ctx: KernelContext, anchor: Node) -> Epilogue:
        kernel = ctx.kernel
        operand_views = set()  # views the anchor reads its operands through (a GEMM's folded chains), not the chain
        members = set(kernel.nodes)
        for x in anchor.inputs:
            while x in members and not get_op(x.op).fusible:
                operand_views.add(x)
                x = x.inputs[0]
        nodes = [n for n in kernel.nodes if n is not anchor and n not in operand_views
                 and (get_op(n.op).fusible or get_op(n.op).is_view(n))]
        views = [n for n in nodes if get_op(n.op).is_view(n)]
        inside = set(nodes) | {anchor}
        external = {x: shape for n in nodes
                    for x, shape in ([(n.inputs[0], n.shape)] if n in views else [(x, x.shape) for x in n.inputs])
                    if x not in inside}
        constants: dict[Node, ir.Constant] = {}
        for x in external:
            if (c := embedded_constant(ctx, x)) is not None:
                constants[x] = c
        for r in views:
            if r.inputs[0] in constants:
                constants[r] = constants[r.inputs[0]]
        direct = {x for n in nodes if n not in views for x in n.inputs}
        loads = [(n, n.inputs[0]) for n in views if n not in constants]
        loads += [(x, x) for x in external if x in direct and x not in constants]
        # the anchor's own shape: read at the flat offset (a per-axis vector of that shape has every other extent
        # 1, so its axis index is its flat offset too)
        full = [(v, buf) for v, buf in loads if v.size > 1 and v.shape == anchor.shape]
        reads = [(v, buf, v.size > 1) for v, buf in loads if (v, buf) not in full]
        outputs = [n for n in (anchor, *nodes) if n in kernel.outputs]
        return cls(ctx, anchor, nodes, constants, reads, full, outputs)

    def __bool__(self) -> bool:
        return bool(self.nodes)

    def target(self) -> Node:
        """A kernel output of the anchor's shape that the anchor's raw value may be written to first."""
        if self.anchor in self.outputs:
            return self.anchor
        return next(n for n in self.outputs if not get_op(n.op).is_view(n))

    def load(self, b: ir.IRBuilder, index: ir.Value) -> dict[Node, ir.Value]:
        """The chain's per-axis inputs at ``index`` along the epilogue axis (constants included)."""
        values: dict[Node, ir.Value] = dict(self.constants)
        for value, buf, varies in self.reads:
            values[value] = load(b, self.ctx.elem(buf, index if varies else i64(0)), buf.dtype)
        return values

    def store(self, b: ir.IRBuilder, value: ir.Value, offset: ir.Value, loaded: dict[Node, ir.Value]) -> None:
        """Compose the chain's formulas on the anchor's ``value`` and store every kernel output at ``offset``."""
        values = dict(loaded)
        values[self.anchor] = value
        for v, buf in self.full:
            values[v] = load(b, self.ctx.elem(buf, offset), buf.dtype)
        sb = LLVMScalarBuilder(b)
        where = positions(self.ctx.kernel)
        for n in self.nodes:
            if n not in values:
                with computing(self.ctx.module, b, n, where[n]):
                    values[n] = get_op(n.op).scalar(sb, n.attrs, *(values[x] for x in n.inputs))
        for out in self.outputs:
            with computing(self.ctx.module, b, out, where[out]):
                store(b, values[out], self.ctx.elem(out, offset), out.dtype)
