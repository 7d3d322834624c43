"""Ctrl-C (KeyboardInterrupt) during ``fit`` restores the complete state of the interrupted epoch's start and
re-raises: the model is then exactly as after its last completed epoch, every param consistent with the others."""

import os
import signal
import threading

import numpy as np
import pytest

import graphc as gc
from graphc import nn

RNG = np.random.default_rng(1)
X = RNG.standard_normal((40, 5)).astype(np.float32)
Y = RNG.integers(0, 3, 40)
STEPS = 5  # per epoch, batch size 8


def _model():
    model = nn.Sequential([nn.Dense(12, activation="relu", input_shape=(5,)), nn.BatchNormalization(),
                           nn.Dropout(0.2, seed=1), nn.Dense(3, activation="softmax")])
    model.compile(loss="sparse_categorical_crossentropy",
                  optimizer=gc.optim.Adam(gc.optim.step_decay(0.05, 3, 0.5)), backend="numpy")
    return model


def _copy(model):
    return {name: value.copy() for name, value in model.graph.state.items()}


class Record(nn.Callback):
    """Copies of the whole graph state after every completed epoch."""

    def __init__(self):
        self.states = []

    def on_epoch_end(self, epoch, logs):
        self.states.append(_copy(self.model))


def _interrupt_at(model, monkeypatch, call, before_step=False):
    """Make the ``call``-th training-program call raise KeyboardInterrupt: once its step is applied (how a
    SIGINT during a step arrives, the runtime defers it past the update) or before it runs."""
    calls = {"n": 0}
    real_program = model._program

    def program(mode, batch):
        prog, x_name, y_name = real_program(mode, batch)
        if mode != "train":
            return prog, x_name, y_name

        def step(**feeds):
            calls["n"] += 1
            if before_step and calls["n"] == call:
                raise KeyboardInterrupt
            out = prog(**feeds)
            if calls["n"] == call:
                raise KeyboardInterrupt
            return out

        return step, x_name, y_name

    monkeypatch.setattr(model, "_program", program)


def _assert_state(model, expected):
    assert sorted(model.graph.state) == sorted(expected)
    for name, value in expected.items():
        np.testing.assert_array_equal(model.graph.state[name], value, err_msg=name)


@pytest.mark.parametrize("before_step", [False, True], ids=["after-a-step", "between-steps"])
def test_an_interrupt_mid_epoch_restores_the_epochs_start_exactly(monkeypatch, before_step):
    model, record = _model(), Record()
    _interrupt_at(model, monkeypatch, STEPS + 3, before_step)  # epoch 2, step 3
    with pytest.raises(KeyboardInterrupt):
        model.fit(X, Y, epochs=4, batch_size=8, callbacks=[record], verbose=0)
    assert len(record.states) == 1
    _assert_state(model, record.states[0])
    # consistent with each other: the step count, the schedule's learning rate and the dropout counter all say
    # "one epoch done"
    assert model.optimizer.iterations == STEPS
    assert model.optimizer.lr_value == gc.optim.step_decay(0.05, 3, 0.5)(STEPS - 1)
    assert int(model.graph.state["__dropout_step"]) == STEPS


def test_an_interrupt_in_the_first_epoch_restores_the_initial_state_including_fresh_optimizer_state(monkeypatch):
    model = _model()
    initial = model.get_weights()
    _interrupt_at(model, monkeypatch, 2)
    with pytest.raises(KeyboardInterrupt):
        model.fit(X, Y, epochs=2, batch_size=8, verbose=0)
    for name, value in initial.items():
        np.testing.assert_array_equal(model.graph.state[name], value, err_msg=name)
    assert model.optimizer.iterations == 0
    assert model.optimizer.lr_value == 0.05
    assert int(model.graph.state["__dropout_step"]) == 0
    for name in model.optimizer.state_names:
        if name.endswith(("/m", "/v")):
            assert not model.graph.state[name].any(), name


def test_training_resumes_after_an_interrupt_as_if_it_had_not_happened(monkeypatch):
    """The restored state is a clean epoch boundary: fitting on from it matches an uninterrupted run."""
    interrupted, clean = _model(), _model()
    _interrupt_at(interrupted, monkeypatch, STEPS + 2)
    with pytest.raises(KeyboardInterrupt):
        interrupted.fit(X, Y, epochs=3, batch_size=8, shuffle=False, verbose=0)
    monkeypatch.undo()
    interrupted.fit(X, Y, epochs=2, batch_size=8, shuffle=False, verbose=0)
    clean.fit(X, Y, epochs=3, batch_size=8, shuffle=False, verbose=0)
    _assert_state(interrupted, _copy(clean))


def test_an_interrupt_in_an_epoch_end_callback_keeps_the_completed_epoch():
    model, record = _model(), Record()

    class Stop(nn.Callback):
        def on_epoch_end(self, epoch, logs):
            if epoch == 1:
                raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        model.fit(X, Y, epochs=4, batch_size=8, callbacks=[record, Stop()], verbose=0)
    _assert_state(model, record.states[1])
    assert model.optimizer.iterations == 2 * STEPS


def test_a_real_ctrl_c_at_an_arbitrary_moment_leaves_an_epoch_boundary():
    """SIGINT from a timer lands wherever fit happens to be (a step, the finite check, the snapshot, a restore):
    the state afterwards is always a whole number of epochs, every piece consistent with the others."""
    model = _model()
    timer = threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            model.fit(X, Y, epochs=10**6, batch_size=8, verbose=0)  # runs until interrupted
    finally:
        timer.cancel()
    steps = model.optimizer.iterations
    assert steps % STEPS == 0
    assert int(model.graph.state["__dropout_step"]) == steps
    assert model.optimizer.lr_value == gc.optim.step_decay(0.05, 3, 0.5)(max(steps - 1, 0))
    assert all(np.isfinite(v).all() for v in model.graph.state.values() if v.dtype.kind == "f")
