"""Model diagrams: ``model.render(path, detail=..., backward=..., updates=...)``.

``detail="layers"`` (default): one box per layer (name, type, output shape in the model's data format, parameter
count) under an input box, top to bottom, as Keras' ``plot_model(show_shapes=True)``. ``backward=True`` adds the
loss and one backward box per layer beside it (the gradient flows up, arrows reversed); ``updates=True`` one
optimizer update box per trainable param. ``detail="ops"``: the training step's op graph, each layer's nodes in a
cluster named by the layer (nodes are named ``<layer>/<op>_<k>``); the loss in its own cluster, gradients (when
``backward``) and optimizer updates (when ``updates``) in theirs. ``detail="graph"``: the whole training step as
``gc.render`` draws it (forward, backward and updates; what ``render`` drew before the details existed).
"""

from __future__ import annotations

import html
import os
from typing import Any

from graphc.ir import GraphcError, Node
from graphc.pictures import FILL, finish, node_kinds
from graphc.viz import Picture, dot_label, node_label

DETAILS = ("layers", "ops", "graph")
EDGE = {"forward": "#2c4f7c", "backward": "#c0504d", "update": "#3d7a45"}
FONT = {"fontname": "Helvetica", "fontsize": "10"}


def _html_box(rows: list[tuple[str, str]], title: str, fill: str) -> str:
    """A Keras-like table label: a bold title row, then one row per (key, value)."""
    cells = "".join(f'<tr><td align="left">{html.escape(k)}</td><td align="left">{html.escape(v)}</td></tr>'
                    for k, v in rows)
    return (f'<<table border="0" cellborder="1" cellspacing="0" cellpadding="3">'
            f'<tr><td colspan="2" bgcolor="{fill}"><b>{html.escape(title)}</b></td></tr>{cells}</table>>')


def _shape(model: Any, shape: tuple[int, ...]) -> str:
    import graphc.nn.layout as layout

    return str((None, *layout.to_user(shape, model.data_format)))


def _layer_type(layer: Any) -> str:
    activation = getattr(layer, "activation", None)
    name = type(layer).__name__
    return f"{name} ({activation})" if isinstance(activation, str) and activation != "linear" and \
        name.lower() != activation.lower() else name


def _picture(model: Any, title: str, rankdir: str) -> Picture:
    return Picture(model.name, format="svg", node_attr={**FONT, "shape": "plaintext"}, edge_attr=FONT,
                   graph_attr={"rankdir": rankdir, "label": dot_label(title), "labelloc": "t",
                               "fontname": "Helvetica", "nodesep": "0.4", "ranksep": "0.35"})


def layer_picture(model: Any, backward: bool = False, updates: bool = False) -> Picture:
    """One box per layer (see the module docstring)."""
    total = model.count_params()
    trainable = set(model.graph.trainable)
    title = f"{model.name}: {len(model.layers)} layers, {total:,} params"
    pic = _picture(model, title, "TB")
    pic.node("input", label=_html_box([("output", _shape(model, model._layer_input_shape))], "input",
                                      FILL["forward"]))
    previous = "input"
    for i, layer in enumerate(model.layers):
        count = sum(layer.count_params())
        frozen = layer.count_params()[1]
        rows = [("output", _shape(model, layer.output_shape)),
                ("params", f"{count:,}" + (f" ({frozen:,} non-trainable)" if frozen else ""))]
        pic.node(f"L{i}", label=_html_box(rows, f"{layer.name}: {_layer_type(layer)}", FILL["forward"]))
        pic.edge(previous, f"L{i}", color=EDGE["forward"])
        previous = f"L{i}"
    if not (backward or updates):
        return pic
    if model.loss is None:
        raise GraphcError("model.render(backward=True / updates=True): the training step needs a loss and an "
                          "optimizer: call model.compile(loss=..., optimizer=...) first")
    pic.node("loss", label=_html_box([("output", "()")], f"loss: {model.loss}", FILL["backward"]))
    pic.edge(previous, "loss", color=EDGE["forward"])
    upstream = "loss"
    for i in reversed(range(len(model.layers))):
        layer = model.layers[i]
        grads = [(f"d {name}", str(p.shape)) for name, p in layer.params.items() if p.name in trainable]
        rows = [] if i == 0 else [("d input", _shape(model, model.layers[i - 1].output_shape))]
        if backward:
            pic.node(f"B{i}", label=_html_box(rows + grads, f"{layer.name} backward", FILL["backward"]))
            pic.edge(upstream, f"B{i}", color=EDGE["backward"], label=dot_label(_shape(
                model, layer.output_shape)), fontcolor=EDGE["backward"])
            with pic.subgraph() as same:
                same.attr(rank="same")
                same.node(f"L{i}")
                same.node(f"B{i}")
            pic.edge(f"L{i}", f"B{i}", style="dashed", color="#999999", constraint="false", arrowhead="none")
            upstream = f"B{i}"
        for p in layer.params.values():
            if updates and p.name in trainable:
                node = f"U_{p.name}"
                pic.node(node, label=_html_box([("param", str(p.shape))], f"update {p.name}",
                                               FILL["update"]))
                pic.edge(f"B{i}" if backward else "loss", node, color=EDGE["update"])
                pic.edge(node, f"L{i}", style="dotted", color=EDGE["update"], constraint="false")
    if updates:
        pic.attr(label=dot_label(f"{title}; optimizer {type(model.optimizer).__name__}"))
    return pic


def _cluster_of(node: Node, layers: list[str], kind: str) -> str:
    """The layer whose name scopes ``node``'s name, else the loss / backward / update cluster."""
    for name in layers:
        if node.name.startswith(name + "/"):
            return name
    if node.is_leaf:  # inputs, optimizer state, counters: outside every cluster
        return ""
    return {"forward": "loss", "backward": "backward (gradients)", "update": "optimizer update"}[kind]


def ops_picture(model: Any, batch_size: int, backward: bool = False, updates: bool = False) -> Picture:
    """The training step's op graph, one cluster per layer (see the module docstring)."""
    prog = model._program("train", batch_size)[0]
    nodes = prog.nodes
    kinds = node_kinds(nodes, prog.output_nodes, set(model.graph.trainable))
    shown = {"forward"} | ({"backward"} if backward else set()) | ({"update"} if updates else set())
    computed = [n for n in nodes if not n.is_leaf and kinds[n] in shown]
    used = {x for n in computed for x in n.inputs}
    drawn = [n for n in nodes if n in used or n in computed]
    layers = sorted((layer.name for layer in model.layers), key=len, reverse=True)
    pic = _picture(model, f"{model.name}: training step for batch {batch_size}, one cluster per layer", "TB")
    pic.attr("node", shape="box")
    ids = {n: f"n{i}" for i, n in enumerate(drawn)}
    clusters: dict[str, list[Node]] = {}
    for n in drawn:
        clusters.setdefault(_cluster_of(n, layers, kinds[n]), []).append(n)
    for i, (name, members) in enumerate(clusters.items()):
        if not name:  # the unscoped leaves, outside every cluster
            for n in members:
                pic.node(ids[n], label=dot_label(node_label(n)), shape="ellipse", style="filled",
                         fillcolor="#d6f0d6" if n.op == "input" else "#ececec")
            continue
        with pic.subgraph(name=f"cluster_{i}") as sub:
            sub.attr(label=dot_label(name), style="rounded", color=EDGE["forward"], fontcolor=EDGE["forward"])
            for n in members:
                fill = "#ececec" if n.is_leaf else FILL[kinds[n]]
                sub.node(ids[n], label=dot_label(node_label(n)), style="rounded,filled", fillcolor=fill)
    for n in drawn:
        for x in dict.fromkeys(n.inputs):
            if x in ids:
                pic.edge(ids[x], ids[n], color=EDGE[kinds[n]] if not n.is_leaf else EDGE["forward"])
    return pic


def render_model(model: Any, path: str | os.PathLike[str] | None = None, detail: str = "layers",
                 backward: bool = False, updates: bool = False, batch_size: int = 32) -> Picture | str:
    """The diagram of ``model`` (see the module docstring); the Picture when ``path`` is None, else the path
    written (``.svg``, ``.png``, ``.pdf``, ``.dot``)."""
    if detail not in DETAILS:
        raise GraphcError(f"model.render: detail must be one of {', '.join(map(repr, DETAILS))}, got {detail!r}")
    model._require_built()
    if detail == "layers":
        return finish(layer_picture(model, backward, updates), path, "model.render")
    model._require_compiled()
    if detail == "ops":
        return finish(ops_picture(model, batch_size, backward, updates), path, "model.render")
    from graphc.viz import to_graphviz

    prog = model._program("train", batch_size)[0]
    outputs = {"loss": prog.output_nodes[0]}
    outputs.update({f"new {param.name}": value for param, value in prog.updates})
    return finish(to_graphviz(outputs), path, "model.render")


__all__ = ["DETAILS", "layer_picture", "ops_picture", "render_model"]
