"""Translators for the losses (NegativeLogLikelihoodLoss, SoftmaxCrossEntropyLoss) and for training's
``Gradient`` (domain ai.onnx.preview.training)."""

from __future__ import annotations

import ops.fn as fn
from graphc.api import grad
from graphc.ir import GraphcError, Node
from graphc.onnx.registry import ImportContext, OnnxNode, translator


def _nll(n: OnnxNode, log_probs: Node, labels: Node, weights: Node | None) -> Node:
    """ONNX NegativeLogLikelihoodLoss of log_probs (N, C, d...) at int64 labels (N, d...)."""
    reduction = n.attr("reduction", "mean")
    ignore = n.attr("ignore_index")
    if reduction not in ("mean", "sum", "none"):
        raise n.unsupported(f"reduction {reduction!r} is not supported")
    if labels.dtype != "int64":
        raise n.unsupported(f"labels of dtype {labels.dtype} are not supported (int64 only)")
    classes, nd = log_probs.shape[1], log_probs.ndim
    labels = fn.check_index(labels, classes, ignore=None if ignore is None else int(ignore))
    hot = fn.one_hot(labels, classes, log_probs.dtype)  # (N, d..., C)
    hot = fn.transpose(hot, (0, nd - 1) + tuple(range(1, nd - 1)))  # (N, C, d...)
    picked = fn.sum(fn.mul(log_probs, hot), axis=1)
    weight = None if weights is None else fn.sum(fn.mul(hot, fn.reshape(weights, (1, classes) + (1,) * (nd - 2))),
                                                 axis=1)
    if ignore is not None:
        keep = fn.sub(1.0, fn.cast(fn.equal(labels, int(ignore)), log_probs.dtype))
        weight = keep if weight is None else fn.mul(weight, keep)
    loss = fn.neg(picked if weight is None else fn.mul(picked, weight))
    if reduction == "none":
        return loss
    total = fn.sum(loss)
    if reduction == "sum":
        return total
    return fn.div(total, float(loss.size)) if weight is None else fn.div(total, fn.sum(weight))


@translator("NegativeLogLikelihoodLoss")
def _nll_loss(ctx: ImportContext, n: OnnxNode, xs: list) -> list:
    """NegativeLogLikelihoodLoss → -Σ weight · one_hot(labels) · log_probs over classes, reduced (a composition)."""
    return [_nll(n, ctx.tensor(xs[0]), ctx.tensor(xs[1]), ctx.optional_tensor(xs, 2))]


@translator("SoftmaxCrossEntropyLoss")
def _softmax_cross_entropy(ctx: ImportContext, n: OnnxNode, xs: list) -> list:
    """SoftmaxCrossEntropyLoss → the fused softmax_cross_entropy when it fits (2-D, no weights, no ignore_index, no
    log_prob output); otherwise log_softmax over axis 1 followed by the NLL composition."""
    scores, labels, weights = ctx.tensor(xs[0]), ctx.tensor(xs[1]), ctx.optional_tensor(xs, 2)
    simple = scores.ndim == 2 and weights is None and "ignore_index" not in n.attrs and not n.wants_output(1)
    if simple and labels.dtype == "int64":
        return [fn.softmax_cross_entropy(scores, labels, reduction=n.attr("reduction", "mean"))]
    log_probs = fn.log_softmax(scores, axis=1)
    return [_nll(n, log_probs, labels, weights), log_probs]


@translator("Gradient")
def _gradient(ctx: ImportContext, n: OnnxNode, xs: list) -> list:
    """Gradient(xs=[x₁, …], y) → [∂y/∂x₁, …] (gc.grad of the scalar y). Each input must be the value named by the
    matching entry of ``xs`` (the gradient at the graph's own values, not at values fed to the node)."""
    names, y_name, zs = list(n.attr("xs", [])), n.attr("y"), list(n.attr("zs", []))
    if n.proto.domain != "ai.onnx.preview.training":
        raise n.unsupported(f"domain {n.proto.domain!r} (Gradient is an ai.onnx.preview.training op)")
    if zs:
        raise n.unsupported(f"attribute zs={zs} is not supported (no values held constant)")
    if list(n.proto.input) != names:
        raise n.unsupported(f"inputs {list(n.proto.input)} must be the values named by attribute xs={names}")
    if y_name not in ctx.values:
        raise n.unsupported(f"attribute y={y_name!r} names no value defined before the node")
    y = ctx.tensor(ctx.values[y_name])
    if y.shape != ():
        raise n.unsupported(f"attribute y={y_name!r} of shape {y.shape}: the gradient needs a scalar y")
    wrt = [ctx.tensor(x) for x in xs]
    if any(not x.type.is_float for x in wrt + [y]):
        raise n.unsupported("gradients need floating-point xs and y")
    try:
        return list(grad(y, wrt))
    except GraphcError as err:
        raise n.unsupported(str(err).split("\n  at ")[0]) from None
