"""The ``graphc.onnx`` package: its translator registry, the HardSwish/HardSigmoid translators and its imports."""

from __future__ import annotations

import ast
import importlib
import pkgutil
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper  # noqa: E402

import graphc.onnx as gonnx  # noqa: E402
from graphc.onnx.registry import TRANSLATORS, ImportContext, OnnxNode, UnsupportedOnnx, translator  # noqa: E402

PACKAGE_DIR = Path(gonnx.__file__).parent
SUPPORT_MODULES = {"graphc.onnx.importer", "graphc.onnx.registry", "graphc.onnx.trainable"}

# one known op per translator module
FAMILIES = {
    "graphc.onnx.arith": "Add", "graphc.onnx.activation": "HardSwish", "graphc.onnx.reduce": "ReduceSum",
    "graphc.onnx.shape": "Reshape", "graphc.onnx.indexing": "Gather", "graphc.onnx.linalg": "Gemm",
    "graphc.onnx.nn": "Conv", "graphc.onnx.loss": "SoftmaxCrossEntropyLoss", "graphc.onnx.einsum": "Einsum",
}


def _package_modules() -> list[str]:
    return sorted(f"graphc.onnx.{info.name}" for info in pkgutil.iter_modules([str(PACKAGE_DIR)]))


def test_public_face():
    for name in ("import_model", "ImportedModel", "UnsupportedOnnx", "translator", "TRANSLATORS", "OnnxNode",
                 "ImportContext"):
        assert getattr(gonnx, name) is not None
    assert gonnx.TRANSLATORS is TRANSLATORS and gonnx.UnsupportedOnnx is UnsupportedOnnx
    assert gonnx.ImportContext is ImportContext and gonnx.OnnxNode is OnnxNode and gonnx.translator is translator
    import graphc as gc

    assert gc.onnx is gonnx


def test_every_translator_module_is_imported_by_the_package():
    translator_modules = {m.__name__ for m in gonnx.TRANSLATOR_MODULES}
    assert translator_modules == set(_package_modules()) - SUPPORT_MODULES, "list new modules in TRANSLATOR_MODULES"
    assert set(FAMILIES) == translator_modules
    assert set(FAMILIES.values()) <= set(TRANSLATORS)
    for module, op in FAMILIES.items():
        assert TRANSLATORS[op].__module__ == module
    registering = {func.__module__ for func in TRANSLATORS.values()}
    assert registering == translator_modules  # each module registers something; nothing registers elsewhere


def _imports(module: str) -> set[str]:
    """Modules that ``module`` imports anywhere (function level too); ``from X import Y`` imports X and X.Y."""
    path = PACKAGE_DIR / ("__init__.py" if module == "graphc.onnx" else f"{module.rsplit('.', 1)[1]}.py")
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{module}: use absolute imports"
            base = node.module or ""
            out.add(base)
            out |= {f"{base}.{alias.name}" for alias in node.names}
    return out


def test_package_import_rules():
    """No module of the package imports the package itself or the bare ``graphc``; no cycles inside it."""
    modules = ["graphc.onnx", *_package_modules()]
    edges = {m: {i for i in _imports(m) if i in modules} for m in modules}
    for module in modules:
        imported = _imports(module)
        assert "graphc" not in imported, f"{module} imports the bare graphc package"
        assert "graphc.onnx" not in imported, f"{module} imports graphc.onnx (import from graphc.onnx.registry)"
        importlib.import_module(module)

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        for nxt in edges[start]:
            if nxt == goal or (nxt not in seen and (seen.add(nxt) or reaches(nxt, goal, seen))):
                return True
        return False

    cyclic = [m for m in modules if reaches(m, m, set())]
    assert not cyclic, f"import cycle through {cyclic}"


# ---------------------------------------------------------------------------------------------- HardSwish/HardSigmoid


def _unary_model(op_type: str, shape: tuple[int, ...], **attrs: float) -> onnx.ModelProto:
    node = helper.make_node(op_type, ["x"], ["y"], **attrs)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 22)])


def _run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    return gonnx.import_model(model).compile(backend="numpy")(x=x)["y"]


X = np.linspace(-5.0, 5.0, 41, dtype=np.float32).reshape(1, 41)


def test_hard_swish_matches_numpy():
    got = _run(_unary_model("HardSwish", X.shape), X)
    want = X * np.clip(X / 6.0 + 0.5, 0.0, 1.0)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("attrs", [{}, {"alpha": 0.5, "beta": 0.6}, {"alpha": 1 / 6}])
def test_hard_sigmoid_matches_numpy(attrs):
    imported = gonnx.import_model(_unary_model("HardSigmoid", X.shape, **attrs))
    node = imported.outputs["y"]
    assert node.op == "hard_sigmoid"
    alpha, beta = attrs.get("alpha", 0.2), attrs.get("beta", 0.5)  # ONNX's defaults, not graphc's 1/6
    assert node.attrs["alpha"] == pytest.approx(alpha) and node.attrs["beta"] == pytest.approx(beta)
    got = imported.compile(backend="numpy")(x=X)["y"]
    np.testing.assert_allclose(got, np.clip(alpha * X + beta, 0.0, 1.0), rtol=1e-6, atol=1e-6)


def test_hard_sigmoid_rejects_non_positive_alpha():
    with pytest.raises(UnsupportedOnnx, match="HardSigmoid node: alpha -0.5 is not supported"):
        gonnx.import_model(_unary_model("HardSigmoid", X.shape, alpha=-0.5))
