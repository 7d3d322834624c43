"""Which IR lines compute which node: ``!graphc.node`` metadata on the instructions of fused formulas.

While a lowerer emits the scalar formula of one member of a fused group (``codegen.elementwise``, an anchor's
epilogue in ``codegen.epilogue``) inside :func:`computing`, every instruction it adds is tagged
``!graphc.node !{i32 POSITION, !"NAME"}``: the node's position in its kernel and its name (several pairs when one
instruction computes several nodes). LLVM ignores metadata
kinds it does not know, so the tags never change the optimized code; they only make the emitted IR readable
(``graphc explain``). Kernels with equal signatures share one function (``codegen.module``), whose tags name the
first kernel's nodes; the positions are the same in every kernel sharing it, so lookups go by position.

:func:`function_text` cuts a function (and the chunk bodies outlined from it, ``NAME.*``) out of the module text;
:func:`node_lines` returns the lines tagged with one position.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator

import llvmlite.ir as ir

from graphc.ir import Node
from passes.plan import Kernel

KIND = "graphc.node"
_I32 = ir.IntType(32)


def positions(kernel: Kernel) -> dict[Node, int]:
    """Each node of ``kernel`` → its position in ``kernel.nodes`` (what the tags record)."""
    return {n: i for i, n in enumerate(kernel.nodes)}


@contextlib.contextmanager
def computing(module: ir.Module, builder: ir.IRBuilder, node: Node, position: int,
              *more: tuple[Node, int]) -> Iterator[None]:
    """Tag the instructions ``builder`` emits inside the block (including new basic blocks) as computing ``node``,
    the kernel's node at ``position`` (and the (node, position) pairs in ``more``: one instruction computing several,
    as the call of a GEMM whose micro-kernels apply a chain of them at their store)."""
    block = builder.block
    start = len(block.instructions)
    function = block.function
    blocks = len(function.blocks)
    yield
    tag = module.add_metadata([item for n, at in ((node, position), *more)
                               for item in (ir.Constant(_I32, at), ir.MetaDataString(module, n.name))])
    for inst in block.instructions[start:] + [i for b in function.blocks[blocks:] for i in b.instructions]:
        if KIND not in inst.metadata:
            inst.set_metadata(KIND, tag)


def _function_name(line: str) -> str | None:
    m = re.match(r'define\b[^@]*@"?([^"(\s]+)"?\(', line)
    return m.group(1) if m else None


def function_text(ir_text: str, name: str) -> dict[str, list[str]]:
    """The lines of function ``name`` and of the functions outlined from it (``name.*``), by function name."""
    found: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in ir_text.splitlines():
        fn = _function_name(line) if line.startswith("define") else None
        if fn is not None and (fn == name or fn.startswith(name + ".")):
            current = found.setdefault(fn, [])
        if current is not None:
            current.append(line)
            if line.startswith("}"):
                current = None
    return found


def tags(ir_text: str) -> dict[str, set[int]]:
    """Metadata id (``!12``) → the node positions it names, for the module's ``!graphc.node`` tuples."""
    found: dict[str, set[int]] = {}
    for m in re.finditer(r'^(!\d+) = !\{((?:\s*i32 -?\d+, !"[^"]*",?)+)\s*\}', ir_text, re.M):
        found[m.group(1)] = {int(x) for x in re.findall(r'i32 (-?\d+), !"', m.group(2))}
    return found


def node_lines(ir_text: str, name: str, position: int) -> list[str]:
    """The lines of function ``name`` (and its outlined bodies) tagged as computing the kernel node at ``position``."""
    ids = {k for k, v in tags(ir_text).items() if position in v}
    pattern = re.compile(rf"!{re.escape(KIND)} (!\d+)")
    lines = []
    for body in function_text(ir_text, name).values():
        for line in body:
            m = pattern.search(line)
            if m and m.group(1) in ids:
                lines.append(line.strip())
    return lines
