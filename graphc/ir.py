"""The graph IR: tensor types, immutable single-output nodes, and the graph that owns them.

No math lives here. Operator overloads on :class:`Node` delegate to the op builders that the ``ops`` package
installs with :func:`set_tensor_api` (so this module never imports a higher layer).
"""

from __future__ import annotations

import contextlib
import math
import threading
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import numpy as np

from graphc.errors import (  # noqa: F401  (the IR's errors: every layer imports them from here)
    FeedError,
    GradientError,
    GraphcError,
    ShapeError,
    creation_site,
    user_site,
)

DTYPES = ("float32", "float64", "int64", "bool")
FLOAT_DTYPES = ("float32", "float64")
LEAF_OPS = ("input", "param", "const")


# ---------------------------------------------------------------------------------------------- types


MAX_TENSOR_BYTES = 1 << 40  # 1 TiB: the largest tensor (and the largest dimension, in elements) graphc accepts


@dataclass(frozen=True)
class TensorType:
    """A static shape and a dtype name (one of ``DTYPES``).

    Sizes are exact Python integers, never wrapped: a tensor over ``MAX_TENSOR_BYTES`` (or a dimension over that
    many elements, even in an empty tensor) is a :class:`ShapeError`, so every element offset native code computes
    fits in 64 bits with room to spare."""

    shape: tuple[int, ...]
    dtype: str = "float32"

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES:
            raise ShapeError(f"unsupported dtype {self.dtype!r}; graphc supports {', '.join(DTYPES)}")
        shape = check_shape(self.shape)
        object.__setattr__(self, "shape", shape)
        size = math.prod(shape)
        nbytes = size * np.dtype(self.dtype).itemsize
        if nbytes > MAX_TENSOR_BYTES or any(d > MAX_TENSOR_BYTES for d in shape):
            raise ShapeError(f"a {self.dtype} tensor of shape {shape} ({size} elements, {nbytes} bytes) is larger "
                             f"than graphc's limit of {MAX_TENSOR_BYTES} bytes (1 TiB) per tensor")
        object.__setattr__(self, "_size", size)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return self._size  # type: ignore[attr-defined]

    @property
    def np_dtype(self) -> np.dtype:
        return np.dtype(self.dtype)

    @property
    def nbytes(self) -> int:
        return self.size * self.np_dtype.itemsize

    @property
    def is_float(self) -> bool:
        return self.dtype in FLOAT_DTYPES

    def __str__(self) -> str:
        return f"{self.dtype}{list(self.shape)}"


def check_shape(shape: Any) -> tuple[int, ...]:
    """``shape`` as a tuple of non-negative Python ints; a :class:`ShapeError` for anything else (2.5, "34", -1)."""
    if isinstance(shape, (str, bytes)) or not hasattr(shape, "__iter__") or isinstance(shape, Node):
        raise ShapeError(f"a shape must be a tuple of ints, got {shape!r}")
    shape = tuple(shape)
    for d in shape:
        if isinstance(d, (bool, np.bool_)) or not isinstance(d, (int, np.integer)):
            raise ShapeError(f"shape {tuple(shape)!r} has a dimension {d!r} that is not an int")
        if d < 0:
            raise ShapeError(f"negative dimension in shape {tuple(int(x) for x in shape)}")
    return tuple(int(d) for d in shape)


def dtype_name(dtype: Any) -> str:
    """Canonical dtype name for a numpy dtype, a type or a string; raises for unsupported ones."""
    try:
        name = np.dtype(dtype).name
    except TypeError:
        raise ShapeError(f"unknown dtype {dtype!r}; graphc supports {', '.join(DTYPES)}") from None
    if name not in DTYPES:
        raise ShapeError(f"unsupported dtype {name!r}; graphc supports {', '.join(DTYPES)}")
    return name


# ---------------------------------------------------------------------------------------------- attrs


class Attrs(Mapping[str, Any]):
    """An immutable attribute mapping. ``key()`` gives a hashable identity (arrays by value)."""

    __slots__ = ("_items",)

    def __init__(self, items: Mapping[str, Any] | None = None) -> None:
        object.__setattr__(self, "_items", dict(items or {}))

    def __getitem__(self, key: str) -> Any:
        return self._items[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __setattr__(self, key: str, value: Any) -> None:
        raise AttributeError("Attrs are immutable")

    def __delattr__(self, key: str) -> None:
        raise AttributeError("Attrs are immutable")

    def replace(self, **changes: Any) -> Attrs:
        return Attrs({**self._items, **changes})

    def key(self) -> tuple:
        def freeze(v: Any) -> Any:
            if isinstance(v, np.ndarray):
                return ("ndarray", v.dtype.str, v.shape, v.tobytes())
            if isinstance(v, (list, tuple)):
                return tuple(freeze(x) for x in v)
            return v

        return tuple(sorted((k, freeze(v)) for k, v in self._items.items()))

    def __repr__(self) -> str:
        shown = {k: ("<array>" if isinstance(v, np.ndarray) else v) for k, v in self._items.items()}
        return f"Attrs({shown})"


# ---------------------------------------------------------------------------------------------- nodes

_tensor_api: Any = None


def set_tensor_api(api: Any) -> None:
    """Install the module whose functions implement Node's operators (done by ``ops`` on import)."""
    global _tensor_api
    _tensor_api = api


def _api() -> Any:
    if _tensor_api is None:
        raise GraphcError("tensor operators need the op set: import graphc (or ops) first")
    return _tensor_api


class Node:
    """One value of the graph: the single output of ``op`` applied to ``inputs`` with ``attrs``.

    Nodes are immutable. ``site`` is the user's ``file:line`` where the node was created; ``backward`` is True
    for nodes that autodiff created.
    """

    __slots__ = ("op", "inputs", "attrs", "type", "name", "site", "graph", "id", "backward", "__weakref__")

    op: str
    inputs: tuple[Node, ...]
    attrs: Attrs
    type: TensorType
    name: str
    site: str
    graph: Graph
    id: int
    backward: bool

    def __init__(self, graph: Graph, op: str, inputs: tuple[Node, ...], attrs: Attrs, type: TensorType,
                 name: str, site: str, id: int, backward: bool) -> None:
        for key, value in (("graph", graph), ("op", op), ("inputs", inputs), ("attrs", attrs), ("type", type),
                           ("name", name), ("site", site), ("id", id), ("backward", backward)):
            object.__setattr__(self, key, value)

    # NumPy must not treat a node as an object scalar: ``array * node`` defers to ``Node.__rmul__``
    __array_ufunc__ = None

    def __setattr__(self, key: str, value: Any) -> None:
        raise AttributeError("graphc nodes are immutable; build a new node instead")

    def __delattr__(self, key: str) -> None:
        raise AttributeError("graphc nodes are immutable; build a new node instead")

    def __iter__(self) -> Iterator[Node]:
        raise TypeError(f"a graphc tensor is symbolic and cannot be iterated: {self!r}")

    def __hash__(self) -> int:
        return object.__hash__(self)

    def __eq__(self, other: object) -> bool:
        return self is other

    def __bool__(self) -> bool:
        raise GraphcError(f"a graphc tensor has no truth value (it is symbolic): {self!r}")

    def __repr__(self) -> str:
        return f"Tensor({self.name!r}, op={self.op}, {self.type}, at {self.site})"

    # -- type facts
    @property
    def shape(self) -> tuple[int, ...]:
        return self.type.shape

    @property
    def dtype(self) -> str:
        return self.type.dtype

    @property
    def ndim(self) -> int:
        return self.type.ndim

    @property
    def size(self) -> int:
        return self.type.size

    @property
    def is_leaf(self) -> bool:
        return self.op in LEAF_OPS

    # -- operators (delegated to the op builders)
    def __add__(self, other: Any) -> Node: return _api().add(self, other)
    def __radd__(self, other: Any) -> Node: return _api().add(other, self)
    def __sub__(self, other: Any) -> Node: return _api().sub(self, other)
    def __rsub__(self, other: Any) -> Node: return _api().sub(other, self)
    def __mul__(self, other: Any) -> Node: return _api().mul(self, other)
    def __rmul__(self, other: Any) -> Node: return _api().mul(other, self)
    def __truediv__(self, other: Any) -> Node: return _api().div(self, other)
    def __rtruediv__(self, other: Any) -> Node: return _api().div(other, self)
    def __matmul__(self, other: Any) -> Node: return _api().matmul(self, other)
    def __rmatmul__(self, other: Any) -> Node: return _api().matmul(other, self)
    def __pow__(self, other: Any) -> Node: return _api().pow(self, other)
    def __rpow__(self, other: Any) -> Node: return _api().pow(other, self)
    def __neg__(self) -> Node: return _api().neg(self)
    def __pos__(self) -> Node: return self
    def __abs__(self) -> Node: return _api().abs(self)
    def __getitem__(self, index: Any) -> Node: return _api().getitem(self, index)

    @property
    def T(self) -> Node:
        return _api().transpose(self)

    def sum(self, axis: Any = None, keepdims: bool = False) -> Node:
        return _api().sum(self, axis=axis, keepdims=keepdims)

    def mean(self, axis: Any = None, keepdims: bool = False) -> Node:
        return _api().mean(self, axis=axis, keepdims=keepdims)

    def max(self, axis: Any = None, keepdims: bool = False) -> Node:
        return _api().max(self, axis=axis, keepdims=keepdims)

    def reshape(self, *shape: Any) -> Node:
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        return _api().reshape(self, shape)

    def transpose(self, *axes: Any) -> Node:
        if len(axes) == 1 and isinstance(axes[0], (tuple, list)):
            axes = tuple(axes[0])
        return _api().transpose(self, axes or None)

    def astype(self, dtype: Any) -> Node:
        return _api().cast(self, dtype)


Tensor = Node


# ---------------------------------------------------------------------------------------------- name scopes

_SCOPE: ContextVar[str] = ContextVar("graphc_name_scope", default="")  # "" or "outer/inner/"


@contextlib.contextmanager
def name_scope(name: str) -> Iterator[str]:
    """``with gc.name_scope("layer1"):`` prefixes the names of nodes built inside with ``layer1/``; yields the full
    scope (nested scopes join with "/": ``outer/inner``).

    Explicit names (``name="h"`` → ``layer1/h``) and generated ones (``layer1/mul_1``) get the prefix; inputs and
    params keep their names as given (they are programs' feed and state keys). Scopes belong to the current thread
    (and asyncio task)."""
    if not isinstance(name, str) or not name.strip("/"):
        raise GraphcError(f"name_scope: a scope name must be a non-empty string, got {name!r}")
    full = f"{_SCOPE.get()}{name.strip('/')}/"
    token = _SCOPE.set(full)
    try:
        yield full[:-1]
    finally:
        _SCOPE.reset(token)


@contextlib.contextmanager
def root_name_scope() -> Iterator[None]:
    """No name-scope prefix inside (for code that copies nodes under their existing names)."""
    token = _SCOPE.set("")
    try:
        yield
    finally:
        _SCOPE.reset(token)


def current_name_scope() -> str:
    """The current name scope, e.g. ``"outer/inner"`` ("" outside any)."""
    return _SCOPE.get().rstrip("/")


# ---------------------------------------------------------------------------------------------- graph


class Graph:
    """Owns nodes (in creation order, which is a topological order), named inputs and parameters.

    ``state`` maps parameter names to the arrays holding their current values; compiled programs read them
    zero-copy and write updates in place, so every program compiled from this graph shares the weights.
    """

    def __init__(self, name: str = "graph") -> None:
        self.name = name
        self.nodes: list[Node] = []
        self.inputs: dict[str, Node] = {}
        self.params: dict[str, Node] = {}
        self.state: dict[str, np.ndarray] = {}
        self.trainable: set[str] = set()  # names of params that optimizers update
        # trigger node -> ((param, new value), ...): updates an op asks for whenever its output is computed
        # (batch-norm running statistics); compile() adds them to the program's updates.
        self.implicit_updates: dict[Node, tuple[tuple[Node, Node], ...]] = {}
        self._names: set[str] = set()
        self._counters: dict[str, int] = {}
        self._backward_depth = 0
        # held by every program call on this graph from reading the feeds and the state to writing the updates:
        # calls of all programs sharing this state run one at a time, each sees and leaves a consistent state
        self.state_lock = threading.RLock()

    def __repr__(self) -> str:
        return f"Graph({self.name!r}, {len(self.nodes)} nodes, inputs={list(self.inputs)}, params={list(self.params)})"

    # -- naming
    def unique_name(self, base: str) -> str:
        n = self._counters.get(base, 0)
        while True:
            n += 1
            candidate = f"{base}_{n}"
            if candidate not in self._names:
                self._counters[base] = n
                return candidate

    def _claim(self, name: str, what: str) -> None:
        if not isinstance(name, str) or not name:
            raise GraphcError(f"{what} name must be a non-empty string, got {name!r}")
        if name in self._names:
            raise GraphcError(f"graph {self.name!r} already has a node named {name!r}")
        self._names.add(name)

    # -- node creation
    @contextlib.contextmanager
    def backward_scope(self) -> Iterator[None]:
        """Nodes created inside are marked as backward (gradient) nodes."""
        self._backward_depth += 1
        try:
            yield
        finally:
            self._backward_depth -= 1

    def add_node(self, op: str, inputs: tuple[Node, ...], attrs: Mapping[str, Any] | Attrs, type: TensorType,
                 name: str | None = None, site: str | None = None) -> Node:
        """Append a node whose type was already inferred (callers: leaf constructors and ``ops.apply``).

        Nodes built from user code (no ``site`` given) other than inputs and params get the current
        :func:`name_scope` prefix, on explicit and generated names alike; passes copying a node pass
        its ``site`` and keep its name."""
        for x in inputs:
            if x.graph is not self:
                raise GraphcError(f"{op}: input {x.name!r} belongs to graph {x.graph.name!r}, not {self.name!r}")
        prefix = _SCOPE.get() if site is None and op not in ("input", "param") else ""
        if name is None:
            name = self.unique_name(prefix + op)
        elif prefix and isinstance(name, str) and name:
            name = prefix + name
        self._claim(name, op)
        node = Node(self, op, tuple(inputs), attrs if isinstance(attrs, Attrs) else Attrs(attrs), type, name,
                    site or creation_site(), len(self.nodes), self._backward_depth > 0)
        self.nodes.append(node)
        return node

    def input(self, name: str, shape: Any = (), dtype: Any = "float32") -> Node:
        """A value fed on every call of a compiled program."""
        try:
            ttype = TensorType(_as_shape(shape), dtype_name(dtype))
        except ShapeError as err:
            raise ShapeError(f"input {name!r}: {err}\n  at {creation_site()}") from None
        node = self.add_node("input", (), {}, ttype, name=name)
        self.inputs[name] = node
        return node

    def param(self, name: str, value: Any, dtype: Any = None, trainable: bool = True) -> Node:
        """State the graph keeps (copied, 64-byte aligned: a cache line, so that kernels writing it in place, as a
        GEMM adding plain SGD's step onto a weight, never split a vector store over two lines) in
        ``self.state[name]``.

        ``trainable=False`` marks state that optimizers leave alone (running statistics, counters).
        """
        array = aligned_copy(_as_array(value, dtype))
        node = self.add_node("param", (), {}, TensorType(array.shape, array.dtype.name), name=name)
        self.params[name] = node
        self.state[name] = array
        if trainable and node.type.is_float:
            self.trainable.add(name)
        return node

    def const(self, value: Any, dtype: Any = None, name: str | None = None) -> Node:
        """A constant baked into the graph (read-only)."""
        array = _as_array(value, dtype)
        array.setflags(write=False)
        return self.add_node("const", (), {"value": array}, TensorType(array.shape, array.dtype.name), name=name)

    def to_networkx(self) -> Any:
        """The graph as a ``networkx.DiGraph`` for analysis: one node per graph node (keyed by name) with ``op``,
        ``shape``, ``dtype``, ``site``, ``backward`` and the ``attrs`` mapping; an edge from each input to its
        consumer with ``positions`` (the operand positions it fills: ``x * x`` gives ``[0, 1]``)."""
        import networkx as nx  # only when asked for: importing the IR stays cheap

        g = nx.DiGraph(name=self.name)
        for n in self.nodes:
            g.add_node(n.name, op=n.op, shape=n.shape, dtype=n.dtype, site=n.site, backward=n.backward,
                       attrs=dict(n.attrs))
            for position, x in enumerate(n.inputs):
                if g.has_edge(x.name, n.name):
                    g.edges[x.name, n.name]["positions"].append(position)
                else:
                    g.add_edge(x.name, n.name, positions=[position])
        return g

    def remove_unreachable_since(self, start: int, keep: list[Node]) -> None:
        """Drop nodes created at index >= ``start`` that none of ``keep`` depends on (used by autodiff)."""
        live: set[int] = set()
        stack = [n for n in keep if n.id >= start]
        while stack:
            n = stack.pop()
            if n.id in live:
                continue
            live.add(n.id)
            stack.extend(x for x in n.inputs if x.id >= start)
        dropped = [n for n in self.nodes[start:] if n.id not in live]
        if not dropped:
            return
        for n in dropped:
            self._names.discard(n.name)
        self.nodes[start:] = [n for n in self.nodes[start:] if n.id in live]
        for i, n in enumerate(self.nodes[start:], start):
            object.__setattr__(n, "id", i)


def _as_shape(shape: Any) -> tuple[int, ...]:
    if isinstance(shape, (int, np.integer)) and not isinstance(shape, (bool, np.bool_)):
        return check_shape((shape,))
    return check_shape(shape)


def _as_array(value: Any, dtype: Any) -> np.ndarray:
    if isinstance(value, Node):
        raise GraphcError(f"expected a concrete value, got the symbolic tensor {value!r}\n  at {creation_site()}")
    array = np.asarray(value)  # the one copy is made below (a large initializer is copied once, not twice)
    if dtype is None:
        if array.dtype.kind == "f":
            dtype = "float32"
        elif array.dtype.kind in "iu":
            dtype = "int64"
        elif array.dtype.kind == "b":
            dtype = "bool"
        else:
            raise ShapeError(f"cannot make a tensor from a value of dtype {array.dtype}\n  at {creation_site()}")
    dtype = dtype_name(dtype)
    outside = int64_overflow(array) if dtype == "int64" else None
    if outside is not None:
        raise ShapeError(f"the value {outside} does not fit in int64 (graphc's only integer dtype)\n"
                         f"  at {creation_site()}")
    return np.array(array, dtype=dtype, order="C", copy=True)


def aligned_copy(array: np.ndarray, alignment: int = 64) -> np.ndarray:
    """A C-contiguous copy of ``array`` whose first byte is ``alignment``-byte aligned."""
    raw = np.empty(array.nbytes + alignment, np.uint8)
    start = -raw.ctypes.data % alignment
    out = raw[start:start + array.nbytes].view(array.dtype).reshape(array.shape)
    out[...] = array
    return out


def int64_overflow(array: np.ndarray) -> int | None:
    """An element of the integer ``array`` that int64 cannot hold (uint64 values past 2⁶³ - 1), else None."""
    if array.dtype.kind != "u" or array.dtype.itemsize < 8 or array.size == 0:
        return None
    largest = int(array.max())
    return largest if largest > np.iinfo(np.int64).max else None


def topo_ancestors(outputs: list[Node]) -> list[Node]:
    """Every node the ``outputs`` depend on (themselves included), in creation (= topological) order."""
    seen: dict[int, Node] = {}
    stack = list(outputs)
    while stack:
        n = stack.pop()
        if id(n) in seen:
            continue
        seen[id(n)] = n
        stack.extend(n.inputs)
    return sorted(seen.values(), key=lambda n: n.id)
