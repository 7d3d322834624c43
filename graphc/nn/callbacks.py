"""Training callbacks (EarlyStopping, ModelCheckpoint), the History record and the progress bar."""

from __future__ import annotations

import math
import sys
import time
from typing import Any

import numpy as np

from graphc.ir import GraphcError


class Callback:
    """Hooks called by ``fit``: ``on_train_begin``, ``on_epoch_end(epoch, logs)``, ``on_train_end``."""

    model: Any = None

    def set_model(self, model: Any) -> None:
        self.model = model

    def on_train_begin(self, logs: dict | None = None) -> None: ...
    def on_epoch_end(self, epoch: int, logs: dict) -> None: ...
    def on_train_end(self, logs: dict | None = None) -> None: ...


class History(Callback):
    """``history.history[key]`` is the list of per-epoch values of loss, metrics and val_* entries."""

    def __init__(self) -> None:
        self.history: dict[str, list[float]] = {}
        self.epoch: list[int] = []

    def on_epoch_end(self, epoch, logs):
        self.epoch.append(epoch)
        for key, value in logs.items():
            self.history.setdefault(key, []).append(value)


def _improved(mode: str, value: float, best: float, min_delta: float) -> bool:
    return value < best - min_delta if mode == "min" else value > best + min_delta


def _mode(mode: str, monitor: str) -> str:
    if mode == "auto":
        return "max" if "acc" in monitor else "min"
    if mode not in ("min", "max"):
        raise GraphcError(f"mode must be 'min', 'max' or 'auto', got {mode!r}")
    return mode


class EarlyStopping(Callback):
    """Stop when ``monitor`` has not improved for ``patience`` epochs; optionally restore the best weights."""

    def __init__(self, monitor: str = "val_loss", mode: str = "auto", patience: int = 0, min_delta: float = 0.0,
                 restore_best_weights: bool = False) -> None:
        self.monitor, self.mode, self.patience = monitor, _mode(mode, monitor), int(patience)
        self.min_delta, self.restore_best_weights = abs(min_delta), restore_best_weights
        self.best, self.wait, self.stopped_epoch, self.best_weights = None, 0, None, None

    def on_train_begin(self, logs=None):
        self.best, self.wait, self.stopped_epoch, self.best_weights = None, 0, None, None

    def on_epoch_end(self, epoch, logs):
        value = logs.get(self.monitor)
        if value is None:
            raise GraphcError(f"EarlyStopping: {self.monitor!r} is not logged; available: {', '.join(logs)}")
        if self.best is None or _improved(self.mode, value, self.best, self.min_delta):
            self.best, self.wait = value, 0
            if self.restore_best_weights:
                self.best_weights = self.model.get_weights()
            return
        self.wait += 1
        if self.wait > self.patience:
            self.stopped_epoch = epoch
            self.model.stop_training = True
            if self.restore_best_weights and self.best_weights is not None:
                self.model.set_weights(self.best_weights)


class ModelCheckpoint(Callback):
    """Save the model after each epoch (``{epoch}`` and log keys may appear in ``path``), or only improvements.

    Each write is atomic (readers see the previous checkpoint or the new one). A diverged model is never written:
    ``fit`` stops at the step that made its state non-finite, before any epoch end, and ``model.save`` refuses a
    non-finite state; epochs whose logged values are not finite are skipped."""

    def __init__(self, path: str, monitor: str = "val_loss", mode: str = "auto", save_best_only: bool = False) -> None:
        self.path, self.monitor, self.mode = path, monitor, _mode(mode, monitor)
        self.save_best_only, self.best = save_best_only, None
        self.saved: list[str] = []

    def on_epoch_end(self, epoch, logs):
        if any(isinstance(v, float) and not math.isfinite(v) for v in logs.values()):
            return  # never write a checkpoint of a diverged model
        if self.save_best_only:
            value = logs.get(self.monitor)
            if value is None:
                raise GraphcError(f"ModelCheckpoint: {self.monitor!r} is not logged; available: {', '.join(logs)}")
            if self.best is not None and not _improved(self.mode, value, self.best, 0.0):
                return
            self.best = value
        path = self.path.format(epoch=epoch + 1, **logs)
        self.model.save(path)
        self.saved.append(path)


class ProgressBar:
    """One line per epoch, redrawn in place: batches done, running loss and metrics, elapsed time."""

    def __init__(self, epoch: int, epochs: int, steps: int, verbose: int, stream: Any = None) -> None:
        self.epoch, self.epochs, self.steps, self.verbose = epoch, epochs, steps, verbose
        self.stream = stream or sys.stdout
        self.start = time.perf_counter()
        if verbose:
            print(f"Epoch {epoch + 1}/{epochs}", file=self.stream)

    def update(self, step: int, logs: dict[str, float], final: bool = False) -> None:
        redraw = self.verbose == 1 and getattr(self.stream, "isatty", lambda: False)()
        if not self.verbose or (not final and not redraw):
            return
        width = 30
        done = int(width * step / max(self.steps, 1))
        bar = "=" * max(done - 1, 0) + (">" if done < width else "=") + "." * (width - done)
        stats = " - ".join(f"{k}: {_fmt(v)}" for k, v in logs.items())
        elapsed = time.perf_counter() - self.start
        line = f"{step}/{self.steps} [{bar}] - {elapsed:.1f}s - {stats}"
        end = "\n" if final else ""
        print(("\r" if redraw else "") + line, end=end, file=self.stream, flush=True)


def _fmt(value: float) -> str:
    return f"{value:.4f}" if isinstance(value, (float, np.floating)) else str(value)
