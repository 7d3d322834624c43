"""ONNX import: ``gc.onnx.import_model(model_or_path)`` builds a graphc graph from an ONNX ``ModelProto``.

    imported = gc.onnx.import_model("model.onnx")
    prog = imported.compile(backend="numpy")
    out = prog(**{name: array for name in imported.inputs})

Graph inputs become ``g.input`` (static shapes; float32, float64, int64, bool); float initializers that are the
model's parameters become trainable params, BatchNormalization's running statistics non-trainable state, the rest
consts — the rule of ``graphc.onnx.trainable`` (the dynamo exporter's parameter metadata, weight inputs of Conv,
Gemm, MatMul ..., the names the PyTorch exporters give what they fold), ``import_model(trainable=...)`` to decide
otherwise, ``imported.trainable_names``/``constant_names``/``state_names``/``why(name)`` to see it; every
initializer is a const with ``initializers="consts"``. Each node goes through the translator registered for its
ONNX op type (``TRANSLATORS``). Values
needed at import time (a Reshape's shape, Reduce axes, Slice bounds) must be constants: initializers, ``Constant``
nodes, ``Shape`` of a static-shaped tensor, anything computed from those alone, or graph inputs given in
``static_inputs``. Whatever graphc cannot express raises :class:`UnsupportedOnnx` naming the op and the attribute,
dtype or input at fault. The ``onnx`` package is optional: only this package needs it.

Layout (each module imports only ``graphc.onnx.registry`` of this package, never the package itself):

- ``registry``: the translator registry (``translator``, ``TRANSLATORS``), the folder registry (``folder``,
  ``FOLDERS``) and what translators use: ``OnnxNode`` (attributes), ``ImportContext`` (graph, import-time values),
  ``UnsupportedOnnx`` and helpers (``as_array``, ``np_dtype_of``, ``shape_of``, ``dtype_of``, ``optional_input``,
  ``check_import_time_size``);
- ``importer``: ``import_model`` and ``ImportedModel`` (graph inputs, initializers, node dispatch: a node whose
  inputs are all import-time constants runs its folder when it has one, else its translator);
- ``trainable``: which float initializers are trainable params, state or constants (``decide``; its docstring
  records what each PyTorch exporter writes), and the checks of ``import_model(trainable=...)``;
- translators by op family, listed in ``TRANSLATOR_MODULES`` below: ``arith`` (elementwise math, comparisons,
  logic, Where, Cast), ``activation`` (Relu ... HardSigmoid, PRelu, Elu, Softplus, Gelu (tanh), Softmax, Clip),
  ``reduce`` (Reduce*), ``shape`` (Constant, ConstantOfShape, Range, Shape, Reshape, Transpose, Concat, Split,
  Expand, Tile, Pad, ...), ``indexing`` (Slice, Gather, GatherElements, GatherND), ``linalg`` (MatMul, Gemm),
  ``einsum`` (Einsum of one or two operands),
  ``nn`` (Conv, pooling, BatchNormalization, Dropout), ``loss`` (NegativeLogLikelihoodLoss,
  SoftmaxCrossEntropyLoss).

Adding a translator: write a function ``(ctx, node, inputs) -> outputs`` in the module of its family, with a short
docstring saying what it maps to, and decorate it with ``@translator("OpType")`` from ``graphc.onnx.registry``.
It must read every attribute it supports through ``node.attr`` (an unread attribute raises UnsupportedOnnx) and
raise ``node.unsupported(...)`` for what graphc cannot express. An op that shape arithmetic uses also gets a
folder, ``@folder("OpType")``: ``(node, arrays) -> arrays`` in NumPy with ONNX's semantics, which bounds what it
allocates with ``check_import_time_size``. A new module must be imported here and added to
``TRANSLATOR_MODULES``: registration happens by this explicit list, never by imports at the bottom of modules.
"""

from __future__ import annotations

import graphc.onnx.activation as activation
import graphc.onnx.arith as arith
import graphc.onnx.einsum as einsum
import graphc.onnx.indexing as indexing
import graphc.onnx.linalg as linalg
import graphc.onnx.loss as loss
import graphc.onnx.nn as nn
import graphc.onnx.reduce as reduce
import graphc.onnx.shape as shape
from graphc.onnx.importer import ImportedModel, import_model
from graphc.onnx.registry import FOLDERS, TRANSLATORS, ImportContext, OnnxNode, UnsupportedOnnx, folder, translator

# the translator modules; importing each registers its translators in TRANSLATORS
TRANSLATOR_MODULES = (activation, arith, einsum, indexing, linalg, loss, nn, reduce, shape)

__all__ = ["FOLDERS", "TRANSLATORS", "TRANSLATOR_MODULES", "ImportContext", "ImportedModel", "OnnxNode",
           "UnsupportedOnnx", "folder", "import_model", "translator"]
