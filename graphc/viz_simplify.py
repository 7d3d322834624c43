"""What the graph picture leaves out of the backward graph: the noise autodiff builds around constants.

The chain rule's literal VJPs leave nodes that carry nothing a reader needs: the seed's ``1 × g``, the power rule's
``2 − 1`` and ``t¹``, additions of zero. For the picture only (the graph and every program are untouched), each
backward node is replaced by what it equals:

- a node whose inputs are all constants is folded: drawn as the constant it computes (``2 − 1`` → ``1``);
- ``x × 1``, ``1 × x``, ``x ÷ 1``, ``x + 0``, ``0 + x``, ``x − 0`` and ``x¹`` are ``x`` when they keep x's shape
  and dtype (a broadcasting ``× 1`` stays: it changes the shape);
- nodes that nothing drawn needs any more (a bypassed node's constants) disappear.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from graphc.ir import Node, topo_ancestors
from runtime.interpreter import evaluate

_IDENTITY = {"mul": (1.0, (0, 1)), "div": (1.0, (1,)), "add": (0.0, (0, 1)), "sub": (0.0, (1,)), "pow": (1.0, (1,))}


def _constant(node: Node, folded: Mapping[int, Any]) -> Any:
    """The value of a constant or folded node, else None."""
    if node.op == "const":
        return node.attrs["value"]
    return folded.get(id(node))


def _bypass(node: Node, inputs: list[Node], folded: Mapping[int, Any]) -> Node | None:
    """The input ``node`` equals when it applies an identity element (see the module doc), else None."""
    rule = _IDENTITY.get(node.op)
    if rule is None or len(inputs) != 2:
        return None
    unit, positions = rule
    for position in positions:
        value, other = _constant(inputs[position], folded), inputs[1 - position]
        if value is not None and np.all(np.asarray(value) == unit) and other.type == node.type:
            return other
    return None


def simplify_backward(nodes: list[Node], keep: list[Node]) -> tuple[list[Node], dict[int, Node], dict[int, Any]]:
    """(the nodes to draw in order, each node's stand-in by id, the values of folded nodes by id) for ``nodes`` in
    topological order; ``keep`` are the nodes that must stay reachable (the named outputs; nodes nothing consumes
    stay too)."""
    stand_in: dict[int, Node] = {}
    folded: dict[int, Any] = {}

    def rep(x: Node) -> Node:
        return stand_in.get(id(x), x)

    for n in nodes:
        if not n.backward or n.is_leaf:
            continue
        inputs = [rep(x) for x in n.inputs]
        if all(_constant(x, folded) is not None for x in inputs):
            try:
                with np.errstate(all="ignore"):
                    folded[id(n)] = evaluate(topo_ancestors([n]), {}, {}, [n])[0]
            except Exception:  # noqa: BLE001 - an op the interpreter cannot fold here is simply drawn
                pass
            continue
        other = _bypass(n, inputs, folded)
        if other is not None:
            stand_in[id(n)] = other
    consumed = {id(x) for n in nodes for x in n.inputs}
    sinks = [n for n in nodes if id(n) not in consumed]  # a whole graph's ends are its outputs too
    needed: set[int] = set()
    stack = [rep(n) for n in [*keep, *sinks]] + [n for n in nodes if not n.backward and n.op != "const"]
    while stack:
        n = stack.pop()
        if id(n) in needed:
            continue
        needed.add(id(n))
        if id(n) not in folded:
            stack.extend(rep(x) for x in n.inputs)
    drawn = [n for n in nodes if id(n) in needed and id(n) not in stand_in]
    return drawn, stand_in, folded
