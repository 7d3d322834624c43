"""Concat slices (``passes.concat_slices``): memory planning puts a concat's inputs inside its output's buffer, so
their kernels compute them in place and the concat copies nothing — Inception- and fire-like modules at batch 1,
against the interpreter on both backends; concats that must copy (batches, a program output among the inputs, a
value in two concats, nested concats, misaligned slices, bound inputs, an input still read after the concat's
buffer is taken over in place: all or nothing); and ``verify_plan`` rejecting a misplaced slice."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import graphc as gc
from passes.plan import Buffer, PlanError, verify_plan


def _conv(g, x, o, name, rng, kernel=1, padding=0):
    w = g.param(f"w_{name}", (rng.standard_normal((o, x.shape[1], kernel, kernel)) * 0.2).astype(np.float32))
    b = g.param(f"b_{name}", rng.standard_normal(o).astype(np.float32))
    return gc.relu(gc.conv2d(x, w, b, padding=padding), name=name)


def _inception(rng, batch=1):
    g = gc.Graph("inception")
    x = g.input("x", (batch, 8, 10, 10))
    a = _conv(g, x, 16, "a", rng)
    b = _conv(g, _conv(g, x, 8, "b0", rng), 16, "b", rng, kernel=3, padding=1)
    c = gc.max_pool2d(x, 3, stride=1, padding=1)
    d = _conv(g, c, 16, "d", rng)
    y = gc.concat([a, b, d], axis=1, name="y")
    out = _conv(g, y, 12, "out", rng)
    return {"out": out}, {"x": rng.standard_normal(x.shape).astype(np.float32)}, (a, b, d, y)


def _agree(outputs, feeds):
    want = gc.compile(outputs, backend="numpy")(**feeds)
    for backend in ("numpy-plan", "llvm"):
        got = gc.compile(outputs, backend=backend)(**feeds)
        for key in want:
            np.testing.assert_allclose(got[key], want[key], rtol=2e-5, atol=2e-5, err_msg=f"{backend} {key}")


def _slices(outputs):
    plan = gc.compile(outputs, backend="numpy-plan").plan
    return plan, {x.name: (y.name, at) for x, (y, at) in plan.slices.items()}


def test_inception_branches_are_computed_into_the_concat(rng):
    outputs, feeds, (a, b, d, y) = _inception(rng)
    plan, slices = _slices(outputs)
    row = 10 * 10 * 4
    assert slices == {"a": ("y", 0), "b": ("y", 16 * row), "d": ("y", 32 * row)}
    assert any("concat slice: a" in line for line in plan.report["memory"])
    verify_plan(plan)
    _agree(outputs, feeds)
    program = gc.compile(outputs, backend="llvm")
    assert "icmp eq" in program.llvm_ir()  # the concat compares pointers and skips its slices


def test_batches_program_outputs_and_misaligned_slices_stay_copies(rng):
    outputs, feeds, _ = _inception(rng, batch=2)  # each image's channels: the slices are not contiguous
    assert _slices(outputs)[1] == {}
    _agree(outputs, feeds)

    outputs, feeds, (a, *_rest) = _inception(rng)
    outputs = {**outputs, "a": a}  # a program output keeps bytes of its own: the concat copies, so all do
    assert _slices(outputs)[1] == {}
    _agree(outputs, feeds)

    g = gc.Graph("odd")
    x = g.input("x", (1, 3, 5))
    p, q = gc.exp(x, name="p"), gc.tanh(x, name="q")
    y = gc.concat([p, q], axis=1)  # q would start 60 bytes in: not 64-byte aligned
    z = gc.concat([q, p], axis=2)
    assert _slices({"y": y * 2.0, "z": z * 3.0})[1] == {}
    _agree({"y": y * 2.0, "z": z * 3.0}, {"x": rng.standard_normal((1, 3, 5)).astype(np.float32)})


def test_a_value_in_two_concats_and_nested_concats(rng):
    g = gc.Graph("dense")
    x = g.input("x", (1, 16, 4, 4))
    f0 = gc.relu(x, name="f0")
    f1 = gc.tanh(f0, name="f1")
    c1 = gc.concat([f0, f1], axis=1, name="c1")  # first concat: f0 and f1 live in it
    f2 = gc.sigmoid(c1, name="f2")
    c2 = gc.concat([f0, f1, f2], axis=1, name="c2")  # f0, f1 lie in c1: c2 copies all three
    c3 = gc.concat([c1, gc.exp(x, name="e")], axis=1, name="c3")  # c1 holds slices: never a slice itself
    outputs = {"c2": c2 * 2.0, "c3": c3 * 2.0}
    plan, slices = _slices(outputs)
    row = 16 * 4 * 4 * 4  # one input's bytes
    assert slices == {"f0": ("c1", 0), "f1": ("c1", row)}
    verify_plan(plan)
    _agree(outputs, {"x": rng.standard_normal((1, 16, 4, 4)).astype(np.float32)})


def test_bound_inputs_are_copied():
    g = gc.Graph("bound")
    x, w = g.input("x", (1, 16, 2, 2)), g.param("w", np.ones((1, 16, 2, 2), np.float32))
    y = gc.concat([x, gc.relu(x, name="r"), w], axis=1)
    assert _slices({"y": y * 2.0})[1] == {}
    y2 = gc.concat([gc.relu(x, name="r2"), gc.exp(x, name="e2")], axis=1)
    assert _slices({"y2": y2 * 2.0})[1] == {"r2": (y2.name, 0), "e2": (y2.name, 16 * 2 * 2 * 4)}
    feeds = {"x": np.arange(64, dtype=np.float32).reshape(1, 16, 2, 2) - 30}
    _agree({"y": y * 2.0, "y2": y2 * 2.0}, feeds)


def test_verify_plan_rejects_a_misplaced_slice(rng):
    outputs, _, _ = _inception(rng)
    plan = gc.compile(outputs, backend="numpy-plan").plan
    (x, (y, at)), *_ = plan.slices.items()
    moved = dict(plan.buffers)
    moved[x] = Buffer(plan.buffers[y].offset + at + 64, plan.buffers[x].nbytes)
    with pytest.raises(PlanError, match="concat slice"):
        verify_plan(dataclasses.replace(plan, buffers=moved))
    with pytest.raises(PlanError, match="concat slice"):  # a slice claimed at another offset
        verify_plan(dataclasses.replace(plan, slices={**plan.slices, x: (y, at + 64)}))


def test_a_concat_taken_over_in_place_gets_slices_only_when_they_are_dead_by_then(rng):
    g = gc.Graph("takeover")
    x = g.input("x", (1, 16, 4, 4))
    p, q = gc.exp(x, name="p"), gc.tanh(x, name="q")
    y = gc.concat([p, q], axis=1, name="y")
    doubled = y * 2.0  # takes y's buffer over in place
    late = gc.sum(q * gc.sum(doubled))  # q is still read after the takeover: it keeps bytes of its own
    plan, slices = _slices({"late": late})
    assert any(v.name == doubled.name for v in plan.inplace) and slices == {}
    early = gc.sum(doubled) + 1.0  # p and q die at the concat, before the takeover
    plan, slices = _slices({"early": early})
    assert any(v.name == doubled.name for v in plan.inplace) and slices == {"p": ("y", 0), "q": ("y", 1024)}
    verify_plan(plan)
    feeds = {"x": rng.standard_normal((1, 16, 4, 4)).astype(np.float32)}
    _agree({"late": late}, feeds)
    _agree({"early": early}, feeds)
