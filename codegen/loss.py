"""Lowering of the losses and one_hot (structured kernels: a reduction over examples or elements).

- softmax_cross_entropy, per row r of logits z (N, C): with m = max_c z_c and log s = log Σ_c exp(z_c - m),
  integer labels: ℓ_r = (m - z[label_r]) + log s. (Never m + log s first: near |m| ~ 100 that sum rounds to
  float32's spacing there, far more than a confident row's loss.) A label outside [0, C) is never used as an
  index: the row's loss is NaN and the status word gets this node's error code (the runtime raises).
  Probability targets t: ℓ_r = log s·Σ_c t_c - Σ_c t_c (z_c - m). Then mean / sum / none over rows.
- mse: ℓ = Σ (p - t)² (/n for mean) or per element for ``none``.
- per element (p or z the prediction, t the target):
  binary_cross_entropy: ℓ = -(t·max(log p, -100) + (1 - t)·max(log(1 - p), -100)) (NaN-propagating max);
  sigmoid_binary_cross_entropy: ℓ = max(z, 0) - z·t + log1p(e), e = exp(-|z|), with
  log1p(e) = log(u)·e/(u - 1) for u = 1 + e ≠ 1 and e when u rounds to 1 (Goldberg's trick: exact to an ulp);
  mae: ℓ = |p - t|. ``none`` stores ℓ per element; ``sum``/``mean`` accumulate in float64 (then / n for the
  mean; 0/0 = nan) and round once to the loss dtype.
- one_hot: y[l, d] = (labels[l] == d) — a comparison, so any label value is safe.
"""

from __future__ import annotations

from collections.abc import Callable

import llvmlite.ir as ir

import codegen.loops as loops
from codegen.activation import row_loop, softmax_rows
from codegen.llvm import F64, fold, i64
from codegen.lowering import KernelContext, lowerer
from codegen.scalar import FAST, LLVMScalarBuilder, load, store, value_type


@lowerer("softmax_cross_entropy")
def lower_softmax_cross_entropy(ctx: KernelContext) -> None:
    """Per example (n, i) of logits viewed as (N, C, inner): the loss ℓ (module docstring), then reduced."""
    (node,) = ctx.kernel.nodes
    z, labels = node.inputs
    rows, classes = z.shape[0], z.shape[1]
    inner = z.size // max(rows * classes, 1) if rows * classes else 0
    ty = value_type(z.dtype)
    reduction, ignore = node.attrs["reduction"], node.attrs.get("ignore_index")
    b = ctx.builder
    sb = LLVMScalarBuilder(b)
    code = ctx.error_code(node)
    total, count = b.alloca(ty, name="total"), b.alloca(ty, name="count")
    b.store(ir.Constant(ty, 0.0), total)
    b.store(ir.Constant(ty, 0.0), count)

    def example(b: ir.IRBuilder, offs: list[ir.Value], _idx: list[ir.Value]) -> None:
        base, at = offs
        m, s = softmax_rows(ctx, z, classes, inner, base)
        log_s = sb.log(s)
        weight = ir.Constant(ty, 1.0)
        if labels.dtype == "int64":
            label = b.load(ctx.elem(labels, at))
            inside = b.and_(b.icmp_signed(">=", label, i64(0)),
                            b.icmp_signed("<", label, i64(classes)))
            ignored = b.icmp_signed("==", label, i64(ignore)) if ignore is not None else ir.Constant(
                ir.IntType(1), 0)
            safe = b.select(inside, label, i64(0))
            picked = load(b, ctx.elem(z, b.add(base, b.mul(safe, i64(inner)))), z.dtype)
            loss = b.select(inside, b.fadd(b.fsub(m, picked), log_s), ir.Constant(ty, float("nan")))
            loss = b.select(ignored, ir.Constant(ty, 0.0), loss)
            weight = b.select(ignored, ir.Constant(ty, 0.0), weight)
            with b.if_then(b.and_(b.not_(inside), b.not_(ignored)), likely=False):
                b.store(i64(code), ctx.status)
        else:
            zero = ir.Constant(ty, 0.0)
            mass = row_loop(b, classes, inner, base, zero,
                            lambda b, a, o, _j: b.fadd(a, load(b, ctx.elem(labels, o), labels.dtype), flags=FAST), "t")
            dot = row_loop(b, classes, inner, base, zero,
                           lambda b, a, o, _j: b.fadd(a, b.fmul(load(b, ctx.elem(labels, o), labels.dtype),
                                                                b.fsub(load(b, ctx.elem(z, o), z.dtype), m),
                                                                flags=FAST), flags=FAST), "tz")
            loss = b.fsub(b.fmul(log_s, mass, flags=FAST), dot)
        if reduction == "none":
            b.store(loss, ctx.elem(node, at))
        else:
            b.store(b.fadd(b.load(total), loss, flags=FAST), total)
            b.store(b.fadd(b.load(count), weight, flags=FAST), count)

    if classes:
        loops.emit_nest(b, (rows, inner), [(classes * inner, 1), (inner, 1)], example, name="ex")
    if reduction == "none":
        return
    result = b.load(total)
    if reduction == "mean":
        denom = b.load(count) if ignore is not None else ir.Constant(ty, float(rows * inner))
        result = b.fdiv(result, denom)
    b.store(result, ctx.elem(node, i64(0)))


@lowerer("mse")
def lower_mse(ctx: KernelContext) -> None:
    (node,) = ctx.kernel.nodes
    p, t = node.inputs
    ty = value_type(p.dtype)

    def sq(b: ir.IRBuilder, off: ir.Value) -> ir.Value:
        d = b.fsub(load(b, ctx.elem(p, off), p.dtype), load(b, ctx.elem(t, off), t.dtype), flags=FAST)
        return b.fmul(d, d, flags=FAST)

    if node.attrs["reduction"] == "none":
        loops.emit_nest(ctx.builder, (p.size,), [(1,)],
                        lambda b, offs, _i: b.store(sq(b, offs[0]), ctx.elem(node, offs[0])), name="sq")
        return
    total = ir.Constant(ty, 0.0)
    if p.size:
        total = row_loop(ctx.builder, p.size, 1, i64(0), total,
                         lambda b, a, off, _j: b.fadd(a, sq(b, off), flags=FAST), "sq")
    if node.attrs["reduction"] == "mean":
        total = ctx.builder.fdiv(total, ir.Constant(ty, float(p.size)))
    ctx.builder.store(total, ctx.elem(node, i64(0)))


@lowerer("one_hot")
def lower_one_hot(ctx: KernelContext) -> None:
    (node,) = ctx.kernel.nodes
    labels = node.inputs[0]
    depth = node.attrs["depth"]
    sb = LLVMScalarBuilder(ctx.builder)

    def body(b: ir.IRBuilder, offs: list[ir.Value], idx: list[ir.Value]) -> None:
        hit = b.icmp_signed("==", b.load(ctx.elem(labels, offs[0])), idx[1])
        store(b, sb.cast(hit, node.dtype), ctx.elem(node, offs[1]), node.dtype)

    loops.emit_nest(ctx.builder, (labels.size, depth), [(1, 0), (depth, 1)], body, name="oh")


Term = Callable[[LLVMScalarBuilder, ir.Value, ir.Value], ir.Value]


def _bce(sb: LLVMScalarBuilder, p: ir.Value, t: ir.Value) -> ir.Value:
    one, floor = sb.const(1.0, like=p), sb.const(-100.0, like=p)
    log_p = sb.max(sb.log(p), floor)
    log_q = sb.max(sb.log(sb.sub(one, p)), floor)
    return sb.neg(sb.add(sb.mul(t, log_p), sb.mul(sb.sub(one, t), log_q)))


def _sigmoid_bce(sb: LLVMScalarBuilder, z: ir.Value, t: ir.Value) -> ir.Value:
    e = sb.exp(sb.neg(sb.abs(z)))
    return sb.add(sb.sub(sb.max(z, sb.const(0.0, like=z)), sb.mul(z, t)), sb.log1p(e))


def _mae(sb: LLVMScalarBuilder, p: ir.Value, t: ir.Value) -> ir.Value:
    return sb.abs(sb.sub(p, t))


TERMS: dict[str, Term] = {"binary_cross_entropy": _bce, "sigmoid_binary_cross_entropy": _sigmoid_bce, "mae": _mae}


@lowerer(*TERMS)
def lower_elementwise_loss(ctx: KernelContext) -> None:
    """ℓ per element, then the reduction (see the module docstring)."""
    (node,) = ctx.kernel.nodes
    p, t = node.inputs
    term = TERMS[node.op]
    ty = value_type(node.dtype)
    b = ctx.builder
    sb = LLVMScalarBuilder(b)

    def value(b: ir.IRBuilder, off: ir.Value) -> ir.Value:
        return term(sb, b.load(ctx.elem(p, off)), b.load(ctx.elem(t, off)))

    if node.attrs["reduction"] == "none":
        loops.emit_nest(b, (p.size,), [(1,)], lambda b, offs, _i: b.store(value(b, offs[0]), ctx.elem(node, offs[0])),
                        name="loss")
        return
    total = ir.Constant(F64, 0.0)
    if p.size:
        def step(b: ir.IRBuilder, i: ir.Value, accs: list[ir.Value]) -> list[ir.Value]:
            v = value(b, i)
            return [b.fadd(accs[0], v if ty == F64 else b.fpext(v, F64), flags=FAST)]

        (total,) = fold(b, p.size, [total], step, "loss")
    if node.attrs["reduction"] == "mean":
        total = b.fdiv(total, ir.Constant(F64, float(p.size)))
    b.store(total if ty == F64 else b.fptrunc(total, ty), ctx.elem(node, i64(0)))
