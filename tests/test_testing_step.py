"""gc.testing.assert_step_agrees: N training steps on the LLVM backend and the interpreter from the same state,
comparing the outputs and the whole updated state after each step; failures name the step and the tensor."""

import numpy as np
import pytest

import graphc as gc
import graphc.agreement as agreement
from graphc import nn


def _data(n=24, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 6)).astype(np.float32)
    return x, (x[:, 0] + x[:, 1] > 0).astype(np.int64)


def _model(backend=None):
    # (batch norm after the activation: a bias right before a batch norm has a zero gradient up to rounding, which
    # Adam's normalization turns into full-size steps in noise's direction, different on each backend)
    model = nn.Sequential([nn.Dense(8, activation="relu", input_shape=(6,)), nn.BatchNormalization(),
                           nn.Dropout(0.3), nn.Dense(2, activation="softmax")])
    model.compile(loss="sparse_categorical_crossentropy", optimizer=gc.optim.Adam(0.01), backend=backend)
    return model


def _state(graph):
    return {name: array.copy() for name, array in graph.state.items()}


def test_a_model_agrees_over_steps_and_is_left_untouched():
    x, y = _data()
    model = _model()
    model.fit(x, y, epochs=1, batch_size=8, verbose=0)  # not the initial state: moments and counters are non-zero
    before = _state(model.graph)
    report = gc.testing.assert_step_agrees(model, {"x": x[:8], "y": y[:8]}, steps=3)
    assert report.steps == 3 and report.backends == ("numpy", "llvm")
    # the whole state a step changes: weights, Adam's moments and step, running statistics, the dropout counter
    for name in ("dense/kernel", "dense_1/bias", "adam_1/dense/kernel/m", "adam_1/dense/kernel/v", "adam_1/step",
                 "__dropout_step"):
        assert name in report.compared, (name, report.compared)
    assert any("batchnormalization" in name and "mean" in name for name in report.compared), report.compared
    assert 0.0 <= report.max_output_difference < 1e-4 and 0.0 <= report.max_state_difference < 1e-4
    assert "3 training step(s), llvm vs numpy" in str(report)
    after = _state(model.graph)
    assert all(np.array_equal(before[k], after[k]) for k in before)
    # (x, y) as a pair works too
    gc.testing.assert_step_agrees(model, (x[:8], y[:8]), steps=1)


def _program():
    g = gc.Graph("steps")
    x, t = g.input("x", (5, 3)), g.input("t", (5, 2))
    w = g.param("w", np.linspace(-1, 1, 6, dtype=np.float32).reshape(3, 2))
    with gc.name_scope("head"):
        loss = gc.mse(gc.tanh(x @ w, name="activation"), t, name="loss")
    updates = gc.optim.SGD(0.5, momentum=0.9).minimize(loss)
    rng = np.random.default_rng(1)
    feeds = {"x": rng.normal(size=(5, 3)).astype(np.float32), "t": rng.normal(size=(5, 2)).astype(np.float32)}
    return g, loss, updates, feeds


def test_a_program_with_updates_agrees_and_state_is_restored():
    g, loss, updates, feeds = _program()
    prog = gc.compile({"loss": loss}, updates=updates, backend="numpy")
    before = _state(g)
    initial_loss = float(gc.compile(loss, backend="numpy")(**feeds))
    report = gc.testing.assert_step_agrees(prog, feeds, steps=4)
    assert set(report.compared) == {"w", "sgd_1/step", "sgd_1/w/velocity"}  # the learning rate is not updated
    assert _state(g).keys() == before.keys() and all(np.array_equal(before[k], g.state[k]) for k in before)
    first = prog(**feeds)["loss"]  # the program itself still starts from the untouched state
    assert first == pytest.approx(initial_loss, rel=1e-6)


class _Skewed:
    """The second backend: the interpreter, then ``delta`` added to one state entry after step ``at``."""

    def __init__(self, program, name, delta, at):
        self.program, self.name, self.delta, self.at, self.calls = program, name, delta, at, 0
        self.updates, self.graph = program.updates, program.graph

    def __call__(self, **feeds):
        out = self.program(**feeds)
        self.calls += 1
        if self.calls == self.at:
            self.graph.state[self.name] += self.delta
        return out


def _skew(monkeypatch, name, delta, at):
    real = agreement.compile_program

    def fake(outputs, backend=None, **kw):
        program = real(outputs, backend="numpy", **kw)
        return program if backend == "numpy" else _Skewed(program, name, delta, at)

    monkeypatch.setattr(agreement, "compile_program", fake)


def test_a_state_difference_names_the_step_the_param_and_the_element(monkeypatch):
    x, y = _data()
    model = _model()
    before = _state(model.graph)
    _skew(monkeypatch, "dense/kernel", np.float32(1e-2), at=2)
    with pytest.raises(AssertionError) as info:
        gc.testing.assert_step_agrees(model, {"x": x[:8], "y": y[:8]}, steps=3)
    message = str(info.value)
    assert "training steps disagree between llvm and numpy" in message
    assert "step 2, state 'dense/kernel': llvm vs numpy differ at 48 of 48 elements" in message
    assert "step 1" not in message and "step 3" not in message  # the first differing step only
    assert all(np.array_equal(before[k], model.graph.state[k]) for k in before)  # restored even on failure


def test_an_optimizer_state_or_output_difference_is_named(monkeypatch):
    g, loss, updates, feeds = _program()
    prog = gc.compile({"loss": loss}, updates=updates, backend="numpy")
    _skew(monkeypatch, "sgd_1/w/velocity", np.float32(0.5), at=1)
    with pytest.raises(AssertionError, match=r"step 1, state 'sgd_1/w/velocity': llvm vs numpy differ at 6 of 6 "
                                             r"elements; worst at index \(\d, \d\): llvm -?[\d.]+, numpy -?[\d.]+ "):
        gc.testing.assert_step_agrees(prog, feeds, steps=2)
    x, y = _data()
    _skew(monkeypatch, "__dropout_step", np.int64(1), at=2)  # integer state must be equal, whatever the tolerance
    with pytest.raises(AssertionError, match=r"step 2, state '__dropout_step': llvm vs numpy differ at 1 of 1 "
                                             r"elements; worst at index \(\): llvm 3, numpy 2 "):
        gc.testing.assert_step_agrees(_model(), {"x": x[:8], "y": y[:8]}, steps=2, rtol=1.0, atol=1.0)
    # a skewed weight shows in the next step's loss too (and in the weight itself)
    _skew(monkeypatch, "w", np.float32(0.1), at=1)
    with pytest.raises(AssertionError, match=r"step 1, state 'w'") as info:
        gc.testing.assert_step_agrees(prog, feeds, steps=2, rtol=0.0, atol=1e-6)
    assert "output 'loss'" not in str(info.value)  # step 1's loss was computed before the skew


def test_tolerances_decide(monkeypatch):
    g, loss, updates, feeds = _program()
    prog = gc.compile({"loss": loss}, updates=updates, backend="numpy")
    _skew(monkeypatch, "w", np.float32(1e-3), at=1)
    gc.testing.assert_step_agrees(prog, feeds, steps=1, rtol=0.0, atol=2e-3)
    with pytest.raises(AssertionError, match="allowed 0.0001"):
        gc.testing.assert_step_agrees(prog, feeds, steps=1, rtol=0.0, atol=1e-4)


def test_clear_errors_for_wrong_arguments():
    g, loss, updates, feeds = _program()
    with pytest.raises(gc.GraphcError, match="no state updates"):
        gc.testing.assert_step_agrees(gc.compile(loss, backend="numpy"), feeds)
    prog = gc.compile({"loss": loss}, updates=updates, backend="numpy")
    with pytest.raises(gc.GraphcError, match="steps must be a positive int"):
        gc.testing.assert_step_agrees(prog, feeds, steps=0)
    with pytest.raises(gc.GraphcError, match="expected a gc.nn model or a compiled program"):
        gc.testing.assert_step_agrees(loss, feeds)
    x, y = _data()
    with pytest.raises(gc.GraphcError, match=r"feeds \{'x': inputs, 'y': targets\}"):
        gc.testing.assert_step_agrees(_model(), {"x": x})
    uncompiled = nn.Sequential([nn.Dense(2, input_shape=(6,))])
    with pytest.raises(gc.GraphcError, match="compile the model first"):
        gc.testing.assert_step_agrees(uncompiled, {"x": x, "y": y})
