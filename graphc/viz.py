"""Rendering: the forward and the backward graph in one Graphviz picture.

``to_dot`` writes DOT text itself (two clusters, "forward" and "backward"; backward nodes, the ones autodiff
created, in their own colour). With ``values`` every edge carries the value of its source node, as in the
textbook apple-purchase figure: forward values on forward edges, gradients on backward edges, and every output
gets a final arrow carrying its value. ``render`` writes ``.dot`` directly and ``.svg``/``.png``/``.pdf``
through Graphviz's ``dot``; without ``dot`` it writes the ``.dot`` file and prints one line of hint.
"""

from __future__ import annotations

import shutil
import subprocess
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


# ----------------------------------------------------------------------------------------------- DOT


def dot_label(text: str) -> str:
    """``text`` as a label for the ``graphviz`` package: backslashes literal, line breaks as DOT's ``\\n``."""
    return graphviz.escape(text).replace("\n", "\\n")


def _q(text: str) -> str:
    """A DOT double-quoted string; ``\\n`` separates lines."""
    return '"' + "\\n".join(line.replace("\\", "\\\\").replace('"', '\\"') for line in text.split("\n")) + '"'


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


def _node_style(node: Node) -> str:
    kind = node.op if node.is_leaf else ("backward" if node.backward else "forward")
    shape = SHAPE.get(node.op, "box")
    style = "filled" if node.is_leaf else "rounded,filled"
    border = BACKWARD_EDGE if node.backward else FORWARD_EDGE
    return f'shape={shape}, style="{style}", fillcolor="{FILL[kind]}", color="{border}"'


def to_dot(graph_or_outputs: Any, values: Any = None) -> str:
    """DOT text for ``graph_or_outputs`` (a Graph: all its nodes; tensors: their ancestors), see module doc."""
    graph, nodes, named = _collect(graph_or_outputs)
    program = getattr(values, "program", None)
    if program is not None and program.graph is graph:
        have = {name for name, _ in named}
        drawn = {id(n) for n in nodes}
        named += [(k, n) for k, n in zip(program.output_names, program.output_nodes)
                  if k not in have and id(n) in drawn]
    vals = node_values(graph, nodes, named, values)
    ids = {id(n): f"n{i}" for i, n in enumerate(nodes)}
    lines = [f"digraph {_q(graph.name)} {{",
             f'  graph [rankdir=LR, label={_q(graph.name)}, labelloc=t, fontname="Helvetica", nodesep=0.3];',
             '  node [fontname="Helvetica", fontsize=10];',
             '  edge [fontname="Helvetica", fontsize=10];']
    for cluster, colour, members in (("forward", FORWARD_EDGE, [n for n in nodes if not n.backward]),
                                     ("backward", BACKWARD_EDGE, [n for n in nodes if n.backward])):
        if not members:
            continue
        lines.append(f"  subgraph cluster_{cluster} {{")
        lines.append(f'    label="{cluster}"; color="{colour}"; fontcolor="{colour}"; style=rounded;')
        lines += [f"    {ids[id(n)]} [label={_q(node_label(n))}, {_node_style(n)}];" for n in members]
        lines.append("  }")
    for n in nodes:
        for x in n.inputs:
            lines.append(f"  {ids[id(x)]} -> {ids[id(n)]} [{_edge_style(x, n, vals)}];")
    lines += _output_arrows(nodes, named, ids, vals)
    lines.append("}")
    return "\n".join(lines) + "\n"


def _edge_style(src: Node, dst: Node | None, vals: Mapping[int, Any]) -> str:
    """Colour of the source's side (forward/backward); dashed when a forward value feeds a backward node."""
    colour = BACKWARD_EDGE if src.backward else FORWARD_EDGE
    parts = [f'color="{colour}"']
    if dst is not None and dst.backward and not src.backward:
        parts.append("style=dashed")
    if id(src) in vals:
        parts.append(f'label={_q(format_value(vals[id(src)]))}, fontcolor="{colour}"')
    return ", ".join(parts)


def _output_arrows(nodes: list[Node], named: list[tuple[str, Node]], ids: Mapping[int, str],
                   vals: Mapping[int, Any]) -> list[str]:
    """A final arrow out of every named output (and of every unused node that has a value)."""
    names: dict[int, list[str]] = {}
    for name, n in named:
        names.setdefault(id(n), []).append(name)
    used = {id(x) for n in nodes for x in n.inputs}
    lines = []
    for n in nodes:
        if id(n) not in names and (id(n) in used or id(n) not in vals or n.is_leaf):
            continue
        sink = f"{ids[id(n)]}_out"
        label = ", ".join(names.get(id(n), []))
        shape = "plaintext" if label else "point"
        colour = BACKWARD_EDGE if n.backward else FORWARD_EDGE
        lines.append(f'  {sink} [label={_q(label)}, shape={shape}, fontcolor="{colour}", color="{colour}"];')
        lines.append(f"  {ids[id(n)]} -> {sink} [{_edge_style(n, None, vals)}];")
    return lines


# -------------------------------------------------------------------------------------------- render


def render(graph_or_outputs: Any, path: str | Path, values: Any = None) -> str:
    """Draw ``graph_or_outputs`` to ``path`` (format by extension: .dot/.gv, .svg, .png, .pdf); returns the path
    written. Without Graphviz's ``dot`` an image request writes the ``.dot`` next to it and prints one hint line.
    """
    path = Path(path)
    fmt = path.suffix.lower().lstrip(".")
    if fmt not in FORMATS:
        raise GraphcError(f"render: cannot write {str(path)!r}: choose an extension among "
                          f"{', '.join('.' + f for f in FORMATS)}")
    text = to_dot(graph_or_outputs, values)
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt in ("dot", "gv"):
        path.write_text(text)
        return str(path)
    exe = shutil.which("dot")
    if exe is None:
        dot_path = path.with_suffix(".dot")
        dot_path.write_text(text)
        print(f"graphc: Graphviz 'dot' not found, wrote {dot_path} instead of {path} "
              f"(install Graphviz, e.g. 'apt-get install graphviz', to render .{fmt})", file=sys.stderr)
        return str(dot_path)
    proc = subprocess.run([exe, f"-T{fmt}", "-o", str(path)], input=text, text=True, capture_output=True)
    if proc.returncode != 0:
        raise GraphcError(f"render: Graphviz 'dot' failed writing {path}: {proc.stderr.strip()}")
    return str(path)


__all__ = ["format_value", "node_label", "node_values", "render", "to_dot"]
