"""2-D pooling over NCHW tensors: max, average, global average, and the gradient ops of max and average pooling.

Attributes after ``normalize``: ``kernel_size`` (kh, kw), ``stride`` (default: the kernel size), ``padding``
(top, left, bottom, right) — given as an int, a pair, that 4-tuple (ONNX ``pads`` order), ``"valid"`` or ``"same"``
as for conv2d — ``dilation`` (dh, dw) and ``ceil_mode``. Output size per axis: ⌊(n + p₀ + p₁ - e) / s⌋ + 1 with
e = (k - 1)·d + 1 (⌈·⌉ in ceil mode, dropping a last window that would start in the end padding, as ONNX and
PyTorch). Every window must overlap the input. Max pooling pads with -inf; average pooling divides by the number
of window positions inside the input, or, with ``count_include_pad``, inside the padded input (positions that
only ceil mode adds never count, as in PyTorch).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

import ops.fn as fn
from graphc.ir import TensorType
from ops.base import ErrorCase, Op, OpError, Sample, require_float, same_dtype
from ops.conv import Pads, col2im, output_size, pad_input, pair, require_rank4, resolve_padding, window_slices
from ops.registry import apply, register

GEOMETRY = ("kernel_size", "stride", "padding", "dilation", "ceil_mode")


def _normalize(attrs: Mapping[str, Any], size: tuple[int, int], avg: bool) -> dict[str, Any]:
    kernel = pair(attrs.get("kernel_size"), "kernel_size")
    stride = pair(kernel if attrs.get("stride") is None else attrs["stride"], "stride")
    dilation = pair(attrs.get("dilation", 1), "dilation")
    out = {"kernel_size": kernel, "stride": stride,
           "padding": resolve_padding(attrs.get("padding", 0), size, kernel, stride, dilation),
           "dilation": dilation, "ceil_mode": bool(attrs.get("ceil_mode", False))}
    if avg:
        out["count_include_pad"] = bool(attrs.get("count_include_pad", False))
    return out


def _positions(n: int, o: int, k: int, s: int, d: int, p0: int) -> np.ndarray:
    """(o, k) input coordinates of every window position along one axis."""
    return np.arange(o)[:, None] * s + np.arange(k)[None, :] * d - p0


def _out(attrs: Mapping[str, Any], x: TensorType) -> tuple[int, int]:
    """Output spatial size; checks that no window lies entirely in the padding."""
    size, kernel, pads = x.shape[2:], attrs["kernel_size"], attrs["padding"]
    out = output_size(size, kernel, attrs["stride"], attrs["dilation"], pads, attrs["ceil_mode"], f"x {x.shape}")
    for axis in range(2):
        pos = _positions(size[axis], out[axis], kernel[axis], attrs["stride"][axis], attrs["dilation"][axis],
                         pads[axis])
        if not np.all(np.any((pos >= 0) & (pos < size[axis]), axis=1)):
            raise OpError(f"a pooling window lies entirely in the padding (x {x.shape}, kernel {kernel}, "
                          f"padding {pads}); use less padding")
    return out


def _counts(attrs: Mapping[str, Any], size: tuple[int, int], out: tuple[int, int]) -> np.ndarray:
    """(Ho, Wo) divisors of average pooling."""
    pads: Pads = attrs["padding"]
    per_axis = []
    for axis in range(2):
        pos = _positions(size[axis], out[axis], attrs["kernel_size"][axis], attrs["stride"][axis],
                         attrs["dilation"][axis], pads[axis])
        lo, hi = (-pads[axis], size[axis] + pads[axis + 2]) if attrs["count_include_pad"] else (0, size[axis])
        per_axis.append(((pos >= lo) & (pos < hi)).sum(axis=1))
    return np.outer(per_axis[0], per_axis[1]).astype(np.float64)


def _padded(attrs: Mapping[str, Any], x: np.ndarray, fill: float) -> tuple[np.ndarray, list]:
    """x padded with ``fill`` and the strided slices each kernel position reads (see ``ops.conv.window_slices``)."""
    kernel, stride, dilation = attrs["kernel_size"], attrs["stride"], attrs["dilation"]
    out = output_size(x.shape[2:], kernel, stride, dilation, attrs["padding"], attrs["ceil_mode"], "")
    return pad_input(x, attrs["padding"], out, kernel, stride, dilation, fill), window_slices(out, kernel, stride,
                                                                                              dilation)


def _argmax_flat(attrs: Mapping[str, Any], x: np.ndarray) -> tuple[np.ndarray, tuple[int, ...]]:
    """Flat index into the -inf-padded x of each window's first maximum (row-major in the window), and its shape."""
    xp, slices = _padded(attrs, x, -np.inf)
    best = xp[:, :, slices[0][2], slices[0][3]].copy()
    k = np.zeros(best.shape, dtype=np.min_scalar_type(len(slices)))
    for position, (_, _, rows, columns) in enumerate(slices[1:], 1):
        value = xp[:, :, rows, columns]
        better = value > best  # strict: ties keep the first maximum
        np.copyto(best, value, where=better)
        np.copyto(k, position, where=better)
    (n, c, hp, wp), stride = xp.shape, attrs["stride"]
    offsets = np.array([rows.start * wp + columns.start for _, _, rows, columns in slices], dtype=np.int64)
    base = ((np.arange(n * c).reshape(n, c, 1, 1) * hp + np.arange(best.shape[2]).reshape(-1, 1) * stride[0]) * wp
            + np.arange(best.shape[3]) * stride[1])
    return base + offsets[k], xp.shape


def _distinct(rng: np.random.Generator, *shape: int) -> np.ndarray:
    """Values at least 2/size apart (no near-ties inside a window, so finite differences see no kink)."""
    size = math.prod(shape)
    return (rng.permutation(size).reshape(shape) * 4.0 / size - 2.0) + rng.uniform(0, 0.1 / size, shape)


class _Pool(Op):
    kind = "pool"
    arity = 1
    avg = False

    def flops(self, node):
        kh, kw = node.attrs["kernel_size"]
        return node.size * kh * kw

    def normalize(self, attrs, x, *rest):
        require_rank4("x", x, "N, C, H, W")
        return _normalize(attrs, x.shape[2:], self.avg)

    def infer(self, attrs, x, *rest):
        require_float(self.name, x, *rest)
        return TensorType(x.shape[:2] + _out(attrs, x), same_dtype(self.name, x, *rest))

    def error_cases(self):
        f = "float32"
        x = ((1, 2, 5, 5), f)
        return [
            ErrorCase([x], {"kernel_size": 6}, "kernel 6x6 (dilated extent 6x6) is larger than the padded input 5x5"),
            ErrorCase([x], {"kernel_size": 2, "stride": -1}, "stride must be positive, got (-1, -1)"),
            ErrorCase([x], {"kernel_size": (2, 0)}, "kernel_size must be positive"),
            ErrorCase([x], {"kernel_size": 2, "padding": 2}, "lies entirely in the padding (x (1, 2, 5, 5)"),
            ErrorCase([((2, 5, 5), f)], {"kernel_size": 2}, "x must have rank 4 (N, C, H, W), got shape (2, 5, 5)"),
            ErrorCase([x], {}, "kernel_size must be an int or a pair"),
        ]


@register
class MaxPool2d(_Pool):
    """y[n,c,i,j] = max_{p,q} x_pad[n, c, i·sh + p·dh, j·sw + q·dw] (padding = -inf);
    dx = max_pool2d_backward(x, ḡ): ḡ routed to each window's first maximum (row-major, as PyTorch)."""

    name = "max_pool2d"

    def reference(self, attrs, x):
        xp, slices = _padded(attrs, x, -np.inf)
        y = xp[:, :, slices[0][2], slices[0][3]].copy()
        for _, _, rows, columns in slices[1:]:
            np.maximum(y, xp[:, :, rows, columns], out=y)
        return y.astype(x.dtype, copy=False)

    def vjp(self, node, g):
        return (apply("max_pool2d_backward", node.inputs[0], g, **node.attrs),)

    def samples(self, rng):
        d = _distinct
        return [
            Sample([d(rng, 2, 2, 4, 4)], {"kernel_size": 2}),
            Sample([d(rng, 1, 2, 5, 5)], {"kernel_size": 3, "stride": 2, "padding": 1}, note="overlapping, padded"),
            Sample([d(rng, 1, 1, 5, 6)], {"kernel_size": (2, 3), "stride": (2, 1), "ceil_mode": True}),
            Sample([d(rng, 1, 1, 6, 6)], {"kernel_size": 2, "dilation": 2, "stride": 1}, note="dilation"),
            Sample([d(rng, 1, 1, 5, 5)], {"kernel_size": 2, "padding": "same"}, note="same"),
        ]


@register
class MaxPool2dBackward(_Pool):
    """dx = the adjoint of max pooling's selection: dx[n,c,h,w] = Σ ḡ[n,c,i,j] over the windows whose first maximum
    is x[n,c,h,w]. Piecewise constant in x (no gradient); linear in ḡ: d(ḡ) = max_pool2d_gather(x, h̄)."""

    name = "max_pool2d_backward"
    arity = 2

    def infer(self, attrs, x, g):
        pooled = super().infer(attrs, x, g)
        if g.shape != pooled.shape:
            raise OpError(f"g of shape {g.shape} does not match the max_pool2d output {pooled.shape} of x {x.shape}")
        return x

    def reference(self, attrs, x, g):
        flat, padded = _argmax_flat(attrs, x)
        dxp = np.bincount(flat.ravel(), weights=g.ravel(), minlength=math.prod(padded)).reshape(padded)
        t, left = attrs["padding"][:2]
        return np.ascontiguousarray(dxp[:, :, t:t + x.shape[2], left:left + x.shape[3]], dtype=x.dtype)

    def vjp(self, node, h):
        return (None, apply("max_pool2d_gather", node.inputs[0], h, **node.attrs))

    def samples(self, rng):
        d = _distinct
        return [
            Sample([d(rng, 1, 2, 5, 5), rng.standard_normal((1, 2, 3, 3))],
                   {"kernel_size": 3, "stride": 2, "padding": 1}, grad_inputs=[1]),
            Sample([d(rng, 1, 1, 5, 6), rng.standard_normal((1, 1, 3, 4))],
                   {"kernel_size": (2, 3), "stride": (2, 1), "ceil_mode": True}, grad_inputs=[1]),
        ]

    def error_cases(self):
        f = "float32"
        return [ErrorCase([((1, 2, 4, 4), f), ((1, 2, 3, 3), f)], {"kernel_size": 2},
                          "g of shape (1, 2, 3, 3) does not match the max_pool2d output (1, 2, 2, 2)")]


@register
class MaxPool2dGather(_Pool):
    """y[n,c,i,j] = h at the position of the first maximum of x's window (i, j): the transpose of
    max_pool2d_backward in its gradient argument. No gradient in x; d(h) = max_pool2d_backward(x, ḡ)."""

    name = "max_pool2d_gather"
    arity = 2

    def infer(self, attrs, x, h):
        if h.shape != x.shape:
            raise OpError(f"h of shape {h.shape} must have the shape of x {x.shape}")
        return super().infer(attrs, x, h)

    def reference(self, attrs, x, h):
        flat, padded = _argmax_flat(attrs, x)
        t, left = attrs["padding"][:2]
        hp = np.zeros(padded, dtype=h.dtype)
        hp[:, :, t:t + h.shape[2], left:left + h.shape[3]] = h
        return np.ascontiguousarray(hp.ravel()[flat], dtype=x.dtype)

    def vjp(self, node, g):
        return (None, apply("max_pool2d_backward", node.inputs[0], g, **node.attrs))

    def samples(self, rng):
        d = _distinct
        return [Sample([d(rng, 1, 2, 5, 5), rng.standard_normal((1, 2, 5, 5))],
                       {"kernel_size": 3, "stride": 2, "padding": 1}, grad_inputs=[1]),
                Sample([d(rng, 1, 1, 5, 6), rng.standard_normal((1, 1, 5, 6))],
                       {"kernel_size": (2, 3), "stride": (2, 1), "ceil_mode": True}, grad_inputs=[1])]

    def error_cases(self):
        f = "float32"
        return [ErrorCase([((1, 2, 4, 4), f), ((1, 2, 3, 3), f)], {"kernel_size": 2},
                          "h of shape (1, 2, 3, 3) must have the shape of x (1, 2, 4, 4)")]


@register
class AvgPool2d(_Pool):
    """y[n,c,i,j] = (1/count[i,j]) Σ_{p,q} x_pad[n, c, i·sh + p·dh, j·sw + q·dw] (zero padding; count: see module);
    dx = avg_pool2d_backward(ḡ): each ḡ[n,c,i,j] / count[i,j] spread over its window."""

    name = "avg_pool2d"
    avg = True

    def reference(self, attrs, x):
        xp, slices = _padded(attrs, x, 0.0)
        total = xp[:, :, slices[0][2], slices[0][3]].copy()
        for _, _, rows, columns in slices[1:]:
            total += xp[:, :, rows, columns]
        return (total / _counts(attrs, x.shape[2:], total.shape[2:])).astype(x.dtype, copy=False)

    def vjp(self, node, g):
        return (apply("avg_pool2d_backward", g, input_size=node.inputs[0].shape[2:], **node.attrs),)

    def samples(self, rng):
        r = rng.standard_normal
        return [
            Sample([r((2, 2, 4, 4))], {"kernel_size": 2}),
            Sample([r((1, 2, 5, 5))], {"kernel_size": 3, "stride": 2, "padding": 1}),
            Sample([r((1, 2, 5, 5))], {"kernel_size": 3, "stride": 2, "padding": 1, "count_include_pad": True}),
            Sample([r((1, 1, 5, 6))], {"kernel_size": (2, 3), "stride": (2, 1), "ceil_mode": True}),
            Sample([r((1, 1, 6, 5))], {"kernel_size": 3, "stride": 2, "padding": 1, "ceil_mode": True,
                                       "count_include_pad": True}),
            Sample([r((1, 1, 6, 6))], {"kernel_size": 2, "dilation": 2, "padding": (1, 0, 0, 1)}),
        ]


@register
class AvgPool2dBackward(Op):
    """dx[n,c,h,w] = Σ ḡ[n,c,i,j] / count[i,j] over the windows (i, j) containing (h, w); ``input_size`` = (H, W).
    Linear in ḡ and the transpose of avg_pool2d: d(ḡ) = avg_pool2d(h̄)."""

    name = "avg_pool2d_backward"
    kind = "pool"
    arity = 1

    def normalize(self, attrs, g):
        require_rank4("g", g, "N, C, Ho, Wo")
        size = pair(attrs.get("input_size"), "input_size")
        return {"input_size": size, **_normalize(attrs, size, avg=True)}

    def infer(self, attrs, g):
        require_float(self.name, g)
        size = attrs["input_size"]
        out = _out(attrs, TensorType(g.shape[:2] + size, g.dtype))
        if g.shape[2:] != out:
            raise OpError(f"g of shape {g.shape} does not match the avg_pool2d output size {out} of an input of "
                          f"size {size}")
        return TensorType(g.shape[:2] + size, g.dtype)

    def reference(self, attrs, g):
        size, out = attrs["input_size"], g.shape[2:]
        spread = (g / _counts(attrs, size, out))[:, :, None, None]
        cols = np.broadcast_to(spread, g.shape[:2] + attrs["kernel_size"] + out)
        dx = col2im(cols, size, attrs["padding"], attrs["stride"], attrs["dilation"])
        return np.ascontiguousarray(dx, dtype=g.dtype)

    def vjp(self, node, h):
        return (apply("avg_pool2d", h, **{k: node.attrs[k] for k in (*GEOMETRY, "count_include_pad")}),)

    def samples(self, rng):
        r = rng.standard_normal
        return [
            Sample([r((1, 2, 3, 3))], {"input_size": 5, "kernel_size": 3, "stride": 2, "padding": 1}),
            Sample([r((1, 1, 4, 3))], {"input_size": (6, 5), "kernel_size": 3, "stride": 2, "padding": 1,
                                       "ceil_mode": True, "count_include_pad": True}),
        ]

    def error_cases(self):
        return [ErrorCase([((1, 2, 3, 3), "float32")], {"input_size": 4, "kernel_size": 2},
                          "g of shape (1, 2, 3, 3) does not match the avg_pool2d output size (2, 2)")]


@register
class GlobalAvgPool2d(Op):
    """y[n,c,1,1] = mean over the spatial axes of x[n,c,...] (any rank >= 3);  dx = ḡ / (H·W) broadcast back."""

    name = "global_avg_pool2d"
    kind = "pool"
    arity = 1

    def infer(self, attrs, x):
        require_float(self.name, x)
        if x.ndim < 3:
            raise OpError(f"x must have rank >= 3 (N, C, H, W), got shape {x.shape}")
        return TensorType(x.shape[:2] + (1,) * (x.ndim - 2), x.dtype)

    def reference(self, attrs, x):
        return np.mean(x, axis=tuple(range(2, x.ndim)), keepdims=True).astype(x.dtype)

    def vjp(self, node, g):
        x = node.inputs[0]
        count = math.prod(x.shape[2:])
        return (fn.broadcast_to(fn.div(g, float(max(count, 1))), x.shape),)

    def samples(self, rng):
        return [Sample([rng.standard_normal((2, 3, 4, 5))]), Sample([rng.standard_normal((1, 2, 1, 1))])]

    def error_cases(self):
        return [ErrorCase([((3, 4), "float32")], {}, "rank >= 3 (N, C, H, W), got shape (3, 4)")]
