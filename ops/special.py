"""Special functions: erf (elementwise), with the scalar formula shared by exact GELU.

erf is evaluated in float64 (float32 inputs are widened and the result rounded once) by Sun's FDLIBM s_erf.c
rational approximations (Sun Microsystems, 1993; the coefficients are its published values), written here as one
branchless computation: the range of |x| picks the argument t and the coefficients of one rational R(t)/S(t)
(a select per coefficient, so the loop vectorizer widens it), then

- |x| < 0.84375:           erf x = x + x·R(x²)/S(x²)
- 0.84375 ≤ |x| < 1.25:    erf x = sign(x)·(c + R(s)/S(s)),  s = |x| − 1, c = 0.845062911510467529297
- 1.25 ≤ |x| < 1/0.35:     erfc|x| = e^(−x² − 0.5625 + R(1/x²)/S(1/x²)) / |x|   (one coefficient set)
- |x| ≥ 1/0.35:            the same with a second set, |x| clamped to 28 (erfc 28 underflows to 0),

and erf x = sign(x)·(1 − erfc|x|) there. 1 + erf x (``plus_one``, for exact GELU's Φ) is computed without
cancellation in the negative tail: erfc|x| itself for x ≤ −0.84375. exp is ``mathlib.exp`` on the llvm backend
(float64 error ≤ 3e-16 relative), a polynomial that vectorizes. Measured against mpmath (tests/codegen/
test_erf_accuracy.py): float64 erf within 2 ulp, float32 within 1 ulp.
"""

from __future__ import annotations

import math
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


def erf_formula(b: Any, x: Any, plus_one: bool = False) -> Any:
    """erf x (or 1 + erf x with ``plus_one``) written against a scalar builder (see the module docstring);
    float32 is computed in float64 and rounded once. NaN propagates; ±inf give ±1 (0 and 2 for ``plus_one``)."""
    dtype = _dtype(x)
    if dtype == "float32":
        x = b.cast(x, "float64")
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
    if plus_one and dtype == "float64":
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
        result = b.select(near, b.add(one, erf_near), b.select(middle, mid, far))
    else:
        magnitude = b.select(middle, erf_middle, b.sub(one, erfc_far))
        result = b.select(near, erf_near, b.select(negative, b.neg(magnitude), magnitude))
    return b.cast(result, "float32") if dtype == "float32" else result


def gelu_exact_formula(b: Any, x: Any) -> Any:
    """x·½(1 + erf(x/√2)) (float32 in float64: x/√2 rounded to float32 would cost 2z²·2⁻²⁴ relative in the tail)."""
    dtype = _dtype(x)
    wide = b.cast(x, "float64") if dtype == "float32" else x
    y = b.mul(b.mul(wide, b.const(0.5, like=wide)),
              erf_formula(b, b.mul(wide, b.const(math.sqrt(0.5), like=wide)), plus_one=True))
    return b.cast(y, "float32") if dtype == "float32" else y


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
        edges = np.array([0.0, 1e-300, 1e-9, 0.3, 0.84375, 0.84376, 1.0, 1.2499, 1.25, 2.0, 2.857, 2.8572, 4.0,
                          5.9, 6.0, 9.0, 27.0, 29.0, 1e10])
        return super().samples(rng) + [Sample([np.concatenate([edges, -edges])])]

    def vjp(self, node, g):
        x = node.inputs[0]
        return (fn.mul(g, fn.mul(fn.exp(fn.neg(fn.mul(x, x))), _TWO_OVER_SQRT_PI)),)

    def scalar(self, b, attrs, x):
        return erf_formula(b, x)
