"""Backends that execute programs: the NumPy interpreter (reference: the graph node by node, or the compiled Plan
with ``backend="numpy-plan"``) and the native LLVM backend (``runtime.native``, loaded on first use)."""

from __future__ import annotations

from typing import Any

from graphc.ir import GraphcError
from passes.freeze import freeze as freeze_outputs
from runtime.interpreter import InterpreterProgram, PlanInterpreterProgram
from runtime.parallel import check_threads
from runtime.program import Program, _normalize_outputs, _with_implicit_updates

BACKENDS = ("numpy", "llvm", "numpy-plan")  # numpy-plan: the NumPy interpreter running the compiled Plan
DEFAULT_BACKEND = "llvm"


def make_program(outputs: Any, backend: str | None = None, updates: Any = None, freeze: bool = False,
                 **options: Any) -> Program:
    """A program of ``outputs`` on ``backend``; ``freeze``: params as constant snapshots (``passes.freeze``)."""
    if not isinstance(freeze, bool):
        raise GraphcError(f"compile: freeze must be True or False, got {freeze!r}")
    report: list[str] = []
    if freeze:
        outputs, report = _frozen(outputs, updates)
    program = _make(outputs, backend, updates, **options)
    program.frozen = freeze
    program.freeze_report = report
    return program


def _frozen(outputs: Any, updates: Any) -> tuple[Any, list[str]]:
    """``outputs`` (in the same form: one tensor, list or dict) computed by the frozen copy of their graph."""
    names, nodes, form = _normalize_outputs(outputs)
    if updates:
        raise GraphcError("compile(freeze=True) builds an inference program, which has no state updates; compile "
                          "without freeze=True to train")
    implicit = _with_implicit_updates(nodes[0].graph, nodes, [])
    if implicit:
        param, value = implicit[0]
        raise GraphcError(f"compile(freeze=True): {value.name!r} (created at {value.site}) would update param "
                          f"{param.name!r} on every call (a batch_norm in training mode?); build the graph for "
                          "inference (training=False) to freeze it")
    result = freeze_outputs(nodes)
    if form == "dict":
        return dict(zip(names, result.outputs)), result.report
    return (result.outputs[0] if form == "single" else list(result.outputs)), result.report


def _make(outputs: Any, backend: str | None, updates: Any, **options: Any) -> Program:
    backend = backend or DEFAULT_BACKEND
    if backend in ("numpy", "numpy-plan"):
        unknown = sorted(set(options) - {"threads"})  # the interpreters run on NumPy (its BLAS has its own threads)
        if unknown:
            raise GraphcError(f"compile: unknown options for the {backend} backend: {unknown}")
        check_threads(options.get("threads"))
        return (InterpreterProgram if backend == "numpy" else PlanInterpreterProgram)(outputs, updates)
    if backend == "llvm":
        from runtime.native import NativeProgram  # imports llvmlite only when asked for

        unknown = sorted(set(options) - {"cache", "threads", "tune"})
        if unknown:
            raise GraphcError(f"compile: unknown options for the llvm backend: {unknown}")
        return NativeProgram(outputs, updates, **options)
    raise GraphcError(f"compile: unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")


__all__ = ["BACKENDS", "DEFAULT_BACKEND", "InterpreterProgram", "PlanInterpreterProgram", "Program", "make_program"]
