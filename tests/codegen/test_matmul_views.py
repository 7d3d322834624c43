"""Views folded into GEMM operands (``passes.fuse`` rule 4, ``ops.views``): attention's head split/merge chains,
strided slices and batch-axis permutations are read in place through leading dimensions and batch strides — never
materialized — and every folded kernel agrees with the interpreter."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import graphc as gc
from ops.views import gemm_operand, reshape_strides


def _kernel_ops(prog) -> list[list[str]]:
    return [list(info["ops"]) for info in prog.kernels_info()]


def _agree(y, feeds, rtol=1e-5):
    got = gc.compile(y, backend="llvm")(**feeds)
    want = gc.compile(y, backend="numpy")(**feeds)
    np.testing.assert_allclose(got, want, rtol=rtol, atol=1e-5)
    return gc.compile(y, backend="llvm")


def test_attention_head_split_is_read_in_place(rng):
    """q, k, v sliced out of one (B, N, 3, H, D) projection and permuted to (B, H, N, D): one GEMM kernel each."""
    b, n, h, d = 2, 7, 3, 5
    g = gc.Graph("attn")
    qkv = g.input("qkv", (b, n, 3, h, d))
    q = qkv[:, :, 0].transpose(0, 2, 1, 3)
    k = qkv[:, :, 1].transpose(0, 2, 3, 1)
    v = qkv[:, :, 2].transpose(0, 2, 1, 3)
    y = gc.matmul(gc.softmax(gc.matmul(q, k), axis=-1), v)
    prog = _agree(y, {"qkv": rng.standard_normal((b, n, 3, h, d)).astype(np.float32)})
    ops = _kernel_ops(prog)
    assert ops == [["slice", "transpose", "slice", "transpose", "matmul"], ["softmax"],
                   ["slice", "transpose", "matmul"]], ops
    assert "views read or written in place by the GEMM" in "\n".join(prog.plan.report["fusion"])


def test_head_merge_reshape_folds_when_contiguous(rng):
    """(B, H, N, D) → transpose → (B, N, H, D) → reshape (B·N, H·D) needs a copy (the reshape merges axes that
    are not contiguous): it is materialized once, and still right."""
    g = gc.Graph("merge")
    x = g.input("x", (2, 3, 4, 5))
    w = g.input("w", (15, 6))
    y = gc.matmul(x.transpose(0, 2, 1, 3).reshape((8, 15)), w)
    _agree(y, {"x": rng.standard_normal((2, 3, 4, 5)).astype(np.float32),
               "w": rng.standard_normal((15, 6)).astype(np.float32)})


@pytest.mark.parametrize("b, h, n, d", [(2, 3, 7, 5), (1, 4, 2, 8), (3, 2, 1, 4), (2, 2, 33, 17)])
def test_head_merge_is_written_in_place(b, h, n, d, rng):
    """attn @ v (B, H, N, D) → transpose (B, N, H, D) → reshape (B, N, H·D) @ W: the GEMM writes C through the
    transpose's strides, the reshape is a view, nothing is copied."""
    g = gc.Graph("merge_out")
    attn, v = g.input("attn", (b, h, n, n)), g.input("v", (b, h, n, d))
    w = g.input("w", (h * d, 6))
    y = gc.matmul(gc.matmul(attn, v).transpose(0, 2, 1, 3).reshape((b, n, h * d)), w)
    feeds = {"attn": rng.standard_normal((b, h, n, n)).astype(np.float32),
             "v": rng.standard_normal((b, h, n, d)).astype(np.float32),
             "w": rng.standard_normal((h * d, 6)).astype(np.float32)}
    prog = _agree(y, feeds)
    assert all("transpose" not in ops or "matmul" in ops for ops in _kernel_ops(prog)), _kernel_ops(prog)


@pytest.mark.parametrize("shape, perm", [((2, 3, 4), (0, 2, 1)), ((1, 4, 5, 8), (0, 3, 1, 2)),
                                         ((2, 3, 5, 8), (0, 3, 1, 2)), ((3, 1, 4), (0, 2, 1)),
                                         ((2, 4, 1, 8), (3, 0, 1, 2))])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_result_written_column_major(shape, perm, dtype, rng):
    """A transpose moving C's last axis (NHWC → NCHW after a channels-last dense layer): the GEMM computes
    Cᵀ = Bᵀ·Aᵀ straight into the transpose's buffer."""
    g = gc.Graph("colmajor")
    a, w = g.input("a", shape, dtype), g.input("w", (shape[-1], 6), dtype)
    y = gc.matmul(a, w).transpose(*perm) + 1.0
    feeds = {"a": rng.standard_normal(shape).astype(dtype), "w": rng.standard_normal((shape[-1], 6)).astype(dtype)}
    prog = _agree(y, feeds, rtol=1e-5 if dtype == "float32" else 1e-12)
    assert not any(ops == ["transpose"] for ops in _kernel_ops(prog)), _kernel_ops(prog)


@pytest.mark.parametrize("perm", [(0, 1, 2, 3), (1, 0, 2, 3), (2, 0, 1, 3), (1, 2, 0, 3), (0, 1, 3, 2),
                                  (1, 0, 3, 2), (3, 1, 2, 0), (0, 2, 1, 3), (2, 3, 0, 1)])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_permuted_operands_match(perm, dtype, rng):
    shape = (3, 4, 5, 6)
    g = gc.Graph("perm")
    x = g.input("x", shape, dtype)
    xp = x.transpose(*perm)
    other = g.input("w", (xp.shape[-1], 7), dtype)
    y = gc.matmul(xp, other)
    feeds = {"x": rng.standard_normal(shape).astype(dtype), "w": rng.standard_normal(other.shape).astype(dtype)}
    prog = _agree(y, feeds, rtol=1e-5 if dtype == "float32" else 1e-12)
    folds = perm[-1] in (2, 3) and perm[-2] in (2, 3) or perm[-1] == 3 or perm[-2] == 3
    assert (["transpose"] not in _kernel_ops(prog)) == folds


def test_strided_slices_and_right_operand_views(rng):
    g = gc.Graph("slices")
    a = g.input("a", (6, 9))
    b = g.input("b", (4, 10, 8))
    y = gc.matmul(a[::2, 1:], b[:, ::-1][:, 1:, :].transpose(0, 2, 1)).sum()
    # b[:, ::-1] walks backwards (negative stride): not a GEMM layout, so that slice is materialized
    x = gc.matmul(a[1:5, ::3], b[1, :3, 2:])
    feeds = {"a": rng.standard_normal((6, 9)).astype(np.float32),
             "b": rng.standard_normal((4, 10, 8)).astype(np.float32)}
    _agree(y, feeds)
    _agree(x, feeds)


def test_operand_views_with_epilogue_and_broadcast_batch(rng):
    g = gc.Graph("epi")
    x = g.input("x", (2, 5, 3, 4))
    w = g.input("w", (4, 6))
    bias = g.input("bias", (6,))
    y = gc.relu(gc.matmul(x.transpose(0, 2, 1, 3), w) + bias)
    prog = _agree(y, {"x": rng.standard_normal((2, 5, 3, 4)).astype(np.float32),
                      "w": rng.standard_normal((4, 6)).astype(np.float32),
                      "bias": rng.standard_normal(6).astype(np.float32)})
    assert len(prog.kernels_info()) == 1


def test_gradients_through_folded_views(rng):
    """Training: the backward GEMMs read transposed/permuted views too; float64 step vs interpreter."""
    g = gc.Graph("train")
    x = g.input("x", (2, 4, 3, 5), "float64")
    w = g.param("w", rng.standard_normal((5, 3)), dtype="float64")
    loss = gc.sum(gc.matmul(x.transpose(0, 2, 1, 3), w) ** 2)
    grad = gc.grad(loss, [w])[0]
    feeds = {"x": rng.standard_normal((2, 4, 3, 5))}
    np.testing.assert_allclose(gc.compile(grad, backend="llvm")(**feeds),
                               gc.compile(grad, backend="numpy")(**feeds), rtol=1e-12)


def test_unit_axis_transpose_becomes_reshape():
    g = gc.Graph("unit")
    x = g.input("x", (1, 5, 7))
    y = x.transpose(1, 0, 2) * 2.0
    prog = gc.compile(y, backend="llvm")
    assert all("transpose" not in ops for ops in _kernel_ops(prog))
    data = np.arange(35, dtype=np.float32).reshape(1, 5, 7)
    np.testing.assert_array_equal(prog(x=data), data.transpose(1, 0, 2) * 2)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(data=st.data())
def test_reshape_strides_matches_numpy(data):
    """reshape_strides agrees with NumPy's no-copy reshape (setting ``.shape`` on a view raises when it would
    need a copy) on random strided views."""
    base_shape = tuple(data.draw(st.lists(st.integers(1, 4), min_size=1, max_size=4)))
    base = np.arange(int(np.prod(base_shape)) * 3, dtype=np.float64)[:int(np.prod(base_shape))].reshape(base_shape)
    perm = data.draw(st.permutations(range(len(base_shape))))
    view = base.transpose(perm)
    steps = tuple(data.draw(st.sampled_from([1, 2])) for _ in view.shape)
    view = view[tuple(slice(None, None, s) for s in steps)]
    sizes = [d for d in view.shape]
    total = int(np.prod(sizes))
    # a new shape with the same element count: regroup the prime factors with unit axes sprinkled in
    factors = []
    for d in sizes:
        for p in (2, 3, 5, 7):
            while d % p == 0:
                factors.append(p)
                d //= p
    cut = sorted(data.draw(st.lists(st.integers(0, len(factors)), max_size=3)))
    groups, prev = [], 0
    for c in cut + [len(factors)]:
        groups.append(int(np.prod(factors[prev:c])))
        prev = c
    new_shape = tuple(groups) if total else (0,)
    item = view.itemsize
    mine = reshape_strides(view.shape, tuple(s // item for s in view.strides), new_shape)
    trial = view.view()
    try:
        trial.shape = new_shape
    except AttributeError:
        assert mine is None
        return
    assert mine is not None
    got = np.lib.stride_tricks.as_strided(view, new_shape, tuple(s * item for s in mine))
    np.testing.assert_array_equal(got, view.reshape(new_shape))


def test_gemm_operand_layouts():
    assert gemm_operand((3, 4), (4, 1)) == (False, 4)
    assert gemm_operand((3, 4), (8, 1)) == (False, 8)  # a block of a wider matrix
    assert gemm_operand((3, 4), (1, 3)) == (True, 3)
    assert gemm_operand((3, 4), (2, 6)) is None  # neither rows nor columns contiguous
    assert gemm_operand((3, 4), (2, 1)) is None  # overlapping rows
    assert gemm_operand((2, 3, 4), (-12, 4, 1)) is None
    assert gemm_operand((1, 4), (0, 1)) == (False, 4)
