"""Lowering of batch_norm (training; inference batch norm is decomposed into elementwise math by
``passes.decompose`` and fused) and layer_norm (one kernel: see :func:`lower_layer_norm`).

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
from collections.abc import Callable

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


LN_BLOCK = 256  # elements per partial sum of a layer_norm row (summed in x's dtype, then added in float64)


@lowerer("layer_norm")
def lower_layer_norm(ctx: KernelContext) -> None:
    """layer_norm, x viewed as (rows, n) with n = the product of the normalized axes, per row (one kernel):
    μ = (1/n) Σ x, σ² = (1/n) Σ (x − μ)² (two stride-1 passes over the row, which stays in cache; each sum adds
    float64 totals of blocks of LN_BLOCK elements summed in x's dtype by a reassociated loop that vectorizes at
    x's width), r = 1/√(σ² + ε) in float64; then y = ((x − μ)·r)·γ + β in x's dtype, with r rounded to it and
    x − μ as (x − μ_hi) − μ_lo (μ split into two values of x's dtype, so a large mean costs no precision),
    γ and β read through broadcast strides over the normalized axes. For float32 that is within a few ulp of the
    reference (float64 throughout, rounded once); a float64 pass per element would cost twice the time in
    conversions. Rows run in chunks on the program's threads, each row computed as on one thread (the same bits
    for every thread count)."""
    (node,) = ctx.kernel.nodes
    x, scale = node.inputs[0], node.inputs[1]
    bias = node.inputs[2] if len(node.inputs) == 3 else None
    axis, eps = node.attrs["axis"], node.attrs["eps"]
    if node.size == 0:
        return
    norm = x.shape[axis:]
    n, rows = math.prod(norm), math.prod(x.shape[:axis])
    ty = value_type(node.dtype)
    params = [scale] if bias is None else [scale, bias]
    own = loops.contiguous_strides(norm)
    strides = [own] + [loops.broadcast_strides(_trailing(p.shape, len(norm)), norm) for p in params]
    shape, strides = loops.collapse(norm, strides)
    count = ir.Constant(F64, float(n))

    def row(c: KernelContext, b: ir.IRBuilder, offs: list[ir.Value], _i: list[ir.Value]) -> None:
        base = offs[0]

        def row_sum(term: Callable[[ir.IRBuilder, ir.Value], ir.Value], acc: ir.Type) -> ir.Value:
            """Σ_j term(x_j) over the row in float64: partial sums in type ``acc`` over blocks of LN_BLOCK elements
            (a reassociated stride-1 loop that vectorizes), added up in float64."""
            def block(b: ir.IRBuilder, start: ir.Value, size: int) -> ir.Value:
                def step(b: ir.IRBuilder, j: ir.Value, accs: list[ir.Value]) -> list[ir.Value]:
                    v = b.load(c.elem(x, b.add(start, j)))
                    return [b.fadd(accs[0], term(b, v), flags=FAST)]

                return _to_f64(b, fold(b, size, [ir.Constant(acc, 0.0)], step, "ln_part")[0])

            full, tail = divmod(n, LN_BLOCK)
            total: ir.Value = ir.Constant(F64, 0.0)
            if full:
                total = fold(b, full, [total], lambda b, k, accs: [
                    b.fadd(accs[0], block(b, b.add(base, b.mul(k, i64(LN_BLOCK))), LN_BLOCK))], "ln_blocks")[0]
            if tail:
                total = b.fadd(total, block(b, b.add(base, i64(full * LN_BLOCK)), tail))
            return total

        mu = b.fdiv(row_sum(lambda b, v: _to_f64(b, v), F64), count)  # float64: an error here shifts every x̂
        # μ as hi + lo in x's dtype: (x − hi) − lo keeps x − μ to x's precision even when |μ| ≫ σ
        mu_hi = _from_f64(b, mu, ty)
        mu_lo = None if ty == F64 else b.fptrunc(b.fsub(mu, b.fpext(mu_hi, F64)), ty)

        def centered(b: ir.IRBuilder, v: ir.Value) -> ir.Value:
            d = b.fsub(v, mu_hi)
            return d if mu_lo is None else b.fsub(d, mu_lo)

        var = b.fdiv(row_sum(lambda b, v: _square(b, centered(b, v)), ty), count)  # x's dtype: only scales r
        root = b.call(float_intrinsic(b, "llvm.sqrt", F64), [b.fadd(var, ir.Constant(F64, eps))])
        inv_t = _from_f64(b, b.fdiv(ir.Constant(F64, 1.0), root), ty)

        def put(b: ir.IRBuilder, o: list[ir.Value], _i: list[ir.Value]) -> None:
            xhat = b.fmul(centered(b, b.load(c.elem(x, o[0]))), inv_t)
            y = b.fmul(xhat, b.load(c.elem(scale, o[1])))
            if bias is not None:
                y = b.fadd(y, b.load(c.elem(bias, o[2])))
            b.store(y, c.elem(node, o[0]))

        loops.emit_nest(b, shape, strides, put, name="ln_put", bases=[base] + [i64(0)] * len(params))

    loops.parallel_nest(ctx, (rows,), [(n,)], row, name="ln_rows", grain=max(1, loops.GRAIN // n))


def _trailing(shape: tuple[int, ...], rank: int) -> tuple[int, ...]:
    """``shape`` without the leading size-1 axes beyond ``rank`` (a γ/β of shape (1, n) over one normalized axis)."""
    return shape[len(shape) - rank:] if len(shape) > rank else shape
