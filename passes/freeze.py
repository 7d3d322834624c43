"""Freeze: an inference program's parameters become constants, so what depends on them alone is done once.

``gc.compile(..., freeze=True)`` runs this before the pipeline, on a copy of the computation (the user's graph and
its state are never changed; later changes to the params do not reach the frozen program — compile again):

1. every param becomes a ``const`` holding a snapshot (a read-only copy) of its current value;
2. an inference ``batch_norm`` whose input is produced only for it by a ``conv2d`` (with or without bias) or by a
   2-D ``matmul`` (+ a bias add) with constant weights is folded into those weights: with
   s = γ/√(σᵣ² + ε) per output channel o,  W'[o, ...] = W[o, ...]·s[o]  (matmul: W'[:, o] = W[:, o]·s[o])  and
   b'[o] = (b[o] − μᵣ[o])·s[o] + β[o]  (b = 0 without a bias) — computed in float64, stored in the weights' dtype;
3. every pure node whose inputs are all constants is evaluated once (its op's NumPy reference) into a constant,
   with no size limit (weights transposed or reshaped by an exporter become the arrays the kernels read).

A program with state updates (explicit, or the running statistics of a training-mode batch norm) cannot be
frozen: ``runtime.make_program`` raises a :class:`GraphcError` naming the node. Constants stay buffers the
program reads (they are not copied into the generated code), so a frozen program's cache key covers their values.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import numpy as np

from graphc.ir import Attrs, Graph, Node, topo_ancestors
from ops.registry import get_op


@dataclass
class Frozen:
    """The frozen computation: outputs in the caller's order (in a new graph) and what was done, line by line."""

    outputs: list[Node]
    report: list[str] = field(default_factory=list)


def _readonly(value: np.ndarray) -> np.ndarray:
    value = np.array(value, copy=True)
    value.setflags(write=False)
    return value


class _Freezer:
    """Copies nodes into a new graph, params as snapshots, folding as it goes (see the module docstring)."""

    def __init__(self, old: Graph) -> None:
        self.old = old
        self.graph = Graph(old.name)
        self.users_new: dict[Node, int] = {}  # new node → how many users its original has (outputs count as one)
        self.outputs_new: set[Node] = set()
        self.report: list[str] = []
        self.params = self.params_bytes = self.folded = 0

    def add(self, op: str, inputs: tuple[Node, ...], attrs: dict, origin: Node, name: str | None = None) -> Node:
        o = get_op(op)
        types = tuple(x.type for x in inputs)
        normalized = Attrs(o.normalize(attrs, *types))
        with self.graph.backward_scope() if origin.backward else contextlib.nullcontext():
            return self.graph.add_node(op, inputs, normalized, o.infer(normalized, *types),
                                       name=name or self.graph.unique_name(f"{origin.name}_{op}"), site=origin.site)

    def const(self, value: np.ndarray, like: Node, name: str | None = None) -> Node:
        value = _readonly(np.asarray(value, dtype=like.type.np_dtype).reshape(like.shape))
        return self.graph.add_node("const", (), {"value": value}, like.type,
                                   name=name or self.graph.unique_name(f"{like.name}_const"), site=like.site)

    def node(self, n: Node, inputs: tuple[Node, ...]) -> Node:
        if n.op == "param":
            value = self.old.state[n.name]
            self.params += 1
            self.params_bytes += value.nbytes
            return self.const(value, n, name=n.name)
        if n.op == "input":
            new = self.graph.add_node("input", (), n.attrs, n.type, name=n.name, site=n.site)
            self.graph.inputs[n.name] = new
            return new
        if n.op == "const":
            return self.graph.add_node("const", (), n.attrs, n.type, name=n.name, site=n.site)
        if n.op == "batch_norm" and not n.attrs["training"]:
            folded = self.fold_batch_norm(n, inputs)
            if folded is not None:
                return folded
        if inputs and all(x.op == "const" for x in inputs) and get_op(n.op).pure:
            value = get_op(n.op).reference(n.attrs, *(x.attrs["value"] for x in inputs))
            self.folded += 1
            return self.const(value, n, name=n.name)
        with self.graph.backward_scope() if n.backward else contextlib.nullcontext():
            return self.graph.add_node(n.op, inputs, n.attrs, n.type, name=n.name, site=n.site)

    def fold_batch_norm(self, bn: Node, inputs: tuple[Node, ...]) -> Node | None:
        """conv2d / matmul (+ bias) → batch_norm, all weights constant, the layer's value used only here: the
        layer with scaled weights and a new bias (None when the pattern does not apply)."""
        y, gamma, beta, mean, var = inputs
        if y in self.outputs_new or self.users_new.get(y, 0) != 1 or \
                any(v.op != "const" for v in (gamma, beta, mean, var)):
            return None
        stats = [np.asarray(v.attrs["value"], dtype=np.float64) for v in (gamma, beta, mean, var)]
        scale = stats[0] / np.sqrt(stats[3] + bn.attrs["eps"])
        layer, bias = self._layer(y)
        if layer is None:
            return None
        w = layer.inputs[1]
        b = np.zeros(scale.shape) if bias is None else np.asarray(bias.attrs["value"], np.float64).reshape(-1)
        shift = (b - stats[2]) * scale + stats[1]
        weights = np.asarray(w.attrs["value"], dtype=np.float64)
        if layer.op == "conv2d":
            scaled = weights * scale.reshape((-1,) + (1,) * (weights.ndim - 1))
            new = self.add("conv2d", (layer.inputs[0], self.const(scaled, w), self.const(shift, bn.inputs[1])),
                           dict(layer.attrs), bn, name=bn.name)
        else:
            product = self.add("matmul", (layer.inputs[0], self.const(weights * scale, w)), dict(layer.attrs), bn)
            new = self.add("add", (product, self.const(shift, bn.inputs[1])), {}, bn, name=bn.name)
        self.report.append(f"folded batch_norm {bn.name!r} into {layer.op} {layer.name!r}")
        return new

    def _layer(self, y: Node) -> tuple[Node | None, Node | None]:
        """(conv2d or 2-D matmul with a constant weight, its constant bias or None) computing y, else (None, None)."""
        if y.op == "conv2d" and y.inputs[1].op == "const" and (len(y.inputs) == 2 or y.inputs[2].op == "const"):
            return y, (y.inputs[2] if len(y.inputs) == 3 else None)
        bias = None
        if y.op == "add" and y.ndim == 2:
            product, bias = y.inputs
            if product.op != "matmul":
                product, bias = bias, product
            if bias.op != "const" or bias.shape not in ((y.shape[1],), (1, y.shape[1])) or \
                    self.users_new.get(product, 0) != 1:
                return None, None
            y = product
        ok = y.op == "matmul" and y.ndim == 2 and y.inputs[1].op == "const" and y.inputs[1].ndim == 2
        return (y, bias) if ok else (None, None)


def freeze(outputs: list[Node]) -> Frozen:
    """The computation of ``outputs`` with every param a constant snapshot (see the module docstring); the caller
    makes sure nothing updates state (``runtime.make_program`` does)."""
    graph = outputs[0].graph
    nodes = topo_ancestors(outputs)
    freezer = _Freezer(graph)
    mapping: dict[Node, Node] = {}
    users: dict[Node, int] = dict.fromkeys(outputs, 1)
    for n in nodes:
        for x in n.inputs:
            users[x] = users.get(x, 0) + 1
    for n in nodes:
        new = freezer.node(n, tuple(mapping[x] for x in n.inputs))
        mapping[n] = new
        freezer.users_new[new] = users.get(n, 0)
        if n in outputs:
            freezer.outputs_new.add(new)
    report = [f"froze {freezer.params} params ({freezer.params_bytes / 1e6:.1f} MB) as constants"] + freezer.report
    if freezer.folded:
        report.append(f"evaluated {freezer.folded} nodes of constants once")
    return Frozen([mapping[n] for n in outputs], report)


__all__ = ["Frozen", "freeze"]
