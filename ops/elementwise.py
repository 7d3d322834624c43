"""Bases for elementwise (same shape) and broadcasting (NumPy rules) ops.

Concrete ops only supply the math: ``reference``, ``vjp`` and ``scalar``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np

from graphc.ir import TensorType
from ops.base import Op, OpError, Sample, broadcast_shapes, randn, require_float, same_dtype


class Unary(Op):
    """y = f(x), same shape and dtype. ``float_only`` ops reject integer/bool operands; ``bool_ok = False``
    ops (negation, sign) reject bool operands."""

    kind = "elementwise"
    arity = 1
    inplace = True
    float_only: ClassVar[bool] = True
    bool_ok: ClassVar[bool] = True

    def infer(self, attrs: Mapping[str, Any], x: TensorType) -> TensorType:
        if self.float_only:
            require_float(self.name, x)
        if not self.bool_ok:
            reject_bool(self.name, x)
        return x

    def domain(self, rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
        """Sample inputs inside the op's smooth domain (override for log, sqrt, kinks)."""
        return randn(rng, *shape)

    def samples(self, rng: np.random.Generator) -> list[Sample]:
        return [Sample([self.domain(rng, (3, 4))]), Sample([self.domain(rng, ())]),
                Sample([self.domain(rng, (2, 1, 5))])]

    def error_cases(self):
        from ops.base import ErrorCase

        if not self.float_only:
            return [] if self.bool_ok else [ErrorCase([((3,), "bool")], {}, "bool")]
        return [ErrorCase([((3,), "int64")], {}, "floating-point")]


class Binary(Op):
    """z = f(x, y) with NumPy broadcasting; both operands share one dtype."""

    kind = "broadcast"
    arity = 2
    inplace = True
    float_only: ClassVar[bool] = True
    bool_ok: ClassVar[bool] = True

    def infer(self, attrs: Mapping[str, Any], x: TensorType, y: TensorType) -> TensorType:
        dtype = same_dtype(self.name, x, y)
        if self.float_only:
            require_float(self.name, x, y)
        if not self.bool_ok:
            reject_bool(self.name, x, y)
        return TensorType(broadcast_shapes(self.name, x.shape, y.shape), self.result_dtype(dtype))

    def result_dtype(self, dtype: str) -> str:
        return dtype

    def domain(self, rng: np.random.Generator, shape: tuple[int, ...], position: int) -> np.ndarray:
        return randn(rng, *shape)

    def samples(self, rng: np.random.Generator) -> list[Sample]:
        pairs = [((3, 4), (3, 4)), ((2, 3, 4), (4,)), ((3, 1), (1, 5)), ((), (2, 3)), ((2, 1, 3), (4, 1))]
        return [Sample([self.domain(rng, a, 0), self.domain(rng, b, 1)]) for a, b in pairs]

    def error_cases(self):
        from ops.base import ErrorCase

        cases = [ErrorCase([((3, 4), "float32"), ((5,), "float32")], {}, "do not broadcast"),
                 ErrorCase([((3,), "float32"), ((3,), "float64")], {}, "different dtypes")]
        if self.float_only:
            cases.append(ErrorCase([((3,), "int64"), ((3,), "int64")], {}, "floating-point"))
        elif not self.bool_ok:
            cases.append(ErrorCase([((3,), "bool"), ((3,), "bool")], {}, "bool"))
        return cases


def check_same_shape(op: str, *types: TensorType) -> None:
    shapes = {t.shape for t in types}
    if len(shapes) > 1:
        raise OpError(f"operands must have the same shape, got {' and '.join(str(t.shape) for t in types)}")


def reject_bool(op: str, *types: TensorType) -> None:
    for t in types:
        if t.dtype == "bool":
            raise OpError(f"is not defined for bool operands, got {t}; cast to a number first")
