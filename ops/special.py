"""Special functions: erf (elementwise) and the scalar formula of exact GELU, x·Φ(x) = x·½(1 + erf(x/√2)).

float64 uses Sun's FDLIBM s_erf.c rational approximations (Sun Microsystems, 1993; the coefficients are its
published values), written as one branchless computation: the range of |x| picks the argument t and the
coefficients of one rational R(t)/S(t) (a select per coefficient, so the loop vectorizer widens it), then

- |x| < 0.84375:           erf x = x + x·R(x²)/S(x²)
- 0.84375 ≤ |x| < 1.25:    erf x = sign(x)·(c + R(s)/S(s)),  s = |x| − 1, c = 0.845062911510467529297
- 1.25 ≤ |x| < 1/0.35:     erfc|x| = e^(−x² − 0.5625 + R(1/x²)/S(1/x²)) / |x|   (one coefficient set)
- |x| ≥ 1/0.35:            the same with a second set, |x| clamped to 28 (erfc 28 underflows to 0),

and erf x = sign(x)·(1 − erfc|x|) there. 1 + erf x (for GELU's Φ) is erfc|x| itself for x ≤ −0.84375 (no
cancellation in the negative tail). exp is ``mathlib.exp`` on the llvm backend (≤ 3e-16 relative). Within 2 ulp.

float32 is computed in float32 only (16 lanes per zmm; no call, no float64), with polynomials fitted for this
module: minimax by linear programming on a dense grid (scipy's HiGHS, float64), then rounded to float32 one
coefficient at a time from the lowest degree, the rest refitted each time.

- erf, |x| < 0.75: x + x·P(x²). Otherwise sign(x)·(K + s·A(s)), s = min(|x|, 4) − m, with the coefficients of
  [0.75, 1.75) or [1.75, 4] selected, and m chosen so that K, erf m rounded to float32, is exact to 5e-7 ulp: the
  final fma is the one rounding of consequence. erf 4 rounds to 1.
- exact GELU, a = min(|x|, 14.5): Φ(−a) = e^(−a²/2)/√(2π) · R(a), R the Mills ratio, R = N/(a·N + M) with
  M/N ≈ 1/R − a: small beside a for large a, so the rounding errors of N and M mostly cancel. a²/2 is split exactly:
  h = ⌊256a⌋/256 has 12 bits, so h²/2 is a float32, a²/2 = h²/2 + (a − h)(a + h)/2, and
  e^(−a²/2)/√(2π) = 2⁻ⁿ·e^(−ρ),  ρ = h²/2 + ln√(2π) − n·ln2 + (a − h)(a + h)/2,  n = round((h²/2 + ln√(2π))/ln2),
  with ln2 and ln√(2π) split into 17-bit leading parts, which keep h²/2 + ln√(2π) − n·ln2 exact, and rests;
  e^(−ρ) = 1 + ρ·Q(ρ) on |ρ| ≤ 0.375. Φ(x) = Φ(−a) for x < 0 (no cancellation), 1 − Φ(−a) otherwise; 2⁻ⁿ is
  applied last (``ldexp``) to x·2ⁿΦ(−a), so a normal result never passes through a subnormal. x/√2 is never formed
  (its rounding error would grow by x² in the tail: 1e-5 at x = −13).

Measured on every float32 against float64 references: erf within 0.72 ulp, GELU within 2.8e-7 relative wherever
the result is a normal float32 (0.83 ulp and 3.0e-7 with the formulas on NumPy arrays, which round each product).
"""

from __future__ import annotations

import math
from functools import partial
from typing import Any

import numpy as np

import ops.fn as fn
from ops.base import Sample
from ops.elementwise import Unary
from ops.registry import register

ERX = 8.45062911510467529297e-01
# ascending coefficients: R = r₀ + r₁t + …, S = 1 + s₁t + … (FDLIBM s_erf.c: pp/qq, pa/qa, ra/sa, rb/sb)
_R = (
    (1.28379167095512558561e-01, -3.25042107247001499370e-01, -2.84817495755985104766e-02,
     -5.77027029648944159157e-03, -2.37630166566501626084e-05),
    (-2.36211856075265944077e-03, 4.14856118683748331666e-01, -3.72207876035701323847e-01,
     3.18346619901161753674e-01, -1.10894694282396677476e-01, 3.54783043256182359371e-02,
     -2.16637559486879084300e-03),
    (-9.86494403484714822705e-03, -6.93858572707181764372e-01, -1.05586262253232909814e+01,
     -6.23753324503260060396e+01, -1.62396669462573470355e+02, -1.84605092906711035994e+02,
     -8.12874355063065934246e+01, -9.81432934416914548592e+00),
    (-9.86494292470009928597e-03, -7.99283237680523006574e-01, -1.77579549177547519889e+01,
     -1.60636384855821916062e+02, -6.37566443368389627722e+02, -1.02509513161107724954e+03,
     -4.83519191608651397019e+02),
)
_S = (
    (1.0, 3.97917223959155352819e-01, 6.50222499887672944485e-02, 5.08130628187576562776e-03,
     1.32494738004321644526e-04, -3.96022827877536812320e-06),
    (1.0, 1.06420880400844228286e-01, 5.40397917702171048937e-01, 7.18286544141962662868e-02,
     1.26171219808761642112e-01, 1.36370839120290507362e-02, 1.19844998467991074170e-02),
    (1.0, 1.96512716674392571292e+01, 1.37657754143519042600e+02, 4.34565877475229228821e+02,
     6.45387271733267880336e+02, 4.29008140027567833386e+02, 1.08635005541779435134e+02,
     6.57024977031928170135e+00, -6.04244152148580987438e-02),
    (1.0, 3.03380607434824582924e+01, 3.25792512996573918826e+02, 1.53672958608443695994e+03,
     3.19985821950859553908e+03, 2.55305040643316442583e+03, 4.74528541206955367215e+02,
     -2.24409524465858183362e+01),
)
_BOUNDS = (0.84375, 1.25, 1 / 0.35)
_FAR = 28.0


def _pick(b: Any, masks: list, values: tuple[float, ...], like: Any) -> Any:
    """values[i] for the first true masks[i], else values[-1] (a chain of selects between constants)."""
    out = b.const(values[-1], like=like)
    for mask, value in reversed(list(zip(masks, values[:-1]))):
        out = b.select(mask, b.const(value, like=like), out)
    return out


def _horner(b: Any, t: Any, coeffs: list) -> Any:
    acc = coeffs[-1]
    for c in reversed(coeffs[:-1]):
        acc = b.add(b.mul(acc, t), c)
    return acc


def erf_formula(b: Any, x: Any) -> Any:
    """erf x written against a scalar builder (see the module docstring). NaN propagates; ±inf give ±1."""
    return _erf_f32(b, x) if _dtype(x) == "float32" else _erf_f64(b, x)


def gelu_exact_formula(b: Any, x: Any) -> Any:
    """x·½(1 + erf(x/√2)) (see the module docstring)."""
    if _dtype(x) == "float32":
        return _gelu_f32(b, x)
    return b.mul(b.mul(x, b.const(0.5, like=x)), _erf_f64(b, b.mul(x, b.const(math.sqrt(0.5), like=x)), True))


def _erf_f64(b: Any, x: Any, plus_one: bool = False) -> Any:
    """float64 erf x, or 1 + erf x with ``plus_one`` (0 and 2 at ∓inf)."""
    one, far = b.const(1.0, like=x), b.const(_FAR, like=x)
    x = b.max(b.min(x, far), b.neg(far))  # erf ±28 rounds to ±1 (and erfc 28 to 0): keeps ±inf out of the math
    ax = b.abs(x)
    masks = [b.lt(ax, b.const(bound, like=x)) for bound in _BOUNDS]
    near, middle = masks[0], masks[1]
    inv_x2 = b.div(one, b.max(b.mul(ax, ax), one))  # 1/x² where used; bounded (no 1/0) elsewhere
    t = b.select(near, b.mul(x, x), b.select(middle, b.sub(ax, one), inv_x2))
    width_r, width_s = max(map(len, _R)), max(map(len, _S))
    r = [_pick(b, masks, tuple(c[i] if i < len(c) else 0.0 for c in _R), x) for i in range(width_r)]
    s = [_pick(b, masks, tuple(c[i] if i < len(c) else 0.0 for c in _S), x) for i in range(width_s)]
    ratio = b.div(_horner(b, t, r), _horner(b, t, s))
    negative = b.lt(x, b.const(0.0, like=x))
    erf_near = b.add(x, b.mul(x, ratio))
    erf_middle = b.add(b.const(ERX, like=x), ratio)  # erf |x|
    if plus_one:
        # e^(−x²) without the rounding error of x² (relative error x²·2⁻⁵³ in erfc, 1e-14 at |x| = 9):
        # x = h + l with h = x rounded to float32, so h² and −h² − 0.5625 are exact, x² = h² + l(x + h)
        h = b.cast(b.cast(ax, "float32"), "float64")
        low = b.sub(ax, h)
        head = b.exp(b.sub(b.neg(b.mul(h, h)), b.const(0.5625, like=x)))
        gauss = b.mul(head, b.exp(b.sub(ratio, b.mul(low, b.add(ax, h)))))
    else:
        gauss = b.exp(b.add(b.sub(b.neg(b.mul(ax, ax)), b.const(0.5625, like=x)), ratio))
    erfc_far = b.div(gauss, b.max(ax, one))  # erfc |x| (|x| ≥ 1.25 where it is used)
    if plus_one:
        two = b.const(2.0, like=x)
        mid = b.select(negative, b.sub(one, erf_middle), b.add(one, erf_middle))
        far = b.select(negative, erfc_far, b.sub(two, erfc_far))
        return b.select(near, b.add(one, erf_near), b.select(middle, mid, far))
    magnitude = b.select(middle, erf_middle, b.sub(one, erfc_far))
    return b.select(near, erf_near, b.select(negative, b.neg(magnitude), magnitude))


# float32 erf (fitted as in the module docstring): erf x = x + x·P(x²) for |x| < 0.75 (relative error 1.6e-9),
# else K + s·A(s) with s = x − m on [0.75, 1.75) and [1.75, 4] (absolute error 0.006 and 0.05 ulp): (bound, m, K, A)
_ERF_NEAR = 0.75
_ERF_P = (0.12837917, -0.3761262, 0.11283379, -0.026834335, 0.005113157, -0.00067375833)
_ERF_PIECES = (
    (1.75, 1.0882809, 0.87621075, (0.3452201, -0.37569642, 0.15750226, 0.039527956, -0.06445656, 0.012852034,
                                   0.011304135, -0.0058260597, -0.0005346354, 0.0007696841)),
    (4.0, 2.6272793, 0.9997972, (0.0011342451, -0.0029799244, 0.0048406124, -0.0053658853, 0.0041913087,
                                 -0.0022397358, 0.0006718642, 4.3039952e-05, -0.00014306986, 5.866214e-05,
                                 -8.634423e-06)),
)
# float32 exact GELU: e^(−ρ) = 1 + ρ·Q(ρ) on |ρ| ≤ 0.375 (relative error 5.4e-9); R(a) = N/(aN + M) on [0, 14.5]
# (relative error 1e-9), M₀/N₀ = √(2/π) to 3e-14; ln2 and ln√(2π) to 17 bits (n·ln2 exact for n < 184) plus the rest
_GAUSS_Q = (-1.0, 0.49999988, -0.16666469, 0.04166928, -0.008374567, 0.0013790845)
_MILLS_N = (1.013063, 1.0990857, 0.5726835, 0.1727413, 0.03016525, 0.0025194406)
_MILLS_M = (0.8083073, 0.5088164, 0.16798063, 0.030152477, 0.0025196956)
_GELU_CLAMP = 14.5  # |x|·Φ(−|x|) < 2⁻¹⁵⁰ beyond 14.35: rounds to 0
_LN2_HI, _LN_SQRT_2PI_HI = 90852 / 2**17, 120447 / 2**17
_LN2_LO, _LN_SQRT_2PI_LO = math.log(2) - _LN2_HI, math.log(math.sqrt(2 * math.pi)) - _LN_SQRT_2PI_HI
_N_SHIFT = 0.5 + (_LN_SQRT_2PI_HI + 0.02835) / math.log(2)  # n = ⌊…⌋ centres ρ: −0.375 ≤ ρ ≤ 0.375


def _consts(b: Any, values: tuple[float, ...], like: Any) -> list:
    return [b.const(v, like=like) for v in values]


def _erf_f32(b: Any, x: Any) -> Any:
    """float32 erf x: x + x·P(x²) near 0, else sign(x)·(K + s·A(s)) on one of two pieces (module docstring)."""
    c = partial(b.const, like=x)
    ax = b.abs(x)
    near = b.add(b.mul(x, _horner(b, b.mul(x, x), _consts(b, _ERF_P, x))), x)
    t = b.select(b.gt(ax, c(4.0)), c(4.0), ax)  # erf 4 rounds to 1; NaN stays NaN
    masks = [b.lt(t, c(bound)) for bound, *_ in _ERF_PIECES[:-1]]
    width = max(len(piece[3]) for piece in _ERF_PIECES)
    coeffs = [_pick(b, masks, tuple(p[3][i] if i < len(p[3]) else 0.0 for p in _ERF_PIECES), x) for i in range(width)]
    s = b.sub(t, _pick(b, masks, tuple(p[1] for p in _ERF_PIECES), x))
    far = b.add(b.mul(s, _horner(b, s, coeffs)), _pick(b, masks, tuple(p[2] for p in _ERF_PIECES), x))
    far = b.select(b.lt(x, c(0.0)), b.neg(far), far)
    return b.select(b.lt(ax, c(_ERF_NEAR)), near, far)


def _gelu_f32(b: Any, x: Any) -> Any:
    """float32 x·Φ(x) from Φ(−|x|) = 2⁻ⁿ·e^(−ρ)·N/(aN + M) (module docstring). NaN propagates; ±inf give inf, NaN
    (−inf·0, as x·½(1 + erf(x/√2)) does)."""
    c = partial(b.const, like=x)
    ax = b.abs(x)
    inside = b.lt(ax, c(_GELU_CLAMP))
    a = b.select(inside, ax, c(_GELU_CLAMP))
    h = b.mul(b.floor(b.mul(a, c(256.0))), c(1 / 256))
    half_h2 = b.mul(b.mul(h, h), c(0.5))  # exact (h has 12 bits)
    n = b.floor(b.add(b.mul(half_h2, c(1 / math.log(2))), c(_N_SHIFT)))
    # the exact part h²/2 + ln√(2π) − n·ln2 (leading parts), kept apart from the small terms by an identity select
    # (|head| < 1) that fast-math reassociation cannot see through: regrouped with them it is no longer exact (85 ulp)
    head = b.add(b.sub(half_h2, b.mul(n, c(_LN2_HI))), c(_LN_SQRT_2PI_HI))
    head = b.select(b.lt(head, c(-1.0)), c(-1.0), head)
    rest = b.sub(c(_LN_SQRT_2PI_LO), b.mul(n, c(_LN2_LO)))
    rho = b.add(head, b.add(b.mul(b.mul(b.sub(a, h), b.add(a, h)), c(0.5)), rest))
    big_n = _horner(b, a, _consts(b, _MILLS_N, x))
    numerator = b.add(b.mul(b.mul(big_n, rho), _horner(b, rho, _consts(b, _GAUSS_Q, x))), big_n)  # N·e^(−ρ)
    phi_2n = b.div(numerator, b.add(b.mul(a, big_n), _horner(b, a, _consts(b, _MILLS_M, x))))  # 2ⁿ·Φ(−a)
    phi_2n = b.select(inside, phi_2n, c(0.0))
    negative = b.lt(x, c(0.0))
    # x·Φ(x) for x < 0, else Φ(−a); scaled by 2⁶⁴⁻ⁿ (a normal 2ᵏ) and then 2⁻⁶⁴: one rounding, also into subnormals
    low = b.mul(b.ldexp(b.select(negative, b.mul(x, phi_2n), phi_2n), b.sub(c(64.0), n)), c(2.0**-64))
    return b.select(negative, low, b.mul(x, b.sub(c(1.0), low)))


def _dtype(x: Any) -> str:
    """The float dtype of a scalar-builder value: a NumPy array, or an llvmlite value by its type's name."""
    if isinstance(x, np.ndarray | np.generic):
        return x.dtype.name
    return {"float": "float32", "double": "float64"}[str(x.type)]  # an llvmlite value (ops does not import codegen)


_TWO_OVER_SQRT_PI = 2.0 / math.sqrt(math.pi)


@register
class Erf(Unary):
    """y = erf x = 2/√π ∫₀ˣ e^(−t²) dt;  dy/dx = 2/√π · e^(−x²)."""

    name = "erf"
    cost = 40

    def reference(self, attrs, x):
        return np.vectorize(math.erf, otypes=[np.float64])(x).astype(x.dtype)

    def domain(self, rng, shape):
        return rng.uniform(-4.0, 4.0, shape)

    def samples(self, rng):
        edges = np.array([0.0, 1e-300, 1e-9, 0.3, 0.7499, 0.75, 0.84375, 0.84376, 1.0, 1.2499, 1.25, 1.7499, 1.75,
                          2.0, 2.857, 2.8572, 3.999, 4.0, 5.9, 6.0, 9.0, 27.0, 29.0, 1e10])
        return super().samples(rng) + [Sample([np.concatenate([edges, -edges])])]

    def vjp(self, node, g):
        x = node.inputs[0]
        return (fn.mul(g, fn.mul(fn.exp(fn.neg(fn.mul(x, x))), _TWO_OVER_SQRT_PI)),)

    def scalar(self, b, attrs, x):
        return erf_formula(b, x)
