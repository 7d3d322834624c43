"""Keras loss names → graphc loss graphs, and metrics computed from predictions.

When the model ends in softmax (or sigmoid) and the loss is a cross-entropy, the loss is built on the logits
(the softmax's input) with the stable fused form instead of log(softmax(z)).
"""

from __future__ import annotations

from typing import Any

import numpy as np

import graphc.nn.layout as layout
from graphc.ir import GraphcError, Node
from ops import fn

LOSSES = ("categorical_crossentropy", "sparse_categorical_crossentropy", "binary_crossentropy", "mse",
          "mean_squared_error", "mae", "mean_absolute_error")


def check_loss(name: str) -> str:
    if name not in LOSSES:
        raise GraphcError(f"unknown loss {name!r}; choose one of {', '.join(LOSSES)}")
    return {"mean_squared_error": "mse", "mean_absolute_error": "mae"}.get(name, name)


def check_metrics(metrics: Any, loss: str | None = None) -> list[str]:
    """The log names of ``compile(metrics=...)`` (a name, a function or a list; graphc.nn.metrics.resolve)."""
    from graphc.nn.metrics import resolve

    return [m.name for m in resolve(metrics, loss)]


def target_spec(loss: str, output_shape: tuple[int, ...]) -> tuple[tuple[int, ...], str]:
    """Per-example shape and dtype of the targets a loss expects."""
    if loss == "sparse_categorical_crossentropy":
        return (), "int64"
    return tuple(output_shape), "float32"


def check_data(x: Any, y: Any, input_shape: tuple[int, ...], output_shape: tuple[int, ...],
               loss: str | None, data_format: str = "channels_first") -> tuple[np.ndarray, np.ndarray | None]:
    """``(x, y)`` as arrays, checked against the model's input shape and what ``loss`` expects of the targets
    (``y=None``: inputs only); a GraphcError with a hint for the usual mix-ups.

    Keras' lenient forms are accepted where they are unambiguous: targets of shape (n,) for a one-unit output,
    class labels of shape (n, 1), and class labels stored as floats when every one is an exact integer.
    """
    x = np.asarray(x)
    if x.shape[1:] != input_shape:
        expected = ", ".join(map(str, input_shape))
        raise GraphcError(f"inputs have shape {x.shape}; the model expects (batch, {expected})"
                          f"{layout.mismatch_hint(x.shape[1:], input_shape, data_format)}")
    if y is None:
        return x, None
    y = np.asarray(y)
    shape, dtype = target_spec(loss, output_shape)
    if len(y) != len(x):
        raise GraphcError(f"{len(x)} inputs but {len(y)} labels")
    y = _lenient_targets(y, shape, dtype, loss)
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


def _lenient_targets(y: np.ndarray, shape: tuple[int, ...], dtype: str, loss: str | None) -> np.ndarray:
    """Keras' accepted target forms converted to the exact one (shape and dtype) the loss program takes."""
    if shape == (1,) and y.shape == (len(y),):
        y = y.reshape(len(y), 1)
    if dtype == "int64" and y.shape == (len(y), 1):
        y = y.reshape(len(y))
    if dtype == "int64" and y.dtype.kind == "f" and y.shape[1:] == shape:
        if not (np.isfinite(y).all() and (y == np.round(y)).all()):
            bad = y[~(np.isfinite(y) & (y == np.round(y)))][0]
            raise GraphcError(f"loss {loss!r} expects integer class labels, but the labels are {y.dtype} and hold "
                              f"{float(bad)!r}, which is not a class index; pass y.astype(int) if the values are "
                              "classes")
        y = y.astype(np.int64)
    if dtype == "float32" and y.dtype.kind in "iub" and y.shape[1:] == shape:
        y = y.astype(np.float32)
    return y


def build_loss(loss: str, output: Node, targets: Node, weights: Node | None = None) -> Node:
    """The mean loss over the batch for model ``output`` against ``targets``; with per-example ``weights`` (N,),
    ``sum(w_i · loss_i) / N`` (Keras' sample weighting)."""
    if weights is not None:
        per_example = _per_example_loss(loss, output, targets)
        return fn.div(fn.sum(fn.mul(per_example, weights)), float(output.shape[0]))
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


def _per_example_loss(loss: str, output: Node, targets: Node) -> Node:
    """The loss of each example (N,): the mean over its elements for mse, mae and binary cross-entropy."""
    if loss in ("categorical_crossentropy", "sparse_categorical_crossentropy"):
        if output.op == "softmax" and output.ndim == 2:
            return fn.softmax_cross_entropy(output.inputs[0], targets, reduction="none")
        probs = fn.clip(output, 1e-7, 1.0 - 1e-7)
        if loss == "sparse_categorical_crossentropy":
            targets = fn.one_hot(targets, output.shape[-1], output.dtype)
        return fn.neg(fn.sum(fn.mul(targets, fn.log(probs)), axis=-1))
    if loss == "binary_crossentropy":
        terms = fn.sigmoid_binary_cross_entropy(output.inputs[0], targets, reduction="none") \
            if output.op == "sigmoid" else fn.binary_cross_entropy(output, targets, reduction="none")
    else:
        terms = (fn.mse if loss == "mse" else fn.mae)(output, targets, reduction="none")
    return fn.mean(terms, axis=tuple(range(1, terms.ndim))) if terms.ndim > 1 else terms


def accuracy(loss: str, predictions: np.ndarray, targets: np.ndarray) -> float:
    """Fraction of correct predictions, as ``metrics=["accuracy"]`` computes it for ``loss``: argmax for multi-class
    outputs (first maximum wins), [target == (prediction > 0.5)] for binary ones."""
    from graphc.nn.metrics import MetricRunner, resolve

    return MetricRunner(resolve("accuracy", loss))(targets, predictions)["accuracy"]


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
