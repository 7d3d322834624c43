"""Translators for constants and shape manipulation: Constant, Identity, Shape, Size, Reshape, Flatten, Transpose,
Squeeze, Unsqueeze and Concat. Shape and Size yield import-time arrays, so shape arithmetic folds at import."""

from __future__ import annotations

import numpy as np

import ops.fn as fn
from graphc.onnx.registry import ImportContext, OnnxNode, optional_input, shape_of, translator


@translator("Constant")
def _constant(ctx: ImportContext, n: OnnxNode, xs: list) -> list:
    """Constant → an import-time array (value, value_float(s), value_int(s))."""
    if "value" in n.attrs:
        return [n.attr("value")]
    for name, dtype in (("value_float", "float32"), ("value_floats", "float32"), ("value_int", "int64"),
                        ("value_ints", "int64")):
        if name in n.attrs:
            return [np.array(n.attr(name), dtype=dtype)]
    raise n.unsupported(f"attribute {', '.join(n.attrs) or 'value'} (sparse or string constants) is not supported")


@translator("Identity")
def _identity(ctx: ImportContext, n: OnnxNode, xs: list) -> list:
    """Identity → its input, unchanged."""
    return [xs[0]]


@translator("Shape")
def _shape(ctx: ImportContext, n: OnnxNode, xs: list) -> list:
    """Shape → the static shape[start:end] as an int64 array."""
    shape = shape_of(xs[0])
    start, end = n.attr("start", 0), n.attr("end", None)
    return [np.array(shape[start:end], dtype=np.int64)]


@translator("Size")
def _size(ctx: ImportContext, n: OnnxNode, xs: list) -> list:
    """Size → the static element count as an int64 scalar array."""
    return [np.array(int(np.prod(shape_of(xs[0]), dtype=np.int64)), dtype=np.int64)]


@translator("Reshape")
def _reshape(ctx: ImportContext, n: OnnxNode, xs: list) -> list:
    """Reshape → reshape to the import-time shape input (0 copies the input's dimension unless allowzero)."""
    x = ctx.tensor(xs[0])
    target = ctx.ints(xs[1], f"{n.label}: input shape")
    if not n.attr("allowzero", 0):
        target = [x.shape[i] if d == 0 else d for i, d in enumerate(target)]
    return [fn.reshape(x, tuple(target))]


@translator("Flatten")
def _flatten(ctx: ImportContext, n: OnnxNode, xs: list) -> list:
    """Flatten → reshape to (prod(shape[:axis]), prod(shape[axis:]))."""
    x = ctx.tensor(xs[0])
    axis = int(n.attr("axis", 1))
    axis = axis + x.ndim if axis < 0 else axis
    rows = int(np.prod(x.shape[:axis], dtype=np.int64))
    return [fn.reshape(x, (rows, int(np.prod(x.shape[axis:], dtype=np.int64))))]


@translator("Transpose")
def _transpose(ctx: ImportContext, n: OnnxNode, xs: list) -> list:
    """Transpose → transpose by ``perm`` (reversed axes by default)."""
    perm = n.attr("perm")
    return [fn.transpose(ctx.tensor(xs[0]), None if perm is None else tuple(perm))]


def _axes_arg(ctx: ImportContext, n: OnnxNode, xs: list) -> list[int] | None:
    """The axes of Squeeze/Unsqueeze: input 1 from opset 13, the attribute before; None when absent."""
    axes_input = optional_input(xs, 1)
    if axes_input is not None:
        return ctx.ints(axes_input, f"{n.label}: input axes")
    axes = n.attr("axes")
    return None if axes is None else list(axes)


@translator("Squeeze")
def _squeeze(ctx: ImportContext, n: OnnxNode, xs: list) -> list:
    """Squeeze → reshape without the given unit axes (every unit axis by default)."""
    x = ctx.tensor(xs[0])
    axes = _axes_arg(ctx, n, xs)
    drop = {i for i, d in enumerate(x.shape) if d == 1} if axes is None else {a % x.ndim for a in axes}
    return [fn.reshape(x, tuple(d for i, d in enumerate(x.shape) if i not in drop))]


@translator("Unsqueeze")
def _unsqueeze(ctx: ImportContext, n: OnnxNode, xs: list) -> list:
    """Unsqueeze → reshape with unit axes inserted at the given output positions."""
    x = ctx.tensor(xs[0])
    axes = _axes_arg(ctx, n, xs) or []
    rank = x.ndim + len(axes)
    new = {a % rank for a in axes}
    dims = iter(x.shape)
    return [fn.reshape(x, tuple(1 if i in new else next(dims) for i in range(rank)))]


@translator("Concat")
def _concat(ctx: ImportContext, n: OnnxNode, xs: list) -> list:
    """Concat → concat along ``axis``."""
    return [fn.concat([ctx.tensor(x) for x in xs], axis=int(n.attr("axis")))]
