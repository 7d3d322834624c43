"""Testing helpers for users: gradient checks against finite differences, backend agreement of outputs and
gradients (``assert_backends_agree``) and of training steps (``assert_step_agrees``; both in
:mod:`graphc.agreement`), and structural equality of two computations (``assert_graphs_equal``, with
``canonical_text`` to print one).

``check_grads`` copies the graph into float64 (inputs, params, constants and dtype attributes promoted), builds
the symbolic gradients there and compares them with central differences (f(x+h) - f(x-h)) / 2h, so a float32
model is checked without float32 rounding noise.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from graphc.agreement import StepAgreement, assert_backends_agree, assert_step_agrees
from graphc.api import compile as compile_program
from graphc.api import grad
from graphc.ir import FeedError, Graph, GraphcError, Node, TensorType, root_name_scope, topo_ancestors
from ops.registry import apply

__all__ = ["StepAgreement", "assert_backends_agree", "assert_graphs_equal", "assert_step_agrees", "canonical_text",
           "check_grads", "promote_to_float64"]


def promote_to_float64(outputs: Sequence[Node]) -> tuple[Graph, dict[int, Node]]:
    """A float64 copy of everything ``outputs`` depend on; returns the new graph and old-id → new-node map."""
    graph = outputs[0].graph
    new = Graph(f"{graph.name}_float64")
    mapping: dict[int, Node] = {}

    def wider(dtype: str) -> str:
        return "float64" if dtype == "float32" else dtype

    with root_name_scope():  # the copies keep their names exactly, inside any gc.name_scope
        for n in topo_ancestors(list(outputs)):
            if n.op == "input":
                copy = new.input(n.name, n.shape, wider(n.dtype))
            elif n.op == "param":
                copy = new.param(n.name, graph.state[n.name], dtype=wider(n.dtype))
            elif n.op == "const":
                copy = new.const(n.attrs["value"], dtype=wider(n.dtype), name=n.name)
            else:  # names are kept (unique in the source graph, so unique here) so reports match the user's graph
                attrs = {k: wider(v) if k == "dtype" and isinstance(v, str) else v for k, v in n.attrs.items()}
                copy = apply(n.op, *(mapping[x.id] for x in n.inputs), name=n.name, **attrs)
            mapping[n.id] = copy
    return new, mapping


def check_grads(y: Node, xs: Sequence[Node], feeds: Mapping[str, Any], eps: float = 1e-6, rtol: float = 1e-5,
                atol: float = 1e-6, max_elements: int = 4000, seed: int = 0) -> None:
    """Assert that gc.grad(y, xs) matches central finite differences in float64.

    ``xs`` must be inputs or params. Tensors with more than ``max_elements`` elements are checked on a random
    subset of that many elements. Raises ``AssertionError`` naming the worst element otherwise.
    """
    for x in xs:
        if x.op not in ("input", "param"):
            raise GraphcError(f"check_grads: {x.name!r} is a {x.op} node; finite differences need inputs or params")
    unknown = [k for k in feeds if k not in y.graph.inputs]
    if unknown:
        raise FeedError(f"check_grads: unknown feed {', '.join(map(repr, unknown))}; graph {y.graph.name!r} has "
                        f"inputs {', '.join(map(repr, y.graph.inputs)) or '(none)'}")
    graph64, mapping = promote_to_float64([y, *xs])
    y64, xs64 = mapping[y.id], [mapping[x.id] for x in xs]
    grads = grad(y64, xs64)
    analytic = compile_program(grads, backend="numpy")
    value = compile_program(y64, backend="numpy")
    feeds64 = {k: _widen(v) for k, v in feeds.items() if k in graph64.inputs}
    computed = analytic(**feeds64)
    rng = np.random.default_rng(seed)
    failures = []
    for x, g in zip(xs64, computed):
        target = feeds64[x.name] if x.op == "input" else graph64.state[x.name]
        target = np.asarray(target)
        if x.op == "input":
            feeds64[x.name] = target = np.array(target, dtype=np.float64, order="C")
        flat = target.reshape(-1)
        assert np.shares_memory(flat, target), "finite differences must perturb the array the program reads"
        indices = np.arange(flat.size)
        if flat.size > max_elements:
            indices = rng.choice(flat.size, max_elements, replace=False)
        numeric = np.empty(len(indices))
        for j, i in enumerate(indices):
            saved = flat[i]
            flat[i] = saved + eps
            plus = float(value(**feeds64))
            flat[i] = saved - eps
            minus = float(value(**feeds64))
            flat[i] = saved
            numeric[j] = (plus - minus) / (2 * eps)
        got = np.asarray(g).reshape(-1)[indices]
        err = np.abs(got - numeric) - (atol + rtol * np.abs(numeric))
        finite = np.isfinite(got) & np.isfinite(numeric)  # a NaN on either side is a failure, not a pass
        if np.any(err > 0) or not np.all(finite):
            worst = int(np.argmax(np.where(finite, err, np.inf)))
            where = np.unravel_index(indices[worst], x.shape) if x.shape else ()
            a, n = got[worst], numeric[worst]
            failures.append(f"d{y.name}/d{x.name} at index {tuple(int(i) for i in where)}: analytic {a:.8g}, "
                            f"finite difference {n:.8g} (abs error {abs(a - n):.3g}, "
                            f"allowed {atol + rtol * abs(n):.3g})")
    if failures:
        raise AssertionError("gradient check failed:\n  " + "\n  ".join(failures))


def _widen(value: Any) -> Any:
    array = np.asarray(value)
    return array.astype(np.float64) if array.dtype == np.float32 else array


# ------------------------------------------------------------------------------------- graph equality

Computation = Node | Sequence[Node] | Mapping[Any, Node] | Graph
"""A tensor, a list/tuple or dict of tensors (outputs), or a Graph (its sink nodes, in creation order)."""

_NAMED_LEAVES = ("input", "param")
_TEXT_LIMIT = 800  # characters of a sub-expression shown in a mismatch message


def _roots(computation: Computation, side: str) -> tuple[str, list[tuple[Any, str, Node]]]:
    """(kind, [(key, label, node)]) for a computation; kind is "dict" or "sequence"."""
    if isinstance(computation, Node):
        return "sequence", [(0, "output", computation)]
    if isinstance(computation, Graph):
        read = {id(x) for n in computation.nodes for x in n.inputs}
        sinks = [n for n in computation.nodes if id(n) not in read]
        return "sequence", [(i, f"sink {i}", n) for i, n in enumerate(sinks)]
    if isinstance(computation, Mapping):
        items = [(k, f"output {k!r}", v) for k, v in computation.items()]
        kind = "dict"
    elif isinstance(computation, (list, tuple)):
        items = [(i, f"output {i}", v) for i, v in enumerate(computation)]
        kind = "sequence"
    else:
        raise TypeError(f"{side}: expected a tensor, a list/tuple or dict of tensors, or a Graph; "
                        f"got {type(computation).__name__}")
    for _, label, v in items:
        if not isinstance(v, Node):
            raise TypeError(f"{side} {label}: expected a graphc tensor, got {type(v).__name__}")
    return kind, items


def _type_text(t: TensorType) -> str:
    return f"{t.dtype}[{','.join(str(d) for d in t.shape)}]"


def _array_text(v: np.ndarray) -> str:
    if v.ndim == 0:
        return str(v[()])
    text = np.array2string(v, separator=", ", threshold=8, edgeitems=2, max_line_width=1 << 30)
    return " ".join(text.split())


def _value_text(v: Any) -> str:
    if isinstance(v, np.ndarray):
        return _array_text(v)
    if isinstance(v, np.generic):
        return repr(v.item())
    if isinstance(v, tuple):
        return "(" + ", ".join(_value_text(x) for x in v) + ("," if len(v) == 1 else "") + ")"
    if isinstance(v, list):
        return "[" + ", ".join(_value_text(x) for x in v) + "]"
    return repr(v)


def _leaf_text(n: Node) -> str:
    if n.op == "const":
        value = _array_text(n.attrs["value"])
        return f"const {value}" if n.type == TensorType((), "float32") else f"const {value}:{_type_text(n.type)}"
    return f"{n.op} {n.name}:{_type_text(n.type)}"


def _render(roots: list[tuple[str | None, Node]], sep: str) -> str:
    """Canonical text: nodes other than inputs/params used more than once are bound once (``%k = ...``, numbered
    in post-order from the roots) and referred to as ``%k``; everything else is written inline."""
    uses: dict[Node, int] = {}
    stack = [n for _, n in roots]
    for n in stack:
        uses[n] = uses.get(n, 0) + 1
    seen: set[Node] = set()
    while stack:
        n = stack.pop()
        if n in seen:
            continue
        seen.add(n)
        for x in n.inputs:
            uses[x] = uses.get(x, 0) + 1
            stack.append(x)
    bound = {n for n, k in uses.items() if k > 1 and n.op not in _NAMED_LEAVES}
    refs: dict[Node, str] = {}
    lines: list[str] = []

    def text(n: Node) -> str:
        if n.is_leaf:
            return _leaf_text(n)
        args = [refs[x] for x in n.inputs]
        args += [f"{k}={_value_text(v)}" for k, v in sorted(n.attrs.items())]
        return f"{n.op}({', '.join(args)})"

    for _, root in roots:  # iterative post-order: inputs left to right before the node
        work: list[tuple[Node, bool]] = [(root, False)]
        while work:
            n, expanded = work.pop()
            if n in refs:
                continue
            if not expanded:
                work.append((n, True))
                work.extend((x, False) for x in reversed(n.inputs) if x not in refs)
                continue
            body = text(n)
            for x in n.inputs:  # a node read once is written inline by its one reader: free its text
                if uses[x] == 1:
                    refs[x] = ""
            if n in bound:
                refs[n] = f"%{len(lines) + 1}"
                lines.append(f"{refs[n]} = {body}")
            else:
                refs[n] = body
    outputs = [refs[n] if label is None else f"{label}: {refs[n]}" for label, n in roots]
    return sep.join(lines + outputs)


def canonical_text(computation: Computation) -> str:
    """The computation as canonical text, independent of node ids and of the names of non-leaf nodes, e.g.
    ``add(mul(input x:float32[2,3], const 2.0), param b:float32[3])``.

    Inputs and params print as ``op name:dtype[shape]``, constants by value (with their type unless a float32
    scalar), other nodes as ``op(inputs..., attr=value...)``. A node read more than once is printed once as
    ``%k = ...`` and then referred to as ``%k``, so sharing and duplication print differently. One line per
    binding, then one per output (``output 'key': ...``; a single tensor prints without a label).
    """
    _, items = _roots(computation, "canonical_text")
    single = isinstance(computation, Node)
    return _render([(None if single else label, n) for _, label, n in items], "\n")


def _clip(text: str) -> str:
    return text if len(text) <= _TEXT_LIMIT else text[:_TEXT_LIMIT] + " ..."


class _Step:
    """One edge of the path from an output to a node: ``parent.inputs[index]`` (or the output itself)."""

    __slots__ = ("prev", "label", "parent", "other")

    def __init__(self, prev: _Step | None, label: str, parent: Node | None = None, other: Node | None = None) -> None:
        self.prev, self.label, self.parent, self.other = prev, label, parent, other  # parent: actual, other: expected

    def __str__(self) -> str:
        labels: list[str] = []
        step: _Step | None = self
        while step is not None:
            labels.append(step.label)
            step = step.prev
        parts: list[str] = []  # runs of one step collapsed: "tanh.inputs[0] (40 times)"
        for label in reversed(labels):
            if parts and parts[-1][0] == label:
                parts[-1][1] += 1
            else:
                parts.append([label, 1])
        shown = [label if k == 1 else f"{label} ({k} times)" for label, k in parts]
        if len(shown) > 20:
            shown = shown[:6] + [f"... {len(shown) - 18} more ..."] + shown[-12:]
        return " -> ".join(shown)


def _difference(a: Node, e: Node, check_names: bool) -> str | None:
    """What differs between ``a`` and ``e`` themselves (not their inputs), or None."""
    if a.op != e.op:
        return f"op differs: {a.op} vs {e.op}"
    if a.dtype != e.dtype:
        return f"dtype differs: {a.dtype} vs {e.dtype}"
    if a.shape != e.shape:
        return f"shape differs: {list(a.shape)} vs {list(e.shape)}"
    if a.op in _NAMED_LEAVES:
        return None if a.name == e.name else f"{a.op} name differs: {a.name!r} vs {e.name!r}"
    if a.attrs.key() != e.attrs.key():
        if a.op == "const":
            return f"constant value differs: {_array_text(a.attrs['value'])} vs {_array_text(e.attrs['value'])}"
        if set(a.attrs) != set(e.attrs):
            return f"attribute names of {a.op} differ: {sorted(a.attrs)} vs {sorted(e.attrs)}"
        ka, ke = dict(a.attrs.key()), dict(e.attrs.key())
        k = next(k for k in sorted(ka) if ka[k] != ke[k])
        return f"attribute {k!r} of {a.op} differs: {_value_text(a.attrs[k])} vs {_value_text(e.attrs[k])}"
    if len(a.inputs) != len(e.inputs):
        return f"number of inputs of {a.op} differs: {len(a.inputs)} vs {len(e.inputs)}"
    if check_names and a.name != e.name:
        return f"name differs: {a.name!r} vs {e.name!r}"
    return None


def _mismatch(step: _Step, what: str, a: Node, e: Node) -> AssertionError:
    lines = [f"graphs differ at {step}: {what}",
             f"  actual:   {_clip(_render([(None, a)], '; '))}",
             f"  expected: {_clip(_render([(None, e)], '; '))}"]
    if step.parent is not None and step.other is not None:
        pa, pe = step.parent, step.other
        lines += [f"  in actual:   {_clip(_render([(None, pa)], '; '))}",
                  f"  in expected: {_clip(_render([(None, pe)], '; '))}"]
        args_a = [_render([(None, x)], "; ") for x in pa.inputs]
        args_e = [_render([(None, x)], "; ") for x in pe.inputs]
        if args_a != args_e and sorted(args_a) == sorted(args_e):
            lines.append(f"  (the inputs of {pa.op} are the same but in a different order)")
    return AssertionError("\n".join(lines))


def assert_graphs_equal(actual: Computation, expected: Computation, *, check_names: bool = False) -> None:
    """Assert that two computations are the same up to node ids and the names of non-leaf nodes.

    Each side is a tensor, a list/tuple or a dict of tensors (dicts are matched by key), or a Graph (its sink
    nodes, the ones no other node reads, in creation order). Both are walked from the outputs in parallel,
    building a one-to-one map between their nodes: matched nodes have the same op, dtype, shape and attributes
    (arrays by value), and their inputs match position by position; constants match by dtype, shape and value
    (bit for bit: -0.0 is not 0.0); inputs and params by op, type and name (the program's interface). The map
    must stay one-to-one, so a node read twice on one side must be one node read twice on the other (``x*x`` is
    not ``x*y``, and one shared ``tanh(x)`` is not two equal ones); this holds for constants too. Names of other
    nodes are compared only with ``check_names=True``. Sites and backward flags are not compared.

    Raises ``AssertionError`` naming the path from the output to the first difference and printing both
    sub-expressions with :func:`canonical_text`'s notation.
    """
    kind_a, items_a = _roots(actual, "actual")
    kind_e, items_e = _roots(expected, "expected")
    if (kind_a == "dict") != (kind_e == "dict"):
        raise AssertionError(f"graphs differ: actual is a {'dict' if kind_a == 'dict' else 'sequence'} of outputs, "
                             f"expected a {'dict' if kind_e == 'dict' else 'sequence'}")
    if kind_a == "dict":
        keys_a, keys_e = [k for k, _, _ in items_a], [k for k, _, _ in items_e]
        missing, extra = [k for k in keys_e if k not in keys_a], [k for k in keys_a if k not in keys_e]
        if missing or extra:
            raise AssertionError(f"graphs differ: output keys: actual lacks {missing}, has unexpected {extra}")
        by_key = {k: n for k, _, n in items_a}
        pairs = [(label, by_key[k], n) for k, label, n in items_e]
    else:
        if len(items_a) != len(items_e):
            raise AssertionError(f"graphs differ: actual has {len(items_a)} outputs, expected {len(items_e)}\n"
                                 f"  actual:\n    {_clip(canonical_text([n for _, _, n in items_a]))}\n"
                                 f"  expected:\n    {_clip(canonical_text([n for _, _, n in items_e]))}")
        pairs = [(label_e, a, e) for (_, _, a), (_, label_e, e) in zip(items_a, items_e)]

    a2e: dict[Node, Node] = {}
    e2a: dict[Node, Node] = {}
    first_seen: dict[Node, _Step] = {}  # node (either side) -> where it was matched first
    for label, root_a, root_e in pairs:
        stack: list[tuple[Node, Node, _Step]] = [(root_a, root_e, _Step(None, label))]
        while stack:
            a, e, step = stack.pop()
            if a2e.get(a) is e:
                continue
            what = _difference(a, e, check_names)
            if what is None and (a in a2e or e in e2a):
                how = [f"{side} reads the same node as at {first_seen[n]}" if n in seen else
                       f"{side} reads a node it reads nowhere else so far"
                       for side, n, seen in (("actual", a, a2e), ("expected", e, e2a))]
                what = f"sharing differs: {how[0]}, {how[1]}"
            if what is not None:
                raise _mismatch(step, what, a, e)
            a2e[a], e2a[e] = e, a
            first_seen[a] = first_seen[e] = step
            stack.extend((x, y, _Step(step, f"{a.op}.inputs[{i}]", a, e))
                         for i, (x, y) in reversed(list(enumerate(zip(a.inputs, e.inputs)))))
