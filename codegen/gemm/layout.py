"""How a GEMM's operands sit in memory (:class:`Layout`), shared by the driver, its prefetch streams and the
matrix-vector path."""

from __future__ import annotations

from dataclasses import dataclass

import llvmlite.ir as ir

from codegen.gemm.store_epilogue import StoreEpilogue
from codegen.llvm import i64


@dataclass(frozen=True)
class Layout:
    """How the operands sit in memory: leading dimensions (row strides of A, B, C as stored) and the flags."""

    ld_a: int
    ld_b: int
    ld_c: int
    trans_a: bool
    trans_b: bool
    accumulate: bool
    alpha: float | None = None  # the product's scale (None: 1, unscaled micro-kernels)
    alpha_scalar: bool = False  # the scale is alpha times the scalar S (the operands' fourth pointer)
    direct_b: bool = False  # full B panels read in place (strided-B micro-kernels), not packed
    epilogue: StoreEpilogue | None = None  # applied at the last depth block's store (its pointers follow S)
    trans_c: bool = False  # C stored transposed: (i, j) at C[j*ld_c + i]

    def strides(self) -> tuple[int, int, int, int]:
        """Element strides of op(A)'s rows and columns, then op(B)'s."""
        a = (1, self.ld_a) if self.trans_a else (self.ld_a, 1)
        b = (1, self.ld_b) if self.trans_b else (self.ld_b, 1)
        return a + b

    def c_offset(self, b: ir.IRBuilder, row: ir.Value, col: ir.Value) -> ir.Value:
        """The element offset of C's (row, col) from C's origin, as stored."""
        if self.trans_c:
            row, col = col, row
        return b.add(b.mul(row, i64(self.ld_c)), col)
