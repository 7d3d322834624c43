"""Keras' namespaces over graphc: ``from graphc.keras import models, layers`` stands for
``from tensorflow.keras import models, layers``, so code written for Keras runs with only its imports changed.

The one behaviour that differs from ``graphc.nn`` is Keras' image layout: models built here take channels-last
images (N, H, W, C) — ``input_shape=(32, 32, 3)`` means 32×32 RGB — unless
``graphc.keras.backend.set_image_data_format("channels_first")`` says otherwise. Everything else is ``graphc.nn``,
``graphc.optim`` and ``graphc.regularizers`` under Keras' module names: ``models``, ``layers``, ``optimizers``,
``callbacks``, ``initializers``, ``regularizers``, ``metrics``, ``utils`` (``to_categorical``) and ``backend``.
Models are saved in graphc's ``.npz`` format (a ``.h5``/``.keras`` name is refused with that hint).
"""

from graphc.keras import backend, callbacks, initializers, layers, metrics, models, optimizers, regularizers, utils

__all__ = ["backend", "callbacks", "initializers", "layers", "metrics", "models", "optimizers", "regularizers",
           "utils"]
