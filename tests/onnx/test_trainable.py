"""Which float initializers an imported model trains (``graphc.onnx.trainable``), on hand-made files: weight slots,
the PyTorch exporters' names and metadata, scalars, BatchNormalization state, the ``trainable=`` option and its
errors. Against PyTorch itself (both exporters, SGD steps): tests/onnx/test_trainable_torch.py."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

import graphc as gc  # noqa: E402
from graphc.onnx.trainable import TORCH_KIND  # noqa: E402

RNG = np.random.default_rng(0)


def _f32(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


# y = bn(prelu(x @ W + b) * scale + eps, ...) @ Transpose(V): every kind of initializer the rule tells apart
INITS = {"W": _f32(4, 3), "b": _f32(3), "scale": np.array([0.5], np.float32), "eps": np.array(1e-3, np.float32),
         "slope": np.array([0.25], np.float32), "bn_scale": _f32(3), "bn_bias": _f32(3), "mean": _f32(3),
         "var": RNG.uniform(0.5, 1.5, 3).astype(np.float32), "V": _f32(2, 3), "axes": np.array([2], np.int64)}


def _model(rename: dict[str, str] | None = None, producer: str = "",
           kinds: dict[str, str] | None = None) -> onnx.ModelProto:
    """The model above with initializers renamed (old → new name), its producer name and dynamo-style
    ``InputSpec.kind`` metadata on some values."""
    r = (rename or {}).get
    inits = {r(k, k): v for k, v in INITS.items()}
    nodes = [helper.make_node("MatMul", ["x", r("W", "W")], ["h"]), helper.make_node("Add", ["h", r("b", "b")], ["h1"]),
             helper.make_node("PRelu", ["h1", "slope"], ["h2"]),
             helper.make_node("Mul", ["h2", r("scale", "scale")], ["h3"]),
             helper.make_node("Add", ["h3", r("eps", "eps")], ["h4"]),
             helper.make_node("Unsqueeze", ["h4", "axes"], ["h5"]),
             helper.make_node("BatchNormalization", ["h5", "bn_scale", "bn_bias", "mean", "var"], ["h6"]),
             helper.make_node("Squeeze", ["h6", "axes"], ["h7"]), helper.make_node("Transpose", ["V"], ["Vt"]),
             helper.make_node("MatMul", ["h7", "Vt"], ["y"])]
    graph = helper.make_graph(nodes, "m", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [5, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [5, 2])],
                              [numpy_helper.from_array(v, k) for k, v in inits.items()])
    for name, kind in (kinds or {}).items():
        vi = helper.make_tensor_value_info(name, TensorProto.FLOAT, list(inits[name].shape))
        helper.set_metadata_props(vi, {TORCH_KIND: kind})
        graph.value_info.append(vi)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.producer_name = producer
    return model


def test_weights_train_scalars_are_constants_running_statistics_are_state():
    imported = gc.onnx.import_model(_model())
    assert set(imported.trainable_names) == {"W", "b", "slope", "bn_scale", "bn_bias", "V"}
    assert set(imported.constant_names) == {"scale", "eps"}  # integer initializers (axes) are never listed
    assert imported.state_names == ("mean", "var")
    graph = imported.graph
    assert graph.trainable == set(imported.trainable_names)
    assert not {"scale", "eps"} & set(graph.params)
    assert "weight" in imported.why("slope") and "input 1 of PRelu" in imported.why("slope")
    assert "input 1 of MatMul" in imported.why("V")  # read through the Transpose
    assert imported.why("eps").startswith("'eps': constant (a scalar")
    assert "running statistics" in imported.why("mean")
    with pytest.raises(gc.GraphcError, match="no float initializer 'axes'"):
        imported.why("axes")


def test_the_constants_stay_unchanged_while_the_weights_train():
    imported = gc.onnx.import_model(_model())
    loss = gc.sum(gc.mul(imported.outputs["y"], imported.outputs["y"]))
    updates = gc.optim.SGD(lr=0.1).minimize(loss)
    assert {p.name for p in updates if p.op == "param"} >= set(imported.trainable_names)
    step = gc.compile({"loss": loss}, backend="numpy", updates=updates)
    first = float(step(x=_f32(5, 4))["loss"])
    consts = [n.attrs["value"] for n in imported.graph.nodes if n.op == "const" and n.attrs["value"].size == 1]
    assert any(np.array_equal(c, INITS["scale"]) for c in consts)
    assert not np.array_equal(imported.graph.state["W"], INITS["W"])
    np.testing.assert_array_equal(imported.graph.state["mean"], INITS["mean"])
    assert np.isfinite(first)


def test_pytorch_names_tell_folded_constants_from_module_paths():
    """A TorchScript export: ``onnx::`` names (and dynamo's ``val_<n>``) are values the exporter computed, constant
    unless read as a weight (``onnx::MatMul_5``, a transposed Linear weight); any other name is a module path, a
    parameter, a scalar too."""
    rename = {"W": "onnx::MatMul_5", "b": "onnx::Add_7", "scale": "val_3", "eps": "logit_scale"}
    imported = gc.onnx.import_model(_model(rename, producer="pytorch"))
    assert set(imported.constant_names) == {"onnx::Add_7", "val_3"}
    assert "computed by the exporter (its name)" in imported.why("onnx::Add_7")
    assert {"onnx::MatMul_5", "logit_scale"} <= set(imported.trainable_names)
    assert "module path" in imported.why("logit_scale")
    assert "b" in gc.onnx.import_model(_model(producer="other")).trainable_names  # no evidence: size decides


def test_dynamo_metadata_decides_first():
    """The dynamo exporter's InputSpec kind: PARAMETER trains (a scalar too), BUFFER and CONSTANT_TENSOR do not
    (even as a MatMul weight); values without it in such a file are what the exporter folded."""
    model = _model(producer="pytorch", kinds={"scale": "PARAMETER", "V": "BUFFER", "W": "CONSTANT_TENSOR",
                                              "mean": "BUFFER"})
    imported = gc.onnx.import_model(model)
    assert "scale" in imported.trainable_names and "marks it a parameter" in imported.why("scale")
    assert {"V", "W"} <= set(imported.constant_names) and "marks it a buffer" in imported.why("V")
    assert "constant tensor" in imported.why("W")
    assert "b" in imported.constant_names and "dynamo exporter" in imported.why("b")  # no metadata, no weight
    assert "slope" in imported.trainable_names  # a weight slot, metadata or not
    assert imported.state_names == ("mean", "var")


def test_trainable_option_decides_instead():
    everything = gc.onnx.import_model(_model(), trainable=lambda name, array: True)
    assert set(everything.trainable_names) == set(INITS) - {"axes", "mean", "var"}
    assert everything.state_names == ("mean", "var")  # state either way
    head_only = gc.onnx.import_model(_model(), trainable={"V"})
    assert head_only.trainable_names == ("V",) and head_only.graph.trainable == {"V"}
    assert "not in trainable=" in head_only.why("W")
    adjusted = gc.onnx.import_model(_model(), trainable={"eps": True, "W": False})
    assert set(adjusted.trainable_names) == {"b", "slope", "bn_scale", "bn_bias", "V", "eps"}
    assert "trainable= maps it to False" in adjusted.why("W")
    seen = {}

    def predicate(name: str, array: np.ndarray) -> bool:
        seen[name] = array
        return array.ndim == 2

    assert set(gc.onnx.import_model(_model(), trainable=predicate).trainable_names) == {"W", "V"}
    assert set(seen) == set(INITS) - {"axes", "mean", "var"}  # asked about every float initializer but state
    assert not seen["W"].flags.writeable


def test_an_initializer_no_op_reads_as_a_tensor_is_no_param():
    """An initializer no node reads as a tensor is a constant, whatever the decision."""
    model = _model()
    model.graph.initializer.append(numpy_helper.from_array(_f32(2, 2), "unused"))
    imported = gc.onnx.import_model(model, trainable={"unused": True})
    assert "unused" in imported.constant_names and "no op reads it" in imported.why("unused")


@pytest.mark.parametrize(("trainable", "message"), [
    (True, r"got True \(every float initializer: lambda name, array: True; none: \(\)\)"),
    ("W", r"got the string 'W' \(one name: \['W'\]\)"),
    (3, "got int"),
    ([1], r"1 \(int\) is not a name"),
    ({"W": 1}, r"maps names to True or False; 'W' maps to 1"),
    (["Wx"], r"names 'Wx', which is no initializer of the model; similar: \['W'\]"),
    (["axes"], "an initializer of dtype int64; only float initializers can be trained"),
    ({"mean": False}, r"'mean', BatchNormalization running statistics \(input 3 of BatchNormalization\)"),
    (lambda name, array: 1, "trainable\\(name, array\\) must return True or False; it returned 1 for initializer"),
    (lambda name, array: {}[name], r"trainable\('W', array\) raised KeyError: 'W'"),
])
def test_bad_trainable_values_are_clear_errors(trainable, message):
    with pytest.raises(gc.GraphcError, match=message):
        gc.onnx.import_model(_model(), trainable=trainable)


def test_trainable_contradicts_constant_initializers():
    with pytest.raises(gc.GraphcError, match="trainable= chooses the params among the initializers; inference=True"):
        gc.onnx.import_model(_model(), inference=True, trainable=["W"])
    with pytest.raises(gc.GraphcError, match="initializers='consts' makes them all constants"):
        gc.onnx.import_model(_model(), initializers="consts", trainable=["W"])
    frozen = gc.onnx.import_model(_model(), initializers="consts")
    assert frozen.trainable_names == () and frozen.state_names == ()
    assert set(frozen.constant_names) == set(INITS) - {"axes"}
    assert "initializers='consts'" in frozen.why("W")
    assert "inference=True" in gc.onnx.import_model(_model(), inference=True).why("W")


def _dynamo_like() -> onnx.ModelProto:
    """A file as dynamo's optimizer leaves it: ``W`` a parameter (metadata), ``bias`` a value it computed that the
    graph adds (maybe from parameters: a relative-position bias), ``mask``/``fill`` values it computed that only
    ScatterND reads (an attention mask's construction, import-time only in graphc)."""
    inits = {"W": _f32(2, 2), "bias": _f32(2, 2), "mask": np.zeros((2, 2), np.float32),
             "fill": np.full((1, 2), -100.0, np.float32), "row": np.array([[0]], np.int64)}
    nodes = [helper.make_node("MatMul", ["x", "W"], ["h"]), helper.make_node("Add", ["h", "bias"], ["h1"]),
             helper.make_node("ScatterND", ["mask", "row", "fill"], ["m"]), helper.make_node("Add", ["h1", "m"], ["y"])]
    graph = helper.make_graph(nodes, "m", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 2])],
                              [numpy_helper.from_array(v, k) for k, v in inits.items()])
    vi = helper.make_tensor_value_info("W", TensorProto.FLOAT, [2, 2])
    helper.set_metadata_props(vi, {TORCH_KIND: "PARAMETER"})
    graph.value_info.append(vi)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.producer_name = "pytorch"
    return model


def test_training_warns_about_constants_the_exporter_may_have_folded_from_parameters():
    model = _dynamo_like()
    with pytest.warns(UserWarning, match=r"1 initializer\(s\) the exporter computed are constants, not trained: "
                                         r"'bias' \[2, 2\]\. If they come from parameters"):
        imported = gc.onnx.import_model(model, training=True)
    assert imported.trainable_names == ("W",)
    assert set(imported.constant_names) == {"bias", "mask", "fill"}
    x, value = _f32(2, 2), {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    want = x @ value["W"] + value["bias"] + np.array([[-100.0, -100.0], [0.0, 0.0]])
    np.testing.assert_allclose(imported.compile(backend="numpy")(x=x)["y"], want, rtol=1e-5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        gc.onnx.import_model(_dynamo_like())  # not training: no warning
        assert "bias" in gc.onnx.import_model(_dynamo_like(), training=True, trainable={"bias": True}).trainable_names

