"""Symbolic reverse-mode differentiation: gradients are built as ordinary graph nodes.

Algorithm:
1. the *path* is every node that ``y`` depends on and that depends on some ``x`` (float nodes only);
2. every op on the path must have a VJP — otherwise one :class:`GradientError` lists all that lack one, each
   with its creation site;
3. walk the path in reverse topological order, seeding ḡ(y) = 1; each node's gradient is the sum of the
   contributions its consumers sent it (reused nodes get summed gradients); ``op.vjp(node, ḡ)`` returns one
   contribution per input, already summed back to the input's shape when the op broadcast it;
4. nodes created here are marked ``backward``; those no returned gradient needs are dropped again.

Every node created here is remembered with its :class:`GradOrigin` (:func:`origin`): the forward node whose VJP
built it, the op class and the input position the contribution is for (``graphc explain`` reads it). The map
holds the nodes weakly, so dropped nodes leave it.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from graphc.ir import GradientError, Node
from ops import fn
from ops.registry import get_op


@dataclass(frozen=True)
class GradOrigin:
    """Why autodiff built a node: ``role`` ``vjp`` (a node of ``op``'s VJP for ``forward``; ``input`` is the
    position of the forward input when the node is that input's contribution), ``sum`` (the total of the
    contributions to ``forward``'s gradient), ``seed`` (dy/dy = 1) or ``zero`` (y does not depend on ``forward``)."""

    role: str
    forward: Node
    op: str
    vjp: str
    input: int | None = None


_ORIGINS: weakref.WeakKeyDictionary[Node, GradOrigin] = weakref.WeakKeyDictionary()


def origin(node: Node) -> GradOrigin | None:
    """How autodiff produced ``node`` (None for a node it did not create)."""
    return _ORIGINS.get(node)


def _remember(graph, start: int, role: str, forward: Node, contributions: Sequence[Node | None] = ()) -> None:
    """Record the origin of the nodes created since ``graph.nodes[start]`` (the contributions by input position)."""
    position = {id(gx): i for i, gx in enumerate(contributions) if gx is not None}
    op = get_op(forward.op) if not forward.is_leaf else None
    vjp = f"{type(op).__name__}.vjp" if op is not None else "-"
    for n in graph.nodes[start:]:
        if n not in _ORIGINS:
            _ORIGINS[n] = GradOrigin(role, forward, forward.op, vjp, position.get(id(n)))


def _path(y: Node, xs: Sequence[Node]) -> list[Node]:
    """Nodes on some x → y path, in topological order."""
    ancestors: dict[int, Node] = {}
    stack = [y]
    while stack:
        n = stack.pop()
        if n.id not in ancestors:
            ancestors[n.id] = n
            stack.extend(n.inputs)
    reaches_x = {x.id for x in xs}
    for n in sorted(ancestors.values(), key=lambda n: n.id):
        if n.id not in reaches_x and n.type.is_float and any(i.id in reaches_x for i in n.inputs):
            reaches_x.add(n.id)
    return [n for n in sorted(ancestors.values(), key=lambda n: n.id) if n.id in reaches_x]


def _check(y: Node, xs: Sequence[Node]) -> None:
    if not isinstance(y, Node):
        raise GradientError(f"grad: y must be a graphc tensor, got {type(y).__name__}")
    if y.shape != ():
        raise GradientError(f"grad: y must be a scalar (shape ()), got {y.name!r} with shape {y.shape} created at "
                            f"{y.site}; reduce it first, e.g. y.sum() or y.mean()")
    if not y.type.is_float:
        raise GradientError(f"grad: y must be floating-point, got {y.type} ({y.name!r} at {y.site})")
    for x in xs:
        if not isinstance(x, Node):
            raise GradientError(f"grad: xs must be graphc tensors, got {type(x).__name__}")
        if x.graph is not y.graph:
            raise GradientError(f"grad: {x.name!r} belongs to graph {x.graph.name!r}, y to {y.graph.name!r}")
        if not x.type.is_float:
            raise GradientError(f"grad: cannot differentiate with respect to {x.name!r} of dtype {x.dtype} "
                                f"(created at {x.site}); only floating-point tensors have gradients")


def grad(y: Node, xs: Sequence[Node]) -> list[Node]:
    """Gradients dy/dx for each x in ``xs`` as new (backward) nodes of y's graph."""
    xs = list(xs)
    _check(y, xs)
    path = _path(y, xs)
    missing = [n for n in path if not n.is_leaf and not get_op(n.op).has_vjp]
    if missing:
        listed = "\n".join(f"  - {n.op} ({n.name!r}) created at {n.site}" for n in missing)
        raise GradientError(f"grad: these ops on the path from the inputs to {y.name!r} have no gradient (VJP):\n"
                            f"{listed}")
    graph = y.graph
    start = len(graph.nodes)
    try:
        results = _backward(graph, y, xs, path)
    except BaseException:
        graph.remove_unreachable_since(start, [])  # leave no half-built backward nodes behind
        raise
    graph.remove_unreachable_since(start, results)
    return results


def _backward(graph, y: Node, xs: list[Node], path: list[Node]) -> list[Node]:
    """Step 3: the reverse walk; returns dy/dx for each x (nodes no result needs are removed by the caller)."""
    on_path = {n.id for n in path}
    wanted = {x.id for x in xs}
    contributions: dict[int, list[Node]] = {}
    totals: dict[int, Node] = {}
    with graph.backward_scope():
        contributions[y.id] = [graph.const(1.0, dtype=y.dtype)]
        _remember(graph, len(graph.nodes) - 1, "seed", y)
        for node in reversed(path):
            parts = contributions.pop(node.id, None)
            if parts is None:
                continue
            start = len(graph.nodes)
            g = _total(parts)
            _remember(graph, start, "sum", node)
            if node.id in wanted:
                totals[node.id] = g
            if node.is_leaf:
                continue
            start = len(graph.nodes)
            grads = get_op(node.op).vjp(node, g)
            _remember(graph, start, "vjp", node, grads)
            for x, gx in zip(node.inputs, grads):
                if gx is None or x.id not in on_path:
                    continue
                if gx.shape != x.shape or gx.dtype != x.dtype:
                    raise GradientError(f"internal error: the VJP of {node.op} returned {gx.type} for an input "
                                        f"of type {x.type} ({node.name!r} at {node.site})")
                contributions.setdefault(x.id, []).append(gx)
        # y not depending on x (or only through integer values) means a zero gradient
        results = []
        for x in xs:
            start = len(graph.nodes)
            results.append(totals[x.id] if x.id in totals else graph.const(np.zeros(x.shape), dtype=x.dtype))
            _remember(graph, start, "zero", x)
        return results


def _total(parts: list[Node]) -> Node:
    total = parts[0]
    for p in parts[1:]:
        total = fn.add(total, p)
    return total

