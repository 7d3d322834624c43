"""Fusion: before (graph) / expected (kernels) pairs and the fusion report.

Expected kernels are lists of the before graph's own node objects (fusion groups nodes, it never copies them)."""

from __future__ import annotations

import numpy as np

import graphc as gc
from passes import fuse
from passes.pipeline import build_plan
from passes.schedule import dependencies


def kernels_of(outputs, updates=()):
    from graphc.ir import topo_ancestors

    roots = list(outputs) + [v for _, v in updates]
    return fuse.run(topo_ancestors(roots), list(outputs), list(updates))


def nodes_of(kernels):
    return [list(k.nodes) for k in kernels]


def test_sigmoid_affine_chain_is_one_kernel():
    g = gc.Graph("f")
    x = g.input("x", (32, 16))
    w, b = g.param("w", np.ones(16)), g.param("b", np.zeros(16))
    m = x * w
    a = m + b
    s = gc.sigmoid(a)
    two = s * 2
    y = two - 1
    kernels, report = kernels_of([y])
    assert nodes_of(kernels) == [[m, a, s, two, y]]
    (k,) = kernels
    assert k.kind == "broadcast"
    assert k.outputs == (y,)
    assert k.inputs == (x, w, b, two.inputs[1], y.inputs[1])  # first use order; the last two are the constants
    assert two.inputs[1].op == y.inputs[1].op == "const"
    assert all(x.is_leaf for x in k.inputs)
    assert report[0] == "5 nodes -> 1 kernels (1 fused groups)"


def test_matmul_bias_relu_is_one_matmul_kernel_with_an_epilogue():
    g = gc.Graph("f")
    x = g.input("x", (8, 5))
    w, b = g.param("w", np.ones((5, 3))), g.param("b", np.zeros(3))
    mm = x @ w
    biased = mm + b
    y = gc.relu(biased)
    kernels, report = kernels_of([y])
    assert nodes_of(kernels) == [[mm, biased, y]]
    assert kernels[0].kind == "matmul" and kernels[0].outputs == (y,)
    assert set(kernels[0].inputs) == {x, w, b}
    assert any("matmul epilogue: add, relu" in line for line in report)


def test_matmul_then_chain_reading_another_full_size_value_is_its_epilogue():
    """A residual-style operand of the matmul's own shape is read at the same offset: one kernel."""
    g = gc.Graph("f")
    x = g.input("x", (8, 5))
    w, r = g.param("w", np.ones((5, 3))), g.input("r", (8, 3))
    mm = x @ w
    added = mm + r
    y = gc.relu(added)
    kernels, report = kernels_of([y])
    assert nodes_of(kernels) == [[mm, added, y]]
    assert any("matmul epilogue: add, relu" in line for line in report)


def test_matmul_then_chain_reading_a_value_broadcast_along_rows_stays_two_kernels():
    g = gc.Graph("f")
    x = g.input("x", (8, 5))
    w, r = g.param("w", np.ones((5, 3))), g.input("r", (8, 1))
    mm = x @ w
    added = mm + r
    y = gc.relu(added)
    kernels, report = kernels_of([y])
    assert nodes_of(kernels) == [[mm], [added, y]]
    assert any("boundary k0_matmul -> k1_fused_add_relu via matmul_1: matmul epilogue: add_1 reads r" in line
               for line in report)


def test_value_used_by_two_kernels_becomes_a_group_output():
    g = gc.Graph("f")
    x = g.input("x", (4, 6))
    w = g.param("w", np.ones((6, 2)))
    scaled = x * 3.0
    h = gc.tanh(scaled)
    a = h @ w            # one reader kernel
    s = gc.sum(h)        # another one
    kernels, report = kernels_of([a, s])
    assert nodes_of(kernels) == [[scaled, h], [a], [s]]
    assert kernels[0].outputs == (h,)
    assert scaled not in kernels[0].outputs  # x*3 stays in registers
    assert any(f"{h.name} is an output of k0_fused_mul_tanh: value used by 2 consumers" in line for line in report)


def test_program_output_inside_a_chain_is_a_group_output_and_not_recomputed():
    g = gc.Graph("f")
    x = g.input("x", (10,))
    a = gc.exp(x)
    doubled = a * 2.0
    b = doubled + 1.0
    kernels, _ = kernels_of([a, b])
    assert nodes_of(kernels) == [[a, doubled, b]]
    assert kernels[0].outputs == (a, b)
    assert sum(n is a for k in kernels for n in k.nodes) == 1


def test_shape_change_stops_fusion_and_is_reported():
    g = gc.Graph("f")
    x = g.input("x", (3, 4))
    v = g.input("v", (4,))
    ev = gc.exp(v)
    small = ev + 1.0                 # shape (4,)
    scaled = x * small
    y = gc.relu(scaled)              # shape (3, 4)
    kernels, report = kernels_of([y])
    assert nodes_of(kernels) == [[ev, small], [scaled, y]]
    assert any("shape differs" in line and small.name in line for line in report)


def test_fusion_never_creates_a_cycle_between_groups():
    # a = exp(x); s = sum(a) (a reduce reading a); c = a * s: fusing a into c would need s inside and outside
    g = gc.Graph("f")
    x = g.input("x", (5, 7))
    a = gc.exp(x)
    s = gc.sum(a)
    c = a * s
    kernels, report = kernels_of([c])
    assert nodes_of(kernels) == [[a], [s], [c]]
    assert any("would create a cycle through" in line and s.name in line for line in report)


def test_siblings_of_one_producer_join_its_group():
    g = gc.Graph("f")
    x = g.input("x", (6,))
    a = gc.exp(x)
    b, c = gc.sigmoid(a), gc.tanh(a)
    kernels, _ = kernels_of([b, c])
    assert nodes_of(kernels) == [[a, b, c]]
    assert kernels[0].outputs == (b, c)


def test_reductions_shapes_and_opaque_ops_stay_single():
    g = gc.Graph("f")
    x = g.input("x", (4, 6))
    m = x * 2.0
    t = gc.transpose(m)
    sm = gc.softmax(t)
    flat = sm.reshape((24,))
    y = flat.sum()
    kernels, _ = kernels_of([y])
    assert nodes_of(kernels) == [[m], [t], [sm], [flat], [y]]
    assert [k.kind for k in kernels] == ["broadcast", "shape", "opaque", "shape", "reduce"]


def test_group_invariants_on_a_training_graph():
    g = gc.Graph("mlp")
    x = g.input("x", (16, 10))
    labels = g.input("y", (16,), dtype="int64")
    w1, b1 = g.param("w1", np.ones((10, 8)) * 0.1), g.param("b1", np.zeros(8))
    w2, b2 = g.param("w2", np.ones((8, 3)) * 0.1), g.param("b2", np.zeros(3))
    loss = gc.softmax_cross_entropy(gc.relu(x @ w1 + b1) @ w2 + b2, labels)
    updates = gc.optim.SGD(0.1, momentum=0.9).minimize(loss)
    plan = build_plan([loss], list(updates.items()))
    assert any(len(k.nodes) > 1 for k in plan.kernels)
    producer = {v: i for i, k in enumerate(plan.kernels) for v in k.outputs}
    for i, k in enumerate(plan.kernels):
        if len(k.nodes) > 1 and k.kind == "matmul":  # operand transposes folded into the GEMM, an epilogue
            rest = [n for n in k.nodes if n.op != "matmul"]
            assert all(n.op == "transpose" or fuse.fusible(n) for n in rest)
        elif len(k.nodes) > 1:
            assert k.kind in ("elementwise", "broadcast")
            assert len({n.shape for n in k.nodes}) == 1  # one loop domain
        inside = set(k.nodes)
        for n in k.nodes:
            for x_ in n.inputs:
                assert x_ in inside or x_ in k.inputs
        for x_ in k.inputs:
            assert x_.is_leaf or producer[x_] < i
    assert all(i > d for i, ds in enumerate(dependencies(plan.kernels)) for d in ds)
    assert isinstance(plan.report["fusion"], list) and all(isinstance(line, str) for line in plan.report["fusion"])
