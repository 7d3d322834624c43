"""The static geometry of a convolution (sizes, strides, pads, groups; see ``codegen.conv``) and zero fills,
shared by the convolution algorithms (``codegen.conv`` im2col + GEMM, ``codegen.conv_direct``) and pooling."""

from __future__ import annotations

from dataclasses import dataclass

import llvmlite.ir as ir

from codegen.llvm import for_range
from codegen.lowering import LoweringError

SCRATCH_BYTES = 1 << 20


@dataclass(frozen=True)
class Geometry:
    """Static sizes of one convolution (see the module docstring)."""

    n: int
    c: int
    h: int
    w: int
    o: int
    kh: int
    kw: int
    ho: int
    wo: int
    sh: int
    sw: int
    dh: int
    dw: int
    top: int
    left: int
    groups: int
    itemsize: int
    gemm_on_x: bool = True  # False forces im2col even where ``pointwise`` geometry would allow x itself

    @property
    def cg(self) -> int:
        return self.c // self.groups

    @property
    def og(self) -> int:
        return self.o // self.groups

    @property
    def kg(self) -> int:
        return self.cg * self.kh * self.kw

    @property
    def k(self) -> int:
        return self.c * self.kh * self.kw

    @property
    def p(self) -> int:
        return self.ho * self.wo

    @property
    def pointwise(self) -> bool:
        """A 1×1 convolution with stride 1 and no padding: cols would be x itself (no im2col, no col2im)."""
        return (self.kh, self.kw, self.sh, self.sw, self.h, self.w) == (1, 1, 1, 1, self.ho, self.wo) and \
            self.top == self.left == 0 and self.gemm_on_x

    def block_rows(self) -> int:
        """Output rows per im2col block: all of them when the columns fit the budget, else as many as fit
        (with room for the second, O × block scratch)."""
        per_row = self.k * self.wo * self.itemsize
        if per_row * self.ho <= SCRATCH_BYTES:
            return self.ho
        if self.pointwise:  # no scratch: blocks only bound the GEMM's share of x and y (and split the work)
            return max(1, min(self.ho, SCRATCH_BYTES // (max(self.k, self.o) * self.wo * self.itemsize)))
        both = (self.k + self.o) * self.wo * self.itemsize
        if both > 4 * SCRATCH_BYTES:
            raise LoweringError(f"conv2d: one output row needs {both} bytes of im2col scratch (C·kh·kw = {self.k}, "
                                f"Wo = {self.wo}), over the {4 * SCRATCH_BYTES}-byte stack budget of the llvm backend")
        return max(1, min(self.ho, SCRATCH_BYTES // both))


def geometry(x_shape: tuple[int, ...], w_shape: tuple[int, ...], y_shape: tuple[int, ...], attrs, dtype: str
             ) -> Geometry:
    """The geometry of a conv2d of x (N, C, H, W) with w (O, C/G, kh, kw) giving y (N, O, Ho, Wo)."""
    n, c, h, w = x_shape
    sh, sw = attrs["stride"]
    dh, dw = attrs["dilation"]
    top, left = attrs["padding"][:2]
    return Geometry(n, c, h, w, w_shape[0], w_shape[2], w_shape[3], y_shape[2], y_shape[3], sh, sw, dh, dw, top,
                    left, attrs["groups"], 8 if dtype == "float64" else 4)


def zero_range(b: ir.IRBuilder, ptr: ir.Value, start: ir.Value | int, stop: ir.Value | int) -> None:
    zero = ir.Constant(ptr.type.pointee, 0.0)
    with for_range(b, start, stop, name="z") as j:
        b.store(zero, b.gep(ptr, [j], inbounds=True))


def zero_fill(b: ir.IRBuilder, ptr: ir.Value, count: int) -> None:
    """ptr[0:count] = 0."""
    if count > 0:
        zero_range(b, ptr, 0, count)


