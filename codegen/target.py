"""Host target, O3 optimization, MCJIT and the on-disk object-code cache.

- The target is the host CPU (name and features) plus ``-prefer-256-bit`` so LLVM uses 512-bit vectors where
  the CPU has them.
- Every :class:`Jit` creates its own ``TargetMachine`` (one must never be shared between two MCJIT engines).
- Optimization is O3 through the new pass manager.
- Object code is cached on disk (``codegen.cache``: verified entries, atomic replacement), keyed by
  sha256(IR text, CPU name, features, graphc version), or by a caller's key computed *before* any IR exists (the
  runtime hashes a canonical description of the Plan with :func:`fingerprint`), with a small JSON of metadata in
  the same entry. ``GRAPHC_CACHE=0`` disables it. On a hit with a caller's key neither IR generation, parsing, the
  O3 pipeline nor machine-code generation runs: MCJIT is given an empty module and loads the cached object for
  it, and the IR is produced only if someone inspects it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from functools import cache
from typing import Any

import llvmlite.binding as llvm
import llvmlite.ir as ir

import codegen.cache as object_cache
from graphc.ir import GraphcError

_lock = threading.Lock()


class CodegenError(GraphcError):
    """LLVM rejected generated IR, or a symbol is missing from a compiled module."""


@cache
def _initialized() -> bool:
    llvm.initialize_native_target()
    llvm.initialize_native_asmprinter()
    return True


@cache
def host() -> tuple[str, str, str]:
    """(triple, CPU name, feature string) of this machine, with ``-prefer-256-bit`` appended."""
    _initialized()
    features = llvm.get_host_cpu_features().flatten()
    features = f"{features},-prefer-256-bit" if features else "-prefer-256-bit"
    return llvm.get_process_triple(), llvm.get_host_cpu_name(), features


def has_avx512() -> bool:
    """True when the host CPU has AVX-512F (so vectorized kernels use zmm registers)."""
    return "+avx512f" in host()[2].split(",")


def new_target_machine(opt: int = 3) -> llvm.TargetMachine:
    """A fresh TargetMachine for the host (never share one between engines)."""
    triple, cpu, features = host()
    return llvm.Target.from_triple(triple).create_target_machine(cpu=cpu, features=features, opt=opt,
                                                                  reloc="default", codemodel="jitdefault")


@cache
def _data_layout() -> str:
    return str(new_target_machine().target_data)


def new_module(name: str) -> ir.Module:
    """An empty llvmlite module with the host triple and data layout set."""
    module = ir.Module(name=name)
    module.triple = host()[0]
    module.data_layout = _data_layout()
    return module


def fingerprint() -> str:
    """What, besides a Plan, decides the generated code on this host (see :func:`codegen.cache.fingerprint`)."""
    _, cpu, features = host()
    return object_cache.fingerprint(cpu, features, tuple(llvm.llvm_version_info))


def cache_key(llvm_ir: str) -> str:
    """The cache key of a bare IR module on this host (see :func:`codegen.cache.cache_key`)."""
    _, cpu, features = host()
    return object_cache.cache_key(llvm_ir, cpu, features)


def _parse(llvm_ir: str) -> llvm.ModuleRef:
    try:
        module = llvm.parse_assembly(llvm_ir)
        module.verify()
    except RuntimeError as err:
        raise CodegenError(f"LLVM rejected the generated IR: {err}") from None
    return module


def _optimize(module: llvm.ModuleRef, tm: llvm.TargetMachine) -> None:
    """O3 with loop and SLP vectorization, through the new pass manager."""
    pto = llvm.create_pipeline_tuning_options(speed_level=3)
    pto.loop_vectorization = True
    pto.slp_vectorization = True
    pto.loop_unrolling = True
    pb = llvm.create_pass_builder(tm, pto)
    pb.getModulePassManager().run(module, pb)


class Jit:
    """JIT-compiles one LLVM IR module for the host; ``address(symbol)`` gives callable entry points.

    ``llvm_ir`` is the IR text or a function producing it; with a function and a ``key`` naming a cached object,
    the IR is never produced unless inspected (``llvm_ir``, ``optimized_ir``, ``asm``)."""

    def __init__(self, llvm_ir: str | Callable[[], str], name: str = "graphc", cache: bool = True,
                 key: str | None = None, meta: dict[str, Any] | None = None,
                 entry: object_cache.Entry | None = None) -> None:
        """``meta`` is stored with freshly compiled object code; ``entry`` an already loaded (verified) cache entry
        for ``key``. After construction ``meta`` is the entry's metadata on a hit."""
        _initialized()
        self.name = name
        self._ir = llvm_ir if isinstance(llvm_ir, str) else None
        self._ir_source = None if isinstance(llvm_ir, str) else llvm_ir
        self.cache_key: str | None = None
        self.cache_path: str | None = None
        self.cache_hit = False
        self.meta = dict(meta or {})
        if cache and object_cache.cache_enabled():
            self.cache_key = key or cache_key(self.llvm_ir)
            self.cache_path = object_cache.entry_path(self.cache_key)
            if entry is None or entry.key != self.cache_key:
                entry = object_cache.load(self.cache_key)
        else:
            entry = None
        cached = entry.object if entry is not None else None
        if entry is not None:
            self.meta = dict(entry.meta)
        self._optimized: str | None = None
        self._asm: str | None = None
        if cached is None:
            module = _parse(self.llvm_ir)
            _optimize(module, new_target_machine())
            self._optimized = str(module)
        else:  # MCJIT compiles nothing: the object cache hands it the object for this empty module
            module = _parse(str(new_module(name)))
        self._tm = new_target_machine()  # owned by this engine alone
        with _lock:
            self._engine = llvm.create_mcjit_compiler(module, self._tm)
            if self.cache_path is not None:
                self._engine.set_object_cache(self._notify, lambda _module: cached)
            self._engine.finalize_object()
        self.cache_hit = cached is not None

    @property
    def llvm_ir(self) -> str:
        """The module's IR text (produced on first use when it was given as a function)."""
        if self._ir is None:
            assert self._ir_source is not None
            self._ir = self._ir_source()
        return self._ir

    # -- object cache ----------------------------------------------------------------------------------
    def _notify(self, _module: llvm.ModuleRef, data: bytes) -> None:
        """Store freshly generated object code with its metadata (replacing any damaged entry)."""
        if self.cache_key is not None and not self.cache_hit:
            object_cache.store(self.cache_key, data, self.meta)

    # -- access ----------------------------------------------------------------------------------------
    def address(self, symbol: str) -> int:
        """Address of a compiled function; a :class:`CodegenError` when the module has no such symbol."""
        addr = self._engine.get_function_address(symbol)
        if not addr:
            raise CodegenError(f"symbol {symbol!r} not found in JIT module {self.name!r}")
        return addr

    @property
    def optimized_ir(self) -> str:
        """The module's IR after O3 (recomputed when the object came from the cache)."""
        if self._optimized is None:
            module = _parse(self.llvm_ir)
            _optimize(module, new_target_machine())
            self._optimized = str(module)
        return self._optimized

    @property
    def asm(self) -> str:
        """Host assembly of the optimized module (produced on first use)."""
        if self._asm is None:
            module = _parse(self.optimized_ir)
            self._asm = new_target_machine().emit_assembly(module)
        return self._asm
