"""decompose: inference batch_norm becomes exactly the per-channel elementwise graph its op describes; training
batch_norm and graphs without batch norm come back unchanged (the same graph, the same nodes)."""

from __future__ import annotations

import numpy as np
import pytest

import graphc as gc
from graphc.ir import Node, topo_ancestors
from passes import decompose
from runtime.interpreter import evaluate

STATS = ("gamma", "beta", "running_mean", "running_var")


def bn_graph(shape: tuple[int, ...], training: bool = False, eps: float = 1e-5, dtype: str = "float32"):
    """x (an input) normalized by batch_norm with params gamma, beta, running_mean, running_var."""
    rng = np.random.default_rng(0)
    g = gc.Graph("bn")
    c = shape[1]
    x = g.input("x", shape, dtype)
    gamma = g.param("gamma", rng.uniform(0.5, 2.0, c), dtype=dtype)
    beta = g.param("beta", rng.standard_normal(c), dtype=dtype)
    mean = g.param("running_mean", rng.standard_normal(c) * 3, dtype=dtype, trainable=False)
    var = g.param("running_var", rng.uniform(0.5, 2.0, c), dtype=dtype, trainable=False)
    y = gc.batch_norm(x, gamma, beta, mean, var, training=training, eps=eps)
    feeds = {"x": (rng.standard_normal(shape) * 2 + 1).astype(dtype)}
    return g, y, feeds


def expected_inference(shape: tuple[int, ...], eps: float, dtype: str = "float32") -> Node:
    """(x − view(μᵣ))·view(γ/√(σᵣ² + ε)) + view(β) in a fresh graph; view(v) is v for a 2-D x and a reshape to
    (C, 1, …) otherwise."""
    e = gc.Graph("expected")
    c = shape[1]
    x = e.input("x", shape, dtype)
    gamma, beta, mean, var = (e.param(name, np.zeros(c), dtype=dtype) for name in STATS)

    def view(v: Node) -> Node:
        return v if len(shape) == 2 else gc.reshape(v, (c,) + (1,) * (len(shape) - 2))

    scale = gamma / gc.sqrt(var + e.const(eps, dtype=dtype))
    return (x - view(mean)) * view(scale) + view(beta)


@pytest.mark.parametrize("shape", [(6, 3), (4, 3, 5), (2, 3, 4, 5)])
@pytest.mark.parametrize("dtype, eps, rtol", [("float32", 1e-5, 2e-6), ("float64", 1e-3, 1e-13)])
def test_inference_batch_norm_becomes_per_channel_elementwise_math(shape, dtype, eps, rtol):
    g, y, feeds = bn_graph(shape, eps=eps, dtype=dtype)
    result = decompose.run(g, [y], [])
    expected = expected_inference(shape, eps, dtype)
    gc.testing.assert_graphs_equal(result.outputs, [expected])
    gc.testing.assert_graphs_equal(result.graph, expected.graph)  # and nothing else in the new graph
    assert len(result.graph.nodes) == len(expected.graph.nodes)
    assert result.graph is not g and result.graph.state is g.state and result.graph.trainable == g.trainable
    assert set(result.graph.inputs) == {"x"} and set(result.graph.params) == set(STATS)
    assert len(result.report) == 1 and result.report[0].startswith(f"inference batch_norm {y.name} ->")

    # the node standing for the batch norm keeps its name and creation site; the expansion is created at that site
    (out,) = result.outputs
    assert result.mapping[y] is out
    assert out.name == y.name and out.site == y.site and not out.backward
    for n in result.graph.nodes:
        if n.op not in ("input", "param"):
            assert n.site == y.site, n
            assert n is out or n.name.startswith(f"{y.name}_"), n.name

    # values: the interpreter on the decomposed graph vs on the original one
    (before,) = evaluate(topo_ancestors([y]), feeds, g.state, [y])
    (after,) = evaluate(result.graph.nodes, feeds, result.graph.state, result.outputs)
    assert after.dtype == before.dtype == np.dtype(dtype) and after.shape == before.shape
    np.testing.assert_allclose(after, before, rtol=rtol, atol=rtol)


def assert_unchanged(g: gc.Graph, outputs: list[Node], updates: list[tuple[Node, Node]]) -> None:
    nodes = list(g.nodes)
    result = decompose.run(g, outputs, updates)
    assert result.graph is g
    assert result.outputs == outputs and all(a is b for a, b in zip(result.outputs, outputs))
    assert all(p is q and v is w for (p, v), (q, w) in zip(result.updates, updates))
    assert len(result.updates) == len(updates)
    assert result.report == []
    needed = topo_ancestors(outputs + [v for _, v in updates] + [p for p, _ in updates])
    assert list(result.mapping) == needed and all(k is v for k, v in result.mapping.items())
    assert g.nodes == nodes and all(a is b for a, b in zip(g.nodes, nodes))


@pytest.mark.parametrize("shape", [(6, 3), (2, 3, 4, 5)])
def test_training_batch_norm_is_left_alone(shape):
    g, y, _ = bn_graph(shape, training=True)
    assert decompose.decomposition(y) is None
    assert_unchanged(g, [y], list(g.implicit_updates[y]))


def test_graphs_without_batch_norm_are_left_alone():
    g = gc.Graph("mlp")
    x = g.input("x", (8, 5))
    w, b = g.param("w", np.ones((5, 3))), g.param("b", np.zeros(3))
    loss = gc.mean(gc.relu(x @ w + b) ** 2.0)
    updates = list(gc.optim.SGD(0.1).minimize(loss).items())
    assert_unchanged(g, [loss], updates)


def test_only_the_batch_norm_is_replaced_in_a_training_step():
    # inference batch norm inside a step that trains gamma and beta: every other node is copied as it was
    g, y, feeds = bn_graph((4, 3, 2, 2))
    gamma, beta = g.params["gamma"], g.params["beta"]
    loss = gc.mean(gc.relu(y) * 0.5)
    updates = [(p, p - 0.1 * dp) for p, dp in zip((gamma, beta), gc.grad(loss, [gamma, beta]))]
    outputs = [loss, y]
    result = decompose.run(g, outputs, updates)
    assert len(result.report) == 1
    for old, new in result.mapping.items():
        assert new.graph is result.graph
        assert new.name == old.name and new.site == old.site and new.type == old.type
        if old is y:
            continue
        assert new.op == old.op and new.attrs.key() == old.attrs.key() and new.backward == old.backward
        assert all(a is result.mapping[b] for a, b in zip(new.inputs, old.inputs))
    assert any(n.backward for n in result.mapping)
    gc.testing.assert_graphs_equal(result.mapping[y], expected_inference((4, 3, 2, 2), 1e-5))
    assert [(p.name, v.name) for p, v in result.updates] == [(p.name, v.name) for p, v in updates]

    wanted = outputs + [v for _, v in updates]
    new_wanted = result.outputs + [v for _, v in result.updates]
    before = evaluate(topo_ancestors(wanted), feeds, g.state, wanted)
    after = evaluate(result.graph.nodes, feeds, result.graph.state, new_wanted)
    for a, b in zip(after, before):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
