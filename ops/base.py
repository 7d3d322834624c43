"""The op contract: every op is one subclass of :class:`Op`, registered by name.

Facets (DESIGN §4):
- ``normalize(attrs, *types)`` canonicalizes attributes (defaults, negative axes, pairs) before inference;
- ``infer(attrs, *types) -> TensorType``: raises :class:`OpError` with a message naming the shapes;
- ``reference(attrs, *arrays) -> ndarray``: the semantics, plain NumPy;
- ``vjp(node, g) -> tuple[Node | None, ...]``: the gradient as graph ops; ``None`` means no gradient flows to
  that input (it is constant in it, or not differentiable there). Ops without a VJP do not override it;
- ``kind``: what fusion may do with it;
- ``scalar(b, attrs, *xs)`` for elementwise/broadcast ops: the formula against an abstract scalar builder;
- ``samples(rng)`` and ``error_cases()`` feed the registry-driven contract tests.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from graphc.ir import Node, TensorType

KINDS = ("elementwise", "broadcast", "reduce", "matmul", "conv", "pool", "shape", "opaque")


class OpError(ValueError):
    """Raised by ``normalize``/``infer``; ``ops.apply`` adds the op name and the user's creation site."""


@dataclass
class Sample:
    """A valid call of an op for the contract tests.

    ``inputs`` are concrete arrays; ``grad_inputs`` lists the positions checked against finite differences
    (default: every floating input). ``eps``/``tol`` tune that check for ops with kinks or large curvature.
    """

    inputs: list[np.ndarray]
    attrs: dict[str, Any] = field(default_factory=dict)
    grad_inputs: list[int] | None = None
    note: str = ""


@dataclass
class ErrorCase:
    """An invalid call: ``types`` as (shape, dtype) pairs, and a substring the error message must contain."""

    types: list[tuple[tuple[int, ...], str]]
    attrs: dict[str, Any]
    message: str


class Op:
    """Base class of all ops. Subclasses set ``name``, ``kind``, ``arity`` and override the facets."""

    name: ClassVar[str] = ""
    kind: ClassVar[str] = "opaque"
    arity: ClassVar[int | None] = None  # None: variadic (checked by the op itself)
    # True when the node's output may be computed in place over input 0's buffer
    inplace: ClassVar[bool] = False

    # -- facets --------------------------------------------------------------------------------------
    def normalize(self, attrs: Mapping[str, Any], *types: TensorType) -> dict[str, Any]:
        return dict(attrs)

    def infer(self, attrs: Mapping[str, Any], *types: TensorType) -> TensorType:
        raise NotImplementedError(f"{self.name}.infer")

    def reference(self, attrs: Mapping[str, Any], *xs: np.ndarray) -> np.ndarray:
        raise NotImplementedError(f"{self.name}.reference")

    def vjp(self, node: Node, g: Node) -> tuple[Node | None, ...]:
        raise NotImplementedError(f"{self.name}.vjp")

    def scalar(self, b: Any, attrs: Mapping[str, Any], *xs: Any) -> Any:
        raise NotImplementedError(f"{self.name}.scalar")

    def promote_dtype(self, position: int, value: np.ndarray, peers: tuple[TensorType, ...]) -> str | None:
        """The dtype a Python scalar / NumPy array operand at ``position`` becomes; ``None``: the default rule
        (the tensor operands' dtype). Override for operands with their own dtype (integer class labels)."""
        return None

    def samples(self, rng: np.random.Generator) -> list[Sample]:
        return []

    def error_cases(self) -> list[ErrorCase]:
        return []

    # -- derived facts -------------------------------------------------------------------------------
    @property
    def has_vjp(self) -> bool:
        return type(self).vjp is not Op.vjp

    @property
    def has_scalar(self) -> bool:
        return type(self).scalar is not Op.scalar

    def __repr__(self) -> str:
        return f"<op {self.name} ({self.kind})>"


# ------------------------------------------------------------------------------------ shared helpers


def broadcast_shapes(op: str, *shapes: tuple[int, ...]) -> tuple[int, ...]:
    """NumPy broadcasting of ``shapes``; an :class:`OpError` naming all shapes when they do not broadcast."""
    ndim = max((len(s) for s in shapes), default=0)
    out = []
    for axis in range(ndim):
        dims = {s[axis - ndim + len(s)] for s in shapes if axis - ndim + len(s) >= 0}
        dims.discard(1)
        if len(dims) > 1:
            shown = " and ".join(str(tuple(s)) for s in shapes)
            raise OpError(f"shapes {shown} do not broadcast (axis {axis - ndim}: sizes {sorted(dims)})")
        out.append(dims.pop() if dims else 1)
    return tuple(out)


def same_dtype(op: str, *types: TensorType) -> str:
    dtypes = {t.dtype for t in types}
    if len(dtypes) > 1:
        shown = ", ".join(str(t) for t in types)
        raise OpError(f"operands have different dtypes ({shown}); convert one with gc.cast")
    return types[0].dtype


def require_float(op: str, *types: TensorType) -> None:
    for t in types:
        if not t.is_float:
            raise OpError(f"needs floating-point operands, got {t}")


def normalize_axes(axis: Any, ndim: int, what: str = "axis") -> tuple[int, ...]:
    """``None`` → all axes; an int or a sequence → sorted, non-negative, unique axes (checked)."""
    if axis is None:
        return tuple(range(ndim))
    axes = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
    out = []
    for a in axes:
        a = int(a)
        if not -ndim <= a < ndim:
            raise OpError(f"{what} {a} is out of range for a tensor of rank {ndim}")
        a %= ndim
        if a in out:
            raise OpError(f"{what} {a} repeated")
        out.append(a)
    return tuple(sorted(out))


def normalize_axis(axis: Any, ndim: int) -> int:
    (a,) = normalize_axes(int(axis), ndim)
    return a


def randn(rng: np.random.Generator, *shape: int, dtype: str = "float64") -> np.ndarray:
    return rng.standard_normal(shape).astype(dtype)


def positive(rng: np.random.Generator, *shape: int, low: float = 0.5, high: float = 2.0) -> np.ndarray:
    return rng.uniform(low, high, shape)


def away_from_zero(rng: np.random.Generator, *shape: int, margin: float = 0.1) -> np.ndarray:
    """Standard normal values pushed at least ``margin`` away from 0 (keeps kinks out of FD checks)."""
    x = rng.standard_normal(shape)
    return np.where(x >= 0, x + margin, x - margin)
