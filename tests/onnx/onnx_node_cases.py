"""ONNX backend node cases, built in memory once per session.

``onnx.backend.test.loader.load_model_tests(kind="node")`` in this onnx version runs the case generators of
``onnx.backend.test.case.node`` in memory (no files, no network): each case carries ``model``,
``data_sets[0] == (inputs, outputs)``, ``rtol`` and ``atol``.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

# The ops graphc's importer supports (issue 3); each single-node case of these, and its *_expanded variants.
SUPPORTED_OPS = (
    "Add", "Sub", "Mul", "Div", "Relu", "LeakyRelu", "Sigmoid", "Tanh", "Exp", "Log", "Gemm", "MatMul", "Conv",
    "MaxPool", "AveragePool", "GlobalAveragePool", "Softmax", "LogSoftmax", "ReduceSum", "ReduceMean", "Reshape",
    "Transpose", "Flatten", "Concat", "BatchNormalization", "Dropout", "SoftmaxCrossEntropyLoss",
    "NegativeLogLikelihoodLoss", "HardSwish", "HardSigmoid", "Clip",
    # issue 10 (real models): translators onto existing graphc ops, shape ops that fold at import time
    "PRelu", "Elu", "Selu", "Celu", "Softplus", "Softsign", "Mish", "ThresholdedRelu", "Swish", "Gelu",
    "Equal", "Greater", "Less", "GreaterOrEqual", "LessOrEqual", "Not", "And", "Or", "Xor", "Where", "Mean",
    "Expand", "Tile", "ConstantOfShape", "Range", "Split", "Pad", "Gather", "GatherND", "Slice", "Squeeze",
    "Unsqueeze", "Shape", "Size", "ReduceL1", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp", "LayerNormalization",
    "Mod", "ScatterND",
    # issue 10 item 2: new graphc ops
    "Erf", "InstanceNormalization", "LRN", "ConvTranspose", "Shrink", "Einsum",
)


@functools.lru_cache(maxsize=1)
def onnx_cases() -> dict[str, tuple[str, Any]]:
    """case name → (op label, case) for every case of a supported op; built once per session."""
    try:
        import onnx.backend.test.loader as loader
    except ImportError:
        return {}
    import warnings

    np.random.seed(0)
    with warnings.catch_warnings():  # some unrelated generators overflow on purpose
        warnings.simplefilter("ignore")
        cases = loader.load_model_tests(kind="node")
    single = {}
    for case in cases:
        nodes = case.model.graph.node if case.model is not None else []
        if len(nodes) == 1 and nodes[0].op_type in SUPPORTED_OPS and "_expanded" not in case.name:
            single[case.name] = nodes[0].op_type
    selected = {}
    for case in cases:
        base, expanded, _ = case.name.partition("_expanded")
        if base in single:
            selected[case.name] = (single[base] + (" (expanded)" if expanded else ""), case)
    return dict(sorted(selected.items()))
