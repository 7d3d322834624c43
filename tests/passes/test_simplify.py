"""simplify: before/expected graphs per rewrite, values and types preserved, the user's graph untouched.

Each rewrite test builds the user's computation in one graph and the expected result in a fresh graph, and
compares them structurally with ``gc.testing.assert_graphs_equal`` (ops, types, attributes, constants by value,
leaves by name, and sharing: a CSE survivor is one node on both sides).
"""

from __future__ import annotations

import inspect
from collections import Counter
from collections.abc import Callable, Sequence

import numpy as np
import pytest

import graphc as gc
from graphc.ir import Node, topo_ancestors
from passes import simplify
from passes.pipeline import PIPELINE, build_plan
from runtime import make_program
from runtime.interpreter import evaluate
from tests.randgraph import ALGEBRAIC, random_graph


def fresh(*shapes: tuple[int, ...], dtype: str = "float32") -> Node | list[Node]:
    """Inputs x (and y, ...) of the given shapes in a new graph, where expected results are built."""
    g = gc.Graph("expected")
    nodes = [g.input(name, shape, dtype) for name, shape in zip("xyzw", shapes)]
    return nodes[0] if len(nodes) == 1 else nodes


def assert_simplifies_to(outputs: Sequence[Node], expected: Sequence[Node]) -> simplify.Simplified:
    """simplify.run(outputs) computes exactly ``expected`` (built in another graph), and nothing else."""
    result = simplify.run(list(outputs), [])
    gc.testing.assert_graphs_equal(result.outputs, list(expected))
    # dead-code elimination: the scratch graph holds the expected nodes and no others, in creation = topological order
    assert len(result.graph.nodes) == len(topo_ancestors(list(expected))), gc.testing.canonical_text(result.graph)
    assert [n.id for n in result.graph.nodes] == list(range(len(result.graph.nodes)))
    assert all(x.id < n.id for n in result.graph.nodes for x in n.inputs)
    return result


def check_values(outputs: list[Node], updates: list[tuple[Node, Node]], feeds: dict[str, np.ndarray]) -> None:
    """The simplified graph evaluates to exactly the original's values (interpreter on both)."""
    graph = outputs[0].graph
    result = simplify.run(outputs, updates)
    assert result.graph.state is graph.state
    wanted = outputs + [v for _, v in updates]
    new_wanted = result.outputs + [v for _, v in result.updates]
    with np.errstate(all="ignore"):
        before = evaluate(topo_ancestors(wanted), feeds, graph.state, wanted)
        after = evaluate(result.graph.nodes, feeds, graph.state, new_wanted)
    for old, new, a, b in zip(wanted, new_wanted, before, after):
        assert new.type == old.type
        assert b.dtype == a.dtype and b.shape == a.shape
        np.testing.assert_array_equal(b, a, err_msg=f"{old.name} ({old.op} at {old.site})")


# --------------------------------------------------------------------------------- algebraic identities


@pytest.mark.parametrize("build", [lambda x: x * 1.0, lambda x: 1.0 * x, lambda x: x + 0.0, lambda x: 0.0 + x,
                                   lambda x: x - 0.0, lambda x: x / 1.0, lambda x: gc.neg(gc.neg(x)),
                                   lambda x: x * np.ones(3), lambda x: x + np.zeros((1, 3))])
def test_neutral_operands_vanish(build):
    g = gc.Graph("s")
    x = g.input("x", (2, 3))
    result = assert_simplifies_to([build(x)], [fresh((2, 3))])
    assert result.outputs[0].name == "x"


@pytest.mark.parametrize("build", [lambda x: x * 0.0, lambda x: 0.0 - x, lambda x: 1.0 / x, lambda x: x * 2.0,
                                   lambda x: x + np.zeros((4, 2, 3)), lambda x: x * np.ones((4, 1, 1))])
def test_non_identities_are_kept(build):
    # x·0 is not 0 for inf/NaN; 0 - x and 1/x are not x; zeros/ones of a larger broadcast shape change the type
    g = gc.Graph("s")
    x = g.input("x", (2, 3))
    y = build(x)
    assert_simplifies_to([y], [build(fresh((2, 3)))])  # expected: the same op on the same constant
    feeds = {"x": np.array([[np.inf, -0.0, np.nan], [1.5, -2.0, 0.0]], np.float32)}
    check_values([y], [], feeds)


def test_x_plus_zero_keeps_values_up_to_the_sign_of_zero():
    g = gc.Graph("s")
    x = g.input("x", (4,))
    y = x + 0.0
    check_values([y], [], {"x": np.array([-0.0, np.inf, np.nan, -3.0], np.float32)})  # -0.0 == +0.0 here


def test_double_negation_of_an_odd_chain_keeps_one():
    g = gc.Graph("s")
    x = g.input("x", (3,))
    assert_simplifies_to([gc.neg(gc.neg(gc.neg(x)))], [gc.neg(fresh((3,)))])


def test_identity_transposes_vanish():
    g = gc.Graph("s")
    x = g.input("x", (2, 3, 4))
    assert_simplifies_to([gc.transpose(gc.transpose(x))], [fresh((2, 3, 4))])
    assert_simplifies_to([gc.transpose(x, (0, 1, 2))], [fresh((2, 3, 4))])


@pytest.mark.parametrize("p, q, composed", [((1, 2, 0), (1, 2, 0), (2, 0, 1)), ((1, 0, 2), (0, 2, 1), (1, 2, 0)),
                                            ((2, 0, 1), (1, 2, 0), (0, 1, 2)), ((0, 2, 1), (0, 2, 1), (0, 1, 2))])
def test_transpose_of_transpose_is_one_transpose(p, q, composed):
    # axis i of transpose(transpose(x, p), q) is axis q[i] of the inner one, which is axis p[q[i]] of x
    assert tuple(p[i] for i in q) == composed
    g = gc.Graph("s")
    x = g.input("x", (2, 3, 4))
    y = gc.transpose(gc.transpose(x, p), q)
    ex = fresh((2, 3, 4))
    assert_simplifies_to([y], [ex if composed == (0, 1, 2) else gc.transpose(ex, composed)])
    check_values([y], [], {"x": np.arange(24, dtype=np.float32).reshape(2, 3, 4)})


def test_reshape_chains():
    g = gc.Graph("s")
    x = g.input("x", (2, 6))
    assert_simplifies_to([x.reshape((3, 4)).reshape((12,)).reshape((2, 6))], [fresh((2, 6))])
    y = x.reshape((3, 4)).reshape((4, 3))
    assert_simplifies_to([y], [fresh((2, 6)).reshape((4, 3))])
    assert_simplifies_to([x.reshape((2, 6))], [fresh((2, 6))])
    check_values([y], [], {"x": np.arange(12, dtype=np.float32).reshape(2, 6)})


NO_OPS: list[Callable[[Node], Node]] = [
    lambda x: gc.cast(x, "float32"), lambda x: gc.broadcast_to(x, (1, 3)), lambda x: gc.sum(x, axis=0, keepdims=True),
    lambda x: gc.mean(x, axis=(), keepdims=False), lambda x: gc.max(x, axis=0, keepdims=True)]
NOT_NO_OPS: list[Callable[[Node], Node]] = [
    lambda x: gc.cast(x, "float64"), lambda x: gc.broadcast_to(x, (2, 3)), lambda x: gc.sum(x, axis=0),
    lambda x: gc.sum(x, axis=1, keepdims=True)]


def test_no_op_casts_broadcasts_and_reductions():
    g = gc.Graph("s")
    x = g.input("x", (1, 3))
    for build in NO_OPS:
        assert_simplifies_to([build(x)], [fresh((1, 3))])
    for build in NOT_NO_OPS:
        assert_simplifies_to([build(x)], [build(fresh((1, 3)))])


# ----------------------------------------------------------------------------------------- folding


def test_constant_folding_keeps_dtypes():
    g = gc.Graph("s")
    x = g.input("x", (3,), dtype="float64")
    c = gc.exp(g.const(np.array([0.0, 1.0, 2.0]), dtype="float64")) * 2.0
    i = g.const(np.array([1, 2, 3])) * 3 + 1
    y = x + c
    e = gc.Graph("expected")
    ex = e.input("x", (3,), dtype="float64")
    folded_c = e.const(np.exp(np.array([0.0, 1.0, 2.0])) * 2.0, dtype="float64")
    folded_i = e.const(np.array([4, 7, 10]), dtype="int64")
    result = assert_simplifies_to([y, i], [ex + folded_c, folded_i])
    assert result.report["rewrites"]["fold"] == 4
    check_values([y, i], [], {"x": np.arange(3.0)})


def test_folding_does_not_grow_or_exceed_the_limit():
    g = gc.Graph("s")
    x = g.input("x", (256, 256))
    grown = gc.broadcast_to(g.const(0.5), (256, 256))  # 256 KiB from a 4-byte constant: keep it a broadcast
    ex = fresh((256, 256))
    assert_simplifies_to([x * grown], [ex * gc.broadcast_to(ex.graph.const(0.5), (256, 256))])
    big = g.const(np.ones((600, 600), np.float32))    # 1.4 MB result: over the folding limit
    ex = fresh((256, 256))
    assert_simplifies_to([x * 1.0 + 0.0, gc.exp(big)], [ex, gc.exp(ex.graph.const(np.ones((600, 600), np.float32)))])


def test_a_reference_that_fails_is_not_folded_and_fails_at_run_time_at_the_users_line():
    g = gc.Graph("s")
    x = g.input("x", (2,))
    loss = gc.softmax_cross_entropy(g.const(np.zeros((2, 3), np.float32)), g.const(np.array([0, 7])))
    line = inspect.currentframe().f_lineno - 1
    ex = fresh((2,))
    e = ex.graph
    expected = gc.softmax_cross_entropy(e.const(np.zeros((2, 3), np.float32)), e.const(np.array([0, 7]))) + ex.sum()
    assert_simplifies_to([loss + x.sum()], [expected])
    prog = gc.compile(loss + x.sum(), backend="llvm")
    with pytest.raises(gc.GraphcError, match=rf"test_simplify.py:{line}\b.*outside \[0, 3\)"):
        prog(x=np.zeros(2))


def test_dropout_is_never_folded_or_merged():
    g = gc.Graph("s")
    x = g.input("x", (8,))
    a = gc.dropout(x, 0.5, training=True, seed=3)
    b = gc.dropout(x, 0.5, training=True, seed=3)
    c = gc.dropout(g.const(np.ones(8, np.float32)), 0.5, training=True, seed=3)  # constant operands: not folded
    ex = fresh((8,))
    e = ex.graph
    ea, eb = gc.dropout(ex, 0.5, training=True, seed=3), gc.dropout(ex, 0.5, training=True, seed=3)
    ec = gc.dropout(e.const(np.ones(8, np.float32)), 0.5, training=True, seed=3)
    # two dropout nodes on each side: a merged one would be one node read twice, which does not match
    result = assert_simplifies_to([a, b, c], [ea, eb, ec])
    assert result.report["rewrites"]["cse"] == 0
    prog = gc.compile([a, b], backend="numpy-plan")
    gc.testing.assert_graphs_equal(prog.plan.outputs, [ea, eb])
    assert prog.plan.report["simplify"]["rewrites"]["cse"] == 0


# ---------------------------------------------------------------------------------------------- CSE


def test_the_same_matmul_written_twice_is_one_kernel():
    g = gc.Graph("s")
    x = g.input("x", (4, 5))
    w = g.param("w", np.ones((5, 3)))
    y = gc.relu(x @ w) + gc.tanh(x @ w)
    ex = fresh((4, 5))
    m = ex @ ex.graph.param("w", np.ones((5, 3)))
    assert_simplifies_to([y, x @ w], [gc.relu(m) + gc.tanh(m), m])  # one matmul node, read three times
    prog = gc.compile({"y": y, "again": x @ w}, backend="llvm")
    matmuls = [k for k in prog.plan.kernels if k.kind == "matmul"]
    assert len(matmuls) == 1
    feeds = {"x": np.arange(20, dtype=np.float32).reshape(4, 5) / 10}
    out = prog(**feeds)
    xw = feeds["x"] @ np.ones((5, 3), np.float32)
    np.testing.assert_allclose(out["y"], np.maximum(xw, 0) + np.tanh(xw), rtol=1e-5)
    np.testing.assert_allclose(out["again"], xw, rtol=1e-6)


def test_cse_merges_commutative_operands_and_equal_constants():
    g = gc.Graph("s")
    x, y = g.input("x", (3,)), g.input("y", (3,))
    a = (x + y) * 2.0
    b = (y + x) * 2.0
    ex, ey = fresh((3,), (3,))
    merged = (ex + ey) * ex.graph.const(2.0)
    result = assert_simplifies_to([a, b], [merged, merged])
    assert result.outputs[0] is result.outputs[1]
    assert result.report["rewrites"]["cse"] == 3  # add, the constant 2.0, mul
    ex, ey = fresh((3,), (3,))
    assert_simplifies_to([x - y, y - x], [ex - ey, ey - ex])  # sub is not commutative: two nodes


def test_equal_constants_are_one_node():
    g = gc.Graph("s")
    x, y = g.input("x", (3,)), g.input("y", (3,))
    ex, ey = fresh((3,), (3,))
    two = ex.graph.const(2.0)
    assert_simplifies_to([x * 2.0 + y * 2.0], [ex * two + ey * two])


def test_dead_nodes_are_dropped_and_outputs_keep_their_order():
    g = gc.Graph("s")
    x = g.input("x", (3,))
    gc.exp(x) * 5.0                                  # never asked for
    y, z = gc.tanh(x), gc.sigmoid(x)
    ex = fresh((3,))
    ey, ez = gc.tanh(ex), gc.sigmoid(ex)
    assert_simplifies_to([z, y, z * 1.0], [ez, ey, ez])
    out = gc.compile([z, y, z * 1.0], backend="llvm")(x=np.array([-1.0, 0.0, 2.0]))
    np.testing.assert_allclose(out[0], 1 / (1 + np.exp([1.0, 0.0, -2.0])), rtol=1e-6)
    np.testing.assert_allclose(out[1], np.tanh([-1.0, 0.0, 2.0]), rtol=1e-6)
    np.testing.assert_array_equal(out[0], out[2])
    assert out[0] is not out[2]


# --------------------------------------------------------------------------------- whole programs


def mlp(momentum: float = 0.9, optimizer: str = "sgd"):
    g = gc.Graph("mlp")
    rng = np.random.default_rng(0)
    x, labels = g.input("x", (16, 12)), g.input("y", (16,), dtype="int64")
    h = x
    sizes = (12, 10, 8, 3)
    for i, (n_in, n_out) in enumerate(zip(sizes, sizes[1:])):
        h = h @ g.param(f"w{i}", rng.standard_normal((n_in, n_out)) * 0.3) + g.param(f"b{i}", np.zeros(n_out))
        if i < len(sizes) - 2:
            h = gc.relu(h)
    loss = gc.softmax_cross_entropy(h, labels)
    opt = gc.optim.Adam(0.01) if optimizer == "adam" else gc.optim.SGD(0.05, momentum=momentum)
    updates = opt.minimize(loss)
    feeds = {"x": rng.standard_normal((16, 12)), "y": rng.integers(0, 3, 16)}
    return g, {"loss": loss, "logits": h}, updates, feeds


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_mlp_training_step_values_and_types(optimizer):
    g, outputs, updates, feeds = mlp(optimizer=optimizer)
    arrays = {"x": feeds["x"].astype(np.float32), "y": feeds["y"]}
    check_values(list(outputs.values()), list(updates.items()), arrays)
    result = simplify.run(list(outputs.values()), list(updates.items()))
    assert result.report["nodes_after"] < result.report["nodes_before"]
    for old, new in result.mapping.items():
        assert new.type == old.type and new.graph is result.graph
        if new.name == old.name:  # the node standing for old (not a CSE survivor created elsewhere)
            assert new.site == old.site and new.backward == old.backward
    assert {n.name: n.type for n in result.graph.params.values()} == \
        {n.name: n.type for n in topo_ancestors(list(outputs.values()) + [v for v in updates.values()])
         if n.op == "param"}


def test_training_with_simplification_matches_the_raw_interpreter():
    results = {}
    for backend in ("numpy", "numpy-plan", "llvm"):
        g, outputs, updates, feeds = mlp()
        prog = make_program(outputs, backend=backend, updates=updates)
        losses = [float(prog(**feeds)["loss"]) for _ in range(3)]
        results[backend] = (losses, {k: v.copy() for k, v in g.state.items()})
    ref_losses, ref_state = results["numpy"]
    for backend in ("numpy-plan", "llvm"):
        losses, state = results[backend]
        np.testing.assert_allclose(losses, ref_losses, rtol=1e-5)
        for k in ref_state:
            np.testing.assert_allclose(state[k], ref_state[k], rtol=1e-4, atol=1e-6, err_msg=f"{backend} {k}")


def test_compiling_leaves_the_users_graph_untouched_and_params_zero_copy():
    g, outputs, updates, feeds = mlp()
    names = [n.name for n in g.nodes]
    arrays = {k: v for k, v in g.state.items()}
    before = {k: v.copy() for k, v in arrays.items()}
    prog = gc.compile(outputs, backend="llvm", updates=updates)
    assert [n.name for n in g.nodes] == names
    assert prog.plan.graph is not g and prog.plan.graph.state is g.state
    assert all(n.graph is prog.plan.graph for k in prog.plan.kernels for n in k.nodes)
    prog(**feeds)
    assert [n.name for n in g.nodes] == names
    for k, array in arrays.items():
        assert g.state[k] is array   # updated in place, never replaced
    assert not np.array_equal(g.state["w0"], before["w0"])


def test_apple_graph_and_report():
    g = gc.Graph("apple")
    apple, num, tax = g.input("apple", ()), g.input("num", ()), g.input("tax", ())
    price = apple * num * tax
    d_apple, d_num, d_tax = gc.grad(price, [apple, num, tax])
    outputs = {"price": price, "d_apple": d_apple, "d_num": d_num, "d_tax": d_tax}
    prog = gc.compile(outputs, backend="llvm")
    out = prog(apple=100.0, num=2.0, tax=1.1)
    np.testing.assert_allclose([out[k] for k in outputs], [220.0, 2.2, 110.0, 200.0], rtol=1e-6)
    report = build_plan(list(outputs.values()), []).report["simplify"]
    assert report["rewrites"]["mul_one"] == 2  # the seed gradient 1.0 times ...
    assert (report["nodes_before"], report["nodes_after"]) == (10, 7)
    assert [stage.name for stage in PIPELINE] == ["simplify", "decompose", "fuse", "schedule", "memplan"]


def test_updates_that_simplify_to_leaves_or_constants():
    g = gc.Graph("s")
    x = g.input("x", (3,))
    p, q = g.param("p", np.arange(3.0)), g.param("q", np.ones(3))
    result = simplify.run([x * p], [(p, p * 1.0), (q, g.const(np.full(3, 2.0)) * 2.0)])
    ex = fresh((3,))
    ep, eq = ex.graph.param("p", np.arange(3.0)), ex.graph.param("q", np.ones(3))
    gc.testing.assert_graphs_equal(result.outputs + [n for pair in result.updates for n in pair],
                                   [ex * ep, ep, ep, eq, ex.graph.const(np.full(3, 4.0))])
    prog = gc.compile({"y": x * p}, backend="llvm", updates={p: p * 1.0, q: g.const(np.full(3, 2.0)) * 2.0})
    out = prog(x=np.ones(3))
    np.testing.assert_array_equal(out["y"], [0.0, 1.0, 2.0])
    np.testing.assert_array_equal(g.state["p"], [0.0, 1.0, 2.0])
    np.testing.assert_array_equal(g.state["q"], [4.0, 4.0, 4.0])


def random_case(seed: int):
    """A random DAG rich in the patterns simplify rewrites: neutral constants, duplicates, chains, broadcasting."""
    r = random_graph(seed, n_ops=12, patterns=ALGEBRAIC)
    assert set(r.patterns) == set(ALGEBRAIC)  # every pattern appears in every graph
    return r, list(r.outputs.values())


@pytest.mark.parametrize("seed", range(12))
def test_random_graphs_keep_their_values(seed):
    r, outputs = random_case(seed)
    check_values(outputs, r.updates, {"x": r.feeds["x"].astype(np.float32)})
    gc.testing.assert_backends_agree(outputs, r.feeds, rtol=1e-5, atol=1e-6)


def test_random_graphs_exercise_every_rewrite():
    fired: Counter[str] = Counter()
    for seed in range(12):
        r, outputs = random_case(seed)
        fired.update(simplify.run(outputs, r.updates).report["rewrites"])
    for rule in ("fold", "cse", "add_zero", "sub_zero", "mul_one", "div_one", "double_neg", "transpose", "reshape",
                 "noop"):
        assert fired[rule] > 0, (rule, fired)
