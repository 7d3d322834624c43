"""Randomness: dropout, with a counter-based mask that every backend computes bit for bit the same.

The mask (all arithmetic on unsigned 64-bit integers, wrapping modulo 2⁶⁴; ``>>`` is a logical shift)::

    GOLDEN   = 0x9E3779B97F4A7C15
    mix(z)   : z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9
               z = (z ^ (z >> 27)) * 0x94D049BB133111EB
               return z ^ (z >> 31)                            # the SplitMix64 finalizer
    key      = mix(seed + (step + 1) * GOLDEN)                 # step-th output of SplitMix64 seeded with seed
    h(i)     = mix(key + (i + 1) * GOLDEN)                     # i-th output of SplitMix64 seeded with key
    keep(i)  = (h(i) >> 40) >= threshold,   threshold = ceil(rate · 2²⁴)

``i`` is the element's row-major (C-order) flat index in x, ``seed`` the op's attribute, ``step`` the int64
counter input reinterpreted as uint64. ``keep`` is exactly ``u >= rate`` for ``u = (h >> 40)·2⁻²⁴`` (the top 24
bits as a uniform number in [0, 1)), but needs no floating-point comparison. Kept values are scaled by
``scale = 1/(1 - rate)`` (computed in float64, then rounded to x's dtype): ``y = keep ? x·scale : 0``.
"""

from __future__ import annotations

import math

import numpy as np

from ops.base import ErrorCase, Op, OpError, Sample, as_int, require_float
from ops.registry import apply, register

GOLDEN = 0x9E3779B97F4A7C15
MIX1 = 0xBF58476D1CE4E5B9
MIX2 = 0x94D049BB133111EB
STEP_PARAM = "__dropout_step"


def _mix(z: np.ndarray) -> np.ndarray:
    z = (z ^ (z >> np.uint64(30))) * np.uint64(MIX1)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(MIX2)
    return z ^ (z >> np.uint64(31))


def threshold(rate: float) -> int:
    """The integer threshold ceil(rate·2²⁴) on the top 24 hash bits (rate·2²⁴ is exact in float64)."""
    return math.ceil(rate * (1 << 24))


def keep_mask(seed: int, step: int, shape: tuple[int, ...], rate: float) -> np.ndarray:
    """The boolean keep-mask of dropout for one (seed, step), as specified in the module docstring."""
    with np.errstate(over="ignore"):
        seed_u = np.uint64(seed)
        step_u = np.array(step, dtype=np.int64).astype(np.uint64)
        key = _mix(seed_u + (step_u + np.uint64(1)) * np.uint64(GOLDEN))
        index = np.arange(1, math.prod(shape) + 1, dtype=np.uint64)
        h = _mix(key + index * np.uint64(GOLDEN))
    return ((h >> np.uint64(40)) >= np.uint64(threshold(rate))).reshape(shape)


def scale_of(rate: float, dtype: str) -> np.ndarray:
    return np.asarray(1.0 / (1.0 - rate), dtype=dtype)


@register
class Dropout(Op):
    """Inverted dropout (inputs x and the int64 step counter): y = x·keep/(1 - rate), keep from a hash of
    (seed, step, element index) — see the module docstring; identity when ``training`` is False.

    dy/dx = keep/(1 - rate), so the VJP is this same op applied to g with the same seed, rate and step input
    (dropout is linear in x for a fixed mask); no gradient to the step.
    """

    name = "dropout"
    pure = False
    kind = "opaque"  # the mask depends on the element index: codegen lowers it with its own loop
    arity = 2

    def normalize(self, attrs, x, step):
        rate = float(attrs["rate"])
        if not 0.0 <= rate < 1.0:
            raise OpError(f"rate must be in [0, 1) (the fraction of elements dropped), got {rate}")
        seed = as_int(attrs.get("seed", 0), "seed")
        if not 0 <= seed < 1 << 64:
            raise OpError(f"seed must be an integer in [0, 2**64), got {seed}")
        return {"rate": rate, "seed": seed, "training": bool(attrs.get("training", True))}

    def infer(self, attrs, x, step):
        require_float(self.name, x)
        if step.shape != () or step.dtype != "int64":
            raise OpError(f"the step counter must be an int64 scalar, got {step}")
        return x

    def reference(self, attrs, x, step):
        if not attrs["training"]:
            return x.copy()
        keep = keep_mask(attrs["seed"], int(step), x.shape, attrs["rate"])
        return np.where(keep, x * scale_of(attrs["rate"], x.dtype.name), np.zeros((), x.dtype)).astype(x.dtype)

    def vjp(self, node, g):
        return apply("dropout", g, node.inputs[1], **node.attrs), None

    def samples(self, rng):
        step = np.array(3, dtype=np.int64)
        return [Sample([rng.standard_normal((4, 5)), step], {"rate": 0.5, "seed": 11}),
                Sample([rng.standard_normal((2, 3, 4)), np.array(0, dtype=np.int64)], {"rate": 0.2, "seed": 0}),
                Sample([rng.standard_normal((6,)), step], {"rate": 0.3, "seed": 5, "training": False}),
                Sample([rng.standard_normal(()), step], {"rate": 0.0, "seed": 1})]

    def error_cases(self):
        x, step = ((4,), "float32"), ((), "int64")
        return [ErrorCase([x, step], {"rate": 1.0}, "rate must be in [0, 1)"),
                ErrorCase([x, step], {"rate": -0.1}, "rate must be in [0, 1)"),
                ErrorCase([x, ((), "float32")], {"rate": 0.5}, "int64 scalar"),
                ErrorCase([((4,), "int64"), step], {"rate": 0.5}, "floating-point")]
