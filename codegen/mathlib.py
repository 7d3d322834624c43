"""Inline, vectorizable transcendentals written in LLVM IR: exp, expm1, log, tanh, sigmoid (float and double).

No libm calls and no ``llvm.exp``/``llvm.log``/``llvm.pow`` intrinsics (those become scalar calls): every
function is straight-line code (range reduction, a polynomial, bit tricks through bitcast, selects for special
values) that the loop vectorizer widens. Only cheap intrinsics with vector forms are used (fabs, copysign, floor).

- ``exp(x)``: n = round(x·log₂e) by the shifter trick (k = x·log₂e + 1.5·2^mant rounds to an integer, whose
  low mantissa bits hold n: no float→int conversion, which would be poison for NaN), r = x - n·ln2, |r| ≤ ln2/2.
  float64: Cody–Waite split of ln2 (two fmas), eʳ = 1 + q(r) with q the 13-term Taylor polynomial of eʳ - 1.
  float32: one fma with ln2 rounded to float32 (|n| ≤ 150, so r is off by at most 150·1.9e-9 = 2.9e-7 relative
  to the result, 5.5e-8 for |x| ≤ 20), and eʳ = P(r), P the degree-5 minimax polynomial (c₀ = c₁ = 1, relative
  error 1.04e-7 on |r| ≤ 0.3468; 1.64e-7 with float32 arithmetic) evaluated by Estrin's scheme
  ((1 + r) + r²·((c₂ + c₃r) + r²·(c₄ + c₅r)): the loops are bound by the fma chain's latency as much as by
  throughput). Measured float32 exp error ≤ 4.1e-7 relative (1e6-point sweep over [-88, 88]); float64 ≤ 3e-16.
  The general result is P·2^⌊n/2⌋·2^(n-⌊n/2⌋) so both scale factors are normal numbers (gradual underflow and
  overflow to inf come out naturally). For arguments known to be ≤ 0 (``upper=False``, as in sigmoid) it is
  (2⁻⁶⁴·P)·2^(n+64): the 2⁻⁶⁴ is folded into the float32 coefficients, 2^(n+64) is normal for n ≥ -1076/-150,
  and the single product rounds once, also into the subnormal range (one multiply and two integer ops instead of
  two multiplies and seven). x is clamped first (the compares are false for NaN, so NaN flows through the
  arithmetic and comes out NaN without a select).
- ``expm1(x)`` = 2ⁿ·q(r) + (2ⁿ - 1): exact-ish near 0 (no cancellation), used by tanh.
- ``log(x)``: x = m·2ᵉ with m ∈ [√½, √2), f = m - 1, s = f/(2 + f), log(1+f) = 2·atanh(s) =
  2s(1 + s²/3 + s⁴/5 + …); result e·ln2 + log(1+f). Subnormals are rescaled by 2^(mantissa bits) first.
  log(0) = -inf, log(x<0) = nan, log(inf) = inf.
- ``tanh(x)`` = sign(x)·t, t = u/(u + 2) with u = expm1(2|x|); t = 1 beyond the point where it rounds to 1.
- ``sigmoid(x)``: e = exp(-|x|) by the x ≤ 0 path above; (x < 0 ? e : 1)/(1 + e) with the choice made on the sign
  bit (a blend on x itself, no compare; -0 gives e = 1, the same as +0): never overflows, the denominator lies in
  [1, 2], saturates to exactly 1 for large x and to 0 (through gradual underflow) for x ≤ -104; NaN → NaN. A
  true division: a reciprocal estimate plus a Newton step (``arcp``) measured ~15% slower on znver3, because
  the loop is bound by latency and the floating-point register file rather than by the divider. Measured
  float32 error ≤ 3.8e-7 relative (1e6-point sweep over [-80, 80]).
- ``ldexp(x, n)`` = x·2ⁿ for an integer-valued float n with 2ⁿ normal, 2ⁿ built from n's bits by the shifter
  trick as in exp: an exact scaling (one rounding, into the subnormal range), for range reductions written with the
  scalar builder (ops/special.py).
"""

from __future__ import annotations

import math

import llvmlite.ir as ir

from codegen.llvm import I32, I64, float_intrinsic

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


# eʳ ≈ Σ cₖ·rᵏ on |r| ≤ 0.3468 (ln2/2 and a margin): minimax in relative error with c₀ = c₁ = 1, error 1.04e-7
# (1.64e-7 evaluated in float32), found by linear programming on a dense grid and rounded to float32
EXP_F32 = (1.0, 1.0, 0.499992311000824, 0.16667114198207855, 0.04189039766788483, 0.00831266213208437)


def _c(ty: ir.Type, value: float) -> ir.Constant:
    return ir.Constant(ty, value)


def _poly(b: ir.IRBuilder, x: ir.Value, coeffs: list[float]) -> ir.Value:
    """Horner: coeffs[0] + x·(coeffs[1] + x·(…)), for the float64 Taylor polynomials and log's series. (The
    float32 exp polynomial is short enough that Estrin's scheme pays off, see ``_exp_poly``; for these longer ones
    Estrin was measured no faster when they were written.)"""
    acc = _c(x.type, coeffs[-1])
    for c in reversed(coeffs[:-1]):
        acc = b.fadd(b.fmul(acc, x, flags=_FLAGS), _c(x.type, c), flags=_FLAGS)
    return acc


def _pow2(b: ir.IRBuilder, n: ir.Value, f: _Fmt) -> ir.Value:
    """2ⁿ for an integer n in the normal exponent range, built from its bits."""
    biased = b.add(n, ir.Constant(f.ity, f.bias))
    return b.bitcast(b.shl(biased, ir.Constant(f.ity, f.mant)), f.ty)


def _reduce(b: ir.IRBuilder, x: ir.Value, f: _Fmt, upper: bool = True) -> tuple[ir.Value, ir.Value]:
    """(n as integer, r) for x = n·ln2 + r, |r| ≤ ln2/2, with x clamped to [lo, hi] (NaN passes through: n is then
    meaningless and r is NaN). ``upper=False`` skips the upper clamp for arguments known to be ≤ 0. float64
    subtracts n·ln2 in two parts (Cody–Waite); float32 in one fma with ln2 rounded to float32 (error in r at
    most |n|·1.9e-9 ≤ 2.9e-7)."""
    ty = f.ty
    xc = b.select(b.fcmp_ordered("<", x, _c(ty, f.lo)), _c(ty, f.lo), x)
    if upper:
        xc = b.select(b.fcmp_ordered(">", xc, _c(ty, f.hi)), _c(ty, f.hi), xc)
    shifter = 1.5 * 2.0 ** f.mant
    k = b.fadd(b.fmul(xc, _c(ty, 1.0 / math.log(2.0)), flags=_FLAGS), _c(ty, shifter), flags=_FLAGS)
    nf = b.fsub(k, _c(ty, shifter))
    r = b.fsub(xc, b.fmul(nf, _c(ty, f.ln2_hi if f.is64 else math.log(2.0)), flags=_FLAGS), flags=_FLAGS)
    if f.is64:
        r = b.fsub(r, b.fmul(nf, _c(ty, f.ln2_lo), flags=_FLAGS), flags=_FLAGS)
    shifter_bits = (f.bias + f.mant) << f.mant | 1 << (f.mant - 1)
    n = b.sub(b.bitcast(k, f.ity), ir.Constant(f.ity, shifter_bits))
    return n, r


def _expm1_poly(b: ir.IRBuilder, r: ir.Value, f: _Fmt) -> ir.Value:
    """q(r) = eʳ - 1 by its Taylor polynomial (relative accuracy near 0, for expm1)."""
    coeffs = [1.0 / math.factorial(k) for k in range(1, f.exp_terms + 1)]
    return b.fmul(r, _poly(b, r, coeffs), flags=_FLAGS)


def _exp_poly(b: ir.IRBuilder, r: ir.Value, f: _Fmt, scale: float = 1.0) -> ir.Value:
    """scale·eʳ for |r| ≤ ln2/2, scale an exact power of two. float32: the degree-5 minimax ``EXP_F32`` (scaled
    coefficients: exact) by Estrin's scheme, 5 fmas and r² (measured faster than Horner's 5 serial fmas);
    float64: 1 + the Taylor q(r), times scale."""
    if f.is64:
        p = b.fadd(_expm1_poly(b, r, f), _c(f.ty, 1.0))
        return p if scale == 1.0 else b.fmul(p, _c(f.ty, scale))
    c = [_c(f.ty, v * scale) for v in EXP_F32]
    r2 = b.fmul(r, r, flags=_FLAGS)
    lo = b.fadd(b.fmul(c[1], r, flags=_FLAGS), c[0], flags=_FLAGS)
    mid = b.fadd(b.fmul(c[3], r, flags=_FLAGS), c[2], flags=_FLAGS)
    hi = b.fadd(b.fmul(c[5], r, flags=_FLAGS), c[4], flags=_FLAGS)
    v = b.fadd(b.fmul(hi, r2, flags=_FLAGS), mid, flags=_FLAGS)
    return b.fadd(b.fmul(v, r2, flags=_FLAGS), lo, flags=_FLAGS)


def exp(b: ir.IRBuilder, x: ir.Value, upper: bool = True) -> ir.Value:
    """eˣ (see module docstring); exp(-inf) = 0, exp(large) = inf, exp(nan) = nan. ``upper=False``: x ≤ 0."""
    f = _Fmt(x.type)
    n, r = _reduce(b, x, f, upper)
    if not upper:  # n ∈ [lo·log₂e, 0]: 2^(n+64) is normal and (2⁻⁶⁴·P)·2^(n+64) rounds once, also when subnormal
        p = _exp_poly(b, r, f, scale=2.0 ** -64)
        return b.fmul(p, _pow2(b, b.add(n, ir.Constant(f.ity, 64)), f))
    n1 = b.ashr(n, ir.Constant(f.ity, 1))
    n2 = b.sub(n, n1)
    p = _exp_poly(b, r, f)
    return b.fmul(b.fmul(p, _pow2(b, n1, f)), _pow2(b, n2, f))


def ldexp(b: ir.IRBuilder, x: ir.Value, n: ir.Value) -> ir.Value:
    """x·2ⁿ, n an integer-valued float of x's type with 2ⁿ normal (−126 ≤ n ≤ 127 float, −1022 ≤ n ≤ 1023 double); the
    product rounds once. k = n + 1.5·2^mant holds n in its low bits, and (bits(k) + bias) << mant drops the shifter's
    bits: 2ⁿ without a float→int conversion (poison for NaN; a NaN n gives a meaningless finite scale instead)."""
    f = _Fmt(x.type)
    k = b.fadd(n, _c(f.ty, 1.5 * 2.0 ** f.mant))
    biased = b.add(b.bitcast(k, f.ity), ir.Constant(f.ity, f.bias))
    return b.fmul(x, b.bitcast(b.shl(biased, ir.Constant(f.ity, f.mant)), f.ty))


def expm1(b: ir.IRBuilder, x: ir.Value) -> ir.Value:
    """eˣ - 1 = 2ⁿ·q(r) + (2ⁿ - 1), accurate near 0; meant for x ≤ the overflow bound (used by tanh)."""
    f = _Fmt(x.type)
    n, r = _reduce(b, x, f)
    q = _expm1_poly(b, r, f)
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


def log1p(b: ir.IRBuilder, x: ir.Value) -> ir.Value:
    """log(1 + x) accurate for tiny x: u = 1 + x, then x when u rounds to 1, else log(u)·x/(u - 1) (Goldberg: the
    rounding error of u cancels in the ratio), and u itself for u = inf. No reassociation flags: fast-math would
    rewrite (1 + x) - 1 to x and undo the correction."""
    ty = x.type
    one = _c(ty, 1.0)
    u = b.fadd(x, one)
    corrected = b.fmul(log(b, u), b.fdiv(x, b.fsub(u, one)))
    exact = b.select(b.fcmp_ordered("==", u, one), x, corrected)
    return b.select(b.fcmp_ordered("==", u, _c(ty, math.inf)), u, exact)


def tanh(b: ir.IRBuilder, x: ir.Value) -> ir.Value:
    """tanh x = sign(x)·u/(u + 2), u = expm1(2|x|); ±1 for large |x|, nan for nan."""
    f = _Fmt(x.type)
    ty = f.ty
    ax = b.call(float_intrinsic(b, "llvm.fabs", ty), [x])
    axc = b.select(b.fcmp_ordered(">", ax, _c(ty, f.tanh_one)), _c(ty, f.tanh_one), ax)
    u = expm1(b, b.fmul(axc, _c(ty, 2.0)))
    t = b.fdiv(u, b.fadd(u, _c(ty, 2.0)))
    t = b.select(b.fcmp_ordered(">=", ax, _c(ty, f.tanh_one)), _c(ty, 1.0), t)
    return b.call(float_intrinsic(b, "llvm.copysign", ty, 2), [t, x])


def sigmoid(b: ir.IRBuilder, x: ir.Value) -> ir.Value:
    """1/(1 + e⁻ˣ) from e = exp(-|x|): (x ≥ 0 ? 1 : e)/(1 + e); NaN gives NaN (e is NaN)."""
    ty = x.type
    ax = b.call(float_intrinsic(b, "llvm.fabs", ty), [x])
    e = exp(b, b.fneg(ax), upper=False)
    ity = I64 if isinstance(ty, ir.DoubleType) else I32
    negative = b.icmp_signed("<", b.bitcast(x, ity), ir.Constant(ity, 0))  # sign bit: a blend needs no compare
    numerator = b.select(negative, e, _c(ty, 1.0))
    return b.fdiv(numerator, b.fadd(e, _c(ty, 1.0)))
