"""``Sequential.fit(..., distributed=True)``: Horovod's recipe for a Keras-like ``fit``.

- **Per-rank batch** (Horovod's convention): every rank trains on ``batch_size`` examples per step, so a step uses
  p·batch_size examples; the gradients are averaged over the ranks (``DistributedOptimizer``), and a recipe tuned
  for one process usually scales the learning rate by p.
- **Sharding**: every rank draws the same shuffled order (the same ``seed``), pads it to a multiple of p by
  repeating its first examples (PyTorch's ``DistributedSampler``), and takes every p-th example from its rank on:
  equal shards, so every rank runs the same number of steps (and of allreduces).
- **State**: rank 0's weights and optimizer state are broadcast to every rank before the first epoch.
- **Logs**: each epoch's training loss and metrics are averaged over the ranks (every rank has the same number of
  examples, so it is the mean over all of them); validation runs on the whole validation set on every rank (same
  weights, same result). Every rank sees the same logs, so ``EarlyStopping``/``ReduceLROnPlateau`` decide alike.
- **Output**: progress is printed and ``ModelCheckpoint``/``CSVLogger`` write on rank 0 only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from graphc.distributed import broadcast_state
from graphc.distributed.mpi import init, is_initialized, rank, size
from graphc.ir import GraphcError
from ops.collective import reduce_array


@dataclass(frozen=True)
class FitShards:
    """This rank's view of a distributed ``fit``: its rank and the job's size p."""

    rank: int
    size: int

    def shard_length(self, count: int) -> int:
        """Examples per rank per epoch: ⌈count / p⌉."""
        return math.ceil(count / self.size)

    def shard(self, order: np.ndarray) -> np.ndarray:
        """This rank's examples of the epoch's ``order`` (the same on every rank): padded to a multiple of p with
        its first examples, then every p-th from position ``rank``."""
        total = self.shard_length(len(order)) * self.size
        padded = np.concatenate([order, np.resize(order, total - len(order))]) if total > len(order) else order
        return padded[self.rank::self.size]


__all__ = ["FitShards", "average_logs", "begin", "broadcast_state"]


def begin(model: Any, distributed: bool | None) -> FitShards | None:
    """Decide whether this ``fit`` is distributed (``True``: join the job now; ``None``: when
    ``graphc.distributed.init()`` ran; ``False``: never) and switch the model's training programs accordingly
    (averaging the gradients or not); the rank's shards, or None."""
    if distributed not in (None, True, False):
        raise GraphcError(f"fit: distributed must be True, False or None, got {distributed!r}")
    if distributed:
        init()
    active = bool(distributed) or (distributed is None and is_initialized())
    if getattr(model, "_distributed", False) != active:
        with model._programs_lock:
            for key in [k for k in model._programs if k[0].startswith("train")]:
                del model._programs[key]
        model._distributed = active
    return FitShards(rank(), size()) if active else None


def average_logs(logs: dict[str, float]) -> dict[str, float]:
    """Every log value averaged over the ranks, in one allreduce (keys in the same order on every rank)."""
    if not logs or size() == 1:
        return logs
    keys = sorted(logs)
    values = reduce_array(np.array([logs[k] for k in keys], dtype=np.float64), "mean")
    return {k: float(values[keys.index(k)]) for k in logs}
