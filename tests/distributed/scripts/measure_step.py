"""Time the MLP training step (784-512-256-10, SGD, batch 64 per rank, llvm) with and without the allreduce.

usage: mpiexec -n P python measure_step.py [STEPS]   (or plain python: one process). Prints, from rank 0, the
median step time with DistributedOptimizer, without it (each rank alone), and of one MPI_Allreduce of the
gradients' bytes (mpi4py, the same call the step makes).
"""

import sys
import time

import numpy as np

import graphc as gc
import graphc.distributed as dist
import ops.collective as collective

steps = int(sys.argv[1]) if len(sys.argv) > 1 else 50
dist.init()
rank, ranks = dist.rank(), dist.size()
rng = np.random.default_rng(rank)
x, y = rng.standard_normal((64, 784)).astype(np.float32), rng.integers(0, 10, 64)


def build(distributed: bool, bucket_bytes: int = dist.BUCKET_BYTES):
    g = gc.Graph("mlp")
    xi, yi = g.input("x", (64, 784)), g.input("y", (64,), "int64")
    h = xi
    for i, (a, b) in enumerate([(784, 512), (512, 256), (256, 10)]):
        h = h @ g.param(f"w{i}", gc.init.he_normal((a, b), rng=i)) + g.param(f"b{i}", gc.init.zeros((b,)))
        h = gc.relu(h) if i < 2 else h
    loss = gc.softmax_cross_entropy(h, yi)
    opt = gc.optim.SGD(0.01, momentum=0.9)
    updates = (dist.DistributedOptimizer(opt, bucket_bytes) if distributed else opt).minimize(loss)
    return g, gc.compile({"loss": loss}, updates=updates)


def median_seconds(run) -> float:
    for _ in range(5):
        run()
    dist.barrier()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


g, step = build(True)
nbytes = sum(v.nbytes for k, v in g.state.items() if k in g.trainable)
with_ar = median_seconds(lambda: step(x=x, y=y))
_, unfused = build(True, bucket_bytes=1)  # one allreduce per gradient, in place: no packing copies
per_tensor = median_seconds(lambda: unfused(x=x, y=y))
_, plain = build(False)
without = median_seconds(lambda: plain(x=x, y=y))
lockstep = median_seconds(lambda: (plain(x=x, y=y), dist.barrier()))  # the waiting for the slower rank, no data
buffer = np.ones(nbytes // 4, np.float32)
mpi = sys.modules.get("mpi4py.MPI")
comm = collective.communicator()
alone = median_seconds(lambda: comm.Allreduce(mpi.IN_PLACE, buffer, op=mpi.SUM)) if ranks > 1 else 0.0
if rank == 0:
    print(f"ranks={ranks} threads/rank={step.threads} gradient_bytes={nbytes} steps={steps}")
    print(f"step_with_allreduce_ms = {with_ar * 1e3:.3f}")
    print(f"step_one_allreduce_per_gradient_ms = {per_tensor * 1e3:.3f}")
    print(f"step_without_allreduce_ms = {without * 1e3:.3f}")
    print(f"step_without_allreduce_plus_barrier_ms = {lockstep * 1e3:.3f}")
    print(f"allreduce_alone_ms = {alone * 1e3:.3f}")
