"""The ONNX ``Einsum`` translator: an equation of one or two operands lowered onto transpose, sum and batched matmul.

Two operands ``A, B -> out``: every label is one of
- batch: in A, B and out (kept, matmul's leading axes);
- contracted: in A and B, not in out (the matmul's inner axis, labels merged into one);
- left / right: in one operand and out (the matmul's rows / columns);
- summed: in one operand only, not in out (summed away before the product).
A is transposed to (batch, left, contracted) and reshaped to 3-D, B to (batch, contracted, right), the matmul gives
(batch, left, right), which is reshaped back to the labels and transposed into ``out``'s order. MaxViT's attention
(``BGHID,BGHJD->BGHIJ`` and ``BGHIJ,BGHJD->BGHID``) becomes one batched matmul with a transposed operand.
One operand: a transpose and a sum. A repeated label within one operand (a diagonal) and ``...`` are refused.
"""

from __future__ import annotations

import math

import ops.fn as fn
from graphc.ir import Node
from graphc.onnx.registry import ImportContext, OnnxNode, translator


def _parse(n: OnnxNode, arity: int) -> tuple[list[str], str]:
    text = n.attr("equation", None)
    if not isinstance(text, str):
        raise n.unsupported("the equation attribute is missing")
    equation = text.replace(" ", "")
    if "." in equation:
        raise n.unsupported(f"equation {text!r}: ellipsis ('...') is not supported")
    lhs, arrow, out = equation.partition("->")
    terms = lhs.split(",")
    if len(terms) != arity:
        raise n.unsupported(f"equation {text!r} names {len(terms)} operands, the node has {arity}")
    for term in terms:
        if len(set(term)) != len(term):
            raise n.unsupported(f"equation {text!r}: a label repeated within one operand (a diagonal)")
        if not term.isalpha() and term:
            raise n.unsupported(f"equation {text!r}: labels must be letters")
    if not arrow:  # implicit output: the labels seen once, in alphabetical order
        counts = {c: lhs.count(c) for c in set(lhs.replace(",", ""))}
        out = "".join(sorted(c for c, k in counts.items() if k == 1))
    if len(set(out)) != len(out) or not set(out) <= set("".join(terms)):
        raise n.unsupported(f"equation {text!r}: each output label must appear once and in an operand")
    return terms, out


def _sum_labels(x: Node, labels: str, keep: set[str]) -> tuple[Node, str]:
    """Sum ``x`` over the axes whose labels are not in ``keep``."""
    axes = tuple(i for i, c in enumerate(labels) if c not in keep)
    if not axes:
        return x, labels
    return fn.sum(x, axis=axes), "".join(c for c in labels if c in keep)


def _arrange(x: Node, labels: str, order: str) -> Node:
    """Transpose ``x`` (axes named by ``labels``) into the label order ``order``."""
    axes = tuple(labels.index(c) for c in order)
    return x if axes == tuple(range(len(axes))) else fn.transpose(x, axes)


def _sizes(n: OnnxNode, operands: list[tuple[Node, str]]) -> dict[str, int]:
    size: dict[str, int] = {}
    for x, labels in operands:
        if x.ndim != len(labels):
            raise n.unsupported(f"operand of shape {x.shape} does not have the {len(labels)} axes {labels!r}")
        for c, d in zip(labels, x.shape):
            if size.setdefault(c, d) != d:
                raise n.unsupported(f"label {c!r} has sizes {size[c]} and {d} (broadcasting is not supported)")
    return size


def _pair(a: Node, la: str, b: Node, lb: str, out: str) -> Node:
    """out = Σ over the contracted labels of A·B, as one batched matmul."""
    a, la = _sum_labels(a, la, set(lb) | set(out))
    b, lb = _sum_labels(b, lb, set(la) | set(out))
    batch = [c for c in out if c in la and c in lb]
    left = [c for c in la if c in out and c not in lb]
    right = [c for c in lb if c in out and c not in la]
    inner = [c for c in la if c in lb and c not in out]
    size = dict(zip(la, a.shape)) | dict(zip(lb, b.shape))

    def count(labels: list[str]) -> int:
        return math.prod(size[c] for c in labels)

    bsz, m, k, nn = count(batch), count(left), count(inner), count(right)
    a3 = fn.reshape(_arrange(a, la, "".join(batch + left + inner)), (bsz, m, k))
    b3 = fn.reshape(_arrange(b, lb, "".join(batch + inner + right)), (bsz, k, nn))
    product = fn.matmul(a3, b3)
    labels = "".join(batch + left + right)
    product = fn.reshape(product, tuple(size[c] for c in labels))
    return _arrange(product, labels, out)


@translator("Einsum")
def _einsum(ctx: ImportContext, n: OnnxNode, xs: list) -> list:
    """Einsum of one operand (transpose + sum) or two (batched matmul); see the module docstring."""
    if len(xs) not in (1, 2):
        raise n.unsupported(f"{len(xs)} operands (graphc imports Einsum of one or two)")
    terms, out = _parse(n, len(xs))
    operands = [(ctx.tensor(x), term) for x, term in zip(xs, terms)]
    _sizes(n, operands)
    if len(operands) == 1:
        x, labels = _sum_labels(*operands[0], set(out))
        return [_arrange(x, labels, out)]
    (a, la), (b, lb) = operands
    return [_pair(a, la, b, lb, out)]
