"""Image layout of Keras-like models: ``"channels_first"`` (N, C, H, W), graphc's, or ``"channels_last"``
(N, H, W, C), Keras' default.

Compiled kernels always work on NCHW. A ``channels_last`` model takes (and returns) NHWC arrays and converts once:
one transpose NHWC → NCHW right after its input (and NCHW → NHWC before an image output); every layer in between
runs on NCHW, so a channels_last model and its channels_first twin with the same weights give the same
predictions (``Flatten`` flattens in graphc's (C, H, W) order in both: Dense weights imported from a Keras
channels_last model need their rows permuted).

The format of a model: ``Sequential(data_format=...)``, else the ``data_format`` its image layers were given
(they must agree), else :func:`set_image_data_format`'s, else ``"channels_first"``. When none of these was said and
an image input looks like Keras' (height, width, channels) — last dim 1 or 3, the two others larger than 4, as in
``(28, 28, 1)`` or ``(32, 32, 3)`` — building raises a GraphcError naming the fixes instead of reading it as 28
channels of 28×1 images.
"""

from __future__ import annotations

from typing import Any

from graphc.ir import GraphcError

FORMATS = ("channels_first", "channels_last")
_global_format: str | None = None  # None: never set (channels_first, but not said explicitly)


def check_format(value: Any, owner: str) -> str | None:
    """``value`` as a data format (None stays None: "follow the model")."""
    if value is None:
        return None
    if not isinstance(value, str) or value.lower() not in FORMATS:
        raise GraphcError(f"{owner}: data_format must be 'channels_first' (N, C, H, W) or 'channels_last' "
                          f"(N, H, W, C), got {value!r}")
    return value.lower()


def set_image_data_format(data_format: str) -> None:
    """Set the image layout models use when neither they nor their layers say (Keras'
    ``keras.backend.set_image_data_format``)."""
    global _global_format
    _global_format = check_format(data_format, "set_image_data_format")


def explicit_image_data_format() -> str | None:
    """The layout :func:`set_image_data_format` set, or None when it was never called."""
    return _global_format


def image_data_format() -> str:
    """The default image layout: ``"channels_first"`` unless :func:`set_image_data_format` changed it."""
    return _global_format or "channels_first"


def resolve(model_format: str | None, layers: list[Any]) -> tuple[str, bool]:
    """(the model's data format, whether it was stated anywhere) from the model's and its layers' settings."""
    stated = {(layer.name, layer.data_format) for layer in layers if getattr(layer, "data_format", None)}
    if model_format is not None:
        other = next(((n, f) for n, f in stated if f != model_format), None)
        if other is not None:
            raise GraphcError(f"layer {other[0]!r} has data_format={other[1]!r} but the model has "
                              f"data_format={model_format!r}; a model uses one image layout")
        return model_format, True
    formats = {f for _, f in stated}
    if len(formats) > 1:
        raise GraphcError("the layers mix data_format='channels_first' and 'channels_last' "
                          f"({', '.join(f'{n}: {f}' for n, f in sorted(stated))}); a model uses one image layout")
    if formats:
        return formats.pop(), True
    return image_data_format(), _global_format is not None


def is_image(shape: tuple[int, ...]) -> bool:
    return len(shape) == 3


def to_internal(shape: tuple[int, ...], data_format: str) -> tuple[int, ...]:
    """A per-example shape as the layers see it: (H, W, C) → (C, H, W) for a channels_last image."""
    if data_format == "channels_last" and is_image(shape):
        return shape[2], shape[0], shape[1]
    return tuple(shape)


def to_user(shape: tuple[int, ...], data_format: str) -> tuple[int, ...]:
    """A layer's (C, H, W) shape as the user sees it: (H, W, C) for a channels_last model."""
    if data_format == "channels_last" and is_image(shape):
        return shape[1], shape[2], shape[0]
    return tuple(shape)


def looks_channels_last(shape: tuple[int, ...]) -> bool:
    """Whether an image shape reads naturally as Keras' (height, width, channels): (28, 28, 1), (32, 32, 3)."""
    return is_image(shape) and shape[2] in (1, 3) and shape[0] > 4 and shape[1] > 4


def check_ambiguous(shape: tuple[int, ...], data_format: str, stated: bool) -> None:
    """Refuse an image input shape that is almost surely Keras' channels-last read as channels-first."""
    if stated or data_format != "channels_first" or not looks_channels_last(shape):
        return
    h, w, c = shape
    raise GraphcError(
        f"input shape {shape} looks like Keras' channels-last (height, width, channels) = ({h}, {w}, {c}), but "
        f"graphc reads images as (channels, height, width) by default, which would make it {h} channels of "
        f"{w}x{c} images. Either pass data_format=\"channels_last\" (to Sequential, the first layer, or "
        f"gc.nn.set_image_data_format(\"channels_last\")), or use input_shape=({c}, {h}, {w}) and transpose the "
        f"data with x.transpose(0, 3, 1, 2); if {h} channels are really meant, pass data_format=\"channels_first\"")


def mismatch_hint(data_shape: tuple[int, ...], input_shape: tuple[int, ...], data_format: str) -> str:
    """A hint when image data has the model's shape in the other layout ('' otherwise)."""
    if not is_image(input_shape) or len(data_shape) != 3:
        return ""
    if data_format == "channels_first" and tuple(data_shape) == to_user(input_shape, "channels_last"):
        return ("; the data looks channels-last (N, H, W, C): transpose it with x.transpose(0, 3, 1, 2), or build "
                "the model with data_format=\"channels_last\" and input_shape=(H, W, C)")
    if data_format == "channels_last" and tuple(data_shape) == to_internal(input_shape, "channels_last"):
        return ("; the data looks channels-first (N, C, H, W) but the model is channels_last: transpose it with "
                "x.transpose(0, 2, 3, 1)")
    return ""
