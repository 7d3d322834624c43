"""2-D convolution (NCHW activations, OIHW weights, as ONNX and PyTorch) and its two gradient ops.

Geometry attributes, after ``normalize``: ``stride`` (sh, sw), ``dilation`` (dh, dw) and ``padding`` as the explicit
4-tuple (top, left, bottom, right) — ONNX's ``pads = [t, l, b, r]`` order. Users may write ``padding`` as an int,
a pair (ph, pw), that 4-tuple, ``"valid"`` (no padding) or ``"same"`` (output size ceil(in / stride), the odd extra
row/column at the end like ONNX SAME_UPPER; ``"same_lower"`` puts it at the start). ``groups`` splits the channels.

The NumPy references are im2col + GEMM: one strided copy per kernel position builds the (N, C·kh·kw, Ho·Wo)
columns, one batched ``matmul`` (over batch and groups) contracts them with the weights; the input gradient
(col2im) scatters back with one strided add per kernel position. The window helpers are shared with ``ops.pool``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

import ops.fn as fn
from graphc.ir import TensorType
from ops.base import ErrorCase, Op, OpError, Sample, require_float, same_dtype
from ops.registry import apply, register

Pair = tuple[int, int]
Pads = tuple[int, int, int, int]

# How the llvm backend computes a convolution and its gradients (the interpreter ignores it): "auto" chooses per
# layer (codegen.conv_direct.choose_algorithm, codegen.conv_choice.rule_of_thumb), "direct" sums windows in loop nests,
# "im2col" builds columns and runs a GEMM, "implicit" runs the GEMM with its B panels packed straight from the image
# (forward only; its gradients run im2col), "indirect" runs the transposed GEMM yᵀ = colsᵀ·Wᵀ reading its A operand
# straight from a zero-padded copy of the image (forward, one group; else as "implicit"), "pointwise" runs a 1×1,
# stride-1, unpadded conv as a GEMM on x itself.
# Forcing one is for tests and experiments; every choice computes the same function.
ALGORITHMS = ("auto", "direct", "im2col", "implicit", "indirect", "pointwise")

# ------------------------------------------------------------------------------------- shared geometry


def pair(value: Any, what: str, positive: bool = True) -> Pair:
    """An int or a 2-sequence of ints as a pair; checked to be > 0 (or >= 0 when ``positive`` is False)."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        out = (int(value), int(value))
    elif isinstance(value, (tuple, list)) and len(value) == 2 and all(
            isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in value):
        out = (int(value[0]), int(value[1]))
    else:
        raise OpError(f"{what} must be an int or a pair of ints, got {value!r}")
    if any(v <= 0 if positive else v < 0 for v in out):
        raise OpError(f"{what} must be {'positive' if positive else 'non-negative'}, got {out}")
    return out


def resolve_padding(padding: Any, size: Pair, kernel: Pair, stride: Pair, dilation: Pair) -> Pads:
    """``padding`` in any accepted form → (top, left, bottom, right); ``"same"`` depends on the input size."""
    if isinstance(padding, str):
        mode = padding.lower()
        if mode == "valid":
            return (0, 0, 0, 0)
        if mode not in ("same", "same_upper", "same_lower"):
            raise OpError(f"padding must be an int, a pair, (top, left, bottom, right), 'valid' or 'same', "
                          f"got {padding!r}")
        begin, end = [], []
        for n, k, s, d in zip(size, kernel, stride, dilation):
            out = -(-n // s)
            total = max((out - 1) * s + (k - 1) * d + 1 - n, 0)
            small, large = total // 2, total - total // 2
            begin.append(large if mode == "same_lower" else small)
            end.append(small if mode == "same_lower" else large)
        return (begin[0], begin[1], end[0], end[1])
    if isinstance(padding, (tuple, list)) and len(padding) == 4:
        if not all(isinstance(p, (int, np.integer)) and not isinstance(p, bool) for p in padding):
            raise OpError(f"padding must hold ints, got {padding!r}")
        pads = tuple(int(p) for p in padding)
        if any(p < 0 for p in pads):
            raise OpError(f"padding must be non-negative, got {pads}")
        return pads  # type: ignore[return-value]
    ph, pw = pair(padding, "padding", positive=False)
    return (ph, pw, ph, pw)


def output_size(size: Pair, kernel: Pair, stride: Pair, dilation: Pair, pads: Pads, ceil_mode: bool,
                what: str) -> Pair:
    """Spatial output size (ONNX/PyTorch rules); ceil mode drops a last window that starts in the end padding."""
    out = []
    for axis, (n, k, s, d) in enumerate(zip(size, kernel, stride, dilation)):
        extent = (k - 1) * d + 1
        span = n + pads[axis] + pads[axis + 2] - extent
        if span < 0:
            raise OpError(f"kernel {kernel[0]}x{kernel[1]} (dilated extent {(kernel[0] - 1) * dilation[0] + 1}x"
                          f"{(kernel[1] - 1) * dilation[1] + 1}) is larger than the padded input "
                          f"{size[0] + pads[0] + pads[2]}x{size[1] + pads[1] + pads[3]} ({what}, padding {pads})")
        o = (-(-span // s) if ceil_mode else span // s) + 1
        if ceil_mode and (o - 1) * s >= n + pads[axis]:
            o -= 1
        out.append(o)
    return (out[0], out[1])


def pad_input(x: np.ndarray, pads: Pads, out: Pair, kernel: Pair, stride: Pair, dilation: Pair,
              fill: float = 0.0) -> np.ndarray:
    """x padded by ``pads`` and, at the end, as far as the last window reaches (ceil mode)."""
    t, left, b, r = pads
    need_h = (out[0] - 1) * stride[0] + (kernel[0] - 1) * dilation[0] + 1
    need_w = (out[1] - 1) * stride[1] + (kernel[1] - 1) * dilation[1] + 1
    b = max(b, need_h - x.shape[2] - t)
    r = max(r, need_w - x.shape[3] - left)
    if not any((t, left, b, r)):
        return x
    return np.pad(x, ((0, 0), (0, 0), (t, b), (left, r)), constant_values=fill)


def window_slices(out: Pair, kernel: Pair, stride: Pair, dilation: Pair) -> list[tuple[int, int, slice, slice]]:
    """For each kernel position (p, q): the strided slices of the padded input that it reads for all outputs."""
    return [(p, q, slice(p * dilation[0], p * dilation[0] + (out[0] - 1) * stride[0] + 1, stride[0]),
             slice(q * dilation[1], q * dilation[1] + (out[1] - 1) * stride[1] + 1, stride[1]))
            for p in range(kernel[0]) for q in range(kernel[1])]


def im2col(xp: np.ndarray, out: Pair, kernel: Pair, stride: Pair, dilation: Pair) -> np.ndarray:
    """cols[n, c, p, q, i, j] = xp[n, c, i·sh + p·dh, j·sw + q·dw]: (N, C, kh, kw, Ho, Wo), contiguous."""
    cols = np.empty(xp.shape[:2] + kernel + out, dtype=xp.dtype)
    for p, q, rows, columns in window_slices(out, kernel, stride, dilation):
        cols[:, :, p, q] = xp[:, :, rows, columns]
    return cols


def col2im(cols: np.ndarray, size: Pair, pads: Pads, stride: Pair, dilation: Pair) -> np.ndarray:
    """The adjoint of ``im2col`` and padding: sum cols (N, C, kh, kw, Ho, Wo) back into the (N, C, H, W) input."""
    n, c, kh, kw, ho, wo = cols.shape
    t, left = pads[0], pads[1]
    hp = max(size[0] + t + pads[2], (ho - 1) * stride[0] + (kh - 1) * dilation[0] + 1)
    wp = max(size[1] + left + pads[3], (wo - 1) * stride[1] + (kw - 1) * dilation[1] + 1)
    out = np.zeros((n, c, hp, wp), dtype=cols.dtype)
    for p, q, rows, columns in window_slices((ho, wo), (kh, kw), stride, dilation):
        out[:, :, rows, columns] += cols[:, :, p, q]
    return out[:, :, t:t + size[0], left:left + size[1]]


def require_rank4(what: str, t: TensorType, layout: str) -> None:
    if t.ndim != 4:
        raise OpError(f"{what} must have rank 4 ({layout}), got shape {t.shape}")


# ---------------------------------------------------------------------------------------------- ops


def _geometry(attrs: Mapping[str, Any], size: Pair, kernel: Pair) -> dict[str, Any]:
    stride = pair(attrs.get("stride", 1), "stride")
    dilation = pair(attrs.get("dilation", 1), "dilation")
    groups = attrs.get("groups", 1)
    if not isinstance(groups, (int, np.integer)) or isinstance(groups, bool) or groups < 1:
        raise OpError(f"groups must be a positive int, got {groups!r}")
    padding = resolve_padding(attrs.get("padding", 0), size, kernel, stride, dilation)
    geometry = {"stride": stride, "padding": padding, "dilation": dilation, "groups": int(groups)}
    algorithm = attrs.get("algorithm", "auto")
    if algorithm not in ALGORITHMS:
        raise OpError(f"algorithm must be one of {', '.join(map(repr, ALGORITHMS))}, got {algorithm!r}")
    if algorithm == "pointwise" and (tuple(kernel) != (1, 1) or stride != (1, 1) or any(padding)):
        raise OpError(f"algorithm='pointwise' computes 1x1 convolutions with stride 1 and no padding (a GEMM on x "
                      f"itself); this one has kernel {tuple(kernel)}, stride {stride}, padding {padding}")
    if algorithm != "auto":  # kept only when forced, so that "auto" graphs print and hash as before
        geometry["algorithm"] = algorithm
    return geometry


def _geom(attrs: Mapping[str, Any]) -> dict[str, Any]:
    """The geometry attributes a gradient op inherits (the forced algorithm too)."""
    return {k: attrs[k] for k in ("stride", "padding", "dilation", "groups", "algorithm") if k in attrs}


def _check_groups(groups: int, x_channels: int, out_channels: int, what: str) -> None:
    if x_channels % groups or out_channels % groups:
        raise OpError(f"groups={groups} must divide the input channels ({x_channels}) and the output channels "
                      f"({out_channels}) ({what})")


def _forward(a: Mapping[str, Any], x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """im2col convolution without bias: y[n,o,i,j] = Σ_{c,p,q} w[o,c,p,q] · xp[n, c, i·sh + p·dh, j·sw + q·dw]."""
    kernel, groups = (w.shape[2], w.shape[3]), a["groups"]
    out = output_size(x.shape[2:], kernel, a["stride"], a["dilation"], a["padding"], False, "conv2d")
    cols = im2col(pad_input(x, a["padding"], out, kernel, a["stride"], a["dilation"]), out, kernel, a["stride"],
                  a["dilation"])
    n, size = x.shape[0], out[0] * out[1]
    y = np.matmul(w.reshape(groups, w.shape[0] // groups, -1), cols.reshape(n, groups, -1, size))  # (N, G, O/G, P)
    return np.ascontiguousarray(y.reshape((n, w.shape[0]) + out), dtype=x.dtype)


def _conv_flops(out_pixels: int, w_shape: tuple[int, ...]) -> int:
    """2 FLOPs per multiply-add: every output pixel of every output channel reads C/groups · kh · kw inputs."""
    return 2 * out_pixels * math.prod(w_shape)


@register
class Conv2d(Op):
    """y[n,o,i,j] = b[o] + Σ_{c,p,q} w[o,c,p,q] · x_pad[n, g·C/G + c, i·sh + p·dh, j·sw + q·dw] (o in group g).

    x (N, C, H, W), w (O, C/groups, kh, kw), optional b (O,). Derivatives: dx = conv2d_backward_input(ḡ, w)
    (a transposed convolution), dw = conv2d_backward_weight(x, ḡ) (a correlation of x with ḡ),
    db = Σ_{n,i,j} ḡ[n,o,i,j].
    """

    name = "conv2d"
    kind = "conv"
    arity = None

    def flops(self, node):
        return _conv_flops(node.shape[0] * node.shape[2] * node.shape[3], node.inputs[1].shape)

    def epilogue_axis(self, node):
        """Written channel by channel: a per-channel bias, scale or activation fuses."""
        return 1

    def normalize(self, attrs, *types):
        if len(types) not in (2, 3):
            raise OpError(f"takes 2 or 3 operands (x, w[, b]), got {len(types)}")
        x, w = types[0], types[1]
        require_rank4("x", x, "N, C, H, W")
        require_rank4("w", w, "O, I, kh, kw")
        return _geometry(attrs, x.shape[2:], w.shape[2:])

    def infer(self, attrs, *types):
        x, w = types[0], types[1]
        dtype = same_dtype(self.name, *types)
        require_float(self.name, *types)
        _check_groups(attrs["groups"], x.shape[1], w.shape[0], f"x {x.shape}, w {w.shape}")
        if x.shape[1] != w.shape[1] * attrs["groups"]:
            raise OpError(f"x has {x.shape[1]} channels (shape {x.shape}) but w of shape {w.shape} (OIHW) expects "
                          f"{w.shape[1] * attrs['groups']}" + (f" (groups={attrs['groups']})"
                                                                 if attrs["groups"] > 1 else ""))
        if len(types) == 3 and types[2].shape != (w.shape[0],):
            raise OpError(f"bias of shape {types[2].shape} does not match w of shape {w.shape}: "
                          f"expected ({w.shape[0]},)")
        out = output_size(x.shape[2:], w.shape[2:], attrs["stride"], attrs["dilation"], attrs["padding"], False,
                          f"x {x.shape}, w {w.shape}")
        return TensorType((x.shape[0], w.shape[0]) + out, dtype)

    def reference(self, attrs, x, w, b=None):
        y = _forward(attrs, x, w)
        if b is not None:
            y += b.reshape(1, -1, 1, 1)
        return y

    def vjp(self, node, g):
        x, w = node.inputs[0], node.inputs[1]
        a = _geom(node.attrs)
        dx = apply("conv2d_backward_input", g, w, input_size=x.shape[2:], **a)
        dw = apply("conv2d_backward_weight", x, g, kernel_size=w.shape[2:], **a)
        return (dx, dw) if len(node.inputs) == 2 else (dx, dw, fn.sum(g, axis=(0, 2, 3)))

    def samples(self, rng):
        r = rng.standard_normal
        return [
            Sample([r((1, 2, 5, 5)), r((3, 2, 3, 3)), r(3)], note="bias, valid"),
            Sample([r((2, 2, 5, 4)), r((2, 2, 3, 2))], {"stride": 2, "padding": 1}, note="stride 2, non-square"),
            Sample([r((1, 1, 6, 6)), r((2, 1, 2, 2))], {"dilation": 2, "padding": (1, 0)}, note="dilation"),
            Sample([r((1, 2, 5, 4)), r((2, 2, 3, 2)), r(2)], {"padding": "same", "stride": (2, 1)}, note="same"),
            Sample([r((1, 2, 4, 4)), r((2, 2, 2, 2))], {"padding": "same"}, note="same, even kernel"),
            Sample([r((1, 1, 4, 5)), r((1, 1, 2, 3))], {"padding": (1, 0, 0, 2), "stride": (1, 2)},
                   note="asymmetric pads"),
            Sample([r((1, 4, 4, 4)), r((2, 2, 2, 2)), r(2)], {"groups": 2, "padding": 1}, note="groups"),
        ]

    def error_cases(self):
        f = "float32"
        x, w = ((1, 3, 5, 5), f), ((4, 3, 3, 3), f)
        return [
            ErrorCase([x, ((4, 3, 7, 7), f)], {}, "kernel 7x7 (dilated extent 7x7) is larger than the padded "
                                                  "input 5x5 (x (1, 3, 5, 5), w (4, 3, 7, 7)"),
            ErrorCase([x, ((4, 3, 3, 3), f)], {"dilation": 3}, "dilated extent 7x7"),
            ErrorCase([x, w], {"stride": -1}, "stride must be positive, got (-1, -1)"),
            ErrorCase([x, w], {"stride": (1, 0)}, "stride must be positive"),
            ErrorCase([x, w], {"dilation": 0}, "dilation must be positive"),
            ErrorCase([x, w], {"padding": -1}, "padding must be non-negative"),
            ErrorCase([x, w], {"padding": "full"}, "'valid' or 'same'"),
            ErrorCase([x, ((4, 2, 3, 3), f)], {}, "x has 3 channels (shape (1, 3, 5, 5)) but w of shape "
                                                  "(4, 2, 3, 3) (OIHW) expects 2"),
            ErrorCase([((3, 5, 5), f), w], {}, "x must have rank 4 (N, C, H, W), got shape (3, 5, 5)"),
            ErrorCase([x, ((4, 3, 3), f)], {}, "w must have rank 4"),
            ErrorCase([x, w, ((3,), f)], {}, "bias of shape (3,) does not match w of shape (4, 3, 3, 3)"),
            ErrorCase([x, w, ((4,), f), ((4,), f)], {}, "takes 2 or 3 operands"),
            ErrorCase([x, ((4, 3, 3, 3), "float64")], {}, "different dtypes"),
            ErrorCase([x, ((4, 1, 3, 3), f)], {"groups": 2}, "groups=2 must divide"),
        ]


# (x shape, w shape, geometry) of the forward convolutions whose gradient ops the contract tests sample
_BACKWARD_CASES: list[tuple[tuple[int, ...], tuple[int, ...], dict[str, Any]]] = [
    ((1, 2, 5, 5), (3, 2, 3, 3), {}),
    ((2, 2, 5, 4), (2, 2, 3, 2), {"stride": 2, "padding": 1}),
    ((1, 1, 6, 6), (2, 1, 2, 2), {"dilation": 2, "padding": (1, 0)}),
    ((1, 2, 5, 4), (2, 2, 3, 2), {"padding": "same", "stride": (2, 1)}),
    ((1, 1, 4, 5), (1, 1, 2, 3), {"padding": (1, 0, 0, 2), "stride": (1, 2)}),
    ((1, 4, 4, 4), (2, 2, 2, 2), {"groups": 2, "padding": 1}),
]


def _out_shape(x: tuple[int, ...], w: tuple[int, ...], attrs: dict[str, Any]) -> tuple[int, ...]:
    a = _geometry(attrs, x[2:], w[2:])
    return (x[0], w[0]) + output_size(x[2:], w[2:], a["stride"], a["dilation"], a["padding"], False, "")


@register
class Conv2dBackwardInput(Op):
    """The transposed convolution dx = convᵀ(ḡ, w): dx[n,c,h,w] = Σ ḡ[n,o,i,j] · w[o,c,p,q] over the (i,j,p,q)
    with h = i·sh + p·dh - top, w = j·sw + q·dw - left (within a group); ``input_size`` = (H, W) of x.

    Linear in both operands: d(ḡ) = conv2d(h̄, w), d(w) = conv2d_backward_weight(h̄, ḡ).
    """

    name = "conv2d_backward_input"
    kind = "conv"
    arity = 2

    def flops(self, node):
        g, w = node.inputs
        return _conv_flops(g.shape[0] * g.shape[2] * g.shape[3], w.shape)

    def normalize(self, attrs, g, w):
        require_rank4("g", g, "N, O, Ho, Wo")
        require_rank4("w", w, "O, I, kh, kw")
        size = pair(attrs.get("input_size"), "input_size")
        return {"input_size": size, **_geometry(attrs, size, w.shape[2:])}

    def infer(self, attrs, g, w):
        dtype = same_dtype(self.name, g, w)
        require_float(self.name, g, w)
        groups, size = attrs["groups"], attrs["input_size"]
        _check_groups(groups, w.shape[1] * groups, w.shape[0], f"w {w.shape}")
        if g.shape[1] != w.shape[0]:
            raise OpError(f"g has {g.shape[1]} channels (shape {g.shape}) but w of shape {w.shape} has "
                          f"{w.shape[0]} output channels")
        out = output_size(size, w.shape[2:], attrs["stride"], attrs["dilation"], attrs["padding"], False,
                          f"input_size {size}, w {w.shape}")
        if g.shape[2:] != out:
            raise OpError(f"g of shape {g.shape} does not match the conv2d output size {out} of an input of size "
                          f"{size} and w {w.shape}")
        return TensorType((g.shape[0], w.shape[1] * groups) + size, dtype)

    def reference(self, attrs, g, w):
        groups, (n, o, ho, wo) = attrs["groups"], g.shape
        wt = w.reshape(groups, o // groups, -1).transpose(0, 2, 1)  # (G, C/G·kh·kw, O/G)
        cols = np.matmul(wt, g.reshape(n, groups, o // groups, ho * wo))  # (N, G, C/G·kh·kw, P)
        cols = cols.reshape((n, w.shape[1] * groups) + w.shape[2:] + (ho, wo))
        dx = col2im(cols, attrs["input_size"], attrs["padding"], attrs["stride"], attrs["dilation"])
        return np.ascontiguousarray(dx, dtype=g.dtype)

    def vjp(self, node, h):
        g, w = node.inputs
        a = _geom(node.attrs)
        return (apply("conv2d", h, w, **a), apply("conv2d_backward_weight", h, g, kernel_size=w.shape[2:], **a))

    def samples(self, rng):
        r = rng.standard_normal
        return [Sample([r(_out_shape(x, w, a)), r(w)], {"input_size": x[2:], **a}) for x, w, a in _BACKWARD_CASES]

    def error_cases(self):
        f = "float32"
        return [
            ErrorCase([((1, 3, 3, 3), f), ((3, 2, 3, 3), f)], {"input_size": (6, 6)},
                      "g of shape (1, 3, 3, 3) does not match the conv2d output size (4, 4)"),
            ErrorCase([((1, 4, 3, 3), f), ((3, 2, 3, 3), f)], {"input_size": (5, 5)}, "g has 4 channels"),
            ErrorCase([((1, 3, 3, 3), f), ((3, 2, 3, 3), f)], {"input_size": (5, 5), "stride": 0},
                      "stride must be positive"),
            ErrorCase([((1, 3, 3, 3), f), ((3, 2, 3, 3), f)], {}, "input_size must be an int or a pair"),
        ]


@register
class Conv2dBackwardWeight(Op):
    """The weight gradient as a correlation: dw[o,c,p,q] = Σ_{n,i,j} ḡ[n,o,i,j] · x_pad[n, c, i·sh + p·dh, j·sw + q·dw]
    (within a group); ``kernel_size`` = (kh, kw).

    Linear in both operands: d(x) = conv2d_backward_input(ḡ, h̄), d(ḡ) = conv2d(x, h̄).
    """

    name = "conv2d_backward_weight"
    kind = "conv"
    arity = 2

    def flops(self, node):
        g = node.inputs[1]
        return _conv_flops(g.shape[0] * g.shape[2] * g.shape[3], node.shape)

    def normalize(self, attrs, x, g):
        require_rank4("x", x, "N, C, H, W")
        require_rank4("g", g, "N, O, Ho, Wo")
        kernel = pair(attrs.get("kernel_size"), "kernel_size")
        return {"kernel_size": kernel, **_geometry(attrs, x.shape[2:], kernel)}

    def infer(self, attrs, x, g):
        dtype = same_dtype(self.name, x, g)
        require_float(self.name, x, g)
        groups, kernel = attrs["groups"], attrs["kernel_size"]
        _check_groups(groups, x.shape[1], g.shape[1], f"x {x.shape}, g {g.shape}")
        if x.shape[0] != g.shape[0]:
            raise OpError(f"x of shape {x.shape} and g of shape {g.shape} have different batch sizes")
        out = output_size(x.shape[2:], kernel, attrs["stride"], attrs["dilation"], attrs["padding"], False,
                          f"x {x.shape}, kernel_size {kernel}")
        if g.shape[2:] != out:
            raise OpError(f"g of shape {g.shape} does not match the conv2d output size {out} of x {x.shape} "
                          f"with kernel_size {kernel}")
        return TensorType((g.shape[1], x.shape[1] // groups) + kernel, dtype)

    def reference(self, attrs, x, g):
        kernel, out, groups, (n, o) = attrs["kernel_size"], g.shape[2:], attrs["groups"], g.shape[:2]
        if g.size == 0:  # no image or no output position: nothing contributes
            return np.zeros((o, x.shape[1] // groups) + kernel, dtype=x.dtype)
        cols = im2col(pad_input(x, attrs["padding"], out, kernel, attrs["stride"], attrs["dilation"]), out, kernel,
                      attrs["stride"], attrs["dilation"])
        cols = cols.reshape(n, groups, -1, out[0] * out[1])  # (N, G, C/G·kh·kw, P)
        dw = np.matmul(g.reshape(n, groups, o // groups, -1), cols.transpose(0, 1, 3, 2)).sum(axis=0)
        return np.ascontiguousarray(dw.reshape((o, x.shape[1] // groups) + kernel), dtype=x.dtype)

    def vjp(self, node, h):
        x, g = node.inputs
        a = _geom(node.attrs)
        return (apply("conv2d_backward_input", g, h, input_size=x.shape[2:], **a), apply("conv2d", x, h, **a))

    def samples(self, rng):
        r = rng.standard_normal
        return [Sample([r(x), r(_out_shape(x, w, a))], {"kernel_size": w[2:], **a}) for x, w, a in _BACKWARD_CASES]

    def error_cases(self):
        f = "float32"
        return [
            ErrorCase([((1, 2, 5, 5), f), ((1, 3, 4, 4), f)], {"kernel_size": 3},
                      "g of shape (1, 3, 4, 4) does not match the conv2d output size (3, 3)"),
            ErrorCase([((1, 2, 5, 5), f), ((2, 3, 3, 3), f)], {"kernel_size": 3}, "different batch sizes"),
            ErrorCase([((1, 2, 5, 5), f), ((1, 3, 3, 3), f)], {"kernel_size": 9}, "larger than the padded input"),
        ]
