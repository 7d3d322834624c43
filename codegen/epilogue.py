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

A GEMM anchor (``codegen.linalg``, ``codegen.conv``) asks :meth:`Epilogue.store_form` whether its chain is one the
GEMM's micro-kernels apply on registers at their store (``codegen.gemm.store_epilogue``: per-axis adds,
subtractions and products — a bias, inference batch norm —, a residual, relu, clip, in a line); then no pass
over C follows the GEMM (``GRAPHC_STORE_EPILOGUE=0`` turns that off).
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

import llvmlite.ir as ir

from codegen.elementwise import embedded_constant
from codegen.gemm.store_epilogue import MAX_POINTERS, StoreEpilogue
from codegen.llvm import PTR, i64
from codegen.lowering import KernelContext
from codegen.nodemap import computing, positions
from codegen.scalar import LLVMScalarBuilder, load, store
from graphc.ir import Node
from ops.registry import get_op

DEFAULT_STORE = True


def store_epilogues_enabled() -> bool:
    """Whether GEMM anchors apply the chains :meth:`Epilogue.store_form` takes in their micro-kernels
    (``GRAPHC_STORE_EPILOGUE``, ``0`` off: always a pass, bitwise the same results; default :data:`DEFAULT_STORE`;
    the object cache key records it, ``codegen.module.plan_key``)."""
    value = os.environ.get("GRAPHC_STORE_EPILOGUE")
    return DEFAULT_STORE if value is None or value == "" else value not in ("0", "false", "off", "no")


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

    def store_form(self, axis: str, own_bias: Node | None = None) -> StoreForm | None:
        """The anchor's own bias (a conv's third input, added first) and the chain as a GEMM store epilogue whose
        per-axis vectors run along C's rows or columns (``axis``: where the epilogue axis lies in C), with the
        buffers its pointers read in step order; None when the chain is anything else: a step that is not an add,
        subtraction (of the vector from the running value) or product with a per-axis vector, an add of a
        residual, relu or clip; a branch off the line; an intermediate value that is also a kernel output."""
        if not self.ctx.store_epilogues or self.anchor.dtype not in ("float32", "float64"):
            return None
        steps: list[tuple] = [("add", axis)] if own_bias is not None else []
        buffers = [own_bias] if own_bias is not None else []
        per_axis = {value: buf for value, buf, varies in self.reads if varies}
        full = dict(self.full)
        current = self.anchor
        for n in self.nodes:
            if get_op(n.op).is_view(n):
                if n.inputs[0] is current or n in self.outputs:
                    return None
                continue
            if current not in n.inputs or n.dtype != self.anchor.dtype:
                return None
            if n.op in ("add", "sub", "mul") and len(n.inputs) == 2 and n.inputs[0] is not n.inputs[1]:
                other = n.inputs[1] if n.inputs[0] is current else n.inputs[0]
                if n.op == "sub" and other is n.inputs[0]:  # a - v: not a step
                    return None
                if other in per_axis:
                    steps.append((n.op, axis))
                    buffers.append(per_axis[other])
                elif other in full and n.op == "add":
                    steps.append(("residual",))
                    buffers.append(full[other])
                else:
                    return None
            elif n.op == "relu":
                steps.append(("max", 0.0))
            elif n.op == "clip":
                steps += [(name, n.attrs[key]) for name, key in (("max", "lo"), ("min", "hi"))
                          if n.attrs[key] is not None]
            else:
                return None
            current = n
        if (not steps or self.outputs != [current] or any(x.dtype != self.anchor.dtype for x in buffers)
                or [s[0] for s in steps].count("residual") > 1 or len(buffers) > MAX_POINTERS):
            return None
        return StoreForm(self, StoreEpilogue.of(*steps), buffers)


@dataclass(frozen=True)
class StoreForm:
    """An epilogue the GEMM's micro-kernels apply at their store (:meth:`Epilogue.store_form`): the chain and the
    buffers its operand pointers read, in step order."""

    epi: Epilogue
    chain: StoreEpilogue
    buffers: list[Node]

    def call(self, b: ir.IRBuilder, gemm: ir.Function, args: list[ir.Value], offset: ir.Value) -> None:
        """Call ``gemm`` (an ``emit_gemm(epilogue=self.chain)`` function) on ``args`` and the chain's operand
        pointers for a C that starts at flat element ``offset`` of the anchor's output — each per-axis vector from
        its first element, the residual (laid out like the output) at ``offset`` — with the call tagged as computing
        every node of the chain (``codegen.nodemap``), so ``graphc explain`` finds each node's line."""
        ctx = self.epi.ctx
        where = positions(ctx.kernel)
        members = [(n, where[n]) for n in self.epi.nodes if not get_op(n.op).is_view(n)]
        with computing(ctx.module, b, *members[0], *members[1:]) if members else contextlib.nullcontext():
            pointers = [ctx.elem(buf, offset) if step[0] == "residual" else ctx.ptr(buf)
                        for step, buf in zip(self.chain.reads(), self.buffers)]
            b.call(gemm, args + [b.bitcast(p, PTR) for p in pointers])
