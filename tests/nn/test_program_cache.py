"""A Sequential keeps at most ``MAX_PROGRAMS`` compiled programs (least recently used dropped first), so predicting
on arrays of many lengths does not grow memory without bound; dropped programs are rebuilt transparently."""

import numpy as np

import graphc as gc
from graphc import nn

RNG = np.random.default_rng(2)
X = RNG.standard_normal((40, 3)).astype(np.float32)


def _model():
    model = nn.Sequential([nn.Dense(4, activation="tanh", input_shape=(3,)), nn.Dense(2)])
    model.compile(loss="mse", optimizer=gc.optim.SGD(0.1), backend="numpy")
    return model


def _reference(model, x):
    w = model.get_weights()
    return np.tanh(x @ w["dense/kernel"] + w["dense/bias"]) @ w["dense_1/kernel"] + w["dense_1/bias"]


def test_predicting_on_many_lengths_keeps_a_bounded_lru_of_programs():
    model = _model()
    for n in range(1, 21):
        np.testing.assert_allclose(model.predict(X[:n], batch_size=32), _reference(model, X[:n]), rtol=1e-5,
                                   atol=1e-6)
    assert list(model._programs) == [("predict", n) for n in range(13, 21)]
    assert nn.Sequential.MAX_PROGRAMS == 8

    kept = model._programs[("predict", 13)]
    model.predict(X[:13])  # a hit: no recompilation, and 13 becomes the most recently used
    assert model._programs[("predict", 13)] is kept
    for n in range(21, 28):
        model.predict(X[:n])
    assert list(model._programs) == [("predict", 13), *[("predict", n) for n in range(21, 28)]]


def test_training_keeps_working_when_its_programs_are_evicted():
    model, twin = _model(), _model()
    y = RNG.standard_normal((40, 2)).astype(np.float32)
    model.MAX_PROGRAMS = 1  # every other call evicts the training programs: rebuilt, the state carries on
    for batch in (8, 5, 8):
        model.fit(X, y, epochs=1, batch_size=batch, shuffle=False, verbose=0)
        model.predict(X[:3])
        twin.fit(X, y, epochs=1, batch_size=batch, shuffle=False, verbose=0)
    assert len(model._programs) == 1
    for name, value in twin.get_weights().items():
        np.testing.assert_array_equal(model.get_weights()[name], value)
    assert model.optimizer.iterations == twin.optimizer.iterations == 5 + 8 + 5
