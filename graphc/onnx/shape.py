"""Translators for constants and shape manipulation: Constant, ConstantOfShape, Range, Identity, Shape, Size,
Reshape, Flatten, Transpose, Squeeze, Unsqueeze, Concat, Split, Expand, Tile and Pad. Shape and Size yield
import-time arrays, and every shape op also has a folder (NumPy on import-time constants), so shape arithmetic
folds at import."""

from __future__ import annotations

import numpy as np

import ops.fn as fn
from graphc.ir import Node
from graphc.onnx.registry import (
    ImportContext,
    OnnxNode,
    Value,
    check_import_time_size,
    folder,
    optional_input,
    shape_of,
    translator,
)


def _ints(value: np.ndarray) -> list[int]:
    """An import-time array as a flat list of Python ints."""
    return [int(v) for v in np.asarray(value).reshape(-1)]


def _static_ints(ctx: ImportContext | None, value: Value | None, what: str) -> list[int] | None:
    """The import-time ints of an optional input (through ``ctx`` in a translator; folders get arrays)."""
    if value is None:
        return None
    return ctx.ints(value, what) if ctx is not None else _ints(value)


# ---------------------------------------------------------------------------------------------- constants


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


@translator("ConstantOfShape")
def _constant_of_shape(ctx: ImportContext, n: OnnxNode, xs: list) -> list:
    """ConstantOfShape → an import-time array of the (import-time) shape filled with ``value`` (float32 0 by
    default)."""
    value = n.attr("value")
    value = np.zeros(1, np.float32) if value is None else value
    if value.size != 1:
        raise n.unsupported(f"attribute value must hold one element, got {value.size}")
    shape = check_import_time_size(n, ctx.ints(xs[0], f"{n.label}: input shape"), value.dtype)
    return [np.full(shape, value.reshape(-1)[0], dtype=value.dtype)]


@translator("Range")
def _range(ctx: ImportContext, n: OnnxNode, xs: list) -> list:
    """Range → an import-time array start + i·delta for i < max(ceil((limit - start) / delta), 0)."""
    start, limit, delta = (ctx.static(v, f"{n.label}: input {what}")
                           for v, what in zip(xs, ("start", "limit", "delta")))
    dtype = np.asarray(start).dtype
    start, limit, delta = (np.asarray(v).reshape(-1)[0] for v in (start, limit, delta))
    if delta == 0:
        raise n.unsupported("delta 0 is invalid")
    count = max(int(np.ceil((float(limit) - float(start)) / float(delta))), 0)
    check_import_time_size(n, (count,), dtype)
    return [(start + np.arange(count, dtype=dtype) * delta).astype(dtype)]


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


# ---------------------------------------------------------------------------------------------- reshaping


def _reshape_target(n: OnnxNode, shape: tuple[int, ...], target: list[int]) -> tuple[int, ...]:
    """Reshape's target: 0 copies the input's dimension unless allowzero."""
    if not n.attr("allowzero", 0):
        target = [shape[i] if d == 0 and i < len(shape) else d for i, d in enumerate(target)]
    return tuple(target)


@translator("Reshape")
def _reshape(ctx: ImportContext, n: OnnxNode, xs: list) -> list:
    """Reshape → reshape to the import-time shape input (0 copies the input's dimension unless allowzero)."""
    x = ctx.tensor(xs[0])
    return [fn.reshape(x, _reshape_target(n, x.shape, ctx.ints(xs[1], f"{n.label}: input shape")))]


@folder("Reshape")
def _fold_reshape(n: OnnxNode, xs: list) -> list:
    return [xs[0].reshape(_reshape_target(n, xs[0].shape, _ints(xs[1])))]


def _flatten_shape(n: OnnxNode, shape: tuple[int, ...]) -> tuple[int, int]:
    axis = int(n.attr("axis", 1))
    axis = axis + len(shape) if axis < 0 else axis
    return int(np.prod(shape[:axis], dtype=np.int64)), int(np.prod(shape[axis:], dtype=np.int64))


@translator("Flatten")
def _flatten(ctx: ImportContext, n: OnnxNode, xs: list) -> list:
    """Flatten → reshape to (prod(shape[:axis]), prod(shape[axis:]))."""
    x = ctx.tensor(xs[0])
    return [fn.reshape(x, _flatten_shape(n, x.shape))]


@folder("Flatten")
def _fold_flatten(n: OnnxNode, xs: list) -> list:
    return [xs[0].reshape(_flatten_shape(n, xs[0].shape))]


@translator("Transpose")
def _transpose(ctx: ImportContext, n: OnnxNode, xs: list) -> list:
    """Transpose → transpose by ``perm`` (reversed axes by default)."""
    perm = n.attr("perm")
    return [fn.transpose(ctx.tensor(xs[0]), None if perm is None else tuple(perm))]


@folder("Transpose")
def _fold_transpose(n: OnnxNode, xs: list) -> list:
    perm = n.attr("perm")
    return [np.transpose(xs[0], None if perm is None else tuple(perm))]


def _axes_arg(ctx: ImportContext | None, n: OnnxNode, xs: list) -> list[int] | None:
    """The axes of Squeeze/Unsqueeze: input 1 from opset 13, the attribute before; None when absent."""
    axes = _static_ints(ctx, optional_input(xs, 1), f"{n.label}: input axes")
    if axes is not None:
        return axes
    axes = n.attr("axes")
    return None if axes is None else list(axes)


def _squeezed(ctx: ImportContext | None, n: OnnxNode, xs: list, shape: tuple[int, ...]) -> tuple[int, ...]:
    """Squeeze's result shape: without the given unit axes (every unit axis by default)."""
    axes = _axes_arg(ctx, n, xs)
    rank = len(shape)
    drop = {i for i, d in enumerate(shape) if d == 1} if axes is None else {a % max(rank, 1) for a in axes}
    if any(shape[a] != 1 for a in drop if a < rank):
        raise n.unsupported(f"cannot squeeze axes {sorted(drop)} of shape {shape}: not of size 1")
    return tuple(d for i, d in enumerate(shape) if i not in drop)


def _unsqueezed(ctx: ImportContext | None, n: OnnxNode, xs: list, shape: tuple[int, ...]) -> tuple[int, ...]:
    """Unsqueeze's result shape: unit axes inserted at the given output positions."""
    axes = _axes_arg(ctx, n, xs) or []
    rank = len(shape) + len(axes)
    new = {a % rank for a in axes}
    dims = iter(shape)
    return tuple(1 if i in new else next(dims) for i in range(rank))


@translator("Squeeze")
def _squeeze(ctx: ImportContext, n: OnnxNode, xs: list) -> list:
    """Squeeze → reshape without the given unit axes (every unit axis by default)."""
    x = ctx.tensor(xs[0])
    return [fn.reshape(x, _squeezed(ctx, n, xs, x.shape))]


@translator("Unsqueeze")
def _unsqueeze(ctx: ImportContext, n: OnnxNode, xs: list) -> list:
    """Unsqueeze → reshape with unit axes inserted at the given output positions."""
    x = ctx.tensor(xs[0])
    return [fn.reshape(x, _unsqueezed(ctx, n, xs, x.shape))]


@folder("Squeeze", "Unsqueeze")
def _fold_squeeze(n: OnnxNode, xs: list) -> list:
    shaper = _squeezed if n.op_type == "Squeeze" else _unsqueezed
    return [xs[0].reshape(shaper(None, n, xs, xs[0].shape))]


# ---------------------------------------------------------------------------------------------- concat, split


@translator("Concat")
def _concat(ctx: ImportContext, n: OnnxNode, xs: list) -> list:
    """Concat → concat along ``axis``."""
    return [fn.concat([ctx.tensor(x) for x in xs], axis=int(n.attr("axis")))]


@folder("Concat")
def _fold_concat(n: OnnxNode, xs: list) -> list:
    return [np.concatenate(xs, axis=int(n.attr("axis")))]


def _split_bounds(ctx: ImportContext | None, n: OnnxNode, xs: list, shape: tuple[int, ...]) -> tuple[int, list]:
    """Split's axis and one (start, stop) per output: sizes from the ``split`` input (opset 13+) or attribute,
    else equal parts (``num_outputs`` from opset 18, the number of outputs before), the last part smaller when the
    axis does not divide evenly."""
    axis = int(n.attr("axis", 0)) % max(len(shape), 1)
    sizes = _static_ints(ctx, optional_input(xs, 1), f"{n.label}: input split")
    if sizes is None and n.attr("split") is not None:
        sizes = list(n.attr("split"))
    count = n.attr("num_outputs")
    dim = shape[axis]
    if sizes is None:
        parts = int(count) if count is not None else len(n.proto.output)
        if parts < 1:
            raise n.unsupported(f"{parts} outputs")
        chunk = -(-dim // parts)
        sizes = [max(min(chunk, dim - i * chunk), 0) for i in range(parts)]
    if sum(sizes) != dim or any(s < 0 for s in sizes):
        raise n.unsupported(f"split sizes {sizes} do not add up to the dimension {dim} of axis {axis}")
    if len(sizes) != len(n.proto.output):
        raise n.unsupported(f"{len(sizes)} split sizes for {len(n.proto.output)} outputs")
    starts = np.cumsum([0, *sizes])
    return axis, [(int(a), int(b)) for a, b in zip(starts[:-1], starts[1:])]


@translator("Split")
def _split(ctx: ImportContext, n: OnnxNode, xs: list) -> list:
    """Split → one slice of x along ``axis`` per output."""
    x = ctx.tensor(xs[0])
    axis, bounds = _split_bounds(ctx, n, xs, x.shape)
    lead = (slice(None),) * axis
    return [x if (a, b) == (0, x.shape[axis]) else fn.getitem(x, (*lead, slice(a, b))) for a, b in bounds]


@folder("Split")
def _fold_split(n: OnnxNode, xs: list) -> list:
    axis, bounds = _split_bounds(None, n, xs, xs[0].shape)
    lead = (slice(None),) * axis
    return [xs[0][(*lead, slice(a, b))] for a, b in bounds]


# ---------------------------------------------------------------------------------------------- expand, tile, pad


@translator("Expand")
def _expand(ctx: ImportContext, n: OnnxNode, xs: list) -> list:
    """Expand → broadcast_to the NumPy broadcast of x's shape and the import-time shape input."""
    x = ctx.tensor(xs[0])
    shape = np.broadcast_shapes(x.shape, tuple(ctx.ints(xs[1], f"{n.label}: input shape")))
    return [x if shape == x.shape else fn.broadcast_to(x, shape)]


@folder("Expand")
def _fold_expand(n: OnnxNode, xs: list) -> list:
    shape = np.broadcast_shapes(xs[0].shape, tuple(_ints(xs[1])))
    return [np.broadcast_to(xs[0], check_import_time_size(n, shape, xs[0].dtype)).copy()]


def _repeats(n: OnnxNode, repeats: list[int], rank: int) -> list[int]:
    if len(repeats) != rank or any(r < 0 for r in repeats):
        raise n.unsupported(f"repeats {repeats} must be {rank} non-negative counts (one per axis of the input)")
    return repeats


@translator("Tile")
def _tile(ctx: ImportContext, n: OnnxNode, xs: list) -> list:
    """Tile → x reshaped to (1, d₀, 1, d₁, …), broadcast to (r₀, d₀, r₁, d₁, …), reshaped to (r₀d₀, r₁d₁, …)."""
    x = ctx.tensor(xs[0])
    repeats = _repeats(n, ctx.ints(xs[1], f"{n.label}: input repeats"), x.ndim)
    if all(r == 1 for r in repeats):
        return [x]
    pairs = [(r, d) for r, d in zip(repeats, x.shape)]
    lifted = fn.reshape(x, tuple(v for _, d in pairs for v in (1, d)))
    spread = fn.broadcast_to(lifted, tuple(v for pair in pairs for v in pair))
    return [fn.reshape(spread, tuple(r * d for r, d in pairs))]


@folder("Tile")
def _fold_tile(n: OnnxNode, xs: list) -> list:
    repeats = _repeats(n, _ints(xs[1]), xs[0].ndim)
    check_import_time_size(n, [r * d for r, d in zip(repeats, xs[0].shape)], xs[0].dtype)
    return [np.tile(xs[0], repeats)]


def _pad_args(ctx: ImportContext | None, n: OnnxNode, xs: list, rank: int) -> tuple[list, tuple, float]:
    """Pad's (before, after) pairs per axis (negative counts become crops), the crop index and the value."""
    if n.opset < 11:
        pads, value, axes = list(n.attr("pads")), float(n.attr("value", 0.0)), None
    else:
        pads = _static_ints(ctx, xs[1], f"{n.label}: input pads")
        value_input = optional_input(xs, 2)
        value = 0.0 if value_input is None else (ctx.static(value_input, f"{n.label}: input constant_value")
                                                 if ctx is not None else value_input)
        value = np.asarray(value).reshape(-1)[0].item() if np.asarray(value).size else 0.0
        axes = _static_ints(ctx, optional_input(xs, 3), f"{n.label}: input axes")
    axes = list(range(rank)) if axes is None else [a % max(rank, 1) for a in axes]
    if len(pads) != 2 * len(axes):
        raise n.unsupported(f"{len(pads)} pads for {len(axes)} axes (expected two per axis)")
    pairs = [(0, 0)] * rank
    for i, axis in enumerate(axes):
        pairs[axis] = (pads[i], pads[i + len(axes)])
    crop = tuple(slice(max(-a, 0), None if b >= 0 else b) for a, b in pairs)
    return [(max(a, 0), max(b, 0)) for a, b in pairs], crop, value


_PAD_MODES = ("constant", "reflect", "edge", "wrap")


def _pad_mode(n: OnnxNode, shape: tuple[int, ...], pairs: list) -> str:
    """Pad's mode, checked against the (cropped) shape: reflect needs pads < the axis size, wrap ≤ it."""
    mode = n.attr("mode", "constant")
    if mode not in _PAD_MODES or (mode == "wrap" and n.opset < 19):
        raise n.unsupported(f"attribute mode={mode!r} is not supported (constant, reflect, edge, wrap)")
    for axis, ((a, b), d) in enumerate(zip(pairs, shape)):
        if (a or b) and mode != "constant" and (d == 0 or (mode == "reflect" and max(a, b) >= d)
                                                or (mode == "wrap" and max(a, b) > d)):
            raise n.unsupported(f"attribute mode={mode!r}: pads {(a, b)} on axis {axis} of size {d} are not "
                                "supported (reflect needs pads < the size, wrap pads ≤ the size)")
    return mode


def _pad_axis(x: Node, axis: int, before: int, after: int, mode: str) -> Node:
    """x padded along ``axis`` by slices of itself: edge repeats the end rows, reflect mirrors x[1..before] and
    x[d-1-after..d-2], wrap takes x[d-before..] and x[..after]."""
    d = x.shape[axis]

    def part(index: slice, count: int) -> Node:
        piece = fn.getitem(x, (slice(None),) * axis + (index,))
        if mode == "edge":
            piece = fn.broadcast_to(piece, x.shape[:axis] + (count,) + x.shape[axis + 1:])
        return piece

    if mode == "edge":
        pieces = [part(slice(0, 1), before), x, part(slice(d - 1, d), after)]
    elif mode == "reflect":
        pieces = [part(slice(before, 0, -1), before), x, part(slice(d - 2, d - 2 - after if d - 2 - after >= 0
                                                                    else None, -1), after)]
    else:
        pieces = [part(slice(d - before, d), before), x, part(slice(0, after), after)]
    keep = [p for p, count in zip(pieces, (before, 1, after)) if count]
    return fn.concat(keep, axis=axis)


@translator("Pad")
def _pad(ctx: ImportContext, n: OnnxNode, xs: list) -> list:
    """Pad → pad with the import-time value (mode constant), or for reflect, edge and wrap a concatenation of
    slices of x per padded axis (whose gradients are slice_backward); negative pads crop the axis first."""
    x = ctx.tensor(xs[0])
    pairs, crop, value = _pad_args(ctx, n, xs, x.ndim)
    if any(s != slice(0, None) for s in crop):
        x = fn.getitem(x, crop)
    mode = _pad_mode(n, x.shape, pairs)
    if all(p == (0, 0) for p in pairs):
        return [x]
    if mode == "constant":
        return [fn.pad(x, pairs, value=value)]
    for axis, (a, b) in enumerate(pairs):
        if a or b:
            x = _pad_axis(x, axis, a, b, mode)
    return [x]


@folder("Pad")
def _fold_pad(n: OnnxNode, xs: list) -> list:
    pairs, crop, value = _pad_args(None, n, xs, xs[0].ndim)
    cropped = xs[0][crop]
    mode = _pad_mode(n, cropped.shape, pairs)
    check_import_time_size(n, [d + a + b for d, (a, b) in zip(cropped.shape, pairs)], cropped.dtype)
    if mode != "constant":
        return [np.pad(cropped, pairs, mode=mode)]
    return [np.pad(cropped, pairs, constant_values=np.asarray(value, cropped.dtype))]
