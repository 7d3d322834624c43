"""Inline, vectorizable transcendentals written in LLVM IR: exp, expm1, log, tanh, sigmoid (float and double).

No libm calls and no ``llvm.exp``/``llvm.log``/``llvm.pow`` intrinsics (those become scalar calls): every
function is straight-line code (range reduction, a polynomial, bit tricks through bitcast, selects for special
values) that the loop vectorizer widens. Only cheap intrinsics with vector forms are used (fabs, copysign, floor).

- ``exp(x)``: n = round(x·log₂e) by the shifter trick (k = x·log₂e + 1.5·2^mant rounds to an integer, whose
  low mantissa bits hold n: no float→int conversion, which would be poison for NaN), r = x - n·ln2 (Cody–Waite
  split of ln2), eʳ = 1 + q(r) with q the Taylor polynomial of eʳ - 1 on |r| ≤ ln2/2 (7 terms for float32:
  truncation error < 1e-8); the result is (1 + q)·2^⌊n/2⌋·2^(n-⌊n/2⌋) so both scale factors are normal numbers
  (gradual underflow and overflow to inf come out naturally). x is clamped first (the compares are false for NaN,
  so NaN flows through the arithmetic and comes out NaN without a select).
- ``expm1(x)`` = 2ⁿ·q(r) + (2ⁿ - 1): exact-ish near 0 (no cancellation), used by tanh.
- ``log(x)``: x = m·2ᵉ with m ∈ [√½, √2), f = m - 1, s = f/(2 + f), log(1+f) = 2·atanh(s) =
  2s(1 + s²/3 + s⁴/5 + …); result e·ln2 + log(1+f). Subnormals are rescaled by 2^(mantissa bits) first.
  log(0) = -inf, log(x<0) = nan, log(inf) = inf.
- ``tanh(x)`` = sign(x)·t, t = u/(u + 2) with u = expm1(2|x|); t = 1 beyond the point where it rounds to 1.
- ``sigmoid(x)``: e = exp(-|x|) (argument ≤ 0: no upper clamp); (x ≥ 0 ? 1 : e)/(1+e): never overflows, saturates to
  0/1.
"""

from __future__ import annotations

import math

import llvmlite.ir as ir

F32 = ir.FloatType()
F64 = ir.DoubleType()
I32 = ir.IntType(32)
I64 = ir.IntType(64)

# flags for the polynomial arithmetic: contraction to fma only (no reassociation, which could undo the
# Cody-Waite reduction, and no nnan/ninf, which would delete the special-value selects)
_FLAGS = ("contract",)


class _Fmt:
    """Facts of one floating-point format."""

    def __init__(self, ty: ir.Type) -> None:
        self.ty = ty
        self.is64 = isinstance(ty, ir.DoubleType)
        self.ity = I64 if self.is64 else I32
        self.mant = 52 if self.is64 else 23
        self.bias = 1023 if self.is64 else 127
        # clamp bounds for exp: beyond them the result is surely inf / 0
        self.hi = 710.0 if self.is64 else 89.0
        self.lo = -746.0 if self.is64 else -104.0
        self.ln2_hi = 6.93147180369123816490e-01 if self.is64 else 0.693359375
        self.ln2_lo = 1.90821492927058770002e-10 if self.is64 else -2.12194440e-4
        self.exp_terms = 13 if self.is64 else 7  # q(r) = Σ_{k=1..terms} r^k / k!
        self.log_terms = 11 if self.is64 else 5  # 2s Σ_{k=0..terms-1} s^(2k) / (2k+1)
        self.tanh_one = 19.5 if self.is64 else 9.5  # tanh(x) rounds to 1 beyond this
        self.min_normal = 2.2250738585072014e-308 if self.is64 else 1.1754943508222875e-38


def _c(ty: ir.Type, value: float) -> ir.Constant:
    return ir.Constant(ty, value)


def intrinsic(b: ir.IRBuilder, name: str, ty: ir.Type, nargs: int = 1) -> ir.Function:
    """Declare (once) and return the overloaded intrinsic ``name`` for type ``ty`` (f32/f64)."""
    suffix = "f64" if isinstance(ty, ir.DoubleType) else "f32"
    full = f"{name}.{suffix}"
    fn = b.module.globals.get(full)
    if fn is None:
        fn = ir.Function(b.module, ir.FunctionType(ty, [ty] * nargs), full)
    return fn


def _poly(b: ir.IRBuilder, x: ir.Value, coeffs: list[float]) -> ir.Value:
    """Horner: coeffs[0] + x·(coeffs[1] + x·(…)). (Estrin's scheme measured no faster: these loops are bound by
    throughput, not by the fma chain's latency.)"""
    acc = _c(x.type, coeffs[-1])
    for c in reversed(coeffs[:-1]):
        acc = b.fadd(b.fmul(acc, x, flags=_FLAGS), _c(x.type, c), flags=_FLAGS)
    return acc


def _pow2(b: ir.IRBuilder, n: ir.Value, f: _Fmt) -> ir.Value:
    """2ⁿ for an integer n in the normal exponent range, built from its bits."""
    biased = b.add(n, ir.Constant(f.ity, f.bias))
    return b.bitcast(b.shl(biased, ir.Constant(f.ity, f.mant)), f.ty)


def _reduce(b: ir.IRBuilder, x: ir.Value, f: _Fmt, upper: bool = True) -> tuple[ir.Value, ir.Value]:
    """(n as integer, q(r) = eʳ - 1) for x = n·ln2 + r with x clamped to [lo, hi] (NaN passes through: n is then
    meaningless and q is NaN). ``upper=False`` skips the upper clamp for arguments known to be ≤ 0."""
    ty = f.ty
    xc = b.select(b.fcmp_ordered("<", x, _c(ty, f.lo)), _c(ty, f.lo), x)
    if upper:
        xc = b.select(b.fcmp_ordered(">", xc, _c(ty, f.hi)), _c(ty, f.hi), xc)
    shifter = 1.5 * 2.0 ** f.mant
    k = b.fadd(b.fmul(xc, _c(ty, 1.0 / math.log(2.0)), flags=_FLAGS), _c(ty, shifter), flags=_FLAGS)
    nf = b.fsub(k, _c(ty, shifter))
    r = b.fsub(xc, b.fmul(nf, _c(ty, f.ln2_hi), flags=_FLAGS), flags=_FLAGS)  # fma: exact nf·ln2_hi
    r = b.fsub(r, b.fmul(nf, _c(ty, f.ln2_lo), flags=_FLAGS), flags=_FLAGS)
    coeffs = [1.0 / math.factorial(k) for k in range(1, f.exp_terms + 1)]
    q = b.fmul(r, _poly(b, r, coeffs), flags=_FLAGS)
    shifter_bits = (f.bias + f.mant) << f.mant | 1 << (f.mant - 1)
    n = b.sub(b.bitcast(k, f.ity), ir.Constant(f.ity, shifter_bits))
    return n, q


def exp(b: ir.IRBuilder, x: ir.Value, upper: bool = True) -> ir.Value:
    """eˣ (see module docstring); exp(-inf) = 0, exp(large) = inf, exp(nan) = nan. ``upper=False``: x ≤ 0."""
    f = _Fmt(x.type)
    n, q = _reduce(b, x, f, upper)
    n1 = b.ashr(n, ir.Constant(f.ity, 1))
    n2 = b.sub(n, n1)
    p = b.fadd(q, _c(f.ty, 1.0))
    return b.fmul(b.fmul(p, _pow2(b, n1, f)), _pow2(b, n2, f))


def expm1(b: ir.IRBuilder, x: ir.Value) -> ir.Value:
    """eˣ - 1 = 2ⁿ·q(r) + (2ⁿ - 1), accurate near 0; meant for x ≤ the overflow bound (used by tanh)."""
    f = _Fmt(x.type)
    n, q = _reduce(b, x, f)
    n1 = b.ashr(n, ir.Constant(f.ity, 1))
    n2 = b.sub(n, n1)
    s1, s2 = _pow2(b, n1, f), _pow2(b, n2, f)
    scale = b.fmul(s1, s2)
    return b.fadd(b.fmul(b.fmul(q, s1), s2), b.fsub(scale, _c(f.ty, 1.0)))


def log(b: ir.IRBuilder, x: ir.Value) -> ir.Value:
    """ln x (see module docstring)."""
    f = _Fmt(x.type)
    ty, ity = f.ty, f.ity
    small = b.fcmp_ordered("<", x, _c(ty, f.min_normal))
    xs = b.select(small, b.fmul(x, _c(ty, float(2 ** f.mant))), x)
    bits = b.bitcast(xs, ity)
    e = b.sub(b.lshr(bits, ir.Constant(ity, f.mant)), ir.Constant(ity, f.bias))
    e = b.sub(e, b.select(small, ir.Constant(ity, f.mant), ir.Constant(ity, 0)))
    mant_mask = (1 << f.mant) - 1
    m_bits = b.or_(b.and_(bits, ir.Constant(ity, mant_mask)), ir.Constant(ity, f.bias << f.mant))
    m = b.bitcast(m_bits, ty)  # in [1, 2)
    big = b.fcmp_ordered(">", m, _c(ty, math.sqrt(2.0)))
    m = b.select(big, b.fmul(m, _c(ty, 0.5)), m)
    e = b.add(e, b.zext(big, ity))
    fm = b.fsub(m, _c(ty, 1.0))
    s = b.fdiv(fm, b.fadd(fm, _c(ty, 2.0)))
    s2 = b.fmul(s, s)
    series = _poly(b, s2, [1.0 / (2 * k + 1) for k in range(f.log_terms)])
    log1p = b.fmul(b.fmul(s, _c(ty, 2.0)), series, flags=_FLAGS)
    ef = b.sitofp(e, ty)
    result = b.fadd(b.fmul(ef, _c(ty, f.ln2_hi)), b.fadd(log1p, b.fmul(ef, _c(ty, f.ln2_lo))))
    inf = _c(ty, math.inf)
    result = b.select(b.fcmp_ordered("==", x, _c(ty, 0.0)), _c(ty, -math.inf), result)
    result = b.select(b.fcmp_ordered("==", x, inf), inf, result)
    result = b.select(b.fcmp_unordered("ult", x, _c(ty, 0.0)), _c(ty, math.nan), result)  # x < 0 or nan
    return result


def tanh(b: ir.IRBuilder, x: ir.Value) -> ir.Value:
    """tanh x = sign(x)·u/(u + 2), u = expm1(2|x|); ±1 for large |x|, nan for nan."""
    f = _Fmt(x.type)
    ty = f.ty
    ax = b.call(intrinsic(b, "llvm.fabs", ty), [x])
    axc = b.select(b.fcmp_ordered(">", ax, _c(ty, f.tanh_one)), _c(ty, f.tanh_one), ax)
    u = expm1(b, b.fmul(axc, _c(ty, 2.0)))
    t = b.fdiv(u, b.fadd(u, _c(ty, 2.0)))
    t = b.select(b.fcmp_ordered(">=", ax, _c(ty, f.tanh_one)), _c(ty, 1.0), t)
    return b.call(intrinsic(b, "llvm.copysign", ty, 2), [t, x])


def sigmoid(b: ir.IRBuilder, x: ir.Value) -> ir.Value:
    """1/(1 + e⁻ˣ) from e = exp(-|x|): (x ≥ 0 ? 1 : e)/(1 + e); NaN gives NaN (e is NaN)."""
    ty = x.type
    ax = b.call(intrinsic(b, "llvm.fabs", ty), [x])
    e = exp(b, b.fneg(ax), upper=False)
    numerator = b.select(b.fcmp_ordered(">=", x, _c(ty, 0.0)), _c(ty, 1.0), e)
    return b.fdiv(numerator, b.fadd(e, _c(ty, 1.0)))
