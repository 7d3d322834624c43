"""GEMM operands packed once, at compile time: a frozen program's weights in the micro-kernels' own layout.

A GEMM packs its operands on every call (``codegen.gemm.driver``): op(B) into ``nr``-wide zero-padded panels per
``kc`` x ``nc`` block, op(A) into ``mr``-row column-major micro-panels per row tile and ``kc`` block. When such an
operand is a constant (a frozen program: ``gc.compile(..., freeze=True)``, ONNX ``import_model(..., inference=True)``),
that work depends only on its value: here NumPy packs it once, when the program is created, into a *derived constant
buffer* the program binds (``codegen.module``: ``Module.packs``, table entries after the slots; ``runtime.native``
builds them from the constants' values), and the GEMM's packer callback (``emit_gemm(pack_a=..., pack_b=...)``)
only points the micro-kernels at the block's panels. The packing moves data only, so every product and its order
are unchanged: the result is bitwise that of the unpacked path.

Layouts (per batch item, ``kc`` = the driver's depth block for ``k``, blocks at ``pc`` = 0, kc, 2kc, ...):

- A (``m x k``): block ``pc`` at element ``pc*m``; in it the row tile (row, rows) of :func:`blocking.tile_origins`
  at ``row*kcur``, holding ``Ap[p*rows + r] = op(A)[row + r, pc + p]`` — exactly ``m*k`` elements, so batch strides
  are unchanged. Thread grids keep the whole GEMM's row tiles (``blocking.partition(global_tiles=True)``).
- B (``k x n``, ``npad`` = n rounded up to ``nr``): block ``pc`` at ``pc*npad``; in it panel ``j`` at
  ``j*kcur*nr``, ``Bp[(j*kcur + p)*nr + c] = op(B)[pc + p, j*nr + c]``, 0 past column n. Every column block the
  driver visits starts at a multiple of ``nr`` (``nc`` and the grid's slices are multiples), so its panels are
  one contiguous run of this buffer whatever the thread count.

The buffers are 64-byte aligned (the micro-kernels load B panels as aligned vectors). Switch: ``GRAPHC_PREPACK``
(``0`` off); the object cache key records it (``codegen.module.plan_key``).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import Any

import llvmlite.ir as ir
import numpy as np

from codegen.gemm.blocking import depth_block, tile_origins
from codegen.gemm.config import GemmConfig, default_config, host_vector_bits
from codegen.gemm.driver import PackA, PackB
from codegen.llvm import gep, i64

DEFAULT = True


def enabled() -> bool:
    """Whether constant GEMM operands are packed at compile time (``GRAPHC_PREPACK``; default :data:`DEFAULT`)."""
    value = os.environ.get("GRAPHC_PREPACK")
    return DEFAULT if value is None or value == "" else value not in ("0", "false", "off", "no")


@dataclass(frozen=True)
class PackSpec:
    """How a constant becomes a packed operand: its value reshaped to (batch, rows, cols) per batch item is X,
    op(X) = Xᵀ when ``trans``; packed as GEMM operand ``operand`` ("a": ``mr`` = ``tile``; "b": ``nr`` = ``tile``)
    with depth blocks of ``kc``."""

    operand: str
    dtype: str
    batch: int
    rows: int
    cols: int
    trans: bool
    kc: int
    tile: int

    @property
    def depth(self) -> int:  # k
        return self.rows if self.trans == (self.operand == "a") else self.cols

    @property
    def width(self) -> int:  # m of op(A), n of op(B)
        return self.cols if self.trans == (self.operand == "a") else self.rows

    def item_elements(self) -> int:
        """Elements of one batch item's packed operand."""
        if self.operand == "a":
            return self.width * self.depth
        return self.depth * -(-self.width // self.tile) * self.tile

    def to_json(self) -> list[Any]:
        return list(asdict(self).values())

    @classmethod
    def from_json(cls, data: Any) -> PackSpec | None:
        names = list(cls.__dataclass_fields__)
        if not isinstance(data, list) or len(data) != len(names):
            return None
        spec = cls(*data)
        ints = (spec.batch, spec.rows, spec.cols, spec.kc, spec.tile)
        if spec.operand not in ("a", "b") or spec.dtype not in ("float32", "float64") \
                or not isinstance(spec.trans, bool) \
                or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in ints):
            return None
        cfg = default_config(spec.dtype, host_vector_bits())  # the blocking is the driver's: nothing else is valid
        make = spec_a if spec.operand == "a" else spec_b
        wide = (spec.width, spec.depth) if spec.operand == "a" else (spec.depth, spec.width)
        return spec if make(cfg, spec.batch, *wide, trans=spec.trans) == spec else None


def spec_a(cfg: GemmConfig, batch: int, m: int, k: int, trans: bool = False) -> PackSpec:
    """The spec of op(A) (``m x k`` per batch item) stored as ``m x k`` (``k x m`` when ``trans``)."""
    return PackSpec("a", cfg.dtype, batch, k if trans else m, m if trans else k, trans, depth_block(k, cfg), cfg.mr)


def spec_b(cfg: GemmConfig, batch: int, k: int, n: int, trans: bool = False) -> PackSpec:
    """The spec of op(B) (``k x n`` per batch item) stored as ``k x n`` (``n x k`` when ``trans``)."""
    return PackSpec("b", cfg.dtype, batch, n if trans else k, k if trans else n, trans, depth_block(k, cfg), cfg.nr)


def pack(value: np.ndarray, spec: PackSpec) -> np.ndarray:
    """The packed operand of ``value`` (1-D, 64-byte aligned, ``batch * item_elements()`` elements)."""
    dtype = np.dtype(spec.dtype)
    items = np.asarray(value, dtype=dtype).reshape(spec.batch, spec.rows, spec.cols)
    size = spec.item_elements()
    raw = np.zeros(spec.batch * size * dtype.itemsize + 64, dtype=np.uint8)
    start = -raw.ctypes.data % 64
    out = raw[start:start + spec.batch * size * dtype.itemsize].view(dtype)
    k, width, kc, tile = spec.depth, spec.width, spec.kc, spec.tile
    for t in range(spec.batch):
        op = items[t].T if spec.trans else items[t]  # op(A): m x k; op(B): k x n
        dst = out[t * size:(t + 1) * size]
        if spec.operand == "a":
            tiles = tile_origins(width, tile)
            for pc in range(0, k, kc):
                kcur = min(kc, k - pc)
                for row, rows in tiles:
                    at = pc * width + row * kcur
                    dst[at:at + rows * kcur] = op[row:row + rows, pc:pc + kcur].T.ravel()
        else:
            npad = -(-width // tile) * tile
            for pc in range(0, k, kc):
                kcur = min(kc, k - pc)
                block = np.zeros((kcur, npad), dtype=dtype)
                block[:, :width] = op[pc:pc + kcur]
                panels = block.reshape(kcur, npad // tile, tile).transpose(1, 0, 2)
                dst[pc * npad:(pc + kcur) * npad] = panels.ravel()
    return out


def packer_a(cfg: GemmConfig, m: int) -> PackA:
    """The ``emit_gemm(pack_a=...)`` callback of an op(A) (``m`` rows) bound prepacked: no work, the micro-panel's
    address (A is the batch item's packed operand)."""

    def panel(b: ir.IRBuilder, a: ir.Value, _ap: ir.Value, pc: ir.Value, row: ir.Value, kc: ir.Value,
              _rows: int) -> ir.Value:
        return gep(b, a, b.add(b.mul(pc, i64(m)), b.mul(row, kc)), cfg.scalar)

    panel.prepacked = True  # type: ignore[attr-defined]
    return panel


def packer_b(cfg: GemmConfig, n: int) -> PackB:
    """The ``emit_gemm(pack_b=...)`` callback of an op(B) (``n`` columns) bound prepacked: the block's first panel."""
    npad = -(-n // cfg.nr) * cfg.nr

    def block(b: ir.IRBuilder, bm: ir.Value, _bp: ir.Value, pc: ir.Value, col: ir.Value, kc: ir.Value,
              _ncols: ir.Value) -> ir.Value:
        return gep(b, bm, b.add(b.mul(pc, i64(npad)), b.mul(col, kc)), cfg.scalar)

    block.prepacked = True  # type: ignore[attr-defined]  (pure address arithmetic: the driver may call it ahead)
    return block
