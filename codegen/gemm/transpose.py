"""A register tile's transposed store (the micro-kernels' ``trans_c`` variant, ``codegen.gemm.microkernel``).

The tile's rows ``r < rows ≤ 8`` are vectors of columns; stored transposed, each column ``c`` becomes one vector of
8 lanes (the tile's rows, masked past ``rows``) at ``C + c·ldc``. A convolution computing yᵀ = colsᵀ · Wᵀ (pixels
as the GEMM's rows) thus writes y itself — each output channel's run of pixels — with no transposing pass.

:func:`transpose_block` — also the packing routines' and the channel-block layout's square transposes — takes
the 8 rows of ``width`` lanes through three stages of two-input shuffles: 24 shuffles for an 8 × 16 block, then
each vector's two 8-lane halves are columns. x86 turns each shuffle into one ``vpermt2ps`` / ``vunpck*`` /
``vshuf*``.
"""

from __future__ import annotations

import llvmlite.ir as ir

from codegen.llvm import I32

ROWS = 8  # lanes of a transposed column vector: the tile's rows (mr <= 8), padded


def widen(b: ir.IRBuilder, v: ir.Value, width: int) -> ir.Value:
    """``v`` (fewer lanes) as a ``width``-lane vector, the new lanes undefined (columns that are never stored)."""
    lanes = v.type.count
    return b.shuffle_vector(v, undefined(v.type),
                            ir.Constant(ir.VectorType(I32, width), list(range(lanes)) + [lanes] * (width - lanes)))


def undefined(ty: ir.Type) -> ir.Constant:
    """A value of ``ty`` whose lanes are never stored: the rows past a short tile's, the columns past a narrow
    vector's."""
    return ir.Constant(ty, ir.Undefined)


def transpose_block(builder: ir.IRBuilder, rows: list[ir.Value]) -> list[ir.Value]:
    """The columns of an ``n x width`` block held as its ``n`` rows (``n`` a power of two, ``width`` a multiple of
    ``n``): ``width`` vectors of ``n`` lanes, column ``c``'s lane ``r`` = lane ``c`` of ``rows[r]``; for a square
    block, the block transposed.

    Stage ``h = n/2, ..., 1`` swaps the off-diagonal ``h x h`` sub-blocks of every ``2h x 2h`` block within each
    ``n``-lane segment: ``x_i' = x_i[lanes without bit h] ++ x_{i+h}[...]``, two 2-input shuffles per pair. After
    ``log2(n)`` stages lane ``s·n + j`` of ``x_i`` is ``rows[j][s·n + i]``: column ``s·n + i`` is segment ``s`` of
    ``x_i`` (``x_i`` itself when square)."""
    n, width = len(rows), rows[0].type.count
    if n & (n - 1) or width % n:
        raise ValueError(f"transpose_block takes a power of two of rows and a multiple of it as lanes, "
                         f"not {n} rows of {width}")
    out = list(rows)
    h = n // 2
    while h:
        low = ir.Constant(ir.VectorType(I32, width), [j if not j & h else width + j - h for j in range(width)])
        high = ir.Constant(ir.VectorType(I32, width), [j + h if not j & h else width + j for j in range(width)])
        for i in range(n):
            if not i & h:
                out[i], out[i + h] = (builder.shuffle_vector(out[i], out[i + h], low),
                                      builder.shuffle_vector(out[i], out[i + h], high))
        h //= 2
    if width == n:
        return out
    segments = [ir.Constant(ir.VectorType(I32, n), list(range(s * n, (s + 1) * n))) for s in range(width // n)]
    return [builder.shuffle_vector(out[c % n], undefined(out[c % n].type), segments[c // n]) for c in range(width)]


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
    return transpose_block(b, block)[:lanes]
