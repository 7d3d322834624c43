"""Data-parallel training over MPI, in Horovod's shape: every rank runs the same compiled step on its own shard.

    import graphc as gc
    import graphc.distributed as dist

    dist.init()                                          # under `mpiexec -n 4 python train.py` or `graphc launch`
    opt = dist.DistributedOptimizer(gc.optim.SGD(0.1))  # updates from gradients averaged over the ranks
    step = gc.compile({"loss": loss}, updates=opt.minimize(loss))
    dist.broadcast_state(g)                              # rank 0's weights and optimizer state everywhere
    step(x=my_shard_x, y=my_shard_y)                     # one native call: forward, backward, MPI_Allreduce, update
    mean_loss = dist.allreduce(loss_value)               # metrics averaged over the ranks

``model.fit(..., distributed=True)`` does all of it for ``gc.nn`` models (``graphc.distributed.keras``). The engine
is mpi4py over an MPI library (``pip install 'graphc[distributed]'``: the MPICH wheel, no system MPI); without it,
or before ``init()``, the job is one process (rank 0 of 1) and the allreduce is the identity.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from graphc.distributed.mpi import (
    DistributedError,
    init,
    is_initialized,
    is_root,
    load_mpi,
    local_rank,
    local_size,
    rank,
    size,
)
from graphc.distributed.optimizer import BUCKET_BYTES, DistributedOptimizer, fuse_allreduce, ring_allreduce_seconds
from graphc.ir import GraphcError, Node
from ops.collective import REDUCTIONS, communicator, reduce_array
from ops.registry import apply


def allreduce(value: Any, op: str = "mean") -> Any:
    """Σ_r value_r ("sum") or (1/p) Σ_r value_r ("mean") over the ranks. A graph tensor gives an ``allreduce`` node
    (reduced when the program runs); a number or array is reduced now (a float, or a float64/float32 array; integer
    arrays are reduced as float64). Every rank must call it, in the same order."""
    if op not in REDUCTIONS:
        raise GraphcError(f"allreduce: op must be one of {REDUCTIONS}, got {op!r}")
    if isinstance(value, Node):
        return apply("allreduce", value, op=op)
    array = np.asarray(value)
    if array.dtype.kind not in "biuf":
        raise GraphcError(f"allreduce: expected a number or a numeric array, got {type(value).__name__}")
    if array.dtype.kind != "f":
        array = array.astype(np.float64)
    result = reduce_array(array, op)
    return float(result) if np.ndim(value) == 0 and not isinstance(value, np.ndarray) else result


def broadcast_state(graph: Any, root: int = 0) -> None:
    """Copy rank ``root``'s whole graph state — weights, optimizer moments and step count, learning rate, running
    statistics, dropout counters — into every rank's ``graph.state`` (in place, by name). All ranks must hold the
    same entries (names, shapes, dtypes): build the training program (or ``opt.bind``) first so the optimizer
    state exists. No-op in a one-process job."""
    comm = communicator()
    if comm is None or comm.Get_size() == 1:
        return
    if not 0 <= root < comm.Get_size():
        raise GraphcError(f"broadcast_state: root must be a rank in [0, {comm.Get_size()}), got {root}")
    with graph.state_lock:
        names = sorted(graph.state)
        spec = [(n, tuple(graph.state[n].shape), graph.state[n].dtype.str) for n in names]
        expected = comm.bcast(spec, root=root)
        if expected != spec:
            ours, theirs = set(spec), set(expected)
            differ = sorted(ours ^ theirs)[:3]
            raise DistributedError(f"broadcast_state: rank {comm.Get_rank()}'s graph state differs from rank "
                                   f"{root}'s (e.g. {differ}); build the same model and training program on every "
                                   "rank before broadcasting")
        for name in names:
            array = graph.state[name]
            buffer = array if array.flags.c_contiguous and array.flags.writeable else np.ascontiguousarray(array)
            comm.Bcast(buffer, root=root)
            if buffer is not array:
                graph.state[name] = buffer


def barrier() -> None:
    """Wait until every rank reaches this call (no-op in a one-process job)."""
    comm = communicator()
    if comm is not None:
        comm.Barrier()


__all__ = ["BUCKET_BYTES", "DistributedError", "DistributedOptimizer", "allreduce", "barrier", "broadcast_state",
           "fuse_allreduce", "init", "is_initialized", "is_root", "load_mpi", "local_rank", "local_size", "rank",
           "ring_allreduce_seconds", "size"]
