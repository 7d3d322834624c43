"""Lowering of batch_norm (training; inference batch norm is decomposed into elementwise math by
``passes.decompose`` and fused).

batch_norm, x viewed as (N, C, S) (S = product of the axes after the channel axis), per channel c:
  training:  μ = (1/m) Σ x, σ² = (1/m) Σ (x - μ)² over the m = N·S values (two passes, float64 accumulation);
  inference: μ, σ² = the running statistics;
  then y = (x - μ)·(γ/√(σ² + ε)) + β  (the per-channel factor in float64, rounded once to x's dtype);
  a fused elementwise epilogue (``codegen.epilogue``, e.g. relu) is applied to y before the store.
Its gradients are graph ops (see ops.norm), so there is no backward lowering. On several threads the channels
run in chunks, each channel computed as on one thread (the same bits for every thread count).
"""

from __future__ import annotations

import math

import llvmlite.ir as ir

import codegen.loops as loops
from codegen.epilogue import Epilogue
from codegen.llvm import F64, float_intrinsic, fold, for_range, i64
from codegen.lowering import KernelContext, lowerer
from codegen.scalar import FAST, value_type


def _to_f64(b: ir.IRBuilder, v: ir.Value) -> ir.Value:
    return v if v.type == F64 else b.fpext(v, F64)


def _from_f64(b: ir.IRBuilder, v: ir.Value, ty: ir.Type) -> ir.Value:
    return v if ty == F64 else b.fptrunc(v, ty)


def _square(b: ir.IRBuilder, d: ir.Value) -> ir.Value:
    return b.fmul(d, d, flags=FAST)


@lowerer("batch_norm")
def lower_batch_norm(ctx: KernelContext) -> None:
    """y = (x - μ)·γ/√(σ² + ε) + β per channel (see the module docstring)."""
    node = ctx.kernel.anchor
    x, gamma, beta, mean, var = node.inputs
    n, c = x.shape[0], x.shape[1]
    s = math.prod(x.shape[2:])
    ty = value_type(node.dtype)
    training, eps = node.attrs["training"], node.attrs["eps"]
    if node.size == 0:
        return
    count = ir.Constant(F64, float(n * s))

    def channel(kc: KernelContext, ch: ir.Value) -> None:
        b = kc.builder
        epi = Epilogue.of(kc, node)

        def channel_sum(term) -> ir.Value:
            """Σ over (n, s) of term(x) in float64 for channel ch."""
            def over_n(b: ir.IRBuilder, k: ir.Value, accs: list[ir.Value]) -> list[ir.Value]:
                row = b.mul(b.add(b.mul(k, i64(c)), ch), i64(s))

                def over_s(b: ir.IRBuilder, e: ir.Value, inner: list[ir.Value]) -> list[ir.Value]:
                    v = _to_f64(b, b.load(kc.elem(x, b.add(row, e))))
                    return [b.fadd(inner[0], term(b, v), flags=FAST)]

                return fold(b, s, accs, over_s, "bs")

            return fold(b, n, [ir.Constant(F64, 0.0)], over_n, "bn")[0]

        if training:
            mu = b.fdiv(channel_sum(lambda b, v: v), count)
            var_c = b.fdiv(channel_sum(lambda b, v: _square(b, b.fsub(v, mu))), count)
        else:
            mu = _to_f64(b, b.load(kc.elem(mean, ch)))
            var_c = _to_f64(b, b.load(kc.elem(var, ch)))
        root = b.call(float_intrinsic(b, "llvm.sqrt", F64), [b.fadd(var_c, ir.Constant(F64, eps))])
        inv = b.fdiv(ir.Constant(F64, 1.0), root)
        scale = b.fmul(inv, _to_f64(b, b.load(kc.elem(gamma, ch))))
        scale_t, mu_t = _from_f64(b, scale, ty), _from_f64(b, mu, ty)
        shift = b.load(kc.elem(beta, ch))
        per_channel = epi.load(b, ch) if epi else {}
        with for_range(b, 0, n, name="bn_n") as k:
            row = b.mul(b.add(b.mul(k, i64(c)), ch), i64(s))
            with for_range(b, 0, s, name="bn_s") as e:
                off = b.add(row, e)
                v = b.fsub(b.load(kc.elem(x, off)), mu_t)
                y = b.fadd(b.fmul(v, scale_t, flags=("contract",)), shift, flags=("contract",))
                if epi:
                    epi.store(b, y, off, per_channel)
                else:
                    b.store(y, kc.elem(node, off))

    per = max(1, -(-loops.GRAIN // max(n * s, 1)))
    chunks = -(-c // per)

    def channels(kc: KernelContext, index: ir.Value) -> None:
        b = kc.builder
        first = b.mul(index, i64(per))
        last = b.select(b.icmp_signed("<", b.add(first, i64(per)), i64(c)), b.add(first, i64(per)), i64(c))
        with for_range(b, first, last, name="ch") as ch:
            channel(kc, ch)

    ctx.parallel("channels", chunks, channels)
