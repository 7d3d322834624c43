"""Translators for the Reduce* ops."""

from __future__ import annotations

import ops.fn as fn
from graphc.onnx.registry import ImportContext, OnnxNode, optional_input, translator


def _reduce_axes(ctx: ImportContext, n: OnnxNode, xs: list) -> list[int] | None:
    """The axes of a Reduce* node (attribute before opset 13/18, input after); None = every axis."""
    axes_input = optional_input(xs, 1)
    if axes_input is not None:
        axes = ctx.ints(axes_input, f"{n.label}: input axes")
    else:
        axes = list(n.attr("axes", []) or [])
    return axes or None


@translator("ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceSumSquare", "ReduceL1", "ReduceL2",
            "ReduceLogSum", "ReduceLogSumExp")
def _reduce(ctx: ImportContext, n: OnnxNode, xs: list) -> list:
    """ReduceSum, ReduceMean, ReduceMax → sum, mean, max; ReduceMin → -max(-x); ReduceSumSquare → sum(x·x);
    ReduceL1 → sum(|x|); ReduceL2 → sqrt(sum(x·x)); ReduceLogSum → log(sum(x)); ReduceLogSumExp →
    log(sum(exp(x - m))) + m with m the (finite) max."""
    x = ctx.tensor(xs[0])
    keep = bool(n.attr("keepdims", 1))
    axes = _reduce_axes(ctx, n, xs)
    noop = n.attr("noop_with_empty_axes", 0)  # read whether or not axes are given (the dynamo exporter sets it)
    if axes is None and noop:
        return [x]
    axis = None if axes is None else tuple(axes)
    if n.op_type == "ReduceMin":
        return [fn.neg(fn.max(fn.neg(x), axis=axis, keepdims=keep))]
    if n.op_type == "ReduceSumSquare":
        return [fn.sum(fn.mul(x, x), axis=axis, keepdims=keep)]
    if n.op_type == "ReduceL1":
        return [fn.sum(fn.abs(x), axis=axis, keepdims=keep)]
    if n.op_type == "ReduceL2":
        return [fn.sqrt(fn.sum(fn.mul(x, x), axis=axis, keepdims=keep))]
    if n.op_type == "ReduceLogSum":
        return [fn.log(fn.sum(x, axis=axis, keepdims=keep))]
    if n.op_type == "ReduceLogSumExp":
        peak = fn.max(x, axis=axis, keepdims=True)
        peak = fn.where(fn.equal(fn.abs(peak), float("inf")), 0.0, peak)  # all -inf: log(0) = -inf
        total = fn.log(fn.sum(fn.exp(fn.sub(x, peak)), axis=axis, keepdims=keep))
        return [fn.add(total, peak if keep else fn.reshape(peak, total.shape))]
    func = {"ReduceSum": fn.sum, "ReduceMean": fn.mean, "ReduceMax": fn.max}[n.op_type]
    return [func(x, axis=axis, keepdims=keep)]
