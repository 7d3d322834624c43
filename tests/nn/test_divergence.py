"""A diverged model is never checkpointed, saved or restored: weights or optimizer state that overflow while the
logged loss (computed before the update) is still finite stop ``fit`` at that step."""

import numpy as np
import pytest

import graphc as gc
from graphc import nn


def _state(model):
    return {name: value.copy() for name, value in model.graph.state.items()}


def _linear(optimizer):
    model = nn.Sequential([nn.Dense(1, input_shape=(2,))])
    model.compile(loss="mse", optimizer=optimizer, backend="numpy")
    return model


def test_weights_overflowing_under_a_finite_loss_stop_fit_and_are_never_checkpointed(tmp_path):
    x, y = np.ones((4, 2), np.float32), np.full((4, 1), 10.0, np.float32)
    model = _linear(gc.optim.SGD(1e38))  # one step moves the weights by ~1e39: past float32's largest value
    before = model.get_weights()
    checkpoint = nn.ModelCheckpoint(str(tmp_path / "ckpt.npz"))
    with pytest.raises(nn.TrainingError, match=r"dense/\w+ became inf .*at epoch 1, step 1/1") as info:
        model.fit(x, y, epochs=3, batch_size=4, callbacks=[checkpoint], verbose=0)
    assert info.value.history.history == {}
    assert not (tmp_path / "ckpt.npz").exists() and checkpoint.saved == []
    for name, value in model.get_weights().items():
        np.testing.assert_array_equal(value, before[name])


def test_optimizer_state_overflowing_while_weights_stay_finite_is_caught(tmp_path):
    """Adam's second moment g² overflows (g ≈ 1e20) while its normalized step keeps the weights finite."""
    x, y = np.full((4, 2), 1e10, np.float32), np.zeros((4, 1), np.float32)
    model = _linear(gc.optim.Adam(0.01))
    with pytest.raises(nn.TrainingError, match=r"adam_\d+/dense/kernel/v became inf .*epoch 1, step 1/1"):
        model.fit(x, y, epochs=2, batch_size=4, callbacks=[nn.ModelCheckpoint(str(tmp_path / "c.npz"))], verbose=0)
    assert not (tmp_path / "c.npz").exists()
    assert all(np.isfinite(v).all() for v in model.graph.state.values() if v.dtype.kind == "f")
    assert model.optimizer.iterations == 0


def test_divergence_mid_epoch_restores_the_finite_state_of_the_epochs_start():
    x, y = np.zeros((12, 2), np.float32), np.zeros((12, 1), np.float32)  # zero gradients: only counters move
    x[9], y[9] = 1.0, 1e10  # step 3 of every epoch (no shuffling): loss ≈ 2.5e19, gradient · lr ≈ 5e39 = inf
    model = _linear(gc.optim.SGD(1e30, momentum=0.5))
    start = {}

    class Record(nn.Callback):
        def on_epoch_end(self, epoch, logs):
            start.update(_state(self.model))

    model.fit(x[:8], y[:8], epochs=1, batch_size=4, shuffle=False, callbacks=[Record()], verbose=0)
    with pytest.raises(nn.TrainingError, match=r"became inf .*epoch 1, step 3/3"):
        model.fit(x, y, epochs=2, batch_size=4, shuffle=False, verbose=0)
    for name, value in start.items():
        np.testing.assert_array_equal(model.graph.state[name], value, err_msg=name)
    assert model.optimizer.iterations == 2


def test_save_refuses_a_model_whose_state_is_not_finite(tmp_path):
    model = _linear(gc.optim.SGD(0.1))
    model.save(str(tmp_path / "m.npz"))
    previous = (tmp_path / "m.npz").read_bytes()
    model.graph.state["dense/bias"][0] = np.nan
    with pytest.raises(gc.GraphcError, match=r"m\.npz: dense/bias holds NaN"):
        model.save(str(tmp_path / "m.npz"))
    assert (tmp_path / "m.npz").read_bytes() == previous
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.npz"]


def test_fit_refuses_to_start_from_a_non_finite_state():
    model = _linear(gc.optim.SGD(0.1))
    model.graph.state["dense/kernel"][1, 0] = np.inf
    with pytest.raises(gc.GraphcError, match=r"dense/kernel holds inf"):
        model.fit(np.ones((4, 2), np.float32), np.ones((4, 1), np.float32), epochs=1, verbose=0)
