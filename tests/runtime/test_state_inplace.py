"""In-place state updates (``plan.state_inplace``): the kernel computing a param's new value writes it straight into
``graph.state`` when that can never tear the state or change an answer. Native training steps agree with the NumPy
interpreter over several steps (SGD, momentum, Adam, batch-norm running statistics, dropout's step counter), the
plan says which updates are in place and why the others are copied, aliased state falls back to the copying path,
and a kernel error leaves the state exactly as before the call."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import graphc as gc
from codegen.module import plan_key
from passes.plan import PlanError, verify_plan


def _mlp(rng, dtype="float32", batch=16, sizes=(12, 10, 4), bn=False, dropout=False):
    g = gc.Graph("mlp")
    x, y = g.input("x", (batch, sizes[0]), dtype), g.input("y", (batch,), "int64")
    h = x
    for i, (n_in, n_out) in enumerate(zip(sizes, sizes[1:])):
        w = g.param(f"w{i}", rng.standard_normal((n_in, n_out)) * 0.5, dtype=dtype)
        b = g.param(f"b{i}", rng.standard_normal(n_out) * 0.1, dtype=dtype)
        h = h @ w + b
        if i < len(sizes) - 2:
            if bn:
                gamma = g.param(f"gamma{i}", np.ones(n_out), dtype=dtype)
                beta = g.param(f"beta{i}", np.zeros(n_out), dtype=dtype)
                mean = g.param(f"mean{i}", np.zeros(n_out), dtype=dtype, trainable=False)
                var = g.param(f"var{i}", np.ones(n_out), dtype=dtype, trainable=False)
                h = gc.batch_norm(h, gamma, beta, mean, var, training=True)
            h = gc.relu(h)
            if dropout:
                h = gc.dropout(h, 0.25, training=True, seed=7)
    return g, gc.softmax_cross_entropy(h, y)


def _feeds(rng, dtype="float32", batch=16, features=12, classes=4):
    return {"x": rng.standard_normal((batch, features)).astype(dtype), "y": rng.integers(0, classes, batch)}


def _train(backend, optimizer, steps=4, threads=None, dtype="float32", **model):
    """Losses and the final state of ``steps`` training steps (same weights and data for every backend)."""
    g, loss = _mlp(np.random.default_rng(0), dtype, **model)
    options = {"threads": threads} if backend == "llvm" else {}
    prog = gc.compile({"loss": loss}, updates=optimizer().minimize(loss), backend=backend, **options)
    rng = np.random.default_rng(1)
    losses = [float(prog(**_feeds(rng, dtype))["loss"]) for _ in range(steps)]
    return prog, losses, {k: v.copy() for k, v in g.state.items()}


OPTIMIZERS = {
    "sgd": lambda: gc.optim.SGD(0.1),
    "momentum": lambda: gc.optim.SGD(0.1, momentum=0.9),
    "adam": lambda: gc.optim.Adam(0.01),
}


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_training_steps_with_in_place_updates_match_the_interpreter(name, threads):
    prog, losses, state = _train("llvm", OPTIMIZERS[name], threads=threads)
    _, want_losses, want_state = _train("numpy", OPTIMIZERS[name])
    assert prog.plan.state_inplace, "\n".join(prog.plan.report["memory"])
    in_place = {p.name for p in prog.plan.state_inplace}
    assert {"w0", "b0", "w1", "b1"} <= in_place  # every weight's step is written in place
    np.testing.assert_allclose(losses, want_losses, rtol=2e-5, atol=1e-6)
    assert state.keys() == want_state.keys()
    for k in state:
        np.testing.assert_allclose(state[k], want_state[k], rtol=2e-5, atol=1e-6, err_msg=k)


def test_float64_adam_steps_agree_and_the_plan_interpreter_matches_exactly():
    prog, losses, state = _train("llvm", OPTIMIZERS["adam"], dtype="float64", threads=1)
    _, plan_losses, plan_state = _train("numpy-plan", OPTIMIZERS["adam"], dtype="float64")
    _, want_losses, want_state = _train("numpy", OPTIMIZERS["adam"], dtype="float64")
    np.testing.assert_allclose(losses, want_losses, rtol=1e-12)
    assert plan_losses == want_losses
    for k in state:
        np.testing.assert_allclose(state[k], want_state[k], rtol=1e-11, atol=1e-13, err_msg=k)
        np.testing.assert_array_equal(plan_state[k], want_state[k], err_msg=k)


@pytest.mark.parametrize("threads", [1, 2])
def test_batch_norm_running_statistics_and_dropout_counter(threads):
    prog, losses, state = _train("llvm", OPTIMIZERS["momentum"], threads=threads, bn=True, dropout=True)
    _, want_losses, want_state = _train("numpy", OPTIMIZERS["momentum"], bn=True, dropout=True)
    names = {p.name for p in prog.plan.state_inplace}
    assert {"mean0", "var0"} <= names  # the running statistics are updated in place
    np.testing.assert_allclose(losses, want_losses, rtol=2e-5, atol=1e-6)
    for k in state:
        np.testing.assert_allclose(state[k], want_state[k], rtol=2e-5, atol=1e-6, err_msg=k)


def test_the_plan_and_its_report_say_which_updates_are_in_place():
    g, loss = _mlp(np.random.default_rng(0))
    prog = gc.compile({"loss": loss}, updates=gc.optim.SGD(0.1).minimize(loss), backend="llvm")
    plan = prog.plan
    updated = [p for p, _ in plan.updates]
    assert set(plan.state_inplace) <= set(updated)
    assert all(dict(plan.updates)[p] is v for p, v in plan.state_inplace.items())
    assert not set(plan.state_inplace.values()) & set(plan.buffers)  # no arena bytes: they live in graph.state
    memory = plan.report["memory"]
    head = next(line for line in memory if line.startswith("state updates:"))
    assert f"{len(plan.state_inplace)} of {len(updated)} written in place" in head
    for p in plan.state_inplace:
        assert any(line.startswith(f"  {p.name} <- ") and f"graph.state[{p.name!r}]" in line for line in memory)
    w0 = next(p for p in plan.state_inplace if p.name == "w0")
    events = plan.provenance.events.get(plan.state_inplace[w0], [])
    assert any(e.what == "state_inplace" and e.into is w0 for e in events)
    new_w0 = next(v for p, v in prog.updates if p.name == "w0")
    assert "straight into graph.state['w0']" in str(prog.explain(new_w0))
    assert verify_plan(plan) is plan


def test_the_object_cache_key_covers_the_decision():
    g, loss = _mlp(np.random.default_rng(0))
    prog = gc.compile({"loss": loss}, updates=gc.optim.SGD(0.1).minimize(loss), backend="llvm")
    copying = dataclasses.replace(prog.plan, state_inplace={})
    assert plan_key(prog.plan, "mlp")[0] != plan_key(copying, "mlp")[0]


def test_verify_plan_rejects_an_in_place_update_read_afterwards():
    g = gc.Graph("bad")
    a = g.param("a", np.ones((3, 3)))
    new = a * 2.0
    plan = gc.compile(gc.sum(a), updates={a: new}, backend="numpy-plan").plan
    (p, v), = plan.updates
    reader = dataclasses.replace(plan, outputs=[p], state_inplace={p: v})  # a is then read after the kernels
    with pytest.raises(PlanError, match="read after the kernels"):
        verify_plan(reader)


# ------------------------------------------------------------------------------------------ copied instead


def _compare(build, feeds=None, steps=3):
    """Run ``build(g) -> (outputs, updates)`` on a fresh graph with every backend; return the llvm program after
    checking outputs and state against the interpreter at every step."""
    programs = {}
    graphs = {}
    for backend in ("numpy", "llvm"):
        g = gc.Graph("case")
        outputs, updates = build(g)
        graphs[backend] = g
        programs[backend] = gc.compile(outputs, updates=updates, backend=backend)
    for _ in range(steps):
        got = programs["llvm"](**(feeds or {}))
        want = programs["numpy"](**(feeds or {}))
        for k in want:
            np.testing.assert_allclose(got[k], want[k], rtol=1e-6, err_msg=k)
        for k in graphs["numpy"].state:
            np.testing.assert_allclose(graphs["llvm"].state[k], graphs["numpy"].state[k], rtol=1e-6, err_msg=k)
    return programs["llvm"], graphs["llvm"]


def _why(prog, name):
    return next(line for line in prog.plan.report["memory"] if line.startswith(f"  {name} <- "))


def test_a_param_read_after_its_update_kernel_is_copied():
    def build(g):
        a = g.param("a", np.arange(9.0).reshape(3, 3) / 10)
        new = a * 2.0
        return {"y": a @ new}, {a: new}  # the matmul reads a and the new value: it runs after the update kernel

    prog, _ = _compare(build)
    assert not prog.plan.state_inplace
    assert "reads 'a' after kernel" in _why(prog, "a")


def test_an_update_kernel_reading_its_param_at_other_indices_is_copied():
    def build(g):
        a = g.param("a", np.arange(9.0).reshape(3, 3) / 10)
        return {"s": gc.sum(a)}, {a: a @ a}

    prog, _ = _compare(build)
    assert not prog.plan.state_inplace
    assert "at other indices" in _why(prog, "a")


def test_swaps_views_of_params_and_shared_values_keep_simultaneous_semantics():
    def build(g):
        a, b = g.param("a", np.arange(4.0)), g.param("b", np.arange(4.0) + 10)
        c, d, e = g.param("c", np.ones(4)), g.param("d", np.zeros(4)), g.param("e", np.zeros(4))
        f = g.param("f", np.full(4, 3.0))
        shared = c * 2.0
        return {"twice": f * 2.0}, {a: b, b: a, c: shared, d: shared, e: gc.reshape(f, (2, 2)).reshape((4,)),
                                    f: f + 1.0}

    prog, g = _compare(build)
    assert not prog.plan.state_inplace, prog.plan.report["memory"]
    why = {p: _why(prog, p) for p in "abcdef"}
    assert all("no kernel's result" in why[p] for p in "abe")  # a param's value (e's: the views simplify away)
    assert "another update's value" in why["c"] and "another update's value" in why["d"]
    assert "read after the kernels" in why["f"]  # as e's new value


def test_a_value_that_is_also_an_output_is_copied_and_the_output_stays_fresh():
    def build(g):
        a = g.param("a", np.ones(5))
        new = a + 1.0
        return {"new": new}, {a: new}

    prog, g = _compare(build)
    assert not prog.plan.state_inplace
    first = prog()["new"]
    before = first.copy()
    prog()
    np.testing.assert_array_equal(first, before)  # the returned array is the caller's, never the state


def test_an_updated_param_no_kernel_reads_is_bound_and_checked():
    def build(g):
        x = g.input("x", (3,))
        g.param("p", np.zeros(3))
        return {"y": x + 1.0}, {g.params["p"]: x * 2.0}

    prog, g = _compare(build, feeds={"x": np.arange(3.0)})
    assert [p.name for p in prog.plan.state_inplace] == ["p"]
    np.testing.assert_array_equal(g.state["p"], [0.0, 2.0, 4.0])
    g.state["p"] = np.zeros(4, np.float32)
    with pytest.raises(gc.GraphcError, match=r"graph.state\['p'\] must be a float32\[3\] array"):
        prog(x=np.arange(3.0))


# ------------------------------------------------------------------------------------------ aliasing at call time


def _sgd_pair(backend, share):
    """Two params updated in place; ``share(state)`` makes their arrays alias before the first call."""
    g = gc.Graph("alias")
    x = g.input("x", (4, 3))
    a, b = g.param("a", np.ones((3, 2))), g.param("b", np.full((3, 2), 2.0))
    h = x @ a
    loss = gc.sum(h * h) + gc.sum(x @ b)
    prog = gc.compile({"loss": loss}, updates=gc.optim.SGD(0.1).minimize(loss), backend=backend)
    share(g.state)
    return g, prog


SHARES = {
    "same array": lambda s: s.__setitem__("b", s["a"]),
    "a view of it": lambda s: s.__setitem__("b", s["a"][...]),
    "a non-contiguous view": lambda s: s.__setitem__("b", np.ones((3, 4), np.float32)[:, ::2]),
    "overlapping part of one buffer": lambda s: (
        (base := np.arange(8.0, dtype=np.float32)),
        s.__setitem__("a", base[:6].reshape(3, 2)), s.__setitem__("b", base[2:].reshape(3, 2))),
}


@pytest.mark.parametrize("case", sorted(SHARES))
def test_aliased_state_falls_back_to_copying_with_the_same_answer(case):
    feeds = {"x": np.random.default_rng(0).standard_normal((4, 3)).astype(np.float32)}
    native, want = _sgd_pair("llvm", SHARES[case]), _sgd_pair("numpy", SHARES[case])
    assert {"a", "b"} <= {p.name for p in native[1].plan.state_inplace}
    for _ in range(3):
        got_loss, want_loss = native[1](**feeds)["loss"], want[1](**feeds)["loss"]
        np.testing.assert_allclose(got_loss, want_loss, rtol=1e-6)
        for name in ("a", "b"):
            np.testing.assert_allclose(native[0].state[name], want[0].state[name], rtol=1e-6, err_msg=name)
    if case == "same array":
        assert native[0].state["a"] is native[0].state["b"]


def test_a_feed_aliasing_updated_state_falls_back_to_copying():
    def run(backend):
        g = gc.Graph("feed_alias")
        x = g.input("x", (3,))
        w = g.param("w", np.arange(3.0))
        new = w * 3.0
        late = gc.sum(gc.reshape(new, (1, 3)) @ gc.reshape(x, (3, 1)))  # x is read after the update kernel
        prog = gc.compile({"late": late}, updates={w: new}, backend=backend)
        outs = [float(prog(x=g.state["w"])["late"]) for _ in range(3)]  # x is w's own state array
        return prog, outs, g.state["w"].copy()

    native, got, got_w = run("llvm")
    _, want, want_w = run("numpy")
    assert native.plan.state_inplace
    np.testing.assert_allclose(got, want, rtol=1e-6)
    np.testing.assert_allclose(got_w, want_w, rtol=1e-6)


def test_read_only_state_of_an_updated_param_is_a_clear_error_before_anything_runs():
    for backend in ("llvm", "numpy"):
        g, prog = _sgd_pair(backend, lambda s: None)
        frozen = np.ones((3, 2), np.float32)
        frozen.flags.writeable = False
        g.state["b"] = frozen
        before = g.state["a"].copy()
        with pytest.raises(gc.GraphcError, match=r"graph.state\['b'\] is read-only"):
            prog(x=np.ones((4, 3)))
        np.testing.assert_array_equal(g.state["a"], before)


# ------------------------------------------------------------------------------------------ errors


@pytest.mark.parametrize("threads", [1, 2])
def test_a_kernel_error_during_a_step_leaves_the_state_as_before(threads):
    g, loss = _mlp(np.random.default_rng(0))
    prog = gc.compile({"loss": loss}, updates=gc.optim.Adam(0.01).minimize(loss), backend="llvm", threads=threads)
    assert prog.plan.state_inplace
    rng = np.random.default_rng(1)
    prog(**_feeds(rng))
    before = {k: v.copy() for k, v in g.state.items()}
    bad = _feeds(rng)
    bad["y"][3] = 4  # 4 classes: out of range
    with pytest.raises(gc.GraphcError, match=r"outside \[0, 4\)"):
        prog(**bad)
    for k, v in g.state.items():
        np.testing.assert_array_equal(v, before[k], err_msg=k)
    with pytest.raises(gc.GraphcError, match=r"outside \[0, 4\)"):
        prog.profile(bad, repeat=2)
    for k, v in g.state.items():
        np.testing.assert_array_equal(v, before[k], err_msg=k)


def test_a_kernel_that_may_fail_after_the_update_kernel_keeps_that_update_copied():
    def build(g):
        x, y = g.input("x", (4, 3)), g.input("y", (4,), "int64")
        w = g.param("w", np.eye(3))
        new = w * 2.0
        return {"loss": gc.softmax_cross_entropy(x @ new, y)}, {w: new}  # the check runs after the update

    feeds = {"x": np.ones((4, 3)), "y": np.array([0, 1, 2, 0])}
    prog, g = _compare(build, feeds=feeds)
    assert not prog.plan.state_inplace
    assert "may report bad data" in _why(prog, "w")
    before = g.state["w"].copy()
    with pytest.raises(gc.GraphcError, match="outside"):
        prog(x=np.ones((4, 3)), y=np.array([0, 1, 7, 0]))
    np.testing.assert_array_equal(g.state["w"], before)


# ------------------------------------------------------------------------------------------ profile


def test_profile_applies_in_place_updates_like_calls():
    feeds = _feeds(np.random.default_rng(1))
    states = []
    for backend, calls in (("llvm", "profile"), ("numpy", "calls")):
        g, loss = _mlp(np.random.default_rng(0))
        prog = gc.compile({"loss": loss}, updates=gc.optim.SGD(0.1, momentum=0.9).minimize(loss), backend=backend)
        if calls == "profile":
            report = prog.profile(feeds, repeat=3, peak=False)
            assert len(report.kernels) == len(prog.plan.kernels)
        else:
            for _ in range(4):  # one warm-up call and ``repeat`` timed ones
                prog(**feeds)
        states.append({k: v.copy() for k, v in g.state.items()})
    for k in states[1]:
        np.testing.assert_allclose(states[0][k], states[1][k], rtol=2e-5, atol=1e-6, err_msg=k)


def test_a_chunked_kernel_addresses_its_in_place_output_through_the_param_pointer():
    """The output written over the param is rebuilt inside the chunk body from the param's pointer, not captured
    as a pointer of its own: two captured copies of one address fail the loop vectorizer's runtime overlap check,
    and the kernel then runs its scalar fallback loop (3.5x slower on a 784x512 SGD step)."""
    import re

    g = gc.Graph("chunks")
    x = g.input("x", (300, 300))
    w = g.param("w", np.ones((300, 300)))
    prog = gc.compile(gc.sum(x * w), updates={w: w - 0.1 * x}, backend="llvm", threads=1)
    ((param, value),) = prog.plan.state_inplace.items()
    (kernel,) = [k for k in prog.plan.kernels if value in k.outputs]
    assert param in kernel.inputs
    name = prog.module.kernel_functions[kernel.name]
    text = re.search(r'define [^\n]*@"?' + re.escape(name) + r'"?\(.*?\n}\n', prog.llvm_ir(), re.S).group(0)
    captured = text.count("ptrtoint")
    if captured:  # split into chunks: every argument but the aliased output, and the status word
        assert captured == len(kernel.inputs) + len(kernel.outputs) - 1 + 1, text
    feeds = {"x": np.full((300, 300), 2.0, np.float32)}
    prog(**feeds)
    np.testing.assert_allclose(g.state["w"], np.full((300, 300), 0.8), rtol=1e-6)
