"""Provenance: what the compile pipeline did to each node, recorded as the passes run (``graphc explain``).

One :class:`Provenance` per compilation travels on the :class:`~passes.compilation.Compilation` and ends on the
Plan (``plan.provenance``). Passes append one :class:`Event` per decision with :meth:`Provenance.record`, keyed by
the node the pass saw (a user node for simplify, a scratch node for the later passes); kernel-level notes (why a
kernel ends where it does) go to :meth:`Provenance.kernel_note`. Every time a pass moves the computation to a new
scratch graph it hands its old → new node map to :meth:`Provenance.moved`, so :meth:`Provenance.trace` follows a
user node through every stage and :meth:`Provenance.events_of` gathers the events of all its stand-ins.

Recording is cheap (appends to dicts): passes record only what changed a node (a rewrite, a fold, a CSE hit, a
decomposition, a fusion boundary, an in-place reuse); a node kept as it is has no event.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from graphc.ir import Node


@dataclass(frozen=True)
class Event:
    """One decision of a pass about a node: ``stage`` (pass name), ``what`` (``rewrite``, ``fold``, ``cse``,
    ``decompose``, ``boundary``, ``inplace``, ``donor``...), a readable ``text`` and the node it became (if any)."""

    stage: str
    what: str
    text: str
    into: Node | None = None


@dataclass
class Provenance:
    """Events by node, kernel notes by kernel name, and the node maps of the passes that moved the computation."""

    events: dict[Node, list[Event]] = field(default_factory=dict)
    kernels: dict[str, list[str]] = field(default_factory=dict)
    moves: list[dict[Node, Node]] = field(default_factory=list)

    def record(self, node: Node, stage: str, what: str, text: str, into: Node | None = None) -> None:
        """Note that ``stage`` did ``what`` to ``node`` (``text`` says it for a reader)."""
        self.events.setdefault(node, []).append(Event(stage, what, text, into))

    def kernel_note(self, kernel: str, text: str) -> None:
        """A fact about kernel ``kernel`` (a fusion boundary's reason, an epilogue, a view read in place)."""
        self.kernels.setdefault(kernel, []).append(text)

    def moved(self, mapping: dict[Node, Node]) -> None:
        """A pass rebuilt the computation in a new graph; ``mapping`` is its old → new node map."""
        self.moves.append(mapping)

    def trace(self, node: Node) -> list[Node]:
        """``node`` and, after each move, the node standing for it (stops where its value was dropped)."""
        chain = [node]
        for mapping in self.moves:
            nxt = mapping.get(chain[-1])
            if nxt is None:
                break
            if nxt is not chain[-1]:
                chain.append(nxt)
        return chain

    def events_of(self, node: Node) -> list[Event]:
        """Every event of ``node`` and of the nodes standing for it later, in pipeline order."""
        return [e for n in self.trace(node) for e in self.events.get(n, [])]


def describe(op: str, inputs: tuple[Node, ...]) -> str:
    """``mul(h, 1.0)``: an expression for a reader, small constants by value."""
    return f"{op}({', '.join(operand(x) for x in inputs)})"


def operand(x: Node) -> str:
    """A node's name, or its value when it is a constant with at most 4 elements."""
    if x.op == "const" and x.size <= 4:
        value = x.attrs["value"]
        return repr(value.item()) if value.size == 1 and value.ndim == 0 else str(value.tolist())
    return x.name
