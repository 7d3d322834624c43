"""Semantics of the neural-network ops beyond the registry contract: batch-norm state updates, dropout masks,
indexing against NumPy, stable losses and the l1/l2 penalties."""

import numpy as np
import pytest

import graphc as gc
from ops.random import STEP_PARAM, keep_mask


def _bn_graph(shape, dtype="float64", momentum=0.1, eps=1e-5, seed=0):
    rng = np.random.default_rng(seed)
    c = shape[1]
    g = gc.Graph("bn")
    x = g.input("x", shape, dtype)
    gamma = g.param("gamma", rng.uniform(0.5, 2, c), dtype=dtype)
    beta = g.param("beta", rng.standard_normal(c), dtype=dtype)
    rm = g.param("rm", rng.standard_normal(c) * 0.1, dtype=dtype, trainable=False)
    rv = g.param("rv", rng.uniform(0.5, 2, c), dtype=dtype, trainable=False)
    return g, x, gamma, beta, rm, rv


@pytest.mark.parametrize("shape", [(8, 3), (4, 3, 5, 2)])
def test_batch_norm_training_normalizes_and_updates_running_stats_in_place(shape):
    g, x, gamma, beta, rm, rv = _bn_graph(shape)
    y = gc.batch_norm(x, gamma, beta, rm, rv, training=True, momentum=0.25, eps=1e-3)
    xv = np.random.default_rng(1).standard_normal(shape) * 3 + 2
    rm0, rv0 = g.state["rm"].copy(), g.state["rv"].copy()
    rm_array = g.state["rm"]
    out = gc.compile(y, backend="numpy")(x=xv)

    axes = (0,) + tuple(range(2, len(shape)))
    bshape = (1, shape[1]) + (1,) * (len(shape) - 2)
    mu, var = xv.mean(axis=axes), xv.var(axis=axes)
    expected = (xv - mu.reshape(bshape)) / np.sqrt(var.reshape(bshape) + 1e-3) * g.state["gamma"].reshape(bshape) \
        + g.state["beta"].reshape(bshape)
    np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-12)
    n = xv.size // shape[1]
    np.testing.assert_allclose(g.state["rm"], 0.75 * rm0 + 0.25 * mu, rtol=1e-12)
    np.testing.assert_allclose(g.state["rv"], 0.75 * rv0 + 0.25 * var * n / (n - 1), rtol=1e-12)  # unbiased
    assert g.state["rm"] is rm_array  # updated in place


def test_batch_norm_inference_uses_running_stats_and_leaves_them():
    g, x, gamma, beta, rm, rv = _bn_graph((5, 4))
    y = gc.batch_norm(x, gamma, beta, rm, rv, training=False)
    xv = np.random.default_rng(2).standard_normal((5, 4))
    before = {k: v.copy() for k, v in g.state.items()}
    out = gc.compile(y, backend="numpy")(x=xv)
    s = before
    expected = (xv - s["rm"]) / np.sqrt(s["rv"] + 1e-5) * s["gamma"] + s["beta"]
    np.testing.assert_allclose(out, expected, rtol=1e-12)
    for k, v in before.items():
        np.testing.assert_array_equal(g.state[k], v)
    assert y not in g.implicit_updates


def test_batch_norm_training_program_with_gradients_updates_stats_once():
    g, x, gamma, beta, rm, rv = _bn_graph((6, 2))
    y = gc.batch_norm(x, gamma, beta, rm, rv, training=True)
    loss = gc.sum(y * y * np.arange(12.0).reshape(6, 2))
    d_gamma, d_x = gc.grad(loss, [gamma, x])
    xv = np.random.default_rng(3).standard_normal((6, 2))
    rm0 = g.state["rm"].copy()
    prog = gc.compile({"loss": loss, "d_gamma": d_gamma, "d_x": d_x}, backend="numpy")
    assert sorted(p.name for p, _ in prog.updates) == ["rm", "rv"]
    prog(x=xv)
    np.testing.assert_allclose(g.state["rm"], 0.9 * rm0 + 0.1 * xv.mean(axis=0), rtol=1e-12)
    gc.testing.check_grads(loss, [x, gamma, beta], {"x": xv})


def test_batch_norm_training_needs_param_running_stats():
    g = gc.Graph("bn")
    x = g.input("x", (4, 3))
    vec = g.param("v", np.ones(3))
    not_state = g.input("rm", (3,))
    with pytest.raises(gc.GraphcError, match="running_mean must be a param"):
        gc.batch_norm(x, vec, vec, not_state, vec, training=True)
    with pytest.raises(gc.ShapeError, match="gamma must be a float32 vector of shape \\(3,\\)"):
        gc.batch_norm(x, g.param("w", np.ones(4)), vec, vec, vec, training=False)


# -- dropout ------------------------------------------------------------------------------------------------


def _splitmix_spec(seed, step, index, rate):
    """The mask specification of ops/random.py in plain Python integers."""
    m = (1 << 64) - 1

    def mix(z):
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & m
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & m
        return z ^ (z >> 31)

    key = mix((seed + (step + 1) * 0x9E3779B97F4A7C15) & m)
    h = mix((key + (index + 1) * 0x9E3779B97F4A7C15) & m)
    return (h >> 40) * 2.0**-24 >= rate


def test_dropout_mask_follows_the_specification():
    for seed, step, rate in [(0, 0, 0.5), (12345, 7, 0.1), (2**63 + 5, 2**40, 0.9)]:
        mask = keep_mask(seed, step, (3, 7), rate)
        expected = [_splitmix_spec(seed, step, i, rate) for i in range(21)]
        np.testing.assert_array_equal(mask.reshape(-1), expected)
    assert keep_mask(3, -1, (4,), 0.5).shape == (4,)  # a negative counter wraps like uint64


def test_dropout_deterministic_per_seed_and_step_and_counter_advances():
    g = gc.Graph("drop")
    x = g.input("x", (50, 40), "float64")
    y = gc.dropout(x, 0.5, training=True, seed=42)
    prog = gc.compile(y, backend="numpy")
    xv = np.random.default_rng(0).standard_normal((50, 40))
    first, second = prog(x=xv), prog(x=xv)
    assert int(g.state[STEP_PARAM]) == 2
    assert not np.array_equal(first == 0, second == 0)  # a new mask each step
    g.state[STEP_PARAM][...] = 0
    np.testing.assert_array_equal(prog(x=xv), first)  # same (seed, step): same output
    other = gc.dropout(x, 0.5, training=True, seed=43)
    g.state[STEP_PARAM][...] = 0
    assert not np.array_equal(gc.compile(other, backend="numpy")(x=xv) == 0, first == 0)
    kept = first != 0
    np.testing.assert_allclose(first[kept], xv[kept] * 2.0, rtol=1e-15)


def test_dropout_layers_share_one_counter_incremented_once_per_call():
    g = gc.Graph("drop2")
    x = g.input("x", (10,), "float64")
    y = gc.dropout(gc.dropout(x, 0.2, True, seed=1), 0.3, True, seed=2)
    prog = gc.compile(y, backend="numpy")
    assert [p.name for p, _ in prog.updates] == [STEP_PARAM]
    prog(x=np.ones(10))
    prog(x=np.ones(10))
    assert int(g.state[STEP_PARAM]) == 2
    assert STEP_PARAM not in g.trainable


def test_dropout_identity_when_not_training_and_rate_checked():
    g = gc.Graph("drop3")
    x = g.input("x", (3,))
    assert gc.dropout(x, 0.5, training=False) is x
    for rate in (1.0, -0.5):
        with pytest.raises(gc.ShapeError, match=r"rate must be in \[0, 1\)") as info:
            gc.dropout(x, rate, training=True)
        assert "test_nn_ops.py:" in str(info.value)
        with pytest.raises(gc.ShapeError, match=r"rate must be in \[0, 1\)"):
            gc.dropout(x, rate, training=False)


def test_dropout_kept_fraction_and_mean_preserved():
    g = gc.Graph("drop4")
    x = g.input("x", (100_000,), "float64")
    out = gc.compile(gc.dropout(x, 0.3, training=True, seed=9), backend="numpy")(x=np.ones(100_000))
    kept = np.count_nonzero(out) / out.size
    assert abs(kept - 0.7) < 0.007  # 5 standard deviations of a binomial fraction
    assert abs(out.mean() - 1.0) < 0.015


def test_dropout_vjp_uses_the_forward_mask():
    g = gc.Graph("drop5")
    x = g.input("x", (30, 20), "float64")
    w = g.input("w", (30, 20), "float64")
    y = gc.dropout(x, 0.4, training=True, seed=5)
    dx = gc.grad(gc.sum(y * w), x)
    xv, wv = np.random.default_rng(1).standard_normal((2, 30, 20)) + 5.0
    out = gc.compile({"y": y, "dx": dx}, backend="numpy")(x=xv, w=wv)
    mask = out["y"] != 0
    np.testing.assert_allclose(out["dx"], np.where(mask, wv / 0.6, 0.0), rtol=1e-15)


# -- indexing, concat, flatten, pad, clip --------------------------------------------------------------------


@pytest.mark.parametrize("index", [
    (1,), (slice(1, 3),), (slice(None), 2), (Ellipsis, slice(None, None, 2)), (slice(None, None, -1),),
    (slice(-1, None, -2), None, 0), (None, Ellipsis, -1), (slice(5, 1, -1), slice(0, 100)), (slice(3, 1),),
    (-2, -1, 0), (slice(-100, 100, 3),),
])
def test_slicing_matches_numpy(index):
    xv = np.arange(4 * 5 * 3, dtype=np.float64).reshape(4, 5, 3)
    g = gc.Graph("slice")
    x = g.input("x", xv.shape, "float64")
    y = x[index]
    expected = xv[index]
    assert y.shape == expected.shape
    np.testing.assert_array_equal(gc.compile(y, backend="numpy")(x=xv), expected)
    weights = np.random.default_rng(0).standard_normal(expected.shape)
    dx = gc.compile(gc.grad(gc.sum(y * weights), x), backend="numpy")(x=xv)
    want = np.zeros_like(xv)
    want[index] = weights
    np.testing.assert_array_equal(dx, want)


def test_slice_errors_name_the_shape():
    g = gc.Graph("slice_err")
    x = g.input("x", (4, 5))
    with pytest.raises(gc.ShapeError, match="index 5 is out of bounds for axis 1 of size 5"):
        x[0, 5]
    with pytest.raises(gc.ShapeError, match=r"too many indices \(3\) for a tensor of shape \(4, 5\)"):
        x[0, 1, 2]


def test_concat_flatten_pad_clip():
    rng = np.random.default_rng(4)
    g = gc.Graph("shape")
    a, b = g.input("a", (2, 3, 2), "float64"), g.input("b", (2, 1, 2), "float64")
    av, bv = rng.standard_normal((2, 3, 2)), rng.standard_normal((2, 1, 2))
    outs = {"cat": gc.concat([a, b], axis=1), "flat": gc.flatten(a), "flat0": gc.flatten(a, 0),
            "flat2": gc.flatten(a, -1), "pad": gc.pad(b, ((0, 1), (2, 0), (1, 1)), value=7.0),
            "clip": gc.clip(a, -0.5, 0.25), "cat_const": gc.concat([b, np.zeros((2, 1, 2))], axis=-1)}
    got = gc.compile(outs, backend="numpy")(a=av, b=bv)
    np.testing.assert_array_equal(got["cat"], np.concatenate([av, bv], axis=1))
    np.testing.assert_array_equal(got["flat"], av.reshape(2, 6))
    np.testing.assert_array_equal(got["flat0"], av.reshape(12))
    np.testing.assert_array_equal(got["flat2"], av)
    np.testing.assert_array_equal(got["pad"], np.pad(bv, ((0, 1), (2, 0), (1, 1)), constant_values=7.0))
    np.testing.assert_array_equal(got["clip"], np.clip(av, -0.5, 0.25))
    np.testing.assert_array_equal(got["cat_const"], np.concatenate([bv, np.zeros((2, 1, 2))], axis=-1))
    with pytest.raises(gc.ShapeError, match=r"shapes \(2, 3, 2\), \(2, 1, 2\) differ outside the concatenation"):
        gc.concat([a, b], axis=0)
    with pytest.raises(gc.ShapeError, match="start_axis 3 is out of range"):
        gc.flatten(a, 3)
    loss = gc.sum(gc.concat([a, b], axis=1) * rng.standard_normal((2, 4, 2))) + gc.sum(gc.pad(b, 1) ** 2)
    gc.testing.check_grads(loss, [a, b], {"a": av, "b": bv})


# -- losses and activations ---------------------------------------------------------------------------------


def test_binary_cross_entropy_is_finite_at_probabilities_zero_and_one():
    g = gc.Graph("bce")
    p, t = g.input("p", (4,), "float64"), g.input("t", (4,), "float64")
    loss = gc.binary_cross_entropy(p, t, reduction="none")
    dp = gc.grad(gc.sum(loss), p)
    out = gc.compile({"loss": loss, "dp": dp}, backend="numpy")(p=[0.0, 1.0, 0.0, 1.0], t=[0.0, 1.0, 1.0, 0.0])
    np.testing.assert_array_equal(out["loss"], [0.0, 0.0, 100.0, 100.0])  # logs clamped at -100
    assert np.all(np.isfinite(out["dp"]))
    np.testing.assert_array_equal(out["dp"], [0.0, 0.0, -1e12, 1e12])


def test_sigmoid_binary_cross_entropy_is_stable_at_large_logits():
    g = gc.Graph("bce_logits")
    z, t = g.input("z", (4,), "float64"), g.input("t", (4,), "float64")
    loss = gc.sigmoid_binary_cross_entropy(z, t, reduction="none")
    dz = gc.grad(gc.sum(loss), z)
    out = gc.compile({"loss": loss, "dz": dz}, backend="numpy")(z=[100.0, -100.0, 100.0, -100.0],
                                                                 t=[1.0, 0.0, 0.0, 1.0])
    np.testing.assert_allclose(out["loss"], [np.exp(-100), np.exp(-100), 100.0, 100.0], rtol=1e-12)
    np.testing.assert_allclose(out["dz"], [0.0, 0.0, 1.0, -1.0], atol=1e-40)
    mean = gc.compile(gc.sigmoid_binary_cross_entropy(z, t), backend="numpy")(z=[0.0] * 4, t=[1.0] * 4)
    np.testing.assert_allclose(mean, np.log(2.0), rtol=1e-15)


def test_mae_and_softplus_values():
    g = gc.Graph("misc")
    p, t = g.input("p", (3,), "float64"), g.input("t", (3,), "float64")
    out = gc.compile({"mae": gc.mae(p, t), "sum": gc.mae(p, t, reduction="sum"), "sp": gc.softplus(p)},
                     backend="numpy")(p=[1.0, -800.0, 800.0], t=[0.0, 0.0, 0.0])
    np.testing.assert_allclose(out["mae"], 1601.0 / 3)
    np.testing.assert_allclose(out["sum"], 1601.0)
    np.testing.assert_allclose(out["sp"], [np.log1p(np.e), 0.0, 800.0])


def test_prelu_per_channel_slope():
    g = gc.Graph("prelu")
    x = g.input("x", (2, 3, 2, 2), "float64")
    slope = g.param("slope", [0.1, 0.2, 0.3], dtype="float64")
    xv = np.random.default_rng(5).standard_normal((2, 3, 2, 2))
    out = gc.compile(gc.prelu(x, slope), backend="numpy")(x=xv)
    np.testing.assert_allclose(out, np.where(xv > 0, xv, xv * np.array([0.1, 0.2, 0.3]).reshape(3, 1, 1)))


# -- regularizers -------------------------------------------------------------------------------------------


def test_l1_l2_penalties_and_regularizer_objects():
    g = gc.Graph("reg")
    w = g.param("w", [[1.0, -2.0], [3.0, 0.5]], dtype="float64")
    b = g.param("b", [-1.0, 1.0], dtype="float64")
    counter = g.param("count", 0, dtype="int64", trainable=False)
    prog = gc.compile({"l2": gc.l2([w, b], 0.1), "l1": gc.l1(g.params, 0.5), "l2w": gc.l2(w, 2.0)}, backend="numpy")
    out = prog()
    assert counter.name in g.params  # int params are skipped by the dict form
    np.testing.assert_allclose(out["l2"], 0.1 * (1 + 4 + 9 + 0.25 + 1 + 1))
    np.testing.assert_allclose(out["l1"], 0.5 * (1 + 2 + 3 + 0.5 + 1 + 1))
    np.testing.assert_allclose(out["l2w"], 2.0 * 14.25)
    reg = gc.l2(1e-3)
    assert isinstance(reg, gc.regularizers.Regularizer) and reg.lam == 1e-3 and reg == gc.l2(0.001)
    np.testing.assert_allclose(gc.compile(reg(w), backend="numpy")(), 1e-3 * 14.25)
    np.testing.assert_allclose(gc.compile(gc.l1(0.25)(b), backend="numpy")(), 0.5)
    dw = gc.compile(gc.grad(gc.l2(w, 0.1), w), backend="numpy")()
    np.testing.assert_allclose(dw, 0.2 * g.state["w"])
    with pytest.raises(gc.GraphcError, match="non-negative"):
        gc.l1(-1.0)
    with pytest.raises(gc.GraphcError, match="gc.l2\\(lam\\)"):
        gc.l2([w])


def test_softmax_cross_entropy_ignore_index_and_spatial_mean():
    g = gc.Graph("sce")
    z = g.input("z", (2, 3, 2), "float64")
    t = g.input("t", (2, 2), "int64")
    zv = np.random.default_rng(8).standard_normal((2, 3, 2))
    tv = np.array([[0, -1], [2, -1]])
    loss = gc.softmax_cross_entropy(z, t, ignore_index=-1)
    per = gc.softmax_cross_entropy(z, t, ignore_index=-1, reduction="none")
    out = gc.compile({"loss": loss, "per": per}, backend="numpy")(z=zv, t=tv)
    log_probs = zv - np.log(np.exp(zv).sum(axis=1, keepdims=True))
    expected = [[-log_probs[0, 0, 0], 0.0], [-log_probs[1, 2, 0], 0.0]]
    np.testing.assert_allclose(out["per"], expected, rtol=1e-12)
    np.testing.assert_allclose(out["loss"], (expected[0][0] + expected[1][0]) / 2, rtol=1e-12)  # 2 not ignored
    with pytest.raises(gc.GraphcError, match=r"label 3 is outside \[0, 3\)"):
        gc.compile(loss, backend="numpy")(z=zv, t=np.array([[0, 3], [1, 1]]))
