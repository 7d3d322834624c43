"""Lowering of batch_norm (training; inference batch norm is decomposed into elementwise math by
``passes.decompose`` and fused).

batch_norm, x viewed as (N, C, S) (S = product of the axes after the channel axis), per channel c:
  training:  μ = (1/m) Σ x, σ² = (1/m) Σ (x - μ)² over the m = N·S values (two passes, float64 accumulation);
  inference: μ, σ² = the running statistics;
  then y = (x - μ)·(γ/√(σ² + ε)) + β  (the per-channel factor in float64, rounded once to x's dtype);
  a fused elementwise epilogue (``codegen.epilogue``, e.g. relu) is applied to y before the store.
Its gradients are graph ops (see ops.norm), so there is no backward lowering.
"""

from __future__ import annotations

import math

import llvmlite.ir as ir

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
    epi = Epilogue.of(ctx, node)
    x, gamma, beta, mean, var = node.inputs
    n, c = x.shape[0], x.shape[1]
    s = math.prod(x.shape[2:])
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
        root = b.call(float_intrinsic(b, "llvm.sqrt", F64), [b.fadd(var_c, ir.Constant(F64, eps))])
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
