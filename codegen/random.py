"""Lowering of dropout.

dropout: the counter-based mask of ``ops.random`` reproduced bit for bit with 64-bit integer arithmetic (LLVM
``add``/``mul`` wrap modulo 2⁶⁴, ``lshr`` is the logical shift)::

    key = mix(seed + (step + 1)·GOLDEN);  h(i) = mix(key + (i + 1)·GOLDEN);  keep = (h >> 40) ≥ ⌈rate·2²⁴⌉
    y[i] = keep ? x[i]·scale : 0        (scale = 1/(1 - rate) rounded to x's dtype; an exact IEEE multiply)

The per-element hash has no loop-carried state, so the loop vectorizes (64-bit lanes).
"""

from __future__ import annotations

import llvmlite.ir as ir

import codegen.loops as loops
from codegen.llvm import I64, i64
from codegen.lowering import KernelContext, lowerer
from codegen.scalar import value_type
from ops.random import GOLDEN, MIX1, MIX2, scale_of, threshold


def _u64(value: int) -> ir.Constant:
    """An unsigned 64-bit constant as LLVM's (two's complement) i64."""
    value &= (1 << 64) - 1
    return ir.Constant(I64, value - (1 << 64) if value >= 1 << 63 else value)


def mix(b: ir.IRBuilder, z: ir.Value) -> ir.Value:
    """The SplitMix64 finalizer on i64 (wrapping multiplies, logical shifts)."""
    z = b.mul(b.xor(z, b.lshr(z, _u64(30))), _u64(MIX1))
    z = b.mul(b.xor(z, b.lshr(z, _u64(27))), _u64(MIX2))
    return b.xor(z, b.lshr(z, _u64(31)))


@lowerer("dropout")
def lower_dropout(ctx: KernelContext) -> None:
    """y = keep(seed, step, i) ? x·scale : 0 (identity copy when not training)."""
    (node,) = ctx.kernel.nodes
    x, step = node.inputs
    attrs = node.attrs
    b = ctx.builder
    if node.size == 0:
        return
    if not attrs["training"]:
        loops.emit_nest(b, (node.size,), [(1,)],
                        lambda b, offs, _i: b.store(b.load(ctx.elem(x, offs[0])), ctx.elem(node, offs[0])), "cp")
        return
    ty = value_type(node.dtype)
    scale = ir.Constant(ty, float(scale_of(attrs["rate"], node.dtype)))
    zero = ir.Constant(ty, 0.0)
    limit = _u64(threshold(attrs["rate"]))
    counter = b.load(ctx.elem(step, i64(0)))
    key = mix(b, b.add(_u64(attrs["seed"]), b.mul(b.add(counter, _u64(1)), _u64(GOLDEN))))

    def body(b: ir.IRBuilder, offs: list[ir.Value], _i: list[ir.Value]) -> None:
        h = mix(b, b.add(key, b.mul(b.add(offs[0], _u64(1)), _u64(GOLDEN))))
        keep = b.icmp_unsigned(">=", b.lshr(h, _u64(40)), limit)
        v = b.fmul(b.load(ctx.elem(x, offs[0])), scale)
        b.store(b.select(keep, v, zero), ctx.elem(node, offs[0]))

    loops.emit_nest(b, (node.size,), [(1,)], body, "drop")
