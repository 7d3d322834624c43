"""``DistributedOptimizer``: gradients averaged over the ranks inside the compiled step, Horovod's tensor fusion.

Every rank computes the gradients g_r of its own loss; the update then uses ḡ = (1/p) Σ_r g_r on every rank, so
with the same starting state (``broadcast_state``) all ranks hold the same weights after every step. With per-rank
losses that are means over b examples each, ḡ is the gradient of the mean loss over the p·b examples of the step.

Tensor fusion: the gradients, in the fixed order of the params, are packed (flattened and concatenated) into
buckets of at most ``bucket_bytes`` each (a gradient larger than that is a bucket of its own, reduced in place
without a copy); each bucket is one ``allreduce`` — one ``MPI_Allreduce`` call in the native program — and the
averaged gradients are slices of it. Fixed order and fixed buckets: the same calls in the same order on every rank,
and results that are deterministic for a given number of ranks.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from graphc.ir import GraphcError, Node
from graphc.optim import Optimizer
from ops import fn
from ops.registry import apply

BUCKET_BYTES = 64 << 20  # Horovod's default fusion threshold (HOROVOD_FUSION_THRESHOLD)


def fuse_allreduce(grads: Sequence[Node], op: str = "mean", bucket_bytes: int = BUCKET_BYTES) -> list[Node]:
    """``grads`` allreduced over the ranks (module docstring), in buckets of ≤ ``bucket_bytes`` per dtype."""
    out: list[Node | None] = [None] * len(grads)
    for group in buckets(grads, bucket_bytes):
        if len(group) == 1:
            (i,) = group
            out[i] = apply("allreduce", grads[i], op=op)
            continue
        packed = apply("allreduce", fn.concat([fn.reshape(grads[i], (-1,)) for i in group], axis=0), op=op)
        start = 0
        for i in group:
            g = grads[i]
            out[i] = fn.reshape(packed[start:start + g.size], g.shape)
            start += g.size
    return out  # type: ignore[return-value]


def buckets(grads: Sequence[Node], bucket_bytes: int = BUCKET_BYTES) -> list[list[int]]:
    """Positions of ``grads`` grouped into buckets: consecutive gradients of one dtype, ≤ ``bucket_bytes`` each."""
    groups: list[list[int]] = []
    open_: dict[str, tuple[list[int], int]] = {}
    for i, g in enumerate(grads):
        nbytes = g.type.nbytes
        group, used = open_.get(g.dtype, ([], 0))
        if group and used + nbytes > bucket_bytes:
            group, used = [], 0
        if not group:
            groups.append(group)
        group.append(i)
        open_[g.dtype] = (group, used + nbytes)
    return groups


class DistributedOptimizer:
    """Wraps an optimizer (``gc.optim.SGD(...)``, ...): ``minimize(loss)`` returns its updates computed from the
    gradients averaged over all ranks (ḡ = (1/p) Σ_r g_r, module docstring). The optimizer's state (moments, step,
    learning rate) stays the wrapped optimizer's, so saving and schedules work as without MPI.

    Horovod's convention: each rank's batch is its own (the effective batch is p × the per-rank batch); scale the
    learning rate with p if the single-process recipe used the per-rank batch."""

    def __init__(self, optimizer: Optimizer, bucket_bytes: int = BUCKET_BYTES, op: str = "mean") -> None:
        if not isinstance(optimizer, Optimizer):
            raise GraphcError(f"DistributedOptimizer wraps a graphc optimizer (gc.optim.SGD, Adam, ...), got "
                              f"{type(optimizer).__name__}")
        if isinstance(bucket_bytes, bool) or not isinstance(bucket_bytes, int) or bucket_bytes < 1:
            raise GraphcError(f"DistributedOptimizer: bucket_bytes must be a positive int, got {bucket_bytes!r}")
        if op not in ("mean", "sum"):
            raise GraphcError(f"DistributedOptimizer: op must be 'mean' or 'sum', got {op!r}")
        self.optimizer, self.bucket_bytes, self.op = optimizer, bucket_bytes, op

    def __getattr__(self, name: str) -> Any:  # learning_rate, apply_schedule, get_config, ... of the wrapped one
        return getattr(self.__dict__["optimizer"], name)

    def minimize(self, loss: Node, params: Sequence[Node] | None = None) -> dict[Node, Node]:
        """The wrapped optimizer's updates for ``params`` (default: every trainable param ``loss`` uses), from the
        gradients allreduced over the ranks in fused buckets."""
        return self.optimizer.minimize(
            loss, params, reduce_gradients=lambda grads: fuse_allreduce(grads, self.op, self.bucket_bytes))

    def allreduce_bytes(self, params: Sequence[Node]) -> int:
        """Bytes each step reduces for ``params`` (the gradients' total size)."""
        return sum(p.type.nbytes for p in params)

    def __repr__(self) -> str:
        return f"DistributedOptimizer({self.optimizer!r}, bucket_bytes={self.bucket_bytes}, op={self.op!r})"


def ring_allreduce_seconds(nbytes: int, ranks: int, gbit_per_s: float, latency_s: float = 0.0) -> float:
    """The bandwidth term of a ring allreduce: 2(p−1)/p · bytes / bandwidth, plus 2(p−1) message latencies."""
    if ranks <= 1:
        return 0.0
    return 2 * (ranks - 1) / ranks * nbytes * 8 / (gbit_per_s * 1e9) + 2 * (ranks - 1) * latency_s


__all__ = ["BUCKET_BYTES", "DistributedOptimizer", "buckets", "fuse_allreduce", "ring_allreduce_seconds"]
