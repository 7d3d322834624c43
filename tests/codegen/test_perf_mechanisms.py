"""The LLVM backend's performance mechanisms keep results exact: the Plan-keyed object cache (hit, and miss on
any change that alters the code), outputs written straight into fresh arrays, in-place kernels through one
pointer, and transposes folded into the GEMM (forward and backward graphs equal the interpreter)."""

from __future__ import annotations

import numpy as np
import pytest

import graphc as gc
from codegen.module import plan_key
from passes.pipeline import build_plan
from runtime import make_program


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("GRAPHC_CACHE", "1")
    return tmp_path


def _affine(n: int = 37, scale: float = 3.0, bias: float = 0.5):
    g = gc.Graph("affine")
    x = g.input("x", (n,))
    return x, gc.sigmoid(x * scale + bias)


def test_plan_key_is_stable_and_sensitive_to_consts_and_shapes():
    def key(n=37, scale=3.0):
        _, y = _affine(n, scale)
        return plan_key(build_plan([y], []), "affine")[0]

    assert key() == key()  # a rebuilt, identical graph names the same object code
    assert key() != key(scale=2.0)  # an embedded constant changed
    assert key() != key(n=38)  # a shape changed


def test_cached_rebuild_skips_ir_and_recompiles_on_change(cache_dir):
    feeds = {"x": np.linspace(-4, 4, 37)}
    first = gc.compile(_affine()[1], backend="llvm")
    assert not first.jit.cache_hit and first._module is not None
    second = gc.compile(_affine()[1], backend="llvm")
    assert second.jit.cache_hit and second._module is None  # no IR generated on a hit
    np.testing.assert_array_equal(first(**feeds), second(**feeds))
    changed = gc.compile(_affine(scale=2.0)[1], backend="llvm")
    assert not changed.jit.cache_hit
    np.testing.assert_allclose(changed(**feeds), 1 / (1 + np.exp(-(feeds["x"] * 2.0 + 0.5))), rtol=1e-6)
    assert second.llvm_ir() == first.llvm_ir()  # inspection regenerates the IR lazily


def test_cached_metadata_keeps_error_reporting(cache_dir):
    def build():
        g = gc.Graph("ce")
        z, labels = g.input("z", (4, 3)), g.input("y", (4,), dtype="int64")
        return gc.softmax_cross_entropy(z, labels)

    feeds = {"z": np.zeros((4, 3)), "y": np.array([0, 1, 2, 7])}
    gc.compile(build(), backend="llvm")
    cached = gc.compile(build(), backend="llvm")
    assert cached.jit.cache_hit and cached.error_nodes and cached.error_nodes[0].op == "softmax_cross_entropy"
    with pytest.raises(gc.GraphcError, match="outside"):
        cached(**feeds)


def test_outputs_are_fresh_arrays_written_directly():
    g = gc.Graph("direct")
    x = g.input("x", (5, 4))
    y = gc.tanh(x) * 2.0
    s = gc.sum(y, axis=1)  # y is also read by a later kernel
    prog = gc.compile({"y": y, "s": s, "y_again": y}, backend="llvm")
    assert set(prog._direct) == {prog.plan.node_map[y], prog.plan.node_map[s]}  # the plan's (simplified) nodes
    feeds = {"x": np.arange(20.0).reshape(5, 4) / 10}
    a, b = prog(**feeds), prog(**feeds)
    want = np.tanh(feeds["x"]) * 2.0
    np.testing.assert_allclose(a["y"], want, rtol=1e-6)
    np.testing.assert_allclose(a["s"], want.sum(axis=1), rtol=1e-6)
    np.testing.assert_array_equal(a["y"], a["y_again"])
    assert a["y"] is not a["y_again"] and not np.shares_memory(a["y"], a["y_again"])
    for key in a:
        assert not np.shares_memory(a[key], b[key]) and not np.shares_memory(a[key], prog.arena)
    a["y"][:] = 0  # the caller owns its results
    np.testing.assert_allclose(prog(**feeds)["y"], want, rtol=1e-6)


def test_output_that_is_also_an_update_value():
    g = gc.Graph("out_update")
    w = g.param("w", np.ones(6, np.float32))
    x = g.input("x", (6,))
    new = w * 0.5 + x
    prog = gc.compile({"new": new}, backend="llvm", updates={w: new})
    out = prog(x=np.full(6, 2.0))
    np.testing.assert_allclose(out["new"], 2.5)
    np.testing.assert_allclose(g.state["w"], 2.5)
    assert not np.shares_memory(out["new"], g.state["w"])


def _swap(x):
    return gc.transpose(x, tuple(range(x.ndim - 2)) + (x.ndim - 1, x.ndim - 2))


def test_transpose_folds_into_matmul_kernel():
    g = gc.Graph("fold")
    a, b = g.input("a", (7, 5)), g.input("b", (3, 7))
    y = gc.matmul(_swap(a), _swap(b))  # (5, 7) @ (7, 3)
    plan = build_plan([y], [])
    assert [sorted(n.op for n in k.nodes) for k in plan.kernels] == [["matmul", "transpose", "transpose"]]
    assert plan.kernels[0].kind == "matmul"
    rng = np.random.default_rng(0)
    gc.testing.assert_backends_agree(y, {"a": rng.standard_normal((7, 5)), "b": rng.standard_normal((3, 7))})


def test_transpose_read_elsewhere_is_not_folded():
    g = gc.Graph("nofold")
    a, b = g.input("a", (4, 6)), g.input("b", (4, 3))
    t = _swap(a)
    y = gc.matmul(t, b)
    plan = build_plan([y, t], [])  # t is also a program output
    assert any(k.nodes == (plan.node_map[t],) for k in plan.kernels)
    rng = np.random.default_rng(1)
    gc.testing.assert_backends_agree([y, t], {"a": rng.standard_normal((4, 6)), "b": rng.standard_normal((4, 3))})


def test_mlp_training_with_folded_transposes_matches_interpreter():
    rng = np.random.default_rng(2)
    init = {f"w{i}": rng.standard_normal(s).astype(np.float32) * 0.3 for i, s in enumerate([(9, 7), (7, 4)])}
    init.update(b0=np.zeros(7, np.float32), b1=np.zeros(4, np.float32))
    feeds = {"x": rng.standard_normal((11, 9)).astype(np.float32), "y": rng.integers(0, 4, 11)}
    results = {}
    for backend in ("numpy", "llvm"):
        g = gc.Graph("mlp")
        x, labels = g.input("x", (11, 9)), g.input("y", (11,), dtype="int64")
        ps = {k: g.param(k, v.copy()) for k, v in init.items()}
        h = gc.relu(x @ ps["w0"] + ps["b0"]) @ ps["w1"] + ps["b1"]
        loss = gc.softmax_cross_entropy(h, labels)
        grads = gc.grad(loss, [ps["w0"], ps["w1"]])
        prog = make_program({"loss": loss, "g0": grads[0], "g1": grads[1]}, backend=backend,
                            updates=gc.optim.SGD(0.1).minimize(loss))
        if backend == "llvm":
            assert any(k.kind == "matmul" and len(k.nodes) > 1 for k in prog.plan.kernels)
        steps = [prog(**feeds) for _ in range(3)]
        results[backend] = (steps, {k: g.state[k].copy() for k in init})
    for want, got in zip(results["numpy"][0], results["llvm"][0]):
        for key in want:
            np.testing.assert_allclose(got[key], want[key], rtol=2e-5, atol=2e-6)
    for key in init:
        np.testing.assert_allclose(results["llvm"][1][key], results["numpy"][1][key], rtol=2e-5, atol=2e-6)


def test_inplace_kernel_shares_one_pointer_and_stays_exact():
    g = gc.Graph("inplace")
    x, w = g.input("x", (16, 40)), g.input("w", (40, 24))
    bias = g.input("b", (16, 24))
    y = gc.sum(gc.relu(gc.softmax(x @ w, axis=1) * 3.0 + bias), axis=0)
    prog = gc.compile(y, backend="llvm")
    assert prog.plan.inplace  # the relu group takes over the softmax's buffer
    ir_text = prog.llvm_ir()
    assert "bitcast" in ir_text
    rng = np.random.default_rng(3)
    feeds = {"x": rng.standard_normal((16, 40)), "w": rng.standard_normal((40, 24)), "b": rng.standard_normal((16, 24))}
    z = feeds["x"] @ feeds["w"]
    soft = np.exp(z - z.max(axis=1, keepdims=True))
    soft /= soft.sum(axis=1, keepdims=True)
    want = np.maximum(soft * 3.0 + feeds["b"], 0).sum(axis=0)
    np.testing.assert_allclose(prog(**feeds), want, rtol=1e-4, atol=1e-4)
