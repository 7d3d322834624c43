"""Keras spellings on the model side (item 3 of issue 13) and the crashes of item 5."""

import numpy as np
import pytest

import graphc as gc
from graphc import nn

RNG = np.random.default_rng(0)
X = RNG.standard_normal((40, 4)).astype(np.float32)
LABELS = (X[:, 0] + X[:, 1] > 0).astype(np.int64) + (X[:, 2] > 1)


def _classifier(**compile_args):
    model = nn.Sequential([nn.Dense(8, activation="relu", input_dim=4), nn.Dense(3, activation="softmax")])
    model.compile(loss="sparse_categorical_crossentropy", optimizer=gc.optim.SGD(0.1), backend="numpy",
                  **compile_args)
    return model


def test_input_dim_and_keras_build_forms():
    model = nn.Sequential([nn.Dense(8, input_dim=2), nn.Dense(1)])
    assert model.build().input_shape == (2,)
    with pytest.raises(gc.GraphcError, match="input_dim or input_shape, not both"):
        nn.Dense(8, input_dim=2, input_shape=(2,))
    keras_form = nn.Sequential([nn.Dense(3), nn.Dense(1)]).build((None, 4))
    plain = nn.Sequential([nn.Dense(3), nn.Dense(1)]).build((4,))
    assert keras_form.input_shape == plain.input_shape == (4,)
    assert keras_form.count_params() == plain.count_params() == 4 * 3 + 3 + 3 + 1


def test_failed_build_leaves_the_model_unbuilt():
    model = nn.Sequential([nn.Dense(3), nn.Dropout(0.5), nn.Dense(1)])
    with pytest.raises(gc.GraphcError, match="input_shape must be a tuple of positive integers"):
        model.build((None, None))
    with pytest.raises(gc.GraphcError, match="needs a flat input"):
        model.build((2, 3))  # Dense on a 2-D input fails inside the layers
    assert model.graph is None and all(layer.graph is None and not layer.params for layer in model.layers)
    assert model.layers[1].seed is None
    model.build((None, 4))
    model.compile(loss="mse", backend="numpy")
    assert model.predict(np.zeros((2, 4), np.float32)).shape == (2, 1)


def test_sequential_without_input_shape_builds_from_the_first_batch():
    model = nn.Sequential()
    model.add(nn.Dense(8, activation="relu"))
    model.add(nn.Dense(3, activation="softmax"))
    model.compile(loss="sparse_categorical_crossentropy", backend="numpy")
    assert model.graph is None
    model.fit(X, LABELS, epochs=1, verbose=0)
    assert model.input_shape == (4,) and model.count_params() == 4 * 8 + 8 + 8 * 3 + 3
    fresh = nn.Sequential([nn.Dense(2)])
    assert fresh.predict(X).shape == (40, 2)


def test_initializer_and_padding_names_in_any_case():
    from graphc.nn.initializers import HeNormal

    for name in ("HeNormal", "he_normal", "HE_NORMAL", HeNormal()):
        layer = nn.Dense(4, kernel_initializer=name, input_shape=(50,))
        nn.Sequential([layer]).build(seed=3)
        assert abs(layer.get_weights()[0].std() - np.sqrt(2 / 50)) < 0.05
    assert nn.Conv2D(2, 3, padding="SAME").padding == "same"
    assert nn.MaxPool2D(2, padding="VALID").pool_size == (2, 2)
    with pytest.raises(gc.GraphcError, match="unknown initializer 'he_normall'"):
        nn.Dense(2, kernel_initializer="he_normall")
    with pytest.raises(gc.GraphcError, match="padding must be 'valid' or 'same'"):
        nn.Conv2D(2, 3, padding="full")


def test_batch_size_none_is_32_and_predict_takes_verbose():
    model = _classifier()
    model.fit(X, LABELS, epochs=1, batch_size=None, verbose=0)
    assert sorted(model._programs) == [("train", 8), ("train", 32)]
    assert model.predict(X, verbose=0, batch_size=None).shape == (40, 3)
    assert model.predict(X, verbose=0, batch_size=16).shape == (40, 3)


def test_initial_epoch_runs_the_remaining_epochs():
    model = _classifier()
    seen = []
    history = model.fit(X, LABELS, epochs=5, initial_epoch=3, verbose=0,
                        callbacks=[type("C", (nn.Callback,), {"on_epoch_end": lambda self, e, logs: seen.append(e)})()])
    assert seen == [3, 4] and len(history.history["loss"]) == 2


def test_sample_weight_weights_each_loss_as_keras():
    model = _classifier()
    per_example = [model.evaluate(X[i:i + 1], LABELS[i:i + 1]) for i in range(8)]
    w = np.arange(8, dtype=np.float32)
    weighted = model.evaluate(X[:8], LABELS[:8], sample_weight=w)
    assert weighted == pytest.approx(np.dot(w, per_example) / 8, rel=1e-5)


def test_sample_weight_and_class_weight_change_training_exactly_as_weights():
    ones, zero_half = np.ones(40), np.r_[np.ones(20), np.zeros(20)]
    a, b, c = _classifier(), _classifier(), _classifier()
    a.fit(X, LABELS, epochs=2, batch_size=40, shuffle=False, verbose=0, sample_weight=ones)
    b.fit(X, LABELS, epochs=2, batch_size=40, shuffle=False, verbose=0)
    for name, value in a.get_weights().items():
        np.testing.assert_allclose(value, b.get_weights()[name], rtol=1e-5, atol=1e-7)
    # zero-weighted examples do not count: training on the first half weighted by 1 (mean over 40) equals
    # training on the first half alone with weights 0.5 (mean over 20)
    c.fit(X, LABELS, epochs=2, batch_size=40, shuffle=False, verbose=0, sample_weight=zero_half)
    d = _classifier()
    d.fit(X[:20], LABELS[:20], epochs=2, batch_size=20, shuffle=False, verbose=0, sample_weight=np.full(20, 0.5))
    for name, value in c.get_weights().items():
        np.testing.assert_allclose(value, d.get_weights()[name], rtol=1e-4, atol=1e-6)
    # class_weight is sample_weight = weight of the example's class
    e, f = _classifier(), _classifier()
    table = {0: 1.0, 1: 2.0, 2: 0.5}
    he = e.fit(X, LABELS, epochs=2, batch_size=16, shuffle=False, verbose=0, class_weight=table)
    hf = f.fit(X, LABELS, epochs=2, batch_size=16, shuffle=False, verbose=0,
               sample_weight=np.array([table[k] for k in LABELS]))
    assert he.history["loss"] == pytest.approx(hf.history["loss"], rel=1e-6)
    with pytest.raises(gc.GraphcError, match=r"class_weight has no weight for class\(es\) \[2\]"):
        e.fit(X, LABELS, epochs=1, verbose=0, class_weight={0: 1, 1: 1})
    with pytest.raises(gc.GraphcError, match=r"sample_weight must have one weight per example"):
        e.fit(X, LABELS, epochs=1, verbose=0, sample_weight=np.ones(3))


def test_accuracy_stays_unweighted():
    model = _classifier(metrics=["accuracy"])
    plain = model.evaluate(X, LABELS, return_dict=True)
    weighted = model.evaluate(X, LABELS, return_dict=True, sample_weight=np.linspace(0, 1, 40))
    assert weighted["accuracy"] == plain["accuracy"] and weighted["loss"] != plain["loss"]


def test_validation_data_forms_and_empty_sets():
    model = _classifier()
    for data in ((X[:8], LABELS[:8]), (X[:8], LABELS[:8], None), (X[:8], LABELS[:8], np.ones(8))):
        history = model.fit(X, LABELS, epochs=1, verbose=0, validation_data=data)
        assert "val_loss" in history.history
    with pytest.raises(gc.GraphcError, match="validation_data has no examples"):
        model.fit(X, LABELS, epochs=1, verbose=0, validation_data=(X[:0], LABELS[:0]))
    with pytest.raises(gc.GraphcError, match="validation_data must be a tuple"):
        model.fit(X, LABELS, epochs=1, verbose=0, validation_data=[X])
    with pytest.raises(gc.GraphcError, match="evaluate's data has no examples"):
        model.evaluate(X[:0], LABELS[:0])
    with pytest.raises(gc.GraphcError, match="leaves 0 for validation"):
        model.fit(X[:3], LABELS[:3], epochs=1, verbose=0, validation_split=0.1)


def test_iris_default_split_has_a_validation_set():
    data = gc.data.iris()
    assert (len(data.x_train), len(data.x_val), len(data.x_test)) == (105, 15, 30)
    model = _classifier(metrics=["accuracy"])
    history = model.fit(data.x_train, data.y_train, epochs=1, verbose=0, validation_data=(data.x_val, data.y_val))
    assert len(history.history["val_accuracy"]) == 1
    assert model.evaluate(data.x_val, data.y_val)[0] > 0


def test_lenient_targets():
    binary = nn.Sequential([nn.Dense(1, activation="sigmoid", input_shape=(4,))])
    binary.compile(loss="binary_crossentropy", optimizer=gc.optim.SGD(0.1), backend="numpy")
    flat, column = (X[:, 0] > 0).astype(np.float32), (X[:, :1] > 0).astype(np.float32)
    assert binary.evaluate(X, flat) == binary.evaluate(X, column) == binary.evaluate(X, flat.astype(int))
    binary.fit(X, flat, epochs=1, verbose=0)
    model = _classifier()
    as_int = model.evaluate(X, LABELS)
    assert model.evaluate(X, LABELS.astype(np.float32)) == as_int == model.evaluate(X, LABELS[:, None])
    with pytest.raises(gc.GraphcError, match=r"hold 0\.5, which is not a class index; pass y\.astype\(int\)"):
        model.fit(X, np.where(LABELS == 1, 0.5, LABELS).astype(np.float32), verbose=0)


def test_program_accepts_a_dict_positionally():
    from graphc.ir import Graph
    from ops import fn

    graph = Graph("dict_feeds")
    x = graph.input("x", (3,))
    prog = gc.compile({"y": fn.relu(x)}, backend="numpy")
    values = np.array([-1.0, 0.5, 2.0], np.float32)
    np.testing.assert_array_equal(prog({"x": values})["y"], prog(x=values)["y"])
    with pytest.raises(gc.GraphcError, match="given twice"):
        prog({"x": values}, x=values)
    with pytest.raises(gc.GraphcError, match="takes its inputs by name"):
        prog(values)
