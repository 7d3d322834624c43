"""Argument handling of ``Sequential.fit`` / ``evaluate`` / ``predict`` in Keras' spellings: ``batch_size=None``
(Keras' 32), ``validation_data=(x, y)`` or ``(x, y, sample_weight)`` (``None`` weights allowed), and per-example
loss weights from ``sample_weight`` and ``class_weight``.

Weighted loss (Keras' semantics): with weights w, a batch's loss is ``sum(w_i · loss_i) / n`` over its n examples
(not divided by the weights' sum); ``class_weight={class: weight}`` gives each example the weight of its class and
multiplies ``sample_weight`` when both are given. Metrics stay unweighted (Keras' ``metrics=``); the reported
``loss`` and ``val_loss`` are the weighted ones.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from graphc.ir import GraphcError
from graphc.nn.state import describe_nonfinite, first_nonfinite

KERAS_BATCH_SIZE = 32


def batch_size(value: Any) -> int:
    """``value`` as a positive batch size; ``None`` is Keras' default 32."""
    if value is None:
        return KERAS_BATCH_SIZE
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise GraphcError(f"batch_size must be a positive integer (or None for {KERAS_BATCH_SIZE}), got {value!r}")
    return int(value)


def unpack_validation(data: Any) -> tuple[Any, Any, Any]:
    """(x, y, sample_weight or None) from Keras' ``validation_data`` forms."""
    if not isinstance(data, (tuple, list)) or len(data) not in (2, 3):
        raise GraphcError("validation_data must be a tuple (x_val, y_val) or (x_val, y_val, sample_weight), got "
                          f"{type(data).__name__}{'' if not isinstance(data, (tuple, list)) else f' of {len(data)}'}")
    x, y, *rest = data
    return x, y, rest[0] if rest else None


def check_initial_epoch(value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise GraphcError(f"initial_epoch must be a non-negative integer, got {value!r}")


def fit_data(check: Callable[[Any, Any], tuple[np.ndarray, Any]], loss: str | None, x: Any, y: Any,
             validation_data: Any, validation_split: float, sample_weight: Any,
             class_weight: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, Any]:
    """(x, y, training weights or None, (x_val, y_val, val weights or None) or None) for ``fit``; ``check`` is the
    model's data check. ``validation_split`` holds out the last examples with their sample weights (class_weight
    applies to training only, as in Keras); an empty training or validation set is an error."""
    x, y = check(x, y)
    require_examples(len(x), "fit's training data")
    raw = None if sample_weight is None else sample_weights(y, loss, sample_weight, None)
    if validation_split and validation_data is None:
        if not 0.0 < validation_split < 1.0:
            raise GraphcError(f"validation_split must be in (0, 1), got {validation_split}")
        cut = len(x) - int(round(len(x) * validation_split))
        if not 0 < cut < len(x):
            raise GraphcError(f"validation_split={validation_split} of {len(x)} examples leaves {len(x) - cut} for "
                              f"validation and {cut} for training; both need at least one")
        validation_data = (x[cut:], y[cut:], None if raw is None else raw[cut:])
        x, y, raw = x[:cut], y[:cut], None if raw is None else raw[:cut]
    weights = sample_weights(y, loss, raw, class_weight)
    if validation_data is not None:
        vx, vy, vw = unpack_validation(validation_data)
        vx, vy = check(vx, vy)
        require_examples(len(vx), "validation_data")
        validation_data = (vx, vy, sample_weights(vy, loss, vw, None, "validation_data"))
    return x, y, weights, validation_data


def require_examples(count: int, what: str) -> None:
    if count == 0:
        raise GraphcError(f"{what} has no examples (0 rows); give it at least one, or leave it out")


def class_labels(y: np.ndarray, loss: str | None) -> np.ndarray:
    """The integer class of each target, for ``class_weight``."""
    if y.ndim == 1 and y.dtype.kind in "iu":
        return y.astype(np.int64)
    if y.ndim == 2 and y.shape[1] > 1:
        return y.argmax(axis=1)
    flat = y.reshape(len(y))
    if y.ndim <= 2 and np.isin(flat, (0, 1)).all():
        return flat.astype(np.int64)
    raise GraphcError(f"class_weight needs class targets (integer labels, one-hot rows or 0/1 values); loss {loss!r} "
                      f"got targets of shape {y.shape} ({y.dtype}); use sample_weight instead")


def sample_weights(y: np.ndarray, loss: str | None, sample_weight: Any, class_weight: Any,
                   what: str = "fit") -> np.ndarray | None:
    """The per-example loss weights (float32, shape (n,)) of ``sample_weight`` × ``class_weight``, or None."""
    n, weights = len(y), None
    if sample_weight is not None:
        weights = np.asarray(sample_weight, dtype=np.float64)
        if weights.shape not in ((n,), (n, 1)):
            raise GraphcError(f"{what}: sample_weight must have one weight per example, shape ({n},); got "
                              f"{weights.shape}")
        weights = weights.reshape(n)
        if not np.isfinite(weights).all() or (weights < 0).any():
            raise GraphcError(f"{what}: sample_weight must be finite and non-negative")
    if class_weight is not None:
        if not isinstance(class_weight, dict):
            raise GraphcError(f"{what}: class_weight must be a dict {{class: weight}}, got "
                              f"{type(class_weight).__name__}")
        labels = class_labels(y, loss)
        missing = sorted({int(c) for c in np.unique(labels)} - {int(k) for k in class_weight})
        if missing:
            raise GraphcError(f"{what}: class_weight has no weight for class(es) {missing} found in the targets")
        table = {int(k): float(v) for k, v in class_weight.items()}
        if any(not np.isfinite(v) or v < 0 for v in table.values()):
            raise GraphcError(f"{what}: class_weight values must be finite and non-negative, got {class_weight}")
        per_class = np.array([table[int(c)] for c in labels], dtype=np.float64)
        weights = per_class if weights is None else weights * per_class
    return None if weights is None else weights.astype(np.float32)


class TrainingError(GraphcError):
    """Training diverged (a NaN or infinite loss, weight or optimizer value); ``history`` holds the epochs completed
    before, and the model's state is that of the start of the failing epoch."""

    def __init__(self, message: str, history: Any) -> None:
        super().__init__(message)
        self.history = history


def check_step(state: dict[str, np.ndarray], loss: float, names: list[str], where: str, epoch: int,
               history: Any) -> None:
    """Raise TrainingError when the step's loss or the state it left is not finite (cost: module docstring
    of graphc.nn.state)."""
    if math.isfinite(loss):
        bad = first_nonfinite(state, names)
        if bad is None:
            return
        problem = f"{bad} became {describe_nonfinite(state[bad])} (the loss was still {loss:.6g})"
    else:
        problem = f"the loss became {loss}"
    raise TrainingError(f"{problem} at {where}; training stopped and the weights and optimizer state were "
                        f"restored to the start of epoch {epoch + 1}. Try a smaller learning rate.", history)
