"""The everyday Keras pieces of item 4 of issue 13: Input/InputLayer, GlobalAveragePooling2D, get_layer,
count_params, layer weights, save_weights/load_weights, and no files under Keras' names."""

import os

import numpy as np
import pytest

import graphc as gc
from graphc import nn

RNG = np.random.default_rng(0)


def _mlp(first=None):
    layers = [first] if first is not None else []
    return nn.Sequential([*layers, nn.Dense(6, activation="relu", input_shape=None if first else (4,)),
                          nn.Dense(3, activation="softmax", name="out")])


@pytest.mark.parametrize("first", [nn.Input(shape=(4,)), nn.InputLayer((4,)), nn.InputLayer(input_shape=(4,))])
def test_input_layer_as_first_element(first):
    model = _mlp(first)
    model.build()
    assert model.input_shape == (4,) and len(model.layers) == 2
    assert model.count_params() == 4 * 6 + 6 + 6 * 3 + 3


def test_input_layer_then_flatten_as_the_notes_write_it():
    model = nn.Sequential([nn.InputLayer((28, 28)), nn.Flatten(), nn.Dense(256), nn.ReLU(), nn.Dense(10),
                           nn.Softmax()])
    model.build()
    assert model.output_shape == (10,) and model.count_params() == 784 * 256 + 256 + 2570
    with pytest.raises(gc.GraphcError, match="must be the first element"):
        nn.Sequential([nn.Dense(2), nn.Input(shape=(3,))])


def test_global_average_pooling():
    model = nn.Sequential([nn.Conv2D(3, 1, input_shape=(2, 4, 5), use_bias=False), nn.GlobalAveragePooling2D()])
    model.build()
    x = RNG.standard_normal((2, 2, 4, 5)).astype(np.float32)
    kernel = model.layers[0].get_weights()[0][:, :, 0, 0]
    expected = np.einsum("nchw,fc->nf", x, kernel) / 20
    np.testing.assert_allclose(model.predict(x), expected, rtol=1e-5, atol=1e-6)
    assert model.output_shape == (3,)


def test_get_layer_and_count_params():
    model = _mlp()
    model.build()
    assert model.get_layer("out") is model.layers[1] and model.get_layer(index=0) is model.layers[0]
    assert model.get_layer(index=-1).name == "out"
    with pytest.raises(gc.GraphcError, match="no layer named 'nope'; the layers are 'dense', 'out'"):
        model.get_layer("nope")
    with pytest.raises(gc.GraphcError, match="out of range"):
        model.get_layer(index=2)
    assert model.count_params() == 51


def test_layer_weights_in_keras_order_and_shapes():
    model = nn.Sequential([nn.Dense(5, input_shape=(3,)), nn.BatchNormalization(), nn.Dense(2)])
    model.build()
    kernel, bias = model.layers[0].get_weights()
    assert kernel.shape == (3, 5) and bias.shape == (5,)  # Keras' Dense shapes
    assert [w.shape for w in model.layers[1].get_weights()] == [(5,)] * 4
    new = [np.full((3, 5), 0.5, np.float32), np.arange(5, dtype=np.float32)]
    model.layers[0].set_weights(new)
    np.testing.assert_array_equal(model.layers[0].get_weights()[1], new[1])
    x = np.ones((1, 3), np.float32)
    np.testing.assert_allclose(x @ new[0] + new[1], np.full((1, 5), 1.5) + np.arange(5))
    with pytest.raises(gc.GraphcError, match=r"kernel: expected shape \(3, 5\), got \(5, 3\)"):
        model.layers[0].set_weights([new[0].T, new[1]])
    with pytest.raises(gc.GraphcError, match="has 2 weights"):
        model.layers[0].set_weights([new[0]])
    conv = nn.Sequential([nn.Conv2D(4, 3, input_shape=(2, 5, 5))]).build().layers[0]
    with pytest.raises(gc.GraphcError, match=r"Keras' \(kh, kw, in, filters\) layout"):
        conv.set_weights([np.zeros((3, 3, 2, 4)), np.zeros(4)])
    assert nn.Dense(2).get_weights() == []


def test_save_weights_and_load_weights(tmp_path):
    a, b = _mlp(), _mlp()
    a.build(seed=1)
    b.build(seed=2)
    path = str(tmp_path / "w.npz")
    a.save_weights(path)
    b.load_weights(path)
    x = RNG.standard_normal((5, 4)).astype(np.float32)
    np.testing.assert_array_equal(a.predict(x), b.predict(x))
    a.compile(loss="sparse_categorical_crossentropy", backend="numpy")
    a.save(str(tmp_path / "model.npz"))
    c = _mlp()
    c.load_weights(str(tmp_path / "model.npz"))  # a whole model file's weights
    for name, value in a.get_weights().items():
        np.testing.assert_array_equal(c.get_weights()[name], value)
    other = nn.Sequential([nn.Dense(7, input_shape=(4,)), nn.Dense(3, name="out")]).build()
    before = other.get_weights()
    with pytest.raises(nn.ModelFileError, match=r"weight 'dense/kernel' is float32 \(4, 6\)"):
        other.load_weights(path)
    for name, value in other.get_weights().items():
        np.testing.assert_array_equal(value, before[name])


@pytest.mark.parametrize("suffix", [".h5", ".keras", ".HDF5"])
def test_keras_file_names_are_refused(tmp_path, suffix):
    model = _mlp()
    model.compile(loss="sparse_categorical_crossentropy", backend="numpy")
    path = str(tmp_path / f"best{suffix}")
    for call in (model.save, model.save_weights, nn.load_model, model.load_weights):
        with pytest.raises(gc.GraphcError, match=rf"{suffix} is a Keras format; graphc's model and weight files are "
                                                 r"\.npz archives.*best\.npz"):
            call(path)
    assert not os.listdir(tmp_path)
