"""``keras.optimizers``: ``SGD(learning_rate=..., momentum=..., nesterov=...)``, ``Adam``, ``RMSprop``, ``Adagrad``."""

from graphc.optim import SGD, Adagrad, Adam, Optimizer, RMSprop

__all__ = ["SGD", "Adagrad", "Adam", "Optimizer", "RMSprop"]
