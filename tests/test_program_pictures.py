"""``prog.render_memory`` (the memory plan as a timeline) and ``prog.render_kernels`` (fused kernels as clusters)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import graphc as gc
from graphc.dump import plan_of
from graphc.memory_view import memory_boxes, naive_bytes
from graphc.pictures import boundaries
from graphc.viz import Picture
from passes.plan import intervals


def mlp_step(backend: str):
    g = gc.Graph("mlp")
    x, y = g.input("x", (8, 12)), g.input("y", (8,), "int64")
    rng = np.random.default_rng(0)
    w1 = g.param("w1", rng.normal(size=(12, 16)).astype(np.float32))
    b1 = g.param("b1", np.zeros(16, np.float32))
    w2 = g.param("w2", rng.normal(size=(16, 3)).astype(np.float32))
    loss = gc.softmax_cross_entropy(gc.relu(x @ w1 + b1) @ w2, y)
    return gc.compile({"loss": loss}, backend=backend, updates=gc.optim.Adam(0.01).minimize(loss))


@pytest.fixture(scope="module", params=["llvm", "numpy-plan", "numpy"])
def step(request):
    return mlp_step(request.param)


def test_one_rectangle_per_planned_buffer(step):
    plan = plan_of(step)
    boxes = memory_boxes(plan, step.graph.trainable)
    live = intervals(plan.kernels, set(plan.outputs) | {v for _, v in plan.updates})
    by_name = {v.name: v for v in plan.buffers}
    planned = {v.name for v, b in plan.buffers.items() if v.type.nbytes}
    assert sorted(b.name for b in boxes) == sorted(planned)
    for b in boxes:
        v = by_name[b.name]
        assert (b.offset, b.nbytes) == (plan.buffers[v].offset, v.type.nbytes)
        assert (b.start, b.end) == live[v]
        assert b.offset + b.nbytes <= plan.arena_bytes
    kinds = {b.kind for b in boxes}
    assert kinds == {"forward", "backward", "update"}
    assert plan.inplace
    reused = {b.name: b.reuses for b in boxes if b.reuses}
    assert reused == {v.name: x.name for v, x in plan.inplace.items() if v.type.nbytes}
    for b in boxes:
        if b.reuses:  # the taker starts where its donor's rectangle ends, at the same offset
            donor = next(d for d in boxes if d.name == b.reuses)
            assert donor.handed_over and donor.x[1] == b.x[0] and donor.offset == b.offset
    assert naive_bytes(plan) > plan.arena_bytes


def test_render_memory_figure_and_file(step, tmp_path):
    pytest.importorskip("matplotlib")
    plan = plan_of(step)
    figure = step.render_memory()
    ax = figure.axes[0]
    assert len(ax.patches) == len(memory_boxes(plan, step.graph.trainable))
    title = ax.get_title()
    assert "naive" in title and "planned" in title and "mlp" in title
    hatched = [p for p in ax.patches if p.get_hatch()]
    assert len(hatched) == sum(1 for v in plan.inplace if v.type.nbytes)
    path = step.render_memory(str(tmp_path / "memory.svg"))
    assert open(path).read().count("<svg") == 1


def test_render_memory_without_matplotlib(step, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    monkeypatch.setitem(sys.modules, "matplotlib.backends.backend_agg", None)
    with pytest.raises(gc.GraphcError, match=r"pip install 'graphc\[plot\]'"):
        step.render_memory()


def test_kernel_picture_one_cluster_per_kernel_with_reasons(step, tmp_path):
    plan = plan_of(step)
    picture = step.render_kernels()
    assert isinstance(picture, Picture)
    dot = picture.source
    labels = re.findall(r'subgraph cluster_k(\d+) \{\s*[^\n]*?label="([^"]*)"', dot)
    assert [int(i) for i, _ in labels] == list(range(len(plan.kernels)))
    for (i, label), k in zip(labels, plan.kernels):
        assert label == f"#{i} {k.name} [{k.kind}]"
    found = boundaries(plan)
    assert found and all(not b.reason.startswith("(no reason") for b in found)
    report = "\n".join(str(line) for line in plan.report["fusion"])
    for b in found:
        assert f"via {b.value.name}: {b.reason}" in report
        assert textwrap.fill(b.reason, 32).replace("\n", "\\n") in dot  # the edge label, wrapped
    assert dot.count('color="#c0504d"') >= len(found)  # one red boundary edge (at least) per crossing
    path = step.render_kernels(str(tmp_path / "kernels.dot"))
    assert open(path).read() == dot


def test_the_docs_pictures_example(tmp_path):
    pytest.importorskip("matplotlib")
    script = Path(__file__).resolve().parents[1] / "examples" / "pictures.py"
    proc = subprocess.run([sys.executable, str(script), str(tmp_path / "dot")], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "PATH": ""})  # no Graphviz: .dot files
    assert proc.returncode == 0, proc.stderr
    written = sorted(p.name for p in (tmp_path / "dot").iterdir())
    assert written == ["digits_cnn_layers.dot", "mlp_kernels.dot", "mlp_memory.svg"]
    assert "<b>dense_1: Dense (softmax)</b>" in (tmp_path / "dot" / "digits_cnn_layers.dot").read_text()
