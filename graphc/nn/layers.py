"""Keras-like layers. Activations are NCHW for images (graphc's convention), not Keras' NHWC.

A layer is built once (``build`` creates its params in the model's graph from the input shape without the
batch axis) and then called any number of times (``call``): once per compiled variant (training/inference,
batch size), all variants sharing the same params.

``param_specs(input_shape)`` lists the params ``build`` creates (shape, trainable) without allocating anything, so
a model file can be checked against the architecture it describes before a model is built; ``get_config()`` holds
every constructor argument that changes the loss or the training step (regularizers, rates, momenta) and
``cls(**config)`` rebuilds the layer.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

import graphc.init as initializers
import graphc.regularizers as regularizers
from graphc.ir import Graph, GraphcError, Node
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


def _regularizer_config(layer: Layer) -> dict[str, Any]:
    """The saved form of a layer's kernel and bias regularizers (a custom callable cannot be saved)."""
    return {key: regularizers.serialize(getattr(layer, key), f"layer {layer.name!r} {key}")
            for key in ("kernel_regularizer", "bias_regularizer")}


def _penalties(layer: Layer) -> list[Node]:
    """The kernel and bias penalty terms of a Dense or Conv2D layer."""
    terms = [layer.kernel_regularizer(layer.params["kernel"])] if layer.kernel_regularizer else []
    if layer.bias_regularizer and "bias" in layer.params:
        terms.append(layer.bias_regularizer(layer.params["bias"]))
    return terms


class Layer:
    """Base layer: ``build(graph, input_shape, rng)`` → output shape; ``call(x, training)`` → tensor."""

    def __init__(self, name: str | None = None, input_shape: Any = None) -> None:
        if name is not None and (not isinstance(name, str) or not name):
            raise GraphcError(f"{type(self).__name__}: name must be a non-empty string, got {name!r}")
        self.name = name
        self.input_shape = None if input_shape is None else tuple(int(d) for d in input_shape)
        self.output_shape: tuple[int, ...] | None = None
        self.params: dict[str, Node] = {}
        self.graph: Graph | None = None

    # -- configuration (for save/load) -----------------------------------------------------------------
    def get_config(self) -> dict[str, Any]:
        return {"name": self.name}

    # -- building ------------------------------------------------------------------------------------
    def build(self, graph: Graph, input_shape: tuple[int, ...], rng: np.random.Generator) -> tuple[int, ...]:
        """Create the params of ``param_specs(input_shape)`` (in that order) in ``graph``; the output shape."""
        self.graph = graph
        self.output_shape = self.compute_output_shape(input_shape)
        for key, (shape, trainable) in self.param_specs(input_shape).items():
            self.add_param(key, self.initial_value(key, shape, rng), trainable=trainable)
        return self.output_shape

    def compute_output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        return input_shape

    def param_specs(self, input_shape: tuple[int, ...]) -> dict[str, tuple[tuple[int, ...], bool]]:
        """``{key: (shape, trainable)}`` of the float32 params ``build`` creates for ``input_shape``."""
        return {}

    def initial_value(self, key: str, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
        """The initial float32 value of param ``key``."""
        raise NotImplementedError

    def add_param(self, key: str, value: np.ndarray, trainable: bool = True) -> Node:
        node = self.graph.param(f"{self.name}/{key}", value, trainable=trainable)
        self.params[key] = node
        return node

    def call(self, x: Node, training: bool) -> Node:
        raise NotImplementedError

    def regularization(self) -> list[Node]:
        """Penalty terms this layer adds to the training loss."""
        return []

    def count_params(self) -> tuple[int, int]:
        """(trainable, non-trainable) parameter counts."""
        trainable = sum(p.size for p in self.params.values() if p.name in self.graph.trainable)
        return trainable, sum(p.size for p in self.params.values()) - trainable

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


class Dense(Layer):
    """y = activation(x · W + b), W of shape (in, units)."""

    def __init__(self, units: int, activation: Any = None, use_bias: bool = True,
                 kernel_initializer: Any = "glorot_uniform", bias_initializer: Any = "zeros",
                 kernel_regularizer: Any = None, bias_regularizer: Any = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.units, self.activation = _positive_int("Dense", "units", units), activation
        self.use_bias = _flag("Dense", "use_bias", use_bias)
        self.kernel_initializer, self.bias_initializer = kernel_initializer, bias_initializer
        self.kernel_regularizer = regularizers.get(kernel_regularizer, "Dense kernel_regularizer")
        self.bias_regularizer = regularizers.get(bias_regularizer, "Dense bias_regularizer")
        activation_fn(activation)

    def get_config(self):
        return {**super().get_config(), "units": self.units, "activation": self.activation, "use_bias": self.use_bias,
                **_regularizer_config(self)}

    def compute_output_shape(self, input_shape):
        if len(input_shape) != 1:
            raise GraphcError(f"Dense {self.name!r} needs a flat input (features,), got {input_shape}; add Flatten()")
        return (self.units,)

    def param_specs(self, input_shape):
        specs = {"kernel": ((input_shape[0], self.units), True)}
        return {**specs, "bias": ((self.units,), True)} if self.use_bias else specs

    def initial_value(self, key, shape, rng):
        return initializers.get(self.kernel_initializer if key == "kernel" else self.bias_initializer)(shape, rng)

    def call(self, x, training):
        y = fn.matmul(x, self.params["kernel"])
        if self.use_bias:
            y = fn.add(y, self.params["bias"])
        return activation_fn(self.activation)(y)

    def regularization(self):
        return _penalties(self)


class Conv2D(Layer):
    """y = activation(conv2d(x, W, b)), x (N, C, H, W), W (filters, C, kh, kw)."""

    def __init__(self, filters: int, kernel_size: Any, strides: Any = 1, padding: str = "valid",
                 activation: Any = None, use_bias: bool = True, kernel_initializer: Any = "glorot_uniform",
                 bias_initializer: Any = "zeros", kernel_regularizer: Any = None, bias_regularizer: Any = None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if padding not in ("valid", "same"):
            raise GraphcError(f"Conv2D: padding must be 'valid' or 'same', got {padding!r}")
        self.filters = _positive_int("Conv2D", "filters", filters)
        self.kernel_size = _pair(kernel_size, "Conv2D kernel_size")
        self.strides, self.padding = _pair(strides, "Conv2D strides"), padding
        self.activation, self.use_bias = activation, _flag("Conv2D", "use_bias", use_bias)
        self.kernel_initializer, self.bias_initializer = kernel_initializer, bias_initializer
        self.kernel_regularizer = regularizers.get(kernel_regularizer, "Conv2D kernel_regularizer")
        self.bias_regularizer = regularizers.get(bias_regularizer, "Conv2D bias_regularizer")
        activation_fn(activation)

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "kernel_size": list(self.kernel_size),
                "strides": list(self.strides), "padding": self.padding, "activation": self.activation,
                "use_bias": self.use_bias, **_regularizer_config(self)}

    def compute_output_shape(self, input_shape):
        if len(input_shape) != 3:
            raise GraphcError(f"Conv2D {self.name!r} needs an image input (channels, height, width), got {input_shape}")
        c, h, w = input_shape
        (kh, kw), (sh, sw) = self.kernel_size, self.strides
        if self.padding == "same":
            return self.filters, -(-h // sh), -(-w // sw)
        if kh > h or kw > w:
            raise GraphcError(f"Conv2D {self.name!r}: kernel {self.kernel_size} is larger than the input {(h, w)}")
        return self.filters, (h - kh) // sh + 1, (w - kw) // sw + 1

    def param_specs(self, input_shape):
        specs = {"kernel": ((self.filters, input_shape[0], *self.kernel_size), True)}
        return {**specs, "bias": ((self.filters,), True)} if self.use_bias else specs

    def initial_value(self, key, shape, rng):
        return initializers.get(self.kernel_initializer if key == "kernel" else self.bias_initializer)(shape, rng)

    def call(self, x, training):
        y = fn.conv2d(x, self.params["kernel"], self.params.get("bias"), stride=self.strides, padding=self.padding)
        return activation_fn(self.activation)(y)

    def regularization(self):
        return _penalties(self)


class _Pool2D(Layer):
    def __init__(self, pool_size: Any = 2, strides: Any = None, padding: str = "valid", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if padding != "valid":
            raise GraphcError(f"{type(self).__name__}: only padding='valid' is supported, got {padding!r}")
        self.pool_size = _pair(pool_size, "pool_size")
        self.strides = self.pool_size if strides is None else _pair(strides, "strides")

    def get_config(self):
        return {**super().get_config(), "pool_size": list(self.pool_size), "strides": list(self.strides)}

    def compute_output_shape(self, input_shape):
        if len(input_shape) != 3:
            raise GraphcError(f"{type(self).__name__} needs (channels, height, width), got {input_shape}")
        c, h, w = input_shape
        (ph, pw), (sh, sw) = self.pool_size, self.strides
        if ph > h or pw > w:
            raise GraphcError(f"{type(self).__name__} {self.name!r}: pool {self.pool_size} larger than input {(h, w)}")
        return c, (h - ph) // sh + 1, (w - pw) // sw + 1


class MaxPool2D(_Pool2D):
    """Max over pool_size windows."""

    def call(self, x, training):
        return fn.max_pool2d(x, self.pool_size, stride=self.strides)


class AvgPool2D(_Pool2D):
    """Mean over pool_size windows."""

    def call(self, x, training):
        return fn.avg_pool2d(x, self.pool_size, stride=self.strides)


MaxPooling2D, AveragePooling2D = MaxPool2D, AvgPool2D


class Flatten(Layer):
    """(N, d1, d2, ...) → (N, d1·d2·...)."""

    def compute_output_shape(self, input_shape):
        return (math.prod(input_shape),)

    def call(self, x, training):
        return fn.reshape(x, (x.shape[0], -1))


class Dropout(Layer):
    """Inverted dropout while training (kept units scaled by 1/(1 − rate)); identity at inference."""

    def __init__(self, rate: float, seed: int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if isinstance(rate, bool) or not isinstance(rate, (int, float, np.number)) or not 0.0 <= rate < 1.0:
            raise GraphcError(f"Dropout: rate must be a number in [0, 1), got {rate!r}")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0):
            raise GraphcError(f"Dropout: seed must be None or a non-negative integer, got {seed!r}")
        self.rate, self.seed = float(rate), None if seed is None else int(seed)

    def get_config(self):
        return {**super().get_config(), "rate": self.rate, "seed": self.seed}

    def build(self, graph, input_shape, rng):
        if self.seed is None:
            self.seed = int(rng.integers(0, 2**31 - 1))
        return super().build(graph, input_shape, rng)

    def call(self, x, training):
        if not training or self.rate == 0.0:
            return x
        return fn.dropout(x, self.rate, training=True, seed=self.seed)


class BatchNormalization(Layer):
    """Batch normalization per feature (dense) or per channel (images), Keras defaults.

    ``momentum`` follows Keras: running ← momentum · running + (1 − momentum) · batch statistic.
    """

    def __init__(self, momentum: float = 0.99, epsilon: float = 1e-3, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.momentum = _number("BatchNormalization", "momentum", momentum, 0.0, 1.0)
        self.epsilon = _number("BatchNormalization", "epsilon", epsilon, 0.0, math.inf)
        if self.epsilon == 0.0:
            raise GraphcError("BatchNormalization: epsilon must be positive, got 0")

    def get_config(self):
        return {**super().get_config(), "momentum": self.momentum, "epsilon": self.epsilon}

    def param_specs(self, input_shape):
        channels = (input_shape[0],)
        return {"gamma": (channels, True), "beta": (channels, True), "moving_mean": (channels, False),
                "moving_variance": (channels, False)}

    def initial_value(self, key, shape, rng):
        return (np.ones if key in ("gamma", "moving_variance") else np.zeros)(shape, np.float32)

    def call(self, x, training):
        p = self.params
        return fn.batch_norm(x, p["gamma"], p["beta"], p["moving_mean"], p["moving_variance"], training=training,
                             momentum=1.0 - self.momentum, eps=self.epsilon)


class Activation(Layer):
    """y = activation(x) by name ("relu", "sigmoid", "tanh", "softmax", ...)."""

    def __init__(self, activation: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.activation = activation
        activation_fn(activation)

    def get_config(self):
        return {**super().get_config(), "activation": self.activation}

    def call(self, x, training):
        return activation_fn(self.activation)(x)


class ReLU(Activation):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__("relu", **kwargs)

    def get_config(self):
        return Layer.get_config(self)


class Sigmoid(ReLU):
    def __init__(self, **kwargs: Any) -> None:
        Activation.__init__(self, "sigmoid", **kwargs)


class Tanh(ReLU):
    def __init__(self, **kwargs: Any) -> None:
        Activation.__init__(self, "tanh", **kwargs)


class Softmax(ReLU):
    def __init__(self, **kwargs: Any) -> None:
        Activation.__init__(self, "softmax", **kwargs)


class LeakyReLU(Layer):
    """y = x for x > 0, alpha·x otherwise."""

    def __init__(self, alpha: float = 0.3, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.alpha = _number("LeakyReLU", "alpha", alpha, -math.inf, math.inf)

    def get_config(self):
        return {**super().get_config(), "alpha": self.alpha}

    def call(self, x, training):
        return fn.leaky_relu(x, alpha=self.alpha)


LAYERS = {cls.__name__: cls for cls in (Dense, Conv2D, MaxPool2D, AvgPool2D, Flatten, Dropout, BatchNormalization,
                                        Activation, ReLU, Sigmoid, Tanh, Softmax, LeakyReLU)}
