"""Plain SGD's step recognized after the GEMM that computes its gradient.

``optim.SGD`` without momentum or weight decay updates a weight as ``u = p − g·s`` (``sub(p, mul(g, lr))``). When
``g`` is a matmul's output — a dense layer's weight gradient xᵀ·δ — that nothing else reads, ``passes.fuse``
merges the step into the matmul's kernel as its epilogue, ``passes.memplan`` may write ``u`` over ``p``'s state
(the kernel reads ``p`` only at the index it writes), and ``codegen.linalg`` emits one GEMM that accumulates
``−s·xᵀ·δ`` straight onto the weight (``emit_gemm(accumulate=True, alpha=−s)``): no gradient buffer, no
separate update pass over the weight.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from graphc.ir import Node


@dataclass(frozen=True)
class GradientStep:
    """``value = param − anchor·scale``: the nodes of one plain SGD step on the anchor's output."""

    param: Node   # p, a leaf of the anchor's shape and dtype
    scale: Node   # s, one element (the learning rate)
    step: Node    # mul(anchor, s)
    value: Node   # sub(p, step): the new weight


def gradient_step(anchor: Node, chain: Sequence[Node]) -> GradientStep | None:
    """The step when ``chain`` (the nodes fused after ``anchor``, any order) is exactly ``mul(anchor, s)`` (or
    ``mul(s, anchor)``) and ``sub(p, that)``, with ``s`` of one element and ``p`` a leaf of ``anchor``'s shape and
    dtype that the product does not read; else None."""
    if len(chain) != 2:
        return None
    subs = [n for n in chain if n.op == "sub"]
    muls = [n for n in chain if n.op == "mul"]
    if len(subs) != 1 or len(muls) != 1 or subs[0].inputs[1] is not muls[0]:
        return None
    step, value = muls[0], subs[0]
    x, y = step.inputs
    scale = y if x is anchor else x if y is anchor else None
    param = value.inputs[0]
    if scale is None or scale is anchor or scale.size != 1 or not param.is_leaf or param in anchor.inputs:
        return None
    if not (param.shape == step.shape == value.shape == anchor.shape) or param.dtype != anchor.dtype:
        return None
    return GradientStep(param, scale, step, value)
