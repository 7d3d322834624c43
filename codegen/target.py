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

import ctypes
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from typing import Any

import llvmlite.binding as llvm
import llvmlite.ir as ir

import codegen.cache as object_cache
from codegen.split import split_module
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


def _parse(llvm_ir: str, context: Any = None) -> llvm.ModuleRef:
    """The verified module of ``llvm_ir`` (in ``context``; default the global one)."""
    try:
        module = llvm.parse_assembly(llvm_ir, context=context)
        module.verify()
    except RuntimeError as err:
        raise CodegenError(f"LLVM rejected the generated IR: {err}") from None
    return module


def _optimize(module: llvm.ModuleRef, tm: llvm.TargetMachine, run: Any = None) -> None:
    """O3 with loop and SLP vectorization, through the new pass manager; ``run``: the pipeline's raw entry point
    to call instead of llvmlite's locked one (see :func:`_unlocked`)."""
    pto = llvm.create_pipeline_tuning_options(speed_level=3)
    pto.loop_vectorization = True
    pto.slp_vectorization = True
    pto.loop_unrolling = True
    pb = llvm.create_pass_builder(tm, pto)
    if run is None:
        pb.getModulePassManager().run(module, pb)
    else:
        run(pb.getModulePassManager(), module, pb)


PARTS_META = "object_parts"  # cache metadata: the byte lengths of the parts' object files, concatenated
PART_BYTES = 100_000  # IR text per part below which splitting does not pay for its threads
MAX_PARTS = 8


def default_parts(ir_bytes: int) -> int:
    """How many parts a module of ``ir_bytes`` of IR text compiles as: one per ``PART_BYTES``, at most
    ``MAX_PARTS`` (``GRAPHC_COMPILE_PARTS`` overrides). It does not depend on the machine's cores (they only decide
    how many parts compile at once), so a program's machine code is the same everywhere."""
    forced = os.environ.get("GRAPHC_COMPILE_PARTS")
    if forced:
        if not forced.isdigit() or int(forced) < 1:
            raise GraphcError(f"GRAPHC_COMPILE_PARTS must be a positive integer, got {forced!r}")
        return int(forced)
    return max(1, min(MAX_PARTS, ir_bytes // PART_BYTES))


def _unlocked(name: str) -> Any:
    """llvmlite's ctypes function ``name`` without the process-wide lock llvmlite puts around every LLVM call
    (None when this llvmlite wraps its functions differently: then the parts compile one at a time). Only the two
    long calls of a part — its O3 pipeline and its machine code — run unlocked, on a module, pass builder and
    TargetMachine of that part's own (LLVM compiles independent LLVMContexts concurrently, as its parallel
    code generation does)."""
    return getattr(getattr(llvm.ffi.lib, name, None), "_cfn", None)


def _compile_part(text: str) -> bytes:
    """One part's object code: parsed in an LLVMContext of its own, O3, machine code."""
    module = _parse(text, context=llvm.create_context())
    tm = new_target_machine()
    run, emit = _unlocked("LLVMPY_RunNewModulePassManager"), _unlocked("LLVMPY_TargetMachineEmitToMemory")
    if run is None or emit is None:
        _optimize(module, tm)
        return tm.emit_object(module)
    _optimize(module, tm, run)
    with llvm.ffi.OutputString() as error:
        buffer = emit(tm, module, 1, error)
        if not buffer:
            raise CodegenError(f"LLVM could not generate machine code: {error}")
    try:
        return ctypes.string_at(llvm.ffi.lib.LLVMPY_GetBufferStart(buffer), llvm.ffi.lib.LLVMPY_GetBufferSize(buffer))
    finally:
        llvm.ffi.lib.LLVMPY_DisposeMemoryBuffer(buffer)


def compile_parts(llvm_ir: str, parts: int) -> list[bytes]:
    """The object files of ``llvm_ir`` split into ``parts`` (``codegen.split``), compiled on parallel threads
    (llvmlite releases the GIL inside LLVM)."""
    texts = split_module(llvm_ir, parts)
    if len(texts) == 1:
        return [_compile_part(texts[0])]
    with ThreadPoolExecutor(max_workers=min(len(texts), os.cpu_count() or 1)) as pool:
        return list(pool.map(_compile_part, texts))


def _unpack(data: bytes, lengths: Any) -> list[bytes] | None:
    """The parts' object files from a cache entry (None when the lengths do not add up: a damaged entry)."""
    if not isinstance(lengths, list) or not all(type(n) is int and n > 0 for n in lengths) \
            or sum(lengths) != len(data):
        return None
    out, pos = [], 0
    for n in lengths:
        out.append(data[pos:pos + n])
        pos += n
    return out


class Jit:
    """JIT-compiles one LLVM IR module for the host; ``address(symbol)`` gives callable entry points.

    ``llvm_ir`` is the IR text or a function producing it; with a function and a ``key`` naming a cached object,
    the IR is never produced unless inspected (``llvm_ir``, ``optimized_ir``, ``asm``)."""

    def __init__(self, llvm_ir: str | Callable[[], str], name: str = "graphc", cache: bool = True,
                 key: str | None = None, meta: dict[str, Any] | None = None,
                 entry: object_cache.Entry | None = None, parts: int | None = None) -> None:
        """``meta`` is stored with freshly compiled object code; ``entry`` an already loaded (verified) cache entry
        for ``key``. After construction ``meta`` is the entry's metadata on a hit. ``parts``: compile the module as
        that many parts in parallel (``codegen.split``; default :func:`default_parts`)."""
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
        objects: list[bytes] | None = None  # separately compiled parts (codegen.split), linked by MCJIT
        if cached is not None and PARTS_META in self.meta:
            objects = _unpack(cached, self.meta[PARTS_META])
            if objects is None:  # a damaged entry: compile again
                cached, self.meta = None, dict(meta or {})
        if cached is None:
            count = parts if parts is not None else default_parts(len(self.llvm_ir))
            if count > 1:
                objects = compile_parts(self.llvm_ir, count)
                if self.cache_key is not None:
                    self.meta[PARTS_META] = [len(o) for o in objects]
                    object_cache.store(self.cache_key, b"".join(objects), self.meta)
        if objects is not None:  # MCJIT compiles an empty module and links the parts' object files
            module = _parse(str(new_module(name)))
        elif cached is None:
            module = _parse(self.llvm_ir)
            _optimize(module, new_target_machine())
        else:  # MCJIT compiles nothing: the object cache hands it the object for this empty module
            module = _parse(str(new_module(name)))
        self._tm = new_target_machine()  # owned by this engine alone
        with _lock:
            self._engine = llvm.create_mcjit_compiler(module, self._tm)
            if objects is not None:
                for obj in objects:
                    self._engine.add_object_file(llvm.ObjectFileRef.from_data(obj))
            elif self.cache_path is not None:
                self._engine.set_object_cache(self._notify, lambda _module: cached)
            self._engine.finalize_object()
        self.cache_hit = cached is not None
        self.parts = len(objects) if objects is not None else 1

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
