"""Translators for activations and the softmax family."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

import ops.fn as fn
from graphc.ir import Node
from graphc.onnx.registry import ImportContext, OnnxNode, optional_input, translator

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


@translator("Clip")
def _clip(ctx: ImportContext, n: OnnxNode, xs: list) -> list:
    """Clip → clip(x, lo, hi) (ReLU6 in MobileNets): the bounds are the ``min``/``max`` attributes before opset 11,
    optional inputs 1 and 2 from it on (import-time constants); an omitted bound is unbounded."""
    x = ctx.tensor(xs[0])
    if n.opset < 11:
        lo, hi = n.attr("min", None), n.attr("max", None)
    else:
        bounds = [optional_input(xs, i) for i in (1, 2)]
        lo, hi = (None if v is None else ctx.static(v, f"{n.label}: {what}")
                  for v, what in zip(bounds, ("min", "max")))
    lo, hi = (None if v is None else float(np.asarray(v).reshape(-1)[0]) for v in (lo, hi))
    if lo is not None and hi is not None and lo > hi:  # min(max(x, lo), hi) is hi everywhere (ONNX, NumPy)
        lo = hi
    return [fn.clip(x, lo=lo, hi=hi)]


@translator("PRelu")
def _prelu(ctx: ImportContext, n: OnnxNode, xs: list) -> list:
    """PRelu(x, slope) → prelu, the slope broadcast to x by NumPy's rules (lifted to x's rank first, so a slope
    of shape (C, 1, 1) lines up with the channels of an (N, C, H, W) input, and a (C,) one with the last axis).
    Opset < 7 (no broadcasting yet): a (C,) slope is per channel, axis 1 of x, as PyTorch's PReLU(C) exports."""
    x, slope = ctx.tensor(xs[0]), ctx.tensor(xs[1])
    if n.opset < 7 and slope.ndim == 1 and x.ndim >= 2 and slope.shape[0] == x.shape[1] > 1:
        slope = fn.reshape(slope, (1, slope.shape[0]) + (1,) * (x.ndim - 2))
    if slope.ndim < x.ndim:
        slope = fn.reshape(slope, (1,) * (x.ndim - slope.ndim) + slope.shape)
    return [fn.prelu(x, slope)]


@translator("Elu", "Selu", "Celu")
def _elu(ctx: ImportContext, n: OnnxNode, xs: list) -> list:
    """Elu → elu(x, alpha); Selu → gamma·elu(x, alpha); Celu → alpha·elu(x/alpha, 1) (ONNX's default alphas)."""
    x = ctx.tensor(xs[0])
    if n.op_type == "Elu":
        return [fn.elu(x, alpha=float(n.attr("alpha", 1.0)))]
    if n.op_type == "Selu":
        alpha = float(n.attr("alpha", 1.67326319217681884765625))
        gamma = float(n.attr("gamma", 1.05070102214813232421875))
        return [fn.mul(fn.elu(x, alpha=alpha), gamma)]
    alpha = float(n.attr("alpha", 1.0))
    if alpha == 0.0:
        raise n.unsupported("alpha 0 is not supported (Celu divides by alpha)")
    return [fn.elu(x) if alpha == 1.0 else fn.mul(fn.elu(fn.div(x, alpha)), alpha)]


@translator("Softplus", "Softsign", "Mish")
def _softplus(ctx: ImportContext, n: OnnxNode, xs: list) -> list:
    """Softplus → softplus; Softsign → x / (1 + |x|); Mish → x·tanh(softplus(x))."""
    x = ctx.tensor(xs[0])
    if n.op_type == "Softplus":
        return [fn.softplus(x)]
    if n.op_type == "Softsign":
        return [fn.div(x, fn.add(fn.abs(x), 1.0))]
    return [fn.mul(x, fn.tanh(fn.softplus(x)))]


@translator("ThresholdedRelu")
def _thresholded_relu(ctx: ImportContext, n: OnnxNode, xs: list) -> list:
    """ThresholdedRelu → where(x > alpha, x, 0) (ONNX's default alpha 1)."""
    x = ctx.tensor(xs[0])
    return [fn.where(fn.greater(x, float(n.attr("alpha", 1.0))), x, 0.0)]


@translator("Swish")
def _swish(ctx: ImportContext, n: OnnxNode, xs: list) -> list:
    """Swish → x·sigmoid(alpha·x) (ONNX's default alpha 1)."""
    x = ctx.tensor(xs[0])
    alpha = float(n.attr("alpha", 1.0))
    return [fn.mul(x, fn.sigmoid(x if alpha == 1.0 else fn.mul(x, alpha)))]


@translator("Gelu")
def _gelu(ctx: ImportContext, n: OnnxNode, xs: list) -> list:
    """Gelu → gelu(x, approximate): 'none' (ONNX's default) the exact x·½(1 + erf(x/√2)), 'tanh' the tanh form."""
    approximate = n.attr("approximate", "none")
    if approximate not in ("none", "tanh"):
        raise n.unsupported(f"attribute approximate={approximate!r} is not supported (only 'none' and 'tanh')")
    return [fn.gelu(ctx.tensor(xs[0]), approximate=approximate)]


@translator("Erf")
def _erf(ctx: ImportContext, n: OnnxNode, xs: list) -> list:
    """Erf → erf (float inputs; torch exporters write exact GELU as x·½(1 + Erf(x/√2)))."""
    x = ctx.tensor(xs[0])
    if not x.type.is_float:
        raise n.unsupported(f"Erf of a {x.dtype} input is not supported (graphc's erf takes float32/float64)")
    return [fn.erf(x)]


@translator("Shrink")
def _shrink(ctx: ImportContext, n: OnnxNode, xs: list) -> list:
    """Shrink → where(x < −λ, x + bias, where(x > λ, x − bias, 0)) (ONNX's defaults λ = 0.5, bias = 0); integer
    inputs take integral λ and bias."""
    x = ctx.tensor(xs[0])
    lambd, bias = float(n.attr("lambd", 0.5)), float(n.attr("bias", 0.0))
    if not x.type.is_float:
        if x.dtype == "bool" or lambd != int(lambd) or bias != int(bias):
            raise n.unsupported(f"attribute lambd={lambd}/bias={bias} on a {x.dtype} input is not supported "
                                "(integer inputs need integral values)")
        lambd, bias = int(lambd), int(bias)
    upper = fn.where(fn.greater(x, lambd), fn.sub(x, bias), 0)
    return [fn.where(fn.greater(-lambd, x), fn.add(x, bias), upper)]
