"""``emit_gemm(epilogue=...)``: per-axis adds, subtractions and products (bias, inference batch norm), a residual and
relu/clip applied by the micro-kernels on registers at the last depth block's store. Bitwise against "plain GEMM,
then the chain in NumPy" (NumPy's rounding, step by step) on partial tiles, several depth blocks, batches (row
vectors per batch item), transposes, the matrix-vector path and an empty depth (which run the chain as a pass), two
threads, float64; NaN stays NaN through relu; every operand is read flush against an inaccessible page (no read past
it) and no store leaves C."""

from __future__ import annotations

import ctypes

import numpy as np
import pytest

from codegen.gemm.blocking import workspace_bytes
from codegen.gemm.driver import emit_gemm
from codegen.gemm.store_epilogue import StoreEpilogue
from codegen.target import Jit, new_module
from runtime.parallel import runtime
from tests.codegen.test_matmul import KC, MR, NR, _guarded, _operands

RELU = StoreEpilogue.of(("add", "row"), ("residual",), ("max", 0))
BN = StoreEpilogue.of(("add", "col"), ("sub", "col"), ("mul", "col"), ("add", "col"), ("max", 0))  # dense+BN+relu
CASES = [  # (m, n, k, batch, epilogue, options)
    (2 * MR + 3, 2 * NR + 5, 3 * KC + 7, 1, RELU, {}),  # partial row and column tiles, four depth blocks
    (256, 196, 1024, 1, RELU, {}),  # ResNet-50's 1024 → 256 1×1 layer at 14×14 (as W · x)
    (61, 97, 45, 1, StoreEpilogue.of(("add", "col"), ("max", 0), ("min", 6)), {}),  # a dense layer with relu6
    (37, 45, 61, 3, StoreEpilogue.of(("add", "row"),), {}),  # a grouped conv's groups: row vectors advance by m
    (33, 70, 300, 2, StoreEpilogue.of(("residual",), ("add", "col")), dict(trans_b=True)),
    (40, 64, 20, 1, StoreEpilogue.of(("max", -0.5),), dict(trans_a=True, accumulate=True)),
    (2, 300, 40, 1, StoreEpilogue.of(("add", "col"), ("residual",), ("max", 0)), {}),  # matrix-vector path
    (5, 7, 0, 1, StoreEpilogue.of(("add", "row"), ("max", 0)), {}),  # empty depth: C = chain(0)
    (29, 50, 300, 1, RELU, dict(dtype="float64")),
    (256, 512, 784, 1, BN, {}),  # the peer harness's W3 layer: bias, batch norm (mean, scale, shift), relu
    (3 * MR + 1, NR + 7, 90, 2, StoreEpilogue.of(("mul", "row"), ("sub", "row"), ("residual",), ("min", 1.5)), {}),
]
SIG = {n: ctypes.CFUNCTYPE(None, *[ctypes.c_void_p] * n) for n in range(4, 11)}


@pytest.fixture(scope="module")
def jit() -> Jit:
    if not runtime():  # loads the parallel runtime the two-thread GEMMs call
        pytest.skip("libgomp is not installed")
    module = new_module("test_gemm_store_epilogue")
    for i, (m, n, k, batch, epi, opts) in enumerate(CASES):
        for threads in (1, 2):
            emit_gemm(module, f"e{i}_t{threads}", m, n, k, batch=batch, threads=threads, epilogue=epi, **opts)
        emit_gemm(module, f"plain{i}", m, n, k, batch=batch, **opts)
    return Jit(str(module), name="test_gemm_store_epilogue", cache=False)


def _chain(epi: StoreEpilogue, c: np.ndarray, operands: list[np.ndarray]) -> np.ndarray:
    """The steps in NumPy, in the kernel's dtype and order (row vectors (batch, m), column vectors (n,))."""
    v = c.copy()
    loaded = iter(operands)
    for step in epi.steps:
        if step[0] == "residual":
            v = v + next(loaded)
        elif step[0] in ("add", "sub", "mul"):
            a = next(loaded)
            a = a[:, :, None] if step[1] == "row" else a
            v = v + a if step[0] == "add" else v - a if step[0] == "sub" else v * a
        else:
            bound = np.asarray(step[1], v.dtype)
            v = np.maximum(v, bound) if step[0] == "max" else np.minimum(v, bound)
    return v


def _call(jit: Jit, name: str, m: int, n: int, k: int, batch: int, threads: int, a: np.ndarray, b: np.ndarray,
          c0: np.ndarray, operands: list[np.ndarray], dtype: str) -> np.ndarray:
    nbytes = workspace_bytes(m, n, k, dtype, threads=threads, batch=batch)
    workspace, region = _guarded(np.zeros(max(nbytes, 64), np.uint8), True)
    guarded = [_guarded(x, True) for x in operands]  # a read past a bias or the residual faults
    regions = [r for _, r in guarded]
    pad = 64
    buf = np.full(c0.size + 2 * pad, 7.0, dtype)
    buf[pad:pad + c0.size] = c0.ravel()
    args = [a.ctypes.data, b.ctypes.data, buf[pad:].ctypes.data, workspace.ctypes.data]
    SIG[4 + len(operands)](jit.address(name))(*args, *(x.ctypes.data for x, _ in guarded))
    assert np.all(buf[:pad] == 7.0) and np.all(buf[pad + c0.size:] == 7.0), "a store outside C"
    del workspace, args, guarded
    for r in [region, *regions]:
        r.close()
    return buf[pad:pad + c0.size].reshape(c0.shape).copy()


def _inputs(index: int, rng: np.random.Generator):
    m, n, k, batch, epi, opts = CASES[index]
    dtype = opts.get("dtype", "float32")
    pairs = [_operands(m, n, k, opts, rng) for _ in range(batch)]
    a, b = np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])
    c0 = rng.standard_normal((batch, m, n)).astype(dtype)
    operands = []
    for step in epi.reads():
        if step[0] == "residual":
            res = rng.standard_normal((batch, m, n)).astype(dtype)
            res[0, 0, :3] = np.nan  # NaN passes through relu and clip as NaN
            operands.append(res)
        else:
            operands.append(rng.standard_normal((batch, m) if step[1] == "row" else (n,)).astype(dtype))
    return a, b, c0, operands, dtype


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("index", range(len(CASES)), ids=[f"{c[0]}x{c[1]}x{c[2]}b{c[3]}-{c[4].tag()}"
                                                          for c in CASES])
def test_store_epilogue_is_the_chain_after_the_gemm(jit, index, threads, rng):
    m, n, k, batch, epi, opts = CASES[index]
    a, b, c0, operands, dtype = _inputs(index, rng)
    start = c0 if opts.get("accumulate") else np.zeros_like(c0)
    got = _call(jit, f"e{index}_t{threads}", m, n, k, batch, threads, a, b, start, operands, dtype)
    plain = _call(jit, f"plain{index}", m, n, k, batch, 1, a, b, start, [], dtype)
    want = _chain(epi, plain, operands)
    np.testing.assert_array_equal(got, want)
    if ("residual",) in epi.steps:
        assert np.isnan(got[0, 0, :3]).all()
    # and the plain GEMM is right (so the comparison above is not between two wrong answers)
    a_op = np.swapaxes(a, 1, 2) if opts.get("trans_a") else a
    b_op = np.swapaxes(b, 1, 2) if opts.get("trans_b") else b
    exact = a_op.astype(np.float64) @ b_op.astype(np.float64) + start
    np.testing.assert_allclose(plain, exact, rtol=1e-4 if dtype == "float32" else 1e-12,
                               atol=1e-3 if dtype == "float32" else 1e-10)


def test_epilogue_micro_kernels_are_named_and_shared():
    module = new_module("names")
    emit_gemm(module, "one", 64, 64, 64, epilogue=RELU)
    emit_gemm(module, "two", 48, 80, 300, epilogue=RELU)
    kernels = [f.name for f in module.functions if ".uk" in f.name]
    assert kernels and all(name.endswith("e" + RELU.tag()) for name in kernels)
    assert len(kernels) == len(set(kernels))
    assert RELU.tag() == "arRmax0" and BN.tag() == "acscmcacmax0"


@pytest.mark.parametrize("steps, message", [
    ((("max", "zero"),), "one number"),
    ((("scale", 2.0),), "unknown"),
    ((("add", "diagonal"),), "add step"),
    ((("residual",), ("residual",)), "at most one residual"),
    (tuple(("mul", "col") for _ in range(7)), "operands"),
])
def test_bad_chains_are_refused(steps, message):
    with pytest.raises(ValueError, match=message):
        StoreEpilogue.of(*steps)


@pytest.mark.parametrize("chain", [RELU, BN], ids=["bias_residual_relu", "bias_batchnorm_relu"])
@pytest.mark.parametrize("cpu, vector_bits, reg", [("znver3", 256, "ymm"), ("skylake-avx512", 512, "zmm")])
def test_epilogue_micro_kernel_cross_compiles_for_both_vector_isas(cpu, vector_bits, reg, chain):
    """Whatever the host: each ISA's epilogue micro-kernel adds the bias and the residual and takes the relu on
    that ISA's registers — one vmaxps per accumulator, no NaN-check blends — and keeps its depth loop off the
    stack."""
    import re

    from codegen.gemm.config import default_config
    from codegen.gemm.microkernel import microkernel
    from tests.codegen.cross import cross_asm, depth_loop

    cfg = default_config("float32", vector_bits)
    module = new_module("epilogue_cross")
    fn = microkernel(module, cfg, cfg.mr, cfg.nr, epilogue=chain)
    fn.linkage = "external"
    body = cross_asm(module, cpu)[fn.name]
    tile = cfg.mr * cfg.nv
    assert len(re.findall(rf"vfmadd\d+ps\s+.*%{reg}", body)) >= tile
    assert len(re.findall(rf"vmaxps\s+.*%{reg}", body)) >= tile  # relu: one per accumulator
    assert "blend" not in body and "vcmp" not in body
    if reg == "ymm":
        assert "zmm" not in body
    assert "rsp" not in depth_loop(body), "the depth loop spills"
