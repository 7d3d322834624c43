"""The register-tiled GEMM micro-kernel.

It computes one ``rows x cols`` tile of C (``rows <= mr``, ``cols <= nr = nv * vec``) from a packed A micro-panel
``Ap`` (``Ap[p*rows + r]``) and a packed, zero-padded B panel ``Bp`` (``Bp[p*nr + c]``)::

    prefetch the C tile (for writing)
    for p in 0..kc:                              # acc: rows x nv vector phis, all in registers
        b_v = Bp[p, v*vec : (v+1)*vec]  for v < nv            (aligned vector loads)
        a_r = broadcast(Ap[p, r])       for r < rows
        acc[r][v] = llvm.fma(a_r, b_v, acc[r][v])
        prefetch line p of the caller's stream (into L2; see the driver: the source of the next packing)
    C[tile] = acc (+ C[tile] when load_c)        # llvm.masked.load/store for a partial last vector

The *strided-B* variant (``strided_b=True``, one more argument ``ldb``) reads B in place instead of a packed panel:
row p of the panel at ``Bp + p*ldb`` (unaligned vector loads; only full-width panels, ``cols == nr``), so a GEMM
whose B rows are contiguous (``x @ W``) skips packing B. The *indirect* variant (``indirect_a=True``) reads A
through an indirection record (a convolution's image, ``codegen.conv_indirect``). The *scaled* variant
(``scaled=True``, one more argument ``alpha``) stores ``alpha·acc (+ C[tile])`` instead: the product scaled on
registers before it meets C (``C += alpha·A·B``, as plain SGD's step into a weight). The *epilogue* variant
(``epilogue=``, a :class:`codegen.gemm.store_epilogue.StoreEpilogue`; more arguments: ``final`` and the chain's
operand pointers at the tile) applies the chain — bias, residual, relu — to the tile on registers when ``final``
is set (the GEMM's last depth block), so no second pass over C follows.

Because Bp is zero-padded to ``nr`` columns, partial column tiles still run full-width FMAs and only their C
accesses are masked — except that a last vector of at most half a 512-bit vector's columns is a 256-bit one
(:func:`vector_lanes`); partial row tiles are separate instantiations with fewer accumulators. Micro-kernels take
the leading dimension and depth at run time and are created once per module and geometry, so every GEMM of a
program shares them (``graphc.gemm.f32.8x2.uk6x16`` ...).
"""

from __future__ import annotations

import llvmlite.ir as ir

from codegen.gemm import transpose
from codegen.gemm.config import GemmConfig, helper_function, shared_name
from codegen.gemm.store_epilogue import StoreEpilogue
from codegen.llvm import I1, I32, I64, PTR, VOID, fold, gep, i64, intrinsic, load_first, store_first


def vector_suffix(cfg: GemmConfig, lanes: int | None = None) -> str:
    """The intrinsic suffix of ``cfg``'s vector type (``v16f32``), or of a ``lanes``-lane vector of its scalars."""
    return f"v{lanes or cfg.vec}{'f32' if cfg.dtype == 'float32' else 'f64'}"


def splat(builder: ir.IRBuilder, cfg: GemmConfig, scalar: ir.Value, lanes: int | None = None) -> ir.Value:
    """``scalar`` in every lane of ``cfg``'s vector type (of a ``lanes``-lane vector of its scalars)."""
    lanes = lanes or cfg.vec
    ty = ir.VectorType(cfg.scalar, lanes)
    one = builder.insert_element(ir.Constant(ty, ir.Undefined), scalar, ir.Constant(I32, 0))
    zeros = ir.Constant(ir.VectorType(I32, lanes), [0] * lanes)
    return builder.shuffle_vector(one, ir.Constant(ty, ir.Undefined), zeros)


def vector_lanes(cfg: GemmConfig, cols: int) -> list[int]:
    """The lanes of each vector of a ``cols``-column tile: full vectors, except that with 512-bit vectors a last
    vector holding at most half a vector's columns is a half (256-bit) one. On AMD's Zen 4 a 512-bit FMA takes
    both 256-bit FMA pipes, so a ResNet-50 14×14 layer's 4-column edge (196 = 6·32 + 4 pixels) costs half as many
    FMA cycles; where the core has two 512-bit pipes it costs the same."""
    nvec = -(-cols // cfg.vec)
    last = cols - (nvec - 1) * cfg.vec
    half = cfg.vec // 2
    narrow = cfg.vec * cfg.itemsize == 64 and last <= half
    return [cfg.vec] * (nvec - 1) + [half if narrow else cfg.vec]


def microkernel(module: ir.Module, cfg: GemmConfig, rows: int, cols: int, scaled: bool = False,
                strided_b: bool = False, indirect_a: bool = False,
                epilogue: StoreEpilogue | None = None, trans_c: bool = False) -> ir.Function:
    """``void uk(Ap*, Bp*, C*, i64 ldc, i64 kc, i1 load_c, pf*, i64 pf_ld, i64 pf_len, i64 pf_count[, i64 ldb]
    [, alpha][, i1 final][, Y*, i64 ldy][, operand*...])``:
    C[0:rows, 0:cols] (+)= Ap · Bp over ``kc`` steps, prefetching (into L2) one cache line of the caller's stream per
    step — ``pf_count`` lines in rows of ``pf_len`` lines, ``pf_ld`` elements apart, from ``pf`` — so that the
    memory the next packing reads arrives while this one computes (a count of 0: no stream).

    ``Ap[p*rows + r]`` is the packed A micro-panel, ``Bp[p*nr + c]`` the packed (zero-padded) B panel; C rows are
    ``ldc`` elements apart. ``cols <= nr``; a partial last vector is loaded and stored with a lane mask. ``kc >= 1``.
    ``scaled``: the product is multiplied by the scalar argument ``alpha`` before it is stored or added to C.
    ``strided_b``: B's row p is at ``Bp + p*ldb`` (B read in place, ``cols == nr``) instead of ``Bp + p*nr``.
    ``indirect_a``: ``Ap`` is an indirection record instead of a packed micro-panel — ``rows`` i64 addresses
    ``row[r]``, then at index ``mr`` the address of an i32 offset table ``off`` — and A[r, p] = ``row[r][off[p]]``
    (a convolution's pixels read straight from a padded image, ``codegen.conv_indirect``); it ignores the prefetch
    stream (the rows' nine address registers leave none for its state without spilling in the loop).
    ``epilogue``: when ``final`` is set, the stored value is the chain applied to it, its operands one pointer per
    reading step: a row vector ``a[r]`` / a column vector ``a[c]`` (pointer at the tile's first row / column), the
    residual ``R[r*ldc + c]`` (at the tile's origin, C's leading dimension).
    ``trans_c``: when ``final`` is set the tile (plus C's partial sums when ``load_c``) is stored transposed into
    ``Y`` instead — element (r, c) at ``Y[c*ldy + r]``, the residual laid out likewise — each column one vector of
    the tile's rows (``codegen.gemm.transpose``); the depth blocks before keep their partial sums in C as usual.
    Created once per module and geometry.
    """
    if trans_c and rows > transpose.ROWS:
        raise ValueError(f"a transposed store takes tiles of at most {transpose.ROWS} rows, not {rows}")
    if strided_b and cols != cfg.nr:
        raise ValueError(f"a strided-B micro-kernel computes full-width tiles ({cfg.nr} columns), not {cols}")
    name = shared_name(cfg, f"uk{rows}x{cols}" + ("i" if indirect_a else "") + ("d" if strided_b else "")
                       + ("s" if scaled else "") + ("t" if trans_c else "")
                       + (f"e{epilogue.tag()}" if epilogue else ""))
    existing = module.globals.get(name)
    if existing is not None:
        return existing
    fn = helper_function(module, name, [PTR, PTR, PTR, I64, I64, I1, PTR, I64, I64, I64]
                         + ([I64] if strided_b else []) + ([cfg.scalar] if scaled else [])
                         + ([I1] if epilogue or trans_c else []) + ([PTR, I64] if trans_c else [])
                         + ([PTR] * epilogue.pointers() if epilogue else []), noalias=3)
    a_ptr, b_ptr, c_ptr, ldc, kc, load_c, pf_base, pf_ld, pf_len, pf_count = fn.args[:10]
    optional = iter(fn.args[10:])  # [ldb], [alpha], [final], [Y, ldy], [operand pointers...]
    ldb = next(optional) if strided_b else None
    alpha_arg = next(optional) if scaled else None
    final_arg = next(optional) if epilogue or trans_c else None
    y_ptr, ldy = (next(optional), next(optional)) if trans_c else (None, None)
    operand_args = list(optional)
    b_step, b_align = (ldb, cfg.itemsize) if strided_b else (i64(cfg.nr), cfg.vec * cfg.itemsize)
    scalar, vec = cfg.scalar, cfg.vec
    lanes = vector_lanes(cfg, cols)  # of each of the tile's vectors (a narrow last one: half a vector)
    nvec = len(lanes)
    types = [ir.VectorType(scalar, n) for n in lanes]
    suffix = [vector_suffix(cfg, n) for n in lanes]
    fmas = [intrinsic(module, f"llvm.fma.{sfx}", ty, [ty, ty, ty]) for sfx, ty in zip(suffix, types)]

    b = ir.IRBuilder(fn.append_basic_block("entry"))
    if indirect_a:  # the record: row addresses, then the offset table's
        row_ptrs = [b.inttoptr(b.load(gep(b, a_ptr, i64(r), I64), typ=I64), PTR) for r in range(rows)]
        offsets = b.inttoptr(b.load(gep(b, a_ptr, i64(cfg.mr), I64), typ=I64), PTR)
    prefetch = intrinsic(module, "llvm.prefetch.p0", VOID, [PTR, I32, I32, I32])

    def prefetch_tile(base: ir.Value, write: bool, transposed: bool = False) -> None:
        """Start fetching a tile laid out like C, or like Y (``transposed``), into L1: the first and last element
        of each stored row."""
        lines, length, ld = (cols, rows, ldy) if transposed else (rows, cols, ldc)
        for r in range(lines):
            c_row = b.mul(ld, i64(r))
            for col in sorted({0, length - 1}):
                b.call(prefetch, [gep(b, base, b.add(c_row, i64(col)), scalar), ir.Constant(I32, int(write)),
                                  ir.Constant(I32, 3), ir.Constant(I32, 1)])

    if trans_c:  # the tile is needed after the loop: start fetching where it goes (and the partial sums)
        with b.if_else(final_arg) as (last, other):
            with last:
                prefetch_tile(y_ptr, write=True, transposed=True)
            with other:
                prefetch_tile(c_ptr, write=True)
        with b.if_then(load_c):
            prefetch_tile(c_ptr, write=False)
    else:
        prefetch_tile(c_ptr, write=True)
    if epilogue and ("residual",) in epilogue.steps:  # the final block reads the residual tile after the loop
        with b.if_then(final_arg):
            prefetch_tile(operand_args[epilogue.reads().index(("residual",))], write=False, transposed=trans_c)
    zeros = [ir.Constant(ty, None) for ty in types]
    line = 64 // cfg.itemsize

    def step(b: ir.IRBuilder, p: ir.Value, acc: list[ir.Value]) -> list[ir.Value]:
        # one line of the caller's prefetch stream per step (into L2): pf_count lines in rows of pf_len lines,
        # pf_ld elements apart, from pf_base; past the count the first line again (a cache hit)
        row, col = acc[-2:]
        acc = acc[:-2]
        extra = [row, col]
        if not indirect_a:  # (the indirect kernel's nine address registers leave none for the stream's state)
            at = b.select(b.icmp_signed("<", p, pf_count), b.add(row, b.mul(col, i64(line))), i64(0))
            b.call(prefetch, [b.gep(pf_base, [at], source_etype=scalar), ir.Constant(I32, 0), ir.Constant(I32, 2),
                              ir.Constant(I32, 1)])
            nxt = b.add(col, i64(1))
            wrap = b.icmp_signed("==", nxt, pf_len)
            extra = [b.select(wrap, b.add(row, pf_ld), row), b.select(wrap, i64(0), nxt)]
        b_row = b.mul(p, b_step)
        bvecs = [b.load(gep(b, b_ptr, b.add(b_row, i64(v * vec)), scalar), typ=types[v],
                        align=min(b_align, lanes[v] * cfg.itemsize)) for v in range(nvec)]
        a_col = b.mul(p, i64(rows))
        if indirect_a:
            off = b.sext(b.load(gep(b, offsets, p, I32), typ=I32), I64)
            a_at = [gep(b, row_ptrs[r], off, scalar) for r in range(rows)]
        else:
            a_at = [gep(b, a_ptr, b.add(a_col, i64(r)), scalar) for r in range(rows)]
        out = []
        for r in range(rows):
            a_r = b.load(a_at[r], typ=scalar)
            a_vec = {n: splat(b, cfg, a_r, n) for n in set(lanes)}
            out += [b.call(fmas[v], [a_vec[lanes[v]], bvecs[v], acc[r * nvec + v]]) for v in range(nvec)]
        return out + extra

    flat = fold(b, kc, zeros * rows + [i64(0), i64(0)], step, "k")  # kc >= 1 (blocks are never empty)
    flat = flat[:rows * nvec]
    if scaled:
        alpha = {n: splat(b, cfg, alpha_arg, n) for n in set(lanes)}
        flat = [b.fmul(v, alpha[lanes[i % nvec]]) for i, v in enumerate(flat)]
    new = [flat[r * nvec:(r + 1) * nvec] for r in range(rows)]
    filled = [min(lanes[v], cols - v * vec) for v in range(nvec)]  # columns each vector holds (the last: masked)

    def load_vector(builder: ir.IRBuilder, addr: ir.Value, v: int) -> ir.Value:
        """The tile's vector ``v`` of a row laid out like C's, at ``addr`` (masked when partial)."""
        return load_first(builder, addr, types[v], filled[v])

    def store_all(builder: ir.IRBuilder, add_c: bool, final: bool) -> None:
        reads = list(zip(epilogue.reads(), operand_args)) if final else []
        columns = {(k, v): load_vector(builder, gep(builder, p, i64(v * vec), scalar), v)
                   for k, (step, p) in enumerate(reads) if step[0] != "residual" and step[1] == "col"
                   for v in range(nvec)}  # a column vector's lanes: once per tile
        for r in range(rows):
            c_row = builder.mul(ldc, i64(r))
            per_row = {(k, n): splat(builder, cfg, builder.load(gep(builder, p, i64(r), scalar), typ=scalar), n)
                       for k, (step, p) in enumerate(reads) if step[0] != "residual" and step[1] == "row"
                       for n in set(lanes)}
            for v in range(nvec):
                at = builder.add(c_row, i64(v * vec))
                value, addr = new[r][v], gep(builder, c_ptr, at, scalar)
                if add_c:
                    value = builder.fadd(value, load_vector(builder, addr, v))
                if final:
                    operands = [load_vector(builder, gep(builder, p, at, scalar), v) if step[0] == "residual"
                                else per_row[k, lanes[v]] if step[1] == "row" else columns[k, v]
                                for k, (step, p) in enumerate(reads)]
                    value = epilogue.apply(builder, value, operands)
                store_first(builder, value, addr, filled[v])
        builder.ret_void()

    def store_columns(builder: ir.IRBuilder, add_c: bool) -> None:
        """The final tile (+ C's partial sums) stored transposed: column c, the tile's rows as one vector, at
        ``Y + c*ldy``, through the epilogue."""
        column_type = ir.VectorType(scalar, transpose.ROWS)

        def load_column(addr: ir.Value) -> ir.Value:  # the tile's rows of a column laid out like Y (masked)
            return load_first(builder, addr, column_type, rows)

        reads = list(zip(epilogue.reads(), operand_args)) if epilogue else []
        per_row = {k: load_column(p) for k, (step, p) in enumerate(reads)  # along the tile's rows: one vector
                   if step[0] != "residual" and step[1] == "row"}
        for v in range(nvec):
            tile = [new[r][v] for r in range(rows)]
            if add_c:  # the partial sums, added where they lie (rows of C)
                tile = [builder.fadd(value, load_vector(builder, gep(builder, c_ptr, builder.add(
                    builder.mul(ldc, i64(r)), i64(v * vec)), scalar), v)) for r, value in enumerate(tile)]
            for j, value in enumerate(transpose.tile_columns(builder, tile)[:cols - v * vec]):
                addr = gep(builder, y_ptr, builder.mul(ldy, i64(v * vec + j)), scalar)
                if epilogue:
                    operands = [load_column(gep(builder, p, builder.mul(ldy, i64(v * vec + j)), scalar))
                                if step[0] == "residual" else per_row[k] if step[1] == "row"
                                else splat(builder, cfg, builder.load(gep(builder, p, i64(v * vec + j), scalar),
                                                                      typ=scalar), transpose.ROWS)
                                for k, (step, p) in enumerate(reads)]
                    value = epilogue.apply(builder, value, operands)
                store_first(builder, value, addr, rows)
        builder.ret_void()

    def store_branch(add_c: bool) -> None:
        if final_arg is None:
            store_all(b, add_c, False)
            return
        with b.if_else(final_arg) as (last, other):
            with last:
                if trans_c:
                    store_columns(b, add_c)
                else:
                    store_all(b, add_c, True)
            with other:
                store_all(b, add_c, False)
        b.unreachable()

    with b.if_else(load_c) as (then, otherwise):
        with then:
            store_branch(True)
        with otherwise:
            store_branch(False)
    b.unreachable()
    return fn
