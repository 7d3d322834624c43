"""The abstract scalar builder that elementwise ops write their ``scalar`` formulas against.

A builder offers ``const(value, like=x)``, arithmetic ``add sub mul div mod fmod neg pow max min abs sqrt``,
``floor`` and ``ldexp(x, n)`` (x·2ⁿ for an integer-valued float n with 2ⁿ normal: exact scaling, for range
reductions), transcendentals ``exp log log1p tanh sigmoid``, comparisons ``lt le gt ge eq`` (giving booleans),
``select(c, a, b)`` and ``cast(x, dtype)``. Codegen implements it with LLVM instructions; :class:`NumpyScalarBuilder`
implements it with NumPy arrays so the contract tests can check each formula against the op's independent
``reference``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def convert(x: np.ndarray, dtype: str) -> np.ndarray:
    """``x`` converted to ``dtype`` as ``astype`` does, except float → int64, which NumPy leaves to the platform: here
    it truncates toward zero, saturates at the int64 range and maps NaN to INT64_MIN, on every backend (so a NaN
    never turns into a valid class index such as 0)."""
    x = np.asarray(x)
    if dtype != "int64" or x.dtype.kind != "f":
        return x.astype(dtype)
    with np.errstate(invalid="ignore"):
        nan, high, low = np.isnan(x), x >= 2.0**63, x < -(2.0**63)
        inside = np.where(nan | high | low, 0, x).astype(np.int64)
    return np.where(high, INT64_MAX, np.where(nan | low, INT64_MIN, inside)).astype(np.int64)


SCALAR_METHODS = ("const", "add", "sub", "mul", "div", "mod", "fmod", "neg", "pow", "max", "min", "abs", "sqrt",
                  "floor", "ldexp", "exp", "log", "log1p", "tanh", "sigmoid", "lt", "le", "gt", "ge", "eq", "select",
                  "cast")


class NumpyScalarBuilder:
    """Evaluates scalar formulas on whole (already broadcast) NumPy arrays."""

    def const(self, value: Any, like: np.ndarray) -> np.ndarray:
        return np.asarray(value, dtype=np.asarray(like).dtype)

    def add(self, x, y): return np.add(x, y)
    def sub(self, x, y): return np.subtract(x, y)
    def mul(self, x, y): return np.multiply(x, y)
    def div(self, x, y): return np.divide(x, y)

    def mod(self, x, y):
        """np.mod (the sign of y); int64 x mod 0 = 0 and INT64_MIN mod −1 = 0, without NumPy's warnings."""
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            return np.mod(x, y)

    def fmod(self, x, y):
        """np.fmod (the sign of x, C's fmod); int64 x fmod 0 = 0, without NumPy's warnings."""
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            return np.fmod(x, y)

    def neg(self, x): return np.negative(x)
    def pow(self, x, y): return np.power(x, y)
    def max(self, x, y): return np.maximum(x, y)
    def min(self, x, y): return np.minimum(x, y)
    def abs(self, x): return np.abs(x)
    def sqrt(self, x): return np.sqrt(x)
    def floor(self, x): return np.floor(x)

    def ldexp(self, x, n):
        """x·2ⁿ, n integer-valued of x's dtype (a NaN n, in lanes whose result is unused, raises no warning)."""
        with np.errstate(invalid="ignore", over="ignore"):
            return np.ldexp(x, np.asarray(n).astype(np.int32))

    def exp(self, x): return np.exp(x)
    def log(self, x): return np.log(x)
    def log1p(self, x): return np.log1p(x)
    def tanh(self, x): return np.tanh(x)
    def sigmoid(self, x): return 1 / (1 + np.exp(-x))
    def lt(self, x, y): return np.less(x, y)
    def le(self, x, y): return np.less_equal(x, y)
    def gt(self, x, y): return np.greater(x, y)
    def ge(self, x, y): return np.greater_equal(x, y)
    def eq(self, x, y): return np.equal(x, y)
    def select(self, c, x, y): return np.where(c, x, y)
    def cast(self, x, dtype): return convert(x, dtype)
