"""Weight initializers: ``fn(shape, rng=None, dtype="float32") -> ndarray``, all seeded.

``rng`` is a ``numpy.random.Generator`` or an int seed (None: seed 0, so runs are reproducible by default).
Fan-in/fan-out: a dense kernel (in, out) has fan_in = in, fan_out = out; a conv kernel OIHW has
fan_in = I·kh·kw and fan_out = O·kh·kw.
- Glorot/Xavier: normal std √(2/(fan_in+fan_out)), uniform limit √(6/(fan_in+fan_out)).
- He/Kaiming: normal std √(2/fan_in), uniform limit √(6/fan_in).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from graphc.ir import GraphcError

Initializer = Callable[..., np.ndarray]


def _rng(rng: Any) -> np.random.Generator:
    if isinstance(rng, np.random.Generator):
        return rng
    return np.random.default_rng(0 if rng is None else rng)


def fans(shape: tuple[int, ...]) -> tuple[int, int]:
    """(fan_in, fan_out) of a dense (in, out) or conv (O, I, kh, kw) kernel."""
    shape = tuple(shape)
    if len(shape) == 0:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    if len(shape) == 2:
        return shape[0], shape[1]
    receptive = math.prod(shape[2:])
    return shape[1] * receptive, shape[0] * receptive


def zeros(shape, rng=None, dtype="float32") -> np.ndarray:
    return np.zeros(shape, dtype)


def ones(shape, rng=None, dtype="float32") -> np.ndarray:
    return np.ones(shape, dtype)


def normal(shape, rng=None, dtype="float32", std: float = 0.05) -> np.ndarray:
    return (_rng(rng).standard_normal(shape) * std).astype(dtype)


def uniform(shape, rng=None, dtype="float32", low: float = -0.05, high: float = 0.05) -> np.ndarray:
    return _rng(rng).uniform(low, high, shape).astype(dtype)


def glorot_normal(shape, rng=None, dtype="float32") -> np.ndarray:
    fan_in, fan_out = fans(shape)
    return normal(shape, rng, dtype, std=math.sqrt(2.0 / (fan_in + fan_out)))


def glorot_uniform(shape, rng=None, dtype="float32") -> np.ndarray:
    fan_in, fan_out = fans(shape)
    limit = math.sqrt(6.0 / (fan_in + fan_out))
    return uniform(shape, rng, dtype, -limit, limit)


def he_normal(shape, rng=None, dtype="float32") -> np.ndarray:
    fan_in, _ = fans(shape)
    return normal(shape, rng, dtype, std=math.sqrt(2.0 / fan_in))


def he_uniform(shape, rng=None, dtype="float32") -> np.ndarray:
    fan_in, _ = fans(shape)
    limit = math.sqrt(6.0 / fan_in)
    return uniform(shape, rng, dtype, -limit, limit)


xavier_normal, xavier_uniform = glorot_normal, glorot_uniform
kaiming_normal, kaiming_uniform = he_normal, he_uniform

INITIALIZERS: dict[str, Initializer] = {
    "zeros": zeros, "ones": ones, "normal": normal, "random_normal": normal, "uniform": uniform,
    "random_uniform": uniform, "glorot_normal": glorot_normal, "glorot_uniform": glorot_uniform,
    "xavier_normal": glorot_normal, "xavier_uniform": glorot_uniform, "he_normal": he_normal,
    "he_uniform": he_uniform, "kaiming_normal": he_normal, "kaiming_uniform": he_uniform,
}


def get(initializer: str | Initializer) -> Initializer:
    """An initializer from its name (Keras names and the Xavier/Kaiming aliases) or a callable."""
    if callable(initializer):
        return initializer
    found = INITIALIZERS.get(str(initializer).lower())
    if found is None:
        raise GraphcError(f"unknown initializer {initializer!r}; choose one of {', '.join(sorted(INITIALIZERS))}")
    return found
