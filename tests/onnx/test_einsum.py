"""ONNX Einsum: equations of one and two operands against ``numpy.einsum`` on both backends, gradients through the
lowered matmul, and clear refusals for what is not supported."""

from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper  # noqa: E402

import graphc as gc  # noqa: E402

CASES = [
    ("ij,jk->ik", [(3, 4), (4, 5)]),
    ("bij,bjk->bik", [(2, 3, 4), (2, 4, 5)]),
    ("BGHID,BGHJD->BGHIJ", [(1, 2, 3, 4, 5), (1, 2, 3, 6, 5)]),  # MaxViT's attention scores
    ("BGHIJ,BGHJD->BGHID", [(1, 2, 3, 4, 6), (1, 2, 3, 6, 5)]),  # ... and the weighted values
    ("ij,kj->ik", [(3, 4), (5, 4)]),
    ("i,j->ij", [(3,), (4,)]),
    ("i,i->", [(5,), (5,)]),
    ("ij,jk", [(3, 4), (4, 2)]),  # implicit output: labels seen once, alphabetical
    ("ijk,jl->lki", [(2, 3, 4), (3, 5)]),  # output order differs from both operands
    ("ij,jk->k", [(3, 4), (4, 2)]),  # i summed away in A alone before the product
    ("ij->ji", [(3, 4)]),
    ("ijk->j", [(2, 3, 4)]),
    ("ij->", [(3, 4)]),
]


def _model(equation: str, shapes: list[tuple[int, ...]]) -> onnx.ModelProto:
    names = [f"x{i}" for i in range(len(shapes))]
    node = helper.make_node("Einsum", names, ["y"], equation=equation)
    inputs = [helper.make_tensor_value_info(n, TensorProto.DOUBLE, s) for n, s in zip(names, shapes)]
    graph = helper.make_graph([node], "g", inputs, [helper.make_tensor_value_info("y", TensorProto.DOUBLE, None)])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("backend", ["numpy", "llvm"])
@pytest.mark.parametrize("equation,shapes", CASES)
def test_einsum_matches_numpy(equation: str, shapes: list[tuple[int, ...]], backend: str) -> None:
    rng = np.random.default_rng(len(equation))
    feeds = {f"x{i}": rng.standard_normal(s) for i, s in enumerate(shapes)}
    imported = gc.onnx.import_model(_model(equation, shapes))
    got = imported.compile(backend=backend)(**feeds)["y"]
    want = np.einsum(equation.replace(" ", ""), *feeds.values())
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("equation,shapes", [c for c in CASES if len(c[1]) == 2])
def test_einsum_gradients_match_finite_differences(equation: str, shapes: list[tuple[int, ...]]) -> None:
    rng = np.random.default_rng(1)
    feeds = {f"x{i}": rng.standard_normal(s) for i, s in enumerate(shapes)}
    imported = gc.onnx.import_model(_model(equation, shapes))
    y = imported.outputs["y"]
    loss = gc.sum(gc.mul(y, y)) if y.ndim else gc.mul(y, y)
    xs = [imported.graph.inputs[name] for name in feeds]
    gc.testing.check_grads(loss, xs, feeds)


@pytest.mark.parametrize("equation,shapes,message", [
    ("...ij,...jk->...ik", [(2, 3, 4), (2, 4, 5)], "ellipsis"),
    ("ii->i", [(3, 3)], "diagonal"),
    ("ij,jk->ik", [(3, 4), (1, 5)], "label 'j' has sizes 4 and 1"),
    ("ij,jk->iz", [(3, 4), (4, 5)], "each output label"),
])
def test_unsupported_einsum_is_named(equation: str, shapes: list, message: str) -> None:
    with pytest.raises(gc.onnx.UnsupportedOnnx, match=message):
        gc.onnx.import_model(_model(equation, shapes))
