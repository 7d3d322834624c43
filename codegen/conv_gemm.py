"""What the convolution lowerings (``codegen.conv``, ``codegen.conv_implicit``, ``codegen.conv_backward``) share:
scratch, the per-image loop, their GEMM calls (batched over groups, with the store epilogue), the weights a frozen
program packed at compile time, the bias / epilogue pass over y's channels, and the register-tile use model that
decides a product's orientation."""

from __future__ import annotations

from collections.abc import Callable

import llvmlite.ir as ir

import codegen.prepack as prepack
from codegen.conv_geometry import Geometry
from codegen.epilogue import Epilogue, StoreForm
from codegen.gemm.blocking import tile_origins, workspace_bytes
from codegen.gemm.config import default_config, host_vector_bits
from codegen.gemm.driver import PackA, PackB, emit_gemm
from codegen.gemm.microkernel import vector_lanes
from codegen.llvm import F64, PTR, for_range, i64
from codegen.lowering import KernelContext
from codegen.scalar import FAST, value_type
from graphc.ir import Node

FLIP_GAIN = 1.08  # transposed products only when they fill the register tiles this much better (tile_use)


def scratch(ctx: KernelContext, dtype: str, count: int) -> ir.Value:
    """``count`` elements of ``dtype`` from the kernel's scratch memory."""
    ty = value_type(dtype)
    return ctx.scratch(count * (8 if ty == F64 else 4), ty)


def copy_rows(b: ir.IRBuilder, channels: int, width: int, src: ir.Value, src_ld: int, dst: ir.Value, dst_ld: int,
              bias: ir.Value | None = None) -> None:
    """dst[ch, e] = src[ch·src_ld + e] (+ bias[ch]) for ch < channels, e < width."""
    with for_range(b, 0, channels, name="ch") as ch:
        s = b.gep(src, [b.mul(ch, i64(src_ld))], inbounds=True)
        d = b.gep(dst, [b.mul(ch, i64(dst_ld))], inbounds=True)
        add = None if bias is None else b.load(b.gep(bias, [ch], inbounds=True))
        with for_range(b, 0, width, name="e") as e:
            v = b.load(b.gep(s, [e], inbounds=True))
            b.store(v if add is None else b.fadd(v, add, flags=FAST), b.gep(d, [e], inbounds=True))


def row_blocks(b: ir.IRBuilder, g: Geometry, body: Callable[[ir.Value, int], None]) -> None:
    """body(row0, rows) over the row blocks of one image: full blocks in a loop, then the remainder."""
    rows = g.block_rows()
    full, rem = divmod(g.ho, rows)
    if full == 1:
        body(i64(0), rows)
    elif full:
        with for_range(b, 0, full, name="blk") as blk:
            body(b.mul(blk, i64(rows)), rows)
    if rem:
        body(i64(full * rows), rem)


def conv_gemm(ctx: KernelContext, tag: str, g: Geometry, m: int, n: int, k: int, dtype: str, strides: tuple[int, ...],
          lds: tuple[int, int, int] | None = None, pack_a: PackA | None = None, pack_b: PackB | None = None,
          form: StoreForm | None = None, **flags: bool) -> Callable[..., None]:
    """A GEMM batched over the groups, cached per size in the module; returns a caller on typed pointers (A, B, C;
    ``store_at``: C's first element as a flat offset into y, where the store epilogue reads its operands).
    ``lds``: leading dimensions of operands that are blocks of larger matrices; ``pack_a`` / ``pack_b``: the
    caller's packers (see ``emit_gemm``); ``form``: the kernel's epilogue applied by the micro-kernels at their
    store (``Epilogue.store_form``)."""
    epilogue = form.chain if form else None
    name = f"{ctx.function.name}.{tag}.{m}x{n}x{k}" + ("" if lds is None else ".ld" + "_".join(map(str, lds))) \
        + (f".store_{epilogue.tag()}" if epilogue else "")
    fn = ctx.module.globals.get(name) or emit_gemm(ctx.module, name, m, n, k, dtype=dtype, batch=g.groups,
                                                    batch_strides=strides, threads=ctx.threads, lds=lds,
                                                    pack_a=pack_a, pack_b=pack_b, epilogue=epilogue, **flags)
    b = ctx.builder
    workspace = b.bitcast(ctx.scratch(workspace_bytes(m, n, k, dtype, threads=ctx.threads, batch=g.groups,
                                                      global_tiles=getattr(pack_a, "prepacked", False),
                                                      trans_c=flags.get("trans_c", False))), PTR)

    def call(a: ir.Value, bb: ir.Value, c: ir.Value, store_at: ir.Value | None = None) -> None:
        args = [b.bitcast(a, PTR), b.bitcast(bb, PTR), b.bitcast(c, PTR), workspace]
        if form:
            form.call(b, fn, args, store_at)
        else:
            b.call(fn, args)

    return call


def prepacked(ctx: KernelContext, w: Node, spec: prepack.PackSpec) -> bool:
    """Whether the kernel reads the weights ``w`` packed at compile time as ``spec`` (``codegen.prepack``: a
    constant of a frozen program that no other operand of the kernel reads; its pointer then addresses the packed
    operand)."""
    uses = sum(1 for n in ctx.kernel.nodes for v in n.inputs if v is w)
    return uses == 1 and ctx.prepacked(w, spec) is not None


def images(ctx: KernelContext, g: Geometry, image: Callable[[KernelContext, ir.Value], None]) -> None:
    """image(c, n) for every image: in parallel when there are at least as many images as threads (each with its
    own scratch and one-thread GEMMs), else one after the other (the GEMMs then use the threads)."""
    if ctx.threads > 1 and g.n >= ctx.threads:
        ctx.parallel("images", g.n, image)
        return
    with for_range(ctx.builder, 0, g.n, name="n") as n:
        image(ctx, n)


def epilogue_rows(b: ir.IRBuilder, epi: Epilogue, g: Geometry, src: ir.Value, src_ld: int, base: ir.Value,
                   width: int, bias: ir.Value | None, channels: int | None = None,
                   first: ir.Value | None = None) -> None:
    """For ch < O, e < width: v = src[ch·src_ld + e] (+ bias[ch]); the epilogue stores chain(v) into every kernel
    output at base + ch·P + e (the per-channel inputs are loaded once per channel). ``channels`` (default O) rows
    from channel ``first`` (default 0): src, base and bias then start at that channel's row."""
    count = g.o if channels is None else channels
    with for_range(b, 0, count, name="ch") as ch:
        s = b.gep(src, [b.mul(ch, i64(src_ld))], inbounds=True)
        row = b.add(base, b.mul(ch, i64(g.p)))
        add = None if bias is None else b.load(b.gep(bias, [ch], inbounds=True))
        per_channel = epi.load(b, ch if first is None else b.add(first, ch))
        with for_range(b, 0, width, name="e") as e:
            v = b.load(b.gep(s, [e], inbounds=True))
            epi.store(b, v if add is None else b.fadd(v, add, flags=FAST), b.add(row, e), per_channel)


def tile_use(m: int, n: int, dtype: str) -> float:
    """Fraction of the FMA work of an m × n GEMM output's micro-kernel tiles that is useful. Columns: an edge tile
    runs whole vectors, a narrow last one (``codegen.gemm.microkernel.vector_lanes``) counting its own lanes.
    Rows: edge tiles are instantiations of their own height (``codegen.gemm.blocking.row_tiles`` keeps them at
    ``mr / 2`` rows or more where it can), so only a tile under ``mr / 2`` rows, too few accumulators to hide
    the FMA latency, counts as wasting work — 49 positions as rows fill their tiles, as columns 49 of 56 lanes."""
    cfg = default_config(dtype, host_vector_bits())
    full, rest = divmod(n, cfg.nr)
    lanes = full * cfg.nr + (sum(vector_lanes(cfg, rest)) if rest else 0)
    rows = sum(max(height, cfg.mr // 2) for _, height in tile_origins(m, cfg.mr))
    return m / rows * n / lanes
