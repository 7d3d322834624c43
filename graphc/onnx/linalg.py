"""Translators for matrix products: MatMul and Gemm."""

from __future__ import annotations

import ops.fn as fn
from graphc.onnx.registry import ImportContext, OnnxNode, translator


@translator("MatMul")
def _matmul(ctx: ImportContext, n: OnnxNode, xs: list) -> list:
    """MatMul → matmul, a 1-D operand lifted to a matrix and its unit axis dropped from the result (NumPy rules)."""
    a, b = (ctx.tensor(x) for x in xs)
    squeeze = []
    if a.ndim == 1:
        a, squeeze = fn.reshape(a, (1, a.shape[0])), squeeze + [-2]
    if b.ndim == 1:
        b, squeeze = fn.reshape(b, (b.shape[0], 1)), squeeze + [-1]
    out = fn.matmul(a, b)
    if squeeze:
        shape = list(out.shape)
        if -1 in squeeze:
            shape.pop(-1)
        if -2 in squeeze:
            shape.pop(-1 if -1 in squeeze else -2)
        out = fn.reshape(out, tuple(shape))
    return [out]


@translator("Gemm")
def _gemm(ctx: ImportContext, n: OnnxNode, xs: list) -> list:
    """Gemm → alpha·(A' @ B') + beta·C with transposes per transA/transB (C optional, broadcast to (M, N);
    opset < 7: C broadcasts only with ``broadcast=1``, else it must be (M, N))."""
    a, b = ctx.tensor(xs[0]), ctx.tensor(xs[1])
    if n.attr("transA", 0):
        a = fn.transpose(a)
    if n.attr("transB", 0):
        b = fn.transpose(b)
    alpha, beta = float(n.attr("alpha", 1.0)), float(n.attr("beta", 1.0))
    out = fn.matmul(a, b)
    if alpha != 1.0:
        out = fn.mul(out, alpha)
    c = ctx.optional_tensor(xs, 2)
    if c is not None and n.opset < 7 and not n.attr("broadcast", 0) and c.shape != out.shape:
        raise n.unsupported(f"attribute broadcast=0 with C of shape {c.shape}: opset {n.opset} needs C of shape "
                            f"{out.shape} unless broadcast=1")
    if c is not None:
        out = fn.add(out, c if beta == 1.0 else fn.mul(c, beta))
    return [out]
