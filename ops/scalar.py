"""The abstract scalar builder that elementwise ops write their ``scalar`` formulas against.

A builder offers ``const(value, like=x)``, arithmetic ``add sub mul div neg pow max min abs sqrt``,
transcendentals ``exp log tanh sigmoid``, comparisons ``lt le gt ge eq`` (giving booleans), ``select(c, a, b)``
and ``cast(x, dtype)``. Codegen implements it with LLVM instructions; :class:`NumpyScalarBuilder` implements it
with NumPy arrays so the contract tests can check each formula against the op's independent ``reference``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

SCALAR_METHODS = ("const", "add", "sub", "mul", "div", "neg", "pow", "max", "min", "abs", "sqrt", "exp", "log",
                  "tanh", "sigmoid", "lt", "le", "gt", "ge", "eq", "select", "cast")


class NumpyScalarBuilder:
    """Evaluates scalar formulas on whole (already broadcast) NumPy arrays."""

    def const(self, value: Any, like: np.ndarray) -> np.ndarray:
        return np.asarray(value, dtype=np.asarray(like).dtype)

    def add(self, x, y): return np.add(x, y)
    def sub(self, x, y): return np.subtract(x, y)
    def mul(self, x, y): return np.multiply(x, y)
    def div(self, x, y): return np.divide(x, y)
    def neg(self, x): return np.negative(x)
    def pow(self, x, y): return np.power(x, y)
    def max(self, x, y): return np.maximum(x, y)
    def min(self, x, y): return np.minimum(x, y)
    def abs(self, x): return np.abs(x)
    def sqrt(self, x): return np.sqrt(x)
    def exp(self, x): return np.exp(x)
    def log(self, x): return np.log(x)
    def tanh(self, x): return np.tanh(x)
    def sigmoid(self, x): return 1 / (1 + np.exp(-x))
    def lt(self, x, y): return np.less(x, y)
    def le(self, x, y): return np.less_equal(x, y)
    def gt(self, x, y): return np.greater(x, y)
    def ge(self, x, y): return np.greater_equal(x, y)
    def eq(self, x, y): return np.equal(x, y)
    def select(self, c, x, y): return np.where(c, x, y)
    def cast(self, x, dtype): return np.asarray(x).astype(dtype)
