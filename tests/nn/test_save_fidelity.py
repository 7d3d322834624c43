"""Save → load keeps everything that changes the loss or a training step: regularizers, dropout, batch-norm
settings, optimizer hyper-parameters, learning-rate schedule and state, loss and metrics. ``evaluate`` gives the
identical loss and one more step on the same batch gives bit-identical state in the original and the loaded model."""

import numpy as np
import pytest

import graphc as gc
from graphc import nn

RNG = np.random.default_rng(0)
X = RNG.standard_normal((24, 6)).astype(np.float32)
Y = RNG.integers(0, 3, 24)


def _owned(model):
    """The model's own state by role: layer params, dropout counter and optimizer state (prefix stripped)."""
    opt = model.optimizer
    state = {name: model.graph.state[name] for name in model.layer_param_names()}
    if "__dropout_step" in model.graph.state:
        state["__dropout_step"] = model.graph.state["__dropout_step"]
    state.update({f"optimizer:{name[len(opt.prefix) + 1:]}": model.graph.state[name] for name in opt.state_names})
    return state


def _assert_same_state(a, b):
    sa, sb = _owned(a), _owned(b)
    assert sorted(sa) == sorted(sb)
    for name in sa:
        np.testing.assert_array_equal(sa[name], sb[name], err_msg=name)
        assert sa[name].dtype == sb[name].dtype, name


def _dense_model(backend):
    model = nn.Sequential([
        nn.Dense(16, activation="relu", input_shape=(6,), kernel_regularizer=gc.l2(0.05)),
        nn.BatchNormalization(momentum=0.8, epsilon=0.01),
        nn.Dropout(0.3, seed=7),
        nn.Dense(3, activation="softmax", kernel_regularizer=gc.l1(0.01)),
    ])
    model.compile(loss="sparse_categorical_crossentropy", metrics=["accuracy"], backend=backend,
                  optimizer=gc.optim.Adam(0.02, beta1=0.8, beta2=0.95, eps=1e-5, weight_decay=1e-3))
    return model


def _conv_model(backend):
    model = nn.Sequential([
        nn.Conv2D(3, 3, padding="same", activation="relu", input_shape=(1, 4, 6), kernel_regularizer=gc.l2(0.1)),
        nn.MaxPool2D(2), nn.Flatten(), nn.Dropout(0.25, seed=3), nn.Dense(3, activation="softmax"),
    ])
    model.compile(loss="sparse_categorical_crossentropy", backend=backend,
                  optimizer=gc.optim.SGD(gc.optim.step_decay(0.1, step_size=3, gamma=0.5), momentum=0.9,
                                         nesterov=True, weight_decay=1e-4))
    return model


@pytest.mark.parametrize("backend", ["numpy", "llvm"])
@pytest.mark.parametrize("make", [_dense_model, _conv_model], ids=["dense-bn-dropout-adam", "conv-sgd-nesterov"])
def test_save_load_keeps_the_loss_and_the_next_step_bit_identical(tmp_path, backend, make):
    x = X if make is _dense_model else X.reshape(24, 1, 1, 6).repeat(4, axis=2)
    model = make(backend)
    model.fit(x, Y, epochs=2, batch_size=8, shuffle=False, verbose=0)  # 6 steps: the schedule's next step decays
    model.save(str(tmp_path / "m.npz"))
    loaded = nn.load_model(str(tmp_path / "m.npz"), backend=backend)
    assert loaded.evaluate(x, Y, batch_size=8) == model.evaluate(x, Y, batch_size=8)
    for _ in range(2):
        assert loaded.train_on_batch(x[:8], Y[:8]) == model.train_on_batch(x[:8], Y[:8])
        _assert_same_state(model, loaded)
    assert loaded.optimizer.lr_value == model.optimizer.lr_value
    assert loaded.loss == model.loss and loaded.metrics == model.metrics
    assert type(loaded.optimizer) is type(model.optimizer)
    assert loaded.optimizer.get_config() == model.optimizer.get_config()
    assert [layer.get_config() for layer in loaded.layers] == [layer.get_config() for layer in model.layers]


def test_the_regularizers_are_part_of_the_evaluated_loss_after_loading(tmp_path):
    model = nn.Sequential([nn.Dense(8, input_shape=(6,), kernel_regularizer=gc.l2(1.0)),
                           nn.Dense(3, activation="softmax", kernel_regularizer=gc.l1(0.5))])
    model.compile(loss="sparse_categorical_crossentropy", backend="numpy")
    model.save(str(tmp_path / "m.npz"))
    loaded = nn.load_model(str(tmp_path / "m.npz"), backend="numpy")
    assert loaded.layers[0].kernel_regularizer == gc.l2(1.0) and loaded.layers[1].kernel_regularizer == gc.l1(0.5)
    assert loaded.evaluate(X, Y) == model.evaluate(X, Y)


@pytest.mark.parametrize("layer", [lambda: nn.Dense(3, input_shape=(6,), bias_regularizer=gc.l1(2.0)),
                                   lambda: nn.Conv2D(2, 1, input_shape=(6, 1, 1), bias_regularizer=gc.l2(3.0))],
                         ids=["dense", "conv"])
def test_bias_regularizers_penalize_and_round_trip(tmp_path, layer):
    model = nn.Sequential([layer()] + ([nn.Flatten()] if "conv" in str(layer()) else []))
    model.compile(loss="mse", backend="numpy")
    x, y = X.reshape(24, 6, *model.input_shape[1:]), np.zeros((24, *model.output_shape), np.float32)
    unpenalized = model.evaluate(x, y)
    model.graph.state[f"{model.layers[0].name}/bias"][...] = 0.5
    assert model.evaluate(x, y) > unpenalized + 0.5
    model.save(str(tmp_path / "m.npz"))
    assert nn.load_model(str(tmp_path / "m.npz"), backend="numpy").evaluate(x, y) == model.evaluate(x, y)


def test_a_recompiled_models_optimizer_state_survives(tmp_path):
    """The optimizer's graph prefix depends on how often the model was compiled (adam_1, adam_2, ...)."""
    model = _dense_model("numpy")
    model.compile(loss="sparse_categorical_crossentropy", optimizer=gc.optim.Adam(0.01), backend="numpy")
    model.fit(X, Y, epochs=1, batch_size=8, verbose=0)
    model.save(str(tmp_path / "m.npz"))
    loaded = nn.load_model(str(tmp_path / "m.npz"), backend="numpy")
    loaded.train_on_batch(X[:8], Y[:8])
    model.train_on_batch(X[:8], Y[:8])
    _assert_same_state(model, loaded)
    assert loaded.optimizer.iterations == model.optimizer.iterations == 4


def test_saving_a_loaded_model_before_training_keeps_its_optimizer_state(tmp_path):
    model = _dense_model("numpy")
    model.fit(X, Y, epochs=1, batch_size=8, verbose=0)
    model.save(str(tmp_path / "a.npz"))
    nn.load_model(str(tmp_path / "a.npz")).save(str(tmp_path / "b.npz"))
    again = nn.load_model(str(tmp_path / "b.npz"), backend="numpy")
    again.train_on_batch(X[:8], Y[:8])
    model.train_on_batch(X[:8], Y[:8])
    _assert_same_state(model, again)
    assert again.optimizer.iterations == 4


@pytest.mark.parametrize("schedule", [gc.optim.step_decay(0.1, 2, 0.5), gc.optim.exponential_decay(0.1, 5, 0.3),
                                      gc.optim.cosine_decay(0.1, 7, alpha=0.2)], ids=["step", "exponential", "cosine"])
def test_learning_rate_schedules_round_trip(tmp_path, schedule):
    model = nn.Sequential([nn.Dense(3, activation="softmax", input_shape=(6,))])
    model.compile(loss="sparse_categorical_crossentropy", optimizer=gc.optim.RMSProp(schedule, rho=0.8),
                  backend="numpy")
    model.fit(X, Y, epochs=1, batch_size=8, verbose=0)
    model.save(str(tmp_path / "m.npz"))
    loaded = nn.load_model(str(tmp_path / "m.npz"), backend="numpy")
    for _ in range(4):
        loaded.train_on_batch(X[:8], Y[:8])
        model.train_on_batch(X[:8], Y[:8])
    _assert_same_state(model, loaded)
    assert [loaded.optimizer.schedule(t) for t in range(12)] == [schedule(t) for t in range(12)]


def test_what_cannot_be_written_down_is_refused_clearly(tmp_path):
    custom_regularizer = nn.Sequential([nn.Dense(3, input_shape=(6,), kernel_regularizer=lambda w: gc.l2(w, 0.1))])
    with pytest.raises(gc.GraphcError, match=r"layer 'dense' kernel_regularizer: the custom regularizer"):
        custom_regularizer.save(str(tmp_path / "a.npz"))
    custom_schedule = nn.Sequential([nn.Dense(3, input_shape=(6,))])
    custom_schedule.compile(loss="mse", optimizer=gc.optim.SGD(lambda t: 0.1 / (1 + t)))
    with pytest.raises(gc.GraphcError, match=r"custom learning-rate schedule"):
        custom_schedule.save(str(tmp_path / "b.npz"))
    custom_activation = nn.Sequential([nn.Dense(3, input_shape=(6,), activation=lambda h: h)])
    with pytest.raises(gc.GraphcError, match=r"cannot save layer 'dense'.*not plain data"):
        custom_activation.save(str(tmp_path / "c.npz"))
    assert list(tmp_path.iterdir()) == []
