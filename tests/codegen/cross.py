"""Cross-compilation for the tests that check another ISA's code on any host (AVX2 on AVX-512 machines and back)."""

from __future__ import annotations

import llvmlite.binding as llvm
import llvmlite.ir as ir

from codegen.target import host
from runtime.asm import asm_functions


def cross_asm(module: ir.Module, cpu: str) -> dict[str, str]:
    """The assembly of ``module`` for ``cpu`` (the host's triple, O3, 512-bit vectors allowed), by function."""
    parsed = llvm.parse_assembly(str(module))
    tm = llvm.Target.from_triple(host()[0]).create_target_machine(cpu=cpu, features="-prefer-256-bit", opt=3)
    pb = llvm.create_pass_builder(tm, llvm.create_pipeline_tuning_options(speed_level=3))
    pb.getModulePassManager().run(parsed, pb)
    return asm_functions(tm.emit_assembly(parsed))


def depth_loop(body: str) -> str:
    """A micro-kernel's depth loop in its assembly: from the first aligned loop header to its back edge."""
    loop = body[body.index(".p2align"):]
    return loop[:loop.index("jne")]
