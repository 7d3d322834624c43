"""ONNX translators for neural-network ops: Conv, pooling, BatchNormalization, Dropout and the two losses.

ONNX geometry (``auto_pad``, ``pads`` as [x1_begin, x2_begin, ..., x1_end, x2_end], ``strides``, ``dilations``,
``ceil_mode``) maps onto graphc's 2-D ops; 1-D convolution and pooling run as 2-D with a height of 1.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from graphc.ir import Node
from graphc.onnx import OnnxNode, _Ctx, builder, translator
from ops import fn
from ops.registry import apply

# ---------------------------------------------------------------------------------------------- geometry

_AUTO_PAD = {"SAME_UPPER": "same", "SAME_LOWER": "same_lower", "VALID": "valid"}


def _geometry(n: OnnxNode, x: Node, kernel: list[int]) -> tuple[Node, dict[str, Any], bool]:
    """x lifted to 4-D and graphc's kernel_size/stride/dilation/padding; True when x was 1-D spatial."""
    spatial = x.ndim - 2
    if spatial not in (1, 2):
        raise n.unsupported(f"{spatial}-D spatial input (rank {x.ndim}) is not supported: graphc has 2-D conv and "
                            "pooling (1-D runs as 2-D)")
    strides = list(n.attr("strides", None) or [1] * spatial)
    dilations = list(n.attr("dilations", None) or [1] * spatial)
    auto_pad = n.attr("auto_pad", "NOTSET")
    if auto_pad in _AUTO_PAD:
        padding: Any = _AUTO_PAD[auto_pad]
        n.attr("pads")
    elif auto_pad == "NOTSET":
        pads = list(n.attr("pads", None) or [0] * (2 * spatial))
        padding = (pads[0], pads[1], pads[2], pads[3]) if spatial == 2 else (0, pads[0], 0, pads[1])
    else:
        raise n.unsupported(f"auto_pad {auto_pad!r} is not supported")
    lifted = spatial == 1
    if lifted:
        x = fn.reshape(x, x.shape[:2] + (1,) + x.shape[2:])
        kernel, strides, dilations = [1, *kernel], [1, *strides], [1, *dilations]
    geometry = {"kernel_size": tuple(kernel), "stride": tuple(strides), "dilation": tuple(dilations),
                "padding": padding}
    return x, geometry, lifted


def _lower(y: Node, lifted: bool) -> Node:
    return fn.reshape(y, y.shape[:2] + y.shape[3:]) if lifted else y


@translator("Conv")
def _conv(ctx: _Ctx, n: OnnxNode, xs: list) -> list:
    x, w = ctx.tensor(xs[0]), ctx.tensor(xs[1])
    b = ctx.tensor(xs[2]) if len(xs) > 2 and xs[2] is not None else None
    kernel = list(n.attr("kernel_shape", None) or w.shape[2:])
    if tuple(kernel) != tuple(w.shape[2:]):
        raise n.unsupported(f"kernel_shape {kernel} differs from the weight's spatial shape {w.shape[2:]}")
    x, geo, lifted = _geometry(n, x, kernel)
    if lifted:
        w = fn.reshape(w, w.shape[:2] + (1,) + w.shape[2:])
    conv2d = builder("conv2d", n.op_type)
    y = conv2d(x, w, b, stride=geo["stride"], padding=geo["padding"], dilation=geo["dilation"],
               groups=int(n.attr("group", 1)))
    return [_lower(y, lifted)]


@translator("MaxPool", "AveragePool")
def _pool(ctx: _Ctx, n: OnnxNode, xs: list) -> list:
    x = ctx.tensor(xs[0])
    x, geo, lifted = _geometry(n, x, list(n.attr("kernel_shape")))
    ceil_mode = bool(n.attr("ceil_mode", 0))
    if n.op_type == "MaxPool":
        if n.attr("storage_order", 0) and len(n.proto.output) > 1:
            raise n.unsupported("storage_order (of the Indices output) is not supported")
        if len(n.proto.output) > 1 and n.proto.output[1]:
            raise n.unsupported("the Indices output is not supported (graphc's max_pool2d returns values only)")
        y = builder("max_pool2d", n.op_type)(x, ceil_mode=ceil_mode, **geo)
    else:
        include = bool(n.attr("count_include_pad", 0))
        y = builder("avg_pool2d", n.op_type)(x, ceil_mode=ceil_mode, count_include_pad=include, **geo)
    return [_lower(y, lifted)]


@translator("GlobalAveragePool")
def _global_avg_pool(ctx: _Ctx, n: OnnxNode, xs: list) -> list:
    return [builder("global_avg_pool2d", n.op_type)(ctx.tensor(xs[0]))]


@translator("GlobalMaxPool")
def _global_max_pool(ctx: _Ctx, n: OnnxNode, xs: list) -> list:
    x = ctx.tensor(xs[0])
    return [fn.max(x, axis=tuple(range(2, x.ndim)), keepdims=True)]


# ---------------------------------------------------------------------------------------------- normalization


@translator("BatchNormalization")
def _batch_norm(ctx: _Ctx, n: OnnxNode, xs: list) -> list:
    """Inference: graphc's batch_norm with the given statistics. Training (opset 14+ training_mode=1): Y with batch
    statistics, and ONNX's running outputs ``m·input_mean + (1-m)·batch_mean`` (variance biased, as ONNX)."""
    x, scale, bias, mean, var = (ctx.tensor(v) for v in xs)
    eps, momentum = float(n.attr("epsilon", 1e-5)), float(n.attr("momentum", 0.9))
    n.attr("spatial")  # opset < 9: 1 (per channel) is the only behaviour graphc has
    if n.attrs.get("spatial", 1) != 1:
        raise n.unsupported("spatial=0 (per-activation statistics) is not supported")
    if len(n.proto.output) > 1 and any(n.proto.output[1:]) and n.opset < 14:
        raise n.unsupported("the mean/var/saved outputs of opset < 14 are not supported")
    if not n.attr("training_mode", 0):
        return [builder("batch_norm", n.op_type)(x, scale, bias, mean, var, training=False, eps=eps)]
    y = apply("batch_norm", x, scale, bias, mean, var, training=True, eps=eps)
    axes = (0,) + tuple(range(2, x.ndim))
    batch_mean = fn.mean(x, axis=axes)
    centered = fn.sub(x, fn.reshape(batch_mean, (1, x.shape[1]) + (1,) * (x.ndim - 2)))
    batch_var = fn.mean(fn.mul(centered, centered), axis=axes)
    new_mean = fn.add(fn.mul(mean, momentum), fn.mul(batch_mean, 1.0 - momentum))
    new_var = fn.add(fn.mul(var, momentum), fn.mul(batch_var, 1.0 - momentum))
    return [y, new_mean, new_var]


@translator("Dropout")
def _dropout(ctx: _Ctx, n: OnnxNode, xs: list) -> list:
    """Identity in inference (mask all true); training draws graphc's own mask (no mask output)."""
    x = ctx.tensor(xs[0])
    seed = n.attr("seed")
    n.attr("is_test")
    if n.opset < 12:
        ratio, training = float(n.attr("ratio", 0.5)), False
    else:
        ratio = float(ctx.static(xs[1], f"{n.label}: input ratio")) if len(xs) > 1 and xs[1] is not None else 0.5
        training = bool(ctx.static(xs[2], f"{n.label}: input training_mode")) if len(xs) > 2 else False
    if not training or ratio == 0.0:
        return [x, np.ones(x.shape, dtype=bool)]
    if len(n.proto.output) > 1 and n.proto.output[1]:
        raise n.unsupported("the mask output in training mode is not supported (graphc's dropout keeps it internal)")
    return [builder("dropout", n.op_type)(x, ratio, training=True, seed=seed)]


# ---------------------------------------------------------------------------------------------- losses


def _nll(n: OnnxNode, log_probs: Node, labels: Node, weights: Node | None) -> Node:
    """ONNX NegativeLogLikelihoodLoss of log_probs (N, C, d...) at int64 labels (N, d...)."""
    reduction = n.attr("reduction", "mean")
    ignore = n.attr("ignore_index")
    if reduction not in ("mean", "sum", "none"):
        raise n.unsupported(f"reduction {reduction!r} is not supported")
    if labels.dtype != "int64":
        raise n.unsupported(f"labels of dtype {labels.dtype} are not supported (int64 only)")
    classes, nd = log_probs.shape[1], log_probs.ndim
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
def _nll_loss(ctx: _Ctx, n: OnnxNode, xs: list) -> list:
    weights = ctx.tensor(xs[2]) if len(xs) > 2 and xs[2] is not None else None
    return [_nll(n, ctx.tensor(xs[0]), ctx.tensor(xs[1]), weights)]


@translator("SoftmaxCrossEntropyLoss")
def _softmax_cross_entropy(ctx: _Ctx, n: OnnxNode, xs: list) -> list:
    """graphc's fused softmax_cross_entropy when it fits (2-D, no weights, no ignore_index, no log_prob output);
    otherwise log_softmax over axis 1 followed by the NLL composition."""
    scores, labels = ctx.tensor(xs[0]), ctx.tensor(xs[1])
    weights = ctx.tensor(xs[2]) if len(xs) > 2 and xs[2] is not None else None
    want_log_prob = len(n.proto.output) > 1 and bool(n.proto.output[1])
    simple = scores.ndim == 2 and weights is None and "ignore_index" not in n.attrs and not want_log_prob
    if simple and labels.dtype == "int64":
        return [fn.softmax_cross_entropy(scores, labels, reduction=n.attr("reduction", "mean"))]
    log_probs = fn.log_softmax(scores, axis=1)
    return [_nll(n, log_probs, labels, weights), log_probs]
