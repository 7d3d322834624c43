"""Keras' callbacks: EarlyStopping's rule and messages, ModelCheckpoint's messages, ReduceLROnPlateau,
LearningRateScheduler, CSVLogger, TerminateOnNaN, LambdaCallback and the hook order of fit."""

import csv

import numpy as np
import pytest

import graphc as gc
from graphc import nn

RNG = np.random.default_rng(3)
X = RNG.standard_normal((24, 3)).astype(np.float32)
Y = (X @ np.array([[1.0], [-1.0], [0.5]], np.float32)).astype(np.float32)


def _model(lr=0.05, optimizer=None, metrics=("mae",)):
    model = nn.Sequential([nn.Dense(4, activation="tanh", input_shape=(3,)), nn.Dense(1)])
    model.compile(loss="mse", optimizer=optimizer or gc.optim.SGD(learning_rate=lr), metrics=list(metrics),
                  backend="numpy")
    return model


class FakeModel:
    """Stands in for a model where a callback is driven with scripted monitor values."""

    def __init__(self, lr=0.1):
        self.stop_training = False
        self.weights = 0
        self.optimizer = gc.optim.SGD(lr)
        self._metric_runner = None

    def get_weights(self):
        return self.weights

    def set_weights(self, weights):
        self.weights = weights


def _drive(callback, values, key="val_loss", model=None):
    model = model or FakeModel()
    callback.set_model(model)
    callback.on_train_begin({})
    stopped = None
    for epoch, value in enumerate(values):
        model.weights = epoch  # "the weights at the end of epoch"
        callback.on_epoch_end(epoch, {key: value})
        if model.stop_training:
            stopped = epoch
            break
    callback.on_train_end({})
    return model, stopped


def test_early_stopping_follows_keras_patience_and_prints_its_lines(capsys):
    stopper = nn.EarlyStopping(monitor="val_loss", patience=2, verbose=1, restore_best_weights=True)
    model, stopped = _drive(stopper, [1.0, 0.8, 0.9, 0.85, 0.7])
    assert stopped == 3  # two epochs (2 and 3) without improvement on epoch 1's 0.8
    assert model.weights == 1  # the best epoch's weights
    assert capsys.readouterr().out.splitlines() == [
        "Restoring model weights from the end of the best epoch: 2.", "Epoch 4: early stopping"]


def test_early_stopping_min_delta_baseline_and_max_mode():
    _, stopped = _drive(nn.EarlyStopping(patience=1, min_delta=0.1), [1.0, 0.95, 0.5])
    assert stopped == 1  # 0.95 is not an improvement by more than 0.1
    _, stopped = _drive(nn.EarlyStopping(patience=2, baseline=0.5), [1.0, 0.9, 0.95, 0.97])
    assert stopped == 2  # improvements that do not beat the baseline do not reset the patience (Keras)
    _, stopped = _drive(nn.EarlyStopping(patience=2), [1.0, 0.9, 0.95, 0.97])
    assert stopped == 3
    _, stopped = _drive(nn.EarlyStopping(monitor="val_accuracy", patience=1), [0.5, 0.6, 0.55], "val_accuracy")
    assert stopped == 2


def test_early_stopping_names_a_missing_validation_key():
    with pytest.raises(gc.GraphcError, match="'val_loss' is not logged.*validation_data="):
        _model().fit(X, Y, epochs=1, callbacks=[nn.EarlyStopping()], verbose=0)


def test_model_checkpoint_prints_keras_lines(tmp_path, capsys):
    model = _model()
    path = str(tmp_path / "best.npz")
    checkpoint = nn.ModelCheckpoint(path, monitor="val_loss", save_best_only=True, verbose=1)
    history = model.fit(X[:16], Y[:16], epochs=4, batch_size=8, validation_data=(X[16:], Y[16:]),
                        callbacks=[checkpoint], verbose=0)
    lines = capsys.readouterr().out.splitlines()
    best, expected = float("inf"), []
    for epoch, value in enumerate(history.history["val_loss"]):
        if value < best:
            expected.append(f"Epoch {epoch + 1}: val_loss improved from {best:.5f} to {value:.5f}, saving model to "
                            f"{path}")
            best = value
        else:
            expected.append(f"Epoch {epoch + 1}: val_loss did not improve from {best:.5f}")
    assert lines == expected and lines[0].startswith("Epoch 1: val_loss improved from inf to ")
    every = nn.ModelCheckpoint(filepath=str(tmp_path / "e{epoch}.npz"), verbose=1)
    model.fit(X, Y, epochs=2, callbacks=[every], verbose=0)
    assert capsys.readouterr().out.splitlines() == [f"Epoch {e}: saving model to {tmp_path}/e{e}.npz" for e in (1, 2)]


def test_model_checkpoint_refuses_keras_file_names_before_training():
    with pytest.raises(gc.GraphcError, match="use filepath='best_boston.npz'"):
        nn.ModelCheckpoint("best_boston.h5", monitor="val_mae", mode="min", save_best_only=True, verbose=1)


def test_reduce_lr_on_plateau_rule_cooldown_and_min_lr(capsys):
    reducer = nn.ReduceLROnPlateau(monitor="loss", factor=0.5, patience=2, cooldown=1, min_lr=0.02, verbose=1)
    model = FakeModel(lr=0.1)
    reducer.set_model(model)
    reducer.on_train_begin({})
    seen = []
    for epoch, value in enumerate([1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]):
        logs = {"loss": value}
        reducer.on_epoch_end(epoch, logs)
        seen.append((logs["lr"], model.optimizer.learning_rate))
    # Keras' rule: reduced when 2 epochs passed without improvement (epoch 3); the cooldown epoch after a reduction
    # resets the wait and, ending, counts as a first epoch without improvement: reduced again 2 epochs later;
    # the logged lr is the rate the epoch trained with; never below min_lr
    assert [lr for lr, _ in seen] == pytest.approx([0.1, 0.1, 0.1, 0.05, 0.05, 0.025, 0.025, 0.02])
    assert seen[-1][1] == pytest.approx(0.02)
    assert capsys.readouterr().out.splitlines() == [
        "Epoch 3: ReduceLROnPlateau reducing learning rate to 0.05.",
        "Epoch 5: ReduceLROnPlateau reducing learning rate to 0.025.",
        "Epoch 7: ReduceLROnPlateau reducing learning rate to 0.02."]
    with pytest.raises(gc.GraphcError, match="factor must be in"):
        nn.ReduceLROnPlateau(factor=1.5)


def test_reduce_lr_on_plateau_changes_the_rate_the_compiled_step_uses():
    model = _model(lr=0.05)
    history = model.fit(X, Y, epochs=3, batch_size=24, shuffle=False,
                        callbacks=[nn.ReduceLROnPlateau(monitor="loss", factor=0.5, patience=0, min_delta=10.0)],
                        verbose=0)
    assert history.history["lr"] == pytest.approx([0.05, 0.05, 0.025])  # the rate each epoch trained with
    assert model.optimizer.learning_rate == pytest.approx(0.0125)
    twin = _model(lr=0.05)  # the same three steps with the rate set by hand in between
    for lr in (0.05, 0.05, 0.025):
        twin.optimizer.learning_rate = lr
        twin.train_on_batch(X, Y)
    for name, value in model.get_weights().items():
        np.testing.assert_allclose(value, twin.get_weights()[name], rtol=1e-6, err_msg=name)


def test_lr_callbacks_refuse_a_scheduled_optimizer():
    model = _model(optimizer=gc.optim.SGD(gc.optim.step_decay(0.1, 2)))
    with pytest.raises(gc.GraphcError, match="follows a schedule"):
        model.fit(X, Y, epochs=1, callbacks=[nn.LearningRateScheduler(lambda e, lr: lr)], verbose=0)


def test_learning_rate_scheduler_sets_each_epochs_rate(capsys):
    model = _model(lr=0.1)
    used = []
    record = nn.LambdaCallback(on_batch_begin=lambda batch, logs: used.append(model.optimizer.learning_rate))
    history = model.fit(X, Y, epochs=3, batch_size=12,
                        callbacks=[nn.LearningRateScheduler(lambda epoch, lr: lr * 0.5 if epoch else lr, verbose=1),
                                   record], verbose=0)
    assert used == pytest.approx([0.1, 0.1, 0.05, 0.05, 0.025, 0.025])
    assert history.history["lr"] == pytest.approx([0.1, 0.05, 0.025])
    assert capsys.readouterr().out.splitlines() == [
        f"Epoch {e + 1}: LearningRateScheduler setting learning rate to {lr}." for e, lr in
        enumerate([0.1, 0.05, 0.025])]
    one_arg = _model()
    one_arg.fit(X, Y, epochs=2, callbacks=[nn.LearningRateScheduler(lambda epoch: 0.01 * (epoch + 1))], verbose=0)
    assert one_arg.optimizer.learning_rate == pytest.approx(0.02)
    with pytest.raises(gc.GraphcError, match="must be a finite number"):
        _model().fit(X, Y, epochs=1, callbacks=[nn.LearningRateScheduler(lambda epoch: -1.0)], verbose=0)


def test_csv_logger_writes_keras_columns_and_appends(tmp_path):
    path = tmp_path / "log.csv"
    model = _model()
    history = model.fit(X, Y, epochs=2, validation_split=0.25, callbacks=[nn.CSVLogger(str(path))], verbose=0)
    rows = list(csv.DictReader(path.open()))
    assert list(rows[0]) == ["epoch", "loss", "mae", "val_loss", "val_mae"]
    assert [int(r["epoch"]) for r in rows] == [0, 1]
    assert [float(r["val_mae"]) for r in rows] == pytest.approx(history.history["val_mae"])
    model.fit(X, Y, epochs=1, callbacks=[nn.CSVLogger(str(path), separator=";", append=True)], verbose=0)
    lines = path.read_text().splitlines()
    assert len(lines) == 4 and lines[0].startswith("epoch,") and lines[3].startswith("0;")
    model.fit(X, Y, epochs=1, callbacks=[nn.CSVLogger(str(path))], verbose=0)
    assert len(path.read_text().splitlines()) == 2  # append=False starts the file over


def test_terminate_on_nan_stops_cleanly_after_the_last_whole_epoch(capsys):
    model = _model(lr=0.01)
    model.fit(X, Y, epochs=1, batch_size=8, verbose=0)
    weights = model.get_weights()
    model.optimizer.learning_rate = 1e30  # the first step makes the weights huge, the second's loss overflows
    history = model.fit(X, Y, epochs=3, batch_size=8, shuffle=False, callbacks=[nn.TerminateOnNaN()], verbose=0)
    assert history.history == {} and model.stop_training
    assert capsys.readouterr().out.splitlines() == ["Batch 1: Invalid loss, terminating training"]
    for name, value in weights.items():
        np.testing.assert_array_equal(model.get_weights()[name], value)
    with pytest.raises(nn.TrainingError):
        model.fit(X, Y, epochs=1, batch_size=8, verbose=0)


def test_hooks_run_in_keras_order_with_running_batch_logs():
    events = []
    model = _model()
    hooks = nn.LambdaCallback(
        on_train_begin=lambda logs: events.append("train_begin"),
        on_epoch_begin=lambda epoch, logs: events.append(f"epoch_begin {epoch}"),
        on_batch_begin=lambda batch, logs: events.append(f"batch_begin {batch}"),
        on_batch_end=lambda batch, logs: events.append(f"batch_end {batch} {sorted(logs)}"),
        on_epoch_end=lambda epoch, logs: events.append(f"epoch_end {epoch}"),
        on_train_end=lambda logs: events.append(f"train_end {sorted(logs)}"))
    model.fit(X, Y, epochs=2, batch_size=12, callbacks=[hooks], verbose=0)
    batch = ["batch_begin 0", "batch_end 0 ['loss', 'mae']", "batch_begin 1", "batch_end 1 ['loss', 'mae']"]
    assert events == ["train_begin", "epoch_begin 0", *batch, "epoch_end 0", "epoch_begin 1", *batch,
                      "epoch_end 1", "train_end ['loss', 'mae']"]
    with pytest.raises(gc.GraphcError, match="unknown hooks on_epoch_ended"):
        nn.LambdaCallback(on_epoch_ended=print)


def test_batch_end_logs_are_the_epochs_running_means():
    model, running = _model(), []
    model.fit(X, Y, epochs=1, batch_size=8, shuffle=False, verbose=0,
              callbacks=[nn.LambdaCallback(on_batch_end=lambda batch, logs: running.append(logs["loss"]))])
    assert len(running) == 3
    history = model.fit(X, Y, epochs=1, batch_size=8, shuffle=False, verbose=0,
                        callbacks=[nn.LambdaCallback(on_batch_end=lambda batch, logs: running.append(logs["loss"]))])
    assert running[-1] == pytest.approx(history.history["loss"][0])


def test_stop_training_from_a_batch_hook_ends_the_epoch_after_that_step():
    model = _model()

    class StopAtBatch1(nn.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if batch == 1:
                self.model.stop_training = True

    history = model.fit(X, Y, epochs=3, batch_size=4, callbacks=[StopAtBatch1()], verbose=0)
    assert model.optimizer.iterations == 2 and len(history.history["loss"]) == 1
