"""Rendering: the forward and the backward graph in one Graphviz picture, built on ``graphviz.Digraph``.

``to_graphviz`` builds a :class:`Picture` (a ``graphviz.Digraph``) with two clusters, "forward" and "backward"
(backward nodes, the ones autodiff created, in their own colour). With ``values`` every edge carries the value of
its source node, as in the textbook apple-purchase figure: forward values on forward edges, gradients on backward
edges, and every output gets a final arrow carrying its value. All quoting and escaping comes from the
``graphviz`` package (:func:`dot_label`), so any node name gives valid DOT; ``to_dot`` is its ``.source``.

``render`` returns the Picture. In Jupyter it displays inline: ``gc.render(g)`` as the last expression of a cell
(or the returned object) is shown through ``graphviz``'s ``_repr_mimebundle_``, which pipes the DOT through
Graphviz's ``dot`` executable into SVG. Given a path, ``render`` also writes ``.dot``/``.gv`` as DOT text and
``.svg``/``.png``/``.pdf`` through ``dot``; without ``dot`` it writes the ``.dot`` file and prints one line of hint.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import graphviz
import numpy as np

from graphc.ir import Graph, GraphcError, Node, topo_ancestors
from runtime.interpreter import evaluate

FORMATS = ("dot", "gv", "svg", "png", "pdf")

# colours: forward ops blue, backward ops orange, inputs green, params yellow, consts grey
FORWARD_EDGE, BACKWARD_EDGE = "#2c4f7c", "#c0504d"
FILL = {"input": "#d6f0d6", "param": "#fff0a8", "const": "#ececec", "forward": "#dce8f7", "backward": "#fbdcc8"}
SHAPE = {"input": "ellipse", "param": "box3d", "const": "note"}


# ------------------------------------------------------------------------------------------- targets


def _collect(target: Any) -> tuple[Graph, list[Node], list[tuple[str, Node]]]:
    """The graph, the nodes to draw (topological order) and the named outputs of ``target``."""
    if isinstance(target, Graph):
        return target, list(target.nodes), []
    if isinstance(target, Node):
        named = [(target.name, target)]
    elif isinstance(target, Mapping):
        named = [(str(k), v) for k, v in target.items()]
    elif isinstance(target, (list, tuple)):
        named = [(getattr(v, "name", str(i)), v) for i, v in enumerate(target)]
    else:
        raise GraphcError(f"render: expected a Graph, a tensor, or a dict/list of tensors, got {type(target).__name__}")
    if not named:
        raise GraphcError("render: nothing to draw (no outputs given)")
    for name, node in named:
        if not isinstance(node, Node):
            raise GraphcError(f"render: output {name!r} is a {type(node).__name__}, not a graphc tensor")
    graphs = {id(n.graph): n.graph for _, n in named}
    if len(graphs) > 1:
        raise GraphcError("render: all tensors must belong to one graph")
    return named[0][1].graph, topo_ancestors([n for _, n in named]), named


# -------------------------------------------------------------------------------------------- values


def _evaluable(nodes: list[Node], feeds: Mapping[str, np.ndarray], state: Mapping[str, np.ndarray]) -> list[Node]:
    """The nodes among ``nodes`` (and their ancestors) whose value follows from ``feeds`` and ``state``."""
    ok: dict[int, bool] = {}
    out = []
    for n in topo_ancestors(nodes):
        if n.op == "input":
            good = n.name in feeds
        elif n.op == "param":
            good = n.name in state
        else:
            good = all(ok[id(x)] for x in n.inputs)
        ok[id(n)] = good
        if good:
            out.append(n)
    return out


def _as_feed(node: Node, value: Any) -> np.ndarray | None:
    """``value`` as an array of ``node``'s type, or None when it does not fit (it is then not used as a feed)."""
    try:
        array = np.asarray(value, dtype=node.type.np_dtype)
    except (TypeError, ValueError):
        return None
    return array if array.shape == node.shape else None


def node_values(graph: Graph, nodes: list[Node], named: list[tuple[str, Node]], values: Any) -> dict[int, Any]:
    """Values of the drawn nodes (keyed by ``id(node)``) recomputed from what ``values`` provides.

    A program's :class:`~runtime.program.Results` brings the feeds of its call: every node that follows from
    them and ``graph.state`` is re-evaluated with the NumPy interpreter (returned outputs take precedence).
    A plain mapping is read by output name and node name; its entries named like graph inputs are used as
    feeds too, so everything computable from them is annotated. Params are read from ``graph.state`` now: after
    a program that updates them, intermediate values reflect the updated weights.
    """
    if values is None:
        return {}
    if not isinstance(values, Mapping):
        raise GraphcError(f"render: values must be a mapping (e.g. what a compiled program returned), "
                          f"got {type(values).__name__}")
    feeds: dict[str, np.ndarray] = {}
    program = getattr(values, "program", None)
    by_name: dict[str, Node] = {n.name: n for n in nodes}
    by_name.update({name: n for name, n in named})
    if program is not None:
        by_name.update(zip(program.output_names, program.output_nodes))
    raw = dict(getattr(values, "feeds", {}) or {})
    raw.update({k: v for k, v in values.items() if k in graph.inputs and k not in raw})
    for name, value in raw.items():
        array = _as_feed(graph.inputs[name], value) if name in graph.inputs else None
        if array is not None:
            feeds[name] = array
    result: dict[int, Any] = {}
    computable = _evaluable(nodes, feeds, graph.state)
    if computable:
        drawn = {id(n) for n in nodes}
        wanted = [n for n in computable if id(n) in drawn]
        with np.errstate(all="ignore"):
            for n, v in zip(wanted, evaluate(computable, feeds, graph.state, wanted)):
                result[id(n)] = v
    for key, value in values.items():
        node = by_name.get(str(key))
        if node is not None:
            result[id(node)] = value
    return result


def format_value(value: Any) -> str:
    """Compact text for an edge label: scalars as ``220`` or ``2.2``, small arrays listed, others summarized."""
    array = np.asarray(value)
    if array.dtype.kind not in "biuf":
        return type(value).__name__
    if array.size == 1:
        return _scalar(array.reshape(()).item())
    if array.size == 0:
        return f"[{'x'.join(map(str, array.shape))}] empty"
    if array.size <= 4:
        return "[" + ", ".join(_scalar(x) for x in array.ravel().tolist()) + "]"
    dims = "x".join(map(str, array.shape))
    if array.dtype.kind == "b":
        return f"[{dims}] {int(array.sum())} true"
    return f"[{dims}] {_scalar(array.min().item())}..{_scalar(array.max().item())}"


def _scalar(x: Any) -> str:
    if isinstance(x, bool):
        return str(x)
    if isinstance(x, int):
        return str(x)
    return f"{x + 0.0:.5g}"  # + 0.0 turns -0.0 into 0.0


# ------------------------------------------------------------------------------------------- picture


def dot_label(text: str) -> str:
    """``text`` as a label for the ``graphviz`` package: backslashes and ``<...>`` literal, line breaks as DOT's
    ``\\n``; the package adds the quotes (and escapes ``"``)."""
    return graphviz.nohtml(graphviz.escape(text).replace("\n", "\\n"))


class Picture(graphviz.Digraph):
    """The ``graphviz.Digraph`` that :func:`to_graphviz` and :func:`render` return (SVG by default, so Jupyter shows
    it inline); ``path`` is the file ``render`` wrote (None when it wrote none; the ``.dot`` fallback when Graphviz's
    ``dot`` is missing)."""

    path: str | None = None


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


def to_graphviz(graph_or_outputs: Any, values: Any = None) -> Picture:
    """The picture of ``graph_or_outputs`` (a Graph: all its nodes; tensors: their ancestors), see module doc."""
    graph, nodes, named = _collect(graph_or_outputs)
    program = getattr(values, "program", None)
    if program is not None and program.graph is graph:
        have = {name for name, _ in named}
        drawn = {id(n) for n in nodes}
        named += [(k, n) for k, n in zip(program.output_names, program.output_nodes)
                  if k not in have and id(n) in drawn]
    vals = node_values(graph, nodes, named, values)
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
                sub.node(ids[id(n)], label=dot_label(node_label(n)), **_node_style(n))
    for n in nodes:
        for x in n.inputs:
            dot.edge(ids[id(x)], ids[id(n)], **_edge_style(x, n, vals))
    _output_arrows(dot, nodes, named, ids, vals)
    return dot


def to_dot(graph_or_outputs: Any, values: Any = None) -> str:
    """DOT text of ``graph_or_outputs``: ``to_graphviz(graph_or_outputs, values).source``."""
    return to_graphviz(graph_or_outputs, values).source


def _output_arrows(dot: graphviz.Digraph, nodes: list[Node], named: list[tuple[str, Node]],
                   ids: Mapping[int, str], vals: Mapping[int, Any]) -> None:
    """A final arrow out of every named output (and of every unused node that has a value)."""
    names: dict[int, list[str]] = {}
    for name, n in named:
        names.setdefault(id(n), []).append(name)
    used = {id(x) for n in nodes for x in n.inputs}
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


def render(graph_or_outputs: Any, path: str | os.PathLike[str] | None = None, values: Any = None) -> Picture:
    """The picture of ``graph_or_outputs`` (displays inline in Jupyter); with ``path`` also written there.

    The format follows the extension: ``.dot``/``.gv`` (DOT text), ``.svg``, ``.png``, ``.pdf`` (through
    Graphviz's ``dot``). Without ``dot`` an image request writes the ``.dot`` next to it and prints one hint line.
    The returned picture's ``path`` is the file written.
    """
    picture = to_graphviz(graph_or_outputs, values)
    if path is None:
        return picture
    path = Path(path)
    fmt = path.suffix.lower().lstrip(".")
    if fmt not in FORMATS:
        raise GraphcError(f"render: cannot write {str(path)!r}: choose an extension among "
                          f"{', '.join('.' + f for f in FORMATS)}")
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt in ("dot", "gv"):
        path.write_text(picture.source)
        picture.path = str(path)
        return picture
    try:
        if shutil.which("dot") is None:
            raise graphviz.ExecutableNotFound(["dot"])
        data = picture.pipe(format=fmt, quiet=True)
    except graphviz.ExecutableNotFound:
        dot_path = path.with_suffix(".dot")
        dot_path.write_text(picture.source)
        print(f"graphc: Graphviz 'dot' not found, wrote {dot_path} instead of {path} "
              f"(install Graphviz, e.g. 'apt-get install graphviz', to render .{fmt})", file=sys.stderr)
        picture.path = str(dot_path)
        return picture
    except graphviz.CalledProcessError as e:
        stderr = e.stderr.decode(errors="replace") if isinstance(e.stderr, bytes) else str(e.stderr or "")
        raise GraphcError(f"render: Graphviz 'dot' failed writing {path}: {stderr.strip()}") from e
    path.write_bytes(data)
    picture.path = str(path)
    return picture


__all__ = ["Picture", "dot_label", "format_value", "node_label", "node_values", "render", "to_dot", "to_graphviz"]
