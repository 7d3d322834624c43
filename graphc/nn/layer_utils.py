"""Argument checks shared by the Keras-like layers: activations, sizes, flags, numbers, and the Keras spellings
of initializer and padding names ("HeNormal", "he_normal", "SAME")."""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np

import graphc.init as initializers
import graphc.nn.layout as layout
from graphc.ir import GraphcError
from ops import fn

ACTIVATIONS = {
    None: lambda x: x, "linear": lambda x: x, "relu": fn.relu, "sigmoid": fn.sigmoid, "tanh": fn.tanh,
    "softmax": lambda x: fn.softmax(x, axis=-1), "leaky_relu": fn.leaky_relu,
    "elu": lambda x: fn.elu(x), "gelu": lambda x: fn.gelu(x), "softplus": lambda x: fn.softplus(x),
}


def activation_fn(name: Any):
    if callable(name):
        return name
    if not isinstance(name, (str, type(None))) or name not in ACTIVATIONS:
        raise GraphcError(f"unknown activation {name!r}; choose one of {', '.join(str(k) for k in ACTIVATIONS if k)}")
    return ACTIVATIONS[name]


def _pair(value: Any, what: str) -> tuple[int, int]:
    pair = (value, value) if isinstance(value, (int, np.integer)) else value
    pair = pair.tolist() if isinstance(pair, np.ndarray) else pair
    if not isinstance(pair, (list, tuple)) or len(pair) != 2 \
            or any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v <= 0 for v in pair):
        raise GraphcError(f"{what} must be a positive int or a pair of them, got {value!r}")
    return int(pair[0]), int(pair[1])


def _positive_int(owner: str, key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise GraphcError(f"{owner}: {key} must be a positive integer, got {value!r}")
    return int(value)


def _flag(owner: str, key: str, value: Any) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise GraphcError(f"{owner}: {key} must be True or False, got {value!r}")
    return bool(value)


def _number(owner: str, key: str, value: Any, low: float, high: float) -> float:
    """``value`` as a finite float in [low, high]."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) or not low <= value <= high \
            or not math.isfinite(value):
        raise GraphcError(f"{owner}: {key} must be a finite number in [{low:g}, {high:g}], got {value!r}")
    return float(value)


def initializer(value: Any, owner: str) -> Any:
    """An initializer name in any Keras spelling ("HeNormal", "he_normal", "HE_NORMAL") as graphc's name, or a
    callable ``fn(shape, rng, dtype)`` unchanged; unknown names are a GraphcError now, not at build time."""
    if callable(value):
        return value
    if not isinstance(value, str):
        raise GraphcError(f"{owner}: an initializer is a name or a callable fn(shape, rng, dtype), got {value!r}")
    name = value if not (any(c.isupper() for c in value) and any(c.islower() for c in value)) \
        else re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", value)
    name = name.lower()
    if name not in initializers.INITIALIZERS:
        raise GraphcError(f"{owner}: unknown initializer {value!r}; choose one of "
                          f"{', '.join(sorted(initializers.INITIALIZERS))} (any case, or CamelCase like 'HeNormal')")
    return name


def padding(value: Any, owner: str, allowed: tuple[str, ...] = ("valid", "same")) -> str:
    """A padding name in any case ("SAME" → "same")."""
    name = value.lower() if isinstance(value, str) else value
    if name not in allowed:
        raise GraphcError(f"{owner}: padding must be {' or '.join(repr(a) for a in allowed)}, got {value!r}")
    return name


def shape_tuple(value: Any, owner: str, key: str = "input_shape") -> tuple[int, ...]:
    """A per-example shape (no batch axis) as a tuple of positive ints; an int n is (n,)."""
    shape = (value,) if isinstance(value, (int, np.integer)) and not isinstance(value, bool) else value
    try:
        dims = tuple(shape)
    except TypeError:
        dims = None
    if not dims or any(isinstance(d, bool) or not isinstance(d, (int, np.integer)) or d <= 0 for d in dims):
        hint = " (without the batch axis: input_shape=(4,), not (None, 4))" if dims and dims[0] is None else ""
        raise GraphcError(f"{owner}: {key} must be a tuple of positive integers{hint}, got {value!r}")
    return tuple(int(d) for d in dims)


def checked_weights(name: str, params: dict[str, Any], weights: Any) -> list[np.ndarray]:
    """``weights`` as arrays, one per param of layer ``name`` in order, each of its param's shape."""
    values = [np.asarray(w) for w in weights]
    if len(values) != len(params):
        raise GraphcError(f"layer {name!r} has {len(params)} weights ({', '.join(params)}), set_weights got "
                          f"{len(values)}")
    for (key, param), value in zip(params.items(), values):
        if value.shape != param.shape:
            hint = ""
            if key == "kernel" and len(param.shape) == 4 and value.shape == tuple(np.take(param.shape, (2, 3, 1, 0))):
                hint = "; that is Keras' (kh, kw, in, filters) layout: pass np.transpose(kernel, (3, 2, 0, 1))"
            raise GraphcError(f"layer {name!r} {key}: expected shape {param.shape}, got {value.shape}{hint}")
    return values


class InputLayer:
    """Keras' ``InputLayer(input_shape)`` / ``Input(shape)``: as the first element of a Sequential it gives the model's
    input shape (without the batch axis); it adds no layer."""

    def __init__(self, input_shape: Any = None, batch_size: int | None = None, name: str | None = None,
                 shape: Any = None, data_format: str | None = None) -> None:
        if (input_shape is None) == (shape is None):
            raise GraphcError("InputLayer: give the input shape once, e.g. InputLayer(input_shape=(28, 28))")
        self.input_shape = shape_tuple(shape if input_shape is None else input_shape, "InputLayer")
        self.name, self.batch_size = name, batch_size
        self.data_format = layout.check_format(data_format, "InputLayer")

    def __repr__(self) -> str:
        return f"InputLayer(input_shape={self.input_shape})"


def Input(shape: Any = None, batch_size: int | None = None, name: str | None = None,  # noqa: N802 - Keras' name
          data_format: str | None = None) -> InputLayer:
    """Keras' ``Input(shape=...)`` for the first element of a Sequential."""
    return InputLayer(shape=shape, batch_size=batch_size, name=name, data_format=data_format)
