"""ONNX import: ``gc.onnx.import_model(model_or_path)`` builds a graphc graph from an ONNX ``ModelProto``.

    imported = gc.onnx.import_model("model.onnx")
    prog = imported.compile(backend="numpy")
    out = prog(**{name: array for name in imported.inputs})

Graph inputs become ``g.input`` (static shapes; float32, float64, int64, bool), initializers become params (or
consts), and each node goes through the translator registered for its ONNX op type (``TRANSLATORS``). Values
needed at import time (a Reshape's shape, Reduce axes, Slice bounds) must be constants: initializers, ``Constant``
nodes, ``Shape`` of a static-shaped tensor, anything computed from those alone, or graph inputs given in
``static_inputs``. Whatever graphc cannot express raises :class:`UnsupportedOnnx` naming the op and the attribute,
dtype or input at fault. The ``onnx`` package is optional: only this module needs it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from graphc.ir import DTYPES, Graph, GraphcError, Node, topo_ancestors
from ops import fn

Value = Node | np.ndarray
Translator = Callable[["_Ctx", "OnnxNode", list], list]
TRANSLATORS: dict[str, Translator] = {}


class UnsupportedOnnx(GraphcError):
    """The model uses an ONNX op, attribute, dtype or dynamic value that graphc cannot express."""


def _onnx() -> Any:
    try:
        import onnx  # absolute: the ONNX package, not this module
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


def builder(name: str, op_type: str = "") -> Callable[..., Node]:
    """The graphc op builder ``name`` (``gc.<name>``); UnsupportedOnnx while graphc lacks it."""
    import graphc

    func = getattr(graphc, name, None) or getattr(fn, name, None)
    if name == "slice":  # slicing is x[...] (fn.getitem) on the registered op
        from ops.registry import REGISTRY

        func = fn.getitem if "slice" in REGISTRY else None
    if func is None:
        raise UnsupportedOnnx(f"{op_type}: graphc op {name} not implemented yet")
    return func


# ---------------------------------------------------------------------------------------------- dtypes


def np_dtype_of(elem_type: int, what: str) -> str:
    """The graphc dtype name of an ONNX TensorProto element type, or UnsupportedOnnx."""
    onnx = _onnx()
    try:
        name = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(elem_type)).name
    except (KeyError, TypeError, ValueError):
        name = str(onnx.TensorProto.DataType.Name(elem_type)).lower()
    if name not in DTYPES:
        raise UnsupportedOnnx(f"{what}: dtype {name} is not supported (graphc supports {', '.join(DTYPES)})")
    return name


def _array(value: Any, what: str) -> np.ndarray:
    array = np.asarray(value)
    if array.dtype.name not in DTYPES:
        raise UnsupportedOnnx(f"{what}: dtype {array.dtype.name} is not supported "
                              f"(graphc supports {', '.join(DTYPES)})")
    return array


# ---------------------------------------------------------------------------------------------- nodes


class OnnxNode:
    """One ONNX NodeProto with typed attribute access; every attribute must be read by its translator."""

    def __init__(self, proto: Any, opset: int) -> None:
        onnx = _onnx()
        self.proto = proto
        self.op_type: str = proto.op_type
        self.opset = opset
        self.attrs = {a.name: onnx.helper.get_attribute_value(a) for a in proto.attribute}
        self.used: set[str] = set()
        self.label = f"{self.op_type} node {proto.name!r}" if proto.name else f"{self.op_type} node"

    def attr(self, name: str, default: Any = None) -> Any:
        """The attribute's Python value (bytes decoded, tensors as arrays) or ``default``."""
        self.used.add(name)
        value = self.attrs.get(name, default)
        if isinstance(value, bytes):
            return value.decode()
        if hasattr(value, "data_type") and hasattr(value, "dims"):  # a TensorProto
            return _array(_onnx().numpy_helper.to_array(value), f"{self.label}: attribute {name}")
        if isinstance(value, list):
            return [v.decode() if isinstance(v, bytes) else v for v in value]
        return value

    def unsupported(self, detail: str) -> UnsupportedOnnx:
        return UnsupportedOnnx(f"{self.label}: {detail}")

    def check_attrs_used(self) -> None:
        unread = sorted(set(self.attrs) - self.used)
        if unread:
            raise self.unsupported(f"attribute {', '.join(unread)} is not supported")


# ---------------------------------------------------------------------------------------------- context


class _Ctx:
    """Translation state: the graph, the value table's materialization and import-time evaluation."""

    def __init__(self, graph: Graph, static_inputs: Mapping[str, Any], params: bool) -> None:
        self.graph = graph
        self.static_inputs = {k: np.asarray(v) for k, v in static_inputs.items()}
        self.params = params
        self.initializers: dict[int, tuple[str, np.ndarray]] = {}
        self._materialized: dict[int, Node] = {}
        self._folded: dict[int, np.ndarray] = {}

    def tensor(self, value: Value) -> Node:
        """A graph node for ``value`` (arrays become consts, float initializers params when asked)."""
        if isinstance(value, Node):
            return value
        key = id(value)
        if key not in self._materialized:
            name, _ = self.initializers.get(key, (None, None))
            if name is not None and self.params and value.dtype.kind == "f":
                node = self.graph.param(name, value, dtype=value.dtype)
            else:
                node = self.graph.const(value, dtype=value.dtype)
            self._materialized[key] = node
        return self._materialized[key]

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
        return [int(v) for v in np.asarray(self.static(value, what)).reshape(-1)]


def shape_of(value: Value) -> tuple[int, ...]:
    return tuple(value.shape)


def dtype_of(value: Value) -> str:
    return value.dtype if isinstance(value, Node) else value.dtype.name


# ---------------------------------------------------------------------------------------------- model


class ImportedModel:
    """The result of :func:`import_model`: the graph, its runtime input names and its outputs by ONNX name."""

    def __init__(self, graph: Graph, inputs: list[str], outputs: dict[str, Node], opset: int) -> None:
        self.graph = graph
        self.inputs = inputs
        self.outputs = outputs
        self.opset = opset

    def compile(self, backend: str | None = None, **options: Any) -> Any:
        """A program returning ``{onnx output name: array}``; feed it the arrays named by ``inputs``."""
        from graphc.api import compile as compile_graph

        return compile_graph(dict(self.outputs), backend=backend, **options)

    def __repr__(self) -> str:
        return f"ImportedModel({self.graph.name!r}, inputs={self.inputs}, outputs={list(self.outputs)})"


def import_model(model_or_path: Any, *, initializers: str = "params", static_inputs: Mapping[str, Any] | None = None,
                 input_shapes: Mapping[str, Any] | None = None, name: str | None = None) -> ImportedModel:
    """Translate an ONNX model (a ``ModelProto``, bytes or a file path) into a graphc graph.

    ``initializers``: ``"params"`` (float initializers become trainable params; integer ones consts) or
    ``"consts"``. ``static_inputs``: values of graph inputs that the model uses as shapes, axes or indices (an input
    that an op also consumes as a tensor still becomes a runtime input). ``input_shapes`` fixes dynamic dimensions.
    """
    onnx = _onnx()
    if isinstance(model_or_path, (str, os.PathLike)):
        model = onnx.load(os.fspath(model_or_path))
    elif isinstance(model_or_path, bytes):
        model = onnx.load_from_string(model_or_path)
    else:
        model = model_or_path
    if initializers not in ("params", "consts"):
        raise GraphcError(f"import_model: initializers must be 'params' or 'consts', got {initializers!r}")
    opset = _default_opset(model)
    onnx_graph = model.graph
    graph = Graph(name or onnx_graph.name or "onnx")
    ctx = _Ctx(graph, static_inputs or {}, initializers == "params")
    values: dict[str, Value] = {}
    init_names = {init.name for init in onnx_graph.initializer}
    for init in onnx_graph.initializer:
        array = _array(onnx.numpy_helper.to_array(init), f"initializer {init.name!r}")
        ctx.initializers[id(array)] = (init.name, array)
        values[init.name] = array
    for vi in onnx_graph.input:
        if vi.name not in init_names:
            values[vi.name] = _graph_input(graph, vi, (input_shapes or {}).get(vi.name))
    for proto in onnx_graph.node:
        _translate_node(ctx, OnnxNode(proto, opset), values)
    outputs = {}
    for vi in onnx_graph.output:
        if vi.name not in values:
            raise UnsupportedOnnx(f"graph output {vi.name!r} is produced by no node")
        outputs[vi.name] = ctx.tensor(values[vi.name])
    used = {n.name for n in topo_ancestors(list(outputs.values())) if n.op == "input"}
    inputs = [name for name in graph.inputs if name in used]
    return ImportedModel(graph, inputs, outputs, opset)


def _default_opset(model: Any) -> int:
    for entry in model.opset_import:
        if entry.domain in ("", "ai.onnx"):
            return int(entry.version)
    return 1


def _graph_input(graph: Graph, vi: Any, shape: Any) -> Node:
    tensor_type = vi.type.tensor_type
    if not vi.type.HasField("tensor_type"):
        raise UnsupportedOnnx(f"graph input {vi.name!r}: only tensor inputs are supported")
    dtype = np_dtype_of(tensor_type.elem_type, f"graph input {vi.name!r}")
    if shape is None:
        dims = []
        for dim in tensor_type.shape.dim:
            if not dim.HasField("dim_value"):
                raise UnsupportedOnnx(f"graph input {vi.name!r}: dynamic dimension {dim.dim_param or '?'!r}; "
                                      "graphc needs static shapes (pass input_shapes)")
            dims.append(dim.dim_value)
        shape = tuple(dims)
    return graph.input(vi.name, tuple(shape), dtype)


def _translate_node(ctx: _Ctx, node: OnnxNode, values: dict[str, Value]) -> None:
    if node.proto.domain not in ("", "ai.onnx"):
        raise node.unsupported(f"domain {node.proto.domain!r} is not supported")
    func = TRANSLATORS.get(node.op_type)
    if func is None:
        raise UnsupportedOnnx(f"ONNX op {node.op_type} is not supported by graphc's importer")
    inputs = []
    for name in node.proto.input:
        if name and name not in values:
            raise UnsupportedOnnx(f"{node.label}: input {name!r} is not defined before use")
        inputs.append(values[name] if name else None)
    while inputs and inputs[-1] is None:
        inputs.pop()
    results = func(ctx, node, inputs)
    node.check_attrs_used()
    for name, result in zip(node.proto.output, results):
        if name:
            if result is None:
                raise node.unsupported(f"output {name!r} is not supported")
            values[name] = result
    produced = len(results)
    wanted = [n for n in list(node.proto.output)[produced:] if n]
    if wanted:
        raise node.unsupported(f"output {', '.join(map(repr, wanted))} is not supported")


from graphc import onnx_ops as _onnx_ops  # noqa: E402,F401  (registers the translators)
