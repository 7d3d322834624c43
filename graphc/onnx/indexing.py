"""Translators for indexing: Slice (graphc's slice op), Gather (a slice when the indices are import-time constants
in an arithmetic progression, else a one-hot contraction), GatherElements and GatherND (one-hot contractions),
each with a folder for import-time constants; ScatterND on import-time constants only."""

from __future__ import annotations

import numpy as np

import ops.fn as fn
from graphc.ir import Node
from graphc.onnx.registry import (
    ImportContext,
    OnnxNode,
    UnsupportedOnnx,
    Value,
    as_array,
    check_import_time_size,
    folder,
    optional_input,
    translator,
)


def _slice_index(ctx: ImportContext | None, n: OnnxNode, xs: list, rank: int) -> tuple:
    """Slice's index tuple (bounds are attributes before opset 10, import-time inputs after)."""
    if n.opset < 10:
        starts, ends, axes, steps = n.attr("starts"), n.attr("ends"), n.attr("axes"), None
        if starts is None or ends is None:
            raise n.unsupported("Slice before opset 10 needs the attributes starts and ends")
    else:
        what = n.label + ": input "

        def ints(value: Value | None, name: str) -> list[int] | None:
            if value is None:
                return None
            array = ctx.static(value, what + name) if ctx is not None else value
            return [int(v) for v in np.asarray(array).reshape(-1)]

        starts, ends = ints(xs[1], "starts"), ints(xs[2], "ends")
        axes, steps = ints(optional_input(xs, 3), "axes"), ints(optional_input(xs, 4), "steps")
    axes = list(range(len(starts))) if axes is None else [a % max(rank, 1) for a in axes]
    steps = steps or [1] * len(starts)
    index = [slice(None)] * rank
    for axis, start, end, step in zip(axes, starts, ends, steps):
        if step == 0:
            raise n.unsupported("a step of 0 is invalid")
        index[axis] = slice(start, end, step)
    return tuple(index)


@translator("Slice")
def _slice(ctx: ImportContext, n: OnnxNode, xs: list) -> list:
    """Slice → x[start:end:step, ...] on the given axes (bounds are attributes before opset 10, inputs after)."""
    x = ctx.tensor(xs[0])
    index = _slice_index(ctx, n, xs, x.ndim)
    if all(s == slice(None) for s in index):
        return [x]
    return [fn.getitem(x, index)]


@folder("Slice")
def _fold_slice(n: OnnxNode, xs: list) -> list:
    return [xs[0][_slice_index(None, n, xs, xs[0].ndim)]]


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


def _static_indices(n: OnnxNode, idx: np.ndarray, depth: int) -> np.ndarray:
    """Import-time indices into an axis of ``depth``, negatives wrapped; out of range is UnsupportedOnnx."""
    idx = np.asarray(idx, dtype=np.int64)
    bad = idx[(idx < -depth) | (idx >= depth)]
    if bad.size:
        raise n.unsupported(f"index {int(bad.reshape(-1)[0])} is outside [-{depth}, {depth})")
    return np.where(idx < 0, idx + depth, idx)


def _take(n: OnnxNode, data: Node, idx: Value, axis: int) -> Node:
    """data[..., idx, ...] along ``axis``: a slice when idx is an import-time scalar or arithmetic progression,
    otherwise Σ_d one_hot(idx)[..., d] · data[..., d, ...] (runtime indices checked when the program runs)."""
    depth, pre, post = data.shape[axis], data.shape[:axis], data.shape[axis + 1:]
    lead = (slice(None),) * axis
    if isinstance(idx, np.ndarray):
        idx = _static_indices(n, idx, depth)
        if idx.ndim == 0:
            return fn.getitem(data, (*lead, int(idx)))
        steps = np.diff(idx)
        if idx.ndim == 1 and idx.size and (idx.size == 1 or (steps[0] != 0 and np.all(steps == steps[0]))):
            step = int(steps[0]) if idx.size > 1 else 1
            start, stop = int(idx[0]), int(idx[0]) + step * idx.size
            return fn.getitem(data, (*lead, slice(start, stop if stop >= 0 else None, step)))
        idx = data.graph.const(idx, dtype="int64")
    else:
        idx = fn.check_index(idx, depth, negative=True)  # out of range: an error when the program runs
        idx = _wrap_negative(idx, depth)
    hot = fn.one_hot(idx, depth, data.dtype)
    hot = fn.reshape(hot, (1,) * len(pre) + idx.shape + (depth,) + (1,) * len(post))
    spread = fn.reshape(data, pre + (1,) * idx.ndim + (depth,) + post)
    return fn.sum(fn.mul(hot, spread), axis=len(pre) + idx.ndim)


@translator("Gather")
def _gather(ctx: ImportContext, n: OnnxNode, xs: list) -> list:
    """out = data[..., indices, ...] along ``axis`` (see :func:`_take`)."""
    data, idx = ctx.tensor(xs[0]), _index_array(xs[1], n)
    axis = int(n.attr("axis", 0)) % max(data.ndim, 1)
    return [_take(n, data, idx, axis)]


@folder("Gather")
def _fold_gather(n: OnnxNode, xs: list) -> list:
    data, idx = xs[0], np.asarray(xs[1])
    axis = int(n.attr("axis", 0)) % max(data.ndim, 1)
    check_import_time_size(n, data.shape[:axis] + idx.shape + data.shape[axis + 1:], data.dtype)
    return [np.take(data, _static_indices(n, idx, data.shape[axis]), axis=axis)]


def _nd_depth(n: OnnxNode, data_shape: tuple[int, ...], idx_shape: tuple[int, ...]) -> int:
    """GatherND's index depth k (the last dimension of the indices); only batch_dims=0 is supported."""
    batch_dims = int(n.attr("batch_dims", 0))
    if batch_dims != 0:
        raise n.unsupported(f"batch_dims={batch_dims} is not supported (only 0)")
    if not idx_shape or idx_shape[-1] > len(data_shape):
        raise n.unsupported(f"indices of shape {idx_shape} do not index data of shape {data_shape}")
    return idx_shape[-1]


def _static_nd_indices(n: OnnxNode, idx: np.ndarray, dims: tuple[int, ...]) -> np.ndarray:
    """Import-time GatherND index tuples (..., k) as flat indices into the first k axes (row-major)."""
    parts = [_static_indices(n, idx[..., j], d) for j, d in enumerate(dims)]
    return np.ravel_multi_index(parts, dims) if parts else np.zeros(idx.shape[:-1], np.int64)


@translator("GatherND")
def _gather_nd(ctx: ImportContext, n: OnnxNode, xs: list) -> list:
    """GatherND (batch_dims 0) → a Gather along axis 0 of data reshaped to (d₀·…·d_(k-1), rest...) at the flat
    index Σ_j idx[..., j]·stride_j (computed at import when the indices are constants)."""
    data, idx = ctx.tensor(xs[0]), _index_array(xs[1], n)
    k = _nd_depth(n, data.shape, tuple(idx.shape))
    dims = data.shape[:k]
    flat_data = fn.reshape(data, (int(np.prod(dims, dtype=np.int64)),) + data.shape[k:])
    if isinstance(idx, np.ndarray):
        flat = _static_nd_indices(n, idx, dims)
    else:
        flat = None
        strides = [int(np.prod(dims[j + 1:], dtype=np.int64)) for j in range(k)]
        for j, (d, stride) in enumerate(zip(dims, strides)):
            part = fn.getitem(idx, (Ellipsis, j))
            part = _wrap_negative(fn.check_index(part, d, negative=True), d)
            term = part if stride == 1 else fn.mul(part, np.int64(stride))
            flat = term if flat is None else fn.add(flat, term)
        if flat is None:
            flat = np.zeros(idx.shape[:-1], np.int64)
    return [_take(n, flat_data, flat, 0)]


@folder("GatherND")
def _fold_gather_nd(n: OnnxNode, xs: list) -> list:
    data, idx = xs
    k = _nd_depth(n, data.shape, idx.shape)
    check_import_time_size(n, idx.shape[:-1] + data.shape[k:], data.dtype)
    flat = _static_nd_indices(n, idx, data.shape[:k])
    return [np.take(data.reshape((-1,) + data.shape[k:]), flat, axis=0)]


_SCATTER_REDUCTIONS = {"add": np.add, "mul": np.multiply, "max": np.maximum, "min": np.minimum}


@translator("ScatterND")
def _scatter_nd(ctx: ImportContext, n: OnnxNode, xs: list) -> list:
    """ScatterND folds on import-time constants only (Swin's attention-mask construction), float initializers
    included (they are then constants, not params); on tensors graphc has no scatter op."""
    if all(isinstance(x, np.ndarray) for x in xs):
        return _fold_scatter_nd(n, xs)
    n.attr("reduction")
    raise n.unsupported("ScatterND is supported only on import-time constants (graphc has no scatter op)")


@folder("ScatterND")
def _fold_scatter_nd(n: OnnxNode, xs: list) -> list:
    """data with data[indices[i]] = updates[i] (or combined by ``reduction``: add, mul, max, min)."""
    data, idx, updates = xs[0], np.asarray(xs[1], np.int64), xs[2]
    reduction = n.attr("reduction", "none")
    if reduction != "none" and reduction not in _SCATTER_REDUCTIONS:
        raise n.unsupported(f"reduction {reduction!r} is not supported")
    k = idx.shape[-1] if idx.ndim else 0
    if not idx.ndim or k > data.ndim or updates.shape != idx.shape[:-1] + data.shape[k:]:
        raise n.unsupported(f"indices {idx.shape} and updates {updates.shape} do not fit data {data.shape}")
    where = tuple(_static_indices(n, idx[..., j], d) for j, d in enumerate(data.shape[:k]))
    out = data.copy()
    if reduction == "none":
        out[where] = updates
    else:
        _SCATTER_REDUCTIONS[reduction].at(out, where, updates)
    return [out]


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
