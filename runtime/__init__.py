"""Backends that execute programs: the NumPy interpreter (reference: the graph node by node, or the compiled Plan
with ``backend="numpy-plan"``) and the native LLVM backend (``runtime.native``, loaded on first use)."""

from __future__ import annotations

from typing import Any

from graphc.ir import GraphcError
from runtime.interpreter import InterpreterProgram, PlanInterpreterProgram
from runtime.parallel import check_threads
from runtime.program import Program

BACKENDS = ("numpy", "llvm", "numpy-plan")  # numpy-plan: the NumPy interpreter running the compiled Plan
DEFAULT_BACKEND = "llvm"


def make_program(outputs: Any, backend: str | None = None, updates: Any = None, **options: Any) -> Program:
    backend = backend or DEFAULT_BACKEND
    if backend in ("numpy", "numpy-plan"):
        unknown = sorted(set(options) - {"threads"})  # the interpreters run on NumPy (its BLAS has its own threads)
        if unknown:
            raise GraphcError(f"compile: unknown options for the {backend} backend: {unknown}")
        check_threads(options.get("threads"))
        return (InterpreterProgram if backend == "numpy" else PlanInterpreterProgram)(outputs, updates)
    if backend == "llvm":
        from runtime.native import NativeProgram  # imports llvmlite only when asked for

        unknown = sorted(set(options) - {"cache", "threads"})
        if unknown:
            raise GraphcError(f"compile: unknown options for the llvm backend: {unknown}")
        return NativeProgram(outputs, updates, **options)
    raise GraphcError(f"compile: unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")


__all__ = ["BACKENDS", "DEFAULT_BACKEND", "InterpreterProgram", "PlanInterpreterProgram", "Program", "make_program"]
