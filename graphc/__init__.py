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

# public name -> the module that defines it; the op builders are the names in ``ops.fn.__all__``
_NAMES: dict[str, str] = {
    **{name: "graphc.ir" for name in ("FeedError", "GradientError", "Graph", "GraphcError", "Node", "ShapeError",
                                      "Tensor", "TensorType")},
    "compile": "graphc.api", "grad": "graphc.api", "verify": "passes.verify", "render": "graphc.viz",
    "l1": "graphc.regularizers", "l2": "graphc.regularizers", "name_scope": "graphc.ir",
}
_SUBMODULES = ("api", "bench", "cli", "data", "distributed", "dump", "init", "ir", "nn", "onnx", "optim",
               "regularizers", "testing", "viz")


def _builders() -> list[str]:
    return list(importlib.import_module("ops.fn").__all__)


def __getattr__(name: str) -> Any:
    """Load a public name on first use and keep it in this module's namespace."""
    if name == "__all__":
        value: Any = sorted([*_NAMES, *_builders()]) + list(_SUBMODULES)
    elif name in _NAMES:
        importlib.import_module("ops")  # installs the tensor operators (x + y, x @ w, ...) on graphc.ir.Node
        value = getattr(importlib.import_module(_NAMES[name]), name)
    elif name in _SUBMODULES:
        importlib.import_module("ops")
        value = importlib.import_module(f"graphc.{name}")
    elif not name.startswith("_") and name in _builders():
        value = getattr(importlib.import_module("ops.fn"), name)
    else:
        raise AttributeError(f"module 'graphc' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__getattr__("__all__")))
