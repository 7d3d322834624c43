"""Translators for activations and the softmax family."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

import ops.fn as fn
from graphc.ir import Node
from graphc.onnx.registry import ImportContext, OnnxNode, translator

_PLAIN: dict[str, Callable[[Node], Node]] = {"Relu": fn.relu, "Sigmoid": fn.sigmoid, "Tanh": fn.tanh,
                                             "HardSwish": fn.hard_swish}


@translator(*_PLAIN)
def _plain(ctx: ImportContext, n: OnnxNode, xs: list) -> list:
    """Relu, Sigmoid, Tanh, HardSwish → relu, sigmoid, tanh, hard_swish."""
    return [_PLAIN[n.op_type](ctx.tensor(xs[0]))]


@translator("LeakyRelu")
def _leaky_relu(ctx: ImportContext, n: OnnxNode, xs: list) -> list:
    """LeakyRelu → leaky_relu(x, alpha) (ONNX's default alpha 0.01)."""
    return [fn.leaky_relu(ctx.tensor(xs[0]), alpha=float(n.attr("alpha", 0.01)))]


@translator("HardSigmoid")
def _hard_sigmoid(ctx: ImportContext, n: OnnxNode, xs: list) -> list:
    """HardSigmoid → hard_sigmoid(x, alpha, beta) = max(0, min(1, alpha·x + beta)) (ONNX's defaults 0.2, 0.5)."""
    alpha, beta = float(n.attr("alpha", 0.2)), float(n.attr("beta", 0.5))
    if not alpha > 0:
        raise n.unsupported(f"alpha {alpha} is not supported (graphc's hard_sigmoid needs alpha > 0)")
    return [fn.hard_sigmoid(ctx.tensor(xs[0]), alpha=alpha, beta=beta)]


@translator("Softmax", "LogSoftmax")
def _softmax(ctx: ImportContext, n: OnnxNode, xs: list) -> list:
    """Softmax, LogSoftmax → softmax, log_softmax along ``axis`` (before opset 13: of x coerced to 2-D at axis)."""
    x = ctx.tensor(xs[0])
    func = fn.softmax if n.op_type == "Softmax" else fn.log_softmax
    if n.opset >= 13:
        return [func(x, axis=int(n.attr("axis", -1)))]
    axis = int(n.attr("axis", 1)) % max(x.ndim, 1)
    rows = int(np.prod(x.shape[:axis], dtype=np.int64))
    flat = fn.reshape(x, (rows, -1))
    return [fn.reshape(func(flat, axis=1), x.shape)]
