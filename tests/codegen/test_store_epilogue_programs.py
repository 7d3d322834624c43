"""Programs whose conv / matmul epilogue runs on the GEMM's registers (``Epilogue.store_form`` →
``codegen.gemm.store_epilogue``): a residual block's bias + add + relu on every GEMM conv algorithm, grouped convs,
dense layers with relu and relu6, batches of one and many rows, two threads — against the NumPy interpreter and
bitwise against the same program with the epilogue as a separate pass; the chains it does not take still run as a
pass; NaN in a residual stays NaN."""

from __future__ import annotations

import numpy as np
import pytest

import graphc as gc
from codegen.epilogue import store_epilogues_enabled

TAG = "earRmax0"  # the epilogue micro-kernels' suffix for bias (a row vector), residual, relu


def _programs(outputs: dict, monkeypatch, **options):
    """(store-epilogue program, pass program, interpreter)."""
    monkeypatch.setenv("GRAPHC_STORE_EPILOGUE", "1")
    register = gc.compile(outputs, backend="llvm", **options)
    monkeypatch.setenv("GRAPHC_STORE_EPILOGUE", "0")
    separate = gc.compile(outputs, backend="llvm", **options)
    monkeypatch.setenv("GRAPHC_STORE_EPILOGUE", "1")
    return register, separate, gc.compile(outputs, backend="numpy")


def _check(outputs: dict, feeds: dict, monkeypatch, tag: str | None, exact: bool = True, **options) -> dict:
    """Run the program with the epilogue on the GEMM's registers, as a pass, and interpreted; ``exact``: the first
    two agree bitwise (chains of adds and bounds; a pass may contract a product and a sum into one FMA)."""
    register, separate, interpreter = _programs(outputs, monkeypatch, **options)
    if tag is not None:
        assert tag in register.llvm_ir() and tag not in separate.llvm_ir()
    got, alone, want = register(**feeds), separate(**feeds), interpreter(**feeds)
    for key in want:
        if exact:
            np.testing.assert_array_equal(got[key], alone[key], err_msg=key)  # the pass's rounding, exactly
        scale = max(1.0, float(np.nanmax(np.abs(want[key]))))
        np.testing.assert_allclose(got[key], want[key], rtol=2e-5, atol=2e-5 * scale, err_msg=key)
    return got


def _residual_block(rng, n, c, o, hw, kernel, algorithm, groups=1, padding=0, stride=1):
    g = gc.Graph("block")
    x = g.input("x", (n, c, hw, hw))
    w = g.param("w", (rng.standard_normal((o, c // groups, kernel, kernel)) * 0.1).astype(np.float32))
    b = g.param("b", rng.standard_normal(o).astype(np.float32))
    y0 = gc.conv2d(x, w, b, padding=padding, stride=stride, groups=groups, algorithm=algorithm)
    r = g.input("r", y0.shape)
    y = gc.relu(y0 + r)
    feeds = {"x": rng.standard_normal(x.shape).astype(np.float32),
             "r": rng.standard_normal(y0.shape).astype(np.float32)}
    return y, feeds


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("n, c, o, hw, kernel, algorithm, groups, padding", [
    (2, 40, 70, 10, 1, "pointwise", 1, 0),  # y = W · x in row blocks, odd sizes: partial tiles
    (1, 300, 24, 8, 1, "pointwise", 1, 0),  # two depth blocks: partial sums before the final store
    (1, 16, 40, 12, 3, "implicit", 1, 1),
    (3, 12, 20, 10, 3, "im2col", 1, 1),     # one block of rows: the GEMM writes y itself
    (1, 16, 24, 8, 3, "implicit", 2, 1),    # two groups: the bias advances by the group's channels
])
def test_conv_residual_relu_on_registers(monkeypatch, rng, threads, n, c, o, hw, kernel, algorithm, groups, padding):
    y, feeds = _residual_block(rng, n, c, o, hw, kernel, algorithm, groups, padding)
    _check({"y": y}, feeds, monkeypatch, TAG, threads=threads)


def test_frozen_conv_residual_relu(monkeypatch, rng):
    y, feeds = _residual_block(rng, 1, 64, 128, 14, 1, "auto")
    _check({"y": y}, feeds, monkeypatch, TAG, freeze=True)


def test_nan_in_the_residual_stays_nan(monkeypatch, rng):
    y, feeds = _residual_block(rng, 1, 8, 16, 8, 1, "pointwise")
    feeds["r"][0, 3, 2, 1] = np.nan  # (8×8 pixels: y = W · x, not transposed)
    got = _check({"y": y}, feeds, monkeypatch, TAG)
    assert np.isnan(got["y"][0, 3, 2, 1]) and np.isnan(got["y"]).sum() == 1


@pytest.mark.parametrize("rows", [1, 2, 37])  # 1 and 2 rows: the matrix-vector path, its chain as a pass
@pytest.mark.parametrize("activation", ["relu", "relu6"])
def test_dense_bias_activation_on_registers(monkeypatch, rng, rows, activation):
    g = gc.Graph("dense")
    x = g.input("x", (rows, 70))
    w = g.param("w", (rng.standard_normal((70, 45)) * 0.3).astype(np.float32))
    b = g.param("b", rng.standard_normal(45).astype(np.float32))
    z = gc.matmul(x, w) + b
    y = gc.relu(z) if activation == "relu" else gc.clip(z, lo=0.0, hi=6.0)
    feeds = {"x": (rng.standard_normal((rows, 70)) * 3).astype(np.float32)}
    tag = "eacmax0" if activation == "relu" else "eacmax0min6"
    _check({"y": y}, feeds, monkeypatch, tag if rows > 2 else None)


@pytest.mark.parametrize("rows", [2, 64])
def test_dense_batch_norm_relu_on_registers(monkeypatch, rng, rows):
    """The peer harness's W3 layer, unfrozen: bias, inference batch norm (x − mean)·scale + β as per-column steps
    on the registers (scale computed by its own small kernel), relu."""
    g = gc.Graph("dense_bn")
    x = g.input("x", (rows, 96))
    w = g.param("w", (rng.standard_normal((96, 80)) * 0.2).astype(np.float32))
    b = g.param("b", rng.standard_normal(80).astype(np.float32))
    stats = [g.param(name, a.astype(np.float32)) for name, a in
             (("gamma", rng.random(80) + 0.5), ("beta", rng.standard_normal(80)), ("mean", rng.standard_normal(80)),
              ("var", rng.random(80) + 0.2))]
    y = gc.relu(gc.batch_norm(gc.matmul(x, w) + b, *stats, training=False, eps=1e-5))
    feeds = {"x": rng.standard_normal((rows, 96)).astype(np.float32)}
    _check({"y": y}, feeds, monkeypatch, "eacscmcacmax0" if rows > 2 else None, exact=False)


def test_cached_programs_show_the_ir_they_were_compiled_under(monkeypatch, rng, tmp_path):
    """A program whose object code comes from the cache generates its IR only when inspected: under the switches
    it was compiled with, not the environment of that moment."""
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path))
    y, feeds = _residual_block(rng, 1, 8, 16, 8, 1, "pointwise")
    for value in ("1", "0"):
        monkeypatch.setenv("GRAPHC_STORE_EPILOGUE", value)
        gc.compile({"y": y}, backend="llvm")  # fills the cache
    programs = {}
    for value in ("1", "0"):
        monkeypatch.setenv("GRAPHC_STORE_EPILOGUE", value)
        programs[value] = gc.compile({"y": y}, backend="llvm")  # object code from the cache
    monkeypatch.setenv("GRAPHC_STORE_EPILOGUE", "1")
    assert TAG in programs["1"].llvm_ir() and TAG not in programs["0"].llvm_ir()
    np.testing.assert_array_equal(programs["1"](**feeds)["y"], programs["0"](**feeds)["y"])


def test_the_switch_reads_the_environment(monkeypatch):
    for value, on in (("0", False), ("off", False), ("1", True), ("", True)):
        monkeypatch.setenv("GRAPHC_STORE_EPILOGUE", value)
        assert store_epilogues_enabled() is on


def test_chains_it_does_not_take_still_run_as_a_pass(monkeypatch, rng):
    g = gc.Graph("other")
    x = g.input("x", (2, 8, 6, 6))
    w = g.param("w", rng.standard_normal((16, 8, 1, 1)).astype(np.float32))
    s = g.param("s", rng.standard_normal((16, 1, 1)).astype(np.float32))
    y0 = gc.conv2d(x, w, algorithm="pointwise")
    scaled = gc.tanh(y0 * s)  # a per-channel product and tanh: not store-epilogue steps
    both = gc.relu(y0)        # y0 itself is an output too: the raw product must be stored
    feeds = {"x": rng.standard_normal((2, 8, 6, 6)).astype(np.float32)}
    register = _check({"scaled": scaled, "both": both, "y0": y0}, feeds, monkeypatch, None)
    assert register["both"].shape == (2, 16, 6, 6)
    program = gc.compile({"scaled": scaled}, backend="llvm")
    assert ".uk" in program.llvm_ir() and ".store_" not in program.llvm_ir()
