"""Translators for indexing: Slice (graphc's slice op) and Gather/GatherElements (one-hot contractions)."""

from __future__ import annotations

import numpy as np

import ops.fn as fn
from graphc.ir import Node
from graphc.onnx.registry import ImportContext, OnnxNode, UnsupportedOnnx, Value, as_array, optional_input, translator


@translator("Slice")
def _slice(ctx: ImportContext, n: OnnxNode, xs: list) -> list:
    """Slice → x[start:end:step, ...] on the given axes (bounds are attributes before opset 10, inputs after)."""
    x = ctx.tensor(xs[0])
    if n.opset < 10:
        starts, ends, axes, steps = n.attr("starts"), n.attr("ends"), n.attr("axes"), None
        if starts is None or ends is None:
            raise n.unsupported("Slice before opset 10 needs the attributes starts and ends")
    else:
        what = n.label + ": input "
        starts, ends = ctx.ints(xs[1], what + "starts"), ctx.ints(xs[2], what + "ends")
        axes_input, steps_input = optional_input(xs, 3), optional_input(xs, 4)
        axes = None if axes_input is None else ctx.ints(axes_input, what + "axes")
        steps = None if steps_input is None else ctx.ints(steps_input, what + "steps")
    axes = list(range(len(starts))) if axes is None else [a % x.ndim for a in axes]
    steps = steps or [1] * len(starts)
    index = [slice(None)] * x.ndim
    for axis, start, end, step in zip(axes, starts, ends, steps):
        if step == 0:
            raise n.unsupported("a step of 0 is invalid")
        index[axis] = slice(start, end, step)
    if all(s == slice(None) for s in index):
        return [x]
    return [fn.getitem(x, tuple(index))]


def _wrap_negative(idx: Node, depth: int) -> Node:
    """ONNX indices may count from the end: i < 0 → i + depth."""
    return fn.where(fn.greater(0, idx), fn.add(idx, depth), idx)


def _index_array(value: Value, n: OnnxNode) -> Value:
    """Integer indices as int64 (an import-time array is converted; a tensor must already be int64)."""
    if isinstance(value, np.ndarray) and value.dtype.kind in "iu":
        return as_array(value.astype(np.int64), f"{n.label}: indices")
    if isinstance(value, Node) and value.dtype != "int64":
        raise UnsupportedOnnx(f"{n.label}: indices of dtype {value.dtype} are not supported (int64 only)")
    return value


@translator("Gather")
def _gather(ctx: ImportContext, n: OnnxNode, xs: list) -> list:
    """out = data[..., indices, ...] along ``axis``: Σ_d one_hot(indices)[..., d] · data[..., d, ...]."""
    data, idx = ctx.tensor(xs[0]), ctx.tensor(_index_array(xs[1], n))
    axis = int(n.attr("axis", 0)) % data.ndim
    depth, pre, post = data.shape[axis], data.shape[:axis], data.shape[axis + 1:]
    idx = fn.check_index(idx, depth, negative=True)  # out of range: an error when the program runs
    hot = fn.one_hot(_wrap_negative(idx, depth), depth, data.dtype)
    hot = fn.reshape(hot, (1,) * len(pre) + idx.shape + (depth,) + (1,) * len(post))
    spread = fn.reshape(data, pre + (1,) * idx.ndim + (depth,) + post)
    return [fn.sum(fn.mul(hot, spread), axis=len(pre) + idx.ndim)]


@translator("GatherElements")
def _gather_elements(ctx: ImportContext, n: OnnxNode, xs: list) -> list:
    """out[i] = data[i with i[axis] replaced by index[i]]: Σ_d one_hot(index)[i, d] · data[i with axis = d]."""
    data, idx = ctx.tensor(xs[0]), ctx.tensor(_index_array(xs[1], n))
    axis = int(n.attr("axis", 0)) % data.ndim
    depth = data.shape[axis]
    idx = fn.check_index(idx, depth, negative=True)
    crop = tuple(slice(None) if i == axis or d == data.shape[i] else slice(0, d) for i, d in enumerate(idx.shape))
    if any(s != slice(None) for s in crop):
        data = fn.getitem(data, crop)
    hot = fn.one_hot(_wrap_negative(idx, depth), depth, data.dtype)  # idx.shape + (depth,)
    moved = fn.transpose(data, tuple(i for i in range(data.ndim) if i != axis) + (axis,))
    spread = fn.reshape(moved, idx.shape[:axis] + (1,) + idx.shape[axis + 1:] + (depth,))
    return [fn.sum(fn.mul(hot, spread), axis=-1)]
