"""The fused layer_norm kernel (``codegen.norm.lower_layer_norm``): ONNX LayerNormalization semantics over the
trailing axes from ``axis`` against a float64 NumPy formula (float32 within a few ulp, float64 to rounding), γ/β
broadcast over the normalized axes, a large mean, 1/2/3 threads bitwise identical, one kernel per layer_norm and
vectorized asm."""

from __future__ import annotations

import re

import numpy as np
import pytest

import codegen.loops as loops
import graphc as gc
from codegen.target import has_avx512
from runtime.asm import asm_functions as _asm_functions
from runtime.parallel import runtime

# (x shape, axis, scale shape, bias shape or None)
CASES = [
    ((197, 768), -1, (768,), (768,)),
    ((4, 7), -1, (7,), None),
    ((2, 3, 5), 1, (3, 5), (5,)),
    ((2, 3, 5), -2, (5,), (3, 1)),
    ((3, 4), 0, (1, 4), (1,)),
    ((2, 6, 1, 5), 2, (1, 1, 5), (1, 5)),
    ((3, 300), 1, (300,), (300,)),  # a full LN_BLOCK and a tail
    ((2, 4, 130), 1, (4, 130), (4, 130)),  # 520 per row: two blocks and a tail
    ((5, 1), -1, (1,), (1,)),
]


def _want(x: np.ndarray, axis: int, scale: np.ndarray, bias: np.ndarray | None, eps: float) -> np.ndarray:
    """The float64 formula: (x − μ)/√(σ² + ε)·γ + β, μ and σ² (biased) over the axes from ``axis``."""
    axes = tuple(range(axis % x.ndim, x.ndim))
    x64 = x.astype(np.float64)
    d = x64 - x64.mean(axis=axes, keepdims=True)
    y = d / np.sqrt((d * d).mean(axis=axes, keepdims=True) + eps) * scale.astype(np.float64)
    return y if bias is None else y + bias.astype(np.float64)


def _bound(x, axis, scale, bias, eps, dtype) -> np.ndarray:
    """A few ulp of the terms' magnitudes |x̂·γ| + |β| (the kernel writes y in x's dtype), plus the shift of x̂ by
    the summation error of the mean, log2(n)·ulp·mean|x| (float64 sums: it only shows for float64 x)."""
    axes = tuple(range(axis % x.ndim, x.ndim))
    x64 = x.astype(np.float64)
    terms = np.abs(_want(x, axis, scale, None, eps)) + (0.0 if bias is None else np.abs(bias.astype(np.float64)))
    n = x64[(0,) * (axis % x.ndim)].size
    shift = (np.ceil(np.log2(n)) + 1) * np.finfo(np.float64).eps * np.abs(x64).mean(axis=axes, keepdims=True)
    inv = 1 / np.sqrt(x64.var(axis=axes, keepdims=True) + eps)
    return 4 * np.finfo(dtype).eps * np.broadcast_to(terms, x.shape) + shift * inv * np.abs(scale)


def _inputs(rng, shape, scale_shape, bias_shape, dtype, mean=0.5):
    x = (rng.standard_normal(shape) * 2 + mean).astype(dtype)
    scale = rng.uniform(0.5, 2.0, scale_shape).astype(dtype)
    bias = None if bias_shape is None else rng.standard_normal(bias_shape).astype(dtype)
    return x, scale, bias


def _program(shape, axis, scale_shape, bias_shape, dtype, eps=1e-5, threads=1):
    g = gc.Graph("ln")
    x, s = g.input("x", shape, dtype), g.input("s", scale_shape, dtype)
    b = None if bias_shape is None else g.input("b", bias_shape, dtype)
    return gc.compile(gc.layer_norm(x, s, b, axis=axis, eps=eps), backend="llvm", threads=threads, cache=False)


def _feeds(x, scale, bias):
    return {"x": x, "s": scale} if bias is None else {"x": x, "s": scale, "b": bias}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("shape, axis, scale_shape, bias_shape", CASES)
def test_matches_float64_formula(shape, axis, scale_shape, bias_shape, dtype, rng):
    x, scale, bias = _inputs(rng, shape, scale_shape, bias_shape, dtype)
    got = _program(shape, axis, scale_shape, bias_shape, dtype)(**_feeds(x, scale, bias))
    assert got.dtype == np.dtype(dtype) and got.shape == shape
    want = _want(x, axis, scale, bias, 1e-5)
    err = np.abs(got.astype(np.float64) - want)
    assert np.all(err <= _bound(x, axis, scale, bias, 1e-5, dtype)), float(np.max(err))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_large_mean_keeps_precision(dtype, rng):
    """|μ| ≫ σ: x − μ is computed as (x − μ_hi) − μ_lo, so a float32 mean rounding costs nothing."""
    shape = (16, 768)
    x, scale, bias = _inputs(rng, shape, (768,), (768,), dtype, mean=3000.0)
    got = _program(shape, -1, (768,), (768,), dtype, eps=1e-6)(**_feeds(x, scale, bias))
    err = np.abs(got.astype(np.float64) - _want(x, -1, scale, bias, 1e-6))
    assert np.all(err <= _bound(x, -1, scale, bias, 1e-6, dtype)), float(np.max(err))


def test_agrees_with_interpreter_and_eps(rng):
    g = gc.Graph("ln_eps")
    x, s, b = g.input("x", (6, 10)), g.input("s", (10,)), g.input("b", (10,))
    y = gc.layer_norm(x, s, b, eps=0.5)
    feeds = {"x": rng.standard_normal((6, 10)).astype(np.float32) * 0.3,
             "s": rng.standard_normal(10).astype(np.float32), "b": rng.standard_normal(10).astype(np.float32)}
    got = gc.compile(y, backend="llvm")(**feeds)
    want = gc.compile(y, backend="numpy")(**feeds)
    np.testing.assert_allclose(got, want, rtol=4 * np.finfo(np.float32).eps, atol=4 * np.finfo(np.float32).eps)
    np.testing.assert_allclose(want, _want(feeds["x"], -1, feeds["s"], feeds["b"], 0.5), rtol=1e-6, atol=1e-6)


@pytest.mark.skipif(not runtime(), reason="libgomp is not installed: programs run on one thread")
@pytest.mark.parametrize("grain", [None, 1])
@pytest.mark.parametrize("shape, axis, scale_shape, bias_shape", [CASES[0], CASES[3], CASES[7]])
def test_threads_give_the_same_bits(shape, axis, scale_shape, bias_shape, grain, rng, monkeypatch):
    if grain is not None:
        monkeypatch.setattr(loops, "GRAIN", grain)
    x, scale, bias = _inputs(rng, shape, scale_shape, bias_shape, "float32")
    feeds = _feeds(x, scale, bias)
    results = [_program(shape, axis, scale_shape, bias_shape, "float32", threads=t)(**feeds) for t in (1, 2, 3)]
    for threads, got in zip((2, 3), results[1:]):
        np.testing.assert_array_equal(got, results[0], err_msg=f"{threads} threads differ from one")


def test_one_kernel_per_layer_norm():
    prog = _program((197, 768), -1, (768,), (768,), "float32")
    (kernel,) = prog.plan.kernels
    assert [n.op for n in kernel.nodes] == ["layer_norm"]


def test_kernel_is_vectorized():
    """The row passes (two reductions and the write) run at the host's widest vectors, without calls."""
    prog = _program((197, 768), -1, (768,), (768,), "float32")
    (info,) = prog.kernels_info()
    bodies = {k: v for k, v in _asm_functions(prog.asm()).items() if k.startswith(info["function"])}
    body = "".join(bodies.values())
    reg = "zmm" if has_avx512() else "ymm"
    assert len(re.findall(rf"%{reg}\d+", body)) >= 30, body[:2000]
    assert re.search(rf"vaddps\s+[^\n]*%{reg}", body)  # the reassociated float32 row sums
    assert re.search(rf"vsubps\s+[^\n]*%{reg}", body)  # x − μ in the variance and write passes
    assert "call\t" not in "".join(v for k, v in bodies.items() if k != info["function"])


@pytest.mark.parametrize("axis, scale_shape, with_bias", [(-1, (6,), True), (1, (4, 6), False), (-2, (1, 6), True)])
def test_onnx_layer_normalization_imports_as_one_op(axis, scale_shape, with_bias, rng):
    """A LayerNormalization node whose Mean/InvStdDev outputs are unused becomes one layer_norm (both backends
    match ONNX's reference evaluator); one that uses them keeps the composition."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper
    from onnx.reference import ReferenceEvaluator

    def model(outputs: list[str]):
        inputs = ["x", "s", "b"] if with_bias else ["x", "s"]
        node = helper.make_node("LayerNormalization", inputs, outputs, axis=axis, epsilon=1e-3)
        infos = [helper.make_tensor_value_info("x", TensorProto.FLOAT, (3, 4, 6)),
                 helper.make_tensor_value_info("s", TensorProto.FLOAT, scale_shape),
                 helper.make_tensor_value_info("b", TensorProto.FLOAT, scale_shape)][:len(inputs)]
        kept = 3 + axis if axis < 0 else axis
        shapes = {"y": (3, 4, 6), "mean": (3, 4, 6)[:kept] + (1,) * (3 - kept)}
        outs = [helper.make_tensor_value_info(name, TensorProto.FLOAT, shapes[name]) for name in outputs if name]
        graph = helper.make_graph([node], "ln", infos, outs)
        return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])

    feeds = {"x": rng.standard_normal((3, 4, 6)).astype(np.float32),
             "s": rng.uniform(0.5, 2.0, scale_shape).astype(np.float32),
             "b": rng.standard_normal(scale_shape).astype(np.float32)}
    if not with_bias:
        del feeds["b"]
    for outputs, fused in ((["y"], True), (["y", "mean", ""], False)):
        proto = model(outputs)
        onnx.checker.check_model(proto)
        want = ReferenceEvaluator(proto).run(None, feeds)[0]
        imported = gc.onnx.import_model(proto, initializers="consts")
        ops = {n.op for n in gc.ir.topo_ancestors(list(imported.outputs.values()))}
        assert ("layer_norm" in ops) == fused, ops
        for backend in ("numpy", "llvm"):
            got = imported.compile(backend=backend)(**feeds)["y"]
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5, err_msg=backend)


def test_kernels_info_sees_the_vector_width_of_the_chunk_bodies():
    """The kernel's own function only hands rows to its chunk bodies; ``kernels_info`` reads those too."""
    g = gc.Graph("ln_info")
    x = g.input("x", (64, 256))
    y = gc.layer_norm(x, g.param("s", np.ones(256)), g.param("b", np.zeros(256)))
    info = [k for k in gc.compile(y, threads=2, cache=False).kernels_info() if k["ops"] == ["layer_norm"]]
    assert [k["vector_width"] for k in info] == ["zmm" if has_avx512() else "ymm"]
