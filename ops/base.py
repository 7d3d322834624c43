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

Facets the compiler reads (so no pass, lowering or runtime module keeps a table of op names):
- ``fusible`` (from ``kind``): may join a fused elementwise group; ``inplace``: may overwrite input 0's buffer;
- ``cost`` and ``flops(node)``: the work model (fusion's kernel budget, ``kernels_info``);
- ``epilogue_axis(node)``: an anchor that applies an elementwise epilogue before its store, and along which axis
  the epilogue's other operands may vary;
- ``is_view(node)``: the value is input 0's bytes read with another shape (a unit-axis reshape);
- ``view_layout(node, offset, strides)``: an op that only moves or selects elements (transpose, slice, reshape)
  maps its input's strided layout to its output's, so a GEMM reads a chain of them in place (:mod:`ops.views`);
- ``pure``, ``commutative``, ``neutral``, ``involution``, ``noop_if_same_type`` and ``simplify(...)``: the
  algebra ``passes.simplify`` may use; ``decomposition(node)``/``decompose(...)``: a rewrite into simpler ops;
- ``status_message(node)``: what a nonzero status word from the node's kernel means.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from graphc.ir import Node, TensorType

KINDS = ("elementwise", "broadcast", "reduce", "matmul", "conv", "pool", "shape", "opaque")
FUSIBLE_KINDS = ("elementwise", "broadcast")

# a simplification: (rule name, the existing node the expression equals, or a smaller expression (op, inputs, attrs))
Rewrite = tuple[str, "Node | tuple[str, tuple[Node, ...], dict[str, Any]]"]


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
    # work per output element, in units of one add/mul (polynomial transcendentals cost ~20)
    cost: ClassVar[int] = 1
    # False: the value is not a function of the inputs alone (dropout's mask): never folded or merged by CSE
    pure: ClassVar[bool] = True
    # f(x, y) == f(y, x) bit for bit (CSE sorts the operands)
    commutative: ClassVar[bool] = False
    # (position, value): an all-``value`` constant operand there leaves the other operand unchanged (x + 0, x·1)
    neutral: ClassVar[tuple[tuple[int, float], ...]] = ()
    # f(f(x)) == x for every x (double negation)
    involution: ClassVar[bool] = False
    # the op returns its input unchanged whenever the result has the input's type (cast to the same dtype,
    # broadcast to the same shape, a reduction over extent-1 axes kept as they are)
    noop_if_same_type: ClassVar[bool] = False

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

    # -- compiler facets ----------------------------------------------------------------------------
    @property
    def fusible(self) -> bool:
        """May join a fused elementwise/broadcast group (one loop computing every member)."""
        return self.kind in FUSIBLE_KINDS

    def flops(self, node: Node) -> int:
        """Floating-point work of computing ``node`` (``cost`` per output element unless overridden; none for a
        shape op, which only moves elements)."""
        return 0 if self.kind == "shape" else node.size * self.cost

    def epilogue_axis(self, node: Node) -> int | None:
        """For an anchor op that can apply an elementwise chain to each value before storing it: the axis along
        which the chain's other operands may vary (None: no epilogue)."""
        return None

    def is_view(self, node: Node) -> bool:
        """True when ``node``'s value is input 0's buffer read with ``node``'s shape (nothing to compute)."""
        return False

    def view_layout(self, node: Node, offset: int, strides: tuple[int, ...]) -> tuple[int, tuple[int, ...]] | None:
        """For an op that only moves or selects elements: the (element offset, strides) of ``node``'s value inside
        the buffer holding input 0 laid out with ``offset``/``strides`` (see :mod:`ops.views`); None otherwise."""
        return None

    def simplify(self, attrs: Mapping[str, Any], inputs: tuple[Node, ...], out: TensorType) -> Rewrite | None:
        """An exact simplification of ``op(inputs)`` (same value and type for every input), or None."""
        if self.noop_if_same_type and len(inputs) == 1 and inputs[0].type == out:
            return "noop", inputs[0]
        if self.involution and inputs[0].op == self.name:
            return f"double_{self.name}", inputs[0].inputs[0]
        for position, value in self.neutral:
            other = inputs[1 - position]
            if other.type == out and constant_equals(inputs[position], value):
                return f"{self.name}_{'zero' if value == 0 else 'one'}", other
        return None

    def decomposition(self, node: Node) -> str | None:
        """A one-line description when ``node`` is better computed as simpler ops (see ``decompose``)."""
        return None

    def decompose(self, node: Node, inputs: tuple[Node, ...], b: Any) -> Node:
        """Build ``node``'s value from ``inputs`` with ``b.emit(op, *inputs, **attrs)``, ``b.const(value, like)``
        and, for the final node (which takes ``node``'s name), ``b.result(op, *inputs, **attrs)``."""
        raise NotImplementedError(f"{self.name}.decompose")

    def status_message(self, node: Node) -> str:
        """What a nonzero status word written by ``node``'s kernel means."""
        return "reported invalid data"

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


def constant_equals(x: Node, value: float) -> bool:
    """True when ``x`` is a constant whose every element equals ``value``."""
    return x.op == "const" and bool(np.all(x.attrs["value"] == value))


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


def as_int(value: Any, what: str) -> int:
    """``value`` as a Python int when it is one (an int or a NumPy integer, not a bool, never a float that would be
    truncated); an :class:`OpError` naming ``what`` otherwise."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)):
        return int(value)
    raise OpError(f"{what} must be an int, got {value!r}")


def normalize_axes(axis: Any, ndim: int, what: str = "axis") -> tuple[int, ...]:
    """``None`` → all axes; an int or a sequence → sorted, non-negative, unique axes (checked)."""
    if axis is None:
        return tuple(range(ndim))
    if isinstance(axis, (int, np.integer)):
        axes: tuple = (axis,)
    elif isinstance(axis, (tuple, list)):
        axes = tuple(axis)
    else:
        raise OpError(f"{what} must be an int or a sequence of ints, got {axis!r}")
    out = []
    for a in axes:
        a = as_int(a, what)
        if not -ndim <= a < ndim:
            raise OpError(f"{what} {a} is out of range for a tensor of rank {ndim}")
        a %= ndim
        if a in out:
            raise OpError(f"{what} {a} repeated")
        out.append(a)
    return tuple(sorted(out))


def normalize_axis(axis: Any, ndim: int) -> int:
    (a,) = normalize_axes(as_int(axis, "axis"), ndim)
    return a


def randn(rng: np.random.Generator, *shape: int, dtype: str = "float64") -> np.ndarray:
    return rng.standard_normal(shape).astype(dtype)


def positive(rng: np.random.Generator, *shape: int, low: float = 0.5, high: float = 2.0) -> np.ndarray:
    return rng.uniform(low, high, shape)


def away_from_zero(rng: np.random.Generator, *shape: int, margin: float = 0.1) -> np.ndarray:
    """Standard normal values pushed at least ``margin`` away from 0 (keeps kinks out of FD checks)."""
    x = rng.standard_normal(shape)
    return np.where(x >= 0, x + margin, x - margin)
