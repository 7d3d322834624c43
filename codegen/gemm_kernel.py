"""Building blocks of the GEMM: tile geometry, loops, the register-tiled micro-kernel and the packing routines.

The micro-kernel computes one ``rows x cols`` tile of C (``rows <= mr``, ``cols <= nr = nv * vec``) from a packed
A micro-panel ``Ap`` (``Ap[p*rows + r]``) and a packed, zero-padded B panel ``Bp`` (``Bp[p*nr + c]``)::

    prefetch the C tile (for writing)
    for p in 0..kc:                              # acc: rows x nv vector phis, all in registers
        b_v = Bp[p, v*vec : (v+1)*vec]  for v < nv            (aligned vector loads)
        a_r = broadcast(Ap[p, r])       for r < rows
        acc[r][v] = llvm.fma(a_r, b_v, acc[r][v])
    C[tile] = acc (+ C[tile] when load_c)        # llvm.masked.load/store for a partial last vector

Because Bp is zero-padded to ``nr`` columns, partial column tiles still run full-width FMAs and only their C
accesses are masked; partial row tiles are separate instantiations with fewer accumulators. Micro-kernels and
packing routines take the leading dimensions at run time and are created once per module and geometry, so every
GEMM of a program shares them (``graphc.gemm.f32.8x2.uk6x16`` ...). Packing: B untransposed copies vectors,
transposed B and untransposed A go through ``vec x vec`` in-register transposes (:func:`transpose_block`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import llvmlite.ir as ir

I1 = ir.IntType(1)
I32 = ir.IntType(32)
I64 = ir.IntType(64)
PTR = ir.PointerType()
VOID = ir.VoidType()

SCALARS = {"float32": ir.FloatType(), "float64": ir.DoubleType()}
ITEMSIZE = {"float32": 4, "float64": 8}
SCRATCH_BYTES = 512 * 1024  # stack scratch of one GEMM: packed B block + one packed A micro-panel (+ slack)


@dataclass(frozen=True)
class GemmConfig:
    """Tile geometry: ``mr`` rows x ``nv`` vectors of ``vec`` lanes per micro-tile; cache blocks ``kc``, ``nc``.

    ``nc`` is a multiple of ``nr``; the packed B block (``kc x nc``) and one A micro-panel (``mr x kc``) are the
    GEMM's scratch.
    """

    dtype: str
    vec: int
    mr: int
    nv: int
    kc: int
    nc: int

    @property
    def nr(self) -> int:
        return self.vec * self.nv

    @property
    def scalar(self) -> ir.Type:
        return SCALARS[self.dtype]

    @property
    def vector(self) -> ir.VectorType:
        return ir.VectorType(self.scalar, self.vec)

    @property
    def itemsize(self) -> int:
        return ITEMSIZE[self.dtype]


def default_config(dtype: str, vector_bits: int) -> GemmConfig:
    """Geometry for a vector ISA: 8 x 2 zmm (16 accumulators of 32 registers) with AVX-512, 6 x 2 ymm
    (12 accumulators of 16 registers) with AVX2. The ``mr x kc`` A micro-panel stays in L1 while the ``kc x nc``
    B block streams through from L2; ``nc`` fills the scratch budget because each column block repacks A
    (measured on Zen 3: ``nc`` ~500 is ~5% faster than ~250 at 1024³)."""
    if dtype not in SCALARS:
        raise ValueError(f"GEMM supports float32 and float64, not {dtype!r}")
    vec = max(vector_bits // (8 * ITEMSIZE[dtype]), 1)
    mr = 8 if vector_bits >= 512 else 6
    kc = 256 if dtype == "float32" else 128
    nr = 2 * vec
    budget = SCRATCH_BYTES // ITEMSIZE[dtype] - mr * kc - vec  # elements left for the packed B block
    nc = max(nr, budget // kc // nr * nr)
    return GemmConfig(dtype=dtype, vec=vec, mr=mr, nv=2, kc=kc, nc=nc)


# ---------------------------------------------------------------------------------------------- helpers


def i64(value: int) -> ir.Constant:
    return ir.Constant(I64, value)


def as_value(value: int | ir.Value) -> ir.Value:
    return i64(value) if isinstance(value, int) else value


@contextmanager
def for_range(builder: ir.IRBuilder, start: int | ir.Value, stop: int | ir.Value, step: int = 1,
              name: str = "i") -> Iterator[ir.Value]:
    """``for (i = start; i < stop; i += step)`` with an i64 induction phi; the body is the ``with`` block."""
    pre = builder.block
    head = builder.append_basic_block(f"{name}.head")
    body = builder.append_basic_block(f"{name}.body")
    end = builder.append_basic_block(f"{name}.end")
    builder.branch(head)
    builder.position_at_end(head)
    index = builder.phi(I64, name=name)
    index.add_incoming(as_value(start), pre)
    builder.cbranch(builder.icmp_signed("<", index, as_value(stop)), body, end)
    builder.position_at_end(body)
    yield index
    index.add_incoming(builder.add(index, i64(step), name=f"{name}.next"), builder.block)
    builder.branch(head)
    builder.position_at_end(end)


def gep(builder: ir.IRBuilder, ptr: ir.Value, index: int | ir.Value, etype: ir.Type) -> ir.Value:
    return builder.gep(ptr, [as_value(index)], inbounds=True, source_etype=etype)


def intrinsic(module: ir.Module, name: str, ret: ir.Type, args: list[ir.Type]) -> ir.Function:
    """The declaration of ``name`` in ``module`` (created once)."""
    existing = module.globals.get(name)
    if existing is not None:
        return existing
    return ir.Function(module, ir.FunctionType(ret, args), name=name)


def _vsuffix(cfg: GemmConfig) -> str:
    return f"v{cfg.vec}{'f32' if cfg.dtype == 'float32' else 'f64'}"


def _mask(lanes: int, vec: int) -> ir.Constant:
    return ir.Constant(ir.VectorType(I1, vec), [1 if i < lanes else 0 for i in range(vec)])


def _splat(builder: ir.IRBuilder, cfg: GemmConfig, scalar: ir.Value) -> ir.Value:
    one = builder.insert_element(ir.Constant(cfg.vector, ir.Undefined), scalar, ir.Constant(I32, 0))
    zeros = ir.Constant(ir.VectorType(I32, cfg.vec), [0] * cfg.vec)
    return builder.shuffle_vector(one, ir.Constant(cfg.vector, ir.Undefined), zeros)


def _new_function(module: ir.Module, name: str, args: list[ir.Type], noalias: int, small: bool = False) -> ir.Function:
    """An internal helper; ``small`` asks LLVM to optimize for size (packing loops whose hot paths are explicit
    vector code, so unrolling and runtime-checked vectorization would only add compile time)."""
    fn = ir.Function(module, ir.FunctionType(VOID, args), name=name)
    fn.linkage = "internal"
    fn.attributes.add("nounwind")
    fn.attributes.add("noinline")
    if small:
        fn.attributes.add("optsize")
    for arg in fn.args[:noalias]:
        arg.add_attribute("noalias")
    return fn


# ------------------------------------------------------------------------------------------ micro-kernel


def shared_name(cfg: GemmConfig, what: str) -> str:
    """Module-level name of a helper shared by every GEMM of one geometry (``graphc.gemm.f32.8x2.uk6x16``)."""
    return f"graphc.gemm.{'f32' if cfg.dtype == 'float32' else 'f64'}.{cfg.vec}x{cfg.nv}.{what}"


def microkernel(module: ir.Module, cfg: GemmConfig, rows: int, cols: int) -> ir.Function:
    """``void uk(Ap*, Bp*, C*, i64 ldc, i64 kc, i1 load_c)``: C[0:rows, 0:cols] (+)= Ap · Bp over ``kc`` steps.

    ``Ap[p*rows + r]`` is the packed A micro-panel, ``Bp[p*nr + c]`` the packed (zero-padded) B panel; C rows are
    ``ldc`` elements apart. ``cols <= nr``; a partial last vector is loaded and stored with a lane mask. ``kc >= 1``.
    Created once per module and geometry.
    """
    name = shared_name(cfg, f"uk{rows}x{cols}")
    existing = module.globals.get(name)
    if existing is not None:
        return existing
    fn = _new_function(module, name, [PTR, PTR, PTR, I64, I64, I1], noalias=3)
    a_ptr, b_ptr, c_ptr, ldc, kc, load_c = fn.args
    scalar, vector, vec = cfg.scalar, cfg.vector, cfg.vec
    nvec = -(-cols // vec)
    fma = intrinsic(module, f"llvm.fma.{_vsuffix(cfg)}", vector, [vector, vector, vector])

    b = ir.IRBuilder(fn.append_basic_block("entry"))
    prefetch = intrinsic(module, "llvm.prefetch.p0", VOID, [PTR, I32, I32, I32])
    for r in range(rows):  # the C tile is needed after the loop: start fetching it now (for writing)
        c_row = b.mul(ldc, i64(r))
        for col in sorted({0, cols - 1}):
            b.call(prefetch, [gep(b, c_ptr, b.add(c_row, i64(col)), scalar), ir.Constant(I32, 1),
                              ir.Constant(I32, 3), ir.Constant(I32, 1)])
    entry = b.block
    loop = b.append_basic_block("k.loop")
    done = b.append_basic_block("k.done")
    b.branch(loop)
    b.position_at_end(loop)
    p = b.phi(I64, name="p")
    p.add_incoming(i64(0), entry)
    zero = ir.Constant(vector, None)
    acc = [[b.phi(vector, name=f"acc{r}_{v}") for v in range(nvec)] for r in range(rows)]
    for row in acc:
        for phi in row:
            phi.add_incoming(zero, entry)
    b_row = b.mul(p, i64(cfg.nr))
    bvecs = [b.load(gep(b, b_ptr, b.add(b_row, i64(v * vec)), scalar), typ=vector, align=vec * cfg.itemsize)
             for v in range(nvec)]
    a_col = b.mul(p, i64(rows))
    new = []
    for r in range(rows):
        a_vec = _splat(b, cfg, b.load(gep(b, a_ptr, b.add(a_col, i64(r)), scalar), typ=scalar))
        new.append([b.call(fma, [a_vec, bvecs[v], acc[r][v]]) for v in range(nvec)])
    p_next = b.add(p, i64(1))
    p.add_incoming(p_next, b.block)
    for r in range(rows):
        for v in range(nvec):
            acc[r][v].add_incoming(new[r][v], b.block)
    b.cbranch(b.icmp_signed("<", p_next, kc), loop, done)

    b.position_at_end(done)
    last_lanes = cols - (nvec - 1) * vec
    masked_load = masked_store = None
    if last_lanes < vec:
        vt = ir.VectorType(I1, vec)
        masked_load = intrinsic(module, f"llvm.masked.load.{_vsuffix(cfg)}.p0", vector, [PTR, I32, vt, vector])
        masked_store = intrinsic(module, f"llvm.masked.store.{_vsuffix(cfg)}.p0", VOID, [vector, PTR, I32, vt])
    mask = _mask(last_lanes, vec)
    salign = ir.Constant(I32, cfg.itemsize)

    def store_all(builder: ir.IRBuilder, add_c: bool) -> None:
        for r in range(rows):
            c_row = builder.mul(ldc, i64(r))
            for v in range(nvec):
                value, addr = new[r][v], gep(builder, c_ptr, builder.add(c_row, i64(v * vec)), scalar)
                partial = v == nvec - 1 and masked_load is not None
                if add_c:
                    old = (builder.call(masked_load, [addr, salign, mask, zero]) if partial
                           else builder.load(addr, typ=vector, align=cfg.itemsize))
                    value = builder.fadd(value, old)
                if partial:
                    builder.call(masked_store, [value, addr, salign, mask])
                else:
                    builder.store(value, addr, align=cfg.itemsize)
        builder.ret_void()

    with b.if_else(load_c) as (then, otherwise):
        with then:
            store_all(b, True)
        with otherwise:
            store_all(b, False)
    b.unreachable()
    return fn


# ------------------------------------------------------------------------------------------------ packing


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
    fn = _new_function(module, name, [PTR, PTR, I64, I64, I64], noalias=2, small=True)
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


def transpose_block(builder: ir.IRBuilder, rows: list[ir.Value]) -> list[ir.Value]:
    """Transpose a ``vec x vec`` block held as ``vec`` vectors (``vec`` a power of two) with 2-input shuffles.

    Stage ``h = vec/2, ..., 1`` swaps the off-diagonal ``h x h`` sub-blocks of every ``2h x 2h`` block:
    ``x_i' = x_i[lanes without bit h] ++ x_{i+h}[...]``; after ``log2(vec)`` stages ``y_j[i] = x_i[j]``."""
    vec = len(rows)
    out = list(rows)
    h = vec // 2
    while h:
        low = ir.Constant(ir.VectorType(I32, vec), [j if not j & h else vec + j - h for j in range(vec)])
        high = ir.Constant(ir.VectorType(I32, vec), [j + h if not j & h else vec + j for j in range(vec)])
        for i in range(vec):
            if not i & h:
                out[i], out[i + h] = (builder.shuffle_vector(out[i], out[i + h], low),
                                      builder.shuffle_vector(out[i], out[i + h], high))
        h //= 2
    return out


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
    fn = _new_function(module, name, [PTR, PTR, I64, I64], noalias=2, small=True)
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
