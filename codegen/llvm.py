"""LLVM IR helpers every lowering shares: the IR types, i64 constants and pointer arithmetic, the one loop builder
(:func:`for_range`; :func:`fold` for loops that carry accumulators), intrinsic declarations and vector accesses
of a row's first lanes (:func:`load_first`, :func:`store_first`: masked, so nothing past them is touched).

Loops have constant or runtime bounds; the body is entered only when ``start < stop`` (a constant non-empty range
needs no guard) and tested at the bottom, with an ``nsw`` increment: the canonical form LLVM's loop vectorizer
and unroller expect without a rotation first. A loop of more than :data:`FULL_UNROLL_MAX_TRIPS` constant trips
carries ``llvm.loop.unroll.disable``: O3 otherwise unrolls such a loop completely once it is vectorized, and then
its constant-trip parent too (16 channels × 784 pixels of bias + relu became 784 vector stores in straight-line
code: 0.65 s of machine-code generation for one kernel of ResNet-50). The vectorizer still interleaves it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import llvmlite.ir as ir

I1, I8, I32, I64 = ir.IntType(1), ir.IntType(8), ir.IntType(32), ir.IntType(64)
F32, F64 = ir.FloatType(), ir.DoubleType()
PTR = ir.PointerType()  # an opaque pointer (the GEMM's operands)
VOID = ir.VoidType()
I8P = I8.as_pointer()


FULL_UNROLL_MAX_TRIPS = 256


def i64(value: int) -> ir.Constant:
    return ir.Constant(I64, value)


def as_value(value: int | ir.Value) -> ir.Value:
    return i64(value) if isinstance(value, int) else value


def gep(builder: ir.IRBuilder, ptr: ir.Value, index: int | ir.Value, etype: ir.Type) -> ir.Value:
    """``&ptr[index]`` for an opaque pointer to elements of type ``etype``."""
    return builder.gep(ptr, [as_value(index)], inbounds=True, source_etype=etype)


@contextmanager
def for_range(builder: ir.IRBuilder, start: int | ir.Value, stop: int | ir.Value, step: int = 1,
              name: str = "i", nonempty: bool = False) -> Iterator[ir.Value]:
    """``for (i = start; i < stop; i += step)``: the ``with`` block is the body, the yielded value ``i``.
    ``nonempty``: the caller guarantees ``start < stop`` for runtime bounds (no guard is emitted)."""
    pre = builder.block
    body = builder.append_basic_block(f"{name}.body")
    end = builder.append_basic_block(f"{name}.end")
    first, last = as_value(start), as_value(stop)
    constant = isinstance(start, int) and isinstance(stop, int)
    if (constant and start < stop) or (nonempty and not constant):
        builder.branch(body)
    else:
        builder.cbranch(builder.icmp_signed("<", first, last), body, end)
    builder.position_at_end(body)
    index = builder.phi(I64, name=name)
    index.add_incoming(first, pre)
    yield index
    nxt = builder.add(index, i64(step), name=f"{name}.next", flags=("nsw",))
    index.add_incoming(nxt, builder.block)
    latch = builder.cbranch(builder.icmp_signed("<", nxt, last), body, end)
    if constant and (stop - start) // step > FULL_UNROLL_MAX_TRIPS:
        latch.set_metadata("llvm.loop", _no_unroll(builder.module))
    builder.position_at_end(end)


def _no_unroll(module: ir.Module) -> ir.MDValue:
    """A new loop ID (self-referential, one per loop) that asks LLVM not to unroll the loop."""
    disable = module.add_metadata([ir.MetaDataString(module, "llvm.loop.unroll.disable")])
    loop = ir.values.MDValue(module, [disable], name=str(len(module.metadata)))
    loop.operands = (loop, disable)
    return loop


Step = Callable[[ir.IRBuilder, ir.Value, list[ir.Value]], list[ir.Value]]


def fold(builder: ir.IRBuilder, count: int | ir.Value, inits: list[ir.Value], step: Step,
         name: str) -> list[ir.Value]:
    """``accs = inits; for i in range(count): accs = step(b, i, accs)``; returns the final accs. ``count >= 1``
    (checked for a constant, guaranteed by the caller for a runtime value), so the loop needs no guard and its
    results dominate what follows."""
    if isinstance(count, int) and count < 1:
        raise ValueError(f"fold needs a positive trip count, got {count}")
    pre = builder.block
    with for_range(builder, 0, count, name=name, nonempty=True) as i:
        accs = [builder.phi(v.type, name=f"{name}.acc") for v in inits]
        for acc, v in zip(accs, inits):
            acc.add_incoming(v, pre)
        new = step(builder, i, list(accs))
        for acc, v in zip(accs, new):
            acc.add_incoming(v, builder.block)
    return new


def intrinsic(module: ir.Module, name: str, ret: ir.Type, args: list[ir.Type]) -> ir.Function:
    """The declaration of function ``name`` in ``module`` (created on first use)."""
    existing = module.globals.get(name)
    if existing is not None:
        return existing
    return ir.Function(module, ir.FunctionType(ret, args), name=name)


def float_intrinsic(builder: ir.IRBuilder, name: str, ty: ir.Type, nargs: int = 1) -> ir.Function:
    """The overloaded float intrinsic ``name`` (``llvm.sqrt``, ``llvm.fabs``, ...) for ``ty`` (float or double)."""
    suffix = "f64" if isinstance(ty, ir.DoubleType) else "f32"
    return intrinsic(builder.module, f"{name}.{suffix}", ty, [ty] * nargs)


def lane_mask(lanes: int, vec: int) -> ir.Constant:
    """The i1 vector selecting the first ``lanes`` of ``vec`` lanes."""
    return ir.Constant(ir.VectorType(I1, vec), [1 if i < lanes else 0 for i in range(vec)])


def _itemsize(vector: ir.VectorType) -> int:
    return 4 if vector.element == F32 else 8


def _masked(b: ir.IRBuilder, name: str, vector: ir.VectorType) -> ir.Function:
    """``llvm.masked.load`` / ``llvm.masked.store`` (``name``) for ``vector``'s type."""
    suffix = f"v{vector.count}{'f32' if vector.element == F32 else 'f64'}"
    mask = ir.VectorType(I1, vector.count)
    if name == "load":
        return intrinsic(b.module, f"llvm.masked.load.{suffix}.p0", vector, [PTR, I32, mask, vector])
    return intrinsic(b.module, f"llvm.masked.store.{suffix}.p0", VOID, [vector, PTR, I32, mask])


def load_first(b: ir.IRBuilder, ptr: ir.Value, vector: ir.VectorType, count: int,
               fill: ir.Constant | None = None) -> ir.Value:
    """The first ``count`` elements at ``ptr`` as a vector (``fill``'s lanes past them, zero by default; nothing
    past them is read)."""
    if count == vector.count:
        return b.load(b.bitcast(ptr, vector.as_pointer()), typ=vector, align=_itemsize(vector))
    return b.call(_masked(b, "load", vector), [b.bitcast(ptr, PTR), ir.Constant(I32, _itemsize(vector)),
                                              lane_mask(count, vector.count), fill or ir.Constant(vector, None)])


def store_first(b: ir.IRBuilder, value: ir.Value, ptr: ir.Value, count: int) -> None:
    """Store the first ``count`` lanes of ``value`` at ``ptr`` (nothing past them is written)."""
    vector = value.type
    if count == vector.count:
        b.store(value, b.bitcast(ptr, vector.as_pointer()), align=_itemsize(vector))
        return
    b.call(_masked(b, "store", vector), [value, b.bitcast(ptr, PTR), ir.Constant(I32, _itemsize(vector)),
                                         lane_mask(count, vector.count)])
