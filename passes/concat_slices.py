"""Concatenation without copies: memory planning places a ``concat``'s inputs inside its output's buffer.

``y = concat(x₁ … xₖ, axis)`` whose axes before ``axis`` all have extent 1 (channels of one image: an Inception or
fire module at batch 1) holds each xᵢ as one contiguous run of bytes at the running offset of the inputs before
it. When xᵢ is computed by a kernel into exactly those bytes, the concat kernel has nothing to copy for it
(``codegen.indexing``'s concat skips an input whose pointer is already its slice of y). :func:`choose` picks such
*slices*; ``passes.memplan`` then plans y and its slices as one slot, live from the first slice's definition to
the last use of any of them, and ``passes.plan.verify_plan`` checks that each slice lies where its concat puts it.

An input becomes a slice when it is an arena value that is no program output or update value (those must not
share bytes: the caller gets them as arrays), has a slot of its own (no in-place chain: nothing else ever writes
its bytes), is not already a slice of an earlier concat (a value has one place), and starts at a 64-byte-aligned
offset of y (every buffer is aligned). y itself must be an arena value and no program output; when a later value
takes y's buffer over in place (``relu(concat(...))``), every slice must have died before that kernel.

All or nothing: a concat gets slices only when every one of its inputs can be one, so that it copies nothing.
DenseNet's concats, whose earlier features already lie in an earlier concat, measured 2.3 % slower end to end
with their one new feature as a slice (DenseNet-121, batch 1: the copies of the others got slower), while
SqueezeNet's fire modules, whose every branch is a slice, got 1.9 % faster.
"""

from __future__ import annotations

from collections.abc import Collection

from graphc.ir import Node
from passes.plan import ALIGN, Kernel, concat_offsets

Slices = dict[Node, tuple[Node, int]]  # slice value -> (the concat's value, byte offset inside it)


def choose(kernels: list[Kernel], live: dict[Node, tuple[int, int]], handover: dict[Node, int],
           keep: Collection[Node]) -> Slices:
    """The slices (module docstring), concat by concat in schedule order. ``live``: the arena values' lifetimes;
    ``handover``: for the first value of each slot, the kernel where an in-place value takes its buffer over (past
    the end of the program when none does) — a slice's slot must have no such value, a concat's may when every
    slice has died before it; ``keep``: the values read after the kernels."""
    never = len(kernels) + 1

    def alone(v: Node) -> bool:
        return handover.get(v) == never

    slices: Slices = {}
    containers: set[Node] = set()  # concats holding slices: never a slice themselves (one level of nesting)
    for k in kernels:
        if len(k.nodes) != 1 or k.nodes[0].op != "concat":
            continue
        y = k.nodes[0]
        places = concat_offsets(y)
        if places is None or y in keep or y not in handover or not y.size:
            continue
        chosen = {x: (y, at) for x, at in zip(y.inputs, places)
                  if x not in slices and x not in containers and x not in keep and alone(x) and x.type.nbytes
                  and at % ALIGN == 0 and x.dtype == y.dtype and live[x][1] < handover[y]}
        if len(chosen) == len(y.inputs):  # all or nothing: a concat that still copies some inputs gains little
            slices.update(chosen)
            containers.add(y)
    return slices
