"""Losses: softmax_cross_entropy (integer labels or probability targets), mse; and the one_hot helper.

``reduction`` is ``"mean"`` (over the batch, the default), ``"sum"`` or ``"none"`` (per example).
"""

from __future__ import annotations

import numpy as np

from graphc.ir import Node, TensorType, dtype_name
from ops import fn
from ops.base import ErrorCase, Op, OpError, Sample, require_float
from ops.registry import register

REDUCTIONS = ("mean", "sum", "none")


def _reduction(attrs) -> str:
    reduction = attrs.get("reduction", "mean")
    if reduction not in REDUCTIONS:
        raise OpError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    return reduction


def _scaled_grad(g: Node, node: Node, count: int, per_example_axes: int) -> Node:
    """The upstream gradient of a reduced loss, shaped to broadcast against per-element terms."""
    reduction = node.attrs["reduction"]
    if reduction == "mean":
        return fn.div(g, float(count))
    if reduction == "sum":
        return g
    return fn.reshape(g, g.shape + (1,) * per_example_axes)


def _reduce(values: np.ndarray, reduction: str) -> np.ndarray:
    if reduction == "mean":
        return np.mean(values).astype(values.dtype)
    if reduction == "sum":
        return np.sum(values).astype(values.dtype)
    return values


@register
class OneHot(Op):
    """y[n, c] = 1 if labels[n] == c else 0 (labels outside [0, depth) give a zero row)."""

    name = "one_hot"
    kind = "opaque"
    arity = 1

    def normalize(self, attrs, labels):
        return {"depth": int(attrs["depth"]), "dtype": dtype_name(attrs.get("dtype", "float32"))}

    def infer(self, attrs, labels):
        if labels.dtype != "int64":
            raise OpError(f"labels must be int64 class indices, got {labels}")
        if attrs["depth"] <= 0:
            raise OpError(f"depth must be positive, got {attrs['depth']}")
        return TensorType(labels.shape + (attrs["depth"],), attrs["dtype"])

    def reference(self, attrs, labels):
        return (labels[..., None] == np.arange(attrs["depth"])).astype(attrs["dtype"])

    def vjp(self, node, g):
        return (None,)

    def samples(self, rng):
        return [Sample([rng.integers(0, 4, (5,))], {"depth": 4}), Sample([rng.integers(0, 3, (2, 3))], {"depth": 3})]

    def error_cases(self):
        return [ErrorCase([((5,), "float32")], {"depth": 3}, "int64")]


@register
class SoftmaxCrossEntropy(Op):
    """L = -Σ_c t_c log softmax(z)_c per row, t = one_hot(labels) or given probabilities; reduced.

    Stable form: log softmax(z) = z - max z - log Σ e^(z - max z).
    dL/dz = softmax(z)·Σt - t (scaled by the reduction); dL/dt = -log softmax(z).
    """

    name = "softmax_cross_entropy"
    kind = "opaque"
    arity = 2

    def normalize(self, attrs, logits, labels):
        return {"reduction": _reduction(attrs)}

    def infer(self, attrs, logits, labels):
        require_float(self.name, logits)
        if logits.ndim != 2:
            raise OpError(f"logits must have shape (batch, classes), got {logits.shape}")
        if labels.dtype == "int64":
            if labels.shape != logits.shape[:1]:
                raise OpError(f"integer labels must have shape {logits.shape[:1]} for logits {logits.shape}, "
                              f"got {labels.shape}")
        elif labels.dtype == logits.dtype:
            if labels.shape != logits.shape:
                raise OpError(f"probability targets must have the logits' shape {logits.shape}, got {labels.shape}")
        else:
            raise OpError(f"labels must be int64 class indices or {logits.dtype} probabilities, got {labels}")
        shape = logits.shape[:1] if attrs["reduction"] == "none" else ()
        return TensorType(shape, logits.dtype)

    def reference(self, attrs, logits, labels):
        z = logits - logits.max(axis=1, keepdims=True)
        log_probs = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        if labels.dtype.kind in "iu":
            classes = logits.shape[1]
            if labels.size and (labels.min() < 0 or labels.max() >= classes):
                bad = labels[(labels < 0) | (labels >= classes)][0]
                raise ValueError(f"softmax_cross_entropy: label {bad} is outside [0, {classes})")
            per_example = -log_probs[np.arange(len(labels)), labels]
        else:
            per_example = -(labels * log_probs).sum(axis=1)
        return _reduce(per_example.astype(logits.dtype), attrs["reduction"])

    def vjp(self, node, g):
        logits, labels = node.inputs
        scale = _scaled_grad(g, node, logits.shape[0], 1)
        probs = fn.softmax(logits, axis=1)
        if labels.dtype == "int64":
            return fn.mul(fn.sub(probs, fn.one_hot(labels, logits.shape[1], logits.dtype)), scale), None
        mass = fn.sum(labels, axis=1, keepdims=True)
        d_logits = fn.mul(fn.sub(fn.mul(probs, mass), labels), scale)
        return d_logits, fn.mul(fn.neg(fn.log_softmax(logits, axis=1)), scale)

    def samples(self, rng):
        targets = rng.dirichlet(np.ones(4), size=3)
        return [Sample([rng.standard_normal((5, 4)), rng.integers(0, 4, (5,))]),
                Sample([rng.standard_normal((3, 4)) * 5, targets]),
                Sample([rng.standard_normal((4, 3)), rng.integers(0, 3, (4,))], {"reduction": "sum"}),
                Sample([rng.standard_normal((4, 3)), rng.integers(0, 3, (4,))], {"reduction": "none"})]

    def error_cases(self):
        return [ErrorCase([((4, 3), "float32"), ((5,), "int64")], {}, "labels must have shape (4,)"),
                ErrorCase([((4, 3), "float32"), ((4, 1), "float32")], {}, "targets must have"),
                ErrorCase([((4, 3), "float32"), ((4,), "int64")], {"reduction": "avg"}, "reduction must be")]


@register
class MSE(Op):
    """L = (1/n) Σ (p - t)² over all elements (``sum``: no 1/n; ``none``: per element);  dL/dp = 2(p - t)/n."""

    name = "mse"
    kind = "opaque"
    arity = 2

    def normalize(self, attrs, pred, target):
        return {"reduction": _reduction(attrs)}

    def infer(self, attrs, pred, target):
        require_float(self.name, pred, target)
        if pred.shape != target.shape or pred.dtype != target.dtype:
            raise OpError(f"prediction {pred} and target {target} must have the same shape and dtype "
                          "(no broadcasting: (n, 1) against (n,) is almost always a bug)")
        return TensorType(pred.shape if attrs["reduction"] == "none" else (), pred.dtype)

    def reference(self, attrs, pred, target):
        return _reduce(np.square(pred - target), attrs["reduction"])

    def vjp(self, node, g):
        pred, target = node.inputs
        scale = _scaled_grad(g, node, max(pred.size, 1), 0)
        diff = fn.mul(fn.sub(pred, target), fn.mul(scale, 2.0))
        return diff, fn.neg(diff)

    def samples(self, rng):
        return [Sample([rng.standard_normal((4, 3)), rng.standard_normal((4, 3))]),
                Sample([rng.standard_normal((5,)), rng.standard_normal((5,))], {"reduction": "sum"}),
                Sample([rng.standard_normal((2, 3)), rng.standard_normal((2, 3))], {"reduction": "none"})]

    def error_cases(self):
        return [ErrorCase([((4, 1), "float32"), ((4,), "float32")], {}, "same shape")]
