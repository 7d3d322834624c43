"""gc.testing: assert_backends_agree (what it accepts and catches, outputs and gradients; the second backend is
faked, except where both real backends must agree) and assert_graphs_equal / canonical_text (structural equality
up to node ids and names, and its messages)."""

import re

import numpy as np
import pytest

import graphc as gc
import graphc.agreement as agreement
from ops.registry import apply


def _graph():
    g = gc.Graph("agree")
    x = g.input("x", (3,))
    return {"y": x * 1000.0, "k": gc.cast(x, "int64")}, {"x": np.array([1.5, -2.0, 3.25])}


def _perturbed(monkeypatch, dy: float = 0.0, dk: int = 0):
    """The second backend is the interpreter with ``dy`` added to float results and ``dk`` to integer ones."""
    real = agreement.compile_program

    def fake(outputs, backend=None, **kw):
        program = real(outputs, backend="numpy", **kw)
        if backend == "numpy":
            return program
        return lambda **feeds: {k: v + (dy if v.dtype.kind == "f" else dk) for k, v in program(**feeds).items()}

    monkeypatch.setattr(agreement, "compile_program", fake)


def test_agreeing_backends_pass():
    outputs, feeds = _graph()
    gc.testing.assert_backends_agree(outputs, feeds, backends=("numpy", "numpy-plan"))


def test_integer_outputs_must_be_equal(monkeypatch):
    outputs, feeds = _graph()
    _perturbed(monkeypatch, dk=1)
    with pytest.raises(AssertionError, match="output 'k'"):
        gc.testing.assert_backends_agree(outputs, feeds, rtol=1.0, atol=1.0)


def test_scale_atol_scales_by_magnitude(monkeypatch):
    outputs, feeds = _graph()
    _perturbed(monkeypatch, dy=0.02)  # |y| up to 3250: 0.02 is within 1e-5 * 3250 but not within 1e-5
    with pytest.raises(AssertionError, match="output 'y'"):
        gc.testing.assert_backends_agree(outputs, feeds, rtol=0.0, atol=1e-5)
    gc.testing.assert_backends_agree(outputs, feeds, rtol=0.0, atol=1e-5, scale_atol=True)


def _layer():
    g = gc.Graph("grads")
    x = g.input("x", (4, 3))
    w = g.param("w", np.linspace(-1.0, 1.0, 6).reshape(3, 2))
    with gc.name_scope("layer1"):
        h = gc.tanh(gc.matmul(x, w), name="h")
    feeds = {"x": np.random.default_rng(0).normal(size=(4, 3)).astype(np.float32)}
    return {"h": h, "n": gc.cast(gc.greater(h, 0.0), "int64")}, x, w, feeds


def test_gradients_of_the_summed_outputs_agree_across_real_backends():
    outputs, x, w, feeds = _layer()
    gc.testing.assert_backends_agree(outputs, feeds, wrt=[w, x])
    gc.testing.assert_backends_agree([outputs["h"]], feeds, wrt=w)  # one tensor, a list of outputs


def _skewed_gradients(monkeypatch, delta: float):
    """The second backend is the interpreter with ``delta`` added to every gradient (backward) result only."""
    real = agreement.compile_program

    def fake(outputs, backend=None, **kw):
        program = real(outputs, backend="numpy", **kw)
        if backend == "numpy":
            return program
        backward = {k for k, node in outputs.items() if node.backward}
        return lambda **feeds: {k: v + (delta if k in backward else 0) for k, v in program(**feeds).items()}

    monkeypatch.setattr(agreement, "compile_program", fake)


def test_a_gradient_difference_is_caught_and_named(monkeypatch):
    outputs, x, w, feeds = _layer()
    _skewed_gradients(monkeypatch, 1e-3)
    gc.testing.assert_backends_agree(outputs, feeds)  # the outputs agree: without wrt nothing is caught
    with pytest.raises(AssertionError) as info:
        gc.testing.assert_backends_agree(outputs, feeds, wrt=[w])
    message = str(info.value)
    assert "gradient of the summed outputs w.r.t. 'w': llvm vs numpy differ at 6 of 6 elements" in message
    assert "output 'h'" not in message
    gc.testing.assert_backends_agree(outputs, feeds, wrt=[w], atol=2e-3)


def test_outputs_are_named_by_key_and_by_the_users_node_name(monkeypatch):
    outputs, x, w, feeds = _layer()
    _perturbed(monkeypatch, dy=1.0)
    with pytest.raises(AssertionError, match=r"output 0 \(node 'layer1/h'\): llvm vs numpy differ"):
        gc.testing.assert_backends_agree([outputs["h"]], feeds)
    with pytest.raises(AssertionError, match=r"output 'layer1/h': llvm vs numpy differ"):
        gc.testing.assert_backends_agree(outputs["h"], feeds)


def test_wrt_errors_are_clear():
    outputs, x, w, feeds = _layer()
    with pytest.raises(gc.GraphcError, match="needs a floating-point output"):
        gc.testing.assert_backends_agree({"n": outputs["n"]}, feeds, wrt=[w])
    with pytest.raises(gc.GraphcError, match="wrt must hold tensors"):
        gc.testing.assert_backends_agree(outputs, feeds, wrt=["w"])


# ------------------------------------------------------------------------------------ assert_graphs_equal


def _leaves(name: str = "g", dtype: str = "float32", shape=(2, 3)):
    g = gc.Graph(name)
    return g, g.input("x", shape, dtype), g.param("b", np.zeros(shape[-1]), dtype=dtype)


def _affine(g, x, b, prefix: str):
    """tanh(x*2 + b) + tanh(x*2 + b)·x with the tanh shared, every intermediate named ``prefix``_..."""
    scaled = apply("mul", x, g.const(2.0, dtype=x.dtype), name=f"{prefix}_scaled")
    t = apply("tanh", apply("add", scaled, b, name=f"{prefix}_shifted"), name=f"{prefix}_t")
    return apply("add", t, apply("mul", t, x, name=f"{prefix}_tx"), name=f"{prefix}_out")


def _differs(actual, expected, *patterns, **kw):
    with pytest.raises(AssertionError) as info:
        gc.testing.assert_graphs_equal(actual, expected, **kw)
    message = str(info.value)
    for pattern in patterns:
        assert re.search(pattern, message), f"{pattern!r} not in:\n{message}"
    return message


def test_equal_computations_in_different_graphs_with_different_names_pass():
    g, x, b = _leaves("first")
    h, hx, hb = _leaves("second")
    h.const(7.0)  # an unrelated node first: ids differ too
    y, z = _affine(g, x, b, "a"), _affine(h, hx, hb, "other")
    assert [n.name for n in g.nodes if not n.is_leaf] != [n.name for n in h.nodes if not n.is_leaf]
    gc.testing.assert_graphs_equal(y, z)
    gc.testing.assert_graphs_equal([y, x], (z, hx))
    gc.testing.assert_graphs_equal({"y": y, "x": x}, {"x": hx, "y": z})  # dicts match by key
    gc.testing.assert_graphs_equal(y, [z])
    gc.testing.assert_graphs_equal(g, [z])  # a graph means its sinks (h's extra constant is one more sink)
    _differs(g, h, "actual has 1 outputs, expected 2")
    gc.testing.assert_graphs_equal(y, y)
    _differs(y, z, "graphs differ at output: name differs: 'a_out' vs 'other_out'", check_names=True)
    _differs(y, apply("add", z.inputs[0], z.inputs[1], name="a_out"),
             r"graphs differ at output -> add\.inputs\[0\]: name differs: 'a_t' vs 'other_t'", check_names=True)


def test_a_different_op_is_named_with_the_path_and_both_subexpressions():
    g, x, b = _leaves()
    h, hx, hb = _leaves()
    message = _differs({"y": x * 2.0 + b}, {"y": (hx - 2.0) + hb}, "op differs: mul vs sub")
    assert message.splitlines() == [
        "graphs differ at output 'y' -> add.inputs[0]: op differs: mul vs sub",
        "  actual:   mul(input x:float32[2,3], const 2.0)",
        "  expected: sub(input x:float32[2,3], const 2.0)",
        "  in actual:   add(mul(input x:float32[2,3], const 2.0), param b:float32[3])",
        "  in expected: add(sub(input x:float32[2,3], const 2.0), param b:float32[3])"]


def test_a_different_attribute():
    g, x, _ = _leaves(shape=(3, 3))
    h, hx, _ = _leaves(shape=(3, 3))
    _differs(gc.sum(x, axis=0), gc.sum(hx, axis=1), r"attribute 'axis' of sum differs: \(0,\) vs \(1,\)")
    _differs(gc.transpose(x.reshape((3, 3, 1)), (1, 0, 2)), gc.transpose(hx.reshape((3, 3, 1)), (0, 1, 2)),
             r"attribute 'axes' of transpose differs: \(1, 0, 2\) vs \(0, 1, 2\)")


def test_a_different_constant_value_dtype_or_shape():
    g, x, b = _leaves()
    h, hx, hb = _leaves()
    _differs(x * 2.0 + b, hx * 3.0 + hb, r"at output -> add\.inputs\[0\] -> mul\.inputs\[1\]: "
             r"constant value differs: 2\.0 vs 3\.0")
    _differs(x * np.array([1.0, 2.0, 3.0]), hx * np.array([1.0, 2.0, 4.0]), r"constant value differs: "
             r"\[1\., 2\., 3\.\] vs \[1\., 2\., 4\.\]", r"const \[1\., 2\., 3\.\]:float32\[3\]")
    _, x64, b64 = _leaves(dtype="float64")
    _differs(x * 2.0 + b, x64 * 2.0 + b64, "dtype differs: float32 vs float64")
    _, xt, bt = _leaves(shape=(3, 3))
    _differs(x, xt, r"shape differs: \[2, 3\] vs \[3, 3\]")
    _differs(gc.sum(x), gc.sum(xt), r"at output -> sum\.inputs\[0\]: shape differs: \[2, 3\] vs \[3, 3\]")


def test_input_order_of_a_non_commutative_op():
    g = gc.Graph("g")
    x, y = g.input("x", (3,)), g.input("y", (3,))
    h = gc.Graph("h")
    hx, hy = h.input("x", (3,)), h.input("y", (3,))
    gc.testing.assert_graphs_equal(x - y, hx - hy)
    _differs(x - y, hy - hx, r"at output -> sub\.inputs\[0\]: input name differs: 'x' vs 'y'",
             "the inputs of sub are the same but in a different order")
    _differs(x / gc.exp(y), gc.exp(hy) / hx, r"at output -> div\.inputs\[0\]: op differs: input vs exp",
             "the inputs of div are the same but in a different order")


def test_sharing_and_duplication_differ():
    g, x, _ = _leaves()
    h, hx, _ = _leaves()
    t = gc.tanh(x)
    shared = _differs(t * t, gc.tanh(hx) * gc.tanh(hx), r"at output -> mul\.inputs\[1\]: sharing differs: "
                      r"actual reads the same node as at output -> mul\.inputs\[0\], expected reads a node it reads "
                      "nowhere else so far")
    assert r"in actual:   %1 = tanh(input x:float32[2,3]); mul(%1, %1)" in shared
    assert "in expected: mul(tanh(input x:float32[2,3]), tanh(input x:float32[2,3]))" in shared
    ht = gc.tanh(hx)
    _differs(gc.tanh(x) * gc.tanh(x), ht * ht, "sharing differs: actual reads a node it reads nowhere else so far, "
             r"expected reads the same node as at output -> mul\.inputs\[0\]")
    _differs([t, t], [ht, gc.tanh(hx)], "at output 1: sharing differs")  # across outputs too
    two = h.const(2.0)
    _differs(x * 2.0 + x * 2.0, hx * two + hx * two, "sharing differs")  # constants too
    # two different inputs are never one
    y = g.input("y", (2, 3))
    hy = h.input("y", (2, 3))
    gc.testing.assert_graphs_equal(x * x, hx * hx)
    _differs(x * x, hx * hy, r"at output -> mul\.inputs\[1\]: input name differs: 'x' vs 'y'")
    _differs(x * y, hx * hx, "input name differs: 'y' vs 'x'")


def test_leaf_names_and_kinds_matter():
    g, x, b = _leaves()
    h = gc.Graph("h")
    hz, hb = h.input("z", (2, 3)), h.param("b", np.zeros(3))
    _differs(x + b, hz + hb, "input name differs: 'x' vs 'z'")
    hp = h.param("x", np.zeros((2, 3)))
    _differs(x + b, hp + hb, "op differs: input vs param")
    k = gc.Graph("k")
    _differs(x + b, k.input("x", (2, 3)) + k.param("c", np.zeros(3)), "param name differs: 'b' vs 'c'")


def test_output_counts_keys_and_kinds():
    g, x, b = _leaves()
    h, hx, hb = _leaves()
    _differs([x, b], [hx], "actual has 2 outputs, expected 1")
    _differs({"x": x, "b": b}, {"x": hx, "c": hb}, r"actual lacks \['c'\], has unexpected \['b'\]")
    _differs({"x": x}, [hx], "actual is a dict of outputs, expected a sequence")
    with pytest.raises(TypeError, match="expected a tensor"):
        gc.testing.assert_graphs_equal(3.0, hx)
    with pytest.raises(TypeError, match="output 1: expected a graphc tensor"):
        gc.testing.assert_graphs_equal([x, 2.0], [hx, hb])


def test_canonical_text():
    g, x, b = _leaves()
    t = gc.tanh(x * 2.0 + b)
    assert gc.testing.canonical_text(x * 2.0 + b) == \
        "add(mul(input x:float32[2,3], const 2.0), param b:float32[3])"
    assert gc.testing.canonical_text({"y": t * t, "t": t, "i": g.const(np.array([1, 2]))}) == "\n".join([
        "%1 = tanh(add(mul(input x:float32[2,3], const 2.0), param b:float32[3]))",
        "output 'y': mul(%1, %1)",
        "output 't': %1",
        "output 'i': const [1, 2]:int64[2]"])
    assert gc.testing.canonical_text(gc.sum(x, axis=1, keepdims=True)) == \
        "sum(input x:float32[2,3], axis=(1,), keepdims=True)"
    h, hx, hb = _leaves()
    assert gc.testing.canonical_text(_affine(g, x, b, "a")) == gc.testing.canonical_text(_affine(h, hx, hb, "b"))


def test_long_chains_and_long_messages():
    g, x, _ = _leaves()
    h, hx, _ = _leaves()
    a, e = x, hx
    for i in range(3000):  # deeper than the recursion limit
        a, e = gc.tanh(a), gc.tanh(e) if i else gc.exp(e)
    gc.testing.canonical_text(a)
    message = _differs(a, e, "op differs: tanh vs exp")
    assert "graphs differ at output -> tanh.inputs[0] (2999 times): op differs: tanh vs exp" in message
    assert len(message) < 4000
    b, f = x, hx * 1.0  # differs at the bottom of a 40-step path
    for i in range(40):
        b, f = (b * 2.0, f * 2.0) if i % 2 else (gc.exp(b), gc.exp(f))
    message = _differs(b, f, r"^graphs differ at output -> mul\.inputs\[0\] -> exp\.inputs\[0\] -> .* -> "
                       r"mul\.inputs\[0\] -> \.\.\. 23 more \.\.\. -> mul\.inputs\[0\] -> .* -> exp\.inputs\[0\]: "
                       "op differs: input vs mul")
    assert message.splitlines()[0].count("->") == 18  # 6 steps, the elision, the last 12
