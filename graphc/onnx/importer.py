"""``import_model``: an ONNX ``ModelProto`` → a graphc graph (graph inputs, initializers, node dispatch)."""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np

from graphc.ir import Graph, GraphcError, Node, ShapeError, topo_ancestors
from graphc.onnx.registry import (
    FOLDERS,
    TRANSLATORS,
    ImportContext,
    OnnxNode,
    UnsupportedOnnx,
    Value,
    as_array,
    np_dtype_of,
    require_onnx,
)
from graphc.onnx.trainable import CONSTANT, STATE, TRAINABLE, Role, check_option, decide


class ImportedModel:
    """The result of :func:`import_model`: the graph, its runtime input names and its outputs by ONNX name.

    Which float initializers train: ``trainable_names`` (trainable params, under their ONNX names),
    ``state_names`` (non-trainable params: BatchNormalization's running statistics), ``constant_names`` (every
    other float initializer: a graph constant, folded at import, or read by no op); ``why(name)`` says why."""

    def __init__(self, graph: Graph, inputs: list[str], outputs: dict[str, Node], opset: int,
                 inference: bool = False, eval_outputs: dict[str, Node] | None = None,
                 values: dict[str, Any] | None = None, eval_values: dict[str, Any] | None = None,
                 roles: dict[str, Role] | None = None) -> None:
        self.graph = graph
        self.inputs = inputs
        self.outputs = outputs
        self.opset = opset
        self.inference = inference
        # training=True: the same model with inference-mode batch norms (running statistics), sharing the params;
        # otherwise the outputs themselves
        self.eval_outputs = eval_outputs if eval_outputs is not None else outputs
        self._values = values or {}  # every ONNX value by name (graph nodes or import-time arrays), for tensor()
        self._eval_values = eval_values if eval_values is not None else self._values
        self._roles = roles or {}  # float initializer name → Role, in the file's order
        self.trainable_names = tuple(n for n, r in self._roles.items() if r.kind == TRAINABLE)
        self.state_names = tuple(n for n, r in self._roles.items() if r.kind == STATE)
        self.constant_names = tuple(n for n, r in self._roles.items() if r.kind == CONSTANT)

    def why(self, name: str) -> str:
        """Whether the float initializer ``name`` is trainable, state or a constant, and why."""
        if name not in self._roles:
            close = [k for k in self._roles if name.lower() in k.lower()][:8]
            raise GraphcError(f"the model has no float initializer {name!r}" + (f"; similar: {close}" if close else ""))
        role = self._roles[name]
        return f"{name!r}: {role.kind} ({role.reason})"

    def compile(self, backend: str | None = None, **options: Any) -> Any:
        """A program returning ``{onnx output name: array}``; feed it the arrays named by ``inputs``. A model
        imported with ``inference=True`` compiles frozen (``freeze=True``) unless told otherwise."""
        from graphc.api import compile as compile_graph

        if self.inference:
            options.setdefault("freeze", True)
        return compile_graph(dict(self.outputs), backend=backend, **options)

    def tensor(self, onnx_name: str, eval: bool = False) -> Node:  # noqa: A002 - mirrors eval_outputs
        """The graph node of the ONNX value ``onnx_name`` (any intermediate result, e.g. the features before a
        classifier to replace); ``eval=True``: the one of ``eval_outputs``' translation."""
        values = self._eval_values if eval else self._values
        if onnx_name not in values:
            close = [k for k in values if onnx_name.lower() in k.lower()][:8]
            raise GraphcError(f"the model has no ONNX value {onnx_name!r}" + (f"; similar: {close}" if close else ""))
        value = values[onnx_name]
        return value if isinstance(value, Node) else self.graph.const(value)

    def __repr__(self) -> str:
        return f"ImportedModel({self.graph.name!r}, inputs={self.inputs}, outputs={list(self.outputs)})"


def import_model(model_or_path: Any, *, initializers: str | None = None,
                 static_inputs: Mapping[str, Any] | None = None, input_shapes: Mapping[str, Any] | None = None,
                 name: str | None = None, inference: bool = False, training: bool = False,
                 trainable: Any = None) -> ImportedModel:
    """Translate an ONNX model (a ``ModelProto``, bytes or a file path) into a graphc graph.

    ``initializers``: ``"params"`` (the default: the model's float parameters become trainable params, its
    constants graph constants, integer initializers always constants) or ``"consts"`` (every initializer a
    constant). Which float initializers are parameters follows the rule of :mod:`graphc.onnx.trainable`: the
    PyTorch dynamo exporter's metadata, the weight inputs of Conv, Gemm, MatMul, the normalizations ..., the names
    the PyTorch exporters give what they fold. ``trainable=`` decides instead: a predicate
    ``(name, array) -> bool`` or a collection of initializer names for every float initializer, a mapping
    ``{name: True/False}`` for the names it holds (BatchNormalization's running statistics are state either
    way). ``ImportedModel.trainable_names``, ``constant_names``, ``state_names`` and ``why(name)`` show the
    outcome. ``inference=True``: for inference only — initializers are constants (``"consts"``, the only choice
    then) and ``compile`` freezes the program (batch norms folded into the preceding conv/dense weights,
    constant subgraphs evaluated once; see ``gc.compile(freeze=True)``). ``static_inputs``: values of graph
    inputs that the model uses as shapes, axes or indices (an input that an op also consumes as a tensor still
    becomes a runtime input). ``input_shapes`` fixes dynamic dimensions.

    ``training=True`` (for fine-tuning): every BatchNormalization of the file normalizes with the batch's
    statistics, and any program computing an output updates its running mean and variance in place
    (PyTorch's rule: running ← (1 − m)·running + m·batch, m = 1 − the node's ONNX momentum, unbiased variance),
    as ``model.train()`` does in PyTorch. ``eval_outputs`` then holds the same model with inference-mode batch
    norms (running statistics), sharing every param: train on ``outputs``, evaluate ``eval_outputs``. It warns
    about initializers that several ops read (they train as one param) and about constants an exporter computed
    that may come from parameters (then not trained; see :mod:`graphc.onnx.trainable`).
    """
    for key, flag in (("inference", inference), ("training", training)):
        if not isinstance(flag, bool):
            raise GraphcError(f"import_model: {key} must be True or False, got {flag!r}")
    if inference and training:
        raise GraphcError("import_model: inference=True and training=True contradict each other (inference "
                          "freezes the weights; training=True is for fine-tuning)")
    if training and initializers == "consts":
        raise GraphcError("import_model: training=True needs the initializers as params (the running statistics "
                          "are state the program updates); initializers='consts' contradicts it")
    if inference and initializers not in (None, "consts"):
        raise GraphcError(f"import_model: inference=True makes the initializers constants; initializers="
                          f"{initializers!r} contradicts it")
    if trainable is not None and (inference or initializers == "consts"):
        raise GraphcError(f"import_model: trainable= chooses the params among the initializers; "
                          f"{'inference=True' if inference else 'initializers=' + repr(initializers)} makes them all "
                          "constants")
    trainable = check_option(trainable)
    initializers = initializers or ("consts" if inference else "params")
    onnx = require_onnx()
    model = _load(onnx, model_or_path)
    if initializers not in ("params", "consts"):
        raise GraphcError(f"import_model: initializers must be 'params' or 'consts', got {initializers!r}")
    try:
        why_consts = "inference=True" if inference else "initializers='consts'"
        imported = _import(onnx, model, initializers, static_inputs, input_shapes, name, training, trainable,
                           why_consts)
        imported.inference = inference
        return imported
    except _MALFORMED as err:  # a damaged or hostile file: fields of the wrong type, missing or out of range
        raise UnsupportedOnnx(f"the model is malformed ({type(err).__name__}: {err})") from None


# what a damaged ModelProto raises from onnx's helpers or from NumPy while it is read
_MALFORMED = (TypeError, ValueError, KeyError, IndexError, AttributeError, OverflowError, UnicodeError, MemoryError)


def _import(onnx: Any, model: Any, initializers: str, static_inputs: Mapping[str, Any] | None,
            input_shapes: Mapping[str, Any] | None, name: str | None, training: bool, trainable: Any = None,
            why_consts: str = "initializers='consts'") -> ImportedModel:
    """The translation proper (see :func:`import_model`); with ``training`` the nodes are translated twice into
    one graph, once with training-mode batch norms and once for evaluation, the params shared. Only the float
    initializers that are trainable or state become params (``ctx.initializers``); the others are constants."""
    opset = _default_opset(model)
    onnx_graph = model.graph
    graph = Graph(name or onnx_graph.name or "onnx")
    ctx = ImportContext(graph, static_inputs or {}, initializers == "params")
    values: dict[str, Value] = {}
    init_names = {init.name for init in onnx_graph.initializer}
    for init in onnx_graph.initializer:
        values[init.name] = as_array(_initializer_array(onnx, init), f"initializer {init.name!r}")
    arrays = {init.name: values[init.name] for init in onnx_graph.initializer}
    roles = decide(model, arrays, initializers == "params", trainable, why_consts)
    for init_name, role in roles.items():
        if role.kind != CONSTANT:
            ctx.initializers[id(arrays[init_name])] = (init_name, arrays[init_name])
    for vi in onnx_graph.input:
        if vi.name not in init_names:
            values[vi.name] = _graph_input(graph, vi, (input_shapes or {}).get(vi.name))
    ctx.training = ctx.untie_state = training
    train_values = dict(values)
    outputs = _translate_graph(ctx, onnx_graph, opset, train_values)
    eval_values, eval_outputs = None, None
    if training:
        _warn_shared_params(graph, outputs)
        _warn_folded_constants(roles, arrays)  # those the rule decided, not trainable=
        ctx.training = False
        eval_values = dict(values)
        eval_outputs = _translate_graph(ctx, onnx_graph, opset, eval_values)
    used = {n.name for n in topo_ancestors(list(outputs.values())) if n.op == "input"}
    inputs = [name for name in graph.inputs if name in used]
    return ImportedModel(graph, inputs, outputs, opset, eval_outputs=eval_outputs, values=train_values,
                         eval_values=eval_values, roles=_outcome(graph, roles))


def _outcome(graph: Graph, roles: dict[str, Role]) -> dict[str, Role]:
    """The roles as the translation realized them: an initializer meant to be a param that no op read as a
    tensor (folded at import, or unused) is no param of the graph, so it is listed as a constant; one that ops read
    both as a weight and as running statistics is what its first reader made it."""
    outcome = {}
    for init_name, role in roles.items():
        if init_name not in graph.params:
            kind = CONSTANT
            if role.kind != kind:
                role = Role(kind, f"it would be {role.kind} ({role.reason}), but no op reads it as a tensor")
        else:
            kind = TRAINABLE if init_name in graph.trainable else STATE
            if role.kind != kind:
                role = Role(kind, f"it would be {role.kind} ({role.reason}), but its first reader made it {kind}")
        outcome[init_name] = role
    return outcome


def _warn_folded_constants(roles: dict[str, Role], arrays: dict[str, np.ndarray]) -> None:
    """Warn about constants a PyTorch exporter computed from initializers, which may have been parameters that the
    file no longer holds (ViT's class token expanded to the batch, Swin's relative-position bias gathered from its
    table): PyTorch trains those parameters, graphc cannot."""
    folded = [n for n, r in roles.items() if r.folded]
    if folded:
        listed = ", ".join(f"{n!r} {list(arrays[n].shape)}" for n in folded[:6])
        listed += f" and {len(folded) - 6} more" if len(folded) > 6 else ""
        warnings.warn(f"import_model(training=True): {len(folded)} initializer(s) the exporter computed are "
                      f"constants, not trained: {listed}. If they come from parameters (a relative-position bias "
                      "gathered from its table, a class token expanded to the batch), PyTorch trains those: export "
                      "with optimize=False (dynamo) or do_constant_folding=False (TorchScript) to keep them, or "
                      "pass trainable= to train these values as they are", stacklevel=4)


def _warn_shared_params(graph: Graph, outputs: dict[str, Node]) -> None:
    """Warn about trainable params that several ops read: trained, they stay one param. Legitimately tied
    weights are read that way, but so are the parameters an exporter merged because their values were equal."""
    readers: dict[str, list[str]] = {}
    for node in topo_ancestors(list(outputs.values())):
        for name in {x.name for x in node.inputs if x.op == "param" and x.name in graph.trainable}:
            readers.setdefault(name, []).append(node.name)
    for name, nodes in readers.items():
        if len(nodes) > 1 and graph.state[name].size > 1:
            warnings.warn(f"import_model(training=True): initializer {name!r} is read by {len(nodes)} ops "
                          f"({', '.join(nodes[:4])}) and trains as one param; if the exporter merged parameters of "
                          "equal value (TorchScript's eval export does), export from weights that differ or in "
                          "training mode", stacklevel=4)


def _translate_graph(ctx: ImportContext, onnx_graph: Any, opset: int, values: dict[str, Value]) -> dict[str, Node]:
    """Translate every node in order; the graph outputs by ONNX name."""
    ctx.values = values  # translators that name values in attributes (Gradient's y) read them here
    for proto in onnx_graph.node:
        _translate_node(ctx, OnnxNode(proto, opset), values)
    outputs = {}
    for vi in onnx_graph.output:
        if vi.name not in values:
            raise UnsupportedOnnx(f"graph output {vi.name!r} is produced by no node")
        outputs[vi.name] = ctx.tensor(values[vi.name])
    return outputs


_RAW_DTYPES = {1: "<f4", 11: "<f8", 7: "<i8"}  # TensorProto FLOAT, DOUBLE, INT64: raw_data is little-endian


def _initializer_array(onnx: Any, init: Any) -> np.ndarray:
    """An initializer's value: a read-only view of its raw bytes for the common dtypes (the graph copies it once
    when it becomes a param; a const keeps the view), else ONNX's own conversion."""
    dtype = _RAW_DTYPES.get(init.data_type)
    if dtype is not None and init.raw_data and init.data_location != onnx.TensorProto.EXTERNAL:
        raw = init.raw_data
        count = int(np.prod(init.dims, dtype=np.int64)) if len(init.dims) else 1
        if len(raw) == count * np.dtype(dtype).itemsize:
            return np.frombuffer(raw, dtype=dtype).reshape(tuple(init.dims)).astype(dtype[1:], copy=False)
    return onnx.numpy_helper.to_array(init)


def _load(onnx: Any, model_or_path: Any) -> Any:
    """The ModelProto of a path, bytes or a ModelProto; every way a file can be wrong is a clear error."""
    from google.protobuf.message import DecodeError

    what = repr(os.fspath(model_or_path)) if isinstance(model_or_path, (str, os.PathLike)) else "the model"
    try:
        if isinstance(model_or_path, (str, os.PathLike)):
            model = onnx.load(os.fspath(model_or_path))
        elif isinstance(model_or_path, (bytes, bytearray)):
            model = onnx.load_from_string(bytes(model_or_path))
        elif isinstance(model_or_path, onnx.ModelProto):
            model = model_or_path
        else:
            raise GraphcError(f"import_model: expected a path, bytes or an onnx.ModelProto, got "
                              f"{type(model_or_path).__name__}")
    except OSError as err:
        raise GraphcError(f"cannot read the ONNX file {what}: {err.strerror or err}") from None
    except DecodeError as err:
        raise UnsupportedOnnx(f"{what} is not a valid ONNX model (protobuf: {err})") from None
    except onnx.checker.ValidationError as err:  # e.g. external data pointing outside the model's folder
        raise UnsupportedOnnx(f"{what} was refused while loading: {err}") from None
    for init in model.graph.initializer:
        if init.data_location == onnx.TensorProto.EXTERNAL:
            raise UnsupportedOnnx(f"initializer {init.name!r} keeps its data in an external file that was not "
                                  "loaded; import the model from its file path (external data is then read from "
                                  "the model's folder)")
    return model


def _default_opset(model: Any) -> int:
    """The model's opset version of the default ONNX domain (1 when it names none)."""
    for entry in model.opset_import:
        if entry.domain in ("", "ai.onnx"):
            return int(entry.version)
    return 1


def _graph_input(graph: Graph, vi: Any, shape: Any) -> Node:
    """A ``g.input`` for a graph input's ValueInfoProto (static shape, or ``shape`` from input_shapes)."""
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


def _translate_node(ctx: ImportContext, node: OnnxNode, values: dict[str, Value]) -> None:
    """Run the node's translator on its inputs and record its outputs in ``values``."""
    # the one op of another domain graphc translates: Gradient of ai.onnx.preview.training (a gc.grad)
    preview_gradient = node.proto.domain == "ai.onnx.preview.training" and node.op_type == "Gradient"
    if node.proto.domain not in ("", "ai.onnx") and not preview_gradient:
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
    fold = FOLDERS.get(node.op_type)
    if fold is not None and inputs and ctx.foldable(inputs):  # import-time constants: NumPy, ONNX semantics
        with np.errstate(all="ignore"):
            results = [None if r is None else as_array(r, f"{node.label}: output") for r in fold(node, inputs)]
    else:
        try:
            results = func(ctx, node, inputs)
        except ShapeError as err:  # a graphc op refused the operands: name the ONNX node, not graphc's internals
            raise node.unsupported(str(err).split("\n  at ")[0]) from None
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
