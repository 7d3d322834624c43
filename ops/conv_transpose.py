"""Transposed 2-D convolution as a composition: ``conv2d_backward_input`` is exactly the transposed convolution
of its input with the weight, so ConvTranspose needs no op of its own (and its gradients are those of
conv2d_backward_input: conv2d and conv2d_backward_weight)."""

from __future__ import annotations

from typing import Any

import ops.fn as fn
from graphc.ir import Node
from ops.conv import pair
from ops.registry import apply


def conv_transpose2d(x: Node, w: Node, b: Node | None = None, stride: Any = 1, pads: Any = (0, 0, 0, 0),
                     output_padding: Any = 0, dilation: Any = 1, groups: int = 1) -> Node:
    """y = convᵀ(x, w) (+ b): x (N, C, H, W), w (C, O/groups, kh, kw) (ONNX/PyTorch layout);
    y[n, o, h, v] = Σ x[n, c, i, j]·w[c, o, p, q] over h = i·sh + p·dh − top, v = j·sw + q·dw − left (within a
    group), of size s·(H − 1) + output_padding + (k − 1)·d + 1 − begin − end per axis. ``pads`` = (top, left,
    bottom, right) may be negative (the output then extends with zeros)."""
    stride, dilation = pair(stride, "stride"), pair(dilation, "dilation")
    extra = pair(output_padding, "output_padding", positive=False)
    top, left, bottom, right = (int(p) for p in pads)
    begins, ends = (top, left), (bottom, right)
    kernel = w.shape[2:]
    full = tuple(stride[a] * (x.shape[2 + a] - 1) + (kernel[a] - 1) * dilation[a] + 1 for a in range(2))
    size = tuple(full[a] + extra[a] - begins[a] - ends[a] for a in range(2))
    geometry = {"stride": stride, "dilation": dilation, "groups": groups}
    if min(pads) >= 0 and all(extra[a] < stride[a] for a in range(2)):  # one op: conv2d's input gradient
        y = apply("conv2d_backward_input", x, w, input_size=size, padding=(top, left, bottom, right), **geometry)
    else:  # the uncropped result, then cropped or extended with zeros axis by axis
        y = apply("conv2d_backward_input", x, w, input_size=full, padding=0, **geometry)
        index, widen = [slice(None), slice(None)], [(0, 0), (0, 0)]
        for a in range(2):
            lo, hi = min(max(begins[a], 0), full[a]), max(min(begins[a] + size[a], full[a]), 0)
            hi = max(hi, lo)
            before = max(-begins[a], 0)
            index.append(slice(lo, hi))
            widen.append((before, size[a] - (hi - lo) - before))
        y = fn.getitem(y, tuple(index))
        if any(p != (0, 0) for p in widen):
            y = fn.pad(y, widen)
    if b is not None:
        y = fn.add(y, fn.reshape(b, (1, -1, 1, 1)))
    return y
