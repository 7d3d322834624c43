"""NativeProgram: the apple graph, feed validation before native code, fresh outputs, in-place updates,
structured ops, label validation, the object cache and inspection."""

import os

import numpy as np
import pytest

import graphc as gc
from codegen.lowerers import LOWERERS
from codegen.lowering import LoweringError
from codegen.target import Jit, cache_key
from ops import REGISTRY


def test_apple():
    g = gc.Graph("apple")
    apple, num, tax = g.input("apple", ()), g.input("num", ()), g.input("tax", ())
    price = apple * num * tax
    d_apple, d_num, d_tax = gc.grad(price, [apple, num, tax])
    prog = gc.compile({"price": price, "d_apple": d_apple, "d_num": d_num, "d_tax": d_tax}, backend="llvm")
    out = prog(apple=100.0, num=2.0, tax=1.1)
    want = {"price": 220.0, "d_apple": 2.2, "d_num": 110.0, "d_tax": 200.0}
    for key, value in want.items():
        np.testing.assert_allclose(out[key], value, rtol=1e-6)


def test_bad_feeds_never_reach_native_code(monkeypatch):
    g = gc.Graph("feeds")
    x = g.input("x", (3, 4))
    prog = gc.compile(gc.exp(x), backend="llvm")
    monkeypatch.setattr(prog, "_main", lambda table: pytest.fail("native code ran with a bad feed"))
    with pytest.raises(gc.FeedError, match="shape"):
        prog(x=np.zeros((4, 3)))
    with pytest.raises(gc.FeedError, match="expected float32"):
        prog(x=np.zeros((3, 4), dtype=np.complex64))
    with pytest.raises(gc.FeedError, match="missing"):
        prog()


def test_outputs_are_fresh_and_updates_in_place(rng):
    g = gc.Graph("train")
    x = g.input("x", (8, 3))
    w = g.param("w", rng.standard_normal((3,)))
    loss = gc.mean((x * w - 1.0) * (x * w - 1.0))
    (dw,) = gc.grad(loss, [w])
    state = g.state["w"]
    before = state.copy()
    prog = gc.compile({"loss": loss, "dw": dw}, backend="llvm", updates={w: w - dw * 0.1})
    ref = gc.compile({"loss": loss, "dw": dw}, backend="numpy")
    feeds = {"x": rng.standard_normal((8, 3))}
    want = ref(**feeds)
    first = prog(**feeds)
    np.testing.assert_allclose(first["loss"], want["loss"], rtol=1e-5)
    np.testing.assert_allclose(first["dw"], want["dw"], rtol=1e-5, atol=1e-6)
    assert g.state["w"] is state
    np.testing.assert_allclose(state, before - 0.1 * want["dw"], rtol=1e-5, atol=1e-6)
    second = prog(**feeds)
    assert not np.shares_memory(first["dw"], second["dw"]) and second["loss"] < first["loss"]
    g.state["w"] = np.zeros(3, dtype=np.float32)  # a replaced state array is re-read
    want = ref(**feeds)
    np.testing.assert_allclose(prog(**feeds)["loss"], want["loss"], rtol=1e-5)


def test_reductions_softmax_losses_and_shapes(rng):
    g = gc.Graph("mixed")
    x = g.input("x", (5, 7, 3))
    labels = g.input("labels", (5,), "int64")
    z = gc.reshape(gc.transpose(x, (0, 2, 1)), (5, 21))
    outs = {"s0": gc.sum(x, axis=(0, 2)), "s1": gc.mean(x, axis=1, keepdims=True), "mx": gc.max(x, axis=(1,)),
            "sm": gc.softmax(x, axis=1), "lsm": gc.log_softmax(z), "ce": gc.softmax_cross_entropy(z, labels),
            "oh": gc.one_hot(labels, 21), "mse": gc.mse(z, z * 0.5)}
    feeds = {"x": rng.standard_normal((5, 7, 3)) * 4, "labels": rng.integers(0, 21, 5)}
    want = gc.compile(outs, backend="numpy")(**feeds)
    got = gc.compile(outs, backend="llvm")(**feeds)
    for key in want:
        np.testing.assert_allclose(got[key], want[key], rtol=2e-5, atol=2e-6, err_msg=key)


def test_out_of_range_label_raises_clear_error(rng):
    g = gc.Graph("labels")
    z, labels = g.input("z", (4, 3)), g.input("labels", (4,), "int64")
    prog = gc.compile(gc.softmax_cross_entropy(z, labels), backend="llvm")
    good = prog(z=np.zeros((4, 3)), labels=np.array([0, 1, 2, 0]))
    np.testing.assert_allclose(good, np.log(3.0), rtol=1e-6)
    for bad in (3, -1, 10**12):
        with pytest.raises(gc.GraphcError, match=r"outside \[0, 3\)"):
            prog(z=np.zeros((4, 3)), labels=np.array([0, bad, 2, 0]))


def test_missing_lowerer_is_a_clear_error(monkeypatch):
    monkeypatch.delitem(LOWERERS, "softmax")
    g = gc.Graph("nolower")
    x = g.input("x", (2, 3))
    with pytest.raises(LoweringError, match=r"'softmax'.*test_native_program\.py:"):
        gc.compile(gc.softmax(x), backend="llvm")


def test_object_cache_hit_on_second_compile(tmp_path, monkeypatch):
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path))
    g = gc.Graph("cached")
    x = g.input("x", (33,))
    y = gc.tanh(x) * 3.0
    first = gc.compile(y, backend="llvm")
    path = first.jit.cache_path
    assert not first.jit.cache_hit and path is not None and os.path.exists(path)
    assert os.path.dirname(path) == str(tmp_path)
    second = gc.compile(y, backend="llvm")
    assert second.jit.cache_hit and second.jit.cache_path == path
    assert second._module is None  # a hit generates no IR ...
    feeds = {"x": np.linspace(-3, 3, 33)}
    np.testing.assert_array_equal(first(**feeds), second(**feeds))
    assert "define" in second.llvm_ir(optimized=True)  # ... until it is inspected
    assert second.llvm_ir() == first.llvm_ir()
    assert Jit(first.module.ir_text).cache_path == os.path.join(str(tmp_path), cache_key(first.llvm_ir()) + ".gco")
    monkeypatch.setenv("GRAPHC_CACHE", "0")
    assert Jit(first.module.ir_text).cache_path is None


def test_kernels_info_reports_facts():
    g = gc.Graph("info")
    x = g.input("x", (64, 10))
    prog = gc.compile(gc.sum(gc.exp(x) * 2.0, axis=1), backend="llvm")
    info = prog.kernels_info()
    assert [k["ops"] for k in info] == [["exp", "mul"], ["sum"]]
    assert all(k["vector_width"] in ("zmm", "ymm", "xmm", "scalar") and k["bytes"] > 0 for k in info)
    assert info[0]["flops"] >= 64 * 10 * 20


def test_every_registered_op_has_a_lowerer():
    """Every op that is not fused elementwise (those lower through their ``scalar`` formula) has a lowerer."""
    missing = [n for n, op in REGISTRY.items() if not op.fusible and n not in LOWERERS]
    assert not missing, f"ops without an LLVM lowering: {sorted(missing)}"
