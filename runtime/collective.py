"""The MPI entry points native programs call (``codegen.collective`` names them), bound once per communicator.

A program containing an ``allreduce`` calls ``graphc_rt_allreduce`` and ``graphc_rt_world_size``. Before such a
program is linked (freshly compiled or loaded from the object cache) :func:`prepare` registers the two symbols with
the JIT: a tiny module compiled here, never cached, that holds what must not be in cached code — the address of
``MPI_Allreduce`` in the MPI library mpi4py loaded, and the handles of graphc's communicator, of ``MPI_FLOAT`` /
``MPI_DOUBLE``, ``MPI_SUM`` and ``MPI_IN_PLACE`` as this process sees them (``MPI._handleof``: plain integers for
MPICH, addresses for Open MPI, ``MPI._sizeof`` bytes wide)::

    graphc_rt_allreduce(send, recv, n, kind): for each chunk of ≤ 2³⁰ elements:
        rc = MPI_Allreduce(send == recv ? MPI_IN_PLACE : send, recv, chunk, FLOAT|DOUBLE, SUM, comm)
        if rc: return rc
    graphc_rt_world_size(): p

Without MPI in the process (``ops.collective.communicator()`` is None) the bound module is the one-process
version: a copy when send ≠ recv, and p = 1. Programs bind what is current when they are linked: compile after
``graphc.distributed.init()``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
import threading
from typing import Any

import llvmlite.binding as llvm
import llvmlite.ir as ir

from codegen.collective import ALLREDUCE, WORLD_SIZE
from codegen.llvm import I8P, I32, I64
from codegen.target import CodegenError, Jit, new_module
from ops.collective import communicator
from ops.registry import get_op
from passes.plan import Plan

MPI_SYMBOL = "graphc_mpi_allreduce"  # MPI_Allreduce of the library mpi4py loaded, as the trampoline calls it
CHUNK = 1 << 30  # elements per MPI call (its count is a C int)
_lock = threading.Lock()
_bound: dict[Any, Jit] = {}  # communicator handle (None: no MPI) → its trampoline (kept alive: programs call it)
_current: list[Any] = []


def uses_collectives(plan: Plan) -> bool:
    """True when some kernel of ``plan`` computes an op that talks to the other ranks."""
    return any(getattr(get_op(n.op), "collective", False) for k in plan.kernels for n in k.nodes)


def prepare(plan: Plan) -> None:
    """Bind the MPI entry points if ``plan`` needs them (before its program is linked)."""
    if uses_collectives(plan):
        bind()


def bind() -> None:
    """Register ``graphc_rt_allreduce`` / ``graphc_rt_world_size`` for the current communicator (or for no MPI)."""
    comm = communicator()
    mpi = sys.modules.get("mpi4py.MPI") if comm is not None else None
    key = None if mpi is None else mpi._handleof(comm)
    with _lock:
        if _current == [key]:
            return
        jit = _bound.get(key)
        if jit is None:
            jit = Jit(str(_mpi_module(mpi, comm) if mpi is not None else _single_module()), name="graphc_mpi",
                      cache=False)
            _bound[key] = jit
        llvm.add_symbol(ALLREDUCE, jit.address(ALLREDUCE))
        llvm.add_symbol(WORLD_SIZE, jit.address(WORLD_SIZE))
        _current[:] = [key]


def _signature(module: ir.Module) -> tuple[ir.Function, ir.IRBuilder]:
    fn = ir.Function(module, ir.FunctionType(I32, [I8P, I8P, I64, I32]), ALLREDUCE)
    return fn, ir.IRBuilder(fn.append_basic_block("entry"))


def _world_size(module: ir.Module, size: int) -> None:
    fn = ir.Function(module, ir.FunctionType(I64, []), WORLD_SIZE)
    ir.IRBuilder(fn.append_basic_block("entry")).ret(ir.Constant(I64, size))


def _single_module() -> ir.Module:
    """One process: y = x (a memmove unless in place), p = 1."""
    module = new_module("graphc_mpi")
    fn, b = _signature(module)
    send, recv, count, kind = fn.args
    nbytes = b.mul(count, b.select(b.icmp_signed("!=", kind, ir.Constant(I32, 0)), ir.Constant(I64, 8),
                                   ir.Constant(I64, 4)))
    memmove = module.declare_intrinsic("llvm.memmove", [I8P, I8P, I64])
    with b.if_then(b.icmp_unsigned("!=", send, recv)):
        b.call(memmove, [recv, send, nbytes, ir.Constant(ir.IntType(1), 0)])
    b.ret(ir.Constant(I32, 0))
    _world_size(module, 1)
    return module


def _mpi_module(mpi: Any, comm: Any) -> ir.Module:
    """The trampoline into ``MPI_Allreduce`` with this process's handles (module docstring)."""
    llvm.add_symbol(MPI_SYMBOL, mpi_allreduce_address(mpi))
    handle = ir.IntType(8 * mpi._sizeof(mpi.Comm))
    module = new_module("graphc_mpi")
    target = ir.Function(module, ir.FunctionType(I32, [I8P, I8P, I32, handle, handle, handle]), MPI_SYMBOL)
    fn, b = _signature(module)
    send, recv, count, kind = fn.args
    wide = b.icmp_signed("!=", kind, ir.Constant(I32, 0))
    double, single = (ir.Constant(handle, mpi._handleof(t)) for t in (mpi.DOUBLE, mpi.FLOAT))
    dtype = b.select(wide, double, single)
    esize = b.select(wide, ir.Constant(I64, 8), ir.Constant(I64, 4))
    same = b.icmp_unsigned("==", send, recv)
    raw = int(mpi.IN_PLACE) & (2**64 - 1)  # (void*)-1 for MPICH, (void*)1 for Open MPI: as a signed i64
    in_place = b.inttoptr(ir.Constant(I64, raw - 2**64 if raw >= 2**63 else raw), I8P)
    entry, head = b.block, fn.append_basic_block("head")
    body, fail, done = fn.append_basic_block("body"), fn.append_basic_block("fail"), fn.append_basic_block("done")
    b.branch(head)
    b.position_at_end(head)
    offset = b.phi(I64, name="offset")
    offset.add_incoming(ir.Constant(I64, 0), entry)
    b.cbranch(b.icmp_signed("<", offset, count), body, done)
    b.position_at_end(body)
    left = b.sub(count, offset)
    n = b.select(b.icmp_signed(">", left, ir.Constant(I64, CHUNK)), ir.Constant(I64, CHUNK), left)
    at = b.mul(offset, esize)
    source = b.select(same, in_place, b.gep(send, [at]))
    rc = b.call(target, [source, b.gep(recv, [at]), b.trunc(n, I32), dtype,
                         ir.Constant(handle, mpi._handleof(mpi.SUM)), ir.Constant(handle, mpi._handleof(comm))])
    offset.add_incoming(b.add(offset, n), body)
    b.cbranch(b.icmp_signed("!=", rc, ir.Constant(I32, 0)), fail, head)
    b.position_at_end(fail)
    b.ret(rc)
    b.position_at_end(done)
    b.ret(ir.Constant(I32, 0))
    _world_size(module, comm.Get_size())
    return module


def _candidates() -> list[str | None]:
    """Shared objects that may be the MPI library mpi4py loaded: those mapped into this process named libmpi*, then
    the global namespace and the linker's search."""
    found: list[str | None] = []
    try:
        with open("/proc/self/maps") as maps:
            for line in maps:
                path = line.split()[-1] if len(line.split()) >= 6 else ""
                name = os.path.basename(path)
                if (name.startswith(("libmpi.", "libmpi_", "libmpich")) or name == "libmpi.so") and path not in found:
                    found.append(path)
    except OSError:  # pragma: no cover - not Linux
        pass
    return found + [None, ctypes.util.find_library("mpi"), ctypes.util.find_library("mpich")]


def mpi_allreduce_address(mpi: Any) -> int:
    """The address of ``MPI_Allreduce`` in the initialized MPI library of this process; a CodegenError naming the
    library mpi4py reports when none is found."""
    for name in _candidates():
        try:
            lib = ctypes.CDLL(name, mode=os.RTLD_NOW | getattr(os, "RTLD_NOLOAD", 0)) if name else ctypes.CDLL(None)
            initialized = ctypes.c_int(0)
            if lib.MPI_Initialized(ctypes.byref(initialized)) == 0 and initialized.value:
                return ctypes.cast(lib.MPI_Allreduce, ctypes.c_void_p).value
        except (OSError, AttributeError):
            continue
    version = mpi.Get_library_version().splitlines()[0]
    raise CodegenError(f"graphc could not find MPI_Allreduce in the MPI library mpi4py uses ({version}); "
                       "run the program with backend='numpy', or report this MPI build")
