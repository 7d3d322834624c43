"""Keras metrics as graph functions ``metric(y_true, y_pred) -> per-example values``.

    model.compile(loss="mse", metrics=["mae"])                      # logs "mae", "val_mae"
    model.compile(loss="categorical_crossentropy", metrics="accuracy")
    def within_10pct(y_true, y_pred):                                # any function of graphc ops
        return gc.mean(gc.cast(gc.abs(y_pred - y_true) < 0.1 * gc.abs(y_true), "float32"), axis=-1)
    model.compile(loss="mse", metrics=["mae", within_10pct])        # logs "within_10pct"

Where they run: on each batch's predictions, after the model's compiled program returned them (the training
step's outputs are those of the forward pass before the update, as in Keras). All the model's metrics form one
small graph over two inputs ``y_true`` and ``y_pred`` with the batch's shapes, run by graphc's NumPy interpreter
(no native compile, no delay, no change to the compiled training step). A metric returns per-example values
(shape ``(batch,)`` or ``(batch, ...)``) or a scalar; a batch's value is their mean, an epoch's value the mean over
its examples (a scalar counts as the mean of its batch's examples).

Built-ins (Keras' definitions; the mean is over the last axis unless said otherwise):
- ``mae`` = mean|ŷ − y|, ``mse`` = mean (ŷ − y)²;
- ``binary_accuracy`` = mean[y == (ŷ > 0.5)];
- ``categorical_accuracy`` = [argmax ŷ == argmax y], ``sparse_categorical_accuracy`` = [argmax ŷ == y] (the first
  maximum wins ties, as NumPy's argmax);
- ``top_k_categorical_accuracy`` (k=5) = [fewer than k classes score strictly above the true one] (TensorFlow's
  ``in_top_k``: ties at the boundary count as in the top k); ``sparse_top_k_categorical_accuracy`` likewise.

``"accuracy"``/``"acc"`` resolve as in Keras: sparse_categorical_accuracy for
``sparse_categorical_crossentropy``, binary_accuracy for ``binary_crossentropy`` or a single output unit,
categorical_accuracy otherwise. Log keys are the names given (``"acc"`` logs ``"acc"``) or a function's
``__name__``. A model file keeps the names; a custom function cannot be written down, so ``load_model`` leaves it
out with a warning (compile again to compute it).
"""

from __future__ import annotations

import functools
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from graphc.ir import Graph, GraphcError, Node
from ops import fn

MetricFn = Callable[[Node, Node], Node]
ACCURACY = ("accuracy", "acc")


def _aligned(y_true: Node, y_pred: Node, what: str) -> Node:
    """``y_true`` in ``y_pred``'s shape (targets (n,) for outputs (n, 1) are reshaped), cast to its dtype."""
    if y_true.shape != y_pred.shape:
        if y_pred.shape[-1:] == (1,) and y_true.shape == y_pred.shape[:-1]:
            y_true = fn.reshape(y_true, y_pred.shape)
        else:
            hint = "; for integer class labels use 'sparse_categorical_accuracy'" if y_true.ndim < y_pred.ndim else ""
            raise GraphcError(f"{what} compares targets of shape {y_true.shape} with outputs of shape "
                              f"{y_pred.shape}{hint}")
    return y_true if y_true.dtype == y_pred.dtype else fn.cast(y_true, y_pred.dtype)


def _labels(y_true: Node, y_pred: Node, what: str) -> Node:
    """Integer class labels of shape ``y_pred.shape[:-1]`` (a trailing axis of 1 is dropped)."""
    if y_true.shape == y_pred.shape[:-1] + (1,) and y_pred.shape[-1] != 1:
        y_true = fn.reshape(y_true, y_true.shape[:-1])
    if y_true.shape != y_pred.shape[:-1]:
        hint = f"; for one-hot targets use {what.replace('sparse_', '')!r}" if y_true.shape == y_pred.shape else ""
        raise GraphcError(f"{what} expects class labels of shape {y_pred.shape[:-1]} for outputs of shape "
                          f"{y_pred.shape}, got {y_true.shape}{hint}")
    return y_true if y_true.dtype == "int64" else fn.cast(y_true, "int64")


def _one_hot(labels: Node, y_pred: Node) -> Node:
    flat = fn.reshape(labels, (-1,)) if labels.ndim != 1 else labels
    rows = fn.one_hot(flat, y_pred.shape[-1], y_pred.dtype)
    return rows if labels.ndim == 1 else fn.reshape(rows, y_pred.shape)


def _first_max(x: Node) -> Node:
    """One-hot rows marking the first maximum of each row of ``x`` (NumPy's argmax)."""
    k = x.shape[-1]
    is_max = fn.cast(fn.equal(x, fn.max(x, axis=-1, keepdims=True)), x.dtype)
    before = np.triu(np.ones((k, k), dtype=x.dtype), 1)  # before[j, i] = 1 when j < i
    maxima_before = fn.matmul(is_max, before)  # how many maxima come earlier in the row
    return fn.mul(is_max, fn.cast(fn.equal(maxima_before, 0.0), x.dtype))


def _in_top_k(true_rows: Node, y_pred: Node, k: int) -> Node:
    """1 where fewer than ``k`` classes score strictly above the class marked in ``true_rows``."""
    score = fn.sum(fn.mul(true_rows, y_pred), axis=-1, keepdims=True)
    above = fn.sum(fn.cast(fn.greater(y_pred, score), y_pred.dtype), axis=-1)
    return fn.cast(fn.greater(float(k), above), y_pred.dtype)


def mae(y_true: Node, y_pred: Node) -> Node:
    """mean(|y_pred − y_true|) over the last axis."""
    return fn.mean(fn.abs(fn.sub(y_pred, _aligned(y_true, y_pred, "mae"))), axis=-1)


def mse(y_true: Node, y_pred: Node) -> Node:
    """mean((y_pred − y_true)²) over the last axis."""
    diff = fn.sub(y_pred, _aligned(y_true, y_pred, "mse"))
    return fn.mean(fn.mul(diff, diff), axis=-1)


def binary_accuracy(y_true: Node, y_pred: Node, threshold: float = 0.5) -> Node:
    """mean([y_true == (y_pred > threshold)]) over the last axis."""
    y_true = _aligned(y_true, y_pred, "binary_accuracy")
    predicted = fn.cast(fn.greater(y_pred, threshold), y_pred.dtype)
    return fn.mean(fn.cast(fn.equal(y_true, predicted), y_pred.dtype), axis=-1)


def categorical_accuracy(y_true: Node, y_pred: Node) -> Node:
    """[argmax y_pred == argmax y_true] for one-hot (or probability) targets."""
    y_true = _aligned(y_true, y_pred, "categorical_accuracy")
    return fn.sum(fn.mul(_first_max(y_true), _first_max(y_pred)), axis=-1)


def sparse_categorical_accuracy(y_true: Node, y_pred: Node) -> Node:
    """[argmax y_pred == y_true] for integer class labels."""
    labels = _labels(y_true, y_pred, "sparse_categorical_accuracy")
    return fn.sum(fn.mul(_one_hot(labels, y_pred), _first_max(y_pred)), axis=-1)


def top_k_categorical_accuracy(y_true: Node, y_pred: Node, k: int = 5) -> Node:
    """[the true class (argmax y_true) is among the k highest scores of y_pred]."""
    y_true = _aligned(y_true, y_pred, "top_k_categorical_accuracy")
    return _in_top_k(_first_max(y_true), y_pred, k)


def sparse_top_k_categorical_accuracy(y_true: Node, y_pred: Node, k: int = 5) -> Node:
    """[the class label y_true is among the k highest scores of y_pred]."""
    labels = _labels(y_true, y_pred, "sparse_top_k_categorical_accuracy")
    return _in_top_k(_one_hot(labels, y_pred), y_pred, k)


BUILTIN: dict[str, MetricFn] = {
    "mae": mae, "mean_absolute_error": mae, "mse": mse, "mean_squared_error": mse,
    "binary_accuracy": binary_accuracy, "categorical_accuracy": categorical_accuracy,
    "sparse_categorical_accuracy": sparse_categorical_accuracy,
    "top_k_categorical_accuracy": top_k_categorical_accuracy,
    "sparse_top_k_categorical_accuracy": sparse_top_k_categorical_accuracy,
}
NAMES = (*ACCURACY, *BUILTIN)


def accuracy_for(loss: str | None, output_shape: Sequence[int]) -> MetricFn:
    """The function ``"accuracy"`` means for ``loss`` and outputs of ``output_shape`` (Keras' rule)."""
    if loss == "sparse_categorical_crossentropy":
        return sparse_categorical_accuracy
    if loss == "binary_crossentropy" or tuple(output_shape)[-1:] == (1,):
        return binary_accuracy
    return categorical_accuracy


@dataclass(frozen=True)
class Metric:
    """A named metric: ``fn(y_true, y_pred)`` builds its values; ``saved`` is False for custom functions."""

    name: str
    fn: MetricFn
    saved: bool = True


class TopKCategoricalAccuracy(Metric):
    """Keras' ``TopKCategoricalAccuracy(k=5)``: logs ``name`` (default ``top_k_categorical_accuracy``)."""

    def __init__(self, k: int = 5, name: str = "top_k_categorical_accuracy") -> None:
        super().__init__(name, functools.partial(top_k_categorical_accuracy, k=_k(k)), saved=False)


class SparseTopKCategoricalAccuracy(Metric):
    """Keras' ``SparseTopKCategoricalAccuracy(k=5)``: logs ``name``."""

    def __init__(self, k: int = 5, name: str = "sparse_top_k_categorical_accuracy") -> None:
        super().__init__(name, functools.partial(sparse_top_k_categorical_accuracy, k=_k(k)), saved=False)


def _k(k: Any) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k <= 0:
        raise GraphcError(f"top-k accuracy: k must be a positive integer, got {k!r}")
    return int(k)


def resolve(metrics: Any, loss: str | None) -> list[Metric]:
    """The metrics ``compile(metrics=...)`` names: None, one name or function, or a list of them."""
    if metrics is None:
        return []
    if isinstance(metrics, (str, Metric)) or callable(metrics):
        metrics = [metrics]
    if isinstance(metrics, dict) or not isinstance(metrics, (list, tuple)):
        raise GraphcError(f"metrics must be a name, a function metric(y_true, y_pred) or a list of them, got "
                          f"{metrics!r}")
    resolved = [_one(m, loss) for m in metrics]
    names = [m.name for m in resolved]
    duplicate = next((n for n in names if names.count(n) > 1), None)
    if duplicate is not None:
        raise GraphcError(f"metric {duplicate!r} is listed twice in metrics={metrics!r}")
    return resolved


def _one(metric: Any, loss: str | None) -> Metric:
    if isinstance(metric, Metric):
        return metric
    if isinstance(metric, str):
        if metric in ACCURACY:
            return Metric(metric, lambda y_true, y_pred: accuracy_for(loss, y_pred.shape)(y_true, y_pred))
        if metric in BUILTIN:
            return Metric(metric, BUILTIN[metric])
        raise GraphcError(f"unknown metric {metric!r}; choose one of {', '.join(NAMES)}, or pass a function "
                          "metric(y_true, y_pred) built from graphc ops")
    if callable(metric) and not isinstance(metric, type):
        base = metric.func if isinstance(metric, functools.partial) else metric
        name = getattr(base, "__name__", None) or type(base).__name__
        return Metric(name, metric, saved=False)
    raise GraphcError(f"metrics: {metric!r} is neither a metric name nor a function metric(y_true, y_pred)")


def from_saved(names: Sequence[str]) -> tuple[list[str], list[str]]:
    """(the built-in names of a model file's metric list, the others — custom functions, not rebuilt)."""
    return [n for n in names if n in NAMES], [n for n in names if n not in NAMES]


def direction(monitor: str, metrics: Sequence[Metric] = ()) -> str | None:
    """'max' or 'min' for a logged quantity (``val_`` stripped), as Keras' mode="auto" decides: accuracy-like
    names go up, everything else down; None for a custom metric of the model, whose direction is unknown."""
    base = monitor[4:] if monitor.startswith("val_") else monitor
    if "acc" in base:
        return "max"
    if any(m.name == base and not m.saved for m in metrics):
        return None
    return "min"


class MetricRunner:
    """Computes a model's metrics on batches of predictions: ``runner(y_true, y_pred) -> {name: batch mean}``."""

    MAX_PROGRAMS = 8

    def __init__(self, metrics: Sequence[Metric]) -> None:
        self.metrics = list(metrics)
        self._programs: OrderedDict[tuple, Any] = OrderedDict()

    @property
    def names(self) -> list[str]:
        return [m.name for m in self.metrics]

    def __call__(self, y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
        if not self.metrics:
            return {}
        y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
        program = self.program(y_true.shape, y_true.dtype, y_pred.shape, y_pred.dtype)
        out = program(y_true=y_true, y_pred=y_pred)
        return {name: float(out[name]) for name in self.names}

    def program(self, true_shape: tuple, true_dtype: Any, pred_shape: tuple, pred_dtype: Any) -> Any:
        """The interpreter program of all metrics for these batch shapes (built once, LRU-cached)."""
        from runtime import make_program

        key = (tuple(true_shape), np.dtype(true_dtype).str, tuple(pred_shape), np.dtype(pred_dtype).str)
        program = self._programs.get(key)
        if program is None:
            graph = Graph("metrics")
            y_true = graph.input("y_true", key[0], np.dtype(true_dtype).name)
            y_pred = graph.input("y_pred", key[2], np.dtype(pred_dtype).name)
            program = make_program({m.name: self._build(m, y_true, y_pred) for m in self.metrics}, backend="numpy")
            self._programs[key] = program
            while len(self._programs) > self.MAX_PROGRAMS:
                self._programs.popitem(last=False)
        self._programs.move_to_end(key)
        return program

    def check(self, target_shape: tuple, target_dtype: Any, output_shape: tuple) -> None:
        """Build every metric for a batch of 2 so a shape mismatch is an error at ``compile`` time."""
        if self.metrics:
            self.program((2, *target_shape), target_dtype, (2, *output_shape), "float32")

    @staticmethod
    def _build(metric: Metric, y_true: Node, y_pred: Node) -> Node:
        try:
            value = metric.fn(y_true, y_pred)
        except GraphcError as err:
            raise GraphcError(f"metric {metric.name!r}: {err}") from None
        except Exception as err:  # noqa: BLE001 - a user function failing on graph tensors: say what it must do
            raise GraphcError(f"metric {metric.name!r} failed on the graph tensors y_true {y_true.shape} and "
                              f"y_pred {y_pred.shape} ({type(err).__name__}: {err}); a metric function must build "
                              "its result from graphc ops (gc.mean, gc.abs, ...), not NumPy") from None
        if not isinstance(value, Node) or value.graph is not y_true.graph:
            raise GraphcError(f"metric {metric.name!r} returned {type(value).__name__}, not a graphc tensor built "
                              "from its y_true and y_pred (use graphc ops such as gc.mean, gc.abs)")
        if value.ndim and value.shape[0] != y_pred.shape[0]:
            raise GraphcError(f"metric {metric.name!r} returned shape {value.shape}; expected per-example values "
                              f"(batch {y_pred.shape[0]}, ...) or a scalar")
        if value.dtype != "float64":
            value = fn.cast(value, "float64")  # exact means of 0/1 hits
        return fn.mean(value) if value.ndim else value
