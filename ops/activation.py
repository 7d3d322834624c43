"""Activation ops: sigmoid tanh relu leaky_relu elu softplus gelu clip (elementwise), prelu (broadcast slope) and
softmax log_softmax (along one axis)."""

from __future__ import annotations

import math

import numpy as np

import ops.fn as fn
from graphc.ir import TensorType
from ops.base import ErrorCase, Op, OpError, Sample, away_from_zero, normalize_axis, require_float
from ops.elementwise import Binary, Unary
from ops.registry import register
from ops.special import gelu_exact_formula


@register
class Sigmoid(Unary):
    """y = 1 / (1 + e⁻ˣ);  dy/dx = y(1 - y)."""

    name = "sigmoid"
    cost = 25

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
    cost = 25

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
    cost = 25

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
    cost = 25

    def reference(self, attrs, x):
        z = x - np.max(x, axis=attrs["axis"], keepdims=True)
        return z - np.log(np.sum(np.exp(z), axis=attrs["axis"], keepdims=True))

    def vjp(self, node, g):
        axis = node.attrs["axis"]
        return (fn.sub(g, fn.mul(fn.exp(node), fn.sum(g, axis=axis, keepdims=True))),)


# -- more activations ----------------------------------------------------------------------------------------


@register
class Elu(Unary):
    """y = x for x > 0, α(eˣ - 1) otherwise;  dy/dx = 1 for x > 0, αeˣ = y + α otherwise."""

    name = "elu"
    cost = 20

    def normalize(self, attrs, x):
        return {"alpha": float(attrs.get("alpha", 1.0))}

    def reference(self, attrs, x):
        return np.where(x > 0, x, attrs["alpha"] * np.expm1(np.minimum(x, 0))).astype(x.dtype)

    def domain(self, rng, shape):
        return away_from_zero(rng, *shape)

    def samples(self, rng):
        return super().samples(rng) + [Sample([self.domain(rng, (4, 3))], {"alpha": 0.5})]

    def vjp(self, node, g):
        x = node.inputs[0]
        return (fn.where(fn.greater(x, 0.0), g, fn.mul(g, fn.add(node, node.attrs["alpha"]))),)

    def scalar(self, b, attrs, x):
        alpha, zero = b.const(attrs["alpha"], like=x), b.const(0, like=x)
        negative = b.mul(alpha, b.sub(b.exp(b.min(x, zero)), b.const(1, like=x)))
        return b.select(b.gt(x, zero), x, negative)


@register
class Softplus(Unary):
    """y = log(1 + eˣ), computed stably as max(x, 0) + log(1 + e^(-|x|));  dy/dx = sigmoid(x)."""

    name = "softplus"
    cost = 40

    def reference(self, attrs, x):
        return np.logaddexp(np.zeros((), x.dtype), x)

    def samples(self, rng):
        return super().samples(rng) + [Sample([np.array([-40.0, -3.0, 0.0, 3.0, 40.0])]),
                                       Sample([np.array([-100.0, -30.0, -17.0, -15.0, -10.0])])]

    def vjp(self, node, g):
        return (fn.mul(g, fn.sigmoid(node.inputs[0])),)

    def scalar(self, b, attrs, x):
        """max(x, 0) + log1p(exp(-|x|)): an accurate log1p keeps full relative accuracy in the negative tail, where
        log(1 + e) rounds 1 + e to 1 and returns 0 (x < -17 in float32)."""
        return b.add(b.max(x, b.const(0, like=x)), b.log1p(b.exp(b.neg(b.abs(x)))))


_GELU_C = float(np.sqrt(2.0 / np.pi))
_GELU_K = 0.044715
_SQRT_HALF = math.sqrt(0.5)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


@register
class Gelu(Unary):
    """GELU. ``approximate="tanh"`` (the default): y = ½x(1 + tanh u), u = c(x + kx³), c = √(2/π), k = 0.044715;
    dy/dx = ½(1 + tanh u) + ½x(1 - tanh²u)·c(1 + 3kx²). ``approximate="none"``: y = x·Φ(x), Φ(x) = ½(1 + erf(x/√2));
    dy/dx = Φ(x) + x·e^(−x²/2)/√(2π)."""

    name = "gelu"
    cost = 30

    def normalize(self, attrs, x):
        approximate = attrs.get("approximate", "tanh")
        if approximate not in ("tanh", "none"):
            raise OpError(f"approximate must be 'tanh' or 'none', got {approximate!r}")
        return {"approximate": approximate}

    def reference(self, attrs, x):
        if attrs["approximate"] == "none":  # Φ(x) = ½erfc(−x/√2): no cancellation in the negative tail
            phi = np.vectorize(lambda v: 0.5 * math.erfc(-v / math.sqrt(2.0)), otypes=[np.float64])(x)
            return (x * phi).astype(x.dtype)
        # ½(1 + tanh u) = sigmoid(2u): an independent formulation of the same function, split by sign
        u2 = 2 * _GELU_C * (x + _GELU_K * x**3)
        e = np.exp(-np.abs(u2))
        return (x * np.where(u2 >= 0, 1 / (1 + e), e / (1 + e))).astype(x.dtype)

    def samples(self, rng):
        wide = np.concatenate([rng.uniform(-9.0, 9.0, 12), [0.0, -1.2, 1.7, -30.0, 30.0]])
        return super().samples(rng) + [Sample([rng.standard_normal((3, 4))], {"approximate": "none"}),
                                       Sample([wide], {"approximate": "none"})]

    def error_cases(self):
        return super().error_cases() + [ErrorCase([((3,), "float32")], {"approximate": "erf"}, "'tanh' or 'none'")]

    def vjp(self, node, g):
        x = node.inputs[0]
        if node.attrs["approximate"] == "none":
            phi = fn.mul(fn.add(fn.erf(fn.mul(x, _SQRT_HALF)), 1.0), 0.5)
            density = fn.mul(fn.exp(fn.mul(fn.mul(x, x), -0.5)), _INV_SQRT_2PI)
            return (fn.mul(g, fn.add(phi, fn.mul(x, density))),)
        t = fn.tanh(fn.mul(fn.add(x, fn.mul(fn.mul(fn.mul(x, x), x), _GELU_K)), _GELU_C))
        du = fn.mul(fn.add(fn.mul(fn.mul(x, x), 3 * _GELU_K), 1.0), _GELU_C)
        dy = fn.add(fn.mul(fn.add(t, 1.0), 0.5), fn.mul(fn.mul(fn.mul(x, 0.5), fn.sub(1.0, fn.mul(t, t))), du))
        return (fn.mul(g, dy),)

    def scalar(self, b, attrs, x):
        if attrs["approximate"] == "none":  # x·½(1 + erf(x/√2)), 1 + erf without cancellation
            return gelu_exact_formula(b, x)
        c, k, half, one = (b.const(v, like=x) for v in (_GELU_C, _GELU_K, 0.5, 1.0))
        u = b.mul(c, b.add(x, b.mul(k, b.mul(b.mul(x, x), x))))
        return b.mul(b.mul(half, x), b.add(one, b.tanh(u)))


@register
class Prelu(Binary):
    """y = x for x > 0, a·x otherwise, the learned slope a broadcast to x (``fn.prelu`` reshapes a per-channel
    (C,) slope to (C, 1, …) so it lines up with axis 1);  dy/dx = 1 or a, dy/da = 0 or x (summed over the
    broadcast axes)."""

    name = "prelu"

    def infer(self, attrs, x, slope):
        out = super().infer(attrs, x, slope)
        if out.shape != x.shape:
            raise OpError(f"the slope {slope.shape} must broadcast to the input's shape {x.shape}, "
                          f"not enlarge it to {out.shape}")
        return out

    def reference(self, attrs, x, slope):
        return np.where(x > 0, x, slope * x).astype(x.dtype)

    def domain(self, rng, shape, position):
        return away_from_zero(rng, *shape) if position == 0 else rng.uniform(0.05, 0.5, shape)

    def samples(self, rng):
        pairs = [((3, 4), (4,)), ((2, 3, 4, 4), (3, 1, 1)), ((5,), ()), ((2, 3), (2, 3))]
        return [Sample([self.domain(rng, a, 0), self.domain(rng, b, 1)]) for a, b in pairs]

    def error_cases(self):
        return [ErrorCase([((3,), "float32"), ((2, 3), "float32")], {}, "must broadcast to the input's shape"),
                ErrorCase([((3, 4), "float32"), ((3,), "float32")], {}, "do not broadcast")]

    def vjp(self, node, g):
        x, slope = node.inputs
        positive_x = fn.greater(x, 0.0)
        return (fn.where(positive_x, g, fn.mul(g, slope)),
                fn.sum_to(fn.where(positive_x, 0.0, fn.mul(g, x)), slope.shape))

    def scalar(self, b, attrs, x, slope):
        return b.select(b.gt(x, b.const(0, like=x)), x, b.mul(slope, x))


@register
class Clip(Unary):
    """y = min(max(x, lo), hi) (``lo``/``hi`` may be None: unbounded);  dy/dx = 1 for lo <= x <= hi, else 0."""

    name = "clip"

    def normalize(self, attrs, x):
        lo, hi = attrs.get("lo"), attrs.get("hi")
        lo, hi = None if lo is None else float(lo), None if hi is None else float(hi)
        if lo is not None and hi is not None and lo > hi:
            raise OpError(f"lo ({lo}) must not exceed hi ({hi})")
        return {"lo": lo, "hi": hi}

    def reference(self, attrs, x):
        return np.clip(x, attrs["lo"], attrs["hi"]).astype(x.dtype)

    def samples(self, rng):
        x = rng.standard_normal((4, 6)) * 2
        for kink in (-1.0, 1.0, 0.5, -0.25):  # keep the kinks out of finite differences
            x = np.where(np.abs(x - kink) < 0.05, x + 0.1, x)
        return [Sample([x], {"lo": -1.0, "hi": 1.0}), Sample([x], {"lo": 0.5}), Sample([x], {"hi": -0.25})]

    def error_cases(self):
        return super().error_cases() + [ErrorCase([((3,), "float32")], {"lo": 2.0, "hi": 1.0}, "must not exceed")]

    def vjp(self, node, g):
        x, lo, hi = node.inputs[0], node.attrs["lo"], node.attrs["hi"]
        if lo is not None:
            g = fn.where(fn.greater(lo, x), 0.0, g)
        if hi is not None:
            g = fn.where(fn.greater(x, hi), 0.0, g)
        return (g,)

    def scalar(self, b, attrs, x):
        if attrs["lo"] is not None:
            x = b.max(x, b.const(attrs["lo"], like=x))
        if attrs["hi"] is not None:
            x = b.min(x, b.const(attrs["hi"], like=x))
        return x


def _hard_slope(x, alpha: float, beta: float, g):
    """``g`` where 0 < αx + β < 1 (the linear part of hard_sigmoid), else 0 (the kinks count as flat)."""
    z = fn.add(fn.mul(x, alpha), beta)
    return fn.where(fn.greater(z, 0.0), fn.where(fn.greater(1.0, z), g, 0.0), 0.0)


def _away_from(x: np.ndarray, *kinks: float, margin: float = 0.1) -> np.ndarray:
    for kink in kinks:  # keep the kinks out of finite differences
        x = np.where(np.abs(x - kink) < margin, x + 2 * margin, x)
    return x


@register
class HardSigmoid(Unary):
    """y = max(0, min(1, αx + β)) (α = 1/6, β = ½ by default: PyTorch's hardsigmoid, Keras 3's hard_sigmoid;
    ONNX HardSigmoid's defaults are α = 0.2, β = 0.5);  dy/dx = α where 0 < αx + β < 1, else 0."""

    name = "hard_sigmoid"

    def normalize(self, attrs, x):
        alpha, beta = float(attrs.get("alpha", 1 / 6)), float(attrs.get("beta", 0.5))
        if not alpha > 0:
            raise OpError(f"alpha must be positive, got {alpha}")
        return {"alpha": alpha, "beta": beta}

    def reference(self, attrs, x):
        return np.clip(x * attrs["alpha"] + attrs["beta"], 0.0, 1.0).astype(x.dtype)

    def domain(self, rng, shape):
        return _away_from(rng.uniform(-5.0, 5.0, shape), -3.0, 3.0)

    def samples(self, rng):
        x = _away_from(rng.uniform(-4.0, 4.0, (4, 5)), -2.5, 2.5)
        return super().samples(rng) + [Sample([x], {"alpha": 0.2, "beta": 0.5})]

    def error_cases(self):
        return super().error_cases() + [ErrorCase([((3,), "float32")], {"alpha": 0.0}, "alpha must be positive")]

    def vjp(self, node, g):
        return (_hard_slope(node.inputs[0], node.attrs["alpha"], node.attrs["beta"], fn.mul(g, node.attrs["alpha"])),)

    def scalar(self, b, attrs, x):
        z = b.add(b.mul(x, b.const(attrs["alpha"], like=x)), b.const(attrs["beta"], like=x))
        return b.min(b.max(z, b.const(0, like=x)), b.const(1, like=x))


@register
class HardSwish(Unary):
    """y = x · hard_sigmoid(x) = x · max(0, min(1, x/6 + ½)) (MobileNet-v3; ONNX HardSwish, PyTorch hardswish);
    dy/dx = hard_sigmoid(x) + x/6 where -3 < x < 3, else hard_sigmoid(x) (0 below -3, 1 above 3)."""

    name = "hard_swish"
    cost = 2

    def reference(self, attrs, x):
        return (x * np.clip(x / 6.0 + 0.5, 0.0, 1.0)).astype(x.dtype)

    def domain(self, rng, shape):
        return _away_from(rng.uniform(-5.0, 5.0, shape), -3.0, 3.0)

    def vjp(self, node, g):
        x = node.inputs[0]
        return (fn.add(fn.mul(g, fn.hard_sigmoid(x)), _hard_slope(x, 1 / 6, 0.5, fn.mul(fn.mul(g, x), 1 / 6))),)

    def scalar(self, b, attrs, x):
        z = b.add(b.mul(x, b.const(1 / 6, like=x)), b.const(0.5, like=x))
        return b.mul(x, b.min(b.max(z, b.const(0, like=x)), b.const(1, like=x)))
