"""Keras loss names → graphc loss graphs, and metrics computed from predictions.

When the model ends in softmax (or sigmoid) and the loss is a cross-entropy, the loss is built on the logits
(the softmax's input) with the stable fused form instead of log(softmax(z)).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from graphc.ir import GraphcError, Node
from ops import fn

LOSSES = ("categorical_crossentropy", "sparse_categorical_crossentropy", "binary_crossentropy", "mse",
          "mean_squared_error", "mae", "mean_absolute_error")
METRICS = ("accuracy", "acc")


def check_loss(name: str) -> str:
    if name not in LOSSES:
        raise GraphcError(f"unknown loss {name!r}; choose one of {', '.join(LOSSES)}")
    return {"mean_squared_error": "mse", "mean_absolute_error": "mae"}.get(name, name)


def check_metrics(metrics) -> list[str]:
    metrics = list(metrics or [])
    for m in metrics:
        if m not in METRICS:
            raise GraphcError(f"unknown metric {m!r}; choose one of {', '.join(METRICS)}")
    return ["accuracy" if m == "acc" else m for m in metrics]


def target_spec(loss: str, output_shape: tuple[int, ...]) -> tuple[tuple[int, ...], str]:
    """Per-example shape and dtype of the targets a loss expects."""
    if loss == "sparse_categorical_crossentropy":
        return (), "int64"
    return tuple(output_shape), "float32"


def check_data(x: Any, y: Any, input_shape: tuple[int, ...], output_shape: tuple[int, ...],
               loss: str | None) -> tuple[np.ndarray, np.ndarray | None]:
    """``(x, y)`` as arrays, checked against the model's input shape and what ``loss`` expects of the targets
    (``y=None``: inputs only); a GraphcError with a hint for the usual mix-ups."""
    x = np.asarray(x)
    if x.shape[1:] != input_shape:
        expected = ", ".join(map(str, input_shape))
        raise GraphcError(f"inputs have shape {x.shape}; the model expects (batch, {expected})")
    if y is None:
        return x, None
    y = np.asarray(y)
    shape, dtype = target_spec(loss, output_shape)
    if len(y) != len(x):
        raise GraphcError(f"{len(x)} inputs but {len(y)} labels")
    if y.shape[1:] != shape or (dtype == "int64" and y.dtype.kind not in "iu"):
        hint = ""
        if loss == "sparse_categorical_crossentropy" and y.ndim == 2:
            hint = "; for one-hot targets use loss='categorical_crossentropy'"
        elif loss == "categorical_crossentropy" and y.ndim == 1:
            hint = "; for integer class labels use loss='sparse_categorical_crossentropy' (or gc.data.one_hot)"
        kind = "integer class labels" if dtype == "int64" else f"{dtype} targets"
        raise GraphcError(f"labels have shape {y.shape} ({y.dtype}) but loss {loss!r} expects {kind} "
                          f"of shape ({len(x)}{''.join(', ' + str(d) for d in shape)}){hint}")
    return x, y


def build_loss(loss: str, output: Node, targets: Node) -> Node:
    """The mean loss over the batch for model ``output`` against ``targets``."""
    if loss in ("categorical_crossentropy", "sparse_categorical_crossentropy"):
        if output.op == "softmax" and output.ndim == 2:
            return fn.softmax_cross_entropy(output.inputs[0], targets)
        probs = fn.clip(output, 1e-7, 1.0 - 1e-7)
        if loss == "sparse_categorical_crossentropy":
            targets = fn.one_hot(targets, output.shape[-1], output.dtype)
        return fn.neg(fn.mean(fn.sum(fn.mul(targets, fn.log(probs)), axis=-1)))
    if loss == "binary_crossentropy":
        if output.op == "sigmoid":
            return fn.sigmoid_binary_cross_entropy(output.inputs[0], targets)
        return fn.binary_cross_entropy(output, targets)
    if loss == "mse":
        return fn.mse(output, targets)
    return fn.mae(output, targets)


def accuracy(loss: str, predictions: np.ndarray, targets: np.ndarray) -> float:
    """Fraction of correct predictions: argmax for multi-class outputs, threshold 0.5 for binary ones."""
    if loss == "binary_crossentropy" or predictions.shape[-1] == 1:
        return float(np.mean((predictions > 0.5) == (targets > 0.5)))
    truth = targets if targets.ndim == 1 else targets.argmax(axis=-1)
    return float(np.mean(predictions.argmax(axis=-1) == truth))


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int | None = None) -> np.ndarray:
    """Counts C[i, j] of examples of true class i predicted as class j (labels or one-hot/probability rows)."""
    y_true = np.asarray(y_true)
    y_pred = np.asarray(y_pred)
    if y_true.ndim > 1:
        y_true = y_true.argmax(axis=-1)
    if y_pred.ndim > 1:
        y_pred = y_pred.argmax(axis=-1)
    n = int(max(y_true.max(initial=0), y_pred.max(initial=0)) + 1) if num_classes is None else num_classes
    matrix = np.zeros((n, n), dtype=np.int64)
    np.add.at(matrix, (y_true.astype(np.int64), y_pred.astype(np.int64)), 1)
    return matrix
