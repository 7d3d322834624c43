"""Shape ops: reshape, transpose, broadcast_to. They move or repeat elements and never change values."""

from __future__ import annotations

import math

import numpy as np

import ops.fn as fn
from graphc.ir import TensorType
from ops.base import ErrorCase, Op, OpError, Sample, as_int
from ops.registry import register
from ops.views import reshape_strides


@register
class Reshape(Op):
    """y = x with a new shape (row-major order kept; one dimension may be -1);  dx = reshape(g, x.shape)."""

    name = "reshape"
    kind = "shape"
    arity = 1
    inplace = True  # y[i] is x[i] in row-major order: y may take over x's buffer, and then nothing is copied

    def normalize(self, attrs, x):
        shape = tuple(as_int(d, "a dimension of the target shape") for d in attrs["shape"])
        unknown = [i for i, d in enumerate(shape) if d == -1]
        if len(unknown) > 1 or any(d < -1 for d in shape):
            raise OpError(f"invalid target shape {shape}: only one dimension may be -1")
        if unknown:
            known = math.prod([d for d in shape if d != -1])
            if known == 0 or x.size % known:
                raise OpError(f"cannot reshape {x.shape} ({x.size} elements) to {shape}")
            shape = tuple(x.size // known if d == -1 else d for d in shape)
        return {"shape": shape}

    def infer(self, attrs, x):
        shape = attrs["shape"]
        if math.prod(shape) != x.size:
            raise OpError(f"cannot reshape {x.shape} ({x.size} elements) to {shape}")
        return TensorType(shape, x.dtype)

    def reference(self, attrs, x):
        return np.reshape(x, attrs["shape"])

    def is_view(self, node):
        """A reshape that only inserts or removes extent-1 axes (a (C,) vector viewed as (C, 1, 1)): fused groups
        read its input buffer with this shape, so nothing is copied."""
        return [d for d in node.shape if d != 1] == [d for d in node.inputs[0].shape if d != 1]

    def view_layout(self, node, offset, strides):
        """NumPy's no-copy reshape (``ops.views.reshape_strides``)."""
        new = reshape_strides(node.inputs[0].shape, strides, node.shape)
        return None if new is None else (offset, new)

    def simplify(self, attrs, inputs, out):
        """reshape(x) to x's own shape is x; reshape(reshape(x)) is one reshape."""
        (x,) = inputs
        if x.shape == out.shape:
            return "reshape", x
        if x.op == self.name:
            return "reshape", (self.name, x.inputs, {"shape": out.shape})
        return None

    def vjp(self, node, g):
        return (fn.reshape(g, node.inputs[0].shape),)

    def samples(self, rng):
        return [Sample([rng.standard_normal((3, 4))], {"shape": (2, 6)}),
                Sample([rng.standard_normal((2, 3, 4))], {"shape": (-1, 4)}),
                Sample([rng.standard_normal((6,))], {"shape": (1, 6, 1)})]

    def error_cases(self):
        return [ErrorCase([((3, 4), "float32")], {"shape": (5, 2)}, "cannot reshape"),
                ErrorCase([((3, 4), "float32")], {"shape": (-1, -1)}, "only one dimension")]


@register
class Transpose(Op):
    """y = x with axes permuted (reversed by default);  dx = transpose(g, inverse permutation)."""

    name = "transpose"
    kind = "shape"
    arity = 1

    def normalize(self, attrs, x):
        axes = attrs.get("axes")
        if axes is None:
            return {"axes": tuple(reversed(range(x.ndim)))}
        axes = tuple(as_int(a, "an axis of the permutation") for a in axes)
        if any(not -x.ndim <= a < x.ndim for a in axes):
            raise OpError(f"axes {tuple(axes)} are out of range for the {x.ndim} axes of {x.shape}")
        perm = tuple(a % x.ndim for a in axes)
        if len(perm) != x.ndim or sorted(perm) != list(range(x.ndim)):
            raise OpError(f"axes {tuple(axes)} are not a permutation of the {x.ndim} axes of {x.shape}")
        return {"axes": perm}

    def infer(self, attrs, x):
        return TensorType(tuple(x.shape[a] for a in attrs["axes"]), x.dtype)

    def reference(self, attrs, x):
        return np.transpose(x, attrs["axes"])

    def view_layout(self, node, offset, strides):
        return offset, tuple(strides[a] for a in node.attrs["axes"])

    def simplify(self, attrs, inputs, out):
        """The identity permutation is x; transpose(transpose(x, p), q) is transpose(x, p∘q); a permutation that
        only moves extent-1 axes keeps the row-major order of the elements: a reshape."""
        (x,), axes = inputs, tuple(attrs["axes"])
        if axes == tuple(range(len(axes))):
            return "transpose", x
        moved = [a for a in axes if x.shape[a] != 1]
        if moved == sorted(moved):
            return "transpose", ("reshape", (x,), {"shape": out.shape})
        if x.op == self.name:
            inner = tuple(x.attrs["axes"])
            return "transpose", (self.name, x.inputs, {"axes": tuple(inner[a] for a in axes)})
        return None

    def vjp(self, node, g):
        return (fn.transpose(g, tuple(np.argsort(node.attrs["axes"]).tolist())),)

    def samples(self, rng):
        return [Sample([rng.standard_normal((3, 4))]),
                Sample([rng.standard_normal((2, 3, 4))], {"axes": (1, 2, 0)})]

    def error_cases(self):
        return [ErrorCase([((3, 4), "float32")], {"axes": (0, 0)}, "not a permutation"),
                ErrorCase([((3, 4), "float32")], {"axes": (0, 5)}, "out of range")]


@register
class BroadcastTo(Op):
    """y = x repeated along broadcast axes (NumPy rules);  dx = g summed over those axes."""

    name = "broadcast_to"
    noop_if_same_type = True
    kind = "broadcast"
    arity = 1

    def normalize(self, attrs, x):
        return {"shape": tuple(as_int(d, "a dimension of the target shape") for d in attrs["shape"])}

    def infer(self, attrs, x):
        shape = attrs["shape"]
        lead = len(shape) - x.ndim
        if lead < 0 or any(d not in (1, shape[lead + i]) for i, d in enumerate(x.shape)):
            raise OpError(f"cannot broadcast {x.shape} to {shape}")
        return TensorType(shape, x.dtype)

    def reference(self, attrs, x):
        return np.broadcast_to(x, attrs["shape"]).copy()

    def vjp(self, node, g):
        return (fn.sum_to(g, node.inputs[0].shape),)

    def scalar(self, b, attrs, x):
        return x  # the kernel's index arithmetic does the broadcasting

    def samples(self, rng):
        return [Sample([rng.standard_normal((3, 1))], {"shape": (2, 3, 4)}),
                Sample([rng.standard_normal(())], {"shape": (5,)})]

    def error_cases(self):
        return [ErrorCase([((3, 2), "float32")], {"shape": (3, 4)}, "cannot broadcast")]


