"""The course notes' Keras examples (../shared/seeds) translated by changing only the import lines.

Each test body below the imports is the Keras code as a reader writes it (the notes' layers, compile and fit
calls, Keras' argument spellings, channels-last images); only the data sizes and epochs are cut down for the
test suite. Results at full size are in the README's "Coming from Keras" section.
"""

import numpy as np
import pytest

# -- the only lines that differ from the Keras code ------------------------------------------------------
import graphc as gc  # the data sets (the notes load theirs from files or tf.keras.datasets)
from graphc.keras import layers, models, optimizers, regularizers  # from tensorflow.keras import ...
from graphc.keras.callbacks import EarlyStopping  # from tensorflow.keras.callbacks import EarlyStopping
from graphc.keras.initializers import HeNormal  # from tensorflow.keras.initializers import HeNormal
from graphc.keras.utils import to_categorical  # from tensorflow.keras.utils import to_categorical

# ---------------------------------------------------------------------------------------------------------


def test_xor_mlp():
    X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype="float32")
    y = np.array([0, 1, 1, 0])  # shape (4,), integer 0/1 targets

    model = models.Sequential()
    model.add(layers.Dense(8, input_dim=2, activation="tanh"))
    model.add(layers.Dense(1, activation="sigmoid"))
    model.compile(loss="binary_crossentropy", optimizer=optimizers.Adam(learning_rate=0.1), metrics=["accuracy"])
    history = model.fit(X, y, epochs=200, batch_size=4, verbose=0)

    assert history.history["accuracy"][-1] == 1.0
    np.testing.assert_array_equal((model.predict(X, verbose=0) > 0.5).ravel(), y == 1)


def test_iris_from_the_notes():
    data = gc.data.iris()  # 105 train / 15 validation / 30 test, as the notes' split
    X_train, X_test = data.x_train, data.x_test
    X_train, X_test = (X_train - X_train.mean(0)) / X_train.std(0), (X_test - X_train.mean(0)) / X_train.std(0)
    y_train, y_test = to_categorical(data.y_train), to_categorical(data.y_test)

    Model_iris = models.Sequential()
    Model_iris.add(layers.Dense(16, activation="relu", input_shape=(4,)))
    Model_iris.add(layers.Dense(8, activation="relu"))
    Model_iris.add(layers.Dense(3, activation="softmax"))
    Model_iris.compile(loss="categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
    History_iris = Model_iris.fit(X_train, y_train, epochs=60, batch_size=7, validation_data=(X_test, y_test),
                                  verbose=0)
    loss, accuracy = Model_iris.evaluate(X_test, y_test)

    assert len(History_iris.history["val_accuracy"]) == 60
    assert accuracy >= 0.85, accuracy


def test_mnist_mlp_he_normal_l2_and_early_stopping():
    data = gc.data.mnist()
    X_train, y_train = data.x_train[:4000], to_categorical(data.y_train[:4000], 10)
    X_valid, y_valid = data.x_val[:1000], to_categorical(data.y_val[:1000], 10)

    initializer = HeNormal()
    mnist = models.Sequential()
    mnist.add(layers.Dense(512, activation="relu", input_shape=(28 * 28,), kernel_initializer=initializer,
                           kernel_regularizer=regularizers.l2(0.00001)))
    mnist.add(layers.Dropout(0.4))
    mnist.add(layers.Dense(256, activation="relu", kernel_initializer=initializer))
    mnist.add(layers.Dense(10, activation="softmax", kernel_initializer=initializer))
    mnist.compile(loss="categorical_crossentropy", optimizer="rmsprop", metrics=["accuracy"])
    es = EarlyStopping(monitor="val_loss", mode="min", patience=3)
    hist = mnist.fit(X_train, y_train, epochs=3, batch_size=128, validation_data=(X_valid, y_valid),
                     callbacks=[es], verbose=0)
    loss, accuracy = mnist.evaluate(X_valid, y_valid)

    assert mnist.count_params() == 784 * 512 + 512 + 512 * 256 + 256 + 2570
    assert len(hist.history["loss"]) == 3 and accuracy >= 0.88, accuracy


def test_cifar_style_cnn_channels_last():
    model = models.Sequential()
    model.add(layers.Conv2D(filters=128, kernel_size=(3, 3), padding="same", activation="relu",
                            input_shape=(32, 32, 3)))
    model.add(layers.MaxPool2D(pool_size=(2, 2)))
    model.add(layers.Conv2D(filters=128, kernel_size=(3, 3), activation="relu"))
    model.add(layers.MaxPool2D(pool_size=(2, 2)))
    model.add(layers.Conv2D(filters=128, kernel_size=(3, 3), activation="relu"))
    model.add(layers.Flatten())
    model.add(layers.Dense(units=256, activation="relu"))
    model.add(layers.Dropout(0.5))
    model.add(layers.Dense(units=100, activation="softmax"))
    model.compile(loss="sparse_categorical_crossentropy", optimizer="adam", metrics=["accuracy"])

    rng = np.random.default_rng(0)
    x = rng.random((64, 32, 32, 3), dtype=np.float32)  # NHWC, as Keras' image generators give them
    y = rng.integers(0, 100, 64)
    history = model.fit(x, y, epochs=1, batch_size=32, verbose=0)
    predictions = model.predict(x[:5], verbose=0)

    assert model.count_params() == 1_143_908  # Keras' summary() total for this network
    assert model.layers[4].output_shape == (128, 5, 5) and model.output_shape == (100,)
    assert np.isfinite(history.history["loss"][0]) and predictions.shape == (5, 100)
    np.testing.assert_allclose(predictions.sum(axis=1), 1.0, rtol=1e-5)


def test_the_same_cnn_from_graphc_nn_is_refused_with_the_fix():
    """graphc.nn's models are channels-first; the notes' (32, 32, 3) there is refused, never read as 32 channels."""
    import pytest

    model = gc.nn.Sequential()
    model.add(gc.nn.Conv2D(8, (3, 3), padding="same", activation="relu", input_shape=(32, 32, 3)))
    model.add(gc.nn.Flatten())
    model.add(gc.nn.Dense(10, activation="softmax"))
    with pytest.raises(gc.GraphcError, match="channels_last"):
        model.build()


def test_keras_namespace_cnn_matches_its_channels_first_twin():
    """The channels-last model of graphc.keras and a graphc.nn channels-first model with the same weights predict
    the same on transposed images."""
    def net(module, shape, **kw):
        model = module.Sequential(**kw)
        model.add(layers.Conv2D(4, (3, 3), padding="same", activation="relu", input_shape=shape))
        model.add(layers.MaxPool2D((2, 2)))
        model.add(layers.Flatten())
        model.add(layers.Dense(3, activation="softmax"))
        return model.build()

    last = net(models, (8, 8, 3))
    first = net(gc.nn, (3, 8, 8), data_format="channels_first")
    first.set_weights(last.get_weights())
    x = np.random.default_rng(0).random((5, 8, 8, 3), dtype=np.float32)
    np.testing.assert_allclose(last.predict(x, verbose=0), first.predict(x.transpose(0, 3, 1, 2), verbose=0),
                               rtol=1e-6, atol=1e-7)


def test_boston_style_regression_with_early_stopping_and_checkpoint_on_val_mae(tmp_path, capsys):
    """The notes' Boston callbacks: EarlyStopping and ModelCheckpoint on val_mae, verbose=1 (the checkpoint's file
    name changed from best_boston.h5 to .npz, graphc's format; Boston itself is replaced by synthetic data)."""
    from graphc.keras.callbacks import ModelCheckpoint  # from tensorflow.keras.callbacks import ModelCheckpoint

    rng = np.random.default_rng(3)
    X = rng.standard_normal((120, 13)).astype(np.float32)
    y = (X @ rng.standard_normal(13) + 0.1 * rng.standard_normal(120)).astype(np.float32).reshape(-1, 1)
    X_train, y_train, X_valid, y_valid = X[:90], y[:90], X[90:], y[90:]

    model = models.Sequential()
    model.add(layers.Dense(16, activation="relu", input_shape=(13,)))
    model.add(layers.Dense(1))
    model.compile(loss="mse", optimizer="adam", metrics=["mae"])
    es = EarlyStopping(monitor="val_mae", mode="min", patience=3, verbose=1)
    mc = ModelCheckpoint(str(tmp_path / "best_boston.npz"), monitor="val_mae", mode="min", save_best_only=True,
                         verbose=1)
    hist_model = model.fit(X_train, y_train, epochs=500, batch_size=1, validation_data=(X_valid, y_valid),
                           callbacks=[es, mc], verbose=0)

    out = capsys.readouterr().out
    epochs = len(hist_model.history["val_mae"])
    assert epochs < 500 and f"Epoch {epochs}: early stopping" in out  # it stopped, and said so as Keras does
    assert "saving model to" in out and (tmp_path / "best_boston.npz").exists()
    best = min(hist_model.history["val_mae"])
    saved = gc.nn.load_model(str(tmp_path / "best_boston.npz"))
    assert saved.evaluate(X_valid, y_valid, return_dict=True)["mae"] == pytest.approx(best, rel=1e-5)
