"""The remainder op ``mod`` (ONNX ``Mod``): NumPy's ``np.mod`` (sign of the divisor) or ``np.fmod`` (sign of the
dividend, C's fmod), on floats and int64.

Division by zero is defined, never a trap: for int64, x mod 0 = 0 (NumPy's value; NumPy also warns, graphc does
not) and INT64_MIN mod −1 = 0 (the true remainder; the hardware instruction would trap); for floats, x mod 0 is NaN
as in NumPy. ONNX leaves integer division by zero undefined and requires ``fmod=1`` for floats; graphc computes
both modes for every dtype.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

import ops.fn as fn
from ops.base import OpError, Sample, away_from_zero
from ops.elementwise import Binary
from ops.registry import register


def reference_mod(x: np.ndarray, y: np.ndarray, fmod: bool) -> np.ndarray:
    """NumPy's remainder (``np.fmod`` when ``fmod``) without its warnings; int64 x mod 0 = 0 and
    INT64_MIN mod −1 = 0, as NumPy computes them."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        return np.fmod(x, y) if fmod else np.mod(x, y)


@register
class Mod(Binary):
    """z = x − floor(x/y)·y (the sign of y, ``np.mod``), or with ``fmod`` z = x − trunc(x/y)·y (the sign of x,
    ``np.fmod``); int64: x mod 0 = 0, INT64_MIN mod −1 = 0; floats: x mod 0 = NaN.
    dz/dx = 1, dz/dy = −floor(x/y) (fmod: −trunc(x/y)), computed as (z − x)/y."""

    name = "mod"
    cost = 20  # float: LLVM's frem (a call of libm's fmod per element); int64: a hardware division
    float_only = False
    bool_ok = False

    def normalize(self, attrs: Mapping[str, Any], *types: Any) -> dict[str, Any]:
        unknown = sorted(set(attrs) - {"fmod"})
        if unknown:
            raise OpError(f"unknown attribute {', '.join(unknown)} (mod takes fmod)")
        fmod = attrs.get("fmod", False)
        if fmod not in (True, False):  # also 0 and 1
            raise OpError(f"fmod must be True or False, got {fmod!r}")
        return {"fmod": bool(fmod)}

    def reference(self, attrs, x, y):
        return reference_mod(x, y, attrs["fmod"])

    def vjp(self, node, g):
        x, y = node.inputs
        if not node.type.is_float:
            return (None, None)
        gy = fn.div(fn.mul(g, fn.sub(node, x)), y)  # (z − x)/y = −floor(x/y) (fmod: −trunc(x/y))
        return fn.sum_to(g, x.shape), fn.sum_to(gy, y.shape)

    def scalar(self, b, attrs, x, y):
        return b.fmod(x, y) if attrs["fmod"] else b.mod(x, y)

    def samples(self, rng: np.random.Generator) -> list[Sample]:
        """Floats with x/y at least 0.1 from an integer (the remainder jumps there; finite differences stay on one
        side), both modes; special floats and int64 edge cases (zero divisor, INT64_MIN mod −1) without gradient."""
        out = []
        pairs = [((3, 4), (3, 4)), ((2, 3, 4), (4,)), ((3, 1), (1, 5)), ((), (2, 3))]
        for k, (a, b) in enumerate(pairs):
            y = rng.choice([-2.0, -1.0, -0.5, 0.5, 1.0, 2.0], size=b)
            x = 2.0 * (rng.integers(-3, 3, size=a) + rng.uniform(0.1, 0.2, size=a)) * rng.choice([-1.0, 1.0], a)
            out.append(Sample([x, y], {"fmod": bool(k % 2)}))
            out.append(Sample([x, y], {"fmod": not k % 2}))
        special_x = np.array([-5.0, 5.0, -0.0, 3.0, np.inf, 1.0, 6.0, -6.0, 7.5, -7.5, np.nan, 0.0])
        special_y = np.array([np.inf, -np.inf, 2.0, 0.0, 2.0, np.nan, -3.0, 3.0, -2.0, 2.0, 1.0, -1.0])
        lo = np.iinfo(np.int64).min
        int_x = np.array([lo, lo, 7, -7, 7, -7, 5, -5, 0, lo + 1, 2**62, -(2**62)], dtype=np.int64)
        int_y = np.array([-1, 0, 0, 0, 3, 3, -3, -3, -4, -1, 7, 7], dtype=np.int64)
        for fmod in (False, True):
            out.append(Sample([special_x, special_y], {"fmod": fmod}, grad_inputs=[]))
            out.append(Sample([int_x, int_y], {"fmod": fmod}, grad_inputs=[]))
            out.append(Sample([rng.integers(-50, 50, (3, 4)), away_from_zero(rng, 4).round().astype(np.int64) * 3],
                              {"fmod": fmod}, grad_inputs=[]))
        return out
