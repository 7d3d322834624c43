"""graphc: a symbolic computational-graph compiler for deep learning.

    import graphc as gc
    g = gc.Graph("apple")
    apple, num, tax = g.input("apple"), g.input("num"), g.input("tax")
    price = apple * num * tax
    d_apple, d_num, d_tax = gc.grad(price, [apple, num, tax])
    prog = gc.compile({"price": price, "d_apple": d_apple, "d_num": d_num, "d_tax": d_tax})
    prog(apple=100.0, num=2.0, tax=1.1)   # price 220, d_apple 2.2, d_num 110, d_tax 200

This module is the public face and nothing else: every name below is loaded on first use (PEP 562), so
``import graphc`` is cheap and importing a lower layer (``graphc.ir``, ``ops``, ``passes``, ``codegen``,
``runtime``) never runs the user API. Layers, bottom up (each imports only the ones before it):

- ``graphc.ir``: the IR (tensor types, nodes, graphs, errors);
- ``ops``: one class per op (inference, NumPy reference, VJP, scalar formula, fusion and cost facets);
- ``passes``: autodiff, then the compile pipeline (simplify, decompose, fuse, schedule, memplan) to a Plan;
- ``codegen``: Plan → LLVM IR → native code (target, JIT, object cache);
- ``runtime``: programs that run a Plan (the NumPy interpreter and the native backend);
- the user API, here in ``graphc``: ``compile``/``grad``, op builders, ``nn``, ``optim``, ``init``, ``data``,
  ``regularizers``, ``testing``, ``viz`` (``render``), ``onnx`` (ONNX import), ``dump``, ``bench``, ``cli``.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> the module that defines it (the op builders live in ``ops.fn``)
_BUILDERS = (
    "abs", "add", "avg_pool2d", "batch_norm", "binary_cross_entropy", "broadcast_to", "cast", "clip", "concat",
    "conv2d", "div", "dropout", "elu", "equal", "exp", "flatten", "gelu", "global_avg_pool2d", "greater",
    "hard_sigmoid", "hard_swish", "leaky_relu", "log", "log_softmax", "mae", "matmul", "max", "max_pool2d",
    "maximum", "mean", "minimum", "mse", "mul", "neg", "one_hot", "pad", "pow", "prelu", "relu", "reshape",
    "sigmoid", "sigmoid_binary_cross_entropy", "sign", "softmax", "softmax_cross_entropy", "softplus", "sqrt", "sub",
    "sum", "tanh", "transpose", "where",
)
_NAMES: dict[str, str] = {
    **{name: "graphc.ir" for name in ("FeedError", "GradientError", "Graph", "GraphcError", "Node", "ShapeError",
                                      "Tensor", "TensorType")},
    "compile": "graphc.api", "grad": "graphc.api", "verify": "passes.verify", "render": "graphc.viz",
    "l1": "graphc.regularizers", "l2": "graphc.regularizers",
    **{name: "ops.fn" for name in _BUILDERS},
}
_SUBMODULES = ("api", "bench", "cli", "data", "dump", "init", "ir", "nn", "onnx", "optim", "regularizers", "testing",
               "viz")

__all__ = sorted(_NAMES) + list(_SUBMODULES)


def __getattr__(name: str) -> Any:
    """Load a public name on first use and keep it in this module's namespace."""
    if name in _NAMES:
        importlib.import_module("ops")  # installs the tensor operators (x + y, x @ w, ...) on graphc.ir.Node
        value = getattr(importlib.import_module(_NAMES[name]), name)
    elif name in _SUBMODULES:
        importlib.import_module("ops")
        value = importlib.import_module(f"graphc.{name}")
    else:
        raise AttributeError(f"module 'graphc' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
