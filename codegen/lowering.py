"""The lowering registry: Plan kernel → body of one LLVM function.

``LOWERERS`` maps a key to ``lower(ctx: KernelContext) -> None``, which emits the kernel's body with
``ctx.builder`` (positioned in the entry block; the caller adds the ``ret``). The key of a kernel is its anchor's
op name (``Kernel.anchor``: the one structured node, possibly with folded transposes and an elementwise epilogue,
``codegen.epilogue``), or ``"elementwise"`` for a fused group of elementwise/broadcast ops and views. The modules
named after the op families register their lowerers with :func:`lowerer`; ``codegen.lowerers`` imports every one
of them (an import that fails is an error, never a silently missing lowerer). A kernel without a lowerer is a
:class:`LoweringError` naming the op and the user's creation site: there is no NumPy fallback.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import llvmlite.ir as ir
import numpy as np

from codegen.llvm import I8, i64
from codegen.parallel import Claim, region
from codegen.scalar import memory_type
from codegen.target import CodegenError
from graphc.ir import Node
from passes.plan import Kernel

Lowerer = Callable[["KernelContext"], None]
LOWERERS: dict[str, Lowerer] = {}


class LoweringError(CodegenError):
    """An op the LLVM backend cannot lower."""


def lowerer(*keys: str) -> Callable[[Lowerer], Lowerer]:
    """Decorator: register ``fn`` as the lowerer of ``keys`` (op names or fusion kinds)."""

    def register(fn: Lowerer) -> Lowerer:
        for key in keys:
            LOWERERS[key] = fn
        return fn

    return register


def embeddable(node: Node) -> bool:
    """A constant whose value a kernel may bake into its code: a single element. Larger constants — a frozen
    program's weights — are pointer arguments like any buffer, so equal kernels share one function
    (``codegen.module.kernel_signature``)."""
    return node.op == "const" and node.attrs["value"].size == 1


@dataclass
class KernelContext:
    """What a lowerer needs: the kernel, its LLVM function, typed pointers and the status word."""

    module: ir.Module
    kernel: Kernel
    function: ir.Function
    builder: ir.IRBuilder
    pointers: dict[Node, ir.Value]  # every kernel input and output → pointer to its first element
    status: ir.Value  # i64*: a kernel stores a nonzero error code here on bad data (never reads out of bounds)
    error_nodes: list[Node] = field(default_factory=list)  # code k+1 ↔ error_nodes[k] (shared by the module)
    scratch_base: ir.Value | None = None  # i8*: the program's scratch buffer (64-byte aligned), this call's own
    scratch_bytes: int = 0  # how much of it this kernel has claimed (module.scratch_bytes is the max over kernels)
    threads: int = 1  # the program's thread count (compile time): lowerers split their work into parallel chunks
    in_place: frozenset[Node] = frozenset()  # outputs whose buffer is their donor input's (the memory plan's pairs)
    # those outputs → the input whose pointer addresses them (a donor buffer, or a param updated in place)
    aliases: Mapping[Node, Node] = field(default_factory=dict)
    claim: Claim | None = None  # inside a parallel chunk: scratch from this thread's own slice
    # constants this kernel reads packed (``codegen.prepack``): (node, spec), shared with its parallel chunks; None
    # when the module packs none
    packs: list[tuple[Node, Any]] | None = None
    # forward convs' measured algorithms (``Plan.algorithms``, by ``codegen.conv_choice.tuning_key``)
    algorithms: Mapping[str, str] = field(default_factory=dict)
    # GEMM anchors may apply their epilogue on the micro-kernels' registers (``Epilogue.store_form``)
    store_epilogues: bool = True

    def ptr(self, node: Node) -> ir.Value:
        return self.pointers[node]

    def const_value(self, node: Node) -> np.ndarray | None:
        """The value of a single-element ``const`` input (lets lowerers embed scalars), else None: a kernel's code
        never depends on a larger constant's values, so kernels differing only in those share one function
        (``codegen.module.kernel_signature``)."""
        return node.attrs["value"] if embeddable(node) else None

    def prepacked(self, node: Node, spec: Any) -> ir.Value | None:
        """A pointer to ``node`` packed as ``spec`` (a ``codegen.prepack.PackSpec``), when ``node`` is a constant
        the module may pack at compile time, else None. The pointer is ``node``'s own argument, which the entry then
        binds to the packed buffer instead of the constant: a lowerer that takes it must read ``node`` only through
        it, and ask once per node."""
        if self.packs is None or node.op != "const" or embeddable(node) or node.size == 0 \
                or node not in self.pointers or node in self.aliases.values():
            return None
        if any(n is node for n, _ in self.packs):
            raise LoweringError(f"internal error: constant {node.name} asked to be packed twice in one kernel")
        self.packs.append((node, spec))
        return self.pointers[node]

    def error_code(self, node: Node) -> int:
        """A status code that makes the runtime raise an error naming ``node``."""
        if node not in self.error_nodes:
            self.error_nodes.append(node)
        return self.error_nodes.index(node) + 1

    def scratch(self, nbytes: int, ty: ir.Type = I8) -> ir.Value:
        """A pointer to ``nbytes`` of scratch memory for this kernel, 64-byte aligned, as ``ty*``: planned memory
        the runtime allocates once per program (never the stack, which a small-stack thread would overflow)."""
        if self.claim is not None:
            return self.builder.bitcast(self.claim(nbytes), ty.as_pointer())
        if self.scratch_base is None:
            raise LoweringError(f"kernel {self.kernel.name} asked for scratch memory outside a program module")
        offset = self.scratch_bytes
        self.scratch_bytes = offset + -(-max(nbytes, 1) // 64) * 64
        region = self.builder.gep(self.scratch_base, [i64(offset)], inbounds=True)
        return self.builder.bitcast(region, ty.as_pointer())

    def parallel(self, name: str, chunks: int, body: Callable[..., None], shared: Sequence[ir.Value] = ()) -> None:
        """``for chunk in range(chunks): body(ctx, chunk, *shared)`` on the program's threads
        (``codegen.parallel``): the body gets a context of its own (the kernel's pointers and status, scratch from
        its thread's slice) and ``shared`` (values of this function, e.g. scratch all chunks use) as rebuilt in
        its function; it must write only its chunk's outputs. One thread, or one chunk: a plain loop here. An
        aliased output (``aliases``) is rebuilt from its input's pointer, not captured apart: the loop vectorizer
        then sees one base with equal indices (two captured copies would fail its runtime overlap check and run
        the scalar fallback loop)."""
        nodes = [n for n in self.pointers if n not in self.aliases]
        captured = [self.pointers[n] for n in nodes] + [self.status] + list(shared)
        count = len(nodes)

        def emit(b: ir.IRBuilder, chunk: ir.Value, values: list[ir.Value], claim: Claim) -> None:
            if b is self.builder:
                inner = self
            else:
                pointers = dict(zip(nodes, values[:count]))
                pointers.update((out, b.bitcast(pointers[src], pointer_type(out))) for out, src in self.aliases.items())
                inner = KernelContext(self.module, self.kernel, b.function, b, pointers, values[count],
                                      self.error_nodes, threads=1, in_place=self.in_place, aliases=self.aliases,
                                      claim=claim, packs=self.packs, algorithms=self.algorithms,
                                      store_epilogues=self.store_epilogues)
            body(inner, chunk, *values[count + 1:])

        region(self.module, self.builder, f"{self.function.name}.{name}", chunks, self.threads, captured, emit,
               lambda nbytes: self.scratch(nbytes))

    def elem(self, node: Node, offset: ir.Value) -> ir.Value:
        """Pointer to element ``offset`` of ``node``'s buffer."""
        return self.builder.gep(self.pointers[node], [offset], inbounds=True)


def kernel_key(kernel: Kernel) -> str:
    """Registry key of a kernel: its anchor's op, or ``"elementwise"`` for a fused elementwise group."""
    return "elementwise" if kernel.anchor is None else kernel.anchor.op


def find_lowerer(kernel: Kernel) -> Lowerer:
    """The lowerer of ``kernel``; a :class:`LoweringError` naming the op and its creation site if none."""
    key = kernel_key(kernel)
    fn = LOWERERS.get(key)
    if fn is None:
        anchor = next((n for n in kernel.nodes if n.op == key), kernel.nodes[0])
        raise LoweringError(f"the llvm backend has no lowering for op {key!r} (node {anchor.name!r}, created at "
                            f"{anchor.site}); compile with backend='numpy' to run it in the interpreter")
    return fn


def pointer_type(node: Node) -> ir.PointerType:
    return memory_type(node.dtype).as_pointer()
