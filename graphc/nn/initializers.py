"""Keras' initializer classes over :mod:`graphc.init`: ``from graphc.nn.initializers import HeNormal`` stands for
``from tensorflow.keras.initializers import HeNormal``; ``Dense(..., kernel_initializer=HeNormal())``.

An instance is called as graphc initializers are, ``init(shape, rng, dtype)``: without ``seed`` it draws from the
model's generator (``model.build(seed=...)``), with ``seed`` from its own.
"""

from __future__ import annotations

from typing import Any

import numpy as np

import graphc.init as init


class Initializer:
    """A named graphc initializer as a Keras-style object."""

    function = staticmethod(init.zeros)

    def __init__(self, seed: int | None = None) -> None:
        self.seed = seed

    def __call__(self, shape: Any, rng: Any = None, dtype: str = "float32") -> np.ndarray:
        return type(self).function(shape, rng if self.seed is None else np.random.default_rng(self.seed), dtype)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(seed={self.seed})"


def _make(name: str, function: Any) -> type:
    return type(name, (Initializer,), {"function": staticmethod(function), "__doc__": f"Keras' {name}."})


HeNormal = _make("HeNormal", init.he_normal)
HeUniform = _make("HeUniform", init.he_uniform)
GlorotNormal = _make("GlorotNormal", init.glorot_normal)
GlorotUniform = _make("GlorotUniform", init.glorot_uniform)
Zeros = _make("Zeros", init.zeros)
Ones = _make("Ones", init.ones)

__all__ = ["GlorotNormal", "GlorotUniform", "HeNormal", "HeUniform", "Initializer", "Ones", "Zeros"]
