"""Memory planning: verify_plan holds on many graphs, catches corrupted plans, and reuse really happens."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import graphc as gc
from passes import memplan
from passes.memplan import PlanError, verify_plan
from passes.pipeline import build_plan
from passes.plan import Buffer
from tests.randgraph import KERNELS, random_graph


def mlp_training(batch=32, sizes=(20, 16, 8, 4), momentum=0.9):
    g = gc.Graph("mlp")
    rng = np.random.default_rng(0)
    x = g.input("x", (batch, sizes[0]))
    labels = g.input("y", (batch,), dtype="int64")
    h = x
    for i, (n_in, n_out) in enumerate(zip(sizes, sizes[1:])):
        w = g.param(f"w{i}", rng.standard_normal((n_in, n_out)) * 0.3)
        b = g.param(f"b{i}", np.zeros(n_out))
        h = h @ w + b
        if i < len(sizes) - 2:
            h = gc.relu(h)
    loss = gc.softmax_cross_entropy(h, labels)
    updates = list(gc.optim.SGD(0.05, momentum=momentum).minimize(loss).items())
    return g, [loss], updates


def test_verify_plan_holds_for_the_mlp_training_step():
    _, outputs, updates = mlp_training()
    plan = build_plan(outputs, updates)
    assert verify_plan(plan) is plan
    assert plan.verify() is plan


@pytest.mark.parametrize("seed", range(40))
def test_verify_plan_holds_for_random_graphs(seed):
    r = random_graph(seed, n_ops=25, patterns=KERNELS)
    assert set(r.patterns) == set(KERNELS)  # every pattern appears in every graph
    plan = build_plan(list(r.outputs.values()), r.updates)
    verify_plan(plan)
    for v in plan.buffers:
        assert plan.buffers[v].offset % 64 == 0


def test_reuse_makes_the_training_arena_smaller_than_naive():
    _, outputs, updates = mlp_training(batch=128, sizes=(784, 512, 256, 10))
    plan = build_plan(outputs, updates)
    naive = sum(-(-v.type.nbytes // 64) * 64 for v in plan.buffers)
    assert plan.arena_bytes < naive
    assert plan.report["memory"][0] == f"naive (one buffer per value): {naive} bytes for {len(plan.buffers)} values"
    assert f"planned arena: {plan.arena_bytes} bytes" in plan.report["memory"][1]
    assert plan.inplace, "an elementwise kernel whose input dies there should reuse its buffer"
    print("\n".join(plan.report["memory"][:3]))


def test_in_place_pairs_share_a_buffer_and_the_donor_dies_there():
    g = gc.Graph("ip")
    x = g.input("x", (64,))
    w = g.param("w", np.ones((64, 64)))
    a = gc.reshape(x, (1, 64)) @ w            # arena value
    b = gc.sum(gc.exp(a) * 2.0)               # exp/mul kernel reads a, which dies there ... but shape differs
    c = gc.tanh(a) + 1.0                      # ... so make the last reader an elementwise group of a's shape
    plan = build_plan([b, c], [])
    pairs = {(v, x_) for v, x_ in plan.inplace.items()}
    assert pairs, plan.describe()
    for v, donor in pairs:
        assert plan.buffers[v].offset == plan.buffers[donor].offset
        assert donor not in plan.outputs


def test_program_outputs_and_update_values_are_never_reused():
    _, outputs, updates = mlp_training()
    plan = build_plan(outputs, updates)
    keep = set(plan.outputs) | {v for _, v in plan.updates}
    assert not keep & set(plan.inplace.values())
    live = memplan.intervals(plan.kernels, keep)
    for v in keep:
        if v in live:
            assert live[v][1] == len(plan.kernels)


def _corrupt(plan, value, buffer):
    return dataclasses.replace(plan, buffers={**plan.buffers, value: buffer})


def test_verify_plan_catches_two_live_buffers_overlapping():
    g = gc.Graph("bad")
    x = g.input("x", (4, 4))
    w = g.param("w", np.ones((4, 4)))
    a = x @ w
    b = gc.softmax(a, axis=1)    # an opaque kernel: a stays materialized beside it
    c = a + b                    # a and b are live together here
    plan = build_plan([c], [])
    verify_plan(plan)
    a, b = plan.node_map[a], plan.node_map[b]  # the plan computes the simplified graph's nodes
    bad = _corrupt(plan, b, Buffer(plan.buffers[a].offset, b.type.nbytes))
    with pytest.raises(PlanError, match="overlaps"):
        verify_plan(bad)


def test_verify_plan_catches_an_output_overwritten_before_the_end():
    g = gc.Graph("bad")
    x = g.input("x", (8,))
    a = gc.exp(x)
    s = gc.sum(a)
    t = gc.reshape(s, (1,)) * 3.0
    plan = build_plan([a, t], [])
    verify_plan(plan)
    a, t = plan.node_map[a], plan.node_map[t]
    bad = _corrupt(plan, t, Buffer(plan.buffers[a].offset, t.type.nbytes))  # t written after a, a still needed
    with pytest.raises(PlanError, match="overlaps"):
        verify_plan(bad)


def test_verify_plan_catches_missing_misaligned_and_out_of_arena_buffers():
    _, outputs, updates = mlp_training()
    plan = build_plan(outputs, updates)
    value = next(iter(plan.buffers))
    missing = dataclasses.replace(plan, buffers={k: b for k, b in plan.buffers.items() if k is not value})
    with pytest.raises(PlanError, match="without a buffer"):
        verify_plan(missing)
    with pytest.raises(PlanError, match="aligned"):
        verify_plan(_corrupt(plan, value, Buffer(plan.buffers[value].offset + 4, value.type.nbytes)))
    with pytest.raises(PlanError, match="arena"):
        verify_plan(_corrupt(plan, value, Buffer(plan.arena_bytes, value.type.nbytes)))


def test_verify_plan_catches_a_bogus_in_place_pair_and_a_wrong_order():
    _, outputs, updates = mlp_training()
    plan = build_plan(outputs, updates)
    values = list(plan.buffers)
    bogus = dataclasses.replace(plan, inplace={values[-1]: values[0]})
    with pytest.raises(PlanError, match="in-place"):
        verify_plan(bogus)
    with pytest.raises(PlanError, match="earlier kernel"):
        verify_plan(dataclasses.replace(plan, kernels=list(reversed(plan.kernels))))


def test_allocator_best_fit_and_coalescing():
    arena = memplan._Arena()
    a, b, c = arena.alloc(128), arena.alloc(64), arena.alloc(256)
    assert (a, b, c) == (0, 128, 192)
    arena.free(a, 128)
    arena.free(c, 256)           # coalesces with the top hole
    assert arena.alloc(64) == 0  # best fit: the 128 hole, not the 256 one
    arena.free(b, 64)
    assert arena.holes == [(64, 384)]
    assert arena.alloc(512) == 64 and arena.top == 576  # the hole at the top is extended
