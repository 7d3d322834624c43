"""Optimizers: several steps of each compiled update match torch.optim exactly (float64); state and schedules."""

import numpy as np
import pytest

import graphc as gc
from graphc import optim

CASES = {
    "sgd": (lambda: optim.SGD(0.1), lambda p, t: t.optim.SGD(p, lr=0.1)),
    "momentum": (lambda: optim.SGD(0.1, momentum=0.9), lambda p, t: t.optim.SGD(p, lr=0.1, momentum=0.9)),
    "nesterov": (lambda: optim.SGD(0.1, momentum=0.9, nesterov=True),
                 lambda p, t: t.optim.SGD(p, lr=0.1, momentum=0.9, nesterov=True)),
    "adagrad": (lambda: optim.Adagrad(0.1, eps=1e-10), lambda p, t: t.optim.Adagrad(p, lr=0.1, eps=1e-10)),
    "rmsprop": (lambda: optim.RMSProp(0.01, rho=0.99, eps=1e-8),
                lambda p, t: t.optim.RMSprop(p, lr=0.01, alpha=0.99, eps=1e-8)),
    "adam": (lambda: optim.Adam(0.01), lambda p, t: t.optim.Adam(p, lr=0.01)),
    "adam_wd": (lambda: optim.Adam(0.01, weight_decay=0.1), lambda p, t: t.optim.Adam(p, lr=0.01, weight_decay=0.1)),
}


def _mlp(rng, dtype="float64"):
    g = gc.Graph("mlp")
    x, y = g.input("x", (6, 4), dtype), g.input("y", (6,), "int64")
    w1 = g.param("w1", rng.standard_normal((4, 5)) * 0.5, dtype=dtype)
    b1 = g.param("b1", np.zeros(5), dtype=dtype)
    w2 = g.param("w2", rng.standard_normal((5, 3)) * 0.5, dtype=dtype)
    loss = gc.softmax_cross_entropy(gc.relu(x @ w1 + b1) @ w2, y)
    return g, loss, (w1, b1, w2)


@pytest.mark.parametrize("name", sorted(CASES))
def test_steps_match_torch(name):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    g, loss, params = _mlp(rng)
    start = {p.name: g.state[p.name].copy() for p in params}
    make_ours, make_torch = CASES[name]
    step = gc.compile({"loss": loss}, updates=make_ours().minimize(loss), backend="numpy")
    tparams = [torch.tensor(start[p.name], requires_grad=True) for p in params]
    topt = make_torch(tparams, torch)
    for _ in range(4):
        x, y = rng.standard_normal((6, 4)), rng.integers(0, 3, 6)
        ours = step(x=x, y=y)["loss"]
        topt.zero_grad()
        h = torch.relu(torch.tensor(x) @ tparams[0] + tparams[1]) @ tparams[2]
        theirs = torch.nn.functional.cross_entropy(h, torch.tensor(y))
        theirs.backward()
        topt.step()
        assert ours == pytest.approx(theirs.item(), rel=1e-10)
    for p, t in zip(params, tparams):
        np.testing.assert_allclose(g.state[p.name], t.detach().numpy(), rtol=1e-9, atol=1e-12)


def test_optimizer_state_is_graph_state_and_not_trainable():
    g, loss, params = _mlp(np.random.default_rng(1))
    opt = optim.Adam(0.01)
    updates = opt.minimize(loss)
    assert {p.name for p in updates} >= {"w1", "b1", "w2"}
    assert all(name in g.state and name not in g.trainable for name in opt.state_names)
    step = gc.compile({"loss": loss}, updates=updates, backend="numpy")
    rng = np.random.default_rng(2)
    step(x=rng.standard_normal((6, 4)), y=rng.integers(0, 3, 6))
    assert opt.iterations == 1


def test_schedule_changes_lr_without_recompiling():
    g, loss, _ = _mlp(np.random.default_rng(3))
    opt = optim.SGD(optim.step_decay(0.1, step_size=2, gamma=0.5))
    step = gc.compile({"loss": loss}, updates=opt.minimize(loss), backend="numpy")
    rng = np.random.default_rng(4)
    seen = []
    for _ in range(5):
        seen.append(opt.apply_schedule())
        step(x=rng.standard_normal((6, 4)), y=rng.integers(0, 3, 6))
    assert seen == pytest.approx([0.1, 0.1, 0.05, 0.05, 0.025])


def test_schedules():
    assert optim.exponential_decay(1.0, 10, 0.5)(20) == pytest.approx(0.25)
    cosine = optim.cosine_decay(1.0, 100, alpha=0.1)
    assert cosine(0) == pytest.approx(1.0) and cosine(100) == pytest.approx(0.1) and cosine(500) == pytest.approx(0.1)


def test_errors_are_clear():
    g, loss, _ = _mlp(np.random.default_rng(5))
    with pytest.raises(gc.GraphcError, match="unknown optimizer 'adamw'"):
        optim.get("adamw")
    with pytest.raises(gc.GraphcError, match="learning rate must be positive"):
        optim.SGD(-1.0)
    with pytest.raises(gc.GraphcError, match="scalar"):
        optim.SGD(0.1).minimize(gc.relu(g.inputs["x"]))
    g2 = gc.Graph("no_params")
    with pytest.raises(gc.GraphcError, match="no trainable param"):
        optim.SGD(0.1).minimize(gc.sum(g2.input("x", (3,))))


def test_float32_params_train():
    g, loss, _ = _mlp(np.random.default_rng(6), dtype="float32")
    step = gc.compile({"loss": loss}, updates=optim.Adam(0.05).minimize(loss), backend="numpy")
    rng = np.random.default_rng(7)
    x, y = rng.standard_normal((6, 4)).astype(np.float32), rng.integers(0, 3, 6)
    losses = [float(step(x=x, y=y)["loss"]) for _ in range(60)]
    assert losses[-1] < 0.2 * losses[0]


@pytest.mark.parametrize("name", sorted(CASES))
def test_compiled_step_equals_interpreter(name):
    """One LLVM training step and one interpreter step from the same state give the same params and state."""
    make_ours, _ = CASES[name]
    rng = np.random.default_rng(8)
    batches = [(rng.standard_normal((6, 4)).astype(np.float32), rng.integers(0, 3, 6)) for _ in range(3)]
    results = {}
    for backend in ("numpy", "llvm"):
        g, loss, _ = _mlp(np.random.default_rng(9), dtype="float32")
        opt = make_ours()
        step = gc.compile({"loss": loss}, updates=opt.minimize(loss), backend=backend)
        losses = [float(step(x=x, y=y)["loss"]) for x, y in batches]
        results[backend] = losses, {k: v.copy() for k, v in g.state.items()}
    (losses_np, state_np), (losses_llvm, state_llvm) = results["numpy"], results["llvm"]
    np.testing.assert_allclose(losses_llvm, losses_np, rtol=1e-5)
    assert state_np.keys() == state_llvm.keys() and len(state_np) > 3
    for key in state_np:
        np.testing.assert_allclose(state_llvm[key], state_np[key], rtol=1e-5, atol=1e-6, err_msg=key)
