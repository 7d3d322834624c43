"""Collectives across the processes of an MPI job: ``allreduce``, the op data-parallel training puts on gradients.

The processes (ranks) 0..p-1 of the job each hold their own x_r; every rank gets

    sum:   y = Σ_r x_r            mean:  y = (Σ_r x_r) · (1/p)      (1/p rounded to x's dtype, then one multiply)

The reduction runs on :func:`communicator`, a duplicate of ``MPI.COMM_WORLD`` made once per process (graphc's
collectives never interleave with the user's own messages). Without MPI (mpi4py never imported, or MPI not
initialized, or finalized) the job is one process: p = 1 and ``allreduce`` is the identity. Every rank must run the
same allreduces in the same order (all run the same program); the reduction order is MPI's, fixed for a given p.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

from ops.base import ErrorCase, Op, OpError, Sample, require_float
from ops.registry import apply, register

REDUCTIONS = ("mean", "sum")
_COMM: list[Any] = []  # [the duplicated communicator] once made


def communicator() -> Any | None:
    """graphc's communicator (``MPI.COMM_WORLD.Dup()``, made on first use: a collective call, so every rank must
    reach it together — ``graphc.distributed.init()`` makes it), or None when MPI is not running in this process."""
    mpi = sys.modules.get("mpi4py.MPI")
    if mpi is None or not mpi.Is_initialized() or mpi.Is_finalized():
        return None
    if not _COMM:
        _COMM.append(mpi.COMM_WORLD.Dup())
    return _COMM[0]


def world_size() -> int:
    """p: the number of processes allreduce reduces over (1 without MPI)."""
    comm = communicator()
    return 1 if comm is None else comm.Get_size()


def reduce_array(x: np.ndarray, op: str) -> np.ndarray:
    """A fresh array: ``x`` allreduced over the job (``op`` = "sum" or "mean"; the module docstring's math)."""
    y = np.array(x, copy=True, order="C")
    comm = communicator()
    size = 1 if comm is None else comm.Get_size()
    if size > 1 and y.size:
        mpi = sys.modules["mpi4py.MPI"]
        comm.Allreduce(mpi.IN_PLACE, y, op=mpi.SUM)
    if op == "mean":
        y *= np.asarray(1, y.dtype) / np.asarray(size, y.dtype)
    return y


@register
class AllReduce(Op):
    """y = Σ_r x_r over the job's p ranks ("sum"), or that sum · (1/p) ("mean"); the identity when p = 1.

    VJP (Horovod's): the gradient of the job's total objective Σ_s L_s(y) with respect to this rank's x is
    Σ_s ∂L_s/∂y · ∂y/∂x_r, i.e. the same allreduce applied to g (for p = 1, g itself). Impure: the value depends
    on the other processes, so it is never constant-folded or merged."""

    name = "allreduce"
    kind = "opaque"  # a call into the MPI library on the whole buffer (codegen.collective)
    arity = 1
    inplace = True  # MPI_IN_PLACE on the gradient's own buffer
    pure = False
    collective = True  # the runtime binds the MPI entry points before a native program containing it is linked

    def normalize(self, attrs, x):
        op = attrs.get("op", "mean")
        if op not in REDUCTIONS:
            raise OpError(f"op must be one of {REDUCTIONS}, got {op!r}")
        return {"op": op}

    def infer(self, attrs, x):
        require_float(self.name, x)
        return x

    def reference(self, attrs, x):
        return reduce_array(x, attrs["op"])

    def vjp(self, node, g):
        return (apply("allreduce", g, op=node.attrs["op"]),)

    def status_message(self, node):
        return "MPI_Allreduce failed (a rank died or MPI reported an error)"

    def samples(self, rng):
        return [Sample([rng.standard_normal((4, 5))], {"op": "mean"}),
                Sample([rng.standard_normal((7,))], {"op": "sum"}),
                Sample([rng.standard_normal(())], {})]

    def error_cases(self):
        return [ErrorCase([((3,), "float32")], {"op": "max"}, "op must be one of"),
                ErrorCase([((3,), "int64")], {"op": "sum"}, "floating-point")]
