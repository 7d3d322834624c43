"""The LLVM and assembly sections of ``prog.explain`` (llvm backend): the kernel's function, the IR lines tagged
as computing the node (``codegen.nodemap``), and the function's host assembly with its vector width.

It reads the program only through its ``module`` and ``asm()`` (importing ``runtime.native`` would close an import
cycle through ``runtime.program``); the assembly is read with ``runtime.asm``.
"""

from __future__ import annotations

import re
from typing import Any

from codegen.nodemap import function_text, node_lines
from passes.plan import Plan
from runtime.asm import asm_functions, callees, count_registers, vector_width

MAX_IR_LINES = 40
STORE_CALL = re.compile(r'call .*@"?[^"(\s]*\.store_')  # a GEMM applying an epilogue at its store
MAX_ASM_LINES = 60

WIDTHS = {"zmm": "512-bit vectors", "ymm": "256-bit vectors", "xmm": "128-bit vectors",
          "scalar": "scalar (no packed vector instructions)"}


def llvm_sections(ex: Any, plan: Plan, program: Any) -> list[tuple[str, list[str]]]:
    """The ``LLVM`` and ``assembly`` sections of the explanation ``ex`` for ``program`` (a NativeProgram); sets
    ``ex.function``, ``ex.ir_lines``, ``ex.asm`` and ``ex.vector_width``."""
    k, p = ex.kernel, ex.computed_by
    if k is None or p is None:
        return [("LLVM", ["none: no kernel computes this value (it is bound memory or was simplified away)"])]
    module = program.module
    fn = module.kernel_functions[k.name]
    ex.function = fn
    text = module.ir_text
    bodies = function_text(text, fn)
    position = next(i for i, m in enumerate(k.nodes) if m is p)
    sharing = sorted(name for name, f in module.kernel_functions.items() if f == fn and name != k.name)
    lines = [f"function @{fn} (kernel {k.name})" + (f"; shared with {', '.join(sharing)} (same code, the tags "
                                                      "name the first kernel's nodes)" if sharing else "")]
    lines += [f"outlined parallel chunk body @{name}" for name in bodies if name != fn]
    main = bodies.get(fn, [])
    if main:
        lines.append(f"signature: {main[0].rstrip(' {')}")
    ex.ir_lines = [re.sub(r"\s+", " ", line) for line in node_lines(text, fn, position)]
    if p is not k.anchor and not ex.ir_lines:
        lines.append(f"no IR of its own: {p.op} {p.name!r} is read in place by the code of {k.anchor.name!r}"
                     if k.anchor is not None else f"no IR lines are tagged as computing {p.name!r}")
    elif ex.ir_lines:
        lines.append(f"IR lines computing {p.name!r} (tagged !graphc.node, as emitted, before O3):")
        if any(STORE_CALL.search(line) for line in ex.ir_lines):
            lines.append(f"  ({p.op} runs on the GEMM's registers: the called GEMM's micro-kernels apply it at their "
                         "store, codegen.gemm.store_epilogue)")
        lines += [f"  {line}" for line in ex.ir_lines[:MAX_IR_LINES]]
        if len(ex.ir_lines) > MAX_IR_LINES:
            lines.append(f"  ... {len(ex.ir_lines) - MAX_IR_LINES} more (explanation.ir_lines)")
    else:
        total = sum(len(b) for b in bodies.values())
        ex.ir_lines = [line for b in bodies.values() for line in b]
        lines.append(f"the whole function computes it ({p.op} is the kernel's structured node; {total} lines of IR "
                     "as emitted, explanation.ir_lines)")
    return [("LLVM", lines), ("assembly", _assembly(ex, program, fn, list(bodies)))]










def _assembly(ex: Any, program: Any, fn: str, names: list[str]) -> list[str]:
    functions = asm_functions(program.asm())
    parts = [(name, functions[name]) for name in callees(functions, names)]
    ex.asm = "\n".join(f"{name}:\n{body}" for name, body in parts)
    counts = count_registers(ex.asm)
    width = vector_width(ex.asm)
    ex.vector_width = WIDTHS[width]
    body_lines = [line for line in ex.asm.splitlines() if line.strip() and not line.lstrip().startswith(".")]
    instructions = sum(1 for line in body_lines if line.startswith("\t") or line.startswith(" "))
    helpers = [name for name, _ in parts if name not in names]
    lines = [f"vector width: {WIDTHS[width]} ({', '.join(f'{k}: {v}' for k, v in counts.items())} register uses)",
             f"{instructions} instructions in {len(parts)} function(s), host assembly after O3"
             + (f"; it calls {', '.join(helpers)}" if helpers else "") + ":"]
    lines += [f"  {line.strip()}" if not line.endswith(":") else line for line in body_lines[:MAX_ASM_LINES]]
    if len(body_lines) > MAX_ASM_LINES:
        lines.append(f"  ... {len(body_lines) - MAX_ASM_LINES} more lines (explanation.asm)")
    return lines
