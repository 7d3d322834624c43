"""The NumPy interpreter running the Plan (backend="numpy-plan") equals the plain interpreter exactly."""

from __future__ import annotations

import numpy as np
import pytest

import graphc as gc
from passes.plan import Buffer
from runtime import PlanInterpreterProgram, make_program
from tests.randgraph import KERNELS, random_graph


def mlp_training(momentum=0.9):
    g = gc.Graph("mlp")
    rng = np.random.default_rng(0)
    x = g.input("x", (16, 12))
    labels = g.input("y", (16,), dtype="int64")
    h = x
    sizes = (12, 10, 8, 3)
    for i, (n_in, n_out) in enumerate(zip(sizes, sizes[1:])):
        h = h @ g.param(f"w{i}", rng.standard_normal((n_in, n_out)) * 0.3) + g.param(f"b{i}", np.zeros(n_out))
        if i < len(sizes) - 2:
            h = gc.relu(h)
    loss = gc.softmax_cross_entropy(h, labels)
    updates = gc.optim.SGD(0.05, momentum=momentum).minimize(loss)
    feeds = {"x": rng.standard_normal((16, 12)), "y": rng.integers(0, 3, 16)}
    return g, {"loss": loss, "logits": h}, updates, feeds


def run_both(g, outputs, updates, feeds, steps=3):
    """Run the plain and the plan interpreter from the same state for ``steps`` calls; compare bit for bit."""
    initial = {k: v.copy() for k, v in g.state.items()}
    results = {}
    for backend in ("numpy", "numpy-plan"):
        for k, v in initial.items():
            np.copyto(g.state[k], v)
        prog = gc.compile(outputs, backend=backend, updates=updates)
        results[backend] = [(prog(**feeds), {k: v.copy() for k, v in g.state.items()}) for _ in range(steps)]
    for (out_a, state_a), (out_b, state_b) in zip(results["numpy"], results["numpy-plan"]):
        assert out_a.keys() == out_b.keys()
        for name in out_a:
            np.testing.assert_array_equal(out_b[name], out_a[name], err_msg=name)
        for name in state_a:
            np.testing.assert_array_equal(state_b[name], state_a[name], err_msg=f"state {name}")
    return prog


def test_apple():
    g = gc.Graph("apple")
    apple, num, tax = g.input("apple", ()), g.input("num", ()), g.input("tax", ())
    price = apple * num * tax
    d_apple, d_num, d_tax = gc.grad(price, [apple, num, tax])
    prog = gc.compile({"price": price, "d_apple": d_apple, "d_num": d_num, "d_tax": d_tax}, backend="numpy-plan")
    assert isinstance(prog, PlanInterpreterProgram) and prog.backend == "numpy-plan"
    out = prog(apple=100.0, num=2.0, tax=1.1)
    assert np.allclose([out["price"], out["d_apple"], out["d_num"], out["d_tax"]], [220.0, 2.2, 110.0, 200.0])


def test_mlp_training_steps_match_exactly_including_updates():
    g, outputs, updates, feeds = mlp_training()
    prog = run_both(g, outputs, updates, feeds)
    assert prog.plan.inplace  # the equality above covered in-place aliasing
    assert prog.plan.arena_bytes < sum(-(-v.type.nbytes // 64) * 64 for v in prog.plan.buffers)


@pytest.mark.parametrize("seed", range(30))
def test_random_graphs_match_exactly(seed):
    r = random_graph(seed, n_ops=30, patterns=KERNELS, recent=3)  # deep chains: a is one of the last 3 values
    assert set(r.patterns) == set(KERNELS)  # every pattern appears in every graph
    run_both(r.graph, r.outputs, r.updates, r.feeds, steps=2)


def test_in_place_buffers_really_alias():
    g = gc.Graph("alias")
    x = g.input("x", (4, 8))
    w = g.param("w", np.ones((8, 8)))
    y = gc.relu(gc.softmax(x @ w, axis=1) - 0.1) * x  # softmax is opaque: the relu group reuses its buffer
    prog = make_program({"y": y}, backend="numpy-plan")
    ((out, donor),) = prog.plan.inplace.items()
    assert np.shares_memory(prog.views[out], prog.views[donor])
    assert prog.arena.ctypes.data % 64 == 0
    feed = np.arange(32, dtype=np.float32).reshape(4, 8) - 10
    np.testing.assert_array_equal(prog(x=feed)["y"], gc.compile({"y": y}, backend="numpy")(x=feed)["y"])


def test_a_buffer_reused_too_early_gives_a_different_answer():
    # corrupt the memory plan on purpose (b takes a's buffer while a is still needed): the plan program must
    # disagree with the reference, which is the point of running plans through the interpreter
    g = gc.Graph("bad")
    x = g.input("x", (4, 4))
    w = g.param("w", np.eye(4) * 2)
    a = x @ w
    b = gc.softmax(a, axis=1)  # opaque: a and b are both materialized, live together at c
    c = a + b * 50.0
    feeds = {"x": np.arange(16.0).reshape(4, 4)}
    good = make_program({"c": c}, backend="numpy-plan")
    expected = gc.compile({"c": c}, backend="numpy")(**feeds)["c"]
    np.testing.assert_array_equal(good(**feeds)["c"], expected)
    bad = make_program({"c": c}, backend="numpy-plan")
    a, b = bad.plan.node_map[a], bad.plan.node_map[b]  # the plan computes the simplified graph's nodes
    bad.plan.buffers[b] = Buffer(bad.plan.buffers[a].offset, b.type.nbytes)
    bad.views[b] = bad.views[a]
    assert not np.array_equal(bad(**feeds)["c"], expected)


def test_outputs_are_fresh_arrays_and_repeated_calls_are_stable():
    g, outputs, updates, feeds = mlp_training()
    prog = gc.compile(outputs, backend="numpy-plan")
    first = prog(**feeds)
    second = prog(**feeds)
    assert not np.shares_memory(first["logits"], prog.arena)
    np.testing.assert_array_equal(first["logits"], second["logits"])


def test_unknown_option_is_rejected():
    g = gc.Graph("o")
    x = g.input("x", (2,))
    with pytest.raises(gc.GraphcError, match="numpy-plan"):
        gc.compile(gc.exp(x), backend="numpy-plan", fast=True)
