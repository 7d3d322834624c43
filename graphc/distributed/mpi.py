"""The MPI job as graphc sees it: ``init``, ranks, the abort-on-exception hook and threads per rank.

mpi4py (over the MPICH wheel: ``pip install 'graphc[distributed]'``) is imported only by :func:`init`; before it,
or without MPI, the job is one process (rank 0 of 1) and everything works unchanged.
"""

from __future__ import annotations

import os
import sys
import traceback
from types import TracebackType
from typing import Any

from graphc.ir import GraphcError
from ops.collective import communicator

EXTRA = "pip install 'graphc[distributed]'"
_STATE: dict[str, Any] = {}  # "local_rank", "local_size", "previous_hook" once init() ran


class DistributedError(GraphcError):
    """MPI is missing or a collective cannot run (the message says what to install or change)."""


def load_mpi() -> Any:
    """The ``mpi4py.MPI`` module (importing it initializes MPI); a DistributedError naming the extra without it."""
    try:
        from mpi4py import MPI
    except ImportError as err:
        raise DistributedError(f"graphc.distributed needs mpi4py and an MPI library ({err}); install them with "
                               f"{EXTRA} (mpi4py over the MPICH wheel, no system MPI needed)") from None
    return MPI


def init() -> None:
    """Join the MPI job (idempotent): make graphc's communicator, learn the local rank, give each rank its share of
    the cores (``GRAPHC_NUM_THREADS``, unless set: the cores of its affinity mask ÷ the local ranks sharing them)
    and, with several ranks, make an uncaught exception abort the whole job (``MPI_Abort``) instead of leaving the
    other ranks waiting in a collective forever."""
    mpi = load_mpi()
    if _STATE:
        return
    comm = communicator()
    if comm is None:
        raise DistributedError("MPI is not initialized in this process (was MPI.Finalize called?)")
    local = comm.Split_type(mpi.COMM_TYPE_SHARED)
    _STATE.update(local_rank=local.Get_rank(), local_size=local.Get_size())
    masks = local.allgather(sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else [])
    local.Free()
    mine = set(masks[_STATE["local_rank"]])
    sharing = sum(1 for other in masks if mine & set(other)) or 1
    if mine and "GRAPHC_NUM_THREADS" not in os.environ:
        os.environ["GRAPHC_NUM_THREADS"] = str(max(1, len(mine) // sharing))
    if comm.Get_size() > 1:
        _STATE["previous_hook"] = sys.excepthook
        sys.excepthook = _abort_on_exception


def is_initialized() -> bool:
    """True once :func:`init` ran in this process."""
    return bool(_STATE)


def rank() -> int:
    """This process's rank in the job (0 without MPI)."""
    comm = communicator()
    return 0 if comm is None else comm.Get_rank()


def size() -> int:
    """The number of processes in the job (1 without MPI)."""
    comm = communicator()
    return 1 if comm is None else comm.Get_size()


def local_rank() -> int:
    """This process's rank among the job's processes on its machine (0 before :func:`init` or without MPI)."""
    return int(_STATE.get("local_rank", 0))


def local_size() -> int:
    """How many of the job's processes run on this machine (1 before :func:`init` or without MPI)."""
    return int(_STATE.get("local_size", 1))


def is_root(root: int = 0) -> bool:
    """True on rank ``root`` (the rank that prints and writes files); always True without MPI."""
    return rank() == root


def _abort_on_exception(kind: type[BaseException], error: BaseException, tb: TracebackType | None) -> None:
    """sys.excepthook with several ranks: print the traceback naming the rank, then abort every rank."""
    where = f"graphc.distributed: rank {rank()} of {size()}"
    text = "".join(traceback.format_exception(kind, error, tb))
    sys.stderr.write(f"{where} failed with an uncaught exception; aborting the MPI job\n{text}")
    sys.stderr.flush()
    sys.stdout.flush()
    mpi = sys.modules.get("mpi4py.MPI")
    if mpi is not None and mpi.Is_initialized() and not mpi.Is_finalized():
        mpi.COMM_WORLD.Abort(1)
    _STATE.get("previous_hook", sys.__excepthook__)(kind, error, tb)  # pragma: no cover - Abort does not return
