"""Linear algebra: matmul with NumPy semantics for rank >= 2 (leading batch dimensions broadcast)."""

from __future__ import annotations

import numpy as np

import ops.fn as fn
from graphc.ir import TensorType
from ops.base import ErrorCase, Op, OpError, Sample, broadcast_shapes, require_float, same_dtype
from ops.registry import register


def _swap_last(x):
    axes = tuple(range(x.ndim - 2)) + (x.ndim - 1, x.ndim - 2)
    return fn.transpose(x, axes)


@register
class MatMul(Op):
    """C = A · B, Cᵢⱼ = Σₖ Aᵢₖ Bₖⱼ;  dA = G · Bᵀ, dB = Aᵀ · G (summed over broadcast batch dims)."""

    name = "matmul"
    kind = "matmul"
    arity = 2

    def infer(self, attrs, a, b):
        dtype = same_dtype(self.name, a, b)
        require_float(self.name, a, b)
        if a.ndim < 2 or b.ndim < 2:
            raise OpError(f"operands must have rank >= 2, got shapes {a.shape} and {b.shape} "
                          "(reshape a vector to (1, n) or (n, 1))")
        if a.shape[-1] != b.shape[-2]:
            raise OpError(f"inner dimensions differ: {a.shape} @ {b.shape} "
                          f"({a.shape[-1]} != {b.shape[-2]})")
        batch = broadcast_shapes(self.name, a.shape[:-2], b.shape[:-2])
        return TensorType(batch + (a.shape[-2], b.shape[-1]), dtype)

    def reference(self, attrs, a, b):
        return np.matmul(a, b)

    def flops(self, node):
        return 2 * node.size * node.inputs[0].shape[-1]

    def epilogue_axis(self, node):
        """The GEMM writes C tiles whose columns are the last axis: a bias row (or a scalar) fuses."""
        return node.ndim - 1 if node.type.is_float else None

    def vjp(self, node, g):
        a, b = node.inputs
        return (fn.sum_to(fn.matmul(g, _swap_last(b)), a.shape), fn.sum_to(fn.matmul(_swap_last(a), g), b.shape))

    def samples(self, rng):
        shapes = [((3, 4), (4, 5)), ((1, 7), (7, 1)), ((2, 3, 4), (4, 2)), ((2, 1, 3, 4), (5, 4, 2))]
        return [Sample([rng.standard_normal(a), rng.standard_normal(b)]) for a, b in shapes]

    def error_cases(self):
        return [ErrorCase([((3, 4), "float32"), ((5, 6), "float32")], {}, "(3, 4) @ (5, 6)"),
                ErrorCase([((4,), "float32"), ((4, 2), "float32")], {}, "rank >= 2"),
                ErrorCase([((2, 3, 4), "float32"), ((3, 4, 2), "float32")], {}, "do not broadcast")]
