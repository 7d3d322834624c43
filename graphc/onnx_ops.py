"""ONNX translators for elementwise, reduction, shape and indexing ops (one small function per ONNX op type).

A translator gets the import context, the :class:`~graphc.onnx.OnnxNode` and its inputs (graphc tensors, or NumPy
arrays for import-time constants) and returns its outputs in ONNX order. Neural-network ops (Conv, pooling,
normalization, dropout, losses) live in :mod:`graphc.onnx_nn`.
"""

from __future__ import annotations

import numpy as np

from graphc.ir import Node
from graphc.onnx import OnnxNode, UnsupportedOnnx, Value, _array, _Ctx, builder, np_dtype_of, shape_of, translator
from ops import fn

# ---------------------------------------------------------------------------------------------- elementwise

_BINARY = {"Add": "add", "Sub": "sub", "Mul": "mul", "Div": "div", "Pow": "pow", "Equal": "equal",
           "Greater": "greater"}
_UNARY = {"Relu": "relu", "Sigmoid": "sigmoid", "Tanh": "tanh", "Exp": "exp", "Log": "log", "Neg": "neg",
          "Sqrt": "sqrt", "Abs": "abs", "Sign": "sign"}


@translator(*_BINARY)
def _binary(ctx: _Ctx, n: OnnxNode, xs: list) -> list:
    a, b = (ctx.tensor(x) for x in xs)
    if n.op_type == "Pow" and b.dtype != a.dtype:
        b = fn.cast(b, a.dtype)
    return [builder(_BINARY[n.op_type], n.op_type)(a, b)]


@translator("Less")
def _less(ctx: _Ctx, n: OnnxNode, xs: list) -> list:
    return [fn.greater(ctx.tensor(xs[1]), ctx.tensor(xs[0]))]


@translator(*_UNARY)
def _unary(ctx: _Ctx, n: OnnxNode, xs: list) -> list:
    return [builder(_UNARY[n.op_type], n.op_type)(ctx.tensor(xs[0]))]


@translator("Reciprocal")
def _reciprocal(ctx: _Ctx, n: OnnxNode, xs: list) -> list:
    return [fn.div(1.0, ctx.tensor(xs[0]))]


@translator("LeakyRelu")
def _leaky_relu(ctx: _Ctx, n: OnnxNode, xs: list) -> list:
    return [fn.leaky_relu(ctx.tensor(xs[0]), alpha=float(n.attr("alpha", 0.01)))]


@translator("Max", "Min", "Sum")
def _variadic(ctx: _Ctx, n: OnnxNode, xs: list) -> list:
    combine = {"Max": fn.maximum, "Min": fn.minimum, "Sum": fn.add}[n.op_type]
    out = ctx.tensor(xs[0])
    for x in xs[1:]:
        out = combine(out, ctx.tensor(x))
    return [out]


@translator("Identity")
def _identity(ctx: _Ctx, n: OnnxNode, xs: list) -> list:
    return [xs[0]]


@translator("Where")
def _where(ctx: _Ctx, n: OnnxNode, xs: list) -> list:
    return [fn.where(*(ctx.tensor(x) for x in xs))]


@translator("Cast")
def _cast(ctx: _Ctx, n: OnnxNode, xs: list) -> list:
    n.attr("saturate")  # only meaningful for float8 targets, which np_dtype_of rejects
    n.attr("round_mode")
    return [fn.cast(ctx.tensor(xs[0]), np_dtype_of(n.attr("to"), f"{n.label}: attribute to"))]


@translator("CastLike")
def _cast_like(ctx: _Ctx, n: OnnxNode, xs: list) -> list:
    n.attr("saturate")
    n.attr("round_mode")
    target = xs[1].dtype if isinstance(xs[1], Node) else xs[1].dtype.name
    return [fn.cast(ctx.tensor(xs[0]), target)]


@translator("Constant")
def _constant(ctx: _Ctx, n: OnnxNode, xs: list) -> list:
    if "value" in n.attrs:
        return [n.attr("value")]
    for name, dtype in (("value_float", "float32"), ("value_floats", "float32"), ("value_int", "int64"),
                        ("value_ints", "int64")):
        if name in n.attrs:
            return [np.array(n.attr(name), dtype=dtype)]
    raise n.unsupported(f"attribute {', '.join(n.attrs) or 'value'} (sparse or string constants) is not supported")


# ---------------------------------------------------------------------------------------------- reductions


def _reduce_axes(ctx: _Ctx, n: OnnxNode, xs: list) -> list[int] | None:
    """The axes of a Reduce* node (attribute before opset 13/18, input after); None = every axis."""
    if len(xs) > 1 and xs[1] is not None:
        axes = ctx.ints(xs[1], f"{n.label}: input axes")
    else:
        axes = list(n.attr("axes", []) or [])
    return axes or None


@translator("ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceSumSquare")
def _reduce(ctx: _Ctx, n: OnnxNode, xs: list) -> list:
    x = ctx.tensor(xs[0])
    keep = bool(n.attr("keepdims", 1))
    axes = _reduce_axes(ctx, n, xs)
    if axes is None and n.attr("noop_with_empty_axes", 0):
        return [x]
    axis = None if axes is None else tuple(axes)
    if n.op_type == "ReduceMin":
        return [fn.neg(fn.max(fn.neg(x), axis=axis, keepdims=keep))]
    if n.op_type == "ReduceSumSquare":
        return [fn.sum(fn.mul(x, x), axis=axis, keepdims=keep)]
    func = {"ReduceSum": fn.sum, "ReduceMean": fn.mean, "ReduceMax": fn.max}[n.op_type]
    return [func(x, axis=axis, keepdims=keep)]


@translator("Softmax", "LogSoftmax")
def _softmax(ctx: _Ctx, n: OnnxNode, xs: list) -> list:
    x = ctx.tensor(xs[0])
    func = fn.softmax if n.op_type == "Softmax" else fn.log_softmax
    if n.opset >= 13:
        return [func(x, axis=int(n.attr("axis", -1)))]
    axis = int(n.attr("axis", 1)) % max(x.ndim, 1)  # before opset 13: coerce to 2-D at axis
    rows = int(np.prod(x.shape[:axis], dtype=np.int64))
    flat = fn.reshape(x, (rows, -1))
    return [fn.reshape(func(flat, axis=1), x.shape)]


# ---------------------------------------------------------------------------------------------- linear algebra


@translator("MatMul")
def _matmul(ctx: _Ctx, n: OnnxNode, xs: list) -> list:
    a, b = (ctx.tensor(x) for x in xs)
    squeeze = []
    if a.ndim == 1:
        a, squeeze = fn.reshape(a, (1, a.shape[0])), squeeze + [-2]
    if b.ndim == 1:
        b, squeeze = fn.reshape(b, (b.shape[0], 1)), squeeze + [-1]
    out = fn.matmul(a, b)
    if squeeze:
        shape = list(out.shape)
        if -1 in squeeze:
            shape.pop(-1)
        if -2 in squeeze:
            shape.pop(-1 if -1 in squeeze else -2)
        out = fn.reshape(out, tuple(shape))
    return [out]


@translator("Gemm")
def _gemm(ctx: _Ctx, n: OnnxNode, xs: list) -> list:
    a, b = ctx.tensor(xs[0]), ctx.tensor(xs[1])
    if n.attr("transA", 0):
        a = fn.transpose(a)
    if n.attr("transB", 0):
        b = fn.transpose(b)
    alpha, beta = float(n.attr("alpha", 1.0)), float(n.attr("beta", 1.0))
    out = fn.matmul(a, b)
    if alpha != 1.0:
        out = fn.mul(out, alpha)
    if len(xs) > 2 and xs[2] is not None:
        c = ctx.tensor(xs[2])
        out = fn.add(out, c if beta == 1.0 else fn.mul(c, beta))
    return [out]


# ---------------------------------------------------------------------------------------------- shape


@translator("Shape")
def _shape(ctx: _Ctx, n: OnnxNode, xs: list) -> list:
    shape = shape_of(xs[0])
    start, end = n.attr("start", 0), n.attr("end", None)
    return [np.array(shape[start:end], dtype=np.int64)]


@translator("Size")
def _size(ctx: _Ctx, n: OnnxNode, xs: list) -> list:
    return [np.array(int(np.prod(shape_of(xs[0]), dtype=np.int64)), dtype=np.int64)]


@translator("Reshape")
def _reshape(ctx: _Ctx, n: OnnxNode, xs: list) -> list:
    x = ctx.tensor(xs[0])
    target = ctx.ints(xs[1], f"{n.label}: input shape")
    if not n.attr("allowzero", 0):
        target = [x.shape[i] if d == 0 else d for i, d in enumerate(target)]
    return [fn.reshape(x, tuple(target))]


@translator("Flatten")
def _flatten(ctx: _Ctx, n: OnnxNode, xs: list) -> list:
    x = ctx.tensor(xs[0])
    axis = int(n.attr("axis", 1))
    axis = axis + x.ndim if axis < 0 else axis
    rows = int(np.prod(x.shape[:axis], dtype=np.int64))
    return [fn.reshape(x, (rows, int(np.prod(x.shape[axis:], dtype=np.int64))))]


@translator("Transpose")
def _transpose(ctx: _Ctx, n: OnnxNode, xs: list) -> list:
    perm = n.attr("perm")
    return [fn.transpose(ctx.tensor(xs[0]), None if perm is None else tuple(perm))]


def _axes_arg(ctx: _Ctx, n: OnnxNode, xs: list) -> list[int] | None:
    if len(xs) > 1 and xs[1] is not None:
        return ctx.ints(xs[1], f"{n.label}: input axes")
    axes = n.attr("axes")
    return None if axes is None else list(axes)


@translator("Squeeze")
def _squeeze(ctx: _Ctx, n: OnnxNode, xs: list) -> list:
    x = ctx.tensor(xs[0])
    axes = _axes_arg(ctx, n, xs)
    drop = {i for i, d in enumerate(x.shape) if d == 1} if axes is None else {a % x.ndim for a in axes}
    return [fn.reshape(x, tuple(d for i, d in enumerate(x.shape) if i not in drop))]


@translator("Unsqueeze")
def _unsqueeze(ctx: _Ctx, n: OnnxNode, xs: list) -> list:
    x = ctx.tensor(xs[0])
    axes = _axes_arg(ctx, n, xs) or []
    rank = x.ndim + len(axes)
    new = {a % rank for a in axes}
    dims = iter(x.shape)
    return [fn.reshape(x, tuple(1 if i in new else next(dims) for i in range(rank)))]


@translator("Concat")
def _concat(ctx: _Ctx, n: OnnxNode, xs: list) -> list:
    return [builder("concat", n.op_type)([ctx.tensor(x) for x in xs], axis=int(n.attr("axis")))]


@translator("Slice")
def _slice(ctx: _Ctx, n: OnnxNode, xs: list) -> list:
    x = ctx.tensor(xs[0])
    if n.opset < 10:
        starts, ends, axes, steps = n.attr("starts"), n.attr("ends"), n.attr("axes"), None
    else:
        what = n.label + ": input "
        starts, ends = ctx.ints(xs[1], what + "starts"), ctx.ints(xs[2], what + "ends")
        axes = ctx.ints(xs[3], what + "axes") if len(xs) > 3 and xs[3] is not None else None
        steps = ctx.ints(xs[4], what + "steps") if len(xs) > 4 and xs[4] is not None else None
    axes = list(range(len(starts))) if axes is None else [a % x.ndim for a in axes]
    steps = steps or [1] * len(starts)
    index = [slice(None)] * x.ndim
    for axis, start, end, step in zip(axes, starts, ends, steps):
        if step == 0:
            raise n.unsupported("a step of 0 is invalid")
        index[axis] = slice(start, end, step)
    if all(s == slice(None) for s in index):
        return [x]
    builder("slice", n.op_type)  # raises while graphc lacks slicing
    return [x[tuple(index)]]


# ---------------------------------------------------------------------------------------------- gathering


def _wrap_negative(idx: Node, depth: int) -> Node:
    """ONNX indices may count from the end: i < 0 → i + depth."""
    return fn.where(fn.greater(0, idx), fn.add(idx, depth), idx)


@translator("Gather")
def _gather(ctx: _Ctx, n: OnnxNode, xs: list) -> list:
    """out = data[..., indices, ...] along ``axis``: Σ_d one_hot(indices)[..., d] · data[..., d, ...]."""
    data, idx = ctx.tensor(xs[0]), ctx.tensor(_index_array(xs[1], n))
    axis = int(n.attr("axis", 0)) % data.ndim
    depth, pre, post = data.shape[axis], data.shape[:axis], data.shape[axis + 1:]
    hot = fn.one_hot(_wrap_negative(idx, depth), depth, data.dtype)
    hot = fn.reshape(hot, (1,) * len(pre) + idx.shape + (depth,) + (1,) * len(post))
    spread = fn.reshape(data, pre + (1,) * idx.ndim + (depth,) + post)
    return [fn.sum(fn.mul(hot, spread), axis=len(pre) + idx.ndim)]


@translator("GatherElements")
def _gather_elements(ctx: _Ctx, n: OnnxNode, xs: list) -> list:
    """out[i] = data[i with i[axis] replaced by index[i]]: Σ_d one_hot(index)[i, d] · data[i with axis = d]."""
    data, idx = ctx.tensor(xs[0]), ctx.tensor(_index_array(xs[1], n))
    axis = int(n.attr("axis", 0)) % data.ndim
    depth = data.shape[axis]
    crop = tuple(slice(None) if i == axis or d == data.shape[i] else slice(0, d) for i, d in enumerate(idx.shape))
    if any(s != slice(None) for s in crop):
        builder("slice", n.op_type)
        data = data[crop]
    hot = fn.one_hot(_wrap_negative(idx, depth), depth, data.dtype)  # idx.shape + (depth,)
    moved = fn.transpose(data, tuple(i for i in range(data.ndim) if i != axis) + (axis,))
    spread = fn.reshape(moved, idx.shape[:axis] + (1,) + idx.shape[axis + 1:] + (depth,))
    return [fn.sum(fn.mul(hot, spread), axis=-1)]


def _index_array(value: Value, n: OnnxNode) -> Value:
    if isinstance(value, np.ndarray) and value.dtype.kind in "iu":
        return _array(value.astype(np.int64), f"{n.label}: indices")
    if isinstance(value, Node) and value.dtype != "int64":
        raise UnsupportedOnnx(f"{n.label}: indices of dtype {value.dtype} are not supported (int64 only)")
    return value


from graphc import onnx_nn as _onnx_nn  # noqa: E402,F401  (registers the neural-network translators)
