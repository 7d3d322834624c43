"""Activation ops: sigmoid tanh relu leaky_relu (elementwise) and softmax log_softmax (along one axis)."""

from __future__ import annotations

import numpy as np

from graphc.ir import TensorType
from ops import fn
from ops.base import ErrorCase, Op, Sample, away_from_zero, normalize_axis, require_float
from ops.elementwise import Unary
from ops.registry import register


@register
class Sigmoid(Unary):
    """y = 1 / (1 + e⁻ˣ);  dy/dx = y(1 - y)."""

    name = "sigmoid"

    def reference(self, attrs, x):
        # split by sign so neither branch overflows
        e = np.exp(-np.abs(x))
        return np.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype)

    def vjp(self, node, g):
        return (fn.mul(g, fn.mul(node, fn.sub(1.0, node))),)

    def scalar(self, b, attrs, x):
        return b.sigmoid(x)


@register
class Tanh(Unary):
    """y = tanh x;  dy/dx = 1 - y²."""

    name = "tanh"

    def reference(self, attrs, x):
        return np.tanh(x)

    def vjp(self, node, g):
        return (fn.mul(g, fn.sub(1.0, fn.mul(node, node))),)

    def scalar(self, b, attrs, x):
        return b.tanh(x)


@register
class Relu(Unary):
    """y = max(x, 0);  dy/dx = 1 for x > 0, else 0."""

    name = "relu"

    def reference(self, attrs, x):
        return np.maximum(x, 0).astype(x.dtype)

    def domain(self, rng, shape):
        return away_from_zero(rng, *shape)

    def vjp(self, node, g):
        return (fn.where(fn.greater(node.inputs[0], 0.0), g, 0.0),)

    def scalar(self, b, attrs, x):
        return b.max(x, b.const(0, like=x))


@register
class LeakyRelu(Unary):
    """y = x for x > 0, αx otherwise;  dy/dx = 1 or α."""

    name = "leaky_relu"

    def normalize(self, attrs, x):
        return {"alpha": float(attrs.get("alpha", 0.01))}

    def reference(self, attrs, x):
        return np.where(x > 0, x, x * attrs["alpha"]).astype(x.dtype)

    def domain(self, rng, shape):
        return away_from_zero(rng, *shape)

    def samples(self, rng):
        return super().samples(rng) + [Sample([self.domain(rng, (4, 3))], {"alpha": 0.2})]

    def vjp(self, node, g):
        x = node.inputs[0]
        return (fn.where(fn.greater(x, 0.0), g, fn.mul(g, node.attrs["alpha"])),)

    def scalar(self, b, attrs, x):
        return b.select(b.gt(x, b.const(0, like=x)), x, b.mul(x, b.const(attrs["alpha"], like=x)))


class _AlongAxis(Op):
    """Base of ops normalized along one axis (same shape in and out)."""

    kind = "opaque"
    arity = 1

    def normalize(self, attrs, x):
        return {"axis": normalize_axis(attrs.get("axis", -1), max(x.ndim, 1)) if x.ndim else 0}

    def infer(self, attrs, x):
        require_float(self.name, x)
        if x.ndim == 0:
            from ops.base import OpError

            raise OpError("needs a tensor of rank >= 1")
        return TensorType(x.shape, x.dtype)

    def samples(self, rng):
        return [Sample([rng.standard_normal((3, 5))]), Sample([rng.standard_normal((2, 3, 4))], {"axis": 1}),
                Sample([rng.standard_normal((6,)) * 10])]

    def error_cases(self):
        return [ErrorCase([((3, 4), "float32")], {"axis": 2}, "out of range"),
                ErrorCase([((), "float32")], {}, "rank >= 1")]


@register
class Softmax(_AlongAxis):
    """yᵢ = e^(xᵢ - max x) / Σⱼ e^(xⱼ - max x);  dx = y ⊙ (g - Σ g ⊙ y)."""

    name = "softmax"

    def reference(self, attrs, x):
        z = x - np.max(x, axis=attrs["axis"], keepdims=True)
        e = np.exp(z)
        return e / np.sum(e, axis=attrs["axis"], keepdims=True)

    def vjp(self, node, g):
        axis = node.attrs["axis"]
        return (fn.mul(node, fn.sub(g, fn.sum(fn.mul(g, node), axis=axis, keepdims=True))),)


@register
class LogSoftmax(_AlongAxis):
    """yᵢ = xᵢ - max x - log Σⱼ e^(xⱼ - max x);  dx = g - softmax(x) ⊙ Σ g."""

    name = "log_softmax"

    def reference(self, attrs, x):
        z = x - np.max(x, axis=attrs["axis"], keepdims=True)
        return z - np.log(np.sum(np.exp(z), axis=attrs["axis"], keepdims=True))

    def vjp(self, node, g):
        axis = node.attrs["axis"]
        return (fn.sub(g, fn.mul(fn.exp(node), fn.sum(g, axis=axis, keepdims=True))),)
