"""``keras.initializers``: ``HeNormal()``, ``GlorotUniform()``, ... (their names also work as strings)."""

from graphc.nn.initializers import GlorotNormal, GlorotUniform, HeNormal, HeUniform, Initializer, Ones, Zeros

__all__ = ["GlorotNormal", "GlorotUniform", "HeNormal", "HeUniform", "Initializer", "Ones", "Zeros"]
