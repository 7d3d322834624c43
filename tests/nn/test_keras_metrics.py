"""Keras metrics (graphc.nn.metrics): every built-in against its NumPy definition (ties included), "accuracy"
resolved by loss, custom graph-op metrics, log keys, monitoring val_* metrics, saving and clear errors."""

import numpy as np
import pytest

import graphc as gc
from graphc import nn
from graphc.nn import metrics as M

RNG = np.random.default_rng(7)


def _run(names, loss, y_true, y_pred):
    return M.MetricRunner(M.resolve(names, loss))(y_true, y_pred)


def _first_argmax_with_ties():
    pred = RNG.random((40, 5)).astype(np.float32)
    pred[:8] = np.round(pred[:8] * 2) / 2  # rows with tied maxima: the first maximum is the prediction
    labels = RNG.integers(0, 5, 40)
    labels[:4] = pred[:4].argmax(axis=1)
    labels[4:8] = 4 - (pred[4:8][:, ::-1].argmax(axis=1))  # the last of the tied maxima: counts only if unique
    return pred, labels


def test_categorical_and_sparse_accuracy_match_numpy_argmax_including_ties():
    pred, labels = _first_argmax_with_ties()
    onehot = np.eye(5, dtype=np.float32)[labels]
    expected = np.mean(pred.argmax(axis=1) == labels)
    got = _run(["categorical_accuracy"], "categorical_crossentropy", onehot, pred)
    assert got["categorical_accuracy"] == pytest.approx(expected, abs=1e-12)
    got = _run(["sparse_categorical_accuracy"], "sparse_categorical_crossentropy", labels, pred)
    assert got["sparse_categorical_accuracy"] == pytest.approx(expected, abs=1e-12)
    assert 0 < expected < 1


@pytest.mark.parametrize("k", [1, 2, 5, 7])
def test_top_k_accuracy_matches_numpy_in_top_k(k):
    pred, labels = _first_argmax_with_ties()
    onehot = np.eye(5, dtype=np.float32)[labels]
    true_score = pred[np.arange(len(pred)), labels][:, None]
    expected = np.mean((pred > true_score).sum(axis=1) < k)  # TensorFlow's in_top_k: ties count as inside
    dense = M.MetricRunner([M.TopKCategoricalAccuracy(k, name="top")])(onehot, pred)["top"]
    sparse = M.MetricRunner([M.SparseTopKCategoricalAccuracy(k, name="top")])(labels, pred)["top"]
    assert dense == pytest.approx(expected, abs=1e-12) and sparse == pytest.approx(expected, abs=1e-12)


def test_top_k_default_k_is_5():
    pred = RNG.random((30, 8)).astype(np.float32)
    labels = RNG.integers(0, 8, 30)
    expected = np.mean((pred > pred[np.arange(30), labels][:, None]).sum(axis=1) < 5)
    got = _run(["top_k_categorical_accuracy"], None, np.eye(8, dtype=np.float32)[labels], pred)
    assert got["top_k_categorical_accuracy"] == pytest.approx(expected, abs=1e-12)
    assert _run(["sparse_top_k_categorical_accuracy"], None, labels, pred)["sparse_top_k_categorical_accuracy"] \
        == pytest.approx(expected, abs=1e-12)


def test_mae_mse_binary_accuracy_match_numpy():
    y = RNG.standard_normal((25, 3)).astype(np.float32)
    p = RNG.standard_normal((25, 3)).astype(np.float32)
    got = _run(["mae", "mse", "mean_absolute_error", "mean_squared_error"], "mse", y, p)
    assert got["mae"] == pytest.approx(np.mean(np.abs(p - y)), rel=1e-6)
    assert got["mse"] == pytest.approx(np.mean((p - y) ** 2), rel=1e-6)
    assert got["mean_absolute_error"] == got["mae"] and got["mean_squared_error"] == got["mse"]
    targets = (RNG.random((25, 2)) > 0.5).astype(np.float32)
    probs = RNG.random((25, 2)).astype(np.float32)
    got = _run(["binary_accuracy", "accuracy"], "binary_crossentropy", targets, probs)
    assert got["binary_accuracy"] == pytest.approx(np.mean(targets == (probs > 0.5)), abs=1e-12)
    assert got["accuracy"] == got["binary_accuracy"]  # "accuracy" for binary_crossentropy


def test_binary_targets_of_shape_n_match_a_single_output_unit():
    targets = np.array([0, 1, 1, 0, 1], np.float32)
    probs = np.array([[0.2], [0.7], [0.4], [0.6], [0.9]], np.float32)
    assert _run(["binary_accuracy"], None, targets, probs)["binary_accuracy"] == pytest.approx(0.6)


def _regression(backend="numpy"):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((48, 3)).astype(np.float32)
    y = (x @ np.array([[1.0], [-2.0], [0.5]], np.float32) + 0.3).astype(np.float32)
    model = nn.Sequential([nn.Dense(8, activation="tanh", input_shape=(3,)), nn.Dense(1)])
    model.compile(loss="mse", optimizer=gc.optim.Adam(learning_rate=0.02), metrics=["mae", "mse"], backend=backend)
    return model, x, y


def test_model_logs_keras_keys_and_evaluate_matches_numpy_on_predictions():
    model, x, y = _regression()
    history = model.fit(x[:32], y[:32], epochs=3, batch_size=8, validation_data=(x[32:], y[32:]), verbose=0)
    assert list(history.history) == ["loss", "mae", "mse", "val_loss", "val_mae", "val_mse"]
    logs = model.evaluate(x[32:], y[32:], batch_size=5, return_dict=True)
    pred = model.predict(x[32:])
    assert logs["mae"] == pytest.approx(np.mean(np.abs(pred - y[32:])), rel=1e-5)
    assert logs["mse"] == pytest.approx(np.mean((pred - y[32:]) ** 2), rel=1e-5)
    assert logs["loss"] == pytest.approx(logs["mse"], rel=1e-5)  # the loss is mse: the same number twice
    assert model.evaluate(x[32:], y[32:]) == pytest.approx([logs["loss"], logs["mae"], logs["mse"]])
    assert history.history["val_mae"][-1] == pytest.approx(logs["mae"], rel=1e-5)


@pytest.mark.parametrize("spelling", ["accuracy", "acc"])
def test_accuracy_as_a_plain_string_and_its_key(spelling):
    data = gc.data.iris()
    model = nn.Sequential([nn.Dense(8, activation="relu", input_shape=(4,)), nn.Dense(3, activation="softmax")])
    model.compile(loss="sparse_categorical_crossentropy", optimizer="adam", metrics=spelling, backend="numpy")
    assert model.metrics == [spelling]
    history = model.fit(data.x_train, data.y_train, epochs=2, batch_size=16, verbose=0)
    assert set(history.history) == {"loss", spelling}
    pred = model.predict(data.x_train)
    logs = model.evaluate(data.x_train, data.y_train, return_dict=True)
    assert logs[spelling] == pytest.approx(np.mean(pred.argmax(axis=1) == data.y_train), abs=1e-12)


def test_accuracy_for_one_hot_targets_is_categorical():
    data = gc.data.iris()
    onehot = gc.data.one_hot(data.y_train, 3)
    model = nn.Sequential([nn.Dense(3, activation="softmax", input_shape=(4,))])
    model.compile(loss="categorical_crossentropy", metrics=["accuracy"], backend="numpy")
    pred = model.predict(data.x_train)
    assert model.evaluate(data.x_train, onehot, return_dict=True)["accuracy"] == \
        pytest.approx(np.mean(pred.argmax(axis=1) == data.y_train), abs=1e-12)


def within_half(y_true, y_pred):
    """A custom metric from graphc ops: the fraction of outputs within 0.5 of the target."""
    return gc.mean(gc.cast(gc.greater(0.5, gc.abs(y_pred - y_true)), "float32"), axis=-1)


def test_custom_graph_op_metric_is_computed_and_logged_by_its_name():
    model, x, y = _regression()
    model.compile(loss="mse", optimizer=gc.optim.Adam(0.02), metrics=[within_half, "mae"], backend="numpy")
    history = model.fit(x, y, epochs=2, batch_size=16, validation_split=0.25, verbose=0)
    assert {"within_half", "val_within_half"} <= set(history.history)
    pred = model.predict(x)
    got = model.evaluate(x, y, return_dict=True)["within_half"]
    assert got == pytest.approx(np.mean(np.abs(pred - y) < 0.5), abs=1e-12)


def test_monitoring_val_mae_in_callbacks(tmp_path):
    model, x, y = _regression()
    stopper = nn.EarlyStopping(monitor="val_mae", patience=2)
    best = nn.ModelCheckpoint(str(tmp_path / "best.npz"), monitor="val_mae", save_best_only=True)
    assert stopper.mode == "min" and best.mode == "min"
    history = model.fit(x[:32], y[:32], epochs=6, batch_size=8, validation_data=(x[32:], y[32:]),
                        callbacks=[stopper, best], verbose=0)
    assert best.saved and len(history.history["val_mae"]) >= 2
    assert nn.EarlyStopping(monitor="val_accuracy").mode == "max"
    assert nn.EarlyStopping(monitor="val_top_k_categorical_accuracy").mode == "max"


def test_custom_metric_needs_an_explicit_mode_when_monitored():
    model, x, y = _regression()
    model.compile(loss="mse", metrics=[within_half], backend="numpy")
    with pytest.raises(gc.GraphcError, match="within_half.*mode='max'"):
        model.fit(x, y, epochs=1, callbacks=[nn.EarlyStopping(monitor="within_half")], verbose=0)
    model.fit(x, y, epochs=2, callbacks=[nn.EarlyStopping(monitor="within_half", mode="max")], verbose=0)


def test_metrics_survive_save_and_load(tmp_path):
    model, x, y = _regression()
    model.fit(x, y, epochs=1, batch_size=16, verbose=0)
    model.save(str(tmp_path / "m.npz"))
    loaded = nn.load_model(str(tmp_path / "m.npz"), backend="numpy")
    assert loaded.metrics == ["mae", "mse"]
    assert loaded.evaluate(x, y, return_dict=True) == pytest.approx(model.evaluate(x, y, return_dict=True))


def test_a_custom_metric_is_not_restored_and_load_says_so(tmp_path):
    model, x, y = _regression()
    model.compile(loss="mse", metrics=["mae", within_half], backend="numpy")
    model.save(str(tmp_path / "m.npz"))
    with pytest.warns(UserWarning, match="'within_half' were custom functions"):
        loaded = nn.load_model(str(tmp_path / "m.npz"), backend="numpy")
    assert loaded.metrics == ["mae"]


def test_clear_errors():
    model, x, y = _regression()
    with pytest.raises(gc.GraphcError, match="unknown metric 'accurracy'; choose one of accuracy, acc, mae"):
        model.compile(loss="mse", metrics=["accurracy"])
    with pytest.raises(gc.GraphcError, match="listed twice"):
        model.compile(loss="mse", metrics=["mae", "mae"])

    def numpy_metric(y_true, y_pred):
        return np.mean(np.abs(y_true - y_pred).reshape(-1) > 3)

    with pytest.raises(gc.GraphcError, match="metric 'numpy_metric'.*graphc ops"):
        model.compile(loss="mse", metrics=[numpy_metric], backend="numpy")
    clf = nn.Sequential([nn.Dense(3, activation="softmax", input_shape=(4,))])
    with pytest.raises(gc.GraphcError, match="categorical_accuracy.*use 'sparse_categorical_accuracy'"):
        clf.compile(loss="sparse_categorical_crossentropy", metrics=["categorical_accuracy"], backend="numpy")
    with pytest.raises(gc.GraphcError, match="use 'categorical_accuracy'"):
        clf.compile(loss="categorical_crossentropy", metrics=["sparse_categorical_accuracy"], backend="numpy")
    with pytest.raises(gc.GraphcError, match="k must be a positive integer"):
        M.TopKCategoricalAccuracy(0)


def test_gc_nn_accuracy_keeps_its_signature():
    pred = np.array([[0.1, 0.9], [0.8, 0.2], [0.5, 0.5]], np.float32)
    assert nn.accuracy("sparse_categorical_crossentropy", pred, np.array([1, 0, 1])) == pytest.approx(2 / 3)
