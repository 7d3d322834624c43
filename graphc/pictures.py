"""Pictures of the compiler's decisions: the fused kernels over the op graph, and ``finish`` (the diagrams' return).

``kernel_picture(program)`` draws every node of the program's Plan, one Graphviz cluster per kernel (labelled with
its position in the schedule, name and kind); the edges that cross from one kernel into another carry the fusion
report's reason for that boundary (why the producer's kernel ends there). ``prog.render_kernels(path)`` is
:func:`render_kernels`. Files are written by ``graphc.picture.write_picture`` (format by extension).
"""

from __future__ import annotations

import os
import textwrap
from dataclasses import dataclass
from typing import Any

from graphc.dump import plan_of
from graphc.ir import Node, topo_ancestors
from graphc.picture import write_picture
from graphc.viz import Picture, dot_label
from passes.plan import Kernel, Plan

KERNEL_COLOUR, BOUNDARY_COLOUR, LEAF_FILL = "#2c4f7c", "#c0504d", "#ececec"
FILL = {"forward": "#dce8f7", "backward": "#fbdcc8", "update": "#d6f0d6"}


def finish(picture: Picture, path: str | os.PathLike[str] | None, what: str) -> Picture | str:
    """``picture`` when ``path`` is None, else the path written (``picture.path`` is set to it too)."""
    if path is None:
        return picture
    return write_picture(picture, path, what).path


def node_kinds(nodes: list[Node], outputs: list[Node], trainable: set[str]) -> dict[Node, str]:
    """Each node's part of a training step: "forward" (an output needs it), "update" (it reads optimizer or other
    non-trainable state, or feeds on such a node, and no output needs it) or "backward" (the gradients)."""
    forward = set(topo_ancestors(outputs))
    kinds: dict[Node, str] = {}
    for n in nodes:
        if n in forward and not n.backward:
            kinds[n] = "forward"
        elif n.op == "param" and n.name not in trainable or any(kinds.get(x) == "update" for x in n.inputs):
            kinds[n] = "update" if n not in forward else "forward"
        else:
            kinds[n] = "backward" if n.backward or n not in forward else "forward"
    return kinds


# ------------------------------------------------------------------------------------------- kernels


@dataclass(frozen=True)
class Boundary:
    """One value crossing from kernel ``producer`` into kernel ``consumer`` (positions in the schedule)."""

    value: Node
    producer: int
    consumer: int
    reason: str


def boundaries(plan: Plan) -> list[Boundary]:
    """Every (value, consuming kernel) that crosses a kernel boundary, with the fusion report's reason."""
    report = [str(line).strip() for line in plan.report.get("fusion", [])]
    producer = {v: i for i, k in enumerate(plan.kernels) for v in k.outputs}
    found = []
    for i, k in enumerate(plan.kernels):
        for x in k.inputs:
            if x not in producer:
                continue
            head = f"boundary {plan.kernels[producer[x]].name} -> {k.name} via {x.name}: "
            reason = next((line[len(head):] for line in report if line.startswith(head)), "")
            found.append(Boundary(x, producer[x], i, reason or "(no reason in the fusion report)"))
    return found


def _kernel_title(i: int, k: Kernel) -> str:
    return f"#{i} {k.name} [{k.kind}]"


def _op_label(n: Node) -> str:
    shape = "x".join(map(str, n.shape)) or "scalar"
    return f"{n.op}\n{shape}"


def kernel_picture(program: Any, reason_width: int = 32) -> Picture:
    """The Plan's nodes grouped into one cluster per kernel; boundary edges labelled with the fusion reason.
    Constants are not drawn (their edges neither); inputs and params are ellipses outside the clusters."""
    plan = plan_of(program)
    kinds = node_kinds(topo_ancestors(plan.outputs + [v for _, v in plan.updates]), plan.outputs,
                       program.graph.trainable)
    title = (f"{plan.graph.name}: {len(plan.kernels)} kernels from {sum(len(k.nodes) for k in plan.kernels)} ops "
             f"(red edges: kernel boundaries, with the reason fusion stopped; constants not drawn)")
    font = {"fontname": "Helvetica", "fontsize": "10"}
    picture = Picture("kernels", format="svg", node_attr=font, edge_attr={**font, "fontsize": "9"},
                      graph_attr={"rankdir": "TB", "label": dot_label(title), "labelloc": "t", "fontname": "Helvetica",
                                  "nodesep": "0.25", "ranksep": "0.35", "newrank": "true"})
    ids: dict[Node, str] = {}
    kernel_of: dict[Node, int] = {}
    for i, k in enumerate(plan.kernels):
        with picture.subgraph(name=f"cluster_k{i}") as cluster:
            kind = kinds[k.nodes[-1]]
            cluster.attr(label=dot_label(_kernel_title(i, k)), style="rounded,filled", color=KERNEL_COLOUR,
                         fillcolor=FILL[kind], fontcolor=KERNEL_COLOUR)
            for n in k.nodes:
                ids[n] = f"n{len(ids)}"
                kernel_of[n] = i
                cluster.node(ids[n], label=dot_label(_op_label(n)), shape="box", style="rounded,filled",
                             fillcolor="white", color=KERNEL_COLOUR)
    crossing = {(b.value, b.consumer): b.reason for b in boundaries(plan)}
    labelled: set[tuple[Node, int]] = set()
    for k in plan.kernels:
        for n in k.nodes:
            for x in dict.fromkeys(n.inputs):
                if x.op == "const":
                    continue
                if x not in ids:
                    ids[x] = f"n{len(ids)}"
                    picture.node(ids[x], label=dot_label(x.name), shape="ellipse", style="filled",
                                 fillcolor=LEAF_FILL)
                key = (x, kernel_of[n])
                if key in crossing:
                    style = {"color": BOUNDARY_COLOUR, "fontcolor": BOUNDARY_COLOUR, "penwidth": "1.5"}
                    if key not in labelled:
                        labelled.add(key)
                        style["label"] = dot_label(textwrap.fill(crossing[key], reason_width))
                    picture.edge(ids[x], ids[n], **style)
                else:
                    picture.edge(ids[x], ids[n], color="#888888" if x.is_leaf else KERNEL_COLOUR)
    return picture


def render_kernels(program: Any, path: str | os.PathLike[str] | None = None) -> Picture | str:
    """The fused kernels as clusters over the op graph (:func:`kernel_picture`); the Picture when ``path`` is
    None, else the path written (``.svg``, ``.png``, ``.pdf``, ``.dot``)."""
    return finish(kernel_picture(program), path, "render_kernels")


__all__ = ["Boundary", "boundaries", "finish", "kernel_picture", "node_kinds", "render_kernels"]
