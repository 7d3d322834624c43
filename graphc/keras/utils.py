"""``keras.utils``: ``to_categorical(labels, num_classes=None)`` → one-hot float32 rows."""

from graphc.data import one_hot as to_categorical

__all__ = ["to_categorical"]
