"""Op builders: one thin function per op (NumPy-like keyword names), used by users (as ``gc.<name>``), by
Node's operator overloads and by the ops' own VJPs. Semantics and checks live in the op classes.
"""

from __future__ import annotations

from typing import Any

from graphc.ir import Node, creation_site
from ops.registry import apply

Operand = Any  # a Node, a Python scalar or an array (promoted to a constant)


# -- arithmetic ------------------------------------------------------------------------------------------
def add(x: Operand, y: Operand) -> Node:
    """x + y (broadcasting)."""
    return apply("add", x, y)


def sub(x: Operand, y: Operand) -> Node:
    """x - y (broadcasting)."""
    return apply("sub", x, y)


def mul(x: Operand, y: Operand) -> Node:
    """x * y (broadcasting)."""
    return apply("mul", x, y)


def div(x: Operand, y: Operand) -> Node:
    """x / y (broadcasting)."""
    return apply("div", x, y)


def pow(x: Operand, y: Operand) -> Node:  # noqa: A001 - NumPy's name
    """x ** y (broadcasting)."""
    return apply("pow", x, y)


def maximum(x: Operand, y: Operand) -> Node:
    """Elementwise max(x, y)."""
    return apply("maximum", x, y)


def minimum(x: Operand, y: Operand) -> Node:
    """Elementwise min(x, y)."""
    return apply("minimum", x, y)


def neg(x: Node) -> Node:
    return apply("neg", x)


def exp(x: Node) -> Node:
    return apply("exp", x)


def log(x: Node) -> Node:
    return apply("log", x)


def sqrt(x: Node) -> Node:
    return apply("sqrt", x)


def abs(x: Node) -> Node:  # noqa: A001
    return apply("abs", x)


def sign(x: Node) -> Node:
    return apply("sign", x)


def cast(x: Node, dtype: Any) -> Node:
    """x converted to ``dtype`` (float32, float64, int64, bool)."""
    return apply("cast", x, dtype=dtype)


def greater(x: Operand, y: Operand) -> Node:
    """x > y as a bool tensor."""
    return apply("greater", x, y)


def equal(x: Operand, y: Operand) -> Node:
    """x == y as a bool tensor."""
    return apply("equal", x, y)


def where(cond: Node, x: Operand, y: Operand) -> Node:
    """x where cond else y (broadcasting)."""
    return apply("where", cond, x, y)


# -- activations -----------------------------------------------------------------------------------------
def sigmoid(x: Node) -> Node:
    return apply("sigmoid", x)


def tanh(x: Node) -> Node:
    return apply("tanh", x)


def relu(x: Node) -> Node:
    return apply("relu", x)


def leaky_relu(x: Node, alpha: float = 0.01) -> Node:
    return apply("leaky_relu", x, alpha=alpha)


def softmax(x: Node, axis: int = -1) -> Node:
    return apply("softmax", x, axis=axis)


def log_softmax(x: Node, axis: int = -1) -> Node:
    return apply("log_softmax", x, axis=axis)


# -- reductions ------------------------------------------------------------------------------------------
def sum(x: Node, axis: Any = None, keepdims: bool = False) -> Node:  # noqa: A001
    return apply("sum", x, axis=axis, keepdims=keepdims)


def mean(x: Node, axis: Any = None, keepdims: bool = False) -> Node:
    return apply("mean", x, axis=axis, keepdims=keepdims)


def max(x: Node, axis: Any = None, keepdims: bool = False) -> Node:  # noqa: A001
    return apply("max", x, axis=axis, keepdims=keepdims)


# -- linear algebra --------------------------------------------------------------------------------------
def matmul(x: Node, y: Node) -> Node:
    """Matrix product with NumPy semantics for operands of rank >= 2 (leading batch dims broadcast)."""
    return apply("matmul", x, y)


# -- shape -----------------------------------------------------------------------------------------------
def reshape(x: Node, shape: Any) -> Node:
    """Same elements in a new shape (one dimension may be -1)."""
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    return apply("reshape", x, shape=shape)


def transpose(x: Node, axes: Any = None) -> Node:
    """Permute axes (reverse them when ``axes`` is None)."""
    return apply("transpose", x, axes=None if axes is None else tuple(axes))


def broadcast_to(x: Operand, shape: Any) -> Node:
    return apply("broadcast_to", x, shape=tuple(shape))


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


def getitem(x: Node, index: Any) -> Node:
    """x[index] with Python slices and integers."""
    return apply("slice", x, index=_canonical_index(index))


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
        elif isinstance(item, int) and not isinstance(item, bool):
            out.append(("int", item))
        else:
            raise TypeError(f"graphc tensors are indexed by ints and slices, not {type(item).__name__} "
                            f"(at {creation_site()})")
    return tuple(out)


# -- losses ----------------------------------------------------------------------------------------------
def one_hot(labels: Node, depth: int, dtype: Any = "float32") -> Node:
    """Integer class labels (N,) → one-hot rows (N, depth)."""
    return apply("one_hot", labels, depth=depth, dtype=dtype)


def softmax_cross_entropy(logits: Node, labels: Operand, reduction: str = "mean") -> Node:
    """Cross-entropy of softmax(logits) against integer class labels or probability targets."""
    return apply("softmax_cross_entropy", logits, labels, reduction=reduction)


def mse(pred: Node, target: Operand, reduction: str = "mean") -> Node:
    """Mean squared error over all elements."""
    return apply("mse", pred, target, reduction=reduction)

