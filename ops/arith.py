"""Arithmetic ops: add sub mul div neg pow exp log sqrt abs sign maximum minimum, plus cast, comparisons and
where. Binary ops broadcast like NumPy; their VJPs sum gradients back to each operand's shape (``sum_to``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

import ops.fn as fn
from graphc.ir import Node, TensorType, dtype_name
from ops.base import ErrorCase, Op, OpError, Sample, away_from_zero, broadcast_shapes, positive, same_dtype
from ops.elementwise import Binary, Unary
from ops.registry import register
from ops.scalar import convert


def _unbroadcast(node: Node, *grads: Node | None) -> tuple[Node | None, ...]:
    return tuple(None if g is None else fn.sum_to(g, x.shape) for g, x in zip(grads, node.inputs))


@register
class Add(Binary):
    """z = x + y;  dz/dx = 1, dz/dy = 1."""

    name = "add"
    commutative = True
    neutral = ((1, 0), (0, 0))
    float_only = False

    def reference(self, attrs, x, y):
        return np.add(x, y)

    def vjp(self, node, g):
        return _unbroadcast(node, g, g)

    def scalar(self, b, attrs, x, y):
        return b.add(x, y)


@register
class Sub(Binary):
    """z = x - y;  dz/dx = 1, dz/dy = -1."""

    name = "sub"
    neutral = ((1, 0),)
    float_only = False
    bool_ok = False

    def reference(self, attrs, x, y):
        return np.subtract(x, y)

    def vjp(self, node, g):
        return _unbroadcast(node, g, fn.neg(g))

    def scalar(self, b, attrs, x, y):
        return b.sub(x, y)


@register
class Mul(Binary):
    """z = x * y;  dz/dx = y, dz/dy = x."""

    name = "mul"
    commutative = True
    neutral = ((1, 1), (0, 1))
    float_only = False

    def reference(self, attrs, x, y):
        return np.multiply(x, y)

    def vjp(self, node, g):
        x, y = node.inputs
        return _unbroadcast(node, fn.mul(g, y), fn.mul(g, x))

    def scalar(self, b, attrs, x, y):
        return b.mul(x, y)


@register
class Div(Binary):
    """z = x / y;  dz/dx = 1/y, dz/dy = -x/y² = -z/y."""

    name = "div"
    cost = 4
    neutral = ((1, 1),)

    def reference(self, attrs, x, y):
        return np.divide(x, y)

    def domain(self, rng, shape, position):
        return away_from_zero(rng, *shape, margin=0.5) if position == 1 else super().domain(rng, shape, position)

    def vjp(self, node, g):
        x, y = node.inputs
        gx = fn.div(g, y)
        return _unbroadcast(node, gx, fn.neg(fn.mul(gx, node)))

    def scalar(self, b, attrs, x, y):
        return b.div(x, y)


@register
class Pow(Binary):
    """z = x ** y;  dz/dx = y·x^(y-1), dz/dy = log(x)·z (defined for x > 0)."""

    name = "pow"
    cost = 45

    def reference(self, attrs, x, y):
        return np.power(x, y)

    def domain(self, rng, shape, position):
        return positive(rng, *shape) if position == 0 else super().domain(rng, shape, position)

    def vjp(self, node, g):
        x, y = node.inputs
        gx = fn.mul(g, fn.mul(y, fn.pow(x, fn.sub(y, 1.0))))
        gy = None if y.op == "const" else fn.mul(g, fn.mul(fn.log(x), node))
        return _unbroadcast(node, gx, gy)

    def scalar(self, b, attrs, x, y):
        return b.pow(x, y)


@register
class Maximum(Binary):
    """z = max(x, y);  the gradient goes to x where x >= y, else to y."""

    name = "maximum"
    float_only = False

    def reference(self, attrs, x, y):
        return np.maximum(x, y)

    def vjp(self, node, g):
        x, y = node.inputs
        x_wins = _ge(x, y)
        return _unbroadcast(node, fn.where(x_wins, g, 0.0), fn.where(x_wins, 0.0, g))

    def scalar(self, b, attrs, x, y):
        return b.max(x, y)


@register
class Minimum(Binary):
    """z = min(x, y);  the gradient goes to x where x <= y, else to y."""

    name = "minimum"
    float_only = False

    def reference(self, attrs, x, y):
        return np.minimum(x, y)

    def vjp(self, node, g):
        x, y = node.inputs
        y_wins = fn.greater(x, y)
        return _unbroadcast(node, fn.where(y_wins, 0.0, g), fn.where(y_wins, g, 0.0))

    def scalar(self, b, attrs, x, y):
        return b.min(x, y)


def _ge(x: Node, y: Node) -> Node:
    """x >= y, written as not (y > x)."""
    return fn.equal(fn.greater(y, x), False)


@register
class Neg(Unary):
    """y = -x;  dy/dx = -1."""

    name = "neg"
    involution = True
    float_only = False
    bool_ok = False

    def reference(self, attrs, x):
        return np.negative(x)

    def vjp(self, node, g):
        return (fn.neg(g),)

    def scalar(self, b, attrs, x):
        return b.neg(x)


@register
class Exp(Unary):
    """y = eˣ;  dy/dx = y."""

    name = "exp"
    cost = 20

    def reference(self, attrs, x):
        return np.exp(x)

    def vjp(self, node, g):
        return (fn.mul(g, node),)

    def scalar(self, b, attrs, x):
        return b.exp(x)


@register
class Log(Unary):
    """y = ln x;  dy/dx = 1/x."""

    name = "log"
    cost = 20

    def reference(self, attrs, x):
        return np.log(x)

    def domain(self, rng, shape):
        return positive(rng, *shape)

    def vjp(self, node, g):
        return (fn.div(g, node.inputs[0]),)

    def scalar(self, b, attrs, x):
        return b.log(x)


@register
class Sqrt(Unary):
    """y = √x;  dy/dx = 1/(2y)."""

    name = "sqrt"
    cost = 4

    def reference(self, attrs, x):
        return np.sqrt(x)

    def domain(self, rng, shape):
        return positive(rng, *shape)

    def vjp(self, node, g):
        return (fn.div(g, fn.mul(node, 2.0)),)

    def scalar(self, b, attrs, x):
        return b.sqrt(x)


@register
class Abs(Unary):
    """y = |x|;  dy/dx = sign(x) (0 at 0)."""

    name = "abs"
    float_only = False

    def reference(self, attrs, x):
        return np.abs(x)

    def domain(self, rng, shape):
        return away_from_zero(rng, *shape)

    def vjp(self, node, g):
        return (fn.mul(g, fn.sign(node.inputs[0])),)

    def scalar(self, b, attrs, x):
        return b.abs(x)


@register
class Sign(Unary):
    """y = sign(x) ∈ {-1, 0, 1};  dy/dx = 0 almost everywhere."""

    name = "sign"
    float_only = False
    bool_ok = False

    def reference(self, attrs, x):
        return np.sign(x)

    def domain(self, rng, shape):
        return away_from_zero(rng, *shape)

    def samples(self, rng):
        return super().samples(rng) + [Sample([np.array([np.nan, -0.0, 0.0, -np.inf, np.inf, 2.5])], grad_inputs=[])]

    def vjp(self, node, g):
        return (None,)

    def scalar(self, b, attrs, x):
        zero = b.const(0, like=x)
        one = b.const(1, like=x)
        signed = b.select(b.gt(x, zero), one, b.select(b.lt(x, zero), b.neg(one), zero))
        return b.select(b.eq(x, x), signed, x)  # NaN (the one value unequal to itself) stays NaN


@register
class Cast(Op):
    """y = x converted to ``dtype``: float → int64 truncates toward zero, saturates at the int64 range and maps NaN
    to INT64_MIN (``ops.scalar.convert``), anything → bool is x ≠ 0;  dy/dx = 1 between float dtypes (gradient
    cast back), none otherwise."""

    name = "cast"
    noop_if_same_type = True
    kind = "elementwise"
    arity = 1

    def normalize(self, attrs, x):
        return {"dtype": dtype_name(attrs["dtype"])}

    def infer(self, attrs, x):
        return TensorType(x.shape, attrs["dtype"])

    def reference(self, attrs, x):
        return convert(x, attrs["dtype"])

    def vjp(self, node, g):
        x = node.inputs[0]
        return (fn.cast(g, x.dtype) if x.type.is_float and node.type.is_float else None,)

    def scalar(self, b, attrs, x):
        return b.cast(x, attrs["dtype"])

    def samples(self, rng):
        special = np.array([np.nan, np.inf, -np.inf, 2.0**63, -(2.0**63), 1e30, -1e30, -2.7, 2.7, -0.5])
        return [Sample([rng.standard_normal((3, 4))], {"dtype": "float32"}),
                Sample([rng.standard_normal((5,))], {"dtype": "float64"}),
                Sample([rng.standard_normal((5,))], {"dtype": "int64"}, grad_inputs=[]),
                Sample([special], {"dtype": "int64"}, grad_inputs=[]),
                Sample([special], {"dtype": "bool"}, grad_inputs=[])]

    def error_cases(self):
        return []


class _Compare(Binary):
    """Comparison → bool; no gradient flows through it."""

    float_only = False

    def result_dtype(self, dtype):
        return "bool"

    def vjp(self, node, g):
        return (None, None)

    def samples(self, rng):
        return [Sample([rng.integers(-2, 3, (3, 4)).astype("float64"), rng.integers(-2, 3, (4,)).astype("float64")],
                       grad_inputs=[])]


@register
class Greater(_Compare):
    """z = (x > y) as bool; no gradient (piecewise constant)."""

    name = "greater"

    def reference(self, attrs, x, y):
        return np.greater(x, y)

    def scalar(self, b, attrs, x, y):
        return b.gt(x, y)


@register
class Equal(_Compare):
    """z = (x == y) as bool; no gradient (piecewise constant)."""

    name = "equal"

    def reference(self, attrs, x, y):
        return np.equal(x, y)

    def scalar(self, b, attrs, x, y):
        return b.eq(x, y)


@register
class Where(Op):
    """z = x where c else y (broadcasting);  dz/dx = c, dz/dy = not c."""

    name = "where"
    kind = "broadcast"
    arity = 3

    def infer(self, attrs: Mapping[str, Any], c: TensorType, x: TensorType, y: TensorType) -> TensorType:
        if c.dtype != "bool":
            raise OpError(f"the condition must be a bool tensor, got {c}")
        dtype = same_dtype(self.name, x, y)
        return TensorType(broadcast_shapes(self.name, c.shape, x.shape, y.shape), dtype)

    def reference(self, attrs, c, x, y):
        return np.where(c, x, y)

    def vjp(self, node, g):
        c, x, y = node.inputs
        return (None, fn.sum_to(fn.where(c, g, 0.0), x.shape), fn.sum_to(fn.where(c, 0.0, g), y.shape))

    def scalar(self, b, attrs, c, x, y):
        return b.select(c, x, y)

    def samples(self, rng):
        return [Sample([rng.random((3, 4)) > 0.5, rng.standard_normal((3, 4)), rng.standard_normal((4,))]),
                Sample([rng.random((3, 1)) > 0.5, rng.standard_normal(()), rng.standard_normal((1, 5))])]

    def error_cases(self):
        return [ErrorCase([((3,), "float32"), ((3,), "float32"), ((3,), "float32")], {}, "bool"),
                ErrorCase([((3,), "bool"), ((3,), "float32"), ((4,), "float32")], {}, "do not broadcast")]
