"""The value the compile pipeline passes along (:class:`Compilation`) and the shape of a pass (:class:`Pass`).

A pass is data: a name, a one-line description and ``run(c) -> c``. Each pass module defines its ``PASS``;
``passes.pipeline`` lists them in order and ``build_plan`` is a loop over that list. A pass never changes the
Compilation it is given: it returns a new one (``c.but(...)``) with its result and its report added.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from graphc.ir import Graph, Node, topo_ancestors
from passes.plan import Buffer, Kernel
from passes.provenance import Provenance


@dataclass(frozen=True)
class Compilation:
    """The computation at one point of the pipeline.

    ``graph``/``outputs``/``updates``: the current graph (the user's, then scratch graphs sharing its state) and
    the values to compute, in the caller's order. ``node_map``: each user node whose value survives → the current
    node computing it. ``kernels``: set by fusion, reordered by scheduling. ``buffers``/``arena_bytes``/``inplace``/
    ``state_inplace``/``slices``: set by memory planning. ``report``: each pass's report by key (``simplify``,
    ``decompose``, ``fusion``, ``schedule``, ``memory``). ``provenance``: what each pass did to each node (shared
    by every copy).
    """

    graph: Graph
    outputs: list[Node]
    updates: list[tuple[Node, Node]]
    node_map: dict[Node, Node]
    kernels: list[Kernel] | None = None
    buffers: dict[Node, Buffer] | None = None
    arena_bytes: int = 0
    inplace: dict[Node, Node] = field(default_factory=dict)
    state_inplace: dict[Node, Node] = field(default_factory=dict)
    slices: dict[Node, tuple[Node, int]] = field(default_factory=dict)
    report: dict[str, Any] = field(default_factory=dict)
    provenance: Provenance = field(default_factory=Provenance)

    @classmethod
    def start(cls, outputs: list[Node], updates: list[tuple[Node, Node]]) -> Compilation:
        outputs, updates = list(outputs), list(updates)
        graph = (outputs or [v for _, v in updates])[0].graph
        c = cls(graph, outputs, updates, {})
        return c.but(node_map={n: n for n in c.nodes()})

    def but(self, **changes: Any) -> Compilation:
        """A copy with ``changes`` applied."""
        return dataclasses.replace(self, **changes)

    def remapped(self, graph: Graph, outputs: list[Node], updates: list[tuple[Node, Node]],
                 mapping: dict[Node, Node], **changes: Any) -> Compilation:
        """The computation moved to ``graph`` by a pass whose old → new node map is ``mapping``."""
        node_map = {user: mapping[n] for user, n in self.node_map.items() if n in mapping}
        self.provenance.moved(mapping)
        return self.but(graph=graph, outputs=outputs, updates=updates, node_map=node_map, **changes)

    @property
    def roots(self) -> list[Node]:
        return self.outputs + [value for _, value in self.updates]

    def nodes(self) -> list[Node]:
        """Every node the outputs and update values need, in topological order."""
        return topo_ancestors(self.roots)


@dataclass(frozen=True)
class Pass:
    """One stage of the pipeline."""

    name: str
    description: str
    run: Callable[[Compilation], Compilation]
