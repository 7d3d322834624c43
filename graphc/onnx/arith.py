"""Translators for elementwise arithmetic, comparisons, Where and casts."""

from __future__ import annotations

from collections.abc import Callable

import ops.fn as fn
from graphc.ir import Node
from graphc.onnx.registry import ImportContext, OnnxNode, dtype_of, np_dtype_of, translator

_BINARY: dict[str, Callable[[Node, Node], Node]] = {
    "Add": fn.add, "Sub": fn.sub, "Mul": fn.mul, "Div": fn.div, "Pow": fn.pow, "Equal": fn.equal,
    "Greater": fn.greater,
}
_UNARY: dict[str, Callable[[Node], Node]] = {
    "Exp": fn.exp, "Log": fn.log, "Neg": fn.neg, "Sqrt": fn.sqrt, "Abs": fn.abs, "Sign": fn.sign,
}
_VARIADIC: dict[str, Callable[[Node, Node], Node]] = {"Max": fn.maximum, "Min": fn.minimum, "Sum": fn.add}


@translator(*_BINARY)
def _binary(ctx: ImportContext, n: OnnxNode, xs: list) -> list:
    """Add, Sub, Mul, Div, Pow, Equal, Greater → the graphc op of the same name (Pow's exponent cast to x's dtype)."""
    a, b = (ctx.tensor(x) for x in xs)
    if n.op_type == "Pow" and b.dtype != a.dtype:
        b = fn.cast(b, a.dtype)
    return [_BINARY[n.op_type](a, b)]


@translator("Less")
def _less(ctx: ImportContext, n: OnnxNode, xs: list) -> list:
    """Less(a, b) → greater(b, a)."""
    return [fn.greater(ctx.tensor(xs[1]), ctx.tensor(xs[0]))]


@translator(*_UNARY)
def _unary(ctx: ImportContext, n: OnnxNode, xs: list) -> list:
    """Exp, Log, Neg, Sqrt, Abs, Sign → the graphc op of the same name."""
    return [_UNARY[n.op_type](ctx.tensor(xs[0]))]


@translator("Reciprocal")
def _reciprocal(ctx: ImportContext, n: OnnxNode, xs: list) -> list:
    """Reciprocal → div(1, x)."""
    return [fn.div(1.0, ctx.tensor(xs[0]))]


@translator(*_VARIADIC)
def _variadic(ctx: ImportContext, n: OnnxNode, xs: list) -> list:
    """Max, Min, Sum of any number of inputs → a chain of maximum, minimum or add."""
    combine = _VARIADIC[n.op_type]
    out = ctx.tensor(xs[0])
    for x in xs[1:]:
        out = combine(out, ctx.tensor(x))
    return [out]


@translator("Where")
def _where(ctx: ImportContext, n: OnnxNode, xs: list) -> list:
    """Where(cond, x, y) → where(cond, x, y)."""
    return [fn.where(*(ctx.tensor(x) for x in xs))]


@translator("Cast")
def _cast(ctx: ImportContext, n: OnnxNode, xs: list) -> list:
    """Cast → cast to the dtype of attribute ``to``."""
    n.attr("saturate")  # only meaningful for float8 targets, which np_dtype_of rejects
    n.attr("round_mode")
    return [fn.cast(ctx.tensor(xs[0]), np_dtype_of(n.attr("to"), f"{n.label}: attribute to"))]


@translator("CastLike")
def _cast_like(ctx: ImportContext, n: OnnxNode, xs: list) -> list:
    """CastLike(x, like) → cast to like's dtype."""
    n.attr("saturate")
    n.attr("round_mode")
    return [fn.cast(ctx.tensor(xs[0]), dtype_of(xs[1]))]
