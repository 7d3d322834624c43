"""What every graphc picture shares: :class:`Picture` (a ``graphviz.Digraph`` that displays inline in Jupyter),
labels (:func:`dot_label`, :func:`format_value`), the nodes and values a picture shows (:func:`collect`,
:func:`node_values`) and writing a picture to a file (:func:`write_picture`). ``graphc.viz`` (the graph picture) and
``graphc.viz_textbook`` (the course's figure) build on it.
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


# ------------------------------------------------------------------------------------------- targets


def collect(target: Any) -> tuple[Graph, list[Node], list[tuple[str, Node]]]:
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
    ``dot`` is missing).

    In a notebook it displays as SVG (``_repr_mimebundle_``, ``_repr_svg_``); without a runnable ``dot`` it shows
    its DOT text as ``text/plain`` instead of raising."""

    path: str | None = None

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None, **kwargs: Any) -> dict[str, Any]:
        """The rendered picture (SVG unless ``include`` asks otherwise) plus its DOT text as ``text/plain``."""
        wanted = set(include) if include is not None else {"image/svg+xml", "text/plain"}
        wanted -= set(exclude or ())
        bundle: dict[str, Any] = {}
        images = wanted - {"text/plain"}
        missing = ""
        if images:
            try:
                if shutil.which("dot") is None:
                    raise graphviz.ExecutableNotFound(["dot"])
                bundle.update(super()._repr_mimebundle_(include=images, **kwargs))
            except graphviz.ExecutableNotFound:
                missing = "// Graphviz 'dot' not found: install it (e.g. 'apt-get install graphviz') for the picture\n"
            except graphviz.CalledProcessError as e:
                missing = f"// Graphviz 'dot' failed: {_stderr(e)}\n"
        if "text/plain" in wanted or missing:
            bundle["text/plain"] = missing + self.source
        return bundle

    def _repr_svg_(self) -> str | None:
        """The picture as SVG text, or None (nothing to show as SVG) when ``dot`` is missing or fails."""
        return self._repr_mimebundle_(include=["image/svg+xml"]).get("image/svg+xml")


def _stderr(e: graphviz.CalledProcessError) -> str:
    return (e.stderr.decode(errors="replace") if isinstance(e.stderr, bytes) else str(e.stderr or "")).strip()


def write_picture(picture: Picture, path: str | os.PathLike[str], what: str = "render") -> Picture:
    """Write ``picture`` to ``path`` in the format of its extension: ``.dot``/``.gv`` (DOT text), ``.svg``, ``.png``,
    ``.pdf`` (through Graphviz's ``dot``; without it the ``.dot`` next to it and one hint line). Sets and returns
    the picture's ``path``; errors name ``what`` was writing."""
    path = Path(path)
    fmt = path.suffix.lower().lstrip(".")
    if fmt not in FORMATS:
        raise GraphcError(f"{what}: cannot write {str(path)!r}: choose an extension among "
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
        raise GraphcError(f"{what}: Graphviz 'dot' failed writing {path}: {_stderr(e)}") from e
    path.write_bytes(data)
    picture.path = str(path)
    return picture
