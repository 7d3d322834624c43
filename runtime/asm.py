"""Reading host assembly: the module's text split into functions, the functions a kernel reaches (its parallel
chunk bodies, GEMM micro-kernels and packing routines) and the widest vector registers they use."""

from __future__ import annotations

import re


def asm_functions(asm: str) -> dict[str, str]:
    """Function label → its assembly lines (up to its ``.Lfunc_end`` label)."""
    bodies: dict[str, list[str]] = {}
    current: str | None = None
    for line in asm.splitlines():
        m = re.match(r"^([A-Za-z_.$][\w.$]*):", line)
        if m and not m.group(1).startswith(".L"):
            current = m.group(1)
            bodies[current] = []
        elif current is not None and line.startswith(".Lfunc_end"):
            current = None
        elif current is not None:
            bodies[current].append(line)
    return {k: "\n".join(v) for k, v in bodies.items()}


def callees(functions: dict[str, str], names: list[str]) -> list[str]:
    """``names`` and every module function they call or take the address of, transitively (GEMM micro-kernels,
    packing routines, parallel chunk bodies)."""
    found = [n for n in names if n in functions]
    for name in found:
        for ref in re.findall(r"(?:\$|call[q]?\s+)([A-Za-z_.$][\w.$]*)", functions[name]):
            if ref in functions and ref not in found:
                found.append(ref)
    return found


def count_registers(asm: str) -> dict[str, int]:
    """How many times ``asm`` names a zmm, ymm and xmm register."""
    return {kind: len(re.findall(rf"%{kind}\d+", asm)) for kind in ("zmm", "ymm", "xmm")}


def vector_width(asm: str) -> str:
    """The widest SIMD registers ``asm`` uses: zmm, ymm, xmm (packed instructions only) or scalar."""
    counts = count_registers(asm)
    if counts["zmm"] or counts["ymm"]:
        return "zmm" if counts["zmm"] else "ymm"
    return "xmm" if re.search(r"\bv?\w+p[sd]\s+.*%xmm", asm) else "scalar"
