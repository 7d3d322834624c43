"""Backends that execute programs: the NumPy interpreter (reference) and, later, native code."""

from __future__ import annotations

from typing import Any

from graphc.ir import GraphcError
from runtime.interpreter import InterpreterProgram
from runtime.program import Program

BACKENDS = ("numpy", "llvm")
DEFAULT_BACKEND = "numpy"


def make_program(outputs: Any, backend: str | None = None, updates: Any = None, **options: Any) -> Program:
    backend = backend or DEFAULT_BACKEND
    if backend == "numpy":
        if options:
            raise GraphcError(f"compile: unknown options for the numpy backend: {sorted(options)}")
        return InterpreterProgram(outputs, updates)
    if backend == "llvm":
        raise GraphcError("compile: the llvm backend is not available in this build; use backend='numpy'")
    raise GraphcError(f"compile: unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")


__all__ = ["BACKENDS", "DEFAULT_BACKEND", "InterpreterProgram", "Program", "make_program"]
