"""Simplify: constant folding, algebraic identities, common-subexpression elimination, dead-code elimination.

The user's graph is never touched. ``run(outputs, updates)`` builds the simplified computation in a new scratch
:class:`Graph` that shares the user graph's ``state`` dict (the same object, so programs keep binding params
zero-copy by name) and whose inputs and params keep their names, shapes and dtypes. Every node copied or created
keeps the creation ``site`` (and ``name``, ``backward`` flag) of the user node it stands for, so runtime errors
still point at the user's line.

Algorithm (one topological sweep over the nodes the outputs and updates need, which is dead-code elimination):

1. For each node, in creation (= topological) order, form an *expression* ``(op, new inputs, attrs, type)`` from
   the already simplified inputs. Since inputs are simplified first, one sweep reaches the fixed point.
2. Apply the rewrite rules to the expression until none fires (each rule strictly shrinks it): a rule returns an
   existing scratch node (the expression *is* that value), a smaller expression, or nothing. Every rule keeps
   the result type (shape AND dtype) exactly; the driver checks it.

   - ``fold`` (here): every input is a constant → evaluate the op's NumPy ``reference`` (the semantics) into a
     constant of the same type. Not for impure ops (``Op.pure``: dropout's randomness), not past 1 MiB, and not
     when the result is larger than its largest input (beyond 256 bytes): a broadcast scalar is cheaper to
     compute than to read from memory. A reference that raises is not folded (the error then surfaces at run
     time, at the user's line).
   - the op's own algebra, ``Op.simplify`` (``ops.base``), driven by its facets: ``neutral`` operands
     (``add_zero`` x + 0, 0 + x; ``sub_zero`` x − 0; ``mul_one`` x·1, 1·x; ``div_one`` x/1 — only when the constant
     is all zeros/ones and x already has the result's type: x + zeros of a larger broadcast shape is not x; x·0 → 0
     is *not* done, it is wrong for inf/NaN; x + 0.0 → x maps −0.0 to −0.0 where IEEE gives +0.0, a sign-of-zero
     difference XLA's and TVM's algebraic simplifiers accept too), ``involution`` (``double_neg``: −(−x) → x),
     ``noop_if_same_type`` (``noop``: cast to x's dtype, broadcast_to x's shape, sum/mean/max over no axes or
     only kept extent-1 axes), and op-specific rewrites (``transpose``: identity permutation → x, transpose of a
     transpose → one; ``reshape``: to x's own shape → x, reshape of a reshape → one).
3. ``cse``: the surviving expression is looked up by ``(op, input ids, attrs.key())`` (inputs sorted for
   ``Op.commutative`` ops: add, mul); a hit reuses that node. Constants are keyed by value (up to 1 MiB); inputs
   and params are never merged, nor are impure nodes. A miss creates the node in the scratch graph.
4. Nodes that became unreachable (folded-away constants) are dropped from the scratch graph.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from graphc.ir import LEAF_OPS, Attrs, Graph, GraphcError, Node, TensorType, topo_ancestors
from ops.registry import get_op
from passes.compilation import Compilation, Pass
from passes.provenance import Provenance, describe

FOLD_LIMIT = 1 << 20     # bytes: larger constants are neither folded nor keyed by value
FOLD_GROWTH_FREE = 256   # bytes: a folded result may be larger than its inputs up to this size


@dataclass(frozen=True)
class Expr:
    """A node not yet built: ``op`` applied to scratch-graph ``inputs``."""

    op: str
    inputs: tuple[Node, ...]
    attrs: Attrs
    type: TensorType


@dataclass
class Simplified:
    """The result of :func:`run`: the scratch graph, outputs and updates in the caller's order, and the map from
    each user node whose value survives to the scratch node computing it."""

    graph: Graph
    outputs: list[Node]
    updates: list[tuple[Node, Node]]
    mapping: dict[Node, Node]
    report: dict[str, Any] = field(default_factory=dict)


def expr(op: str, inputs: tuple[Node, ...], **attrs: Any) -> Expr:
    """A new expression with normalized attributes and inferred type."""
    o = get_op(op)
    types = tuple(x.type for x in inputs)
    normalized = o.normalize(attrs, *types)
    return Expr(op, inputs, Attrs(normalized), o.infer(normalized, *types))


# ---------------------------------------------------------------------------------------------- rules


def _const(x: Node) -> np.ndarray | None:
    return x.attrs["value"] if x.op == "const" else None


def fold(e: Expr) -> Expr | None:
    """All inputs constant → a constant holding the reference result."""
    if not e.inputs or any(x.op != "const" for x in e.inputs) or not get_op(e.op).pure:
        return None
    largest = max(x.type.nbytes for x in e.inputs)
    if e.type.nbytes > FOLD_LIMIT or e.type.nbytes > max(largest, FOLD_GROWTH_FREE):
        return None
    try:
        with np.errstate(all="ignore"):
            value = np.asarray(get_op(e.op).reference(e.attrs, *(_const(x) for x in e.inputs)))
    except Exception:  # noqa: BLE001 - an op that fails on these constants fails at run time, at the user's line
        return None
    if value.shape != e.type.shape or value.dtype != e.type.np_dtype:
        return None
    value = np.array(value, order="C", copy=True)
    value.setflags(write=False)
    return Expr("const", (), Attrs({"value": value}), e.type)


def rewrite(e: Expr) -> tuple[str, Node | Expr] | None:
    """The first rule that fires on ``e``: ``fold``, then the op's own ``simplify`` facet."""
    if e.op in LEAF_OPS:
        return None
    folded = fold(e)
    if folded is not None:
        return "fold", folded
    found = get_op(e.op).simplify(e.attrs, e.inputs, e.type)
    if found is None:
        return None
    rule, result = found
    if isinstance(result, Node):
        return rule, result
    op, inputs, attrs = result
    return rule, expr(op, tuple(inputs), **attrs)


# --------------------------------------------------------------------------------------------- driver


class _Builder:
    """Builds the scratch graph: rewrites each expression, then reuses (CSE) or creates its node."""

    def __init__(self, user: Graph, provenance: Provenance) -> None:
        self.graph = Graph(user.name)
        self.provenance = provenance
        self.graph.state = user.state  # the same dict: params bind to the user's arrays
        self.graph.trainable = set(user.trainable)
        self.counts: Counter[str] = Counter()
        self.table: dict[tuple, Node] = {}

    def leaf(self, n: Node) -> Node:
        if n.op == "const":
            return self.emit(Expr("const", (), n.attrs, n.type), n)
        with self._scope(n):
            new = self.graph.add_node(n.op, (), n.attrs, n.type, name=n.name, site=n.site)
        (self.graph.inputs if n.op == "input" else self.graph.params)[n.name] = new
        return new

    def node(self, n: Node, mapping: dict[Node, Node]) -> Node:
        if n.is_leaf:
            return self.leaf(n)
        e = Expr(n.op, tuple(mapping[x] for x in n.inputs), n.attrs, n.type)
        for _ in range(16):  # each rule shrinks the expression; the bound is a safety net
            found = rewrite(e)
            if found is None:
                break
            name, result = found
            if result.type != e.type:
                raise GraphcError(f"internal error: simplify rule {name} changed the type of {n.name!r} "
                                  f"({e.type} -> {result.type}, created at {n.site})")
            self.counts[name] += 1
            self._note(n, name, e, result)
            if isinstance(result, Node):
                return result
            e = result
        return self.emit(e, n)

    def _key(self, e: Expr) -> tuple | None:
        if e.op in ("input", "param"):
            return None
        if e.op == "const":
            return None if e.type.nbytes > FOLD_LIMIT else (e.op, (), e.attrs.key())
        op = get_op(e.op)
        if not op.pure:
            return None
        ids = [id(x) for x in e.inputs]
        return (e.op, tuple(sorted(ids) if op.commutative else ids), e.attrs.key())

    def emit(self, e: Expr, origin: Node) -> Node:
        """The node for ``e``: an equal one already built, or a new one with ``origin``'s name and site."""
        key = self._key(e)
        if key is not None and key in self.table:
            self.counts["cse"] += 1
            found = self.table[key]
            self.provenance.record(origin, "simplify", "cse", f"CSE: {_show(e)} is already computed as "
                                   f"{found.name!r}; that node is reused", into=found)
            return found
        with self._scope(origin):
            new = self.graph.add_node(e.op, e.inputs, e.attrs, e.type, name=origin.name, site=origin.site)
        if key is not None:
            self.table[key] = new
        return new

    def _note(self, n: Node, rule: str, e: Expr, result: Node | Expr) -> None:
        """Record rule ``rule`` rewriting ``n`` (as expression ``e``) into ``result``."""
        if rule == "fold":
            text = f"constant-folded: {_show(e)} = {_show(result)} evaluated at compile time"
        else:
            text = f"simplified by rule {rule}: {_show(e)} → {_show(result)}"
        self.provenance.record(n, "simplify", rule, text, into=result if isinstance(result, Node) else None)

    def _scope(self, origin: Node) -> contextlib.AbstractContextManager[None]:
        """Nodes standing for a backward node are marked backward too (for rendering)."""
        return self.graph.backward_scope() if origin.backward else contextlib.nullcontext()

    def prune(self, keep: list[Node]) -> None:
        """Drop the nodes no root needs (and their input/param table entries)."""
        self.graph.remove_unreachable_since(0, keep)
        live = set(self.graph.nodes)
        for table in (self.graph.inputs, self.graph.params):
            for name in [k for k, v in table.items() if v not in live]:
                del table[name]


def _show(e: Node | Expr) -> str:
    """An expression or node for a reader: ``mul(h, 1.0)``, a small constant by value, else a node's name."""
    if e.op == "const":
        value = e.attrs["value"]
        return repr(value.item()) if value.size == 1 else f"const {e.type}"
    return e.name if isinstance(e, Node) else describe(e.op, e.inputs)


def run(outputs: list[Node], updates: list[tuple[Node, Node]],
        provenance: Provenance | None = None) -> Simplified:
    """Simplify the computation of ``outputs`` and ``updates`` (param → new value) into a new scratch graph;
    every rewrite, fold and CSE hit is recorded in ``provenance`` (by user node)."""
    outputs, updates = list(outputs), list(updates)
    roots = outputs + [v for _, v in updates] + [p for p, _ in updates]
    if not roots:
        raise GraphcError("simplify: nothing to compute (no outputs and no updates)")
    nodes = topo_ancestors(roots)
    builder = _Builder(roots[0].graph, provenance if provenance is not None else Provenance())
    mapping: dict[Node, Node] = {}
    for n in nodes:
        mapping[n] = builder.node(n, mapping)
    new_outputs = [mapping[n] for n in outputs]
    new_updates = [(mapping[p], mapping[v]) for p, v in updates]
    builder.prune(new_outputs + [v for _, v in new_updates] + [p for p, _ in new_updates])
    live = set(builder.graph.nodes)
    report = {"nodes_before": len(nodes), "nodes_after": len(builder.graph.nodes),
              "rewrites": Counter({"fold": 0, "cse": 0, **builder.counts})}
    return Simplified(builder.graph, new_outputs, new_updates, {k: v for k, v in mapping.items() if v in live},
                      report)


def _run(c: Compilation) -> Compilation:
    result = run(c.outputs, c.updates, c.provenance)
    return c.remapped(result.graph, result.outputs, result.updates, result.mapping,
                      report={**c.report, "simplify": result.report})


PASS = Pass("simplify", "constant folding, algebraic identities (each op's own), CSE, dead-code elimination", _run)
