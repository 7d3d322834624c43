"""The GEMM's store epilogue: what the micro-kernels apply to a tile of C on registers, at the store of the final
depth block, instead of a second pass over C.

A :class:`StoreEpilogue` is a short chain of steps applied in order to each element ``v`` of C (the product,
plus C's old value when the GEMM accumulates)::

    ("add", "row")     v = v + a[i]        a vector along C's rows (a convolution's bias: one per output channel)
    ("add", "col")     v = v + a[j]        ... or along its columns (a dense layer's bias row)
    ("sub", axis)      v = v - a[.]        (inference batch norm's mean)
    ("mul", axis)      v = v · a[.]        (its scale γ/√(σ²+ε))
    ("residual",)      v = v + R[i, j]     R laid out like C (same leading dimension): a residual connection
    ("max", c)         v = max(v, c)       NaN stays NaN, as NumPy's maximum (relu: c = 0)
    ("min", c)         v = min(v, c)       (clip's upper bound: relu6)

The GEMM function takes one pointer per step that reads memory (the per-axis vectors and R, in step order) after
its others. Every step is one vector instruction on the tile's accumulators while they are still in registers
(a row vector's element is broadcast once per tile row, a column vector's loaded once per tile). Each operation is
a plain IEEE one (no fast-math flags: nothing contracted or reassociated), in the chain's order, so the result is
NumPy's, element for element. A bound is one compare and select, ``c > v ? c : v`` for max (x86's ``vmaxps``
exactly: an unordered compare keeps v, so NaN passes through); it keeps v's sign at v = ±0 where a separate
pass's ``max`` returns c, a difference only in the sign of a zero.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import llvmlite.ir as ir

from codegen.gemm.config import GemmConfig
from codegen.llvm import for_range, gep, i64

Step = tuple  # ("add" | "sub" | "mul", "row" | "col"), ("residual",), ("max" | "min", bound)
AXIS_STEPS = ("add", "sub", "mul")  # steps reading a vector along C's rows or columns
MAX_POINTERS = 6  # operands a chain may read (each costs an argument and, for columns, registers at the store)


@dataclass(frozen=True)
class StoreEpilogue:
    """The steps (see the module docstring); build with :meth:`of`, which checks them."""

    steps: tuple[Step, ...]

    @classmethod
    def of(cls, *steps: Step) -> StoreEpilogue:
        for s in steps:
            if s[0] in AXIS_STEPS and (len(s) != 2 or s[1] not in ("row", "col")):
                raise ValueError(f"an {s[0]} step is ({s[0]!r}, 'row') or ({s[0]!r}, 'col'), not {s!r}")
            elif s[0] in ("max", "min") and (len(s) != 2 or not isinstance(s[1], (int, float))):
                raise ValueError(f"a {s[0]} step carries one number, not {s!r}")
            elif s[0] == "residual" and len(s) != 1:
                raise ValueError(f"a residual step is ('residual',), not {s!r}")
            elif s[0] not in (*AXIS_STEPS, "residual", "max", "min"):
                raise ValueError(f"unknown store-epilogue step {s!r}")
        chain = cls(tuple((s[0], *(float(x) if isinstance(x, (int, float)) else x for x in s[1:])) for s in steps))
        if [s[0] for s in steps].count("residual") > 1 or len(chain.reads()) > MAX_POINTERS:
            raise ValueError(f"at most one residual and {MAX_POINTERS} operands in a store epilogue, got {steps!r}")
        return chain

    def reads(self) -> list[Step]:
        """The steps that read memory, in order: one operand pointer each."""
        return [s for s in self.steps if s[0] in AXIS_STEPS or s[0] == "residual"]

    def pointers(self) -> int:
        """How many operand pointers the chain reads."""
        return len(self.reads())

    def tag(self) -> str:
        """A name for the chain, part of the micro-kernels' names (``arRmax0``: add a row vector, the residual,
        max 0)."""
        parts = []
        for s in self.steps:
            if s[0] in AXIS_STEPS:
                parts.append(s[0][0] + s[1][0])
            elif s[0] == "residual":
                parts.append("R")
            else:
                parts.append(s[0] + f"{s[1]:g}".replace("-", "n").replace(".", "p").replace("+", ""))
        return "".join(parts)

    def apply(self, b: ir.IRBuilder, value: ir.Value, operands: Sequence[ir.Value]) -> ir.Value:
        """The chain on ``value`` (a scalar or a vector); ``operands``: each reading step's value there, of the same
        type, loaded by the caller."""
        ty = value.type
        loaded = iter(operands)
        for s in self.steps:
            if s[0] in ("add", "residual"):
                value = b.fadd(value, next(loaded))
            elif s[0] == "sub":
                value = b.fsub(value, next(loaded))
            elif s[0] == "mul":
                value = b.fmul(value, next(loaded))
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
    into C: a row vector by ``row``, a column vector by ``col``, the residual (laid out like C) by ``c_offset``."""
    if not epilogue:
        return []
    return [gep(b, p, c_offset if s[0] == "residual" else row if s[1] == "row" else col, cfg.scalar)
            for s, p in zip(epilogue.reads(), pointers)]


def apply_pass(b: ir.IRBuilder, cfg: GemmConfig, epilogue: StoreEpilogue, c: ir.Value, pointers: Sequence[ir.Value],
               m: int, n: int, ld_c: int, batch: int, c_stride: int) -> None:
    """C[t, i, j] = chain(C[t, i, j]) for every batch item t, row i < m, column j < n, one element at a time (where
    the micro-kernels do not run: the matrix-vector path, an empty depth)."""
    with for_range(b, 0, batch, name="et") as t, for_range(b, 0, m, name="ei") as i, \
            for_range(b, 0, n, name="ej") as j:
        c_at = b.add(b.mul(t, i64(c_stride)), b.add(b.mul(i, i64(ld_c)), j))
        at = operands_at(b, cfg, epilogue, pointers, b.add(b.mul(t, i64(m)), i), j, c_at)
        ptr = gep(b, c, c_at, cfg.scalar)
        b.store(epilogue.apply(b, b.load(ptr, typ=cfg.scalar), [b.load(p, typ=cfg.scalar) for p in at]), ptr)
