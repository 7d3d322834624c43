"""Scheduling: dependencies are respected and the peak of live memory does not grow."""

from __future__ import annotations

import numpy as np
import pytest

import graphc as gc
from graphc.ir import topo_ancestors
from passes import fuse, schedule
from passes.plan import Kernel


def fused(outputs, updates=()):
    roots = list(outputs) + [v for _, v in updates]
    kernels, _ = fuse.run(topo_ancestors(roots), list(outputs), list(updates))
    return kernels, set(roots)


def assert_topological(order):
    done = set()
    for k in order:
        for x in k.inputs:
            assert x.is_leaf or x in done, f"{k.name} runs before the producer of {x.name}"
        done.update(k.outputs)


def mlp_training():
    g = gc.Graph("mlp")
    x = g.input("x", (32, 20))
    labels = g.input("y", (32,), dtype="int64")
    w1, b1 = g.param("w1", np.full((20, 16), 0.1)), g.param("b1", np.zeros(16))
    w2, b2 = g.param("w2", np.full((16, 8), 0.1)), g.param("b2", np.zeros(8))
    w3, b3 = g.param("w3", np.full((8, 4), 0.1)), g.param("b3", np.zeros(4))
    h = gc.relu(x @ w1 + b1)
    h = gc.tanh(h @ w2 + b2)
    loss = gc.softmax_cross_entropy(h @ w3 + b3, labels)
    updates = list(gc.optim.SGD(0.05, momentum=0.9).minimize(loss).items())
    return [loss], updates


def test_schedule_is_a_permutation_that_respects_dependencies():
    outputs, updates = mlp_training()
    kernels, keep = fused(outputs, updates)
    order = schedule.run(kernels, keep=keep)
    assert sorted(k.name for k in order) == sorted(k.name for k in kernels)
    assert_topological(order)
    assert schedule.peak_bytes(order, keep) <= schedule.peak_bytes(kernels, keep)


def test_schedule_repairs_a_shuffled_kernel_list():
    outputs, updates = mlp_training()
    kernels, keep = fused(outputs, updates)
    shuffled = list(kernels)
    np.random.default_rng(0).shuffle(shuffled)
    order = schedule.run(shuffled, keep=keep)
    assert_topological(order)
    assert len(order) == len(kernels)


def test_greedy_defers_a_big_allocation_until_the_small_chain_is_done():
    # creation order computes the big value first and holds it across the whole small chain;
    # the greedy order runs the chain first (it frees as much as it allocates), then the big value
    g = gc.Graph("s")
    x, v = g.input("x", (1, 1000)), g.input("v", (1, 100))
    n = g.param("n", np.eye(100))
    big = x @ g.param("m", np.ones((1000, 1000)))   # 4000 bytes
    t1 = v @ n                                       # 400 bytes
    t2 = t1 @ n
    s = gc.sum(t2)
    out = gc.sum(big) * s
    kernels, keep = fused([out])
    assert [k.nodes[0] for k in kernels][:4] == [big, t1, t2, s]  # creation order
    order = schedule.run(kernels, keep=keep)
    assert_topological(order)
    firsts = [k.nodes[0] for k in order]
    assert firsts.index(big) > firsts.index(s)
    assert schedule.peak_bytes(kernels, keep) == 4032 + 448 + 448
    assert schedule.peak_bytes(order, keep) == 4032 + 64 + 64


def test_cycle_or_missing_producer_is_an_error():
    g = gc.Graph("s")
    x = g.input("x", (3,))
    a = gc.exp(x)
    b = gc.log(a)
    ka = Kernel("ka", "elementwise", (a,), (b,), (a,))  # a deliberately wrong kernel: reads its consumer
    kb = Kernel("kb", "elementwise", (b,), (a,), (b,))
    with pytest.raises(ValueError, match="cycle"):
        schedule.run([ka, kb])


def test_peak_bytes_counts_outputs_until_the_end():
    g = gc.Graph("s")
    x = g.input("x", (16,))
    a = gc.exp(x)
    b = gc.sum(a)
    kernels, keep = fused([a, b])
    assert schedule.peak_bytes(kernels, keep) == 64 + 64  # a stays live (a program output) next to b
