"""Lowering of the elementwise losses: binary_cross_entropy, sigmoid_binary_cross_entropy, mae.

Per element (p or z the prediction, t the target):
- binary_cross_entropy: ℓ = -(t·max(log p, -100) + (1 - t)·max(log(1 - p), -100)) (NaN-propagating max);
- sigmoid_binary_cross_entropy: ℓ = max(z, 0) - z·t + log1p(e), e = exp(-|z|), with
  log1p(e) = log(u)·e/(u - 1) for u = 1 + e ≠ 1 and e when u rounds to 1 (Goldberg's trick: exact to an ulp);
- mae: ℓ = |p - t|.
``none`` stores ℓ per element; ``sum``/``mean`` accumulate in float64 (then / n for the mean; 0/0 = nan) and
round once to the loss dtype.
"""

from __future__ import annotations

from collections.abc import Callable

import llvmlite.ir as ir

from codegen import loops, mathlib
from codegen.lowering import KernelContext, lowerer
from codegen.pool import fold
from codegen.scalar import F64, FAST, LLVMScalarBuilder, value_type

Term = Callable[[LLVMScalarBuilder, ir.Value, ir.Value], ir.Value]


def _bce(sb: LLVMScalarBuilder, p: ir.Value, t: ir.Value) -> ir.Value:
    one, floor = sb.const(1.0, like=p), sb.const(-100.0, like=p)
    log_p = sb.max(sb.log(p), floor)
    log_q = sb.max(sb.log(sb.sub(one, p)), floor)
    return sb.neg(sb.add(sb.mul(t, log_p), sb.mul(sb.sub(one, t), log_q)))


def _log1p(sb: LLVMScalarBuilder, e: ir.Value) -> ir.Value:
    """log(1 + e) for e ≥ 0, accurate for tiny e."""
    b = sb.b
    one = sb.const(1.0, like=e)
    u = b.fadd(e, one)
    ratio = b.fdiv(e, b.fsub(u, one))
    return b.select(b.fcmp_ordered("==", u, one), e, b.fmul(mathlib.log(b, u), ratio))


def _sigmoid_bce(sb: LLVMScalarBuilder, z: ir.Value, t: ir.Value) -> ir.Value:
    e = sb.exp(sb.neg(sb.abs(z)))
    return sb.add(sb.sub(sb.max(z, sb.const(0.0, like=z)), sb.mul(z, t)), _log1p(sb, e))


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
    b.store(total if ty == F64 else b.fptrunc(total, ty), ctx.elem(node, loops.const(0)))
