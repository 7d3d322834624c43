"""``model.render``: layer boxes with shapes and parameter counts, backward and update boxes, op clusters per layer."""

from __future__ import annotations

import re
import shutil

import pytest

import graphc as gc
from graphc import nn
from graphc.viz import Picture


@pytest.fixture(scope="module")
def cnn():
    model = nn.Sequential([
        nn.Conv2D(4, 3, padding="same", activation="relu", input_shape=(1, 8, 8)),
        nn.MaxPool2D(2),
        nn.Flatten(),
        nn.Dense(8, activation="relu"),
        nn.Dense(3, activation="softmax"),
    ], name="tiny")
    model.compile(loss="sparse_categorical_crossentropy", optimizer=gc.optim.Adam(0.01), backend="numpy")
    return model


def test_layers_one_box_per_layer_with_shape_and_params(cnn):
    picture = cnn.render()
    assert isinstance(picture, Picture)
    dot = picture.source
    expected = {"conv2d": ("Conv2D (relu)", "(None, 4, 8, 8)", "40"),
                "maxpool2d": ("MaxPool2D", "(None, 4, 4, 4)", "0"),
                "flatten": ("Flatten", "(None, 64)", "0"), "dense": ("Dense (relu)", "(None, 8)", "520"),
                "dense_1": ("Dense (softmax)", "(None, 3)", "27")}
    for name, (kind, shape, params) in expected.items():
        box = re.search(rf"<b>{name}: {re.escape(kind)}</b>.*?</table>", dot)
        assert box, name
        assert shape in box.group(0) and f"<td align=\"left\">{params}</td>" in box.group(0)
    assert "<b>input</b>" in dot and "(None, 1, 8, 8)" in dot
    assert f"{cnn.count_params():,} params" in dot
    assert "backward" not in dot and "update" not in dot and "loss" not in dot  # forward only by default


def test_layers_backward_and_updates(cnn):
    dot = cnn.render(backward=True).source
    for layer in cnn.layers:
        assert f"<b>{layer.name} backward</b>" in dot
    assert "loss: sparse_categorical_crossentropy" in dot and "update " not in dot
    assert re.search(r"<b>dense backward</b>.*d kernel.*\(64, 8\)", dot)
    both = cnn.render(backward=True, updates=True).source
    trainable = [p.name for layer in cnn.layers for p in layer.params.values()]
    assert len(trainable) == 6
    for name in trainable:
        assert f"<b>update {name}</b>" in both
    assert "optimizer Adam" in both


def cluster_labels(dot: str) -> set[str]:
    return {m.strip('"') for m in re.findall(r'subgraph cluster_\d+ \{\s*[^\n]*?label=("[^"]*"|\S+)', dot)}


def test_ops_clusters_per_layer_and_hidden_updates(cnn):
    dot = cnn.render(detail="ops").source
    assert cluster_labels(dot) == {"conv2d", "maxpool2d", "flatten", "dense", "dense_1", "loss"}
    assert re.search(r'subgraph cluster_\d+ \{[^}]*label=dense [^}]*"dense/matmul_1', dot)
    assert "adam" not in dot and "backward" not in dot
    grads = cnn.render(detail="ops", backward=True).source
    assert cluster_labels(grads) == cluster_labels(dot) | {"backward (gradients)"} and "adam" not in grads
    both = cnn.render(detail="ops", backward=True, updates=True).source
    assert cluster_labels(both) == cluster_labels(grads) | {"optimizer update"} and "adam" in both


def test_graph_detail_keeps_the_whole_training_step(cnn, tmp_path):
    picture = cnn.render(detail="graph")
    assert "cluster_forward" in picture.source and "cluster_backward" in picture.source
    assert "new dense/kernel" in picture.source
    path = cnn.render(str(tmp_path / "step.dot"), detail="graph", batch_size=4)
    assert path.endswith("step.dot") and "cluster_backward" in open(path).read()


def test_render_writes_a_file_and_checks_its_arguments(cnn, tmp_path):
    path = cnn.render(str(tmp_path / "layers.dot"))
    assert path == str(tmp_path / "layers.dot") and "<b>dense_1: Dense (softmax)</b>" in open(path).read()
    if shutil.which("dot"):
        svg = cnn.render(str(tmp_path / "layers.svg"))
        assert open(svg).read().lstrip().startswith("<?xml")
    with pytest.raises(gc.GraphcError, match="detail must be one of"):
        cnn.render(detail="everything")
    fresh = nn.Sequential([nn.Dense(2, input_shape=(3,))])
    assert "(None, 2)" in fresh.render().source  # layers need no compile
    with pytest.raises(gc.GraphcError, match="compile"):
        fresh.render(backward=True)
