"""Translators for elementwise arithmetic, comparisons, logic, Where and casts. Each also has a folder: on
import-time constants (shape arithmetic) it is evaluated with NumPy, with ONNX's semantics (integer Div truncates
toward zero), so integer math that graphc's float-only ops refuse (div, pow) still folds."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

import ops.fn as fn
from graphc.ir import Node
from graphc.onnx.registry import (
    ImportContext,
    OnnxNode,
    check_import_time_size,
    dtype_of,
    folder,
    np_dtype_of,
    translator,
)
from ops.mod import reference_mod
from ops.scalar import convert

_BINARY: dict[str, Callable[[Node, Node], Node]] = {
    "Add": fn.add, "Sub": fn.sub, "Mul": fn.mul, "Div": fn.div, "Pow": fn.pow, "Equal": fn.equal,
    "Greater": fn.greater,
}
_UNARY: dict[str, Callable[[Node], Node]] = {
    "Exp": fn.exp, "Log": fn.log, "Neg": fn.neg, "Sqrt": fn.sqrt, "Abs": fn.abs, "Sign": fn.sign,
}
_VARIADIC: dict[str, Callable[[Node, Node], Node]] = {"Max": fn.maximum, "Min": fn.minimum, "Sum": fn.add,
                                                      "Mean": fn.add}
_FLOAT_ONLY = {"Div": "div", "Pow": "pow", "Exp": "exp", "Log": "log", "Sqrt": "sqrt", "Reciprocal": "div",
               "Mean": "div"}


def _require_float(n: OnnxNode, *xs: Node) -> None:
    """UnsupportedOnnx for integer or bool tensors reaching a floating-point graphc op (constants fold instead)."""
    for x in xs:
        if x.dtype not in ("float32", "float64"):
            raise n.unsupported(f"{x.dtype} operands are supported only as import-time constants (graphc's "
                                f"{_FLOAT_ONLY[n.op_type]} is floating-point)")


def _legacy_broadcast(n: OnnxNode, a_rank: int, b_shape: tuple[int, ...]) -> tuple[int, ...] | None:
    """Opset < 7 Add/Sub/Mul/Div with ``broadcast=1``: B's shape lifted to A's rank with B's axes starting at
    ``axis`` (default: aligned to the end, as NumPy), or None when no reshape is needed."""
    if n.opset >= 7 or n.op_type not in ("Add", "Sub", "Mul", "Div"):
        return None
    broadcast, axis = int(n.attr("broadcast", 0)), n.attr("axis", None)
    if not broadcast:
        return None
    start = a_rank - len(b_shape) if axis is None else int(axis) % max(a_rank, 1)
    if start < 0 or start + len(b_shape) > a_rank:
        raise n.unsupported(f"attribute axis={axis}: B of shape {b_shape} does not fit A's rank {a_rank}")
    return (1,) * start + tuple(b_shape) + (1,) * (a_rank - start - len(b_shape))


@translator(*_BINARY)
def _binary(ctx: ImportContext, n: OnnxNode, xs: list) -> list:
    """Add, Sub, Mul, Div, Pow, Equal, Greater → the graphc op of the same name (Pow's exponent cast to x's dtype;
    opset < 7 ``broadcast``/``axis`` place B's axes in A's)."""
    a, b = (ctx.tensor(x) for x in xs)
    lifted = _legacy_broadcast(n, a.ndim, b.shape)
    if lifted is not None:
        b = fn.reshape(b, lifted)
    if n.op_type == "Pow" and b.dtype != a.dtype:
        b = fn.cast(b, a.dtype)
    if n.op_type in _FLOAT_ONLY:
        _require_float(n, a)
    return [_BINARY[n.op_type](a, b)]


@translator("Less")
def _less(ctx: ImportContext, n: OnnxNode, xs: list) -> list:
    """Less(a, b) → greater(b, a)."""
    return [fn.greater(ctx.tensor(xs[1]), ctx.tensor(xs[0]))]


@translator("GreaterOrEqual", "LessOrEqual")
def _or_equal(ctx: ImportContext, n: OnnxNode, xs: list) -> list:
    """GreaterOrEqual(a, b) → where(greater(a, b), true, equal(a, b)); LessOrEqual swaps a and b (false on NaN)."""
    a, b = (ctx.tensor(x) for x in xs)
    if n.op_type == "LessOrEqual":
        a, b = b, a
    return [fn.where(fn.greater(a, b), True, fn.equal(a, b))]


@translator("Not")
def _not(ctx: ImportContext, n: OnnxNode, xs: list) -> list:
    """Not(x) → equal(x, false)."""
    return [fn.equal(ctx.tensor(xs[0]), False)]


@translator("And", "Or", "Xor")
def _logic(ctx: ImportContext, n: OnnxNode, xs: list) -> list:
    """And(a, b) → where(a, b, false); Or(a, b) → where(a, true, b); Xor(a, b) → equal(equal(a, b), false)."""
    a, b = (ctx.tensor(x) for x in xs)
    if n.op_type == "And":
        return [fn.where(a, b, False)]
    if n.op_type == "Or":
        return [fn.where(a, True, b)]
    return [fn.equal(fn.equal(a, b), False)]


@translator(*_UNARY)
def _unary(ctx: ImportContext, n: OnnxNode, xs: list) -> list:
    """Exp, Log, Neg, Sqrt, Abs, Sign → the graphc op of the same name."""
    x = ctx.tensor(xs[0])
    if n.op_type in _FLOAT_ONLY:
        _require_float(n, x)
    return [_UNARY[n.op_type](x)]


@translator("Reciprocal")
def _reciprocal(ctx: ImportContext, n: OnnxNode, xs: list) -> list:
    """Reciprocal → div(1, x)."""
    x = ctx.tensor(xs[0])
    _require_float(n, x)
    return [fn.div(1.0, x)]


@translator(*_VARIADIC)
def _variadic(ctx: ImportContext, n: OnnxNode, xs: list) -> list:
    """Max, Min, Sum of any number of inputs → a chain of maximum, minimum or add; Mean → the sum divided by
    the number of inputs."""
    combine = _VARIADIC[n.op_type]
    out = ctx.tensor(xs[0])
    for x in xs[1:]:
        out = combine(out, ctx.tensor(x))
    if n.op_type == "Mean":
        _require_float(n, out)
        out = fn.div(out, float(len(xs))) if len(xs) > 1 else out
    return [out]


@translator("Where")
def _where(ctx: ImportContext, n: OnnxNode, xs: list) -> list:
    """Where(cond, x, y) → where(cond, x, y)."""
    return [fn.where(*(ctx.tensor(x) for x in xs))]


@translator("Cast")
def _cast(ctx: ImportContext, n: OnnxNode, xs: list) -> list:
    """Cast → cast to the dtype of attribute ``to``."""
    return [fn.cast(ctx.tensor(xs[0]), _cast_target(n))]


def _cast_target(n: OnnxNode) -> str:
    n.attr("saturate")  # only meaningful for float8 targets, which np_dtype_of rejects
    n.attr("round_mode")
    return np_dtype_of(n.attr("to"), f"{n.label}: attribute to")


@translator("CastLike")
def _cast_like(ctx: ImportContext, n: OnnxNode, xs: list) -> list:
    """CastLike(x, like) → cast to like's dtype."""
    n.attr("saturate")
    n.attr("round_mode")
    return [fn.cast(ctx.tensor(xs[0]), dtype_of(xs[1]))]


@translator("Mod")
def _mod(ctx: ImportContext, n: OnnxNode, xs: list) -> list:
    """Mod(a, b) → mod(a, b, fmod): the sign of b (fmod=0, integers) or of a (fmod=1, C's fmod; ONNX requires it
    for floats, graphc also computes fmod=0 on floats as np.mod). Integer a mod 0 = 0 (ONNX leaves it undefined;
    NumPy's value) and INT64_MIN mod −1 = 0."""
    a, b = (ctx.tensor(x) for x in xs)
    fmod = n.attr("fmod", 0)
    if fmod not in (0, 1):
        raise n.unsupported(f"attribute fmod={fmod} (must be 0 or 1)")
    return [fn.mod(a, b, fmod=bool(fmod))]


# ---------------------------------------------------------------------------------------------- import-time folds


def _divide(n: OnnxNode, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """ONNX Div: true division for floats, truncation toward zero for integers (as C and onnxruntime)."""
    if a.dtype.kind not in "iu":
        return np.divide(a, b)
    if np.any(b == 0):
        raise n.unsupported("integer division by zero in an import-time constant")
    quotient = np.abs(a) // np.abs(b)
    return np.where((a < 0) != (b < 0), -quotient, quotient)


_NP_ARITH: dict[str, Callable] = {
    "Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Pow": lambda a, b: np.power(a, b.astype(a.dtype)),
    "Exp": np.exp, "Log": np.log, "Neg": np.negative, "Sqrt": np.sqrt, "Abs": np.abs, "Sign": np.sign,
    "Reciprocal": lambda x: np.divide(np.ones((), x.dtype), x),
}
_NP_COMPARE: dict[str, Callable] = {
    "Equal": np.equal, "Greater": np.greater, "Less": np.less, "GreaterOrEqual": np.greater_equal,
    "LessOrEqual": np.less_equal, "Not": np.logical_not, "And": np.logical_and, "Or": np.logical_or,
    "Xor": np.logical_xor,
}


def _check_broadcast(n: OnnxNode, xs: list, dtype: object) -> None:
    """UnsupportedOnnx when the broadcast result of ``xs`` would be too large to evaluate at import time."""
    check_import_time_size(n, np.broadcast_shapes(*(x.shape for x in xs)), dtype)


@folder(*_NP_ARITH, "Div")
def _fold_arith(n: OnnxNode, xs: list) -> list:
    """Elementwise math on constants, in the first input's dtype."""
    if len(xs) == 2 and (lifted := _legacy_broadcast(n, xs[0].ndim, xs[1].shape)) is not None:
        xs = [xs[0], xs[1].reshape(lifted)]
    _check_broadcast(n, xs, xs[0].dtype)
    out = _divide(n, *xs) if n.op_type == "Div" else _NP_ARITH[n.op_type](*xs)
    return [np.asarray(out).astype(xs[0].dtype, copy=False)]


@folder(*_NP_COMPARE)
def _fold_compare(n: OnnxNode, xs: list) -> list:
    """Comparisons and logic on constants → bool."""
    _check_broadcast(n, xs, np.bool_)
    return [np.asarray(_NP_COMPARE[n.op_type](*xs))]


@folder(*_VARIADIC)
def _fold_variadic(n: OnnxNode, xs: list) -> list:
    """Max, Min, Sum, Mean of constants."""
    _check_broadcast(n, xs, xs[0].dtype)
    combine = {"Max": np.maximum, "Min": np.minimum, "Sum": np.add, "Mean": np.add}[n.op_type]
    out = xs[0]
    for x in xs[1:]:
        out = combine(out, x)
    if n.op_type == "Mean":
        out = out / len(xs)
    return [np.asarray(out).astype(xs[0].dtype, copy=False)]


@folder("Mod")
def _fold_mod(n: OnnxNode, xs: list) -> list:
    """Mod of constants: the sign of the divisor (Python's %) by default, of the dividend with fmod=1."""
    _check_broadcast(n, xs, xs[0].dtype)
    fmod = n.attr("fmod", 0)
    if fmod not in (0, 1):
        raise n.unsupported(f"attribute fmod={fmod} (must be 0 or 1)")
    return [np.asarray(reference_mod(*xs, bool(fmod))).astype(xs[0].dtype, copy=False)]


@folder("Where")
def _fold_where(n: OnnxNode, xs: list) -> list:
    _check_broadcast(n, xs, xs[1].dtype)
    return [np.where(*xs)]


@folder("Cast")
def _fold_cast(n: OnnxNode, xs: list) -> list:
    return [convert(xs[0], _cast_target(n))]


@folder("CastLike")
def _fold_cast_like(n: OnnxNode, xs: list) -> list:
    n.attr("saturate")
    n.attr("round_mode")
    return [convert(xs[0], xs[1].dtype.name)]
