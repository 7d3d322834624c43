"""Channels-last images (item 1 of issue 13): NHWC models equal their NCHW twins, ambiguous layouts are refused."""

import numpy as np
import pytest

import graphc as gc
from graphc import nn

RNG = np.random.default_rng(0)


def _cnn(shape, data_format=None):
    return nn.Sequential([
        nn.Conv2D(4, (3, 3), padding="same", activation="relu", input_shape=shape),
        nn.MaxPool2D((2, 2)),
        nn.Conv2D(3, 3, activation="relu"),
        nn.AvgPool2D(1),
        nn.Flatten(),
        nn.Dense(5, activation="softmax"),
    ], data_format=data_format)


def _twins():
    nhwc, nchw = _cnn((8, 10, 3), "channels_last"), _cnn((3, 8, 10))
    nhwc.build(seed=1)
    nchw.build(seed=2)
    nchw.set_weights(nhwc.get_weights())
    return nhwc, nchw


@pytest.mark.parametrize("backend", ["numpy", "llvm"])
def test_channels_last_model_predicts_as_its_nchw_twin(backend):
    nhwc, nchw = _twins()
    for model in (nhwc, nchw):
        model.compile(loss="sparse_categorical_crossentropy", optimizer=gc.optim.SGD(0.1), backend=backend)
    x = RNG.standard_normal((7, 8, 10, 3)).astype(np.float32)
    np.testing.assert_allclose(nhwc.predict(x), nchw.predict(x.transpose(0, 3, 1, 2)), rtol=1e-5, atol=1e-6)
    assert nhwc.input_shape == (8, 10, 3) and nhwc.output_shape == (5,)
    # and they train identically: same losses, same weights after
    y = RNG.integers(0, 5, 7)
    h1 = nhwc.fit(x, y, epochs=2, batch_size=4, shuffle=False, verbose=0)
    h2 = nchw.fit(x.transpose(0, 3, 1, 2), y, epochs=2, batch_size=4, shuffle=False, verbose=0)
    np.testing.assert_allclose(h1.history["loss"], h2.history["loss"], rtol=1e-5)
    for name, value in nhwc.get_weights().items():
        np.testing.assert_allclose(value, nchw.get_weights()[name], rtol=1e-5, atol=1e-6)


def test_one_transpose_at_the_input_and_nchw_kernels():
    nhwc, _ = _twins()
    nhwc.compile(loss="mse", backend="numpy")
    prog = nhwc._program("predict", 2)[0]
    from graphc.ir import topo_ancestors

    nodes = topo_ancestors(prog.output_nodes)
    transposes = [n for n in nodes if n.op == "transpose"]
    assert len(transposes) == 1 and transposes[0].attrs["axes"] == (0, 3, 1, 2)
    conv = next(n for n in nodes if n.op == "conv2d")
    assert conv.inputs[0].shape == (2, 3, 8, 10)


@pytest.mark.parametrize("how", ["layer", "global", "input"])
def test_data_format_on_the_first_layer_the_global_setting_or_input(how, monkeypatch):
    monkeypatch.setattr(nn.layout, "_global_format", None)
    if how == "layer":
        model = nn.Sequential([nn.Conv2D(2, 3, data_format="channels_last", input_shape=(8, 10, 3)),
                               nn.GlobalAveragePooling2D()])
    elif how == "global":
        nn.set_image_data_format("channels_last")
        assert nn.image_data_format() == "channels_last"
        model = nn.Sequential([nn.Conv2D(2, 3, input_shape=(8, 10, 3)), nn.GlobalAveragePooling2D()])
    else:
        model = nn.Sequential([nn.Input(shape=(8, 10, 3), data_format="channels_last"), nn.Conv2D(2, 3),
                               nn.GlobalAveragePooling2D()])
    model.build()
    assert model.data_format == "channels_last" and model.output_shape == (2,)
    assert model.layers[0].output_shape == (2, 6, 8)  # layers see NCHW
    assert model.predict(np.zeros((1, 8, 10, 3), np.float32)).shape == (1, 2)


def test_image_output_comes_back_channels_last():
    model = nn.Sequential([nn.Conv2D(2, 1, input_shape=(4, 5, 3))], data_format="channels_last")
    model.build()
    assert model.output_shape == (4, 5, 2)
    x = RNG.standard_normal((2, 4, 5, 3)).astype(np.float32)
    kernel, bias = model.layers[0].get_weights()
    expected = np.einsum("nhwc,fc->nhwf", x, kernel[:, :, 0, 0]) + bias
    np.testing.assert_allclose(model.predict(x), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("shape", [(28, 28, 1), (32, 32, 3)])
def test_keras_image_shape_with_the_default_format_is_refused(shape, monkeypatch):
    monkeypatch.setattr(nn.layout, "_global_format", None)
    model = nn.Sequential([nn.Conv2D(8, (3, 3), padding="same", input_shape=shape), nn.Flatten(), nn.Dense(2)])
    with pytest.raises(gc.GraphcError, match=r"channels_last.*x\.transpose\(0, 3, 1, 2\)"):
        model.build()
    assert model.graph is None
    # saying channels_first explicitly keeps the literal reading (shape (28, 28, 1) as 28 channels)
    literal = nn.Sequential([nn.Flatten(input_shape=shape), nn.Dense(2)], data_format="channels_first").build()
    assert literal.input_shape == shape


def test_unbuilt_model_with_nhwc_data_is_refused(monkeypatch):
    monkeypatch.setattr(nn.layout, "_global_format", None)
    model = nn.Sequential([nn.Conv2D(2, 3), nn.Flatten(), nn.Dense(1)])
    model.compile(loss="mse")
    with pytest.raises(gc.GraphcError, match="looks like Keras' channels-last"):
        model.fit(np.zeros((4, 28, 28, 1), np.float32), np.zeros((4, 1), np.float32), verbose=0)


def test_data_in_the_other_layout_names_the_transpose():
    nhwc, nchw = _twins()
    x = np.zeros((2, 8, 10, 3), np.float32)
    with pytest.raises(gc.GraphcError, match=r"transpose it with x\.transpose\(0, 3, 1, 2\)"):
        nchw.predict(x)
    with pytest.raises(gc.GraphcError, match=r"transpose it with x\.transpose\(0, 2, 3, 1\)"):
        nhwc.predict(x.transpose(0, 3, 1, 2))


def test_mixed_formats_and_bad_names_are_errors():
    with pytest.raises(gc.GraphcError, match="data_format must be 'channels_first'"):
        nn.Conv2D(2, 3, data_format="NHWC")
    model = nn.Sequential([nn.Conv2D(2, 3, data_format="channels_first", input_shape=(8, 8, 3))],
                          data_format="channels_last")
    with pytest.raises(gc.GraphcError, match="a model uses one image layout"):
        model.build()


def test_channels_last_model_saves_and_loads(tmp_path):
    nhwc, _ = _twins()
    nhwc.compile(loss="sparse_categorical_crossentropy", backend="numpy")
    path = str(tmp_path / "cnn.npz")
    nhwc.save(path)
    restored = nn.load_model(path, backend="numpy")
    assert restored.data_format == "channels_last" and restored.input_shape == (8, 10, 3)
    x = RNG.standard_normal((3, 8, 10, 3)).astype(np.float32)
    np.testing.assert_array_equal(restored.predict(x), nhwc.predict(x))


def test_channels_first_file_loads_channels_first_under_a_channels_last_default(tmp_path, monkeypatch):
    model = nn.Sequential([nn.Conv2D(2, 3, input_shape=(3, 8, 8)), nn.Flatten()], data_format="channels_first")
    model.compile(loss="mse", backend="numpy")
    model.save(str(tmp_path / "m.npz"))
    monkeypatch.setattr(nn.layout, "_global_format", "channels_last")
    restored = nn.load_model(str(tmp_path / "m.npz"), backend="numpy")
    assert restored.data_format == "channels_first" and restored.input_shape == (3, 8, 8)
