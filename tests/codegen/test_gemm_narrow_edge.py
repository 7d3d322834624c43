"""Narrow edge vectors (``codegen.gemm.microkernel.vector_lanes``): with 512-bit vectors a tile's last vector that
holds at most half a vector's columns is a 256-bit one. Each element is still the same chain of FMAs, so a GEMM
whose last panel is narrow gives bitwise the first columns of the same GEMM over whole vectors; the 512-bit
micro-kernel of a 4-column edge runs 256-bit FMAs, the 32-column one 512-bit FMAs, and AVX2 keeps whole vectors."""

from __future__ import annotations

import re

import numpy as np
import pytest

from codegen.gemm.config import default_config
from codegen.gemm.driver import emit_gemm
from codegen.gemm.microkernel import microkernel, vector_lanes
from codegen.gemm.store_epilogue import StoreEpilogue
from codegen.target import Jit, new_module
from tests.codegen.cross import cross_asm, depth_loop
from tests.codegen.test_gemm_threads import _run
from tests.codegen.test_matmul import AVX512_F32

AVX512_F64 = default_config("float64", 512)
AVX2_F32 = default_config("float32", 256)


def test_vector_lanes():
    assert vector_lanes(AVX512_F32, 4) == [8]
    assert vector_lanes(AVX512_F32, 8) == [8]
    assert vector_lanes(AVX512_F32, 9) == [16]
    assert vector_lanes(AVX512_F32, 17) == [16, 8]
    assert vector_lanes(AVX512_F32, 25) == [16, 16]
    assert vector_lanes(AVX512_F32, 32) == [16, 16]
    assert vector_lanes(AVX512_F64, 3) == [4]
    assert vector_lanes(AVX512_F64, 13) == [8, 8]
    assert vector_lanes(AVX2_F32, 4) == [8]  # 256-bit vectors: a half vector would cost the same FMA cycles
    assert vector_lanes(AVX2_F32, 12) == [8, 8]


# (m, n, k, dtype, options): n leaves a narrow last panel (n % 32 in 1..8, or 17..24)
CASES = [
    (196, 196, 70, "float32", {}),  # ResNet's 14×14 pointwise layers: 6·32 + 4 columns
    (13, 49, 300, "float32", {}),  # 32 + 17: a full vector and a narrow one, two depth blocks
    (9, 24, 5, "float32", dict(accumulate=True)),
    (21, 40, 33, "float32", dict(alpha=-0.25, accumulate=True)),
    (10, 19, 20, "float64", {}),  # 8 + 8 + 3 doubles
]
EPILOGUE = StoreEpilogue.of(("add", "row"), ("residual",), ("max", 0.0))


def _padded(n: int) -> int:
    return -(-n // AVX512_F32.nr) * AVX512_F32.nr


@pytest.fixture(scope="module")
def jit() -> Jit:
    module = new_module("test_gemm_narrow_edge")
    for i, (m, n, k, dtype, opts) in enumerate(CASES):
        cfg = AVX512_F32 if dtype == "float32" else AVX512_F64
        for width in (n, _padded(n)):
            emit_gemm(module, f"g{i}_{width}", m, width, k, config=cfg, **dict(opts, dtype=dtype))
    for width in (196, 224):
        emit_gemm(module, f"e_{width}", 16, width, 40, config=AVX512_F32, epilogue=EPILOGUE)
    return Jit(str(module), name="test_gemm_narrow_edge", cache=False)


@pytest.mark.parametrize("index", range(len(CASES)), ids=[f"{m}x{n}x{k}-{d}" for m, n, k, d, _ in CASES])
def test_narrow_edge_is_bitwise_the_whole_vector_result(jit, index, rng):
    m, n, k, dtype, opts = CASES[index]
    opts = dict(opts, dtype=dtype)
    wide = _padded(n)
    a = rng.standard_normal((k, m) if opts.get("trans_a") else (m, k)).astype(dtype)
    b = rng.standard_normal((k, wide)).astype(dtype)
    c0 = rng.standard_normal((m, wide)).astype(dtype)
    got = _run(jit, f"g{index}_{n}", m, n, k, 1, opts, 1, a, np.ascontiguousarray(b[:, :n]),
               np.ascontiguousarray(c0[:, :n]))
    whole = _run(jit, f"g{index}_{wide}", m, wide, k, 1, opts, 1, a, b, c0)
    np.testing.assert_array_equal(got, whole[:, :n])
    want = (opts.get("alpha") or 1.0) * (a.astype(np.float64) @ b[:, :n]) + (c0[:, :n] if opts.get("accumulate") else 0)
    np.testing.assert_allclose(got, want, rtol=1e-4 if dtype == "float32" else 1e-12, atol=1e-4)


def test_narrow_edge_with_store_epilogue(jit, rng):
    """bias (per row), residual, relu applied on a narrow last vector's registers."""
    import ctypes

    from codegen.gemm.blocking import workspace_bytes

    m, k = 16, 40
    a = rng.standard_normal((m, k)).astype("f4")
    b = rng.standard_normal((k, 224)).astype("f4")
    bias = rng.standard_normal(m).astype("f4")
    residual = rng.standard_normal((m, 224)).astype("f4")
    sig = ctypes.CFUNCTYPE(None, *[ctypes.c_void_p] * 6)
    results = {}
    for width in (196, 224):
        bb, rr = np.ascontiguousarray(b[:, :width]), np.ascontiguousarray(residual[:, :width])
        c = np.full((m, width), np.nan, "f4")
        work = np.zeros(workspace_bytes(m, width, k) + 64, np.uint8)
        base = -work.ctypes.data % 64
        sig(jit.address(f"e_{width}"))(a.ctypes.data, bb.ctypes.data, c.ctypes.data, work[base:].ctypes.data,
                                       bias.ctypes.data, rr.ctypes.data)
        results[width] = c
    np.testing.assert_array_equal(results[196], results[224][:, :196])
    want = np.maximum(a.astype(np.float64) @ b[:, :196] + bias[:, None] + residual[:, :196], 0)
    np.testing.assert_allclose(results[196], want, rtol=1e-4, atol=1e-4)


def _fma_registers(cfg, cols: int, cpu: str) -> list[str]:
    """The vector register class (xmm / ymm / zmm) of each FMA in the depth loop of a full-height micro-kernel."""
    module = new_module("narrow_asm")
    fn = microkernel(module, cfg, cfg.mr, cols)
    fn.linkage = "external"
    loop = depth_loop(cross_asm(module, cpu)[fn.name])
    return re.findall(r"vfmadd\w+\s+[^\n]*%([xyz]mm)\d+\n", loop)


def test_avx512_edge_of_four_columns_runs_256_bit_fmas():
    edge = _fma_registers(AVX512_F32, 4, "skylake-avx512")
    assert edge and set(edge) == {"ymm"} and len(edge) % AVX512_F32.mr == 0
    full = _fma_registers(AVX512_F32, AVX512_F32.nr, "skylake-avx512")
    assert set(full) == {"zmm"} and len(full) % (2 * AVX512_F32.mr) == 0
    mixed = _fma_registers(AVX512_F32, 20, "skylake-avx512")  # 16 + 4 columns: one of each per row
    assert mixed.count("zmm") == mixed.count("ymm") > 0


def test_avx2_edge_keeps_whole_vectors():
    edge = _fma_registers(AVX2_F32, 4, "znver3")
    assert edge and set(edge) == {"ymm"} and len(edge) % AVX2_F32.mr == 0
