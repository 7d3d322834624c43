"""Losses: softmax_cross_entropy (integer labels or probability targets), mse, mae, binary_cross_entropy,
sigmoid_binary_cross_entropy; and the one_hot helper.

``reduction`` is ``"mean"`` (over the batch, the default), ``"sum"`` or ``"none"`` (per example).
"""

from __future__ import annotations

import math

import numpy as np

import ops.fn as fn
from graphc.ir import Node, TensorType, dtype_name
from ops.base import ErrorCase, Op, OpError, Sample, as_int, require_float
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
        return {"depth": as_int(attrs["depth"], "depth"), "dtype": dtype_name(attrs.get("dtype", "float32"))}

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
    """L = -Σ_c t_c log softmax(z)_c per example, classes on axis 1 of z (N, C) or (N, C, d1, ...),
    t = one_hot(labels) for int64 labels (N,) or (N, d1, ...), or given probabilities (z's shape); reduced.

    Stable form: log softmax(z) = z - max z - log Σ e^(z - max z) (along axis 1).
    ``ignore_index`` (int labels only): examples with that label contribute 0, and ``mean`` divides by the number
    of the others (as PyTorch and ONNX SoftmaxCrossEntropyLoss; all ignored gives 0/0 = nan).
    dL/dz = softmax(z)·Σt - t (zero for ignored examples; scaled by the reduction); dL/dt = -log softmax(z).
    """

    name = "softmax_cross_entropy"
    kind = "opaque"
    arity = 2
    cost = 25

    def flops(self, node):
        return node.inputs[0].size * self.cost

    def status_message(self, node):
        return f"a label is outside [0, {node.inputs[0].shape[1]})"

    def normalize(self, attrs, logits, labels):
        ignore = attrs.get("ignore_index")
        return {"reduction": _reduction(attrs), "ignore_index": None if ignore is None else int(ignore)}

    def promote_dtype(self, position, value, peers):
        # integer label arrays stay class indices (not probabilities of the logits' dtype)
        return "int64" if position == 1 and value.dtype.kind in "iu" else None

    def infer(self, attrs, logits, labels):
        require_float(self.name, logits)
        if logits.ndim < 2:
            raise OpError(f"logits must have shape (batch, classes) or (batch, classes, d1, ...), got {logits.shape}")
        per_example = logits.shape[:1] + logits.shape[2:]
        if labels.dtype == "int64":
            if labels.shape != per_example:
                raise OpError(f"integer labels must have shape {per_example} for logits {logits.shape}, "
                              f"got {labels.shape}")
        elif labels.dtype == logits.dtype:
            if labels.shape != logits.shape:
                raise OpError(f"probability targets must have the logits' shape {logits.shape}, got {labels.shape}")
            if attrs["ignore_index"] is not None:
                raise OpError("ignore_index applies to integer class labels, not to probability targets")
        else:
            raise OpError(f"labels must be int64 class indices or {logits.dtype} probabilities, got {labels}")
        return TensorType(per_example if attrs["reduction"] == "none" else (), logits.dtype)

    def reference(self, attrs, logits, labels):
        z = logits - logits.max(axis=1, keepdims=True)
        log_probs = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        if labels.dtype.kind not in "iu":
            return _reduce((-(labels * log_probs).sum(axis=1)).astype(logits.dtype), attrs["reduction"])
        ignore = attrs["ignore_index"]
        valid = np.ones(labels.shape, bool) if ignore is None else labels != ignore
        classes = logits.shape[1]
        bad = valid & ((labels < 0) | (labels >= classes))
        if bad.any():
            raise ValueError(f"softmax_cross_entropy: label {labels[bad][0]} is outside [0, {classes})")
        picked = np.take_along_axis(log_probs, np.where(valid, labels, 0)[:, None], axis=1)[:, 0]
        per_example = np.where(valid, -picked, 0).astype(logits.dtype)
        if attrs["reduction"] == "mean" and ignore is not None:
            with np.errstate(invalid="ignore"):
                return (per_example.sum() / np.count_nonzero(valid)).astype(logits.dtype)
        return _reduce(per_example, attrs["reduction"])

    def vjp(self, node, g):
        logits, labels = node.inputs
        reduction, ignore = node.attrs["reduction"], node.attrs["ignore_index"]
        per_example = logits.shape[:1] + logits.shape[2:]
        expand = logits.shape[:1] + (1,) + logits.shape[2:]  # per-example values lined up with the class axis
        valid = None
        if labels.dtype == "int64" and ignore is not None:
            valid = fn.cast(fn.equal(fn.equal(labels, ignore), False), logits.dtype)
        if reduction == "none":
            scale = fn.reshape(g, expand)
        elif reduction == "sum":
            scale = g
        elif valid is not None:
            scale = fn.div(g, fn.sum(valid))
        else:
            scale = fn.div(g, float(max(math.prod(per_example), 1)))
        probs = fn.softmax(logits, axis=1)
        if labels.dtype == "int64":
            one_hot = fn.one_hot(labels, logits.shape[1], logits.dtype)  # classes last: move them to axis 1
            if logits.ndim > 2:
                one_hot = fn.transpose(one_hot, (0, logits.ndim - 1) + tuple(range(1, logits.ndim - 1)))
            d_logits = fn.sub(probs, one_hot)
            if valid is not None:
                d_logits = fn.mul(d_logits, fn.reshape(valid, expand))
            return fn.mul(d_logits, scale), None
        mass = fn.sum(labels, axis=1, keepdims=True)
        d_logits = fn.mul(fn.sub(fn.mul(probs, mass), labels), scale)
        return d_logits, fn.mul(fn.neg(fn.log_softmax(logits, axis=1)), scale)

    def samples(self, rng):
        targets = rng.dirichlet(np.ones(4), size=3)
        spatial = np.ascontiguousarray(rng.dirichlet(np.ones(3), size=(2, 2, 5)).transpose(0, 3, 1, 2))
        return [Sample([rng.standard_normal((5, 4)), rng.integers(0, 4, (5,))]),
                Sample([rng.standard_normal((3, 4)) * 5, targets]),
                Sample([rng.standard_normal((4, 3)), rng.integers(0, 3, (4,))], {"reduction": "sum"}),
                Sample([rng.standard_normal((4, 3)), rng.integers(0, 3, (4,))], {"reduction": "none"}),
                Sample([rng.standard_normal((2, 3, 4)), rng.integers(0, 3, (2, 4))]),
                Sample([rng.standard_normal((2, 3, 2, 5)), spatial], {"reduction": "none"}),
                Sample([rng.standard_normal((6, 3)), np.array([0, 2, -100, 1, -100, 2])], {"ignore_index": -100}),
                Sample([rng.standard_normal((2, 4, 3)), rng.integers(0, 4, (2, 3))],
                       {"ignore_index": 1, "reduction": "none"})]

    def error_cases(self):
        return [ErrorCase([((4, 3), "float32"), ((5,), "int64")], {}, "labels must have shape (4,)"),
                ErrorCase([((4, 3, 2), "float32"), ((4, 3), "int64")], {}, "labels must have shape (4, 2)"),
                ErrorCase([((4, 3), "float32"), ((4, 1), "float32")], {}, "targets must have"),
                ErrorCase([((4,), "float32"), ((4,), "int64")], {}, "(batch, classes)"),
                ErrorCase([((4, 3), "float32"), ((4, 3), "float32")], {"ignore_index": 0}, "ignore_index applies"),
                ErrorCase([((4, 3), "float32"), ((4,), "int64")], {"reduction": "avg"}, "reduction must be")]


class _Elementwise(Op):
    """A loss over two same-shaped float tensors (no broadcasting), reduced over all elements."""

    kind = "opaque"
    arity = 2

    def flops(self, node):
        return node.inputs[0].size * self.cost

    def normalize(self, attrs, pred, target):
        return {"reduction": _reduction(attrs)}

    def infer(self, attrs, pred, target):
        require_float(self.name, pred, target)
        if pred.shape != target.shape or pred.dtype != target.dtype:
            raise OpError(f"prediction {pred} and target {target} must have the same shape and dtype "
                          "(no broadcasting: (n, 1) against (n,) is almost always a bug)")
        return TensorType(pred.shape if attrs["reduction"] == "none" else (), pred.dtype)

    def error_cases(self):
        return [ErrorCase([((4, 1), "float32"), ((4,), "float32")], {}, "same shape"),
                ErrorCase([((4,), "float32"), ((4,), "float32")], {"reduction": "avg"}, "reduction must be")]


@register
class MSE(_Elementwise):
    """L = (1/n) Σ (p - t)² over all elements (``sum``: no 1/n; ``none``: per element);  dL/dp = 2(p - t)/n."""

    name = "mse"

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


LOG_FLOOR = -100.0  # binary_cross_entropy clamps each log term here (PyTorch's convention)
GRAD_EPS = 1e-12  # ... and the denominator p(1 - p) of its gradient from below


@register
class BinaryCrossEntropy(_Elementwise):
    """L = -(t·log p + (1 - t)·log(1 - p)) per element, reduced; p are probabilities.

    Stability: each log is clamped to >= -100 (so p = 0 or 1 gives a finite loss; as PyTorch does).
    dL/dp = (p - t) / max(p(1 - p), 1e-12);  dL/dt = log(1 - p) - log p (the clamped logs).
    """

    name = "binary_cross_entropy"

    def reference(self, attrs, p, t):
        with np.errstate(divide="ignore"):
            log_p = np.maximum(np.log(p), LOG_FLOOR)
            log_q = np.maximum(np.log(1 - p), LOG_FLOOR)
        return _reduce((-(t * log_p + (1 - t) * log_q)).astype(p.dtype), attrs["reduction"])

    def vjp(self, node, g):
        p, t = node.inputs
        scale = _scaled_grad(g, node, max(p.size, 1), 0)
        d_p = fn.div(fn.sub(p, t), fn.maximum(fn.mul(p, fn.sub(1.0, p)), GRAD_EPS))
        log_p = fn.maximum(fn.log(p), LOG_FLOOR)
        log_q = fn.maximum(fn.log(fn.sub(1.0, p)), LOG_FLOOR)
        return fn.mul(d_p, scale), fn.mul(fn.sub(log_q, log_p), scale)

    def samples(self, rng):
        return [Sample([rng.uniform(0.05, 0.95, (4, 3)), rng.uniform(0, 1, (4, 3))]),
                Sample([rng.uniform(0.05, 0.95, (5,)), rng.integers(0, 2, (5,)).astype(float)], {"reduction": "sum"}),
                Sample([rng.uniform(0.05, 0.95, (2, 3)), rng.uniform(0, 1, (2, 3))], {"reduction": "none"})]


@register
class SigmoidBinaryCrossEntropy(_Elementwise):
    """L = -(t·log σ(z) + (1 - t)·log(1 - σ(z))) per element, reduced; z are logits.

    Stable form: L = max(z, 0) - z·t + log(1 + e^(-|z|)).  dL/dz = σ(z) - t;  dL/dt = -z.
    """

    name = "sigmoid_binary_cross_entropy"

    def reference(self, attrs, z, t):
        return _reduce((np.maximum(z, 0) - z * t + np.log1p(np.exp(-np.abs(z)))).astype(z.dtype),
                       attrs["reduction"])

    def vjp(self, node, g):
        z, t = node.inputs
        scale = _scaled_grad(g, node, max(z.size, 1), 0)
        return fn.mul(fn.sub(fn.sigmoid(z), t), scale), fn.mul(fn.neg(z), scale)

    def samples(self, rng):
        return [Sample([rng.standard_normal((4, 3)) * 3, rng.uniform(0, 1, (4, 3))]),
                Sample([rng.standard_normal((6,)), rng.integers(0, 2, (6,)).astype(float)], {"reduction": "sum"}),
                Sample([rng.standard_normal((2, 3)), rng.uniform(0, 1, (2, 3))], {"reduction": "none"})]


@register
class MAE(_Elementwise):
    """L = (1/n) Σ |p - t| (``sum``: no 1/n; ``none``: per element);  dL/dp = sign(p - t)/n, dL/dt = -dL/dp."""

    name = "mae"

    def reference(self, attrs, p, t):
        return _reduce(np.abs(p - t), attrs["reduction"])

    def vjp(self, node, g):
        p, t = node.inputs
        scale = _scaled_grad(g, node, max(p.size, 1), 0)
        d_p = fn.mul(fn.sign(fn.sub(p, t)), scale)
        return d_p, fn.neg(d_p)

    def samples(self, rng):
        def pair(*shape):
            t = rng.standard_normal(shape)
            return [t + np.where(rng.random(shape) < 0.5, -1, 1) * rng.uniform(0.1, 1.0, shape), t]

        return [Sample(pair(4, 3)), Sample(pair(5), {"reduction": "sum"}), Sample(pair(2, 3), {"reduction": "none"})]
