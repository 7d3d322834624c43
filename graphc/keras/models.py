"""``keras.models``: ``Sequential`` with Keras' channels-last default and ``load_model``."""

from __future__ import annotations

from typing import Any

from graphc.keras.backend import image_data_format
from graphc.nn.model import Sequential as _Sequential
from graphc.nn.model import load_model

__all__ = ["Sequential", "load_model"]


class Sequential(_Sequential):
    """``graphc.nn.Sequential`` whose images are channels-last (N, H, W, C) unless told otherwise, as in Keras
    (a model without image layers is unaffected)."""

    def __init__(self, layers: list[Any] | None = None, name: str = "sequential", data_format: str | None = None
                 ) -> None:
        super().__init__(layers, name=name, data_format=data_format or image_data_format())
