"""The ONNX translators real exported models need (issue 10), without PyTorch: import-time folding of shape
arithmetic, Split, Gather/GatherND, the activations that map onto existing graphc ops, logic, Expand/Tile/Pad/
ConstantOfShape/Range, the extra reductions, and BatchNormalization's running statistics as non-trainable state.
Every translator runs on both backends against a NumPy reference."""

from __future__ import annotations

import math

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

import graphc as gc  # noqa: E402

BACKENDS = ("numpy", "llvm")
DTYPES = {np.dtype("float32"): TensorProto.FLOAT, np.dtype("float64"): TensorProto.DOUBLE,
          np.dtype("int64"): TensorProto.INT64, np.dtype("bool"): TensorProto.BOOL}
RNG = np.random.default_rng(0)


def make_model(nodes, inputs: dict, outputs: list[str], inits: dict | None = None, opset: int = 18):
    """A model of ``nodes`` with runtime ``inputs`` (name → example array) and ``inits`` (name → initializer)."""
    graph = helper.make_graph(
        nodes, "m", [helper.make_tensor_value_info(k, DTYPES[v.dtype], v.shape) for k, v in inputs.items()],
        [helper.make_tensor_value_info(name, TensorProto.UNDEFINED, None) for name in outputs],
        [numpy_helper.from_array(np.asarray(v), k) for k, v in (inits or {}).items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def const(name: str, value) -> onnx.NodeProto:
    return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(np.asarray(value), name))


def run(model, feeds: dict, backend: str, **options) -> dict:
    imported = gc.onnx.import_model(model, **options)
    return imported.compile(backend=backend)(**{k: feeds[k] for k in imported.inputs})


def f32(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


# ---------------------------------------------------------------------------------------------- folding


@pytest.mark.parametrize("backend", BACKENDS)
def test_shufflenet_shape_arithmetic_folds_at_import(backend):
    """ShuffleNet-v2's chunk as the TorchScript exporter writes it: Shape → Gather → Add → integer Div → Mul →
    Slice; the integer Div (which graphc's div refuses) folds with ONNX's semantics and leaves no node behind."""
    x = f32(1, 6, 2, 2)
    nodes = [helper.make_node("Shape", ["x"], ["s"]), const("one", np.array(1)), const("zero", np.array([0])),
             helper.make_node("Gather", ["s", "one"], ["c"], axis=0), const("k1", np.array(1)),
             helper.make_node("Add", ["c", "k1"], ["c1"]), const("two", np.array(2)),
             helper.make_node("Div", ["c1", "two"], ["half"]),  # (6 + 1) // 2 = 3
             helper.make_node("Unsqueeze", ["half", "zero"], ["end"]), const("ax", np.array([1])),
             helper.make_node("Slice", ["x", "zero", "end", "ax"], ["y"])]
    model = make_model(nodes, {"x": x}, ["y"], opset=17)
    imported = gc.onnx.import_model(model)
    ops = {n.op for n in gc.ir.topo_ancestors(list(imported.outputs.values()))}
    assert "div" not in ops and "add" not in ops and "one_hot" not in ops
    np.testing.assert_array_equal(run(model, {"x": x}, backend)["y"], x[:, :3])


@pytest.mark.parametrize("backend", BACKENDS)
def test_integer_div_folds_toward_zero(backend):
    nodes = [const("a", np.array([-7, 7, 7, -8])), const("b", np.array([2, -2, 2, -4])),
             helper.make_node("Div", ["a", "b"], ["q"]), helper.make_node("Cast", ["q"], ["f"], to=TensorProto.FLOAT),
             helper.make_node("Mul", ["x", "f"], ["y"])]
    x = f32(4)
    np.testing.assert_allclose(run(make_model(nodes, {"x": x}, ["y"]), {"x": x}, backend)["y"],
                               x * np.array([-3, -3, 3, 2], np.float32))


def test_integer_div_of_runtime_tensors_names_the_node():
    node = helper.make_node("Div", ["a", "b"], ["y"], name="div7")
    model = make_model([node], {"a": np.ones(2, np.int64), "b": np.ones(2, np.int64)}, ["y"])
    with pytest.raises(gc.onnx.UnsupportedOnnx, match=r"Div node 'div7': int64 operands are supported only as "
                                                      r"import-time constants"):
        gc.onnx.import_model(model)


def test_graphc_refusal_names_the_onnx_node():
    node = helper.make_node("Add", ["a", "b"], ["y"], name="add3")
    model = make_model([node], {"a": f32(2, 3), "b": f32(4)}, ["y"])
    with pytest.raises(gc.onnx.UnsupportedOnnx, match=r"Add node 'add3': add\(float32\[2, 3\], float32\[4\]\)"):
        gc.onnx.import_model(model)


def test_folding_keeps_float_initializers_trainable():
    """Mul(W, 2) with W an initializer: W stays a param (folding would freeze it); with consts it folds."""
    nodes = [const("two", np.array(2.0, np.float32)), helper.make_node("Mul", ["W", "two"], ["w2"]),
             helper.make_node("MatMul", ["x", "w2"], ["y"])]
    model = make_model(nodes, {"x": f32(2, 3)}, ["y"], inits={"W": f32(3, 4)})
    assert "W" in gc.onnx.import_model(model).graph.trainable
    frozen = gc.onnx.import_model(model, initializers="consts")
    assert "mul" not in {n.op for n in gc.ir.topo_ancestors(list(frozen.outputs.values()))}


def test_every_folder_has_a_translator():
    """A folder only replaces a translator on constant inputs; tensors still need the translator."""
    assert set(gc.onnx.FOLDERS) <= set(gc.onnx.TRANSLATORS)
    assert {"Add", "Div", "Gather", "Concat", "Reshape", "Slice", "Split", "Cast", "Unsqueeze"} <= set(gc.onnx.FOLDERS)


def test_import_time_arrays_are_bounded():
    node = helper.make_node("ConstantOfShape", ["s"], ["y"])
    model = make_model([const("s", np.array([1 << 20, 1 << 20])), node], {}, ["y"])
    with pytest.raises(gc.onnx.UnsupportedOnnx, match="ConstantOfShape node: the import-time constant of shape"):
        gc.onnx.import_model(model)


# ---------------------------------------------------------------------------------------------- Split, Gather


SPLITS = [  # (opset, attributes, split input or None, number of outputs, expected sizes)
    (18, {"axis": 1, "num_outputs": 3}, None, 3, [3, 3, 1]),
    (13, {"axis": 1}, np.array([2, 5]), 2, [2, 5]),
    (13, {"axis": -1}, None, 2, [2, 2]),
    (11, {"axis": 1, "split": [4, 3]}, None, 2, [4, 3]),
]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("opset, attrs, split, count, sizes", SPLITS)
def test_split(backend, opset, attrs, split, count, sizes):
    x = f32(2, 7, 4)
    outs = [f"y{i}" for i in range(count)]
    inputs = ["x"] + (["split"] if split is not None else [])
    model = make_model([helper.make_node("Split", inputs, outs, **attrs)], {"x": x}, outs,
                       inits={} if split is None else {"split": split}, opset=opset)
    got = run(model, {"x": x}, backend)
    axis = attrs["axis"]
    want = np.split(x, np.cumsum(sizes)[:-1], axis=axis)
    for name, part in zip(outs, want):
        np.testing.assert_array_equal(got[name], part)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("indices, op", [(np.array(-1), "slice"), (np.array([3, 1]), "slice"),
                                         (np.array([0, 2, 3]), "sum"), (np.array([[1, 0], [3, -4]]), "sum")])
def test_gather_with_constant_indices(backend, indices, op):
    """Constant scalar or arithmetic-progression indices become a slice; others a one-hot contraction."""
    x = f32(3, 4, 2)
    model = make_model([helper.make_node("Gather", ["x", "i"], ["y"], axis=1)], {"x": x}, ["y"], inits={"i": indices})
    assert gc.onnx.import_model(model).outputs["y"].op == op
    np.testing.assert_array_equal(run(model, {"x": x}, backend)["y"], np.take(x, indices, axis=1))


def test_gather_constant_index_out_of_range_is_refused():
    model = make_model([helper.make_node("Gather", ["x", "i"], ["y"], axis=0)], {"x": f32(3)}, ["y"],
                       inits={"i": np.array([3])})
    with pytest.raises(gc.onnx.UnsupportedOnnx, match=r"Gather node: index 3 is outside \[-3, 3\)"):
        gc.onnx.import_model(model)


def _gather_nd(data: np.ndarray, idx: np.ndarray) -> np.ndarray:
    k = idx.shape[-1]
    return data[tuple(np.moveaxis(idx, -1, 0))] if k else np.broadcast_to(data, idx.shape[:-1] + data.shape)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("constant", [True, False])
def test_gather_nd(backend, constant):
    """GatherND with constant indices (the dynamo exporter's adaptive pooling) and runtime indices."""
    x = f32(3, 4, 5)
    idx = np.array([[[0, 1], [2, -1]], [[1, 3], [-3, 0]]], np.int64)
    node = helper.make_node("GatherND", ["x", "i"], ["y"])
    inputs, inits = ({"x": x}, {"i": idx}) if constant else ({"x": x, "i": idx}, {})
    got = run(make_model([node], inputs, ["y"], inits=inits), {"x": x, "i": idx}, backend)["y"]
    np.testing.assert_array_equal(got, _gather_nd(x, idx))


def test_gather_nd_batch_dims_is_refused():
    node = helper.make_node("GatherND", ["x", "i"], ["y"], batch_dims=1)
    model = make_model([node], {"x": f32(2, 3), "i": np.zeros((2, 1), np.int64)}, ["y"])
    with pytest.raises(gc.onnx.UnsupportedOnnx, match="GatherND node: batch_dims=1 is not supported"):
        gc.onnx.import_model(model)


# ---------------------------------------------------------------------------------------------- activations


def _elu(x, alpha=1.0):
    return np.where(x > 0, x, alpha * np.expm1(np.minimum(x, 0)))


def _softplus(x):
    return np.logaddexp(0, x)


ACTIVATIONS = [  # (op, attributes, reference)
    ("Elu", {}, _elu),
    ("Elu", {"alpha": 0.5}, lambda x: _elu(x, 0.5)),
    ("Selu", {}, lambda x: 1.0507009873554805 * _elu(x, 1.6732632423543772)),
    ("Celu", {"alpha": 2.0}, lambda x: 2.0 * _elu(x / 2.0)),
    ("Softplus", {}, _softplus),
    ("Softsign", {}, lambda x: x / (1 + np.abs(x))),
    ("Mish", {}, lambda x: x * np.tanh(_softplus(x))),
    ("ThresholdedRelu", {"alpha": 0.5}, lambda x: np.where(x > 0.5, x, 0)),
    ("Swish", {"alpha": 2.0}, lambda x: x / (1 + np.exp(-2.0 * x))),
    ("Gelu", {"approximate": "tanh"},
     lambda x: 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3)))),
    ("Gelu", {}, lambda x: 0.5 * x * (1 + np.vectorize(math.erf)(x / math.sqrt(2)))),
    ("Erf", {}, np.vectorize(math.erf)),
]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("op, attrs, ref", ACTIVATIONS, ids=[f"{a[0]}{a[1]}" for a in ACTIVATIONS])
def test_activation(backend, op, attrs, ref):
    x = np.linspace(-4, 4, 24, dtype=np.float32).reshape(2, 12)
    model = make_model([helper.make_node(op, ["x"], ["y"], **attrs)], {"x": x}, ["y"], opset=24 if op == "Swish"
                       else 20)
    np.testing.assert_allclose(run(model, {"x": x}, backend)["y"], ref(x.astype(np.float64)), rtol=1e-5, atol=1e-6)


def test_gelu_unknown_approximation_names_the_node():
    model = make_model([helper.make_node("Gelu", ["x"], ["y"], approximate="erf")], {"x": f32(3)}, ["y"], opset=20)
    with pytest.raises(gc.onnx.UnsupportedOnnx, match="Gelu node: attribute approximate='erf' is not supported"):
        gc.onnx.import_model(model)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("slope_shape", [(3, 1, 1), (4,), (1,)])
def test_prelu_broadcasts_like_numpy(backend, slope_shape):
    """PRelu's slope broadcasts by NumPy's rules: (C, 1, 1) per channel, (W,) along the last axis."""
    x = f32(2, 3, 5, 4)
    slope = RNG.uniform(0.1, 0.5, slope_shape).astype(np.float32)
    model = make_model([helper.make_node("PRelu", ["x", "slope"], ["y"])], {"x": x}, ["y"], inits={"slope": slope})
    assert "slope" in gc.onnx.import_model(model).graph.trainable
    np.testing.assert_allclose(run(model, {"x": x}, backend)["y"], np.where(x > 0, x, slope * x), rtol=1e-6)


# ---------------------------------------------------------------------------------------------- logic, variadic


LOGIC = [
    ("GreaterOrEqual", np.greater_equal), ("LessOrEqual", np.less_equal), ("Less", np.less),
    ("Equal", np.equal), ("Greater", np.greater),
]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("op, ref", LOGIC)
def test_comparisons(backend, op, ref):
    a = np.array([[1.0, 2.0, np.nan, -1.0], [0.0, 3.0, 2.0, np.inf]], np.float32)
    b = np.array([2.0, 2.0, 1.0, np.nan], np.float32)
    model = make_model([helper.make_node(op, ["a", "b"], ["y"])], {"a": a, "b": b}, ["y"])
    got = run(model, {"a": a, "b": b}, backend)["y"]
    assert got.dtype == np.bool_
    np.testing.assert_array_equal(got, ref(a, b))


@pytest.mark.parametrize("backend", BACKENDS)
def test_boolean_logic_and_where(backend):
    a = np.array([True, True, False, False])
    b = np.array([True, False, True, False])
    x, y = f32(4), f32(2, 4)
    nodes = [helper.make_node("And", ["a", "b"], ["and"]), helper.make_node("Or", ["a", "b"], ["or"]),
             helper.make_node("Xor", ["a", "b"], ["xor"]), helper.make_node("Not", ["a"], ["not"]),
             helper.make_node("Where", ["xor", "x", "y"], ["where"])]
    outs = ["and", "or", "xor", "not", "where"]
    got = run(make_model(nodes, {"a": a, "b": b, "x": x, "y": y}, outs), {"a": a, "b": b, "x": x, "y": y}, backend)
    for name, want in zip(outs, [a & b, a | b, a ^ b, ~a, np.where(a ^ b, x, y)]):
        np.testing.assert_array_equal(got[name], want)


@pytest.mark.parametrize("backend", BACKENDS)
def test_mean(backend):
    a, b, c = f32(2, 3), f32(3), f32(1, 3)
    model = make_model([helper.make_node("Mean", ["a", "b", "c"], ["y"])], {"a": a, "b": b, "c": c}, ["y"])
    np.testing.assert_allclose(run(model, {"a": a, "b": b, "c": c}, backend)["y"], (a + b + c) / 3, rtol=1e-6)


# ---------------------------------------------------------------------------------------------- shape ops


@pytest.mark.parametrize("backend", BACKENDS)
def test_expand_tile_constant_of_shape_range(backend):
    x = f32(3, 1)
    nodes = [const("shape", np.array([2, 1, 4])), helper.make_node("Expand", ["x", "shape"], ["expanded"]),
             const("reps", np.array([2, 3])), helper.make_node("Tile", ["x", "reps"], ["tiled"]),
             const("s2", np.array([3, 4])),
             helper.make_node("ConstantOfShape", ["s2"], ["filled"],
                              value=numpy_helper.from_array(np.array([1.5], np.float32))),
             helper.make_node("Add", ["x", "filled"], ["shifted"]),
             const("start", np.array(1.0, np.float32)), const("limit", np.array(2.0, np.float32)),
             const("delta", np.array(0.25, np.float32)), helper.make_node("Range", ["start", "limit", "delta"], ["r"]),
             helper.make_node("Mul", ["x", "r"], ["ranged"])]
    outs = ["expanded", "tiled", "shifted", "ranged"]
    got = run(make_model(nodes, {"x": x}, outs), {"x": x}, backend)
    np.testing.assert_array_equal(got["expanded"], np.broadcast_to(x, (2, 3, 4)))
    np.testing.assert_array_equal(got["tiled"], np.tile(x, (2, 3)))
    np.testing.assert_array_equal(got["shifted"], x + np.full((3, 4), 1.5, np.float32))
    np.testing.assert_allclose(got["ranged"], x * np.array([1.0, 1.25, 1.5, 1.75], np.float32))


@pytest.mark.parametrize("backend", BACKENDS)
def test_shape_ops_fold_on_constants(backend):
    """Expand, Tile, Split, Pad, GatherND and Range of constants are NumPy arrays at import (no graph node)."""
    nodes = [const("c", np.arange(6, dtype=np.float32).reshape(2, 3)), const("reps", np.array([1, 2])),
             helper.make_node("Tile", ["c", "reps"], ["t"]), const("sh", np.array([2, 2, 6])),
             helper.make_node("Expand", ["t", "sh"], ["e"]), helper.make_node("Split", ["e"], ["s0", "s1"], axis=2,
                                                                               num_outputs=2),
             const("pads", np.array([0, 0, 1, 0, 0, -1])), helper.make_node("Pad", ["s1", "pads"], ["p"]),
             const("idx", np.array([[1, 0]])), helper.make_node("GatherND", ["p", "idx"], ["g"]),
             helper.make_node("Add", ["x", "g"], ["y"])]
    x = f32(1, 3)
    model = make_model(nodes, {"x": x}, ["y"])
    imported = gc.onnx.import_model(model)
    assert {n.op for n in gc.ir.topo_ancestors([imported.outputs["y"]])} == {"input", "const", "add"}
    t = np.tile(np.arange(6, dtype=np.float32).reshape(2, 3), (1, 2))
    p = np.pad(np.broadcast_to(t, (2, 2, 6))[:, :, 3:5], ((0, 0), (0, 0), (1, 0)))
    np.testing.assert_array_equal(run(model, {"x": x}, backend)["y"], x + p[1, 0])


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("pads, axes", [([1, 0, 2, 1], None), ([0, -1, 1, 2], None), ([2, 1], [-1])])
def test_pad_constant(backend, pads, axes):
    x = f32(3, 4)
    inputs = ["x", "pads", "value"] + (["axes"] if axes else [])
    inits = {"pads": np.array(pads), "value": np.array(0.5, np.float32)} | ({"axes": np.array(axes)} if axes else {})
    model = make_model([helper.make_node("Pad", inputs, ["y"])], {"x": x}, ["y"], inits=inits)
    full = [(0, 0), (0, 0)]
    for i, axis in enumerate(axes or [0, 1]):
        full[axis] = (pads[i], pads[i + len(axes or [0, 1])])
    crop = tuple(slice(max(-a, 0), x.shape[i] - max(-b, 0)) for i, (a, b) in enumerate(full))
    want = np.pad(x[crop], [(max(a, 0), max(b, 0)) for a, b in full], constant_values=0.5)
    np.testing.assert_array_equal(run(model, {"x": x}, backend)["y"], want)


def test_pad_reflect_wider_than_the_axis_is_refused():
    node = helper.make_node("Pad", ["x", "pads"], ["y"], mode="reflect")
    model = make_model([node], {"x": f32(3, 4)}, ["y"], inits={"pads": np.array([0, 4, 0, 1])})
    with pytest.raises(gc.onnx.UnsupportedOnnx, match="Pad node: attribute mode='reflect': pads"):
        gc.onnx.import_model(model)


# ---------------------------------------------------------------------------------------------- reductions


REDUCTIONS = [
    ("ReduceL1", lambda x, a, k: np.abs(x).sum(axis=a, keepdims=k)),
    ("ReduceL2", lambda x, a, k: np.sqrt((x * x).sum(axis=a, keepdims=k))),
    ("ReduceLogSum", lambda x, a, k: np.log(np.abs(x).sum(axis=a, keepdims=k))),
    ("ReduceLogSumExp", lambda x, a, k: np.log(np.exp(x).sum(axis=a, keepdims=k))),
]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("op, ref", REDUCTIONS)
@pytest.mark.parametrize("keepdims", [0, 1])
def test_reductions(backend, op, ref, keepdims):
    x = f32(2, 3, 4) * 3
    if op == "ReduceLogSum":
        x = np.abs(x)
    model = make_model([helper.make_node(op, ["x", "axes"], ["y"], keepdims=keepdims)], {"x": x}, ["y"],
                       inits={"axes": np.array([1, -1])})
    want = ref(x.astype(np.float64), (1, 2), bool(keepdims))
    np.testing.assert_allclose(run(model, {"x": x}, backend)["y"], want, rtol=1e-5)


@pytest.mark.parametrize("backend", BACKENDS)
def test_reduce_log_sum_exp_is_stable(backend):
    x = np.array([[1000.0, 1000.0], [-np.inf, -np.inf]], np.float32)
    model = make_model([helper.make_node("ReduceLogSumExp", ["x", "axes"], ["y"], keepdims=0)], {"x": x}, ["y"],
                       inits={"axes": np.array([1])})
    np.testing.assert_allclose(run(model, {"x": x}, backend)["y"], [1000.0 + np.log(2.0), -np.inf], rtol=1e-6)


# ---------------------------------------------------------------------------------------------- BatchNormalization


def _bn_model():
    c = 3
    inits = {"scale": RNG.uniform(0.5, 1.5, c).astype(np.float32), "bias": f32(c),
             "mean": f32(c), "var": RNG.uniform(0.5, 1.5, c).astype(np.float32), "w": f32(c, c, 1, 1)}
    nodes = [helper.make_node("Conv", ["x", "w"], ["h"]),
             helper.make_node("BatchNormalization", ["h", "scale", "bias", "mean", "var"], ["y"])]
    return make_model(nodes, {"x": f32(2, c, 4, 4)}, ["y"], inits=inits, opset=15), inits


def test_batch_norm_running_statistics_are_not_trainable():
    model, inits = _bn_model()
    imported = gc.onnx.import_model(model)
    graph = imported.graph
    assert {"mean", "var", "scale", "bias", "w"} <= set(graph.params)
    assert graph.trainable >= {"scale", "bias", "w"}
    assert not graph.trainable & {"mean", "var"}
    loss = gc.sum(gc.mul(imported.outputs["y"], imported.outputs["y"]))
    opt = gc.optim.SGD(lr=0.1)
    updates = opt.minimize(loss)
    updated = {p.name for p in updates if p.op == "param"}
    assert {"scale", "bias", "w"} <= updated and not updated & {"mean", "var"}
    step = gc.compile({"loss": loss}, backend="numpy", updates=updates)
    step(x=f32(2, 3, 4, 4))
    np.testing.assert_array_equal(graph.state["mean"], inits["mean"])
    np.testing.assert_array_equal(graph.state["var"], inits["var"])
    assert not np.array_equal(graph.state["scale"], inits["scale"])


@pytest.mark.parametrize("backend", BACKENDS)
def test_batch_norm_inference_still_matches(backend):
    model, p = _bn_model()
    x = f32(2, 3, 4, 4)
    h = np.einsum("nchw,oc->nohw", x, p["w"][:, :, 0, 0])
    shape = (1, 3, 1, 1)
    want = (h - p["mean"].reshape(shape)) / np.sqrt(p["var"].reshape(shape) + 1e-5) * p["scale"].reshape(shape) \
        + p["bias"].reshape(shape)
    np.testing.assert_allclose(run(model, {"x": x}, backend)["y"], want, rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------------------------------------- LayerNormalization


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("axis", [-1, 1])
def test_layer_normalization(backend, axis):
    x = f32(2, 3, 4) * 2 + 1
    norm_shape = x.shape[axis % 3:]
    scale, bias = f32(*norm_shape), f32(*norm_shape)
    node = helper.make_node("LayerNormalization", ["x", "scale", "bias"], ["y", "mean", "inv"], axis=axis,
                            epsilon=1e-3)
    got = run(make_model([node], {"x": x}, ["y", "mean", "inv"], inits={"scale": scale, "bias": bias}, opset=17),
              {"x": x}, backend)
    axes = tuple(range(axis % 3, 3))
    mean = x.mean(axis=axes, keepdims=True)
    inv = 1 / np.sqrt(((x - mean) ** 2).mean(axis=axes, keepdims=True) + 1e-3)
    np.testing.assert_allclose(got["y"], (x - mean) * inv * scale + bias, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got["mean"], mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got["inv"], inv, rtol=1e-5)


# ---------------------------------------------------------------------------------------------- constants only


@pytest.mark.parametrize("backend", BACKENDS)
def test_mod_and_scatter_nd_fold_on_constants(backend):
    """Mod (ViT's shape checks) and ScatterND (Swin's attention mask) on constants fold at import time (ScatterND
    exists only as a fold); a float initializer they consume is folded as a constant."""
    nodes = [const("a", np.array([7, -7, 7, -7])), const("b", np.array([3, 3, -3, -3])),
             helper.make_node("Mod", ["a", "b"], ["m"]), helper.make_node("Mod", ["a", "b"], ["mf"], fmod=1),
             helper.make_node("Concat", ["m", "mf"], ["mm"], axis=0),
             helper.make_node("Cast", ["mm"], ["mmf"], to=TensorProto.FLOAT),
             const("i", np.array([[1], [3]])), helper.make_node("ScatterND", ["zeros", "i", "u"], ["mask"]),
             helper.make_node("Add", ["x", "mmf"], ["y"]), helper.make_node("Mul", ["x", "mask"], ["z"])]
    x = f32(8)
    model = make_model(nodes, {"x": x}, ["y", "z"], inits={"zeros": np.zeros(8, np.float32),
                                                           "u": np.array([2.0, -1.0], np.float32)})
    got = run(model, {"x": x}, backend)
    mods = np.array([1, 2, -2, -1, 1, -1, 1, -1], np.float32)  # Python's % (divisor's sign), then C's fmod
    np.testing.assert_array_equal(got["y"], x + mods)
    np.testing.assert_array_equal(got["z"], x * np.array([0, 2, 0, -1, 0, 0, 0, 0], np.float32))


@pytest.mark.parametrize("op, attrs, inputs", [
    ("ScatterND", {}, {"a": np.ones(3, np.float32), "b": np.zeros((1, 1), np.int64), "c": np.ones(1, np.float32)}),
])
def test_constant_only_ops_refuse_tensors(op, attrs, inputs):
    model = make_model([helper.make_node(op, list(inputs), ["y"], name="n1", **attrs)], inputs, ["y"])
    with pytest.raises(gc.onnx.UnsupportedOnnx, match=f"{op} node 'n1': {op} is supported only on import-time "
                                                      "constants"):
        gc.onnx.import_model(model)

