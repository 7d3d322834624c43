"""The ops issue 10 adds onto new graphc ops (Erf and exact GELU, InstanceNormalization, LRN, Pad reflect/edge,
ConvTranspose, Shrink, runtime Mod, opset-6 legacy attributes), each checked against onnxruntime on both
backends; refusals name the op, attribute and node."""

from __future__ import annotations

import math

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import helper  # noqa: E402
from test_model_ops import BACKENDS, make_model  # noqa: E402

import graphc as gc  # noqa: E402

RNG = np.random.default_rng(10)


def model_of(nodes, inputs: dict, outputs: list[str], inits: dict | None = None, opset: int = 18):
    """test_model_ops' ``make_model``, with each output's element type filled in by shape inference (onnxruntime
    needs it)."""
    model = make_model(nodes, inputs, outputs, inits, opset)
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    del probe.graph.output[:]  # inference then lists every node output in value_info
    inferred = {vi.name: vi for vi in onnx.shape_inference.infer_shapes(probe).graph.value_info}
    for out in model.graph.output:  # onnxruntime needs each output's element type
        if out.name in inferred:
            out.type.CopyFrom(inferred[out.name].type)
    return model


def onnxruntime(model, feeds: dict) -> list[np.ndarray]:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, feeds)


def check(model, feeds: dict, backend: str, rtol: float, atol: float = 0.0, **options) -> float:
    """graphc's outputs equal onnxruntime's within rtol/atol; returns the largest absolute difference."""
    imported = gc.onnx.import_model(model, **options)
    got = imported.compile(backend=backend)(**{k: feeds[k] for k in imported.inputs})
    worst = 0.0
    for out, want in zip(model.graph.output, onnxruntime(model, feeds)):
        assert got[out.name].dtype == want.dtype and got[out.name].shape == want.shape
        np.testing.assert_allclose(got[out.name], want, rtol=rtol, atol=atol, err_msg=out.name)
        if want.size:
            worst = max(worst, float(np.max(np.abs(got[out.name].astype(np.float64) - want))))
    return worst


def f32(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


# ---------------------------------------------------------------------------------------------- erf, GELU


@pytest.mark.parametrize("backend", BACKENDS)
def test_erf_matches_onnxruntime(backend):
    x = np.concatenate([np.linspace(-7, 7, 2001), [0.0, 0.84375, -1.25, 2.857, 6.0]]).astype(np.float32)
    model = model_of([helper.make_node("Erf", ["x"], ["y"])], {"x": x}, ["y"], opset=13)
    check(model, {"x": x}, backend, rtol=2e-7, atol=1e-7)


def _exact_gelu(x: np.ndarray) -> np.ndarray:
    x64 = x.astype(np.float64)
    return x64 * 0.5 * np.vectorize(math.erfc)(-x64 / math.sqrt(2.0))


# onnxruntime evaluates Erf and Gelu with float32-accurate arithmetic and forms 1 + erf with
# cancellation: it is compared within 1e-6 absolute, and graphc against the exact values within its own accuracy
ORT_ATOL = 1e-6


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_torch_exact_gelu_pattern(backend, dtype):
    """nn.GELU() as torch's exporters write it: Div(x, √2) → Erf → Add 1 → Mul x → Mul 0.5."""
    x = (RNG.standard_normal((4, 33)) * 3).astype(dtype)
    scalar = {name: np.array(v, dtype=dtype) for name, v in (("r2", math.sqrt(2)), ("one", 1.0), ("half", 0.5))}
    nodes = [helper.make_node("Div", ["x", "r2"], ["d"]), helper.make_node("Erf", ["d"], ["e"]),
             helper.make_node("Add", ["e", "one"], ["a"]), helper.make_node("Mul", ["x", "a"], ["m"]),
             helper.make_node("Mul", ["m", "half"], ["y"])]
    model = model_of(nodes, {"x": x}, ["y"], inits=scalar, opset=17)
    if dtype == "float32":  # onnxruntime has no float64 Erf kernel
        check(model, {"x": x}, backend, rtol=0.0, atol=ORT_ATOL, initializers="consts")
    got = gc.onnx.import_model(model, initializers="consts").compile(backend=backend)(x=x)["y"]
    # 1 + erf(z) cancels for z < 0 (as written by the exporter): absolute accuracy, a few ulps of 1·|x|
    eps = np.finfo(dtype).eps
    np.testing.assert_allclose(got, _exact_gelu(x), rtol=4 * eps, atol=4 * eps * np.abs(x).max())


@pytest.mark.parametrize("backend", BACKENDS)
def test_gelu_exact_and_tanh_match_onnxruntime(backend):
    x = (RNG.standard_normal((3, 40)) * 4).astype(np.float32)
    for attrs in ({}, {"approximate": "none"}, {"approximate": "tanh"}):
        model = model_of([helper.make_node("Gelu", ["x"], ["y"], **attrs)], {"x": x}, ["y"], opset=20)
        check(model, {"x": x}, backend, rtol=1e-6, atol=ORT_ATOL)
        if attrs.get("approximate", "none") == "none":  # graphc's fused Gelu keeps relative accuracy in the tail
            got = gc.onnx.import_model(model).compile(backend=backend)(x=x)["y"]
            np.testing.assert_allclose(got, _exact_gelu(x), rtol=4e-7)


# ---------------------------------------------------------------------------------------------- normalization, LRN


@pytest.mark.parametrize("backend", BACKENDS)
def test_instance_normalization(backend):
    x, scale, bias = f32(2, 3, 5, 4) * 3 + 1, f32(3), f32(3)
    node = helper.make_node("InstanceNormalization", ["x", "s", "b"], ["y"], epsilon=1e-3)
    model = model_of([node], {"x": x}, ["y"], inits={"s": scale, "b": bias}, opset=6)
    check(model, {"x": x}, backend, rtol=2e-5, atol=2e-6)


def _lrn(x: np.ndarray, size: int, alpha: float, beta: float, bias: float) -> np.ndarray:
    """ONNX's definition: the sum over channels max(0, c − ⌊(size−1)/2⌋) … min(C−1, c + ⌈(size−1)/2⌉)."""
    square, total = x.astype(np.float64) ** 2, np.zeros(x.shape)
    for c in range(x.shape[1]):
        total[:, c] = square[:, max(0, c - (size - 1) // 2):c + math.ceil((size - 1) / 2) + 1].sum(axis=1)
    return x / (bias + alpha / size * total) ** beta


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("size", [1, 2, 3, 4, 5])
def test_lrn(backend, size):
    """Odd sizes against onnxruntime (which only implements those), every size against the definition."""
    x = f32(2, 7, 3, 4)
    node = helper.make_node("LRN", ["x"], ["y"], size=size, alpha=0.02, beta=0.6, bias=1.5)
    model = model_of([node], {"x": x}, ["y"], opset=13)
    if size % 2:
        check(model, {"x": x}, backend, rtol=2e-6, atol=1e-7)
    got = gc.onnx.import_model(model).compile(backend=backend)(x=x)["y"]
    np.testing.assert_allclose(got, _lrn(x, size, 0.02, 0.6, 1.5), rtol=2e-6, atol=1e-7)


# ---------------------------------------------------------------------------------------------- Pad


PADS = [  # (opset, mode, pads, axes)
    (18, "reflect", [1, 2, 0, 2, 1, 3], None), (18, "edge", [2, 0, 1, 0, 3, 2], None),
    (19, "wrap", [0, 1, 2, 0, 1, 2], None), (18, "reflect", [2, 1], [1]), (11, "edge", [0, 0, 1, 0, 0, 2], None),
    (2, "reflect", [0, 1, 2, 0, 2, 3], None), (18, "reflect", [-1, 1, 0, 0, 2, 0], None),
]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("opset, mode, pads, axes", PADS)
def test_pad_modes_match_onnxruntime_and_differentiate(backend, opset, mode, pads, axes):
    x = f32(3, 4, 5)
    inputs = ["x", "pads"] + (["", "axes"] if axes else [])
    inits = {"pads": np.array(pads, dtype=np.int64)} | ({"axes": np.array(axes, dtype=np.int64)} if axes else {})
    if opset < 11:
        node, inits = helper.make_node("Pad", ["x"], ["y"], mode=mode, pads=pads), {}
    else:
        node = helper.make_node("Pad", inputs, ["y"], mode=mode)
    model = model_of([node], {"x": x}, ["y"], inits=inits, opset=opset)
    check(model, {"x": x}, backend, rtol=0.0)
    # the gradient of Σ y·w scatters every weight back to the element it copies
    imported = gc.onnx.import_model(model)
    y = imported.outputs["y"]
    weights = RNG.standard_normal(y.shape).astype(np.float32)
    (dx,) = gc.grad(gc.sum(y * weights), [imported.graph.inputs["x"]])
    got = gc.compile(dx, backend=backend)(x=x)
    probe = np.zeros_like(x)
    want = np.zeros_like(x)
    for idx in np.ndindex(x.shape):  # d y / d x[idx] by pushing a unit through onnxruntime (y is linear in x)
        probe[idx] = 1.0
        want[idx] = np.sum(onnxruntime(model, {"x": probe})[0] * weights)
        probe[idx] = 0.0
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------------------------------- ConvTranspose


CONV_T = [  # (x shape, w shape, attributes)
    ((1, 2, 4, 3), (2, 3, 3, 3), {}),
    ((2, 4, 3, 4), (4, 2, 3, 2), {"group": 2, "strides": [2, 3], "pads": [1, 0, 0, 1]}),
    ((1, 3, 4, 4), (3, 2, 2, 3), {"strides": [2, 2], "dilations": [2, 1], "output_padding": [1, 1]}),
    ((1, 2, 3, 3), (2, 2, 3, 3), {"strides": [3, 2], "output_shape": [10, 8]}),
    ((1, 2, 3, 3), (2, 2, 3, 3), {"strides": [2, 2], "auto_pad": "SAME_UPPER"}),
    ((1, 2, 3, 3), (2, 2, 3, 3), {"strides": [2, 2], "auto_pad": "SAME_LOWER"}),
    ((1, 2, 3, 3), (2, 2, 2, 2), {"strides": [3, 3], "output_padding": [2, 1]}),
    ((1, 6, 5), (6, 1, 3), {"group": 6, "strides": [2], "pads": [1, 2]}),
]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("xs, ws, attrs", CONV_T, ids=[str(c[2]) for c in CONV_T])
@pytest.mark.parametrize("bias", [False, True])
def test_conv_transpose_matches_onnxruntime(backend, xs, ws, attrs, bias):
    x, w = f32(*xs), f32(*ws)
    inits = {"w": w} | ({"b": f32(ws[1] * attrs.get("group", 1))} if bias else {})
    node = helper.make_node("ConvTranspose", ["x", "w"] + (["b"] if bias else []), ["y"], **attrs)
    check(model_of([node], {"x": x}, ["y"], inits=inits, opset=11), {"x": x}, backend, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("xs, ws, attrs", CONV_T[1:4], ids=[str(c[2]) for c in CONV_T[1:4]])
def test_conv_transpose_gradients(backend, xs, ws, attrs):
    """d(Σ y·v)/dx and /dw equal the same sums through onnxruntime with unit probes (y is linear in each)."""
    x, w = f32(*xs), f32(*ws)
    node = helper.make_node("ConvTranspose", ["x", "w"], ["y"], **attrs)
    model = model_of([node], {"x": x, "w": w}, ["y"], opset=11)
    imported = gc.onnx.import_model(model)
    y = imported.outputs["y"]
    v = RNG.standard_normal(y.shape).astype(np.float32)
    grads = gc.grad(gc.sum(y * v), [imported.graph.inputs["x"], imported.graph.inputs["w"]])
    got = gc.compile(grads, backend=backend)(x=x, w=w)
    for k, (name, value) in enumerate((("x", x), ("w", w))):
        want = np.zeros_like(value)
        for idx in np.ndindex(value.shape):
            probe = np.zeros_like(value)
            probe[idx] = 1.0
            feeds = {"x": x, "w": w} | {name: probe}
            want[idx] = np.sum(onnxruntime(model, feeds)[0] * v)
        np.testing.assert_allclose(got[k], want, rtol=1e-4, atol=1e-4, err_msg=name)
