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
accesses are masked; partial row tiles are separate instantiations with fewer accumulators. Micro-kernels take
the leading dimension and depth at run time and are created once per module and geometry, so every GEMM of a
program shares them (``graphc.gemm.f32.8x2.uk6x16`` ...).
"""

from __future__ import annotations

import llvmlite.ir as ir

from codegen.gemm.config import GemmConfig, helper_function, shared_name
from codegen.gemm.store_epilogue import StoreEpilogue
from codegen.llvm import I1, I32, I64, PTR, VOID, fold, gep, i64, intrinsic


def vector_suffix(cfg: GemmConfig) -> str:
    """The intrinsic suffix of ``cfg``'s vector type (``v16f32``)."""
    return f"v{cfg.vec}{'f32' if cfg.dtype == 'float32' else 'f64'}"


def lane_mask(lanes: int, vec: int) -> ir.Constant:
    """The i1 vector selecting the first ``lanes`` of ``vec`` lanes."""
    return ir.Constant(ir.VectorType(I1, vec), [1 if i < lanes else 0 for i in range(vec)])


def splat(builder: ir.IRBuilder, cfg: GemmConfig, scalar: ir.Value) -> ir.Value:
    """``scalar`` in every lane of ``cfg``'s vector type."""
    one = builder.insert_element(ir.Constant(cfg.vector, ir.Undefined), scalar, ir.Constant(I32, 0))
    zeros = ir.Constant(ir.VectorType(I32, cfg.vec), [0] * cfg.vec)
    return builder.shuffle_vector(one, ir.Constant(cfg.vector, ir.Undefined), zeros)


def microkernel(module: ir.Module, cfg: GemmConfig, rows: int, cols: int, scaled: bool = False,
                strided_b: bool = False, indirect_a: bool = False,
                epilogue: StoreEpilogue | None = None) -> ir.Function:
    """``void uk(Ap*, Bp*, C*, i64 ldc, i64 kc, i1 load_c, pf*, i64 pf_ld, i64 pf_len, i64 pf_count[, i64 ldb]
    [, alpha][, i1 final, operand*...])``:
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
    Created once per module and geometry.
    """
    if strided_b and cols != cfg.nr:
        raise ValueError(f"a strided-B micro-kernel computes full-width tiles ({cfg.nr} columns), not {cols}")
    name = shared_name(cfg, f"uk{rows}x{cols}" + ("i" if indirect_a else "") + ("d" if strided_b else "")
                       + ("s" if scaled else "") + (f"e{epilogue.tag()}" if epilogue else ""))
    existing = module.globals.get(name)
    if existing is not None:
        return existing
    fn = helper_function(module, name, [PTR, PTR, PTR, I64, I64, I1, PTR, I64, I64, I64]
                         + ([I64] if strided_b else []) + ([cfg.scalar] if scaled else [])
                         + ([I1] + [PTR] * epilogue.pointers() if epilogue else []), noalias=3)
    a_ptr, b_ptr, c_ptr, ldc, kc, load_c, pf_base, pf_ld, pf_len, pf_count = fn.args[:10]
    optional = iter(fn.args[10:])  # [ldb], [alpha], [final, operand pointers...]
    ldb = next(optional) if strided_b else None
    alpha_arg = next(optional) if scaled else None
    final_arg = next(optional) if epilogue else None
    operand_args = list(optional)
    b_step, b_align = (ldb, cfg.itemsize) if strided_b else (i64(cfg.nr), cfg.vec * cfg.itemsize)
    scalar, vector, vec = cfg.scalar, cfg.vector, cfg.vec
    nvec = -(-cols // vec)
    fma = intrinsic(module, f"llvm.fma.{vector_suffix(cfg)}", vector, [vector, vector, vector])

    b = ir.IRBuilder(fn.append_basic_block("entry"))
    if indirect_a:  # the record: row addresses, then the offset table's
        row_ptrs = [b.inttoptr(b.load(gep(b, a_ptr, i64(r), I64), typ=I64), PTR) for r in range(rows)]
        offsets = b.inttoptr(b.load(gep(b, a_ptr, i64(cfg.mr), I64), typ=I64), PTR)
    prefetch = intrinsic(module, "llvm.prefetch.p0", VOID, [PTR, I32, I32, I32])

    def prefetch_tile(base: ir.Value, write: bool) -> None:
        """Start fetching a tile laid out like C (the first and last column of each row) into L1."""
        for r in range(rows):
            c_row = b.mul(ldc, i64(r))
            for col in sorted({0, cols - 1}):
                b.call(prefetch, [gep(b, base, b.add(c_row, i64(col)), scalar), ir.Constant(I32, int(write)),
                                  ir.Constant(I32, 3), ir.Constant(I32, 1)])

    prefetch_tile(c_ptr, write=True)  # the C tile is needed after the loop: start fetching it now
    if epilogue and ("residual",) in epilogue.steps:  # the final block reads the residual tile after the loop
        with b.if_then(final_arg):
            prefetch_tile(operand_args[epilogue.reads().index(("residual",))], write=False)
    zero = ir.Constant(vector, None)
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
        bvecs = [b.load(gep(b, b_ptr, b.add(b_row, i64(v * vec)), scalar), typ=vector, align=b_align)
                 for v in range(nvec)]
        a_col = b.mul(p, i64(rows))
        if indirect_a:
            off = b.sext(b.load(gep(b, offsets, p, I32), typ=I32), I64)
            a_at = [gep(b, row_ptrs[r], off, scalar) for r in range(rows)]
        else:
            a_at = [gep(b, a_ptr, b.add(a_col, i64(r)), scalar) for r in range(rows)]
        out = []
        for r in range(rows):
            a_vec = splat(b, cfg, b.load(a_at[r], typ=scalar))
            out += [b.call(fma, [a_vec, bvecs[v], acc[r * nvec + v]]) for v in range(nvec)]
        return out + extra

    flat = fold(b, kc, [zero] * (rows * nvec) + [i64(0), i64(0)], step, "k")  # kc >= 1 (blocks are never empty)
    flat = flat[:rows * nvec]
    if scaled:
        alpha = splat(b, cfg, alpha_arg)
        flat = [b.fmul(v, alpha) for v in flat]
    new = [flat[r * nvec:(r + 1) * nvec] for r in range(rows)]
    last_lanes = cols - (nvec - 1) * vec
    masked_load = masked_store = None
    if last_lanes < vec:
        vt = ir.VectorType(I1, vec)
        masked_load = intrinsic(module, f"llvm.masked.load.{vector_suffix(cfg)}.p0", vector, [PTR, I32, vt, vector])
        masked_store = intrinsic(module, f"llvm.masked.store.{vector_suffix(cfg)}.p0", VOID, [vector, PTR, I32, vt])
    mask = lane_mask(last_lanes, vec)
    salign = ir.Constant(I32, cfg.itemsize)

    def partial(v: int) -> bool:  # the tile's last vector, when it holds fewer than vec columns
        return v == nvec - 1 and masked_load is not None

    def load_vector(builder: ir.IRBuilder, addr: ir.Value, v: int) -> ir.Value:
        """The tile's vector ``v`` of a row laid out like C's, at ``addr`` (masked when partial)."""
        if partial(v):
            return builder.call(masked_load, [addr, salign, mask, zero])
        return builder.load(addr, typ=vector, align=cfg.itemsize)

    def store_all(builder: ir.IRBuilder, add_c: bool, final: bool) -> None:
        reads = list(zip(epilogue.reads(), operand_args)) if final else []
        columns = {(k, v): load_vector(builder, gep(builder, p, i64(v * vec), scalar), v)
                   for k, (step, p) in enumerate(reads) if step[0] != "residual" and step[1] == "col"
                   for v in range(nvec)}  # a column vector's lanes: once per tile
        for r in range(rows):
            c_row = builder.mul(ldc, i64(r))
            per_row = {k: splat(builder, cfg, builder.load(gep(builder, p, i64(r), scalar), typ=scalar))
                       for k, (step, p) in enumerate(reads) if step[0] != "residual" and step[1] == "row"}
            for v in range(nvec):
                at = builder.add(c_row, i64(v * vec))
                value, addr = new[r][v], gep(builder, c_ptr, at, scalar)
                if add_c:
                    value = builder.fadd(value, load_vector(builder, addr, v))
                if final:
                    operands = [load_vector(builder, gep(builder, p, at, scalar), v) if step[0] == "residual"
                                else per_row[k] if step[1] == "row" else columns[k, v]
                                for k, (step, p) in enumerate(reads)]
                    value = epilogue.apply(builder, value, operands)
                if partial(v):
                    builder.call(masked_store, [value, addr, salign, mask])
                else:
                    builder.store(value, addr, align=cfg.itemsize)
        builder.ret_void()

    def store_branch(add_c: bool) -> None:
        if not epilogue:
            store_all(b, add_c, False)
            return
        with b.if_else(final_arg) as (last, other):
            with last:
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
