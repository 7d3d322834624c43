"""The one seeded random-graph generator the tests share (simplify, memory planning, the plan interpreter).

``random_graph(seed, n_ops=..., patterns=...)`` builds a DAG over an input ``x`` (rows, cols) and three params
``p0`` (rows, cols), ``p1`` (cols,), ``p2`` (cols, cols): each step applies one *pattern* to a value ``a`` of
shape (rows, cols) and a value ``b`` that broadcasts to it (any earlier value; others are reduced to a scalar by
sum or mean), giving a new (rows, cols) value. Then a scalar loss, its gradients with respect to every param and
SGD updates, and a few random intermediate values as outputs.

Patterns are drawn in shuffled rounds (each round is a permutation of ``patterns``), so a graph of at least
``len(patterns)`` steps contains every pattern; ``RandomGraph.patterns`` records the order used.

- ``ALGEBRAIC``: the rewrites of ``passes.simplify`` (neutral constants, double negation, transpose/reshape pairs,
  duplicates for CSE, foldable constants, no-op casts and broadcasts);
- ``KERNELS``: elementwise, broadcast, matmul, reduce, shape and select ops (fusion boundaries, epilogues,
  buffer reuse);
- ``ALL``: both.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

import graphc as gc
from graphc.ir import Graph, Node


@dataclass
class Context:
    """What a pattern may use besides its operands."""

    graph: Graph
    rows: int
    cols: int
    params: tuple[Node, Node, Node]  # p0 (rows, cols), p1 (cols,), p2 (cols, cols)
    rng: np.random.Generator


Pattern = Callable[[Context, Node, Node], Node]

_UNARY = (gc.tanh, gc.sigmoid, gc.relu, gc.exp, gc.neg, gc.abs)

PATTERNS: dict[str, Pattern] = {
    # -- algebraic: what simplify rewrites
    "mul_one": lambda c, a, b: a * 1.0 + b,
    "add_zero_sub_mul_zero": lambda c, a, b: (a + 0.0) - b * 0.0,  # x·0 is kept (inf/NaN)
    "double_neg_div_one": lambda c, a, b: gc.neg(gc.neg(a)) / 1.0 + b,
    "transpose_pair": lambda c, a, b: gc.transpose(gc.transpose(a)) * b,
    "reshape_pair": lambda c, a, b: a.reshape((c.cols, c.rows)).reshape((c.rows, c.cols)),
    "duplicate": lambda c, a, b: a * c.params[1] + (a * c.params[1]),
    "sum_keepdims": lambda c, a, b: gc.sum(a, axis=0, keepdims=True) + gc.broadcast_to(b, (c.rows, c.cols)),
    "fold": lambda c, a, b: gc.exp(c.graph.const(np.full(c.cols, 0.5))) * a,
    "mul_ones_array": lambda c, a, b: b + a * c.graph.const(np.ones(c.cols)),
    "noop_cast_broadcast": lambda c, a, b: gc.cast(a, "float32") + gc.broadcast_to(c.params[1], (c.rows, c.cols)),
    # -- kernels: what fusion, scheduling and memory planning see
    "tanh": lambda c, a, b: gc.tanh(a),
    "unary_of_tanh": lambda c, a, b: _UNARY[int(c.rng.integers(len(_UNARY)))](gc.tanh(a)),
    "mul": lambda c, a, b: a * b,
    "mul_sub": lambda c, a, b: a * b - a,
    "add": lambda c, a, b: a + b,
    "sigmoid_sub": lambda c, a, b: gc.sigmoid(a) - b,
    "sigmoid_affine": lambda c, a, b: gc.sigmoid(a + b) * 2.0 - 1.0,
    "matmul": lambda c, a, b: a @ c.params[2],
    "matmul_tanh": lambda c, a, b: gc.tanh(a @ c.params[2]),
    "mul_colsum": lambda c, a, b: a * gc.sum(a, axis=0, keepdims=True),
    "sub_colsum": lambda c, a, b: a - gc.sum(a, axis=0, keepdims=True) * 0.1,
    "maximum_rowmean": lambda c, a, b: gc.maximum(a, b) + gc.mean(a, axis=1, keepdims=True),
    "minimum_rowmax": lambda c, a, b: gc.minimum(a, b) + gc.max(a, axis=1, keepdims=True),
    "transposed_scale": lambda c, a, b: gc.transpose(gc.transpose(a) * 0.5),
    "transposed_scale_add": lambda c, a, b: gc.transpose(gc.transpose(a) * 0.5) + a,
    "flatten_relu": lambda c, a, b: gc.relu(a).reshape((c.rows * c.cols,)).reshape((c.rows, c.cols)),
    "flatten_relu_mul": lambda c, a, b: gc.reshape(gc.relu(a), (c.rows * c.cols,)).reshape((c.rows, c.cols)) * b,
    "exp_div": lambda c, a, b: gc.exp(gc.tanh(a)) / (1.0 + gc.abs(b)),
    "where": lambda c, a, b: gc.where(gc.greater(a, b), a, b * 0.5),
}
ALGEBRAIC = ("mul_one", "add_zero_sub_mul_zero", "double_neg_div_one", "transpose_pair", "reshape_pair", "duplicate",
             "sum_keepdims", "fold", "mul_ones_array", "noop_cast_broadcast")
KERNELS = tuple(name for name in PATTERNS if name not in ALGEBRAIC)
ALL = ALGEBRAIC + KERNELS


@dataclass
class RandomGraph:
    """A generated program: outputs (``v<i>`` intermediates and ``loss``), SGD updates of every param, feeds."""

    graph: Graph
    outputs: dict[str, Node]
    updates: list[tuple[Node, Node]]
    feeds: dict[str, np.ndarray]
    patterns: tuple[str, ...]  # the pattern applied at each step


def random_graph(seed: int, *, n_ops: int = 25, patterns: Sequence[str] = ALL, max_rows: int = 5,
                 max_cols: int = 6, recent: int | None = None, n_outputs: int = 3,
                 lr: float = 0.1) -> RandomGraph:
    """A seeded random DAG of ``n_ops`` pattern applications (see the module docstring).

    ``recent``: draw ``a`` among the last ``recent`` values of shape (rows, cols) (deep chains) instead of among
    all of them (wide graphs). Shapes: rows in [1, max_rows], cols in [1, max_cols].
    """
    if n_ops < 2:
        raise ValueError("random_graph needs n_ops >= 2 (the loss reads the last two values)")
    unknown = [p for p in patterns if p not in PATTERNS]
    if unknown or not patterns:
        raise ValueError(f"unknown patterns {unknown}; known: {sorted(PATTERNS)}")
    rng = np.random.default_rng(seed)
    g = gc.Graph(f"random{seed}")
    rows, cols = int(rng.integers(1, max_rows + 1)), int(rng.integers(1, max_cols + 1))
    params = (g.param("p0", rng.standard_normal((rows, cols))), g.param("p1", rng.standard_normal(cols)),
              g.param("p2", rng.standard_normal((cols, cols)) * 0.5))
    ctx = Context(g, rows, cols, params, rng)
    pool: list[Node] = [g.input("x", (rows, cols)), *params]
    order: list[str] = []
    while len(order) < n_ops:
        order += [patterns[int(i)] for i in rng.permutation(len(patterns))]
    order = order[:n_ops]
    broadcastable = ((rows, cols), (cols,), (1, cols), (rows, 1), ())
    for name in order:
        full = [v for v in pool if v.shape == (rows, cols)]
        a = full[max(-int(rng.integers(1, recent + 1)), -len(full))] if recent else full[int(rng.integers(len(full)))]
        b = pool[int(rng.integers(len(pool)))]
        if b.shape not in broadcastable:
            b = gc.sum(b) if rng.integers(2) else gc.mean(b)
        new = PATTERNS[name](ctx, a, b)
        assert new.shape == (rows, cols), (name, new.shape)
        pool.append(new)
    tail = pool[len(params) + 1:]
    loss = gc.mean(gc.tanh(tail[-1]) * tail[-2])
    grads = gc.grad(loss, list(params))
    picked = sorted(int(i) for i in rng.choice(len(tail), size=min(n_outputs, len(tail)), replace=False))
    outputs = {f"v{i}": tail[i] for i in picked}
    outputs["loss"] = loss
    updates = [(p, p - lr * gp) for p, gp in zip(params, grads)]
    return RandomGraph(g, outputs, updates, {"x": rng.standard_normal((rows, cols))}, tuple(order))
