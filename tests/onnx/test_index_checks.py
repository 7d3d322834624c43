"""Out-of-range indices in imported models are errors when the program runs (both backends): Gather and
GatherElements indices, NegativeLogLikelihoodLoss and SoftmaxCrossEntropyLoss labels. The ignore_index value
stays the only label that is skipped."""

from __future__ import annotations

import numpy as np
import pytest

import graphc as gc

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper  # noqa: E402

BACKENDS = ["numpy", "llvm"]


def model(node, inputs, outputs, opset=13):
    graph = helper.make_graph([node], "m", inputs, outputs)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def tensor(name, elem, shape):
    return helper.make_tensor_value_info(name, elem, shape)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("bad", [3, 5, -4, -10])
def test_gather_index_outside_the_axis_is_an_error(backend, bad):
    m = model(helper.make_node("Gather", ["x", "i"], ["y"], axis=0),
              [tensor("x", TensorProto.FLOAT, [3, 2]), tensor("i", TensorProto.INT64, [2])],
              [tensor("y", TensorProto.FLOAT, [2, 2])])
    prog = gc.onnx.import_model(m).compile(backend=backend)
    x = np.arange(6, dtype=np.float32).reshape(3, 2)
    np.testing.assert_array_equal(prog(x=x, i=np.array([2, -3]))["y"], x[[2, -3]])  # valid, negative included
    with pytest.raises(gc.GraphcError, match=r"check_index.*outside \[-3, 3\)|index -?\d+ is outside \[-3, 3\)"):
        prog(x=x, i=np.array([0, bad]))


@pytest.mark.parametrize("backend", BACKENDS)
def test_gather_elements_index_outside_is_an_error(backend):
    m = model(helper.make_node("GatherElements", ["x", "i"], ["y"], axis=1),
              [tensor("x", TensorProto.FLOAT, [2, 3]), tensor("i", TensorProto.INT64, [2, 2])],
              [tensor("y", TensorProto.FLOAT, [2, 2])])
    prog = gc.onnx.import_model(m).compile(backend=backend)
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    prog(x=x, i=np.array([[0, 2], [1, -1]]))
    with pytest.raises(gc.GraphcError, match="outside"):
        prog(x=x, i=np.array([[0, 3], [1, 0]]))


@pytest.mark.parametrize("backend", BACKENDS)
def test_nll_label_outside_the_classes_is_an_error_and_ignore_index_is_skipped(backend):
    node = helper.make_node("NegativeLogLikelihoodLoss", ["p", "t"], ["loss"], reduction="sum", ignore_index=-1)
    m = model(node, [tensor("p", TensorProto.FLOAT, [4, 3]), tensor("t", TensorProto.INT64, [4])],
              [tensor("loss", TensorProto.FLOAT, [])])
    prog = gc.onnx.import_model(m).compile(backend=backend)
    p = -np.arange(12, dtype=np.float32).reshape(4, 3)
    assert float(prog(p=p, t=np.array([0, -1, 2, 1]))["loss"]) == pytest.approx(-(p[0, 0] + p[2, 2] + p[3, 1]))
    for bad in (7, 3, -2):
        with pytest.raises(gc.GraphcError, match=r"outside \[0, 3\) \(or the ignore_index -1\)"):
            prog(p=p, t=np.array([0, bad, 2, 1]))


@pytest.mark.parametrize("backend", BACKENDS)
def test_softmax_cross_entropy_label_outside_is_an_error(backend):
    node = helper.make_node("SoftmaxCrossEntropyLoss", ["z", "t"], ["loss"], ignore_index=1)
    m = model(node, [tensor("z", TensorProto.FLOAT, [3, 4]), tensor("t", TensorProto.INT64, [3])],
              [tensor("loss", TensorProto.FLOAT, [])])
    prog = gc.onnx.import_model(m).compile(backend=backend)
    z = np.zeros((3, 4), np.float32)
    assert np.isfinite(prog(z=z, t=np.array([0, 1, 3]))["loss"])
    with pytest.raises(gc.GraphcError, match="outside"):
        prog(z=z, t=np.array([0, -3, 3]))
