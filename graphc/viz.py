"""Rendering: the forward and the backward graph in one Graphviz picture, built on ``graphviz.Digraph``.

``to_graphviz`` builds a :class:`Picture` (a ``graphviz.Digraph``) with two clusters, "forward" and "backward"
(backward nodes, the ones autodiff created, in their own colour). With ``values`` every edge carries the value of
its source node, as in the textbook apple-purchase figure: forward values on forward edges, gradients on backward
edges, and every output gets a final arrow carrying its value. The backward cluster is drawn simplified
(:mod:`graphc.viz_simplify`): the noise of the literal chain rule (the seed's ``× 1``, ``2 − 1``, ``t¹``, ``+ 0``)
is left out and constant-only nodes are drawn as the constant they compute; the graph itself is untouched. All
quoting and escaping comes from the ``graphviz`` package (:func:`dot_label`), so any node name gives valid DOT;
``to_dot`` is its ``.source``.

``style="textbook"`` draws the course's figure instead: forward ops only, each edge with its value above and the
gradient flowing back below (:mod:`graphc.viz_textbook`).

``render`` returns the Picture and, without a path, writes nothing. In Jupyter it displays inline: ``gc.render(g)``
as the last expression of a cell is shown through ``Picture._repr_mimebundle_`` (SVG piped through Graphviz's
``dot``, plus the DOT text as ``text/plain``; without a runnable ``dot``, the DOT text only, never an error). Given
a path, ``render`` also writes ``.dot``/``.gv`` as DOT text and ``.svg``/``.png``/``.pdf`` through ``dot``; without
``dot`` it writes the ``.dot`` file and prints one line of hint.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import graphviz
import numpy as np

import graphc.viz_textbook as viz_textbook
from graphc.ir import Node
from graphc.picture import FORMATS, Picture, collect, dot_label, format_value, node_values, write_picture
from graphc.viz_simplify import simplify_backward

# colours: forward ops blue, backward ops orange, inputs green, params yellow, consts grey
FORWARD_EDGE, BACKWARD_EDGE = "#2c4f7c", "#c0504d"
FILL = {"input": "#d6f0d6", "param": "#fff0a8", "const": "#ececec", "forward": "#dce8f7", "backward": "#fbdcc8"}
SHAPE = {"input": "ellipse", "param": "box3d", "const": "note"}


def _type_text(node: Node) -> str:
    return f"{node.dtype}{list(node.shape)}"


def _attr_text(node: Node) -> str:
    shown = []
    for k, v in node.attrs.items():
        if isinstance(v, np.ndarray) or v is None or v is False:
            continue
        text = f"{k}={v}"
        if len(text) <= 24:
            shown.append(text)
    return " ".join(shown)


def node_label(node: Node) -> str:
    """Name, op, dtype and shape (a constant shows its value when small)."""
    if node.op == "const":
        value = node.attrs["value"]
        head = format_value(value) if value.size <= 4 else node.name
        return f"{head}\nconst {_type_text(node)}"
    attrs = _attr_text(node)
    op = f"{node.op} {attrs}" if attrs else node.op
    return f"{node.name}\n{op}\n{_type_text(node)}"


def _node_style(node: Node) -> dict[str, str]:
    kind = node.op if node.is_leaf else ("backward" if node.backward else "forward")
    return {"shape": SHAPE.get(node.op, "box"), "style": "filled" if node.is_leaf else "rounded,filled",
            "fillcolor": FILL[kind], "color": BACKWARD_EDGE if node.backward else FORWARD_EDGE}


def _edge_style(src: Node, dst: Node | None, vals: Mapping[int, Any]) -> dict[str, str]:
    """Colour of the source's side (forward/backward); dashed when a forward value feeds a backward node."""
    colour = BACKWARD_EDGE if src.backward else FORWARD_EDGE
    style = {"color": colour}
    if dst is not None and dst.backward and not src.backward:
        style["style"] = "dashed"
    if id(src) in vals:
        style.update(label=dot_label(format_value(vals[id(src)])), fontcolor=colour)
    return style


def to_graphviz(graph_or_outputs: Any, values: Any = None, style: str = "graph") -> Picture:
    """The picture of ``graph_or_outputs`` (a Graph: all its nodes; tensors: their ancestors), see module doc;
    ``style="textbook"``: the course's figure instead (:mod:`graphc.viz_textbook`)."""
    if viz_textbook.check_style(style) == "textbook":
        return viz_textbook.to_textbook(graph_or_outputs, values)
    graph, nodes, named = collect(graph_or_outputs)
    program = getattr(values, "program", None)
    if program is not None and program.graph is graph:
        have = {name for name, _ in named}
        drawn = {id(n) for n in nodes}
        named += [(k, n) for k, n in zip(program.output_names, program.output_nodes)
                  if k not in have and id(n) in drawn]
    vals = node_values(graph, nodes, named, values)
    nodes, stand_in, folded = simplify_backward(nodes, [n for _, n in named])
    named = [(name, stand_in.get(id(n), n)) for name, n in named]
    vals = {**vals, **{k: v for k, v in folded.items() if k not in vals}}
    ids = {id(n): f"n{i}" for i, n in enumerate(nodes)}
    font = {"fontname": "Helvetica", "fontsize": "10"}
    dot = Picture(dot_label(graph.name), format="svg", node_attr=font, edge_attr=font,
                  graph_attr={"rankdir": "LR", "label": dot_label(graph.name), "labelloc": "t",
                              "fontname": "Helvetica", "nodesep": "0.3"})
    for cluster, colour, members in (("forward", FORWARD_EDGE, [n for n in nodes if not n.backward]),
                                     ("backward", BACKWARD_EDGE, [n for n in nodes if n.backward])):
        if not members:
            continue
        with dot.subgraph(name=f"cluster_{cluster}") as sub:
            sub.attr(label=cluster, color=colour, fontcolor=colour, style="rounded")
            for n in members:
                if id(n) in folded:  # a constant-only backward node, drawn as the constant it computes
                    label = f"{format_value(folded[id(n)])}\nconst {_type_text(n)} (folded)"
                    sub.node(ids[id(n)], label=dot_label(label), shape=SHAPE["const"], style="filled",
                             fillcolor=FILL["const"], color=BACKWARD_EDGE)
                else:
                    sub.node(ids[id(n)], label=dot_label(node_label(n)), **_node_style(n))
    edges = [(stand_in.get(id(x), x), n) for n in nodes if id(n) not in folded for x in n.inputs]
    for x, n in edges:
        dot.edge(ids[id(x)], ids[id(n)], **_edge_style(x, n, vals))
    _output_arrows(dot, nodes, named, ids, vals, {id(x) for x, _ in edges})
    return dot


def to_dot(graph_or_outputs: Any, values: Any = None, style: str = "graph") -> str:
    """DOT text of ``graph_or_outputs``: ``to_graphviz(graph_or_outputs, values, style).source``."""
    return to_graphviz(graph_or_outputs, values, style).source


def _output_arrows(dot: graphviz.Digraph, nodes: list[Node], named: list[tuple[str, Node]],
                   ids: Mapping[int, str], vals: Mapping[int, Any], used: set[int]) -> None:
    """A final arrow out of every named output (and of every unused node that has a value); ``used``: the ids of
    nodes an edge leaves."""
    names: dict[int, list[str]] = {}
    for name, n in named:
        names.setdefault(id(n), []).append(name)
    for n in nodes:
        if id(n) not in names and (id(n) in used or id(n) not in vals or n.is_leaf):
            continue
        sink = f"{ids[id(n)]}_out"
        label = ", ".join(names.get(id(n), []))
        colour = BACKWARD_EDGE if n.backward else FORWARD_EDGE
        dot.node(sink, label=dot_label(label), shape="plaintext" if label else "point", fontcolor=colour,
                 color=colour)
        dot.edge(ids[id(n)], sink, **_edge_style(n, None, vals))


# -------------------------------------------------------------------------------------------- render


def render(graph_or_outputs: Any, path: str | os.PathLike[str] | None = None, values: Any = None,
           style: str = "graph") -> Picture:
    """The picture of ``graph_or_outputs`` (displays inline in Jupyter); with ``path`` also written there.

    ``style="graph"``: forward and backward nodes (module doc); ``style="textbook"``: the forward ops only, each
    edge with its value above and the gradient flowing back below, as in the course's figures
    (:mod:`graphc.viz_textbook`). Without ``path`` nothing is written.

    The format follows the extension: ``.dot``/``.gv`` (DOT text), ``.svg``, ``.png``, ``.pdf`` (through
    Graphviz's ``dot``). Without ``dot`` an image request writes the ``.dot`` next to it and prints one hint line.
    The returned picture's ``path`` is the file written.
    """
    picture = to_graphviz(graph_or_outputs, values, style)
    return picture if path is None else write_picture(picture, path)


__all__ = ["FORMATS", "Picture", "dot_label", "format_value", "node_label", "node_values", "render", "to_dot",
           "to_graphviz"]
