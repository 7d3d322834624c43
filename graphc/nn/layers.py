"""Keras-like layers. Layers compute on NCHW images (graphc's convention); a model built with
``data_format="channels_last"`` takes NHWC data and converts it once at its input (:mod:`graphc.nn.layout`).

Weights (``get_weights`` / ``set_weights``, Keras' order): Dense ``[kernel (in, units), bias (units,)]`` — the same
shapes as Keras; Conv2D ``[kernel (filters, in_channels, kh, kw), bias (filters,)]`` — Keras' kernel is
(kh, kw, in_channels, filters): convert with ``np.transpose(k, (3, 2, 0, 1))``; BatchNormalization
``[gamma, beta, moving_mean, moving_variance]``.

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
import graphc.nn.layout as layout
import graphc.regularizers as regularizers
from graphc.ir import Graph, GraphcError, Node
from graphc.nn.layer_utils import (  # noqa: F401 - Input(Layer): Keras-style re-export
    Input,
    InputLayer,
    _flag,
    _number,
    _pair,
    _positive_int,
    activation_fn,
    checked_weights,
    shape_tuple,
)
from graphc.nn.layer_utils import initializer as _initializer
from graphc.nn.layer_utils import padding as _padding
from ops import fn


def _regularizer_config(layer: Layer) -> dict[str, Any]:
    """The saved form of a layer's kernel and bias regularizers (a custom callable cannot be saved)."""
    return {key: regularizers.serialize(getattr(layer, key), f"layer {layer.name!r} {key}")
            for key in ("kernel_regularizer", "bias_regularizer")}


def _format_config(layer: Layer) -> dict[str, Any]:
    """``data_format`` in a layer's config only when it was given (files written before it existed stay valid)."""
    return {} if layer.data_format is None else {"data_format": layer.data_format}


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
        self.input_shape = None if input_shape is None else shape_tuple(input_shape, type(self).__name__)
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

    def get_weights(self) -> list[np.ndarray]:
        """Copies of this layer's params in Keras' order (module docstring); [] before the model is built."""
        if self.graph is None:
            return []
        with self.graph.state_lock:
            return [self.graph.state[p.name].copy() for p in self.params.values()]

    def set_weights(self, weights: list[Any]) -> None:
        """Overwrite this layer's params from a list in ``get_weights``' order and shapes (checked first, so a
        wrong list changes nothing)."""
        if self.graph is None:
            raise GraphcError(f"layer {self.name!r} has no weights yet: build the model first (model.build(...))")
        params, values = list(self.params.values()), checked_weights(self.name, self.params, weights)
        with self.graph.state_lock:
            for param, value in zip(params, values):
                self.graph.state[param.name][...] = value

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


class Dense(Layer):
    """y = activation(x · W + b), W of shape (in, units)."""

    def __init__(self, units: int, activation: Any = None, use_bias: bool = True,
                 kernel_initializer: Any = "glorot_uniform", bias_initializer: Any = "zeros",
                 kernel_regularizer: Any = None, bias_regularizer: Any = None, input_dim: int | None = None,
                 **kwargs: Any) -> None:
        if input_dim is not None:
            if kwargs.get("input_shape") is not None:
                raise GraphcError("Dense: give input_dim or input_shape, not both")
            kwargs["input_shape"] = (_positive_int("Dense", "input_dim", input_dim),)
        super().__init__(**kwargs)
        self.units, self.activation = _positive_int("Dense", "units", units), activation
        self.use_bias = _flag("Dense", "use_bias", use_bias)
        self.kernel_initializer = _initializer(kernel_initializer, "Dense kernel_initializer")
        self.bias_initializer = _initializer(bias_initializer, "Dense bias_initializer")
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
                 data_format: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.filters = _positive_int("Conv2D", "filters", filters)
        self.kernel_size = _pair(kernel_size, "Conv2D kernel_size")
        self.strides, self.padding = _pair(strides, "Conv2D strides"), _padding(padding, "Conv2D")
        self.activation, self.use_bias = activation, _flag("Conv2D", "use_bias", use_bias)
        self.data_format = layout.check_format(data_format, "Conv2D")
        self.kernel_initializer = _initializer(kernel_initializer, "Conv2D kernel_initializer")
        self.bias_initializer = _initializer(bias_initializer, "Conv2D bias_initializer")
        self.kernel_regularizer = regularizers.get(kernel_regularizer, "Conv2D kernel_regularizer")
        self.bias_regularizer = regularizers.get(bias_regularizer, "Conv2D bias_regularizer")
        activation_fn(activation)

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "kernel_size": list(self.kernel_size),
                "strides": list(self.strides), "padding": self.padding, "activation": self.activation,
                "use_bias": self.use_bias, **_regularizer_config(self), **_format_config(self)}

    def compute_output_shape(self, input_shape):
        if len(input_shape) != 3:
            raise GraphcError(f"Conv2D {self.name!r} needs an image input (height, width, channels) or "
                              f"(channels, height, width), got {input_shape}")
        c, h, w = input_shape
        (kh, kw), (sh, sw) = self.kernel_size, self.strides
        if self.padding == "same":
            return self.filters, -(-h // sh), -(-w // sw)
        if kh > h or kw > w:
            raise GraphcError(f"Conv2D {self.name!r}: kernel {self.kernel_size} is larger than the input {(h, w)} "
                              "(height, width); padding='same' keeps the size")
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
    def __init__(self, pool_size: Any = 2, strides: Any = None, padding: str = "valid", data_format: str | None = None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        _padding(padding, type(self).__name__, ("valid",))
        self.pool_size = _pair(pool_size, "pool_size")
        self.strides = self.pool_size if strides is None else _pair(strides, "strides")
        self.data_format = layout.check_format(data_format, type(self).__name__)

    def get_config(self):
        return {**super().get_config(), "pool_size": list(self.pool_size), "strides": list(self.strides),
                **_format_config(self)}

    def compute_output_shape(self, input_shape):
        if len(input_shape) != 3:
            raise GraphcError(f"{type(self).__name__} needs an image input, got {input_shape}")
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


class GlobalAveragePooling2D(Layer):
    """Mean over each channel's height and width: images → (N, channels)."""

    def __init__(self, data_format: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.data_format = layout.check_format(data_format, "GlobalAveragePooling2D")

    def get_config(self):
        return {**super().get_config(), **_format_config(self)}

    def compute_output_shape(self, input_shape):
        if len(input_shape) != 3:
            raise GraphcError(f"GlobalAveragePooling2D {self.name!r} needs an image input, got {input_shape}")
        return (input_shape[0],)

    def call(self, x, training):
        return fn.reshape(fn.global_avg_pool2d(x), (x.shape[0], x.shape[1]))


GlobalAvgPool2D = GlobalAveragePooling2D


class Flatten(Layer):
    """(N, d1, d2, ...) → (N, d1·d2·...); images flatten in graphc's (C, H, W) order in either data format."""

    def __init__(self, data_format: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.data_format = layout.check_format(data_format, "Flatten")

    def get_config(self):
        return {**super().get_config(), **_format_config(self)}

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


LAYERS = {cls.__name__: cls for cls in (Dense, Conv2D, MaxPool2D, AvgPool2D, GlobalAveragePooling2D, Flatten, Dropout,
                                        BatchNormalization, Activation, ReLU, Sigmoid, Tanh, Softmax, LeakyReLU)}
