"""Loop-nest construction shared by the lowerers: strided operands over a static iteration domain.

An operand is described by its element strides over the domain (0 on broadcast or reduced axes). ``collapse``
removes size-1 axes and merges adjacent axes that every operand walks contiguously, so the innermost loop is as
long as possible; ``emit_nest`` emits the loops (``codegen.llvm.for_range`` with constant trip counts: a
canonical ``i = 0..n`` inner loop that the vectorizer widens) and calls ``body`` with each operand's linear
element offset.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import llvmlite.ir as ir

from codegen.llvm import for_range, i64


def contiguous_strides(shape: Sequence[int]) -> tuple[int, ...]:
    """Row-major element strides of ``shape``."""
    strides, acc = [], 1
    for d in reversed(shape):
        strides.append(acc)
        acc *= d
    return tuple(reversed(strides))


def broadcast_strides(shape: Sequence[int], domain: Sequence[int]) -> tuple[int, ...]:
    """Strides that read a contiguous array of ``shape`` broadcast (NumPy rules) over ``domain``."""
    lead = len(domain) - len(shape)
    own = contiguous_strides(shape)
    return tuple(0 if i < lead or shape[i - lead] == 1 else own[i - lead] for i in range(len(domain)))


def collapse(domain: Sequence[int], strides: Sequence[Sequence[int]]) -> tuple[tuple[int, ...], list[tuple[int, ...]]]:
    """Drop size-1 axes, then merge axis a into a+1 whenever stride[a] == stride[a+1]·domain[a+1] for all."""
    keep = [a for a, d in enumerate(domain) if d != 1]
    shape = [domain[a] for a in keep]
    strs = [[s[a] for a in keep] for s in strides]
    a = len(shape) - 2
    while a >= 0:
        if all(s[a] == s[a + 1] * shape[a + 1] for s in strs):
            shape[a] *= shape[a + 1]
            del shape[a + 1]
            for s in strs:
                del s[a]
        a -= 1
    return tuple(shape), [tuple(s) for s in strs]


Body = Callable[[ir.IRBuilder, list[ir.Value], list[ir.Value]], None]


def emit_nest(b: ir.IRBuilder, domain: Sequence[int], strides: Sequence[Sequence[int]], body: Body,
              name: str = "l", bases: Sequence[ir.Value] | None = None) -> None:
    """Loops over ``domain``; ``body(b, offsets, indices)`` gets each operand's linear element offset (plus its
    ``bases`` entry) and each loop's index. Nothing is emitted for an empty domain; a rank-0 domain runs the body
    once."""
    if any(d == 0 for d in domain):
        return
    offsets = list(bases) if bases is not None else [i64(0) for _ in strides]
    indices: list[ir.Value] = []

    def level(depth: int, offs: list[ir.Value]) -> None:
        if depth == len(domain):
            body(b, offs, indices)
            return
        with for_range(b, 0, domain[depth], name=f"{name}{depth}") as i:
            indices.append(i)
            inner = [o if s[depth] == 0 else b.add(o, b.mul(i, i64(s[depth]), flags=("nsw",)), flags=("nsw",))
                     for o, s in zip(offs, strides)]
            level(depth + 1, inner)
            indices.pop()

    level(0, offsets)


GRAIN = 1 << 14  # elements per parallel chunk, at least: smaller chunks cost more to hand out than they gain

# body(ctx, builder, offsets, indices, *shared) with the context of the chunk being emitted
ContextBody = Callable[..., None]


def parallel_nest(ctx: Any, domain: Sequence[int], strides: Sequence[Sequence[int]], body: ContextBody,
                  name: str = "l", grain: int | None = None, axis: int = 0, shared: Sequence[ir.Value] = ()
                  ) -> None:
    """:func:`emit_nest` over ``domain`` for a ``KernelContext``, its ``axis`` split into chunks of at least
    ``grain`` (default :data:`GRAIN`) elements that run on the program's threads (``ctx.parallel``).

    The chunking depends on the sizes only, never on the thread count, and ``body`` must write only what its
    offsets own (elementwise outputs, or outputs indexed by ``axis``): then results are the same for every thread
    count, and each chunk visits its elements in the same order as one loop nest would. ``indices`` of ``axis``
    are relative to the chunk. ``shared`` values of the kernel function reach the body as extra arguments (see
    ``KernelContext.parallel``)."""
    grain = GRAIN if grain is None else grain
    size = math.prod(domain)
    if not domain or size == 0:
        emit_nest(ctx.builder, domain, strides, lambda b, o, i: body(ctx, b, o, i, *shared), name)
        return
    others = size // domain[axis]
    per = max(1, -(-grain // max(others, 1)))
    chunks = -(-domain[axis] // per)
    if chunks < 2:  # one chunk: in place (the same code for every thread count)
        emit_nest(ctx.builder, domain, strides, lambda b, o, i: body(ctx, b, o, i, *shared), name)
        return
    tail = domain[axis] - (chunks - 1) * per

    def chunk(c: Any, index: ir.Value, *values: ir.Value) -> None:
        b = c.builder
        first = b.mul(index, i64(per))
        bases = [b.mul(first, i64(s[axis])) for s in strides]

        def part(count: int) -> None:
            sub = (*domain[:axis], count, *domain[axis + 1:])
            emit_nest(b, sub, strides, lambda bb, o, i: body(c, bb, o, i, *values), name, bases)

        if tail == per:
            part(per)
            return
        with b.if_else(b.icmp_signed("==", index, i64(chunks - 1))) as (last, full):
            with last:
                part(tail)
            with full:
                part(per)

    ctx.parallel(name, chunks, chunk, shared)
