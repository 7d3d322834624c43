"""Host target, O3 optimization, MCJIT and the on-disk object-code cache.

- The target is the host CPU (name and features) plus ``-prefer-256-bit`` so LLVM uses 512-bit vectors where
  the CPU has them.
- Every :class:`Jit` creates its own ``TargetMachine`` (one must never be shared between two MCJIT engines).
- Optimization is O3 through the new pass manager.
- The object cache lives in ``$GRAPHC_CACHE_DIR`` (default ``~/.cache/graphc``); an entry is keyed by
  sha256(IR text, CPU name, features, graphc version), or by a caller's key computed *before* any IR exists (the
  runtime hashes a canonical description of the Plan with :func:`fingerprint`), next to an optional JSON file of
  metadata. ``GRAPHC_CACHE=0`` disables it. On a hit with a caller's key neither IR generation, parsing, the O3
  pipeline nor machine-code generation runs: MCJIT is given an empty module and loads the cached object for it,
  and the IR is produced only if someone inspects it.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import threading
from collections.abc import Callable
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any

import llvmlite.binding as llvm
import llvmlite.ir as ir

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


@cache
def _version() -> str:
    try:
        return metadata.version("graphc")
    except metadata.PackageNotFoundError:
        return "dev"


def cache_dir() -> str:
    """Directory of the object-code cache (``$GRAPHC_CACHE_DIR`` or ``~/.cache/graphc``)."""
    return os.environ.get("GRAPHC_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "graphc")


def cache_enabled() -> bool:
    return os.environ.get("GRAPHC_CACHE", "1").strip().lower() not in ("0", "false", "no", "off")


def cache_key(llvm_ir: str) -> str:
    """sha256 over the IR text, the CPU name, its features and the graphc version."""
    _, cpu, features = host()
    digest = hashlib.sha256()
    for part in (llvm_ir, cpu, features, _version()):
        digest.update(part.encode())
        digest.update(b"\0")
    return digest.hexdigest()


@cache
def fingerprint() -> str:
    """What, besides a Plan, decides the generated code: CPU name and features, graphc and llvmlite versions and
    the source of the compiler itself (``codegen``, ``ops``, ``passes``, ``graphc/ir.py``; hashed once per
    process), so a key built on it never names stale object code, even in a development checkout."""
    _, cpu, features = host()
    root = Path(__file__).resolve().parent.parent
    digest = hashlib.sha256(f"{cpu}\0{features}\0{_version()}\0{llvm.llvm_version_info}".encode())
    files = sorted(p for d in ("codegen", "ops", "passes") for p in (root / d).glob("*.py"))
    for path in files + [root / "graphc" / "ir.py"]:
        try:
            digest.update(path.name.encode() + b"\0" + path.read_bytes())
        except OSError:
            digest.update(path.name.encode() + b"\0?")
    return digest.hexdigest()


def _atomic_write(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename (a failure only costs the cache)."""
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except OSError:
        pass


def read_meta(key: str) -> dict[str, Any] | None:
    """The JSON metadata stored under ``key`` next to its object code (None when absent, unreadable or off)."""
    if not cache_enabled():
        return None
    try:
        with open(os.path.join(cache_dir(), key + ".json"), encoding="utf-8") as f:
            meta = json.load(f)
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) else None


def write_meta(key: str, meta: dict[str, Any]) -> None:
    """Store ``meta`` as JSON under ``key`` (atomically; nothing when the cache is off)."""
    if cache_enabled():
        _atomic_write(os.path.join(cache_dir(), key + ".json"), json.dumps(meta).encode())


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
                 key: str | None = None) -> None:
        _initialized()
        self.name = name
        self._ir = llvm_ir if isinstance(llvm_ir, str) else None
        self._ir_source = None if isinstance(llvm_ir, str) else llvm_ir
        self.cache_path: str | None = None
        self.cache_hit = False
        if cache and cache_enabled():
            self.cache_path = os.path.join(cache_dir(), (key or cache_key(self.llvm_ir)) + ".o")
        self._optimized: str | None = None
        self._asm: str | None = None
        cached = self._read_cache()
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
    def _read_cache(self) -> bytes | None:
        if self.cache_path is None:
            return None
        try:
            with open(self.cache_path, "rb") as f:
                data = f.read()
        except OSError:
            return None
        return data or None

    def _notify(self, _module: llvm.ModuleRef, data: bytes) -> None:
        """Store freshly generated object code (atomically; a failure only costs the cache)."""
        if self.cache_path is None or self.cache_hit or os.path.exists(self.cache_path):
            return
        _atomic_write(self.cache_path, data)

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
