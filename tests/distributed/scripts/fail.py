"""Rank 1 raises while rank 0 waits in an allreduce: the job must end at once with the error, not hang."""

import numpy as np

import graphc.distributed as dist

dist.init()
if dist.rank() == 1:
    raise ValueError("boom from rank 1")
dist.allreduce(np.ones(3))  # rank 0 waits here for a rank that will never come
print("rank 0 finished: the abort did not happen")
