"""N training steps of a small MLP with DistributedOptimizer (``--single``: one process on the whole batch).

usage: steps.py OUT_DIR [--single]. Every rank starts from its own random weights and garbage optimizer state;
broadcast_state must give all of them rank 0's. Writes OUT_DIR/{backend}_{optimizer}_{rank|single}.npz.
"""

import sys

import numpy as np

import graphc as gc
import graphc.distributed as dist

STEPS, PER_RANK, FEATURES, HIDDEN, CLASSES = 4, 8, 12, 16, 4
out, single = sys.argv[1], "--single" in sys.argv
if not single:
    dist.init()
rank, ranks = dist.rank(), dist.size()
data = np.random.default_rng(0)
X = data.standard_normal((STEPS, 2 * PER_RANK, FEATURES)).astype(np.float32)
Y = data.integers(0, CLASSES, (STEPS, 2 * PER_RANK))


def build(backend: str, optimizer: str, seed: int):
    g = gc.Graph(f"mlp_{backend}_{optimizer}")
    batch = 2 * PER_RANK if single else PER_RANK
    x, y = g.input("x", (batch, FEATURES)), g.input("y", (batch,), "int64")
    w1 = g.param("w1", gc.init.he_normal((FEATURES, HIDDEN), rng=seed))
    b1 = g.param("b1", gc.init.normal((HIDDEN,), std=0.1, rng=seed + 10))
    w2 = g.param("w2", gc.init.glorot_uniform((HIDDEN, CLASSES), rng=seed + 20))
    b2 = g.param("b2", gc.init.zeros((CLASSES,)))
    loss = gc.softmax_cross_entropy(gc.relu(x @ w1 + b1) @ w2 + b2, y)
    opt = gc.optim.Adam(1e-2) if optimizer == "adam" else gc.optim.SGD(0.1, momentum=0.9)
    # 512-byte buckets: w1 (768 B) alone and reduced in place, b1 + w2 + b2 packed into one allreduce
    updates = (opt if single else dist.DistributedOptimizer(opt, bucket_bytes=512)).minimize(loss)
    return g, opt, gc.compile({"loss": loss}, updates=updates, backend=backend)


for backend in ("numpy", "llvm"):
    for optimizer in ("sgd", "adam"):
        g, opt, step = build(backend, optimizer, seed=1 + rank)
        if rank:
            for name in opt.state_names:  # optimizer state (lr, step, moments): garbage the broadcast overwrites
                g.state[name][...] = 7
        dist.broadcast_state(g)
        for s in range(STEPS):
            rows = slice(None) if single else slice(rank * PER_RANK, (rank + 1) * PER_RANK)
            step(x=X[s, rows], y=Y[s, rows])
        np.savez(f"{out}/{backend}_{optimizer}_{'single' if single else rank}.npz", **g.state)
print(f"rank {rank} of {ranks}: done")
