"""Splitting one program's LLVM module into parts that compile in parallel.

LLVM's optimizer and code generator run one module on one thread, and a network's program is one module of
hundreds of kernel functions, independent of each other: cold compile of ResNet-50 is ~3 s of CPU, 95 % of it O3
and machine code for the kernels. :func:`split_module` cuts the IR text into ``parts`` modules that each compile on
their own thread (their own ``LLVMContext``) into object files MCJIT then links into one engine:

- every function definition is a block from a line ``define ...`` to the line ``}``; what is left (target, types,
  declarations) is the header every part repeats;
- a kernel and the functions outlined from it (its parallel chunk bodies, ``gkN_*``) stay together, and so does
  any other function with the functions outlined from it (``f.rows.body`` with ``f``); the entry points
  (``graphc_*``) are in part 0; helpers LLVM inlines (the math library's ``exp``, ``log``, a parallel region's
  worker) are copied, internal, into every part that uses them, with declarations of what they call; the kernels
  and the shared ``noinline`` helpers (GEMM packers and micro-kernels, one per shape and geometry) are balanced
  over the parts by IR size — ResNet-50 has 33 such helpers, 0.6 MB of IR: kept together in part 0 they were the
  longest part (1.0 s of its 2.7 s of compile CPU);
- a part declares each function of another part it references, and every function gets external linkage (an
  object file can only call another's external symbols).

Kernels, chunk bodies and GEMM helpers are ``noinline`` and called through pointers or from the entry point, so
no optimization crossed them before the split: the parts compile to the same machine code per function.
"""

from __future__ import annotations

import re

_DEFINE = re.compile(r'^define [^\n]*?@("(?:[^"]+)"|[\w.$]+)\(', re.M)
_KERNEL = re.compile(r'^"?gk(\d+)_')


def _blocks(text: str) -> tuple[str, list[tuple[str, str]]]:
    """(the text without function definitions, [(function name as written, its definition)])."""
    blocks: list[tuple[str, str]] = []
    header: list[str] = []
    pos = 0
    for match in _DEFINE.finditer(text):
        if match.start() < pos:
            continue
        end = text.index("\n}\n", match.start()) + 3
        header.append(text[pos:match.start()])
        blocks.append((match.group(1), text[match.start():end]))
        pos = end
    header.append(text[pos:])
    return "".join(header), blocks


def _declaration(block: str) -> str:
    """``declare`` for a definition: its return type, name and parameter list (attributes dropped)."""
    line = block.split("\n", 1)[0]
    head = line[len("define "):]
    for linkage in ("internal ", "private "):
        if head.startswith(linkage):
            head = head[len(linkage):]
    depth, end = 0, None
    start = head.index("(", head.index("@"))
    for i in range(start, len(head)):
        depth += {"(": 1, ")": -1}.get(head[i], 0)
        if depth == 0:
            end = i + 1
            break
    assert end is not None, line
    return f"declare {head[:end]}\n"


def _external(block: str) -> str:
    """The definition with external linkage (another part may call it)."""
    first, rest = block.split("\n", 1)
    return first.replace("define internal ", "define ", 1).replace("define private ", "define ", 1) + "\n" + rest


def split_module(text: str, parts: int) -> list[str]:
    """``text`` as ``parts`` module texts (fewer when there are fewer kernels), see the module docstring."""
    header, blocks = _blocks(text)
    groups: dict[str, list[tuple[str, str]]] = {}
    inlined: dict[str, str] = {}  # helpers LLVM inlines (math functions): a private copy in every part using them
    names = {name.strip('"') for name, _ in blocks}
    for name, block in blocks:
        match = _KERNEL.match(name)
        first = block.split("\n", 1)[0] + " "
        if not match and first.startswith("define internal ") and " noinline " not in first:
            inlined[name] = block
            continue
        bare = name.strip('"')
        group = f"gk{match.group(1)}" if match else "" if bare.startswith("graphc_") else _owner(bare, names)
        groups.setdefault(group, []).append((name, block))
    shared = groups.pop("", [])
    kernels = sorted(groups.values(), key=lambda g: -sum(len(b) for _, b in g))
    parts = max(1, min(parts, len(kernels) + 1))
    members: list[list[tuple[str, str]]] = [list(shared)] + [[] for _ in range(parts - 1)]
    sizes = [sum(len(b) for _, b in shared)] + [0] * (parts - 1)
    for group in kernels:
        i = min(range(parts), key=sizes.__getitem__)
        members[i].extend(group)
        sizes[i] += sum(len(b) for _, b in group)
    texts = []
    for own in members:
        if not own:
            continue
        body = "".join(_external(block) for _, block in own)
        copies = _used(inlined, body)
        while True:  # helpers calling helpers
            more = _used({k: v for k, v in inlined.items() if k not in copies}, "".join(copies.values()))
            if not more:
                break
            copies.update(more)
        defined = {name for name, _ in own} | set(copies)
        copied = "".join(copies.values())
        used = _used({name: block for name, block in blocks if name not in defined}, body + copied)
        texts.append(header.rstrip("\n") + "\n" + body + copied + "".join(map(_declaration, used.values())))
    return texts


def _owner(name: str, names: set[str]) -> str:
    """The function ``name`` was outlined from (``f.rows.body`` → ``f``, when ``f`` is defined), else itself."""
    head = name
    while "." in head:
        head = head.rsplit(".", 1)[0]
        if head in names:
            name = head
    return name


def _used(functions: dict[str, str], text: str) -> dict[str, str]:
    """The entries of ``functions`` (name → definition) that ``text`` references."""
    return {name: block for name, block in functions.items()
            if re.search(re.escape(f"@{name}") + r"(?![\w.$])", text)}
