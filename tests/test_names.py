"""Node names: every op builder takes ``name=``; ``gc.name_scope`` prefixes names (nested scopes join with "/");
names appear in errors, dumps, pictures and test failures; gc.nn models name their nodes by layer."""

import inspect
import threading

import numpy as np
import pytest

import graphc as gc
import ops.fn
from graphc import nn


def _graph():
    g = gc.Graph("names")
    return g, g.input("x", (2, 3)), g.param("w", np.ones((3, 4), np.float32))


def test_every_public_builder_takes_a_keyword_only_name():
    for builder in ops.fn.__all__:
        parameter = inspect.signature(getattr(gc, builder)).parameters.get("name")
        assert parameter is not None, f"gc.{builder} has no name= parameter"
        assert parameter.kind is inspect.Parameter.KEYWORD_ONLY and parameter.default is None, builder


def test_builders_name_their_node():
    g, x, w = _graph()
    built = {
        "h": gc.matmul(x, w, name="h"), "a": gc.relu(x, name="a"), "s": gc.sum(x, axis=1, name="s"),
        "c": gc.conv2d(gc.reshape(x, (1, 1, 2, 3)), gc.reshape(w[:1, :1], (1, 1, 1, 1)), name="c"),
        "f": gc.flatten(gc.reshape(x, (1, 2, 3)), name="f"), "p": gc.add(x, 1.0, name="p"),
        "l": gc.mse(x, x, name="l"), "t": ops.fn.getitem(x, 0, name="t"),
        "bn": gc.batch_norm(x, g.param("gamma", np.ones(3)), g.param("beta", np.zeros(3)),
                            g.param("mean", np.zeros(3)), g.param("var", np.ones(3)), training=True, name="bn"),
        "d": gc.dropout(x, 0.5, training=True, name="d"),
    }
    for name, node in built.items():
        assert node.name == name, (name, node)
    assert gc.dropout(x, 0.5, training=False, name="unused") is x  # not training: x itself, nothing is named
    assert gc.reshape(x, (3, 2)).name.startswith("reshape_")  # without name=: a unique <op>_<k>


def test_a_duplicate_explicit_name_is_an_error_that_names_it():
    g, x, w = _graph()
    gc.relu(x, name="h")
    with pytest.raises(gc.GraphcError, match="graph 'names' already has a node named 'h'"):
        gc.tanh(x, name="h")
    with pytest.raises(gc.GraphcError, match="name must be a non-empty string"):
        gc.tanh(x, name="")


def test_name_scopes_prefix_generated_and_explicit_names_and_nest():
    g, x, w = _graph()
    with gc.name_scope("layer1") as scope:
        assert scope == "layer1"
        h = gc.matmul(x, w)
        named = gc.relu(h, name="act")
        with gc.name_scope("inner") as inner:
            assert inner == "layer1/inner"
            deep = h * 2.0
    after = gc.tanh(h)
    assert h.name == "layer1/matmul_1" and named.name == "layer1/act"
    assert deep.name == "layer1/inner/mul_1" and deep.inputs[1].name == "layer1/inner/const_1"
    assert after.name == "tanh_1"  # the scope ended
    with gc.name_scope("layer2"):
        assert gc.matmul(x, w).name == "layer2/matmul_1"  # generated names are unique per scope
        assert gc.relu(x, name="act").name == "layer2/act"  # the same explicit name in another scope is fine
    with gc.name_scope("layer1"), pytest.raises(gc.GraphcError, match="already has a node named 'layer1/act'"):
        gc.relu(x, name="act")


def test_inputs_and_params_keep_their_names_and_scopes_end_on_errors():
    g, x, w = _graph()
    with gc.name_scope("block"):
        y = g.input("y", (2, 3))
        b = g.param("b", np.zeros(3))
    assert y.name == "y" and b.name == "b" and "y" in g.inputs and "b" in g.state  # feed and state keys
    with pytest.raises(gc.ShapeError), gc.name_scope("broken"):
        gc.matmul(x, x)
    assert gc.relu(x).name == "relu_1"
    for bad in ("", "/", None, 3):
        with pytest.raises(gc.GraphcError, match="scope name must be a non-empty string"), gc.name_scope(bad):
            pass


def test_scopes_belong_to_their_thread():
    g, x, w = _graph()
    inside, started = threading.Event(), threading.Event()
    names = {}

    def other():
        started.wait()
        names["other"] = gc.relu(x).name  # while the main thread is inside its scope
        inside.set()

    thread = threading.Thread(target=other)
    thread.start()
    with gc.name_scope("main"):
        started.set()
        inside.wait(10)
        names["main"] = gc.tanh(x).name
    thread.join()
    assert names == {"other": "relu_1", "main": "main/tanh_1"}


def test_build_errors_name_the_node_or_the_scope():
    g, x, w = _graph()
    with gc.name_scope("dense_3"):
        with pytest.raises(gc.ShapeError, match=r"^matmul\(float32\[2, 3\], float32\[2, 3\]\) as 'dense_3/logits': "):
            gc.matmul(x, x, name="logits")
        with pytest.raises(gc.ShapeError, match=r"^add\(float32\[2, 3\], float32\[3, 4\]\) in scope 'dense_3': "):
            x + w
    with pytest.raises(gc.ShapeError, match=r"^add\(float32\[2, 3\], float32\[3, 4\]\): "):
        x + w  # outside a scope and without a name: as before


def test_runtime_and_gradient_errors_name_the_node():
    g = gc.Graph("run")
    labels = g.input("labels", (3,), "int64")
    with gc.name_scope("loss"):
        checked = ops.fn.check_index(labels, 4, name="checked_labels")
    for backend in ("numpy", "llvm"):
        prog = gc.compile(gc.cast(checked, "float32"), backend=backend)
        with pytest.raises(gc.GraphcError, match="check_index \\('loss/checked_labels', created at "):
            prog(labels=np.array([0, 7, 1]))
    x = g.input("x", (3,))
    with pytest.raises(gc.GradientError, match="got 'velocity' with shape"):
        gc.grad(gc.mul(x, 2.0, name="velocity"), [x])  # not a scalar


def test_names_show_in_pictures_and_dumps(tmp_path):
    g, x, w = _graph()
    with gc.name_scope("layer1"):
        h = gc.relu(gc.matmul(x, w, name="pre"), name="h")
    dot = gc.viz.to_dot({"h": h})
    assert "layer1/pre" in dot and "layer1/h" in dot
    gc.compile({"h": h}, backend="numpy", dump_dir=str(tmp_path / "dump"))
    text = "".join(p.read_text() for p in (tmp_path / "dump").iterdir() if p.suffix in (".txt", ".dot"))
    assert "layer1/pre" in text and "layer1/h" in text


def test_compiling_inside_a_scope_keeps_the_names_and_check_grads_works():
    g, x, w = _graph()
    with gc.name_scope("model"):
        y = gc.sum(gc.tanh(gc.matmul(x, w, name="z")), name="y")
        prog = gc.compile({"y": y, "dw": gc.grad(y, w)}, backend="numpy")
        feeds = {"x": np.full((2, 3), 0.1, np.float32)}
        gc.testing.check_grads(y, [w, x], feeds)  # copies the graph under the same names
    assert y.name == "model/y" and prog(**feeds)["y"] == pytest.approx(8 * np.tanh(0.3), rel=1e-6)
    assert [n.name for n in g.nodes if n.name.startswith("model/model")] == []


def test_gc_nn_nodes_are_named_by_layer():
    model = nn.Sequential([nn.Dense(4, activation="relu", input_shape=(3,), name="hidden"), nn.Dropout(0.5),
                           nn.Dense(2, activation="softmax", name="out")])
    model.compile(loss="sparse_categorical_crossentropy", optimizer="sgd", backend="numpy")
    model.fit(np.zeros((4, 3), np.float32), np.zeros(4, np.int64), epochs=1, batch_size=4, verbose=0)
    forward = [n for n in model.graph.nodes if not n.backward and n.op not in ("input", "param", "const")]
    by_layer = {}
    for n in forward:
        by_layer.setdefault(n.name.split("/")[0], []).append(n.op)
    assert {"matmul", "add", "relu"} <= set(by_layer["hidden"])
    assert "dropout" in by_layer["dropout"] and {"matmul", "softmax"} <= set(by_layer["out"])
    assert model.graph.params["hidden/kernel"].name == "hidden/kernel"  # params keep their layer names
