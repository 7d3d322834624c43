"""Textbook pictures: the forward graph drawn as in the course's figures, with the chain rule on its edges.

``gc.render(outputs, values=..., style="textbook")`` draws one node per forward op (a circle with ×, +, −, ÷; a
named box for any other op; a scalar constant operand is written into its op, ``**2``), the leaves as plain
labels, left to right. Every edge carries two numbers: the forward value of its source above it (blue arrow,
left to right) and, below it, the gradient of the output flowing back along that edge (red arrow, right to left,
``∂out/∂edge``). The output's last arrow carries its value and the seed gradient 1.

The gradients come from the forward graph alone, never from drawing the backward nodes: the forward ops are
copied into a scratch graph where every float edge ``x → op`` passes through its own identity node (a tap), and
``gc.grad`` of the output (seed 1) with respect to the taps gives each edge's upstream gradient. An input used
twice thus shows its two contributions on its two edges (the figure's sum at a branch), and the user's graph
is not touched. The scratch graph is evaluated with the NumPy interpreter from the leaves' values.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import numpy as np

from graphc.ir import GradientError, Graph, GraphcError, Node, root_name_scope, topo_ancestors
from graphc.picture import Picture, collect, dot_label, format_value, node_values
from runtime.interpreter import evaluate

STYLES = ("graph", "textbook")
VALUE_COLOUR, GRADIENT_COLOUR, NAME_COLOUR = "#2c4f7c", "#c0392b", "#777777"
SYMBOL = {"add": "+", "sub": "−", "mul": "×", "div": "÷", "pow": "**", "neg": "−", "matmul": "@"}
CIRCLE = ("add", "sub", "mul", "div", "pow", "neg")

Edge = tuple[int, int]  # (id of the consumer, operand position); the output's own edge is (id(output), -1)


def check_style(style: Any) -> str:
    """``style`` if it is one of :data:`STYLES`, else a clear error."""
    if style not in STYLES:
        raise GraphcError(f"render: style must be one of {', '.join(map(repr, STYLES))}, got {style!r}")
    return style


# -------------------------------------------------------------------------------------------- what to draw


def forward_outputs(graph: Graph, nodes: list[Node], named: list[tuple[str, Node]]) -> list[tuple[str, Node]]:
    """The outputs the figure ends in: the named forward (non-gradient) outputs, or for a whole graph its forward
    ops that no other forward op reads."""
    if named:
        outs = [(name, n) for name, n in named if not n.backward]
        if not outs:
            raise GraphcError("render: style='textbook' draws the forward graph: give its output (e.g. the loss), "
                              "not only gradients")
        return outs
    forward = [n for n in nodes if not n.backward]
    read = {id(x) for n in forward for x in n.inputs}
    outs = [(n.name, n) for n in forward if not n.is_leaf and id(n) not in read]
    if not outs:
        raise GraphcError(f"render: graph {graph.name!r} has no forward op to draw")
    return outs


def absorbed(n: Node, position: int) -> bool:
    """A scalar constant operand of an op is written into the op's node instead of drawn as a leaf."""
    x = n.inputs[position]
    return x.op == "const" and x.size == 1 and not n.is_leaf


def op_label(n: Node) -> str:
    """``×``, ``+``, ``**2``, ``×1.1``, or the op's name (with its scalar constant operands)."""
    consts = [(i, format_value(x.attrs["value"])) for i, x in enumerate(n.inputs) if absorbed(n, i)]
    symbol = SYMBOL.get(n.op)
    if symbol is None:
        return " ".join([n.op, *(c for _, c in consts)])
    if not consts:
        return symbol
    if len(consts) == len(n.inputs):
        return f"{symbol}({', '.join(c for _, c in consts)})"
    i, c = consts[0]
    return f"{c}{symbol}" if i == 0 else f"{symbol}{c}"


def given_name(n: Node) -> str | None:
    """The node's name when the user gave it (``name=``), None for generated names like ``mul_3``."""
    base = n.name.rsplit("/", 1)[-1]
    return None if re.fullmatch(rf"{re.escape(n.op)}_\d+", base) else n.name


# --------------------------------------------------------------------------------------------- gradients


def edge_gradients(y: Node, nodes: list[Node], vals: Mapping[int, Any]) -> tuple[dict[Edge, Any], str]:
    """The gradient of ``y`` flowing back along every float edge among ``nodes`` (y's ancestors), and a note
    saying why there are none (empty when there are)."""
    if y.shape != () or not y.type.is_float:
        return {}, f"no gradients: {y.name!r} is not a float scalar"
    leaves = [n for n in nodes if n.op in ("input", "param")]
    missing = [n.name for n in leaves if id(n) not in vals]
    if missing:
        return {}, f"no gradients: no value for {', '.join(missing)}"
    scratch = Graph(f"{y.graph.name}/textbook")
    taken = {n.name for n in nodes}
    copy: dict[int, Node] = {}
    taps: dict[Edge, Node] = {}
    feeds: dict[str, np.ndarray] = {}
    with root_name_scope():
        for n in nodes:
            if n.op in ("input", "param"):
                copy[id(n)] = scratch.input(n.name, n.shape, n.dtype)
                feeds[n.name] = np.asarray(vals[id(n)], dtype=n.type.np_dtype).reshape(n.shape)
            elif n.op == "const":
                copy[id(n)] = scratch.add_node("const", (), n.attrs, n.type, name=n.name, site=n.site)
            else:
                inputs = []
                for k, x in enumerate(n.inputs):
                    new = copy[id(x)]
                    if x.type.is_float:
                        name = f"tap_{len(taps)}"
                        while name in taken:
                            name = "_" + name
                        new = taps[(id(n), k)] = _tap(new, name)
                    inputs.append(new)
                copy[id(n)] = scratch.add_node(n.op, tuple(inputs), n.attrs, n.type, name=n.name, site=n.site)
    if not taps:
        return {}, ""
    from passes.autodiff import grad

    try:
        grads = grad(copy[id(y)], list(taps.values()))
    except GradientError as err:
        return {}, "no gradients: " + str(err).splitlines()[0]
    with np.errstate(all="ignore"):
        values = evaluate(topo_ancestors(grads), feeds, {}, grads)
    result: dict[Edge, Any] = dict(zip(taps, values))
    result[(id(y), -1)] = np.ones((), dtype=y.type.np_dtype)
    return result, ""


def _tap(x: Node, name: str) -> Node:
    """An identity node on one edge: its gradient is the gradient flowing back along that edge alone."""
    from ops import fn

    return fn.reshape(x, x.shape, name=name)


# ----------------------------------------------------------------------------------------------- picture


def _number(text: str, colour: str, arrow: str = "") -> str:
    return f'<font color="{colour}">{arrow}{_html(text)}</font>'


def _html(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def to_textbook(target: Any, values: Any = None) -> Picture:
    """The textbook picture of ``target`` (a Graph, a tensor, or a dict/list of tensors), see the module doc."""
    graph, nodes, named = collect(target)
    outs = forward_outputs(graph, nodes, named)
    drawn = topo_ancestors([n for _, n in outs])
    vals = node_values(graph, drawn, named, values)
    grads: dict[Edge, Any] = {}
    note = ""
    if values is not None:
        if len({id(n) for _, n in outs}) == 1:
            grads, note = edge_gradients(outs[0][1], drawn, vals)
        else:
            note = "no gradients: more than one output (render one scalar output)"
    y_name = outs[0][0]
    key = _number("above: forward value →", VALUE_COLOUR)
    if grads:
        key += "     " + _number(f"below: ← gradient ∂{y_name}/∂(edge)", GRADIENT_COLOUR)
    legend = (f'<{_html(graph.name)}<br/><font point-size="10">{key}'
              f'{"<br/>" + _html(note) if note else ""}</font>>')
    font = {"fontname": "Helvetica", "fontsize": "11"}
    dot = Picture(dot_label(graph.name), format="svg", node_attr=font, edge_attr=font,
                  graph_attr={"rankdir": "LR", "label": legend, "labelloc": "t", "fontname": "Helvetica",
                              "nodesep": "0.35", "ranksep": "0.6", "ordering": "in"})
    ids = {id(n): f"n{i}" for i, n in enumerate(drawn)}
    output_names: dict[int, list[str]] = {}
    for name, n in outs:
        output_names.setdefault(id(n), []).append(name)
    for n in drawn:
        if n.is_leaf:
            uses = [absorbed(c, k) for c in drawn for k, x in enumerate(c.inputs) if x is n]
            if uses and all(uses):
                continue  # written into its ops
            label = format_value(n.attrs["value"]) if n.op == "const" and n.size <= 4 else n.name
            dot.node(ids[id(n)], label=dot_label(label), shape="plaintext", tooltip=dot_label(_tooltip(n)))
            continue
        circle = n.op in CIRCLE
        name = given_name(n)
        if name in output_names.get(id(n), ()):
            name = None  # the output arrow already says it
        symbol = f'<font point-size="{16 if circle else 12}" color="black">{_html(op_label(n))}</font>'
        dot.node(ids[id(n)], label=f"<{symbol}>", shape="circle" if circle else "box",
                 style="solid" if circle else "rounded", margin="0.04" if circle else "0.1,0.05",
                 fontsize="9", fontcolor=NAME_COLOUR, tooltip=dot_label(_tooltip(n)),
                 **({"xlabel": dot_label(name)} if name else {}))
    for n in drawn:
        for k, x in enumerate(n.inputs):
            if not absorbed(n, k):
                _edge(dot, x, ids[id(n)], n.name, vals.get(id(x)), grads.get((id(n), k)), ids)
    for name, n in dict((id(n), (name, n)) for name, n in outs).values():
        sink = f"{ids[id(n)]}_out"
        dot.node(sink, label=dot_label(name), shape="plaintext", tooltip=dot_label(f"output {name}"))
        _edge(dot, n, sink, name, vals.get(id(n)), grads.get((id(n), -1)), ids)
    return dot


def _tooltip(n: Node) -> str:
    return f"{n.name}: {n.op} {n.dtype}{list(n.shape)}"


def _edge(dot: Picture, src: Node, dst: str, dst_name: str, value: Any, gradient: Any, ids: Mapping[int, str]) -> None:
    """One arrow labelled with the source's value and, under it, the gradient flowing back (``← 2.2``)."""
    rows = [_number(format_value(value), VALUE_COLOUR) if value is not None else ""]
    if gradient is not None:
        rows.append(_number(format_value(gradient), GRADIENT_COLOUR, arrow="← "))
    tip = f"{src.name} → {dst_name}"
    if value is not None:
        tip += f": value {format_value(value)}"
    if gradient is not None:
        tip += f", gradient {format_value(gradient)}"
    label = f"<{'<br/>'.join(rows)}>" if any(rows) else ""
    dot.edge(ids[id(src)], dst, label=label, color=VALUE_COLOUR, penwidth="1.2", tooltip=dot_label(tip))


__all__ = ["STYLES", "check_style", "edge_gradients", "forward_outputs", "op_label", "to_textbook"]
