"""Keras' optimizer spellings: learning_rate= beside lr=, epsilon=/beta_1=/beta_2=, RMSprop, and
``optimizer.learning_rate`` readable and settable (the graph-level rate the compiled step reads)."""

import numpy as np
import pytest

import graphc as gc
from graphc import nn, optim


@pytest.mark.parametrize("cls", [optim.SGD, optim.Adagrad, optim.RMSProp, optim.Adam])
def test_learning_rate_and_lr_are_the_same_setting(cls):
    assert cls(learning_rate=0.123).get_config() == cls(lr=0.123).get_config() == cls(0.123).get_config()
    assert cls(learning_rate=0.123).learning_rate == 0.123 == cls(0.123).lr
    with pytest.raises(gc.GraphcError, match=f"{cls.__name__}: give lr= or learning_rate= .*not both"):
        cls(lr=0.1, learning_rate=0.1)
    schedule = optim.step_decay(0.2, 3)
    assert cls(learning_rate=schedule).get_config()["lr"]["class"] == "StepDecay"


def test_defaults_are_unchanged():
    assert optim.SGD().learning_rate == 0.01 and optim.Adagrad().learning_rate == 0.01
    assert optim.RMSProp().learning_rate == 0.001 and optim.Adam().learning_rate == 0.001
    assert optim.Adam().get_config() == {"lr": 0.001, "weight_decay": 0.0, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8}
    assert optim.RMSProp().eps == 1e-7 and optim.Adagrad().eps == 1e-7


def test_keras_hyper_parameter_names():
    adam = optim.Adam(learning_rate=0.01, beta_1=0.8, beta_2=0.99, epsilon=1e-6)
    assert (adam.beta1, adam.beta2, adam.eps) == (0.8, 0.99, 1e-6)
    assert optim.RMSprop is optim.RMSProp and optim.RMSprop(epsilon=1e-5).eps == 1e-5
    assert optim.Adagrad(epsilon=1e-4).eps == 1e-4
    with pytest.raises(gc.GraphcError, match="Adam: give beta1= or beta_1="):
        optim.Adam(beta1=0.8, beta_1=0.8)
    assert optim.from_config({"class": "Adam", "config": adam.get_config()}).get_config() == adam.get_config()


def _model(lr):
    model = nn.Sequential([nn.Dense(3, activation="tanh", input_shape=(2,)), nn.Dense(1)])
    model.compile(loss="mse", optimizer=optim.SGD(learning_rate=lr), backend="numpy")
    return model


def test_model_optimizer_learning_rate_is_readable_and_settable(tmp_path):
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((8, 2)).astype(np.float32), rng.standard_normal((8, 1)).astype(np.float32)
    model, twin = _model(0.1), _model(0.1)
    model.train_on_batch(x, y)
    assert model.optimizer.learning_rate == pytest.approx(0.1)
    model.optimizer.learning_rate = 0.02  # bound: the graph state the next step reads, no recompiling
    assert model.optimizer.lr_value == pytest.approx(0.02) and model.optimizer.lr == pytest.approx(0.02)
    programs = dict(model._programs)
    model.train_on_batch(x, y)
    assert dict(model._programs) == programs
    twin.train_on_batch(x, y)
    before = twin.get_weights()
    twin.optimizer.lr_value = 0.02
    twin.train_on_batch(x, y)
    for name, value in model.get_weights().items():
        np.testing.assert_allclose(value, twin.get_weights()[name], rtol=1e-6, err_msg=name)
        assert not np.array_equal(value, before[name])
    model.save(str(tmp_path / "m.npz"))
    assert nn.load_model(str(tmp_path / "m.npz"), backend="numpy").optimizer.learning_rate == pytest.approx(0.02)
    assert model.optimizer.get_config()["lr"] == 0.1  # the config keeps the initial rate; the current one is state


def test_learning_rate_setter_checks_its_value_and_schedules():
    opt = optim.Adam()
    opt.learning_rate = 0.5  # not bound yet: the initial rate
    assert opt.get_config()["lr"] == 0.5
    for bad in (0.0, -1.0, float("nan"), "fast"):
        with pytest.raises(gc.GraphcError, match="learning_rate must be"):
            opt.learning_rate = bad
    scheduled = optim.SGD(learning_rate=optim.exponential_decay(0.1, 10, 0.5))
    assert scheduled.learning_rate == pytest.approx(0.1)
    with pytest.raises(gc.GraphcError, match="follows the schedule"):
        scheduled.learning_rate = 0.2
