"""Building a Sequential's layers (Keras' shape forms, the image layout, all-or-nothing) and finding layers."""

from __future__ import annotations

from typing import Any

import numpy as np

import graphc.nn.layout as layout
from graphc.ir import Graph, GraphcError
from graphc.nn.layer_utils import shape_tuple


def input_shape_of(requested: Any, declared: tuple[int, ...] | None) -> tuple[int, ...]:
    """The per-example input shape from ``build``'s argument — ``(4,)``, or Keras' ``(None, 4)`` with the batch
    axis — or else the declared one (Input/InputLayer, first layer's input_shape)."""
    if isinstance(requested, (tuple, list)) and len(requested) > 1 and requested[0] is None:
        requested = tuple(requested[1:])
    shape = requested if requested is not None else declared
    if shape is None:
        raise GraphcError("the model does not know its input shape yet: give the first layer input_shape=... "
                          "(or start with gc.nn.Input(shape=...)), call model.build(input_shape), or call fit/"
                          "predict/evaluate, which build it from the data")
    return shape_tuple(shape, "build", "input_shape")


def build_layers(name: str, layers: list[Any], shape: tuple[int, ...], data_format: str,
                 seed: int) -> tuple[Graph, tuple[int, ...], tuple[int, ...]]:
    """(graph, first layer's input shape, last layer's output shape) with every layer's params created; on any
    failure every layer is put back as it was, so nothing is half-built."""
    saved = [dict(layer.__dict__, params=dict(layer.params)) for layer in layers]
    try:
        graph, rng = Graph(name), np.random.default_rng(seed)
        inner = out = layout.to_internal(shape, data_format)
        for layer in layers:
            out = layer.build(graph, out, rng)
    except BaseException:
        for layer, attrs in zip(layers, saved):
            layer.__dict__.clear()
            layer.__dict__.update(attrs)
        raise
    return graph, inner, out


def get_layer(layers: list[Any], name: str | None, index: int | None) -> Any:
    """A layer by name or by index (Keras' ``model.get_layer``)."""
    if (name is None) == (index is None):
        raise GraphcError("get_layer: give name=... or index=..., not both")
    if index is not None:
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)) \
                or not -len(layers) <= index < len(layers):
            raise GraphcError(f"get_layer: index {index!r} is out of range; the model has {len(layers)} layers")
        return layers[index]
    found = next((layer for layer in layers if layer.name == name), None)
    if found is None:
        raise GraphcError(f"get_layer: no layer named {name!r}; the layers are "
                          f"{', '.join(repr(layer.name) for layer in layers)}")
    return found


def summary(model: Any, print_fn: Any) -> None:
    """Print ``model``'s layers, output shapes in its data format, and parameter counts."""
    rows = [("Layer (type)", "Output Shape", "Param #")]
    for layer in model.layers:
        trainable, frozen = layer.count_params()
        shape = layout.to_user(layer.output_shape, model.data_format)
        rows.append((f"{layer.name} ({type(layer).__name__})", str((None, *shape)), str(trainable + frozen)))
    widths = [max(len(r[i]) for r in rows) + 2 for i in range(3)]
    rule = "=" * sum(widths)
    print_fn(f'Model: "{model.name}"')
    print_fn(rule)
    for i, row in enumerate(rows):
        print_fn("".join(cell.ljust(w) for cell, w in zip(row, widths)))
        print_fn(rule if i == 0 else "-" * sum(widths))
    trainable = sum(layer.count_params()[0] for layer in model.layers)
    frozen = sum(layer.count_params()[1] for layer in model.layers)
    print_fn(f"Total params: {trainable + frozen:,}")
    print_fn(f"Trainable params: {trainable:,}")
    print_fn(f"Non-trainable params: {frozen:,}")
