"""A reshape whose input dies at it takes over the input's buffer and copies nothing (attention's q/k/v reshapes);
one whose input is still needed later is a copy; both compute what the interpreter computes."""

from __future__ import annotations

import re

import numpy as np

import graphc as gc


def _attention_like(keep_input: bool):
    g = gc.Graph("reshape_view")
    rng = np.random.default_rng(0)
    x = g.input("x", (6, 8))
    w = g.param("w", rng.standard_normal((8, 12)))
    h = gc.matmul(x, w)                                   # (6, 12)
    heads = gc.reshape(h, (6, 3, 4))                      # a view of h's bytes when h dies here
    y = gc.softmax(heads, axis=-1)  # (a GEMM would read the reshape through its strides: no kernel at all)
    # h * Σy needs y, so h is still needed after the reshape: its bytes cannot become the reshape's
    outputs = {"y": y, "h2": h * gc.sum(y)} if keep_input else {"y": y}
    feeds = {"x": rng.standard_normal((6, 8)).astype(np.float32)}
    return outputs, heads, feeds


def _reshape_function(prog, heads) -> str:
    kernel = next(k for k in prog.plan.kernels if heads.name in {o.name for o in k.outputs})
    name = re.sub(r"\W", "_", kernel.name)
    match = re.search(r'define [^\n]*@"gk\d+_' + re.escape(name) + r'"\(.*?\n}\n', prog.jit.llvm_ir, re.S)
    assert match, kernel.name
    return match.group(0)


def test_a_reshape_of_a_dying_value_is_a_view_with_no_code():
    outputs, heads, feeds = _attention_like(keep_input=False)
    prog = gc.compile(outputs, cache=False)
    assert {(v.name, x.name) for v, x in prog.plan.inplace.items()} == {(heads.name, heads.inputs[0].name)}
    body = _reshape_function(prog, heads)
    assert "load" not in body and "store" not in body and "br " not in body  # nothing is copied
    np.testing.assert_allclose(prog(**feeds)["y"], gc.compile(outputs, backend="numpy")(**feeds)["y"],
                               rtol=1e-5, atol=1e-5)


def test_a_reshape_of_a_value_still_needed_is_a_copy():
    outputs, heads, feeds = _attention_like(keep_input=True)
    prog = gc.compile(outputs, cache=False)
    assert heads.name not in {v.name for v in prog.plan.inplace}
    assert "store" in _reshape_function(prog, heads)
    got, want = prog(**feeds), gc.compile(outputs, backend="numpy")(**feeds)
    for name in ("y", "h2"):
        np.testing.assert_allclose(got[name], want[name], rtol=1e-5, atol=1e-5)
