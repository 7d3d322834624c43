"""Strided views: the element layout a shape op's output has inside its input's buffer, composed along a chain.

A value stored in a buffer is described by a *layout*: an element offset and one element stride per axis, so
element ``idx`` lives at ``offset + Σ idx[i]·strides[i]``. A contiguous value has offset 0 and row-major strides.
Shape ops that only move or select elements map their input's layout to their output's (``Op.view_layout``):

- ``transpose(x, axes)``:  strides'[i] = strides[axes[i]];
- ``slice``: an int index adds ``i·stride`` to the offset and drops the axis, a slice ``start:stop:step`` adds
  ``start·stride`` and scales the stride by ``step``, a new axis has stride 0;
- ``reshape``: NumPy's no-copy rule (:func:`reshape_strides`) — the old and new shapes are cut into runs of equal
  element counts; each old run must be contiguous within itself (stride[i] = stride[i+1]·dim[i+1] over its
  non-unit axes), and the new run's strides are then row-major from the run's innermost stride. Otherwise the
  reshape needs a copy (None).

A consumer that can read strided operands (a GEMM, through its leading dimensions and batch strides) then reads
a chain of such ops from the chain's source buffer: nothing is materialized. The other way round, a producer can
write its result straight into the buffer of a transpose of it (:func:`transpose_store_strides`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from graphc.ir import Node
from ops.registry import get_op

Strides = tuple[int, ...]
Layout = tuple[int, Strides]  # (element offset, element strides)


def contiguous_strides(shape: Sequence[int]) -> Strides:
    """Row-major element strides of ``shape``."""
    strides, acc = [], 1
    for d in reversed(shape):
        strides.append(acc)
        acc *= d
    return tuple(reversed(strides))


def reshape_strides(old_shape: Sequence[int], old_strides: Sequence[int], new_shape: Sequence[int]
                    ) -> Strides | None:
    """The strides of ``new_shape`` reading the same elements in row-major order as ``old_shape`` laid out with
    ``old_strides``, or None when no strides can (see the module docstring). Unit axes get stride 0."""
    if math.prod(old_shape) != math.prod(new_shape):
        raise ValueError(f"reshape of {tuple(old_shape)} to {tuple(new_shape)} changes the element count")
    if math.prod(new_shape) == 0:
        return contiguous_strides(new_shape)
    old = [(d, s) for d, s in zip(old_shape, old_strides) if d != 1]
    new = [i for i, d in enumerate(new_shape) if d != 1]
    out = [0] * len(new_shape)
    o = n = 0
    while o < len(old):
        o_end, n_end = o + 1, n + 1
        old_count, new_count = old[o][0], new_shape[new[n]]
        while old_count != new_count:
            if old_count < new_count:
                old_count *= old[o_end][0]
                o_end += 1
            else:
                new_count *= new_shape[new[n_end]]
                n_end += 1
        if any(old[i][1] != old[i + 1][1] * old[i + 1][0] for i in range(o, o_end - 1)):
            return None
        stride = old[o_end - 1][1]
        for i in reversed(new[n:n_end]):
            out[i] = stride
            stride *= new_shape[i]
        o, n = o_end, n_end
    return tuple(out)


def chain_layout(node: Node, folded: Callable[[Node], bool]) -> tuple[Node, Layout] | None:
    """(source, layout of ``node`` in the source's buffer), walking back through the view ops ``folded`` accepts
    (each must define ``Op.view_layout``); the source is the first node not folded. None when a step of the
    chain has no strided layout."""
    chain = []
    while not node.is_leaf and folded(node):
        chain.append(node)
        node = node.inputs[0]
    layout: Layout | None = (0, contiguous_strides(node.shape))
    for view in reversed(chain):
        layout = get_op(view.op).view_layout(view, *layout)
        if layout is None:
            return None
    return node, layout


def gemm_operand(shape: Sequence[int], strides: Sequence[int]) -> tuple[bool, int] | None:
    """How a GEMM reads a matrix (the last two axes of ``shape``) laid out with ``strides``: (transposed, leading
    dimension) — rows contiguous (``transposed`` False, ld = the row stride ≥ the row length) or columns contiguous
    (``transposed`` True, ld = the column stride ≥ the column length). None for any other layout or a negative
    stride (batch strides included)."""
    if any(s < 0 for s in strides):
        return None
    rows, cols = shape[-2], shape[-1]
    row_stride, col_stride = strides[-2], strides[-1]
    if cols == 1 or col_stride == 1:
        ld = row_stride if rows > 1 else cols
        if ld >= cols:
            return False, ld
    if rows == 1 or row_stride == 1:
        ld = col_stride if cols > 1 else rows
        if ld >= rows:
            return True, ld
    return None


def transpose_store_strides(view: Node) -> Strides:
    """The strides of a transpose's input inside the transpose's own (contiguous) buffer: y = transpose(x, axes)
    stores x[j] at Σᵢ j[axes[i]]·stride_y[i], so stride_x[axes[i]] = stride_y[i]."""
    own = contiguous_strides(view.shape)
    out = [0] * len(own)
    for i, a in enumerate(view.attrs["axes"]):
        out[a] = own[i]
    return tuple(out)
