"""The "indirect" convolution (``codegen.conv_indirect``: yᵀ = im2col(x)ᵀ·Wᵀ with the GEMM's A read through an
indirection record from a zero-padded copy of the image): whole convolutions against the interpreter on the
implicit tests' odd geometries (strides 1-3, dilation, asymmetric and oversized padding, 1×1 images, one row or
column, stems, batches), float64, frozen weights (packed at load), fused epilogues, output-row blocks with a tail,
bitwise agreement with the transposed im2col product and across thread counts; the padded extents; and groups
falling back to "implicit"."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import codegen.conv as conv
import codegen.conv_choice as conv_choice
import codegen.conv_indirect as conv_indirect
import graphc as gc
from codegen.gemm.skinny import SKINNY_ROWS
from runtime.parallel import runtime
from tests.codegen.test_conv_implicit import CONVS, _conv_of, _graph
from tests.codegen.test_matmul import KC

ONE_GROUP = [c for c in CONVS if c[2].get("groups", 1) == 1]


def _geometry(x_shape, w_shape, attrs, dtype="float32"):
    y, _ = _graph(x_shape, w_shape, "indirect", dtype=dtype, **attrs)
    node = _conv_of(y)
    return conv.geometry(x_shape, w_shape, node.shape, node.attrs, dtype)


@pytest.mark.parametrize("x_shape, w_shape, attrs", ONE_GROUP)
def test_indirect_matches_interpreter(x_shape, w_shape, attrs):
    y, feeds = _graph(x_shape, w_shape, "indirect", **attrs)
    assert conv_choice.rule_of_thumb(_geometry(x_shape, w_shape, attrs), "indirect") == "indirect"
    gc.testing.assert_backends_agree([y], feeds, rtol=2e-5, atol=2e-6, scale_atol=True)


@pytest.mark.parametrize("x_shape, w_shape, attrs", [ONE_GROUP[2], ONE_GROUP[7], ONE_GROUP[11], ONE_GROUP[14]])
def test_indirect_float64(x_shape, w_shape, attrs):
    y, feeds = _graph(x_shape, w_shape, "indirect", dtype="float64", **attrs)
    gc.testing.assert_backends_agree([y], feeds, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("x_shape, w_shape, attrs", [ONE_GROUP[1], ONE_GROUP[2], ONE_GROUP[10]])
def test_indirect_fused_epilogue(x_shape, w_shape, attrs):
    y, feeds = _graph(x_shape, w_shape, "indirect", epilogue=True, seed=1, **attrs)
    gc.testing.assert_backends_agree([y], feeds, rtol=2e-5, atol=2e-6, scale_atol=True)


def test_frozen_weights_packed_at_load_agree_with_live_ones():
    rng = np.random.default_rng(5)
    g = gc.Graph("frozen")
    x = g.input("x", (2, 6, 15, 13))
    w = g.param("w", rng.standard_normal((40, 6, 3, 3)).astype(np.float32))
    y = gc.relu(gc.conv2d(x, w, padding=1, stride=(1, 2), algorithm="indirect"))
    feeds = {"x": rng.standard_normal((2, 6, 15, 13)).astype(np.float32)}
    live = gc.compile(y, backend="llvm")(**feeds)
    frozen = gc.compile(y, backend="llvm", freeze=True)
    assert frozen.module.packs, "the frozen weights were not packed at load"
    np.testing.assert_array_equal(frozen(**feeds), live)


def test_output_row_blocks_with_a_tail(monkeypatch):
    """yᵀ is computed in blocks of whole output rows (here 3 of 10: three blocks and a one-row tail) when the GEMM
    has several depth blocks (here 40·3·3 = 360 taps > kc); with one, in one GEMM."""
    monkeypatch.setattr(conv_indirect, "BLOCK_BYTES", 3 * 9 * 40 * 4)
    monkeypatch.setattr(conv_indirect, "BLOCK_PIXELS", 20)
    y, feeds = _graph((1, 40, 10, 9), (40, 40, 3, 3), "indirect", padding=1)
    geom = _geometry((1, 40, 10, 9), (40, 40, 3, 3), {"padding": 1})
    assert geom.kg > KC and conv_indirect.block_rows(geom, KC) == 3
    assert conv_indirect.block_rows(_geometry((1, 5, 10, 9), (40, 5, 3, 3), {"padding": 1}), KC) == 10
    gc.testing.assert_backends_agree([y], feeds, rtol=2e-5, atol=2e-6, scale_atol=True)


def _transposed_in_one_gemm(x_shape, w_shape, attrs) -> bool:
    """Whether im2col runs this geometry as the one transposed, packed GEMM the indirect path runs (more output
    positions than the unpacked matrix-vector path takes)."""
    geom = _geometry(x_shape, w_shape, attrs)
    return (geom.p > SKINNY_ROWS and geom.block_rows() == geom.ho and conv.transposed_forward(geom, "float32")
            and conv_indirect.block_rows(geom, KC) == geom.ho)


BITWISE = [c for c in ONE_GROUP if _transposed_in_one_gemm(*c)]


def test_some_geometries_compare_bitwise():
    assert len(BITWISE) >= 3


@pytest.mark.parametrize("x_shape, w_shape, attrs", BITWISE)
def test_indirect_is_bitwise_the_transposed_im2col_product(x_shape, w_shape, attrs):
    """The indirection records feed the micro-kernels the columns' values in im2col's order, so where im2col runs the
    same transposed product (yᵀ = colsᵀ·Wᵀ, one GEMM) the results are the same bits."""
    runs = {}
    for algorithm in ("indirect", "im2col"):
        y, feeds = _graph(x_shape, w_shape, algorithm, epilogue=True, seed=3, **attrs)
        runs[algorithm] = gc.compile([y], backend="llvm")(**feeds)[0]
    np.testing.assert_array_equal(runs["indirect"], runs["im2col"])


@pytest.mark.parametrize("x_shape, w_shape, attrs", [ONE_GROUP[1], ONE_GROUP[7], ONE_GROUP[14],
                                                     ((1, 40, 23, 21), (24, 40, 3, 3), {"padding": 1})])
def test_indirect_is_bitwise_equal_across_thread_counts(x_shape, w_shape, attrs):
    """Blocks' GEMMs split on the threads, or (483 pixels: at least BLOCK_PIXELS per thread, 360 taps: several
    depth blocks) whole blocks of output rows on the threads: the same bits on 1, 2 and 3 threads."""
    if not runtime():
        pytest.skip("libgomp is not installed: programs run on one thread")
    y, feeds = _graph(x_shape, w_shape, "indirect", epilogue=True, seed=4, **attrs)
    runs = [gc.compile([y], backend="llvm", threads=t)(**feeds)[0] for t in (1, 2, 3)]
    for other in runs[1:]:
        assert np.array_equal(runs[0], other)


def test_padded_extent_reaches_the_last_window_only():
    """The copy covers the top-left pads and the windows' reach, not unread bottom/right pads; without padding the
    GEMM reads x itself (no copy)."""
    geom = _geometry((1, 2, 4, 3), (3, 2, 5, 5), {"padding": 4})
    assert conv_indirect.extent(geom) == (geom.ho + 4, geom.wo + 4)
    assert conv_indirect.padded_elements(geom) == 2 * (geom.ho + 4) * (geom.wo + 4)
    plain = _geometry((1, 3, 9, 9), (4, 3, 3, 3), {"stride": 2})
    assert not conv_indirect.needs_padding(plain) and conv_indirect.padded_elements(plain) == 0
    assert conv_indirect.pitches(plain) == (9, 81)


def test_groups_and_oversized_images_fall_back_to_implicit():
    grouped = _geometry((1, 6, 9, 9), (8, 3, 5, 5), {"padding": 2, "groups": 2, "dilation": (1, 2)})
    assert not conv_indirect.applies(grouped)
    assert conv_choice.rule_of_thumb(grouped, "indirect") == "implicit"
    huge = dataclasses.replace(_geometry((1, 3, 8, 8), (4, 3, 3, 3), {"padding": 1}), c=20000, h=200, w=200)
    assert not conv_indirect.applies(huge)  # the padded image would exceed its scratch budget
    y, feeds = _graph((1, 6, 9, 9), (8, 3, 5, 5), "indirect", padding=2, groups=2)
    gc.testing.assert_backends_agree([y], feeds, rtol=2e-5, atol=2e-6, scale_atol=True)


@pytest.mark.parametrize("cpu, vector_bits, reg", [("znver3", 256, "ymm"), ("skylake-avx512", 512, "zmm")])
def test_indirect_micro_kernel_cross_compiles_for_both_vector_isas(cpu, vector_bits, reg):
    """Whatever the host: the indirect micro-kernel of each ISA's tile broadcasts A through the record's row
    addresses and runs its FMAs on that ISA's registers, with no stack traffic in the depth loop (the reason it
    carries no prefetch stream)."""
    import re

    from codegen.gemm.config import default_config
    from codegen.gemm.microkernel import microkernel
    from codegen.target import new_module
    from tests.codegen.cross import cross_asm, depth_loop

    cfg = default_config("float32", vector_bits)
    module = new_module("indirect_cross")
    fn = microkernel(module, cfg, cfg.mr, cfg.nr, indirect_a=True)
    fn.linkage = "external"
    body = cross_asm(module, cpu)[fn.name]
    assert len(re.findall(rf"vfmadd\d+ps\s+.*%{reg}", body)) >= cfg.mr * cfg.nv
    assert "vbroadcastss" in body or "{1to" in body
    if reg == "ymm":
        assert "zmm" not in body
    assert "rsp" not in depth_loop(body), "the depth loop spills"
