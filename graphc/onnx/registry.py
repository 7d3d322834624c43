"""The translator registry and the import-time machinery every translator uses.

A translator is a function ``(ctx, node, inputs) -> outputs`` registered for one or more ONNX op types with
:func:`translator`. ``ctx`` is the :class:`ImportContext` (the graph being built, import-time evaluation), ``node``
the :class:`OnnxNode` (typed attribute access) and ``inputs`` the node's inputs in ONNX order: graphc tensors
(``Node``), NumPy arrays for import-time constants, ``None`` for an omitted optional input (trailing omitted inputs
are dropped). It returns the outputs in ONNX order; an output it cannot produce is left off (or ``None``).

A folder (:func:`folder`) is the NumPy evaluation of an op on import-time arrays, ``(node, arrays) -> arrays``:
when every input of a node is an import-time constant (not an initializer that becomes a param), the importer
runs the op's folder instead of its translator, so shape arithmetic (``Shape`` → ``Gather`` → ``Div`` →
``Concat`` → ``Reshape``) stays a NumPy array with ONNX's semantics (integer ``Div`` truncates) and never
reaches the graph.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from graphc.ir import DTYPES, Graph, GraphcError, Node, topo_ancestors

Value = Node | np.ndarray
Translator = Callable[["ImportContext", "OnnxNode", list], list]
Folder = Callable[["OnnxNode", list], list]
TRANSLATORS: dict[str, Translator] = {}
FOLDERS: dict[str, Folder] = {}


class UnsupportedOnnx(GraphcError):
    """The model uses an ONNX op, attribute, dtype or dynamic value that graphc cannot express."""


def require_onnx() -> Any:
    """The ``onnx`` package, or a GraphcError saying how to install it."""
    try:
        import onnx  # absolute: the ONNX package, not graphc.onnx
    except ImportError:  # pragma: no cover - depends on the environment
        raise GraphcError("gc.onnx needs the 'onnx' package: pip install onnx") from None
    return onnx


def translator(*op_types: str) -> Callable[[Translator], Translator]:
    """Register a translator function for the given ONNX op types."""

    def register(func: Translator) -> Translator:
        for op_type in op_types:
            TRANSLATORS[op_type] = func
        return func

    return register


def folder(*op_types: str) -> Callable[[Folder], Folder]:
    """Register the import-time NumPy evaluation of the given ONNX op types (each also needs a translator)."""

    def register(func: Folder) -> Folder:
        for op_type in op_types:
            FOLDERS[op_type] = func
        return func

    return register


# ---------------------------------------------------------------------------------------------- values


def np_dtype_of(elem_type: int, what: str) -> str:
    """The graphc dtype name of an ONNX TensorProto element type, or UnsupportedOnnx."""
    onnx = require_onnx()
    try:
        name = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(elem_type)).name
    except (KeyError, TypeError, ValueError):
        name = str(onnx.TensorProto.DataType.Name(elem_type)).lower()
    if name not in DTYPES:
        raise UnsupportedOnnx(f"{what}: dtype {name} is not supported (graphc supports {', '.join(DTYPES)})")
    return name


def as_array(value: Any, what: str) -> np.ndarray:
    """``value`` as a NumPy array of a dtype graphc supports, or UnsupportedOnnx naming ``what``."""
    array = np.asarray(value)
    if array.dtype.name not in DTYPES:
        raise UnsupportedOnnx(f"{what}: dtype {array.dtype.name} is not supported "
                              f"(graphc supports {', '.join(DTYPES)})")
    return array


def shape_of(value: Value) -> tuple[int, ...]:
    """The static shape of a tensor or an import-time array."""
    return tuple(value.shape)


def dtype_of(value: Value) -> str:
    """The dtype name of a tensor or an import-time array."""
    return value.dtype if isinstance(value, Node) else value.dtype.name


IMPORT_TIME_BYTES = 1 << 30  # the largest array an import-time evaluation may create


def check_import_time_size(n: OnnxNode, shape: Any, dtype: Any) -> tuple[int, ...]:
    """``shape`` as a tuple of ints, or UnsupportedOnnx when an import-time array of it would be negative-sized or
    larger than IMPORT_TIME_BYTES (a hostile file must not exhaust memory while it is read)."""
    shape = tuple(int(d) for d in shape)
    if any(d < 0 for d in shape):
        raise n.unsupported(f"negative dimension in the import-time shape {shape}")
    nbytes = math.prod(shape) * np.dtype(dtype).itemsize
    if nbytes > IMPORT_TIME_BYTES:
        raise n.unsupported(f"the import-time constant of shape {shape} ({nbytes} bytes) is larger than "
                            f"{IMPORT_TIME_BYTES} bytes")
    return shape


def optional_input(xs: list, index: int) -> Value | None:
    """Input ``index`` of a node, or None when it is omitted."""
    return xs[index] if len(xs) > index else None


# ---------------------------------------------------------------------------------------------- nodes


def _text(value: Any) -> str:
    """A protobuf string field as text (a damaged file may hold bytes that are not UTF-8)."""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _shortest(value: float) -> float:
    """The float32 attribute ``value`` as the shortest decimal that rounds to it (0.8999999761581421 → 0.9): what
    the exporter was given, so float64 models compute with PyTorch's 1 - 0.9 and 1e-5, not their float32
    roundings (float32 models are unaffected: the decimal rounds back to the same float32)."""
    return float(str(np.float32(value))) if np.isfinite(value) else float(value)


def _decimal_floats(proto: Any, value: Any) -> Any:
    """Float attributes (ONNX stores them as float32) through :func:`_shortest`; other values unchanged."""
    if proto.type == 1:  # AttributeProto.FLOAT
        return _shortest(value)
    if proto.type == 6:  # AttributeProto.FLOATS
        return [_shortest(v) for v in value]
    return value


class OnnxNode:
    """One ONNX NodeProto with typed attribute access; every attribute must be read by its translator."""

    def __init__(self, proto: Any, opset: int) -> None:
        onnx = require_onnx()
        self.proto = proto
        self.op_type: str = proto.op_type
        self.opset = opset
        self.attrs = {_text(a.name): _decimal_floats(a, onnx.helper.get_attribute_value(a)) for a in proto.attribute}
        self.used: set[str] = set()
        self.label = f"{self.op_type} node {proto.name!r}" if proto.name else f"{self.op_type} node"

    def attr(self, name: str, default: Any = None) -> Any:
        """The attribute's Python value (bytes decoded, tensors as arrays) or ``default``."""
        self.used.add(name)
        value = self.attrs.get(name, default)
        if isinstance(value, bytes):
            return value.decode()
        if hasattr(value, "data_type") and hasattr(value, "dims"):  # a TensorProto
            return as_array(require_onnx().numpy_helper.to_array(value), f"{self.label}: attribute {name}")
        if isinstance(value, list):
            return [v.decode() if isinstance(v, bytes) else v for v in value]
        return value

    def wants_output(self, index: int) -> bool:
        """True when the model uses output ``index`` of this node."""
        return len(self.proto.output) > index and bool(self.proto.output[index])

    def unsupported(self, detail: str) -> UnsupportedOnnx:
        """An UnsupportedOnnx naming this node."""
        return UnsupportedOnnx(f"{self.label}: {detail}")

    def check_attrs_used(self) -> None:
        """UnsupportedOnnx for any attribute the translator did not read."""
        unread = sorted(set(self.attrs) - self.used)
        if unread:
            raise self.unsupported(f"attribute {', '.join(unread)} is not supported")


# ---------------------------------------------------------------------------------------------- context


class ImportContext:
    """Translation state: the graph, the materialization of import-time values and import-time evaluation."""

    def __init__(self, graph: Graph, static_inputs: Mapping[str, Any], params: bool) -> None:
        self.graph = graph
        self.static_inputs = {k: np.asarray(v) for k, v in static_inputs.items()}
        self.params = params
        self.training = False  # import_model(training=True): file batch norms normalize with batch statistics
        self.untie_state = False  # import_model(training=True): each node owns the state it updates
        self._node_state: dict[tuple[tuple[str, ...], int], Node] = {}
        self._state_owners: set[str] = set()
        self.initializers: dict[int, tuple[str, np.ndarray]] = {}
        self._materialized: dict[int, Node] = {}
        self._folded: dict[int, np.ndarray] = {}
        # the values translated so far by ONNX name (set by the importer), for translators whose attributes name
        # values rather than take them as inputs (Gradient's y)
        self.values: dict[str, Value] = {}

    def tensor(self, value: Value, trainable: bool = True) -> Node:
        """A graph node for ``value`` (arrays become consts, float initializers params when asked).
        ``trainable=False``: a float initializer becomes a param that optimizers leave alone (state such as
        BatchNormalization's running statistics); the first use of an initializer decides."""
        if isinstance(value, Node):
            return value
        key = id(value)
        if key not in self._materialized:
            if self.becomes_param(value):
                name = self.initializers[key][0]
                node = self.graph.param(name, value, dtype=value.dtype, trainable=trainable)
            else:
                node = self.graph.const(value, dtype=value.dtype)
            self._materialized[key] = node
        return self._materialized[key]

    def node_state(self, n: OnnxNode, position: int, value: Value) -> Node:
        """Input ``position`` of ``n`` as non-trainable state (running statistics). With ``untie_state``, a param
        that another node already owns is copied into a param of this node's own: exporters merge initializers of
        equal value (fresh BatchNorms' zeros and ones), but each layer must update its own statistics. The same
        node of a second translation pass (``eval_outputs``) gets the same param."""
        node = self.tensor(value, trainable=False)
        if not self.untie_state or node.op != "param":
            return node
        key = (tuple(n.proto.output), position)
        if key not in self._node_state:
            if node.name in self._state_owners:
                base = f"{node.name}/{n.proto.name or n.op_type}"
                value = self.graph.state[node.name]
                node = self.graph.param(self.graph.unique_name(base), value, dtype=value.dtype, trainable=False)
            self._state_owners.add(node.name)
            self._node_state[key] = node
        return self._node_state[key]

    def becomes_param(self, value: Value | None) -> bool:
        """True for a float initializer that this import turns into a param."""
        return (isinstance(value, np.ndarray) and self.params and value.dtype.kind == "f"
                and id(value) in self.initializers)

    def foldable(self, values: list) -> bool:
        """True when every given value is an import-time array that may be folded (no param, no tensor)."""
        return all(v is None or (isinstance(v, np.ndarray) and not self.becomes_param(v)) for v in values)

    def optional_tensor(self, xs: list, index: int) -> Node | None:
        """A graph node for input ``index``, or None when it is omitted."""
        value = optional_input(xs, index)
        return None if value is None else self.tensor(value)

    def static(self, value: Value | None, what: str) -> np.ndarray:
        """The import-time value of ``value`` (folding a constant-only subgraph with the interpreter)."""
        if isinstance(value, np.ndarray):
            return value
        if value is None:
            raise UnsupportedOnnx(f"{what}: missing input")
        if value.op == "const":
            return value.attrs["value"]
        if value.op == "input" and value.name in self.static_inputs:
            return self.static_inputs[value.name].astype(value.dtype)
        if value.id not in self._folded:
            leaves = [n for n in topo_ancestors([value]) if n.is_leaf]
            if any(n.op != "const" for n in leaves):
                dynamic = ", ".join(repr(n.name) for n in leaves if n.op != "const")
                raise UnsupportedOnnx(f"{what} must be known at import time, but depends on {dynamic} (give it "
                                      "as an initializer, a Constant or in static_inputs)")
            from graphc.api import compile as compile_graph

            self._folded[value.id] = np.asarray(compile_graph(value, backend="numpy")())
        return self._folded[value.id]

    def ints(self, value: Value | None, what: str) -> list[int]:
        """The import-time value of ``value`` as a flat list of Python ints."""
        return [int(v) for v in np.asarray(self.static(value, what)).reshape(-1)]
