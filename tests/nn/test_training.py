"""Keras-like training: convergence on small real datasets, callbacks, save/load, clear errors."""

import numpy as np
import pytest

import graphc as gc
from graphc import nn

BACKENDS = ["numpy", "llvm"]

XOR_X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], np.float32)
XOR_Y = np.array([[0], [1], [1], [0]], np.float32)


def _xor_model(backend, seed=0):
    model = nn.Sequential([nn.Dense(2, activation="tanh", input_shape=(2,)), nn.Dense(1, activation="sigmoid")])
    model.build(seed=seed)
    model.compile(loss="binary_crossentropy", optimizer=gc.optim.Adam(0.1), metrics=["accuracy"], backend=backend)
    return model


def _iris_model(backend):
    model = nn.Sequential([nn.Dense(16, activation="relu", input_shape=(4,)), nn.Dense(8, activation="relu"),
                           nn.Dense(3, activation="softmax")])
    model.compile(loss="sparse_categorical_crossentropy", optimizer=gc.optim.Adam(0.01), metrics=["accuracy"],
                  backend=backend)
    return model


@pytest.mark.parametrize("backend", BACKENDS)
def test_xor_2_2_1_converges(backend):
    model = _xor_model(backend)
    history = model.fit(XOR_X, XOR_Y, epochs=300, batch_size=4, verbose=0)
    assert history.history["accuracy"][-1] == 1.0
    np.testing.assert_array_equal(model.predict(XOR_X) > 0.5, XOR_Y > 0.5)


@pytest.mark.parametrize("backend", BACKENDS)
def test_iris_test_accuracy(backend):
    """Mean test accuracy over five stratified 80/20 splits (split 0 alone is hard: logistic regression gets 90%)."""
    accuracies = []
    for seed in range(5):
        data = gc.data.iris(seed=seed)
        scale = gc.data.Standardizer().fit(data.x_train)
        model = _iris_model(backend)
        model.fit(scale.transform(data.x_train), data.y_train, epochs=40, batch_size=16, verbose=0)
        accuracies.append(model.evaluate(scale.transform(data.x_test), data.y_test)[1])
    assert np.mean(accuracies) >= 0.93, accuracies


@pytest.mark.parametrize("backend", BACKENDS)
def test_digits_mlp_accuracy(backend):
    data = gc.data.digits()
    model = nn.Sequential([nn.Dense(64, activation="relu", input_shape=(64,)), nn.Dense(10, activation="softmax")])
    model.compile(loss="sparse_categorical_crossentropy", optimizer=gc.optim.Adam(0.005), metrics=["accuracy"],
                  backend=backend)
    model.fit(data.x_train, data.y_train, epochs=20, batch_size=32, verbose=0)
    assert model.evaluate(data.x_test, data.y_test)[1] >= 0.95


def test_partial_last_batch_is_trained_not_dropped():
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((10, 3)).astype(np.float32), rng.standard_normal((10, 1)).astype(np.float32)
    model = nn.Sequential([nn.Dense(1, input_shape=(3,))])
    model.compile(loss="mse", optimizer=gc.optim.SGD(0.1), backend="numpy")
    model.fit(x, y, epochs=1, batch_size=4, shuffle=False, verbose=0)
    assert model.optimizer.iterations == 3  # batches of 4, 4 and 2
    assert sorted(k for k in model._programs) == [("train", 2), ("train", 4)]


def test_history_validation_and_progress_bar(capsys):
    data = gc.data.iris()
    model = _iris_model("numpy")
    history = model.fit(data.x_train, data.y_train, epochs=2, batch_size=32, validation_split=0.25, verbose=1)
    assert set(history.history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert all(len(v) == 2 for v in history.history.values())
    printed = capsys.readouterr().out
    assert "Epoch 1/2" in printed and "3/3 [" in printed and "val_accuracy" in printed


def test_early_stopping_restores_best_weights():
    data = gc.data.iris()
    model = _iris_model("numpy")
    stopper = nn.EarlyStopping(monitor="val_loss", patience=0, restore_best_weights=True)
    history = model.fit(data.x_train, data.y_train, epochs=200, batch_size=8,
                        validation_data=(data.x_test, data.y_test), callbacks=[stopper], verbose=0)
    assert stopper.stopped_epoch is not None and len(history.history["loss"]) < 200
    best = min(history.history["val_loss"])
    assert model.evaluate(data.x_test, data.y_test)[0] == pytest.approx(best, rel=1e-5)


def test_checkpoint_save_best_only_and_load(tmp_path):
    data = gc.data.iris()
    model = _iris_model("numpy")
    checkpoint = nn.ModelCheckpoint(str(tmp_path / "best.npz"), monitor="val_accuracy", save_best_only=True)
    model.fit(data.x_train, data.y_train, epochs=5, batch_size=16, validation_data=(data.x_test, data.y_test),
              callbacks=[checkpoint], verbose=0)
    assert checkpoint.saved and (tmp_path / "best.npz").exists()
    model.save(str(tmp_path / "last.npz"))
    restored = nn.load_model(str(tmp_path / "last.npz"), backend="numpy")
    np.testing.assert_array_equal(restored.predict(data.x_test), model.predict(data.x_test))


def test_resumed_training_equals_uninterrupted(tmp_path):
    """Saving keeps the optimizer state: 2 + 2 epochs after a reload equal 4 uninterrupted epochs."""
    data = gc.data.iris()
    a, b = _iris_model("numpy"), _iris_model("numpy")
    a.fit(data.x_train, data.y_train, epochs=4, batch_size=16, shuffle=False, verbose=0)
    b.fit(data.x_train, data.y_train, epochs=2, batch_size=16, shuffle=False, verbose=0)
    b.save(str(tmp_path / "m.npz"))
    c = nn.load_model(str(tmp_path / "m.npz"), backend="numpy")
    c.fit(data.x_train, data.y_train, epochs=2, batch_size=16, shuffle=False, verbose=0)
    np.testing.assert_allclose(c.predict(data.x_test), a.predict(data.x_test), rtol=1e-5, atol=1e-6)


def test_nan_loss_stops_with_report_and_restores_weights(tmp_path):
    data = gc.data.iris()
    model = nn.Sequential([nn.Dense(3, activation="softmax", input_shape=(4,))])
    model.compile(loss="sparse_categorical_crossentropy", optimizer=gc.optim.SGD(0.1), backend="numpy")
    before = model.get_weights()
    x = data.x_train.copy()
    x[37, 2] = np.nan
    checkpoint = nn.ModelCheckpoint(str(tmp_path / "ckpt.npz"))
    with pytest.raises(nn.TrainingError, match=r"epoch 1, step \d+/\d+") as info:
        model.fit(x, data.y_train, epochs=3, batch_size=16, shuffle=False, callbacks=[checkpoint], verbose=0)
    assert info.value.history.history == {}
    for name, value in model.get_weights().items():
        np.testing.assert_array_equal(value, before[name])
    assert not (tmp_path / "ckpt.npz").exists()


def test_clear_errors():
    data = gc.data.iris()
    model = _iris_model("numpy")
    with pytest.raises(gc.GraphcError, match="expects integer class labels of shape .*categorical_crossentropy"):
        model.fit(data.x_train, gc.data.one_hot(data.y_train, 3), epochs=1, verbose=0)
    with pytest.raises(gc.GraphcError, match="unknown loss 'crossentropy'"):
        model.compile(loss="crossentropy")
    with pytest.raises(gc.GraphcError, match="unknown optimizer 'adamw'"):
        model.compile(loss="mse", optimizer="adamw")
    with pytest.raises(gc.GraphcError, match=r"inputs have shape \(5, 3\)"):
        model.predict(np.zeros((5, 3), np.float32))


def test_summary_counts_params(capsys):
    model = nn.Sequential([nn.Dense(16, activation="relu", input_shape=(4,)), nn.Dense(3, activation="softmax")])
    model.summary()
    out = capsys.readouterr().out
    assert "dense (Dense)" in out and "(None, 16)" in out and "Total params: 131" in out


def test_confusion_matrix():
    matrix = nn.confusion_matrix(np.array([0, 1, 2, 2]), np.array([[1, 0, 0], [0, 0, 1], [0, 0, 1], [0, 0, 1]]))
    np.testing.assert_array_equal(matrix, [[1, 0, 0], [0, 0, 1], [0, 0, 2]])
