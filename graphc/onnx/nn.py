"""Translators for neural-network layers: Conv, pooling, BatchNormalization, LayerNormalization and Dropout.

ONNX geometry (``auto_pad``, ``pads`` as [x1_begin, x2_begin, ..., x1_end, x2_end], ``strides``, ``dilations``,
``ceil_mode``) maps onto graphc's 2-D ops; 1-D convolution and pooling run as 2-D with a height of 1.
"""

from __future__ import annotations

from typing import Any

import numpy as np

import ops.fn as fn
from graphc.ir import Node
from graphc.onnx.registry import ImportContext, OnnxNode, optional_input, translator
from ops.conv_transpose import conv_transpose2d
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
    """Drop the unit height added by :func:`_geometry` to a 1-D spatial input."""
    return fn.reshape(y, y.shape[:2] + y.shape[3:]) if lifted else y


@translator("Conv")
def _conv(ctx: ImportContext, n: OnnxNode, xs: list) -> list:
    """Conv (1-D or 2-D) → conv2d with stride, padding, dilation and groups."""
    x, w, b = ctx.tensor(xs[0]), ctx.tensor(xs[1]), ctx.optional_tensor(xs, 2)
    kernel = list(n.attr("kernel_shape", None) or w.shape[2:])
    if tuple(kernel) != tuple(w.shape[2:]):
        raise n.unsupported(f"kernel_shape {kernel} differs from the weight's spatial shape {w.shape[2:]}")
    x, geo, lifted = _geometry(n, x, kernel)
    if lifted:
        w = fn.reshape(w, w.shape[:2] + (1,) + w.shape[2:])
    y = fn.conv2d(x, w, b, stride=geo["stride"], padding=geo["padding"], dilation=geo["dilation"],
                  groups=int(n.attr("group", 1)))
    return [_lower(y, lifted)]


@translator("MaxPool", "AveragePool")
def _pool(ctx: ImportContext, n: OnnxNode, xs: list) -> list:
    """MaxPool, AveragePool (1-D or 2-D) → max_pool2d, avg_pool2d (no Indices output)."""
    x = ctx.tensor(xs[0])
    x, geo, lifted = _geometry(n, x, list(n.attr("kernel_shape")))
    ceil_mode = bool(n.attr("ceil_mode", 0))
    if n.op_type == "MaxPool":
        if n.attr("storage_order", 0) and len(n.proto.output) > 1:
            raise n.unsupported("storage_order (of the Indices output) is not supported")
        if n.wants_output(1):
            raise n.unsupported("the Indices output is not supported (graphc's max_pool2d returns values only)")
        y = fn.max_pool2d(x, ceil_mode=ceil_mode, **geo)
    else:
        include = bool(n.attr("count_include_pad", 0))
        y = fn.avg_pool2d(x, ceil_mode=ceil_mode, count_include_pad=include, **geo)
    return [_lower(y, lifted)]


@translator("GlobalAveragePool")
def _global_avg_pool(ctx: ImportContext, n: OnnxNode, xs: list) -> list:
    """GlobalAveragePool → global_avg_pool2d."""
    return [fn.global_avg_pool2d(ctx.tensor(xs[0]))]


@translator("GlobalMaxPool")
def _global_max_pool(ctx: ImportContext, n: OnnxNode, xs: list) -> list:
    """GlobalMaxPool → max over the spatial axes, keepdims."""
    x = ctx.tensor(xs[0])
    return [fn.max(x, axis=tuple(range(2, x.ndim)), keepdims=True)]


# ---------------------------------------------------------------------------------------------- normalization


@translator("BatchNormalization")
def _batch_norm(ctx: ImportContext, n: OnnxNode, xs: list) -> list:
    """Inference: batch_norm with the given statistics. Training (opset 14+ training_mode=1): Y with batch
    statistics, and ONNX's running outputs ``m·input_mean + (1-m)·batch_mean`` (variance biased, as ONNX).
    Scale and bias become trainable params; the running mean and variance are state (non-trainable params), so
    an optimizer never descends on them."""
    x, scale, bias = (ctx.tensor(v) for v in xs[:3])
    mean, var = (ctx.node_state(n, i, xs[i]) for i in (3, 4))
    eps, momentum = float(n.attr("epsilon", 1e-5)), float(n.attr("momentum", 0.9))
    n.attr("spatial")  # opset < 9: 1 (per channel) is the only behaviour graphc has
    if n.opset < 7 and n.attr("is_test", 0) == 0 and len(n.proto.output) > 1 and any(n.proto.output[1:]):
        raise n.unsupported("attribute is_test=0 (training outputs of opset < 7) is not supported")
    n.attr("is_test")  # opset < 7: inference (the only outputs used) is what graphc computes
    n.attr("consumed_inputs")  # opset < 6: in-place hints, no effect on the values
    if n.attrs.get("spatial", 1) != 1:
        raise n.unsupported("spatial=0 (per-activation statistics) is not supported")
    if len(n.proto.output) > 1 and any(n.proto.output[1:]) and n.opset < 14:
        raise n.unsupported("the mean/var/saved outputs of opset < 14 are not supported")
    if not n.attr("training_mode", 0):
        if ctx.training and len([o for o in n.proto.output if o]) == 1:  # fine-tuning: PyTorch's model.train()
            return [fn.batch_norm(x, scale, bias, mean, var, training=True, momentum=1.0 - momentum, eps=eps)]
        return [fn.batch_norm(x, scale, bias, mean, var, training=False, eps=eps)]
    y = apply("batch_norm", x, scale, bias, mean, var, training=True, eps=eps)
    axes = (0,) + tuple(range(2, x.ndim))
    batch_mean = fn.mean(x, axis=axes)
    centered = fn.sub(x, fn.reshape(batch_mean, (1, x.shape[1]) + (1,) * (x.ndim - 2)))
    batch_var = fn.mean(fn.mul(centered, centered), axis=axes)
    new_mean = fn.add(fn.mul(mean, momentum), fn.mul(batch_mean, 1.0 - momentum))
    new_var = fn.add(fn.mul(var, momentum), fn.mul(batch_var, 1.0 - momentum))
    return [y, new_mean, new_var]


@translator("LayerNormalization")
def _layer_norm(ctx: ImportContext, n: OnnxNode, xs: list) -> list:
    """LayerNormalization → the fused layer_norm op over the axes from ``axis`` on (one kernel); when the optional
    Mean or InvStdDev output is used, a composition instead: d = x - mean(x), inv = 1/√(mean(d²) + ε),
    y = d·inv·scale + bias, Mean and InvStdDev keeping the reduced axes (size 1)."""
    x, scale, bias = ctx.tensor(xs[0]), ctx.tensor(xs[1]), ctx.optional_tensor(xs, 2)
    eps = float(n.attr("epsilon", 1e-5))
    stash = int(n.attr("stash_type", 1))
    if stash != 1:
        raise n.unsupported(f"stash_type={stash} is not supported (1: statistics in float32 or wider)")
    axis = int(n.attr("axis", -1))
    axis = axis + x.ndim if axis < 0 else axis
    if not 0 <= axis < x.ndim:
        raise n.unsupported(f"axis {n.attrs.get('axis')} is out of range for an input of rank {x.ndim}")
    if not (n.wants_output(1) or n.wants_output(2)) and scale.ndim <= x.ndim and (bias is None or bias.ndim <= x.ndim):
        return [fn.layer_norm(x, scale, bias, axis=axis, eps=eps)]
    axes = tuple(range(axis, x.ndim))
    mean = fn.mean(x, axis=axes, keepdims=True)
    centered = fn.sub(x, mean)
    inv_std = fn.div(1.0, fn.sqrt(fn.add(fn.mean(fn.mul(centered, centered), axis=axes, keepdims=True), eps)))
    y = fn.mul(fn.mul(centered, inv_std), scale)
    return [y if bias is None else fn.add(y, bias), mean, inv_std]


@translator("ConvTranspose")
def _conv_transpose(ctx: ImportContext, n: OnnxNode, xs: list) -> list:
    """ConvTranspose (1-D or 2-D) → conv_transpose2d (conv2d's input gradient) with strides, dilations, group,
    pads, output_padding, output_shape and auto_pad (ONNX's reference: the total padding
    s·(in − 1) + output_padding + (k − 1)·d + 1 − output_shape split floor-half first for SAME_UPPER)."""
    x, w, b = ctx.tensor(xs[0]), ctx.tensor(xs[1]), ctx.optional_tensor(xs, 2)
    spatial = x.ndim - 2
    if spatial not in (1, 2) or w.ndim != x.ndim:
        raise n.unsupported(f"{spatial}-D spatial input (rank {x.ndim}) is not supported: graphc has 2-D "
                            "transposed convolution (1-D runs as 2-D)")
    kernel = list(n.attr("kernel_shape", None) or w.shape[2:])
    if tuple(kernel) != tuple(w.shape[2:]):
        raise n.unsupported(f"attribute kernel_shape {kernel} differs from the weight's spatial shape {w.shape[2:]}")
    strides = list(n.attr("strides", None) or [1] * spatial)
    dilations = list(n.attr("dilations", None) or [1] * spatial)
    extra = list(n.attr("output_padding", None) or [0] * spatial)
    auto_pad, shape = n.attr("auto_pad", "NOTSET"), n.attr("output_shape", None)
    pads = n.attr("pads", None)
    if auto_pad not in ("NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID"):
        raise n.unsupported(f"attribute auto_pad={auto_pad!r} is not supported")
    if shape is not None or auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        shape = list(shape)[-spatial:] if shape is not None else [x.shape[2 + a] * strides[a] for a in range(spatial)]
        total = [strides[a] * (x.shape[2 + a] - 1) + extra[a] + (kernel[a] - 1) * dilations[a] + 1 - shape[a]
                 for a in range(spatial)]
        first = [t // 2 if auto_pad == "SAME_UPPER" else t - t // 2 for t in total]
        pads = first + [t - f for t, f in zip(total, first)]
    elif pads is None or auto_pad == "VALID":
        pads = [0] * (2 * spatial)
    if spatial == 1:  # lift to 2-D with a unit height
        x, w = (fn.reshape(v, v.shape[:2] + (1,) + v.shape[2:]) for v in (x, w))
        strides, dilations, extra, pads = [1, *strides], [1, *dilations], [0, *extra], [0, pads[0], 0, pads[1]]
    y = conv_transpose2d(x, w, b, stride=tuple(strides), pads=tuple(pads), output_padding=tuple(extra),
                         dilation=tuple(dilations), groups=int(n.attr("group", 1)))
    return [_lower(y, spatial == 1)]


@translator("InstanceNormalization")
def _instance_norm(ctx: ImportContext, n: OnnxNode, xs: list) -> list:
    """InstanceNormalization → per (sample, channel) over the spatial axes: d = x − mean(x),
    y = d/√(mean(d²) + ε)·scale[c] + B[c]."""
    x, scale, bias = (ctx.tensor(v) for v in xs[:3])
    if x.ndim < 3:
        raise n.unsupported(f"an input of rank {x.ndim} is not supported (needs N, C and spatial axes)")
    eps = float(n.attr("epsilon", 1e-5))
    axes = tuple(range(2, x.ndim))
    per_channel = (x.shape[1],) + (1,) * len(axes)
    centered = fn.sub(x, fn.mean(x, axis=axes, keepdims=True))
    inv_std = fn.div(1.0, fn.sqrt(fn.add(fn.mean(fn.mul(centered, centered), axis=axes, keepdims=True), eps)))
    y = fn.mul(fn.mul(centered, inv_std), fn.reshape(scale, per_channel))
    return [fn.add(y, fn.reshape(bias, per_channel))]


@translator("LRN")
def _lrn(ctx: ImportContext, n: OnnxNode, xs: list) -> list:
    """LRN → y = x/(bias + α/size·Σ x²)^β, the sum over channels c − ⌊(size−1)/2⌋ … c + ⌈(size−1)/2⌉ (zeros
    beyond the edges): the squares padded along axis 1 and ``size`` shifted slices added."""
    x = ctx.tensor(xs[0])
    size = int(n.attr("size"))
    alpha, beta, bias = float(n.attr("alpha", 1e-4)), float(n.attr("beta", 0.75)), float(n.attr("bias", 1.0))
    if size < 1 or x.ndim < 2:
        raise n.unsupported(f"size={size} on an input of rank {x.ndim} is not supported")
    before, after = (size - 1) // 2, size - 1 - (size - 1) // 2
    squares = fn.pad(fn.mul(x, x), [(0, 0), (before, after)] + [(0, 0)] * (x.ndim - 2))
    channels = x.shape[1]
    window = None
    for k in range(size):
        part = fn.getitem(squares, (slice(None), slice(k, k + channels)))
        window = part if window is None else fn.add(window, part)
    return [fn.div(x, fn.pow(fn.add(fn.mul(window, alpha / size), bias), beta))]


@translator("Dropout")
def _dropout(ctx: ImportContext, n: OnnxNode, xs: list) -> list:
    """Identity in inference (mask all true); training → dropout with graphc's own mask (no mask output)."""
    x = ctx.tensor(xs[0])
    seed = n.attr("seed")
    n.attr("is_test")
    if n.opset < 12:
        ratio, training = float(n.attr("ratio", 0.5)), False
    else:
        ratio_input, training_input = optional_input(xs, 1), optional_input(xs, 2)
        ratio = 0.5 if ratio_input is None else float(ctx.static(ratio_input, f"{n.label}: input ratio"))
        training = False if training_input is None else bool(ctx.static(training_input,
                                                                         f"{n.label}: input training_mode"))
    if not training or ratio == 0.0:
        return [x, np.ones(x.shape, dtype=bool)]
    if n.wants_output(1):
        raise n.unsupported("the mask output in training mode is not supported (graphc's dropout keeps it internal)")
    return [fn.dropout(x, ratio, training=True, seed=seed)]
