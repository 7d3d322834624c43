"""``RunProgress``: one line per model when several quiet fits run one after another (``fit(verbose=0)`` in a
comparison of optimizers or regularizers), so a long run shows signs of life without a bar per epoch."""

from __future__ import annotations

import time
from typing import Any

from graphc.nn.callbacks import Callback


class RunProgress(Callback):
    """Prints ``[index/total] label: epoch e/epochs, <logs> (<seconds> s)`` when the model finishes and, while it
    trains, at most once every ``every`` seconds."""

    def __init__(self, index: int, total: int, label: str, epochs: int, every: float = 10.0) -> None:
        super().__init__()
        self.head, self.epochs, self.every = f"[{index}/{total}] {label}", epochs, every

    def on_train_begin(self, logs: dict | None = None) -> None:
        self.start = self.last = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any]) -> None:
        now = time.perf_counter()
        if epoch + 1 < self.epochs and now - self.last < self.every:
            return
        self.last = now
        shown = ", ".join(f"{key} {value:.4g}" for key, value in logs.items())
        print(f"{self.head}: epoch {epoch + 1}/{self.epochs}, {shown} ({now - self.start:.1f} s)", flush=True)
