"""The LLVM implementation of the abstract scalar builder (``ops.scalar.SCALAR_METHODS``).

Values are llvmlite IR values: ``float``/``double`` for float32/float64, ``i64`` for int64 and ``i1`` for bool
(stored in memory as ``i8``). Float arithmetic carries the fast-math flags ``reassoc contract nsz`` (safe
reassociation and fma contraction); comparisons, min/max and selects carry none, so NaN and ±inf behave as in
NumPy: comparisons with NaN are false, ``max``/``min`` propagate NaN.
"""

from __future__ import annotations

from typing import Any

import llvmlite.ir as ir

import codegen.mathlib as mathlib
from codegen.llvm import F32, F64, I1, I8, I64, float_intrinsic, intrinsic
from ops.scalar import INT64_MIN

FAST = ("reassoc", "contract", "nsz")
_VALUE_TYPES = {"float32": F32, "float64": F64, "int64": I64, "bool": I1}
_MEMORY_TYPES = {"float32": F32, "float64": F64, "int64": I64, "bool": I8}


def value_type(dtype: str) -> ir.Type:
    """IR type of a value of ``dtype`` held in a register."""
    return _VALUE_TYPES[dtype]


def memory_type(dtype: str) -> ir.Type:
    """IR type of an element of ``dtype`` in memory (bool is one byte)."""
    return _MEMORY_TYPES[dtype]


def dtype_of(value: ir.Value) -> str:
    """The graphc dtype of a register value."""
    ty = value.type
    if isinstance(ty, ir.FloatType):
        return "float32"
    if isinstance(ty, ir.DoubleType):
        return "float64"
    if isinstance(ty, ir.IntType):
        return "bool" if ty.width == 1 else "int64"
    raise TypeError(f"not a scalar value type: {ty}")


def load(b: ir.IRBuilder, ptr: ir.Value, dtype: str) -> ir.Value:
    """Load one element (bool bytes become i1: nonzero is true)."""
    value = b.load(ptr)
    if dtype == "bool":
        return b.icmp_unsigned("!=", value, ir.Constant(I8, 0))
    return value


def store(b: ir.IRBuilder, value: ir.Value, ptr: ir.Value, dtype: str) -> None:
    """Store one element (i1 becomes a 0/1 byte)."""
    if dtype == "bool":
        value = b.zext(value, I8)
    b.store(value, ptr)


def _is_float(x: ir.Value) -> bool:
    return isinstance(x.type, (ir.FloatType, ir.DoubleType))


def _is_bool(x: ir.Value) -> bool:
    return isinstance(x.type, ir.IntType) and x.type.width == 1


def constant_value(x: ir.Value) -> float | None:
    """The Python number of a scalar IR constant, else None (lets ``pow`` specialize x**2 and friends)."""
    if isinstance(x, ir.Constant) and isinstance(x.constant, (int, float)):
        return float(x.constant)
    return None


class LLVMScalarBuilder:
    """Emits the scalar formulas of elementwise ops as IR through an ``ir.IRBuilder``."""

    def __init__(self, builder: ir.IRBuilder) -> None:
        self.b = builder

    # -- constants and arithmetic ---------------------------------------------------------------------
    def const(self, value: Any, like: ir.Value) -> ir.Constant:
        if _is_bool(like):
            return ir.Constant(I1, int(bool(value)))
        if _is_float(like):
            return ir.Constant(like.type, float(value))
        return ir.Constant(like.type, int(value))

    def add(self, x: ir.Value, y: ir.Value) -> ir.Value:
        if _is_float(x):
            return self.b.fadd(x, y, flags=FAST)
        return self.b.or_(x, y) if _is_bool(x) else self.b.add(x, y)

    def sub(self, x: ir.Value, y: ir.Value) -> ir.Value:
        if _is_float(x):
            return self.b.fsub(x, y, flags=FAST)
        return self.b.xor(x, y) if _is_bool(x) else self.b.sub(x, y)

    def mul(self, x: ir.Value, y: ir.Value) -> ir.Value:
        if _is_float(x):
            return self.b.fmul(x, y, flags=FAST)
        return self.b.and_(x, y) if _is_bool(x) else self.b.mul(x, y)

    def div(self, x: ir.Value, y: ir.Value) -> ir.Value:
        if _is_float(x):
            return self.b.fdiv(x, y, flags=("contract",))
        return self.b.sdiv(x, y)  # unreachable for registered ops (div is float-only)

    def mod(self, x: ir.Value, y: ir.Value) -> ir.Value:
        """NumPy's remainder, the sign of y: r = fmod(x, y), plus y when r ≠ 0 and r, y differ in sign; a zero r
        takes y's sign (NumPy's npy_divmod). int64: x mod 0 = 0 and INT64_MIN mod −1 = 0 (see :meth:`fmod`)."""
        b = self.b
        r = self.fmod(x, y)
        if _is_float(x):
            zero = ir.Constant(x.type, 0.0)
            differ = b.xor(b.fcmp_ordered("<", r, zero), b.fcmp_ordered("<", y, zero))
            adjust = b.and_(b.fcmp_unordered("!=", r, zero), differ)  # NaN r: r + y stays NaN
            signed_zero = b.call(float_intrinsic(b, "llvm.copysign", x.type, 2), [zero, y])
            r = b.select(b.fcmp_ordered("==", r, zero), signed_zero, r)
            return b.select(adjust, b.fadd(r, y), r)
        zero = ir.Constant(x.type, 0)
        differ = b.xor(b.icmp_signed("<", r, zero), b.icmp_signed("<", y, zero))
        return b.select(b.and_(b.icmp_signed("!=", r, zero), differ), b.add(r, y), r)

    def fmod(self, x: ir.Value, y: ir.Value) -> ir.Value:
        """C's fmod, the sign of x. Floats: ``frem`` (LLVM lowers it to a call of libm's fmod per element: exact,
        but the loop is not vectorized). int64: ``srem`` by y, or by 1 where y is 0 or −1 (srem would trap there;
        x mod ±1 = 0 is the true remainder for −1 and NumPy's value for 0)."""
        b = self.b
        if _is_float(x):
            return b.frem(x, y)
        one, minus_one, zero = ir.Constant(x.type, 1), ir.Constant(x.type, -1), ir.Constant(x.type, 0)
        unsafe = b.or_(b.icmp_signed("==", y, zero), b.icmp_signed("==", y, minus_one))
        return b.srem(x, b.select(unsafe, one, y))

    def neg(self, x: ir.Value) -> ir.Value:
        if _is_float(x):
            return self.b.fneg(x)
        return x if _is_bool(x) else self.b.neg(x)

    def pow(self, x: ir.Value, y: ir.Value) -> ir.Value:
        """xʸ: small integer constant exponents by multiplication, else exp(y·log|x|) with the sign of a
        negative base for integer y (NaN for a negative base with a non-integer y); x⁰ = 1 and 1ʸ = 1."""
        c = constant_value(y)
        if c is not None:
            if c == 0.5:
                return self.sqrt(x)
            if c == int(c) and abs(c) <= 16:
                r = self._ipow(x, abs(int(c)))
                return self.div(self.const(1, like=x), r) if c < 0 else r
        b, ty = self.b, x.type
        ax = b.call(float_intrinsic(b, "llvm.fabs", ty), [x])
        mag = mathlib.exp(b, b.fmul(y, mathlib.log(b, ax), flags=("contract",)))
        floor = float_intrinsic(b, "llvm.floor", ty)
        is_int = b.fcmp_ordered("==", b.call(floor, [y]), y)
        half = b.fmul(y, ir.Constant(ty, 0.5))
        is_odd = b.and_(is_int, b.fcmp_ordered("!=", b.call(floor, [half]), half))
        negative = b.fcmp_ordered("<", x, ir.Constant(ty, 0.0))
        signed = b.select(is_odd, b.fneg(mag), mag)
        result = b.select(negative, b.select(is_int, signed, ir.Constant(ty, float("nan"))), mag)
        one = ir.Constant(ty, 1.0)
        result = b.select(b.fcmp_ordered("==", x, one), one, result)
        return b.select(b.fcmp_ordered("==", y, ir.Constant(ty, 0.0)), one, result)

    def _ipow(self, x: ir.Value, n: int) -> ir.Value:
        """xⁿ for n ≥ 0 by binary exponentiation."""
        result: ir.Value | None = None
        base = x
        while n:
            if n & 1:
                result = base if result is None else self.mul(result, base)
            n >>= 1
            if n:
                base = self.mul(base, base)
        return result if result is not None else self.const(1, like=x)

    def max(self, x: ir.Value, y: ir.Value) -> ir.Value:
        return self._minmax(x, y, ">")

    def min(self, x: ir.Value, y: ir.Value) -> ir.Value:
        return self._minmax(x, y, "<")

    def _minmax(self, x: ir.Value, y: ir.Value, op: str) -> ir.Value:
        """NumPy's maximum/minimum: NaN in either operand gives NaN."""
        b = self.b
        if _is_float(x):
            r = b.select(b.fcmp_ordered(op, x, y), x, y)  # y when unordered
            return b.select(b.fcmp_unordered("uno", x, x), x, r)
        cmp = b.icmp_unsigned(op, x, y) if _is_bool(x) else b.icmp_signed(op, x, y)
        return b.select(cmp, x, y)

    def abs(self, x: ir.Value) -> ir.Value:
        if _is_float(x):
            return self.b.call(float_intrinsic(self.b, "llvm.fabs", x.type), [x])
        if _is_bool(x):
            return x
        return self.b.select(self.b.icmp_signed("<", x, ir.Constant(x.type, 0)), self.b.neg(x), x)

    def sqrt(self, x: ir.Value) -> ir.Value:
        return self.b.call(float_intrinsic(self.b, "llvm.sqrt", x.type), [x])

    def floor(self, x: ir.Value) -> ir.Value:
        return self.b.call(float_intrinsic(self.b, "llvm.floor", x.type), [x])

    def ldexp(self, x: ir.Value, n: ir.Value) -> ir.Value:
        return mathlib.ldexp(self.b, x, n)

    def exp(self, x: ir.Value) -> ir.Value:
        return self._call_math("exp", x)

    def log(self, x: ir.Value) -> ir.Value:
        return self._call_math("log", x)

    def log1p(self, x: ir.Value) -> ir.Value:
        return self._call_math("log1p", x)

    def tanh(self, x: ir.Value) -> ir.Value:
        return self._call_math("tanh", x)

    def sigmoid(self, x: ir.Value) -> ir.Value:
        return self._call_math("sigmoid", x)

    def _call_math(self, name: str, x: ir.Value) -> ir.Value:
        """A call of ``graphc.math.<name>.<f32|f64>``, the ``codegen.mathlib`` polynomial defined once per module as
        an ``alwaysinline`` function: O3 inlines it at every use before vectorizing (the optimized code is the same
        as writing it inline), while the IR graphc builds and prints stays one call per transcendental — a 1,000-op
        tanh chain emits 1,000 calls instead of ~33,000 instructions (about a third of its compile time)."""
        module, ty = self.b.module, x.type
        full = f"graphc.math.{name}.{'f64' if isinstance(ty, ir.DoubleType) else 'f32'}"
        fn = module.globals.get(full)
        if fn is None:
            fn = ir.Function(module, ir.FunctionType(ty, [ty]), full)
            fn.linkage = "internal"
            for attribute in ("alwaysinline", "nounwind", "readnone"):
                fn.attributes.add(attribute)
            body = ir.IRBuilder(fn.append_basic_block("entry"))
            body.ret(getattr(mathlib, name)(body, fn.args[0]))
        return self.b.call(fn, [x])

    # -- comparisons and selection (NaN compares false) ------------------------------------------------
    def _cmp(self, op: str, x: ir.Value, y: ir.Value) -> ir.Value:
        if _is_float(x):
            return self.b.fcmp_ordered(op, x, y)
        if _is_bool(x):
            return self.b.icmp_unsigned(op, x, y)
        return self.b.icmp_signed(op, x, y)

    def lt(self, x: ir.Value, y: ir.Value) -> ir.Value:
        return self._cmp("<", x, y)

    def le(self, x: ir.Value, y: ir.Value) -> ir.Value:
        return self._cmp("<=", x, y)

    def gt(self, x: ir.Value, y: ir.Value) -> ir.Value:
        return self._cmp(">", x, y)

    def ge(self, x: ir.Value, y: ir.Value) -> ir.Value:
        return self._cmp(">=", x, y)

    def eq(self, x: ir.Value, y: ir.Value) -> ir.Value:
        return self._cmp("==", x, y)

    def select(self, c: ir.Value, x: ir.Value, y: ir.Value) -> ir.Value:
        return self.b.select(c, x, y)

    def cast(self, x: ir.Value, dtype: str) -> ir.Value:
        """``ops.scalar.convert``: float → int64 truncates toward zero, saturates, NaN → INT64_MIN; anything → bool
        is ``!= 0``."""
        b, src = self.b, dtype_of(x)
        dst = value_type(dtype)
        if src == dtype:
            return x
        if dtype == "bool":
            return b.fcmp_unordered("!=", x, ir.Constant(x.type, 0.0)) if _is_float(x) else \
                b.icmp_signed("!=", x, ir.Constant(x.type, 0))
        if src == "bool":
            return b.uitofp(x, dst) if dtype != "int64" else b.zext(x, dst)
        if src == "int64":
            return b.sitofp(x, dst)
        if dtype == "int64":
            suffix = "f64" if src == "float64" else "f32"
            name = f"llvm.fptosi.sat.i64.{suffix}"
            fn = intrinsic(b.module, name, I64, [x.type])
            saturated = b.call(fn, [x])  # truncates toward zero, saturates; NaN would give 0, a valid class
            return b.select(b.fcmp_unordered("uno", x, x), ir.Constant(I64, INT64_MIN), saturated)
        return b.fpext(x, dst) if dtype == "float64" else b.fptrunc(x, dst)
