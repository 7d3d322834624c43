"""Lowering of batch_norm and dropout.

batch_norm, x viewed as (N, C, S) (S = product of the axes after the channel axis), per channel c:
  training:  μ = (1/m) Σ x, σ² = (1/m) Σ (x - μ)² over the m = N·S values (two passes, float64 accumulation);
  inference: μ, σ² = the running statistics;
  then y = (x - μ)·(γ/√(σ² + ε)) + β  (the per-channel factor in float64, rounded once to x's dtype);
  a fused elementwise epilogue (``codegen.epilogue``, e.g. relu) is applied to y before the store.
Its gradients are graph ops (see ops.norm), so there is no backward lowering.

dropout: the counter-based mask of ``ops.random`` reproduced bit for bit with 64-bit integer arithmetic (LLVM
``add``/``mul`` wrap modulo 2⁶⁴, ``lshr`` is the logical shift)::

    key = mix(seed + (step + 1)·GOLDEN);  h(i) = mix(key + (i + 1)·GOLDEN);  keep = (h >> 40) ≥ ⌈rate·2²⁴⌉
    y[i] = keep ? x[i]·scale : 0        (scale = 1/(1 - rate) rounded to x's dtype; an exact IEEE multiply)

The per-element hash has no loop-carried state, so the loop vectorizes (64-bit lanes).
"""

from __future__ import annotations

import llvmlite.ir as ir
import numpy as np

from codegen import loops, mathlib
from codegen.epilogue import Epilogue
from codegen.gemm_kernel import for_range, i64
from codegen.lowering import KernelContext, lowerer
from codegen.pool import fold
from codegen.scalar import F64, FAST, I64, value_type
from ops.random import GOLDEN, MIX1, MIX2, scale_of, threshold


def _to_f64(b: ir.IRBuilder, v: ir.Value) -> ir.Value:
    return v if v.type == F64 else b.fpext(v, F64)


def _from_f64(b: ir.IRBuilder, v: ir.Value, ty: ir.Type) -> ir.Value:
    return v if ty == F64 else b.fptrunc(v, ty)


def _square(b: ir.IRBuilder, d: ir.Value) -> ir.Value:
    return b.fmul(d, d, flags=FAST)


@lowerer("batch_norm")
def lower_batch_norm(ctx: KernelContext) -> None:
    """y = (x - μ)·γ/√(σ² + ε) + β per channel (see the module docstring)."""
    node = next(n for n in ctx.kernel.nodes if n.op == "batch_norm")
    epi = Epilogue.of(ctx, node)
    x, gamma, beta, mean, var = node.inputs
    n, c = x.shape[0], x.shape[1]
    s = int(np.prod(x.shape[2:], dtype=np.int64))
    ty = value_type(node.dtype)
    training, eps = node.attrs["training"], node.attrs["eps"]
    b = ctx.builder
    if node.size == 0:
        return

    def channel_sum(ch: ir.Value, term) -> ir.Value:
        """Σ over (n, s) of term(x) in float64 for channel ch."""
        def over_n(b: ir.IRBuilder, k: ir.Value, accs: list[ir.Value]) -> list[ir.Value]:
            row = b.mul(b.add(b.mul(k, i64(c)), ch), i64(s))

            def over_s(b: ir.IRBuilder, e: ir.Value, inner: list[ir.Value]) -> list[ir.Value]:
                v = _to_f64(b, b.load(ctx.elem(x, b.add(row, e))))
                return [b.fadd(inner[0], term(b, v), flags=FAST)]

            return fold(b, s, accs, over_s, "bs")

        return fold(b, n, [ir.Constant(F64, 0.0)], over_n, "bn")[0]

    count = ir.Constant(F64, float(n * s))
    with for_range(b, 0, c, name="ch") as ch:
        if training:
            mu = b.fdiv(channel_sum(ch, lambda b, v: v), count)
            var_c = b.fdiv(channel_sum(ch, lambda b, v: _square(b, b.fsub(v, mu))), count)
        else:
            mu = _to_f64(b, b.load(ctx.elem(mean, ch)))
            var_c = _to_f64(b, b.load(ctx.elem(var, ch)))
        root = b.call(mathlib.intrinsic(b, "llvm.sqrt", F64), [b.fadd(var_c, ir.Constant(F64, eps))])
        inv = b.fdiv(ir.Constant(F64, 1.0), root)
        scale = b.fmul(inv, _to_f64(b, b.load(ctx.elem(gamma, ch))))
        scale_t, mu_t = _from_f64(b, scale, ty), _from_f64(b, mu, ty)
        shift = b.load(ctx.elem(beta, ch))
        per_channel = epi.load(b, ch) if epi else {}
        with for_range(b, 0, n, name="bn_n") as k:
            row = b.mul(b.add(b.mul(k, i64(c)), ch), i64(s))
            with for_range(b, 0, s, name="bn_s") as e:
                off = b.add(row, e)
                v = b.fsub(b.load(ctx.elem(x, off)), mu_t)
                y = b.fadd(b.fmul(v, scale_t, flags=("contract",)), shift, flags=("contract",))
                if epi:
                    epi.store(b, y, off, per_channel)
                else:
                    b.store(y, ctx.elem(node, off))


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
