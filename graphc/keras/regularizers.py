"""``keras.regularizers``: ``l2(0.001)``, ``l1(...)`` (λ·Σp², λ·Σ|p|, Keras' convention without ½)."""

from graphc.regularizers import Regularizer, l1, l2

__all__ = ["Regularizer", "l1", "l2"]
