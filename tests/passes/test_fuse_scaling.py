"""Fusion at scale: long chains become kernels of bounded cost (so LLVM's superlinear optimizer never sees one huge
function), the cost budget is reported at each split, and results are unchanged."""

from __future__ import annotations

import math

import numpy as np
import pytest

import graphc as gc
from graphc.ir import topo_ancestors
from ops.registry import get_op
from passes import fuse


def chain(n: int, op=gc.tanh) -> tuple[gc.Graph, gc.Tensor]:
    g = gc.Graph("chain")
    y = x = g.input("x", (64,))
    for _ in range(n):
        y = op(y)
    return g, x, y


def cost(kernel) -> int:
    return sum(get_op(n.op).cost for n in kernel.nodes)


@pytest.mark.parametrize("n", [10, 100, 1000])
def test_long_chain_splits_into_kernels_within_the_budget(n):
    _, _, y = chain(n)
    kernels, report = fuse.run(topo_ancestors([y]), [y], [])
    assert all(cost(k) <= fuse.FUSION_BUDGET for k in kernels)
    per_kernel = fuse.FUSION_BUDGET // get_op("tanh").cost  # greedy: every kernel but the last is full
    assert len(kernels) == math.ceil(n / per_kernel)
    assert sum(len(k.nodes) for k in kernels) == n
    splits = [line for line in report if "kernel budget" in line]
    assert len(splits) == len(kernels) - 1


def test_cheap_ops_fill_a_kernel_with_many_more_nodes():
    _, _, y = chain(600, op=lambda v: v * 1.001)
    kernels, _ = fuse.run(topo_ancestors([y]), [y], [])
    assert len(kernels) == 1  # 600 multiplies cost 600 < the budget


def test_split_chain_computes_the_same_values():
    _, x, y = chain(120)
    feeds = {"x": np.linspace(-3, 3, 64).astype(np.float32)}
    want = gc.compile(y, backend="numpy")(**feeds)
    for backend in ("numpy-plan", "llvm"):
        prog = gc.compile(y, backend=backend)
        assert len(prog.plan.kernels) > 1
        np.testing.assert_allclose(prog(**feeds), want, rtol=2e-6, atol=1e-6)


def test_wide_graph_of_many_small_groups_has_no_cycles():
    """Many independent branches reading one value and merging pairwise: the pruned reachability search must
    still refuse every merge that would make a cycle (schedule raises on a cyclic kernel graph)."""
    g = gc.Graph("wide")
    x = g.input("x", (8, 8))
    w = g.param("w", np.eye(8, dtype=np.float32))
    branches = []
    for i in range(60):
        a = gc.tanh(x * float(i + 1))
        b = (a @ w) if i % 3 == 0 else gc.sigmoid(a)
        branches.append(b + a)
    y = branches[0]
    for b in branches[1:]:
        y = y + b
    prog = gc.compile(y.sum(), backend="numpy-plan")
    want = gc.compile(y.sum(), backend="numpy")(x=np.ones((8, 8), np.float32))
    np.testing.assert_allclose(prog(x=np.ones((8, 8), np.float32)), want, rtol=1e-5)


def test_many_values_live_at_once_skip_largest_first_but_stay_valid(monkeypatch):
    from passes import memplan
    from passes.pipeline import build_plan

    g = gc.Graph("wide")
    x = g.input("x", (16,))
    parts = [gc.reshape(gc.sum(gc.exp(x * float(i))), (1,)) for i in range(60)]
    y = gc.concat(parts)
    monkeypatch.setattr(memplan, "LARGEST_FIRST_PAIRS", 100)  # 60 values live together: ~1,800 pairs
    plan = build_plan([y], [])
    assert "largest first skipped" in plan.report["memory"][1]
    plan.verify()
    monkeypatch.setattr(memplan, "LARGEST_FIRST_PAIRS", 10**9)
    assert "largest first" in build_plan([y], []).report["memory"][1]
