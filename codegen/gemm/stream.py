"""The GEMM micro-kernels' prefetch streams: what each micro-kernel call fetches into L2, a cache line per k step,
while it computes — the source of the driver's next B packing, the next prepacked B block, or the next row tile's A
rows (``codegen.gemm.driver``)."""

from __future__ import annotations

from collections.abc import Callable

import llvmlite.ir as ir

from codegen.gemm.config import GemmConfig
from codegen.gemm.layout import Layout
from codegen.llvm import i64

Stream = Callable[[ir.Value], list[ir.Value]]  # micro-kernel call index -> its prefetch-stream arguments


def stream(b: ir.IRBuilder, cfg: GemmConfig, ptr: ir.Value, more: ir.Value, base: ir.Value, ld: int,
            total: ir.Value, length: ir.Value, calls: ir.Value, steps: ir.Value | None = None) -> Stream:
    """The micro-kernels' prefetch stream (``codegen.gemm.microkernel``: a cache line per k step) of ``total`` rows
    of ``length`` elements from element ``base`` of ``ptr``, ``ld`` apart, shared out in whole rows among
    ``calls`` micro-kernel calls (none when ``more`` is false). With ``steps`` (each call's k steps, so its lines)
    a call takes no more whole rows than it has steps for, while one row each still covers ``total``: a row given
    to a call past its last step is never fetched, and one left to a later call is (SqueezeNet's 96 → 16 1×1 conv
    at 54×54, B read in place from memory: 31 lines a row, 96 steps a call — four rows a call left a quarter of its
    lines unfetched, three leave 3 %). Prefetches are hints: they never fault, and the addresses are formed
    without ``inbounds``."""
    line = 64 // cfg.itemsize
    lines = b.add(b.sdiv(b.add(length, i64(line - 1)), i64(line)), i64(1))  # an unaligned row: one line more
    share = b.sdiv(b.add(total, b.sub(calls, i64(1))), calls)
    if steps is not None:  # (past the last block, when ``more`` is false, ``length`` may be negative)
        share = min_value(b, share, max_value(b, b.sdiv(steps, max_value(b, lines, i64(1))), i64(1)))
    total = b.select(more, total, i64(0))
    base = b.select(more, base, i64(0))

    def args(call: ir.Value) -> list[ir.Value]:
        first = min_value(b, b.mul(call, share), total)
        count = b.mul(min_value(b, share, b.sub(total, first)), lines)
        start = b.gep(ptr, [b.add(base, b.mul(first, i64(ld)))], source_etype=cfg.scalar)
        return [start, i64(ld), lines, count]

    return args


def following_block(b: ir.IRBuilder, jc: ir.Value, pc: ir.Value, kc: int, nc: int, k: int, n: int
                     ) -> tuple[ir.Value, ir.Value, ir.Value, ir.Value, ir.Value]:
    """(pc, jc, whether it exists, depth, width) of the B block the driver packs after (jc, pc): the next depth
    block, or the next column block's first."""
    next_pc = b.add(pc, i64(kc))
    wrap = b.icmp_signed(">=", next_pc, i64(k))
    next_pc = b.select(wrap, i64(0), next_pc)
    next_jc = b.select(wrap, b.add(jc, i64(nc)), jc)
    more = b.icmp_signed("<", next_jc, i64(n))
    depth, width = min_value(b, i64(kc), b.sub(i64(k), next_pc)), min_value(b, i64(nc), b.sub(i64(n), next_jc))
    return next_pc, next_jc, more, depth, width


def next_block(b: ir.IRBuilder, cfg: GemmConfig, layout: Layout, b_t: ir.Value, jc: ir.Value, pc: ir.Value,
                kc: int, nc: int, k: int, n: int, calls: ir.Value, steps: ir.Value) -> Stream:
    """The stream of the B block after (jc, pc) — op(B)[pc + kc.., jc..], or the next column block's first —
    among this block's ``calls`` micro-kernel calls: the next block's packing then reads L2, not memory (ResNet's
    7×7 layers, whose 9 MiB of weights are that B: 2.77 → 2.48 ms)."""
    next_pc, next_jc, more, next_k, next_n = following_block(b, jc, pc, kc, nc, k, n)
    if layout.trans_b:  # next_n rows of B (op(B)'s columns), next_k elements each
        return stream(b, cfg, b_t, more, b.add(b.mul(next_jc, i64(layout.ld_b)), next_pc), layout.ld_b, next_n,
                       next_k, calls, steps)
    return stream(b, cfg, b_t, more, b.add(b.mul(next_pc, i64(layout.ld_b)), next_jc), layout.ld_b, next_k, next_n,
                   calls, steps)


def next_prepacked_block(b: ir.IRBuilder, cfg: GemmConfig, custom_b: Callable[..., ir.Value | None],
                         b_t: ir.Value, bp: ir.Value, jc: ir.Value, col0: ir.Value | None, pc: ir.Value, kc: int,
                         nc: int, k: int, n: int, calls: ir.Value) -> Stream:
    """The stream of the prepacked B block after (jc, pc) — one contiguous run of ``next_k`` x ``next_n`` (rounded
    up to ``nr``) elements where ``custom_b`` says it lies — among this block's ``calls`` micro-kernel calls."""
    next_pc, next_jc, more, next_k, next_n = following_block(b, jc, pc, kc, nc, k, n)
    padded = b.mul(b.sdiv(b.add(next_n, i64(cfg.nr - 1)), i64(cfg.nr)), i64(cfg.nr))
    next_jc = b.select(more, next_jc, i64(0))  # none after the last block: an address inside B all the same
    start = custom_b(b, b_t, bp, next_pc, next_jc if col0 is None else b.add(col0, next_jc), next_k, next_n)
    line = 64 // cfg.itemsize
    total = b.select(more, b.sdiv(b.add(b.mul(next_k, padded), i64(line - 1)), i64(line)), i64(0))
    share = b.sdiv(b.add(total, b.sub(calls, i64(1))), calls)

    def args(call: ir.Value) -> list[ir.Value]:  # rows of one line each, one line apart: a contiguous run
        first = min_value(b, b.mul(call, share), total)
        count = min_value(b, share, b.sub(total, first))
        return [b.gep(start, [b.mul(first, i64(line))], source_etype=cfg.scalar), i64(line), i64(1), count]

    return args


def next_tile(b: ir.IRBuilder, cfg: GemmConfig, layout: Layout, a_t: ir.Value, row: ir.Value, rows: int,
               jc: ir.Value, pc: ir.Value, kc: int, nc: int, k: int, m: int, n: int, calls: ir.Value) -> Stream:
    """The stream of the next row tile's A rows (this block's, or the first tile of the next block) among this
    tile's ``calls`` micro-kernel calls — for a GEMM whose B the caller packs (a convolution's weights are A)."""
    after = b.add(row, i64(rows))
    last = b.icmp_signed(">=", after, i64(m))
    later = b.add(pc, i64(kc))
    wrap = b.icmp_signed(">=", later, i64(k))
    next_pc = b.select(last, b.select(wrap, i64(0), later), pc)
    next_row = b.select(last, i64(0), after)
    more = b.or_(b.not_(last), b.or_(b.not_(wrap), b.icmp_signed("<", b.add(jc, i64(nc)), i64(n))))
    next_k = min_value(b, i64(kc), b.sub(i64(k), next_pc))
    next_rows = min_value(b, i64(cfg.mr), b.sub(i64(m), next_row))
    if layout.trans_a:  # next_k rows of A (op(A)'s columns), next_rows elements each
        return stream(b, cfg, a_t, more, b.add(b.mul(next_pc, i64(layout.ld_a)), next_row), layout.ld_a, next_k,
                       next_rows, calls)
    return stream(b, cfg, a_t, more, b.add(b.mul(next_row, i64(layout.ld_a)), next_pc), layout.ld_a, next_rows,
                   next_k, calls)


def max_value(builder: ir.IRBuilder, x: ir.Value, y: ir.Value) -> ir.Value:
    return builder.select(builder.icmp_signed(">", x, y), x, y)


def min_value(builder: ir.IRBuilder, x: ir.Value, y: ir.Value) -> ir.Value:
    return builder.select(builder.icmp_signed("<", x, y), x, y)
