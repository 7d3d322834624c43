"""Keras' ``models`` namespace: ``from graphc.nn import models, layers`` stands for
``from tensorflow.keras import models, layers`` (``models.Sequential()``, ``models.load_model(path)``)."""

from graphc.nn.model import Sequential, load_model

__all__ = ["Sequential", "load_model"]
