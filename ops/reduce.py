"""Reductions over axes: sum, mean, max (``axis`` None, an int or a tuple; ``keepdims``)."""

from __future__ import annotations

import math

import numpy as np

import ops.fn as fn
from graphc.ir import Node, TensorType
from ops.base import ErrorCase, Op, OpError, Sample, normalize_axes
from ops.registry import register


class _Reduce(Op):
    kind = "reduce"
    arity = 1
    noop_if_same_type = True  # no axes, or only extent-1 axes kept

    def flops(self, node):
        return node.inputs[0].size * self.cost

    def normalize(self, attrs, x):
        return {"axis": normalize_axes(attrs.get("axis"), x.ndim), "keepdims": bool(attrs.get("keepdims", False))}

    def infer(self, attrs, x):
        if x.dtype == "bool":
            raise OpError(f"cannot reduce a bool tensor; cast it first ({x})")
        axes, keep = attrs["axis"], attrs["keepdims"]
        shape = tuple(1 if i in axes else d for i, d in enumerate(x.shape) if keep or i not in axes)
        return TensorType(shape, x.dtype)

    def samples(self, rng):
        return [Sample([rng.standard_normal((3, 4))]),
                Sample([rng.standard_normal((2, 3, 4))], {"axis": 1}),
                Sample([rng.standard_normal((2, 3, 4))], {"axis": (0, 2), "keepdims": True}),
                Sample([rng.standard_normal((5,))], {"axis": -1}),
                Sample([rng.standard_normal(())])]

    def error_cases(self):
        return [ErrorCase([((3, 4), "float32")], {"axis": 2}, "out of range"),
                ErrorCase([((3, 4), "float32")], {"axis": (1, -1)}, "repeated")]


def _expand(g: Node, node: Node) -> Node:
    """Bring a reduced gradient back to the input's shape (re-insert reduced axes, then broadcast)."""
    x = node.inputs[0]
    if not node.attrs["keepdims"]:
        kept = tuple(1 if i in node.attrs["axis"] else d for i, d in enumerate(x.shape))
        g = fn.reshape(g, kept)
    return fn.broadcast_to(g, x.shape)


@register
class Sum(_Reduce):
    """y = Σ x over ``axis``;  dx = g broadcast back over the reduced axes."""

    name = "sum"

    def reference(self, attrs, x):
        return np.sum(x, axis=attrs["axis"], keepdims=attrs["keepdims"]).astype(x.dtype)

    def vjp(self, node, g):
        return (_expand(g, node),)


@register
class Mean(_Reduce):
    """y = (1/n) Σ x over ``axis`` (n = number of reduced elements);  dx = g / n broadcast back."""

    name = "mean"

    def infer(self, attrs, x):
        if not x.is_float:
            raise OpError(f"mean needs a floating-point tensor, got {x}")
        return super().infer(attrs, x)

    def reference(self, attrs, x):
        return np.mean(x, axis=attrs["axis"], keepdims=attrs["keepdims"]).astype(x.dtype)

    def vjp(self, node, g):
        x = node.inputs[0]
        count = math.prod([x.shape[a] for a in node.attrs["axis"]])
        return (_expand(fn.div(g, float(max(count, 1))), node),)


@register
class Max(_Reduce):
    """y = max x over ``axis``;  dx = g routed to the maxima (split equally between ties)."""

    name = "max"

    def infer(self, attrs, x):
        if any(x.shape[a] == 0 for a in attrs["axis"]):
            raise OpError(f"max over an empty axis of {x}")
        return super().infer(attrs, x)

    def reference(self, attrs, x):
        return np.max(x, axis=attrs["axis"], keepdims=attrs["keepdims"])

    def vjp(self, node, g):
        x = node.inputs[0]
        hit = fn.cast(fn.equal(x, _expand(node, node)), x.dtype)
        ties = fn.sum(hit, axis=node.attrs["axis"], keepdims=True)
        return (fn.mul(fn.div(hit, ties), _expand(g, node)),)
