"""The GEMM's store epilogue: what the micro-kernels apply to a tile of C on registers, at the store of the final
depth block, instead of a second pass over C.

A :class:`StoreEpilogue` is a short chain of steps applied in order to each element ``v`` of C (the product,
plus C's old value when the GEMM accumulates)::

    ("bias", "row")    v += bias[i]        one value per row of C (a convolution's output channel)
    ("bias", "col")    v += bias[j]        one value per column (a dense layer's bias row)
    ("residual",)      v += R[i, j]        R laid out like C (same leading dimension): a residual connection
    ("max", c)         v = max(v, c)       NaN stays NaN, as NumPy's maximum (relu: c = 0)
    ("min", c)         v = min(v, c)       (clip's upper bound: relu6)

At most one bias and one residual. The GEMM function then takes one pointer per operand the chain reads (bias,
then R) after its others; every step is one vector instruction or two on the tile's accumulators, done while
they are still in registers. Each addition is a plain ``fadd`` (no fast-math flags), in the chain's order, so the
result is the one a separate pass computes. A bound is one compare and select, ``c > v ? c : v`` for max (x86's
``vmaxps`` exactly: an unordered compare keeps v, so NaN passes through); it keeps v's sign at v = ±0 where the
pass's ``max`` returns c, a difference only in the sign of a zero.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import llvmlite.ir as ir

from codegen.gemm.config import GemmConfig
from codegen.llvm import for_range, gep, i64

Step = tuple  # ("bias", "row" | "col"), ("residual",), ("max" | "min", bound)


@dataclass(frozen=True)
class StoreEpilogue:
    """The steps (see the module docstring); build with :meth:`of`, which checks them."""

    steps: tuple[Step, ...]

    @classmethod
    def of(cls, *steps: Step) -> StoreEpilogue:
        kinds = [s[0] for s in steps]
        for s in steps:
            if s[0] == "bias" and (len(s) != 2 or s[1] not in ("row", "col")):
                raise ValueError(f"a bias step is ('bias', 'row') or ('bias', 'col'), not {s!r}")
            if s[0] in ("max", "min") and (len(s) != 2 or not isinstance(s[1], (int, float))):
                raise ValueError(f"a {s[0]} step carries one number, not {s!r}")
            if s[0] not in ("bias", "residual", "max", "min"):
                raise ValueError(f"unknown store-epilogue step {s!r}")
        if kinds.count("bias") > 1 or kinds.count("residual") > 1:
            raise ValueError(f"at most one bias and one residual in a store epilogue, got {steps!r}")
        return cls(tuple((s[0], *(float(x) if isinstance(x, (int, float)) else x for x in s[1:])) for s in steps))

    @property
    def bias(self) -> str | None:
        """``"row"``, ``"col"`` or None: the bias step's axis."""
        return next((s[1] for s in self.steps if s[0] == "bias"), None)

    @property
    def residual(self) -> bool:
        return any(s[0] == "residual" for s in self.steps)

    def pointers(self) -> int:
        """How many operand pointers the chain reads (bias, then residual)."""
        return (self.bias is not None) + self.residual

    def tag(self) -> str:
        """A name for the chain, part of the micro-kernels' names (``brRmax0``: row bias, residual, max 0)."""
        parts = []
        for s in self.steps:
            if s[0] == "bias":
                parts.append("b" + s[1][0])
            elif s[0] == "residual":
                parts.append("R")
            else:
                parts.append(s[0] + f"{s[1]:g}".replace("-", "n").replace(".", "p").replace("+", ""))
        return "".join(parts)

    def apply(self, b: ir.IRBuilder, value: ir.Value, bias: ir.Value | None, residual: ir.Value | None
              ) -> ir.Value:
        """The chain on ``value`` (a scalar or a vector; ``bias`` and ``residual`` of the same type, loaded by the
        caller)."""
        ty = value.type
        for s in self.steps:
            if s[0] == "bias":
                value = b.fadd(value, bias)
            elif s[0] == "residual":
                value = b.fadd(value, residual)
            else:
                bound = _constant(ty, s[1])  # bound beyond v (ordered) ? bound : v — NaN stays NaN
                value = b.select(b.fcmp_ordered(">" if s[0] == "max" else "<", bound, value), bound, value)
        return value


def _constant(ty: ir.Type, number: float) -> ir.Constant:
    """``number`` as a constant of ``ty`` (every lane of a vector type)."""
    if isinstance(ty, ir.VectorType):
        return ir.Constant(ty, [ir.Constant(ty.element, number)] * ty.count)
    return ir.Constant(ty, number)


def operands_at(b: ir.IRBuilder, cfg: GemmConfig, epilogue: StoreEpilogue | None, pointers: Sequence[ir.Value],
                row: ir.Value, col: ir.Value, c_offset: ir.Value) -> list[ir.Value]:
    """The store epilogue's operand pointers advanced to C's element (row, col), which lies ``c_offset`` elements
    into C: a row bias by ``row``, a column bias by ``col``, the residual (laid out like C) by ``c_offset``."""
    if not epilogue:
        return []
    out, rest = [], list(pointers)
    if epilogue.bias:
        out.append(gep(b, rest.pop(0), row if epilogue.bias == "row" else col, cfg.scalar))
    if epilogue.residual:
        out.append(gep(b, rest.pop(0), c_offset, cfg.scalar))
    return out


def apply_pass(b: ir.IRBuilder, cfg: GemmConfig, epilogue: StoreEpilogue, c: ir.Value, pointers: Sequence[ir.Value],
               m: int, n: int, ld_c: int, batch: int, c_stride: int) -> None:
    """C[t, i, j] = chain(C[t, i, j]) for every batch item t, row i < m, column j < n, one element at a time (where
    the micro-kernels do not run: the matrix-vector path, an empty depth)."""
    with for_range(b, 0, batch, name="et") as t, for_range(b, 0, m, name="ei") as i, \
            for_range(b, 0, n, name="ej") as j:
        c_at = b.add(b.mul(t, i64(c_stride)), b.add(b.mul(i, i64(ld_c)), j))
        at = operands_at(b, cfg, epilogue, pointers, b.add(b.mul(t, i64(m)), i), j, c_at)
        bias = b.load(at.pop(0), typ=cfg.scalar) if epilogue.bias else None
        res = b.load(at.pop(0), typ=cfg.scalar) if epilogue.residual else None
        ptr = gep(b, c, c_at, cfg.scalar)
        b.store(epilogue.apply(b, b.load(ptr, typ=cfg.scalar), bias, res), ptr)
