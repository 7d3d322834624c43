"""A register tile's transposed store (the micro-kernels' ``trans_c`` variant, ``codegen.gemm.microkernel``).

The tile's rows ``r < rows ≤ 8`` are vectors of columns; stored transposed, each column ``c`` becomes one vector of
8 lanes (the tile's rows, masked past ``rows``) at ``C + c·ldc``. A convolution computing yᵀ = colsᵀ · Wᵀ (pixels
as the GEMM's rows) thus writes y itself — each output channel's run of pixels — with no transposing pass.

:func:`columns` transposes 8 row vectors of ``width`` lanes in three rounds of two-input shuffles, each round
doubling the run of rows that sits together per column (1 → 2 → 4 → 8): 24 shuffles for a 8 × 16 block, then
each vector's two 8-lane halves are the columns. x86 turns each into one ``vpermt2ps`` / ``vunpck*``.
"""

from __future__ import annotations

import llvmlite.ir as ir

from codegen.llvm import I32

ROWS = 8  # lanes of a transposed column vector: the tile's rows (mr <= 8), padded


def _shuffle(b: ir.IRBuilder, x: ir.Value, y: ir.Value, lanes: list[int]) -> ir.Value:
    return b.shuffle_vector(x, y, ir.Constant(ir.VectorType(I32, len(lanes)), lanes))


def widen(b: ir.IRBuilder, v: ir.Value, width: int) -> ir.Value:
    """``v`` (fewer lanes) as a ``width``-lane vector, the new lanes undefined (columns that are never stored)."""
    lanes = v.type.count
    return _shuffle(b, v, undefined(v.type), list(range(lanes)) + [lanes] * (width - lanes))


def undefined(ty: ir.Type) -> ir.Constant:
    """A value of ``ty`` whose lanes are never stored: the rows past a short tile's, the columns past a narrow
    vector's."""
    return ir.Constant(ty, ir.Undefined)


def columns(b: ir.IRBuilder, rows: list[ir.Value]) -> list[ir.Value]:
    """The columns of the ``8 × width`` block whose rows are ``rows`` (``width`` a multiple of 8): ``width``
    vectors of 8 lanes, column ``j``'s lane ``r`` = lane ``j`` of ``rows[r]``."""
    width = rows[0].type.count
    if len(rows) != ROWS or width % ROWS:
        raise ValueError(f"columns() transposes 8 rows of a multiple of 8 lanes, not {len(rows)} of {width}")
    # column list -> its vectors in row order; each vector holds every listed column as a run of `run` rows
    groups: dict[tuple[int, ...], list[ir.Value]] = {tuple(range(width)): list(rows)}
    run = 1
    while run < ROWS:
        merged: dict[tuple[int, ...], list[ir.Value]] = {}
        for cols, vectors in groups.items():
            half = len(cols) // 2
            for first, second in zip(vectors[::2], vectors[1::2]):
                for part in (range(half), range(half, len(cols))):
                    lanes = [lane for t in part for lane in (*range(t * run, (t + 1) * run),
                                                             *range(width + t * run, width + (t + 1) * run))]
                    merged.setdefault(tuple(cols[t] for t in part), []).append(_shuffle(b, first, second, lanes))
        groups, run = merged, run * 2
    out: dict[int, ir.Value] = {}
    for cols, (vector,) in groups.items():
        for i, col in enumerate(cols):
            out[col] = vector if len(cols) == 1 else \
                _shuffle(b, vector, undefined(vector.type), list(range(i * ROWS, (i + 1) * ROWS)))
    return [out[j] for j in range(width)]


def tile_columns(b: ir.IRBuilder, rows: list[ir.Value]) -> list[ir.Value]:
    """The columns of a tile's vector of ``len(rows) <= 8`` rows: one 8-lane vector per lane of the rows (lanes past
    ``len(rows)`` undefined). A single row's columns are its lanes moved one by one (its shuffles padded with
    undefined rows hit an x86 instruction-selection failure in LLVM 22: ``zero_extend_vector_inreg``)."""
    lanes = rows[0].type.count
    column_type = ir.VectorType(rows[0].type.element, ROWS)
    if len(rows) == 1:
        return [b.insert_element(undefined(column_type), b.extract_element(rows[0], ir.Constant(I32, j)),
                                 ir.Constant(I32, 0)) for j in range(lanes)]
    width = max(lanes, ROWS)
    block = [widen(b, row, width) if lanes < width else row for row in rows]
    block += [undefined(block[0].type)] * (ROWS - len(rows))
    return columns(b, block)[:lanes]
