"""Packing for the GEMM: ``op(B)`` blocks into ``nr``-wide zero-padded panels and ``op(A)`` rows into column-major
micro-panels. B untransposed copies whole vectors; transposed B and untransposed A go through ``vec x vec``
in-register transposes (``codegen.gemm.transpose.transpose_block``). Created once per module and geometry."""

from __future__ import annotations

import llvmlite.ir as ir

from codegen.gemm.config import GemmConfig, helper_function, shared_name
from codegen.gemm.transpose import transpose_block
from codegen.llvm import I64, PTR, for_range, gep, i64


def pack_b(module: ir.Module, cfg: GemmConfig, trans: bool) -> ir.Function:
    """``void pack(B*, Bp*, i64 kc, i64 ncols, i64 ld)``: pack ``op(B)[0:kc, 0:ncols]`` into ``nr``-wide panels.

    ``op(B)[p, c]`` is ``B[p*ld + c]``, or ``B[c*ld + p]`` when ``trans``. Panel ``j`` holds its rows contiguous:
    ``Bp[(j*kc + p)*nr + c] = op(B)[p, j*nr + c]``; columns past ``ncols`` in the last panel are zero. Untransposed
    panels copy whole vectors; transposed ones load ``vec x vec`` blocks and transpose them in registers.
    """
    name = shared_name(cfg, f"pack_b.{'t' if trans else 'n'}")
    existing = module.globals.get(name)
    if existing is not None:
        return existing
    fn = helper_function(module, name, [PTR, PTR, I64, I64, I64], noalias=2, small=True)
    src, dst, kc, ncols, ld = fn.args
    scalar, vector, nr, vec = cfg.scalar, cfg.vector, cfg.nr, cfg.vec
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    nfull = b.sdiv(ncols, i64(nr))
    if not trans:  # row by row, so B is read in long contiguous streams; each row scatters into the panels
        panel_stride = b.mul(kc, i64(nr))
        with for_range(b, 0, kc, name="p") as p:
            s_row = b.mul(p, ld)
            d_row = b.mul(p, i64(nr))
            with for_range(b, 0, nfull, name="panel") as j:
                s_at = b.add(s_row, b.mul(j, i64(nr)))
                d_at = b.add(d_row, b.mul(j, panel_stride))
                for v in range(cfg.nv):
                    x = b.load(gep(b, src, b.add(s_at, i64(v * vec)), scalar), typ=vector, align=cfg.itemsize)
                    b.store(x, gep(b, dst, b.add(d_at, i64(v * vec)), scalar), align=vec * cfg.itemsize)
    else:
        with for_range(b, 0, nfull, name="panel") as j:
            _pack_transposed_panel(b, cfg, src, dst, kc, b.mul(j, b.mul(kc, i64(nr))), b.mul(j, i64(nr)), ld)
    rem = b.sub(ncols, b.mul(nfull, i64(nr)))
    with b.if_then(b.icmp_signed(">", rem, i64(0))):
        panel = b.mul(nfull, b.mul(kc, i64(nr)))
        col0 = b.mul(nfull, i64(nr))
        with for_range(b, 0, nr, name="c") as c:
            inside = b.icmp_signed("<", c, rem)
            col = b.add(col0, c)
            with for_range(b, 0, kc, name="pr") as p:
                d = gep(b, dst, b.add(panel, b.add(b.mul(p, i64(nr)), c)), scalar)
                with b.if_else(inside) as (then, otherwise):
                    with then:
                        s_idx = b.add(b.mul(col, ld), p) if trans else b.add(b.mul(p, ld), col)
                        b.store(b.load(gep(b, src, s_idx, scalar), typ=scalar), d)
                    with otherwise:
                        b.store(ir.Constant(scalar, 0.0), d)
    b.ret_void()
    return fn


def _pack_transposed_panel(b: ir.IRBuilder, cfg: GemmConfig, src: ir.Value, dst: ir.Value, kc: ir.Value,
                           panel: ir.Value, col0: ir.Value, ld: ir.Value) -> None:
    """One full panel of ``op(B) = Bᵀ``: source column ``c`` is contiguous along ``p``; ``vec x vec`` blocks are
    loaded as vectors, transposed in registers and stored as panel rows; the ``kc % vec`` tail goes scalar."""
    scalar, vector, nr, vec = cfg.scalar, cfg.vector, cfg.nr, cfg.vec
    kfull = b.mul(b.sdiv(kc, i64(vec)), i64(vec))
    with for_range(b, 0, kfull, vec, name="pb") as pb:
        for v in range(cfg.nv):
            rows = []
            for i in range(vec):
                s_col = b.mul(b.add(col0, i64(v * vec + i)), ld)
                rows.append(b.load(gep(b, src, b.add(s_col, pb), scalar), typ=vector, align=cfg.itemsize))
            for lane, y in enumerate(transpose_block(b, rows)):
                d = b.add(panel, b.add(b.mul(b.add(pb, i64(lane)), i64(nr)), i64(v * vec)))
                b.store(y, gep(b, dst, d, scalar), align=vec * cfg.itemsize)
    with for_range(b, kfull, kc, name="pt") as p:
        with for_range(b, 0, nr, name="ct") as c:
            x = b.load(gep(b, src, b.add(b.mul(b.add(col0, c), ld), p), scalar), typ=scalar)
            b.store(x, gep(b, dst, b.add(panel, b.add(b.mul(p, i64(nr)), c)), scalar))


def pack_a(module: ir.Module, cfg: GemmConfig, rows: int, trans: bool) -> ir.Function:
    """``void pack(A*, Ap*, i64 kc, i64 ld)``: copy ``op(A)[0:rows, 0:kc]`` into ``Ap[p*rows + r]`` (a column-major
    micro-panel), so the micro-kernel's broadcasts walk one contiguous stream whatever A's layout.

    ``op(A)[r, p]`` is ``A[r*ld + p]``, or ``A[p*ld + r]`` when ``trans``. Untransposed (``rows <= vec``): each
    ``vec``-wide step of ``p`` loads one vector per row (rows repeated up to ``vec``), transposes the block in
    registers and stores ``vec``-wide vectors at ``Ap[p*rows]`` in increasing ``p``, each overwriting the previous
    one's surplus lanes; the last surplus lands in ``vec`` elements of slack (allocate ``rows*kc + vec``).
    The ``kc % vec`` tail, and the transposed form (``rows`` contiguous elements per ``p``), copy scalars."""
    name = shared_name(cfg, f"pack_a{rows}.{'t' if trans else 'n'}")
    existing = module.globals.get(name)
    if existing is not None:
        return existing
    fn = helper_function(module, name, [PTR, PTR, I64, I64], noalias=2, small=True)
    src, dst, kc, ld = fn.args
    scalar, vector, vec = cfg.scalar, cfg.vector, cfg.vec
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    row_offsets = [i64(r) if trans else b.mul(ld, i64(r)) for r in range(rows)]
    start: ir.Value = i64(0)
    if not trans and rows <= vec:
        start = b.mul(b.sdiv(kc, i64(vec)), i64(vec))
        with for_range(b, 0, start, vec, name="pb") as pb:
            loaded = [b.load(gep(b, src, b.add(row_offsets[r], pb), scalar), typ=vector, align=cfg.itemsize)
                      for r in range(rows)]
            cols = transpose_block(b, loaded + [loaded[0]] * (vec - rows))
            for lane, y in enumerate(cols):
                b.store(y, gep(b, dst, b.mul(b.add(pb, i64(lane)), i64(rows)), scalar), align=cfg.itemsize)
    with for_range(b, start, kc, name="p") as p:
        s_col = b.mul(p, ld) if trans else p
        d_col = b.mul(p, i64(rows))
        for r in range(rows):
            x = b.load(gep(b, src, b.add(s_col, row_offsets[r]), scalar), typ=scalar)
            b.store(x, gep(b, dst, b.add(d_col, i64(r)), scalar))
    b.ret_void()
    return fn
