"""compile(freeze=True): params as constant snapshots, batch norm folded into conv/dense weights, constant
subgraphs evaluated once — frozen and live programs agree on both backends, and the frozen graph has the shape
the freeze promises; ONNX import with inference=True."""

import numpy as np
import pytest

import graphc as gc
from graphc.ir import GraphcError, topo_ancestors

BACKENDS = ("llvm", "numpy")


def _bn_params(g, prefix, c, rng):
    values = {"gamma": rng.random(c) + 0.5, "beta": rng.standard_normal(c), "mean": rng.standard_normal(c),
              "var": rng.random(c) + 0.5}
    return [g.param(f"{prefix}_{k}", v.astype("f4"), trainable=k in ("gamma", "beta")) for k, v in values.items()]


def _cnn(rng, bias=True):
    g = gc.Graph("cnn")
    x = g.input("x", (2, 3, 10, 10))
    w1 = g.param("w1", (rng.standard_normal((8, 3, 3, 3)) * 0.3).astype("f4"))
    b1 = g.param("b1", rng.standard_normal(8).astype("f4")) if bias else None
    h = gc.relu(gc.batch_norm(gc.conv2d(x, w1, b1, padding=1), *_bn_params(g, "bn1", 8, rng), training=False))
    w2 = g.param("w2", (rng.standard_normal((8, 1, 3, 3)) * 0.3).astype("f4"))  # depthwise, no bias
    h = gc.relu(gc.batch_norm(gc.conv2d(h, w2, padding=1, groups=8), *_bn_params(g, "bn2", 8, rng), training=False))
    wd = g.param("wd", (rng.standard_normal((8 * 10 * 10, 5)) * 0.05).astype("f4"))
    bd = g.param("bd", rng.standard_normal(5).astype("f4"))
    y = gc.batch_norm(gc.reshape(h, (2, -1)) @ wd + bd, *_bn_params(g, "bn3", 5, rng), training=False)
    return g, y, {"x": rng.standard_normal((2, 3, 10, 10)).astype("f4")}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("bias", [True, False])
def test_frozen_agrees_with_live(backend, bias):
    rng = np.random.default_rng(0)
    g, y, feeds = _cnn(rng, bias)
    live = gc.compile(y, backend=backend)(**feeds)
    prog = gc.compile(y, backend=backend, freeze=True)
    np.testing.assert_allclose(prog(**feeds), live, rtol=1e-4, atol=1e-5 * np.abs(live).max())
    assert prog.frozen and not prog.params
    assert sum("folded batch_norm" in line for line in prog.freeze_report) == 3


def test_frozen_graph_has_no_batch_norm_and_constant_weights():
    rng = np.random.default_rng(1)
    g, y, feeds = _cnn(rng)
    prog = gc.compile(y, backend="numpy", freeze=True)
    ops = [n.op for n in prog.nodes]
    assert "batch_norm" not in ops and "param" not in ops
    convs = [n for n in prog.nodes if n.op == "conv2d"]
    assert len(convs) == 2 and all(x.op == "const" for c in convs for x in c.inputs[1:])
    # the folded weights: W' = W · γ/√(σ² + ε) per output channel
    w1 = g.state["w1"].astype(np.float64)
    scale = g.state["bn1_gamma"] / np.sqrt(g.state["bn1_var"].astype(np.float64) + 1e-5)
    np.testing.assert_allclose(convs[0].inputs[1].attrs["value"], w1 * scale[:, None, None, None], rtol=1e-6)


def test_frozen_program_keeps_its_snapshot():
    """A frozen program computes from the params as they were at compile time; a live one reads the state."""
    rng = np.random.default_rng(2)
    g, y, feeds = _cnn(rng)
    live, frozen = gc.compile(y), gc.compile(y, freeze=True)
    before = frozen(**feeds)
    g.state["w1"][...] *= 2.0
    np.testing.assert_array_equal(frozen(**feeds), before)
    assert not np.allclose(live(**feeds), before)
    np.testing.assert_allclose(gc.compile(y, freeze=True)(**feeds), live(**feeds), rtol=1e-4,
                               atol=1e-5 * np.abs(before).max())


def test_constant_subgraphs_are_evaluated_once():
    rng = np.random.default_rng(3)
    g = gc.Graph("consts")
    x = g.input("x", (4, 6))
    w = g.param("w", rng.standard_normal((5, 6)).astype("f4"))
    y = gc.relu(x @ gc.transpose(w * 2.0) + gc.exp(g.param("b", rng.standard_normal(5).astype("f4"))))
    prog = gc.compile(y, freeze=True)
    assert {n.op for n in prog.nodes} <= {"input", "const", "matmul", "add", "relu"}
    assert any("evaluated" in line for line in prog.freeze_report)
    feeds = {"x": rng.standard_normal((4, 6)).astype("f4")}
    np.testing.assert_allclose(prog(**feeds), gc.compile(y)(**feeds), rtol=1e-5, atol=1e-6)


def test_shared_layer_output_is_not_folded():
    """A conv whose value is also used elsewhere keeps its weights: the batch norm stays (as math) and both uses
    see the right values."""
    rng = np.random.default_rng(4)
    g = gc.Graph("shared")
    x = g.input("x", (1, 2, 6, 6))
    c = gc.conv2d(x, g.param("w", rng.standard_normal((3, 2, 3, 3)).astype("f4")), padding=1)
    y = gc.batch_norm(c, *_bn_params(g, "bn", 3, rng), training=False) + c
    prog = gc.compile(y, freeze=True)
    assert not any("folded batch_norm" in line for line in prog.freeze_report)
    feeds = {"x": rng.standard_normal((1, 2, 6, 6)).astype("f4")}
    np.testing.assert_allclose(prog(**feeds), gc.compile(y)(**feeds), rtol=1e-5, atol=1e-5)


def test_dict_and_list_outputs_keep_their_form():
    rng = np.random.default_rng(5)
    g, y, feeds = _cnn(rng)
    out = gc.compile({"logits": y, "probs": gc.softmax(y, axis=1)}, freeze=True)(**feeds)
    assert set(out) == {"logits", "probs"}
    pair = gc.compile([y, gc.softmax(y, axis=1)], freeze=True)(**feeds)
    assert isinstance(pair, list) and len(pair) == 2
    np.testing.assert_allclose(pair[0], out["logits"], rtol=1e-6)


def test_freeze_refuses_state_updates():
    rng = np.random.default_rng(6)
    g = gc.Graph("train")
    x = g.input("x", (4, 3))
    w = g.param("w", rng.standard_normal((3, 2)).astype("f4"))
    loss = gc.sum(x @ w)
    with pytest.raises(GraphcError, match="no state updates"):
        gc.compile(loss, updates={w: w - 0.1 * gc.grad(loss, w)}, freeze=True)
    y = gc.batch_norm(x @ w, *_bn_params(g, "bn", 2, rng), training=True)
    with pytest.raises(GraphcError, match=r"would update param 'bn_mean'.*training=False"):
        gc.compile(y, freeze=True)
    with pytest.raises(GraphcError, match="freeze must be True or False"):
        gc.compile(loss, freeze="yes")


def _onnx_conv_bn(tmp_path):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(7)
    inits = {"W": rng.standard_normal((4, 3, 3, 3)), "B": rng.standard_normal(4), "gamma": rng.random(4) + 0.5,
             "beta": rng.standard_normal(4), "mean": rng.standard_normal(4), "var": rng.random(4) + 0.5}
    nodes = [helper.make_node("Conv", ["x", "W", "B"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("BatchNormalization", ["c", "gamma", "beta", "mean", "var"], ["bn"], epsilon=1e-3),
             helper.make_node("Relu", ["bn"], ["y"])]
    graph = helper.make_graph(nodes, "conv_bn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 4, 8, 8])],
                              [numpy_helper.from_array(v.astype("f4"), k) for k, v in inits.items()])
    path = tmp_path / "conv_bn.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path, {"x": rng.standard_normal((2, 3, 8, 8)).astype("f4")}


def test_onnx_inference_import_freezes(tmp_path):
    path, feeds = _onnx_conv_bn(tmp_path)
    trainable = gc.onnx.import_model(path)
    frozen = gc.onnx.import_model(path, inference=True)
    assert not trainable.inference and frozen.inference
    assert not [n for n in topo_ancestors(list(frozen.outputs.values())) if n.op == "param"]
    prog = frozen.compile()
    assert prog.frozen and any("folded batch_norm" in line for line in prog.freeze_report)
    want = trainable.compile(backend="numpy")(**feeds)["y"]
    np.testing.assert_allclose(prog(**feeds)["y"], want, rtol=1e-4, atol=1e-5)
    assert not frozen.compile(freeze=False).frozen


def test_onnx_inference_contradicting_params(tmp_path):
    path, _ = _onnx_conv_bn(tmp_path)
    with pytest.raises(GraphcError, match="inference=True makes the initializers constants"):
        gc.onnx.import_model(path, inference=True, initializers="params")
