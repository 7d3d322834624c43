"""Op builders: one thin function per op (NumPy-like keyword names), used by users (as ``gc.<name>``), by
Node's operator overloads and by the ops' own VJPs. Semantics and checks live in the op classes.

Every builder takes ``name=``: the result's node name (unique in its graph; prefixed by the enclosing
``gc.name_scope``), shown in errors, dumps, renders and test failures; without it a unique ``<op>_<k>`` is made.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from graphc.ir import GraphcError, Node, ShapeError, TensorType, creation_site
from ops.base import OpError
from ops.random import STEP_PARAM
from ops.registry import apply, get_op

Operand = Any  # a Node, a Python scalar or an array (promoted to a constant)


# -- arithmetic ------------------------------------------------------------------------------------------
def add(x: Operand, y: Operand, *, name: str | None = None) -> Node:
    """x + y (broadcasting)."""
    return apply("add", x, y, name=name)


def sub(x: Operand, y: Operand, *, name: str | None = None) -> Node:
    """x - y (broadcasting)."""
    return apply("sub", x, y, name=name)


def mul(x: Operand, y: Operand, *, name: str | None = None) -> Node:
    """x * y (broadcasting)."""
    return apply("mul", x, y, name=name)


def div(x: Operand, y: Operand, *, name: str | None = None) -> Node:
    """x / y (broadcasting)."""
    return apply("div", x, y, name=name)


def pow(x: Operand, y: Operand, *, name: str | None = None) -> Node:  # noqa: A001 - NumPy's name
    """x ** y (broadcasting)."""
    return apply("pow", x, y, name=name)


def maximum(x: Operand, y: Operand, *, name: str | None = None) -> Node:
    """Elementwise max(x, y)."""
    return apply("maximum", x, y, name=name)


def minimum(x: Operand, y: Operand, *, name: str | None = None) -> Node:
    """Elementwise min(x, y)."""
    return apply("minimum", x, y, name=name)


def neg(x: Node, *, name: str | None = None) -> Node:
    return apply("neg", x, name=name)


def exp(x: Node, *, name: str | None = None) -> Node:
    return apply("exp", x, name=name)


def log(x: Node, *, name: str | None = None) -> Node:
    return apply("log", x, name=name)


def sqrt(x: Node, *, name: str | None = None) -> Node:
    return apply("sqrt", x, name=name)


def abs(x: Node, *, name: str | None = None) -> Node:  # noqa: A001
    return apply("abs", x, name=name)


def sign(x: Node, *, name: str | None = None) -> Node:
    return apply("sign", x, name=name)


def cast(x: Node, dtype: Any, *, name: str | None = None) -> Node:
    """x converted to ``dtype`` (float32, float64, int64, bool)."""
    return apply("cast", x, dtype=dtype, name=name)


def greater(x: Operand, y: Operand, *, name: str | None = None) -> Node:
    """x > y as a bool tensor."""
    return apply("greater", x, y, name=name)


def equal(x: Operand, y: Operand, *, name: str | None = None) -> Node:
    """x == y as a bool tensor."""
    return apply("equal", x, y, name=name)


def where(cond: Node, x: Operand, y: Operand, *, name: str | None = None) -> Node:
    """x where cond else y (broadcasting)."""
    return apply("where", cond, x, y, name=name)


# -- activations -----------------------------------------------------------------------------------------
def sigmoid(x: Node, *, name: str | None = None) -> Node:
    return apply("sigmoid", x, name=name)


def tanh(x: Node, *, name: str | None = None) -> Node:
    return apply("tanh", x, name=name)


def relu(x: Node, *, name: str | None = None) -> Node:
    return apply("relu", x, name=name)


def leaky_relu(x: Node, alpha: float = 0.01, *, name: str | None = None) -> Node:
    return apply("leaky_relu", x, alpha=alpha, name=name)


def softmax(x: Node, axis: int = -1, *, name: str | None = None) -> Node:
    return apply("softmax", x, axis=axis, name=name)


def log_softmax(x: Node, axis: int = -1, *, name: str | None = None) -> Node:
    return apply("log_softmax", x, axis=axis, name=name)


# -- reductions ------------------------------------------------------------------------------------------
def sum(x: Node, axis: Any = None, keepdims: bool = False, *, name: str | None = None) -> Node:  # noqa: A001
    return apply("sum", x, axis=axis, keepdims=keepdims, name=name)


def mean(x: Node, axis: Any = None, keepdims: bool = False, *, name: str | None = None) -> Node:
    return apply("mean", x, axis=axis, keepdims=keepdims, name=name)


def max(x: Node, axis: Any = None, keepdims: bool = False, *, name: str | None = None) -> Node:  # noqa: A001
    return apply("max", x, axis=axis, keepdims=keepdims, name=name)


# -- linear algebra --------------------------------------------------------------------------------------
def matmul(x: Node, y: Node, *, name: str | None = None) -> Node:
    """Matrix product with NumPy semantics for operands of rank >= 2 (leading batch dims broadcast)."""
    return apply("matmul", x, y, name=name)


# -- convolution and pooling (NCHW activations, OIHW weights) ---------------------------------------------
def conv2d(x: Node, w: Node, b: Operand = None, stride: Any = 1, padding: Any = 0, dilation: Any = 1,
           groups: int = 1, algorithm: str = "auto", *, name: str | None = None) -> Node:
    """2-D convolution (cross-correlation, as PyTorch and ONNX) of x (N, C, H, W) with w (O, C/groups, kh, kw),
    plus the optional bias b (O,). ``stride``/``dilation``: an int or a pair (h, w). ``padding``: an int, a pair
    (ph, pw), an explicit (top, left, bottom, right) 4-tuple (ONNX ``pads`` order), ``"valid"`` (none) or
    ``"same"`` (output size ceil(in / stride), the odd extra padding at the end like ONNX SAME_UPPER;
    ``"same_lower"`` puts it at the start). ``algorithm``: how the llvm backend computes it — ``"auto"`` (chosen
    per layer; ``gc.compile(..., tune=True)`` measures), ``"direct"`` (window sums), ``"im2col"`` (columns + GEMM),
    ``"implicit"`` (a GEMM packing its operand from the image) or ``"pointwise"`` (1×1, stride 1, no padding: a
    GEMM on x itself); all compute the same values."""
    geometry = {"stride": stride, "padding": padding, "dilation": dilation, "groups": groups, "algorithm": algorithm,
                "name": name}
    return apply("conv2d", x, w, **geometry) if b is None else apply("conv2d", x, w, b, **geometry)


def max_pool2d(x: Node, kernel_size: Any, stride: Any = None, padding: Any = 0, ceil_mode: bool = False,
               dilation: Any = 1, *, name: str | None = None) -> Node:
    """Max over windows of x (N, C, H, W). ``kernel_size``/``stride``/``dilation``: an int or a pair (stride
    defaults to the kernel size); ``padding`` as for conv2d (padded with -inf); ``ceil_mode`` rounds the output
    size up (a last window must start inside the input or the start padding)."""
    return apply("max_pool2d", x, kernel_size=kernel_size, stride=stride, padding=padding, ceil_mode=ceil_mode,
                 dilation=dilation, name=name)


def avg_pool2d(x: Node, kernel_size: Any, stride: Any = None, padding: Any = 0, ceil_mode: bool = False,
               count_include_pad: bool = False, dilation: Any = 1, *, name: str | None = None) -> Node:
    """Mean over windows of x (N, C, H, W), arguments as max_pool2d (zero padding). The divisor counts the window
    positions inside the input, or inside the padded input with ``count_include_pad`` (never the positions that
    only ceil_mode adds, as PyTorch)."""
    return apply("avg_pool2d", x, kernel_size=kernel_size, stride=stride, padding=padding, ceil_mode=ceil_mode,
                 count_include_pad=count_include_pad, dilation=dilation, name=name)


def global_avg_pool2d(x: Node, *, name: str | None = None) -> Node:
    """Mean over the spatial axes of x (N, C, H, W) → (N, C, 1, 1) (any rank >= 3: every axis after C)."""
    return apply("global_avg_pool2d", x, name=name)


# -- shape -----------------------------------------------------------------------------------------------
def reshape(x: Node, shape: Any, *, name: str | None = None) -> Node:
    """Same elements in a new shape (one dimension may be -1)."""
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    return apply("reshape", x, shape=shape, name=name)


def transpose(x: Node, axes: Any = None, *, name: str | None = None) -> Node:
    """Permute axes (reverse them when ``axes`` is None)."""
    return apply("transpose", x, axes=None if axes is None else tuple(axes), name=name)


def broadcast_to(x: Operand, shape: Any, *, name: str | None = None) -> Node:
    return apply("broadcast_to", x, shape=tuple(shape), name=name)


def sum_to(x: Node, shape: tuple[int, ...]) -> Node:
    """Sum ``x`` down to ``shape`` (the inverse of broadcasting ``shape`` to ``x.shape``)."""
    shape = tuple(shape)
    if x.shape == shape:
        return x
    lead = x.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(
        lead + i for i, d in enumerate(shape) if d == 1 and x.shape[lead + i] != 1
    )
    reduced = sum(x, axis=axes, keepdims=True) if axes else x
    return reshape(reduced, shape) if reduced.shape != shape else reduced


def getitem(x: Node, index: Any, *, name: str | None = None) -> Node:
    """x[index] with Python slices and integers."""
    return apply("slice", x, index=_canonical_index(index), name=name)


def _canonical_index(index: Any) -> tuple:
    if not isinstance(index, tuple):
        index = (index,)
    out = []
    for item in index:
        if isinstance(item, slice):
            out.append(("slice", item.start, item.stop, item.step))
        elif item is Ellipsis:
            out.append(("ellipsis",))
        elif item is None:
            out.append(("newaxis",))
        elif isinstance(item, (int, np.integer)) and not isinstance(item, (bool, np.bool_)):
            out.append(("int", int(item)))
        else:
            raise ShapeError(f"graphc tensors are indexed by ints, slices, None and Ellipsis, not "
                             f"{type(item).__name__}\n  at {creation_site()}")
    return tuple(out)


# -- losses ----------------------------------------------------------------------------------------------
def one_hot(labels: Node, depth: int, dtype: Any = "float32", *, name: str | None = None) -> Node:
    """Integer class labels (N,) → one-hot rows (N, depth)."""
    return apply("one_hot", labels, depth=depth, dtype=dtype, name=name)


def softmax_cross_entropy(logits: Node, labels: Operand, reduction: str = "mean",
                          ignore_index: int | None = None, *, name: str | None = None) -> Node:
    """Cross-entropy of softmax(logits) (classes on axis 1: (N, C) or (N, C, d1, ...)) against integer class
    labels or probability targets; labels equal to ``ignore_index`` contribute nothing."""
    return apply("softmax_cross_entropy", logits, labels, reduction=reduction, ignore_index=ignore_index, name=name)


def mse(pred: Node, target: Operand, reduction: str = "mean", *, name: str | None = None) -> Node:
    """Mean squared error over all elements."""
    return apply("mse", pred, target, reduction=reduction, name=name)


def mae(pred: Node, target: Operand, reduction: str = "mean", *, name: str | None = None) -> Node:
    """Mean absolute error over all elements."""
    return apply("mae", pred, target, reduction=reduction, name=name)


def binary_cross_entropy(probs: Node, targets: Operand, reduction: str = "mean", *, name: str | None = None) -> Node:
    """-(t log p + (1-t) log(1-p)) per element (logs clamped at -100), reduced over all elements."""
    return apply("binary_cross_entropy", probs, targets, reduction=reduction, name=name)


def sigmoid_binary_cross_entropy(logits: Node, targets: Operand, reduction: str = "mean", *,
                                 name: str | None = None) -> Node:
    """binary_cross_entropy(sigmoid(logits), targets) in the stable form max(z,0) - z·t + log(1+e^(-|z|))."""
    return apply("sigmoid_binary_cross_entropy", logits, targets, reduction=reduction, name=name)


# -- more activations, clip --------------------------------------------------------------------------------
def elu(x: Node, alpha: float = 1.0, *, name: str | None = None) -> Node:
    """x for x > 0, alpha·(eˣ - 1) otherwise."""
    return apply("elu", x, alpha=alpha, name=name)


def prelu(x: Node, slope: Operand, *, name: str | None = None) -> Node:
    """x for x > 0, slope·x otherwise; a (C,) slope applies per channel (axis 1) of an (N, C, ...) input."""
    if isinstance(slope, Node) and slope.ndim == 1 and x.ndim > 2 and slope.shape[0] == x.shape[1]:
        slope = reshape(slope, (slope.shape[0],) + (1,) * (x.ndim - 2))
    return apply("prelu", x, slope, name=name)


def softplus(x: Node, *, name: str | None = None) -> Node:
    """log(1 + eˣ), computed stably."""
    return apply("softplus", x, name=name)


def gelu(x: Node, approximate: str = "tanh", *, name: str | None = None) -> Node:
    """GELU: ``approximate="tanh"`` ½x(1 + tanh(√(2/π)(x + 0.044715x³))); ``"none"`` the exact ½x(1 + erf(x/√2))."""
    return apply("gelu", x, approximate=approximate, name=name)


def hard_sigmoid(x: Node, alpha: float = 1 / 6, beta: float = 0.5, *, name: str | None = None) -> Node:
    """max(0, min(1, αx + β)); the defaults are PyTorch's hardsigmoid (relu6(x + 3)/6)."""
    return apply("hard_sigmoid", x, alpha=alpha, beta=beta, name=name)


def hard_swish(x: Node, *, name: str | None = None) -> Node:
    """x · max(0, min(1, x/6 + ½)) (MobileNet-v3's activation; PyTorch's hardswish)."""
    return apply("hard_swish", x, name=name)


def clip(x: Node, lo: float | None = None, hi: float | None = None, *, name: str | None = None) -> Node:
    """min(max(x, lo), hi); either bound may be None."""
    return apply("clip", x, lo=lo, hi=hi, name=name)


# -- indexing --------------------------------------------------------------------------------------------
def flatten(x: Node, start_axis: int = 1, *, name: str | None = None) -> Node:
    """x reshaped to x.shape[:start_axis] + (product of the remaining dims,) (PyTorch's ``flatten(start_dim)``)."""
    if not isinstance(x, Node):
        raise ShapeError(f"flatten: x must be a graphc tensor, got {type(x).__name__}\n  at {creation_site()}")
    if x.ndim == 0:
        return reshape(x, (1,), name=name)
    if not -x.ndim <= int(start_axis) < x.ndim:
        raise ShapeError(f"flatten({x.type}): start_axis {start_axis} is out of range for a tensor of rank "
                         f"{x.ndim}\n  at {creation_site()}")
    a = int(start_axis) % x.ndim
    rest = math.prod(x.shape[a:])
    return reshape(x, x.shape[:a] + (rest,), name=name)


def check_index(indices: Node, depth: int, negative: bool = False, ignore: int | None = None, *,
                name: str | None = None) -> Node:
    """``indices`` unchanged, checked when the program runs: each in [0, depth), or [-depth, depth) with
    ``negative``, or equal to ``ignore``; anything else is an error naming this line (not a silent zero)."""
    return apply("check_index", indices, depth=depth, negative=negative, ignore=ignore, name=name)


def concat(xs: Any, axis: int = 0, *, name: str | None = None) -> Node:
    """Concatenation of the tensors ``xs`` along ``axis``."""
    return apply("concat", *xs, axis=axis, name=name)


def pad(x: Node, pads: Any, value: float = 0.0, *, name: str | None = None) -> Node:
    """Constant padding; ``pads`` an int (every side of every axis) or one (before, after) pair per axis."""
    return apply("pad", x, pads=pads, value=value, name=name)


# -- normalization, dropout ------------------------------------------------------------------------------
def batch_norm(x: Node, gamma: Node, beta: Node, running_mean: Node, running_var: Node, training: bool,
               momentum: float = 0.1, eps: float = 1e-5, *, name: str | None = None) -> Node:
    """Batch normalization per channel (axis 1) of x (N, C) or (N, C, H, W). Training: batch statistics, and
    the running statistics (params) are updated in place by any program computing the result, PyTorch-style:
    running ← (1 - momentum)·running + momentum·batch (unbiased variance). Inference: running statistics.

    The updates are registered as ``graph.implicit_updates[y] = ((running_mean, new_mean), (running_var,
    new_var))``: every program computing ``y`` writes them in place."""
    y = apply("batch_norm", x, gamma, beta, running_mean, running_var, training=training, momentum=momentum,
              eps=eps, name=name)
    if not training:
        return y
    for what, stat in (("running_mean", running_mean), ("running_var", running_var)):
        if stat.op != "param":
            raise GraphcError(f"batch_norm: in training, {what} must be a param (state the program updates in "
                              f"place), got a {stat.op} node {stat.name!r} created at {stat.site}")
    m = y.attrs["momentum"]
    axes = (0,) + tuple(range(2, x.ndim))
    count = x.size // x.shape[1]
    batch_mean = mean(x, axis=axes, keepdims=True)
    centered = sub(x, batch_mean)
    unbiased_var = div(sum(mul(centered, centered), axis=axes), float(count - 1))
    new_mean = add(mul(running_mean, 1.0 - m), mul(reshape(batch_mean, (x.shape[1],)), m))
    new_var = add(mul(running_var, 1.0 - m), mul(unbiased_var, m))
    x.graph.implicit_updates[y] = ((running_mean, new_mean), (running_var, new_var))
    return y


def dropout(x: Node, rate: float, training: bool, seed: int | None = None, *, name: str | None = None) -> Node:
    """Inverted dropout: zero each element with probability ``rate``, scale the rest by 1/(1 - rate); identity
    when not training. The mask is a hash of (seed, step, element index); the step is a graph counter that every
    program call increments (an implicit update on the output). ``seed=None``: derived from the node's position in
    the graph (deterministic for a given model construction, different for each dropout layer). ``name`` names
    the dropout node (when not training there is none: the result is ``x`` itself)."""
    if not isinstance(x, Node):
        raise ShapeError(f"dropout: x must be a graphc tensor, got {type(x).__name__}\n  at {creation_site()}")
    if seed is None:
        seed = len(x.graph.nodes)
    if not training:  # identity; the attributes are still checked so a bad rate fails at the user's line
        try:
            get_op("dropout").normalize({"rate": rate, "seed": seed}, x.type, TensorType((), "int64"))
        except OpError as err:
            raise ShapeError(f"dropout({x.type}): {err}\n  at {creation_site()}") from None
        return x
    step, next_step = _step_counter(x.graph)
    y = apply("dropout", x, step, rate=rate, seed=seed, training=True, name=name)
    x.graph.implicit_updates[y] = ((step, next_step),)
    return y


def _step_counter(graph: Any) -> tuple[Node, Node]:
    """The graph's shared dropout step counter param and its ``step + 1`` node (created on first use)."""
    step = graph.params.get(STEP_PARAM)
    if step is None:
        step = graph.param(STEP_PARAM, np.int64(0), dtype="int64", trainable=False)
    for pairs in graph.implicit_updates.values():
        for param, value in pairs:
            if param is step:
                return step, value
    return step, apply("add", step, np.int64(1))


# the public builders: ``graphc`` re-exports exactly these as ``gc.<name>`` (a new op's builder joins by its name here)
__all__ = [
    "abs", "add", "avg_pool2d", "batch_norm", "binary_cross_entropy", "broadcast_to", "cast", "clip", "concat",
    "conv2d", "div", "dropout", "elu", "equal", "erf", "exp", "flatten", "gelu", "global_avg_pool2d", "greater",
    "hard_sigmoid", "hard_swish", "leaky_relu", "log", "log_softmax", "mae", "matmul", "max", "max_pool2d",
    "maximum", "mean", "minimum", "mod", "mse", "mul", "neg", "one_hot", "pad", "pow", "prelu", "relu", "reshape",
    "sigmoid", "sigmoid_binary_cross_entropy", "sign", "softmax", "softmax_cross_entropy", "softplus", "sqrt", "sub",
    "sum", "tanh", "transpose", "where",
]


# -- special functions (ops/special.py) ------------------------------------------------------------------
def erf(x: Node, *, name: str | None = None) -> Node:
    """The error function erf x = 2/√π ∫₀ˣ e^(−t²) dt."""
    return apply("erf", x, name=name)


# -- remainder (ops/mod.py) ------------------------------------------------------------------------------
def mod(x: Operand, y: Operand, fmod: bool = False, *, name: str | None = None) -> Node:
    """x mod y (broadcasting): the sign of y (``np.mod``, Python's ``%``), or with ``fmod=True`` the sign of x
    (``np.fmod``, C's fmod); int64 x mod 0 = 0, float x mod 0 = NaN."""
    return apply("mod", x, y, fmod=fmod, name=name)


# -- layer normalization (ops/norm.py) -------------------------------------------------------------------
def layer_norm(x: Node, scale: Operand, bias: Operand = None, axis: int = -1, eps: float = 1e-5, *,
               name: str | None = None) -> Node:
    """Layer normalization over the axes [axis, ndim) of x (ONNX LayerNormalization): per row
    y = (x − μ)/√(σ² + ε)·scale + bias with μ, σ² the mean and biased variance over those axes; ``scale`` and
    ``bias`` broadcast over the normalized axes. One kernel on the llvm backend."""
    inputs = (x, scale) if bias is None else (x, scale, bias)
    return apply("layer_norm", *inputs, axis=axis, eps=eps, name=name)


__all__ += ["layer_norm"]
