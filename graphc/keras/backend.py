"""``keras.backend``'s image-layout switch: Keras' default, channels-last, for models built by
``graphc.keras.models``."""

from __future__ import annotations

from graphc.nn import layout


def set_image_data_format(data_format: str) -> None:
    """Set the layout of models built without a ``data_format`` (here and in ``graphc.nn``)."""
    layout.set_image_data_format(data_format)


def image_data_format() -> str:
    """``"channels_last"`` (Keras' default) unless :func:`set_image_data_format` said otherwise."""
    return layout.explicit_image_data_format() or "channels_last"
