"""Training callbacks with Keras' names, arguments and messages, and the History record.

``fit`` calls, in this order: ``on_train_begin``; per epoch ``on_epoch_begin(epoch)``, per step
``on_train_batch_begin(batch)`` / ``on_train_batch_end(batch, logs)`` (logs: the epoch's running means so far;
Keras' ``on_batch_begin``/``on_batch_end`` are the same hooks), then ``on_epoch_end(epoch, logs)``; finally
``on_train_end``. ``model.stop_training = True`` set in a batch hook ends the epoch after that step (validation
and ``on_epoch_end`` still run, as in Keras); set in an epoch hook, it ends training after this epoch.
Learning-rate callbacks add ``lr`` to the logs (and the History). ``TerminateOnNaN`` turns fit's divergence error
into a clean stop. The progress display lives in :mod:`graphc.nn.progress`.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Callable
from typing import Any

import numpy as np

from graphc.distributed.mpi import is_root
from graphc.ir import GraphcError
from graphc.nn.metrics import direction
from graphc.nn.progress import ProgressBar  # noqa: F401 - its old home; kept importable from here


class Callback:
    """Base class of fit's hooks (order: module docstring); each does nothing unless overridden."""

    model: Any = None

    def set_model(self, model: Any) -> None:
        self.model = model

    def on_train_begin(self, logs: dict | None = None) -> None: ...
    def on_train_end(self, logs: dict | None = None) -> None: ...
    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None: ...
    def on_epoch_end(self, epoch: int, logs: dict) -> None: ...
    def on_batch_begin(self, batch: int, logs: dict | None = None) -> None: ...
    def on_batch_end(self, batch: int, logs: dict | None = None) -> None: ...

    def on_train_batch_begin(self, batch: int, logs: dict | None = None) -> None:
        self.on_batch_begin(batch, logs)

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        self.on_batch_end(batch, logs)


class History(Callback):
    """``history.history[key]`` is the list of per-epoch values of loss, metrics and val_* entries."""

    def __init__(self) -> None:
        self.history: dict[str, list[float]] = {}
        self.epoch: list[int] = []

    def on_epoch_end(self, epoch, logs):
        self.epoch.append(epoch)
        for key, value in logs.items():
            self.history.setdefault(key, []).append(value)

    def plot(self, path: Any = None, metrics: Any = None) -> Any:
        """Learning curves (matplotlib, ``pip install 'graphc[plot]'``): one panel per metric (default all), training
        and validation; returns the Figure without ``path``, else writes the picture and returns ``path``."""
        from graphc.nn.plots import plot_history

        return plot_history(self, path, metrics)


class _Monitor(Callback):
    """A callback watching one logged quantity: ``mode`` "min", "max" or "auto" (accuracy-like names → max, others
    → min, as Keras; a custom metric's direction is unknown, so it needs an explicit mode)."""

    def _watch(self, monitor: str, mode: str) -> None:
        if mode not in ("auto", "min", "max"):
            raise GraphcError(f"{type(self).__name__}: mode must be 'min', 'max' or 'auto', got {mode!r}")
        self.monitor, self.requested_mode = monitor, mode
        self.mode = mode if mode != "auto" else (direction(monitor) or "min")

    def _resolve_mode(self) -> None:
        """Called at train begin, when the model's metrics are known."""
        if self.requested_mode != "auto":
            return
        runner = getattr(self.model, "_metric_runner", None)
        found = direction(self.monitor, runner.metrics if runner is not None else ())
        if found is None:
            raise GraphcError(f"{type(self).__name__}: cannot tell whether the custom metric {self.monitor!r} should "
                              "go up or down; pass mode='max' or mode='min'")
        self.mode = found

    def _improved(self, value: float, best: float, min_delta: float = 0.0) -> bool:
        return value < best - min_delta if self.mode == "min" else value > best + min_delta

    def _worst(self) -> float:
        return math.inf if self.mode == "min" else -math.inf

    def _value(self, logs: dict) -> float:
        value = logs.get(self.monitor)
        if value is None:
            hint = (" (validation values need validation_data= or validation_split= in fit)"
                    if self.monitor.startswith("val_") else "")
            raise GraphcError(f"{type(self).__name__}: {self.monitor!r} is not logged{hint}; available: "
                              f"{', '.join(logs)}")
        return float(value)


class EarlyStopping(_Monitor):
    """Stop when ``monitor`` has not improved (by more than ``min_delta``) for ``patience`` epochs (Keras' rule:
    ``patience`` consecutive epochs without improvement, never at the first epoch); with ``restore_best_weights``
    the weights of the best epoch are put back when it stops. ``baseline``: improvements that do not beat it do
    not reset the patience; ``start_from_epoch``: epochs before it are not watched. ``verbose=1`` prints Keras'
    "Restoring model weights from the end of the best epoch: 40." and "Epoch 45: early stopping"."""

    def __init__(self, monitor: str = "val_loss", min_delta: float = 0.0, patience: int = 0, verbose: int = 0,
                 mode: str = "auto", baseline: float | None = None, restore_best_weights: bool = False,
                 start_from_epoch: int = 0) -> None:
        self._watch(monitor, mode)
        self.patience, self.min_delta, self.verbose = int(patience), abs(float(min_delta)), int(verbose)
        self.baseline, self.restore_best_weights = baseline, bool(restore_best_weights)
        self.start_from_epoch = int(start_from_epoch)
        self.on_train_begin()

    def on_train_begin(self, logs=None):
        if self.model is not None:
            self._resolve_mode()
        self.best, self.best_epoch, self.wait = self._worst(), None, 0
        self.stopped_epoch: int | None = None
        self.best_weights: Any = None

    def on_epoch_end(self, epoch, logs):
        value = self._value(logs)
        if epoch < self.start_from_epoch:
            return
        if self.restore_best_weights and self.best_weights is None:
            self.best_weights = self.model.get_weights()
        self.wait += 1
        if self._improved(value, self.best, self.min_delta):
            self.best, self.best_epoch = value, epoch
            if self.restore_best_weights:
                self.best_weights = self.model.get_weights()
            if self.baseline is None or self._improved(value, self.baseline, self.min_delta):
                self.wait = 0
            return
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            self.model.stop_training = True
            if self.restore_best_weights and self.best_weights is not None:
                if self.verbose and self.best_epoch is not None:
                    print(f"Restoring model weights from the end of the best epoch: {self.best_epoch + 1}.")
                self.model.set_weights(self.best_weights)

    def on_train_end(self, logs=None):
        if self.stopped_epoch is not None and self.verbose:
            print(f"Epoch {self.stopped_epoch + 1}: early stopping")


class ModelCheckpoint(_Monitor):
    """Save the model after each epoch (``{epoch}`` and log keys may appear in ``filepath``), or with
    ``save_best_only`` only when ``monitor`` improved. ``verbose=1`` prints Keras' lines: "Epoch 3: val_loss
    improved from 0.52000 to 0.41000, saving model to best.npz", "Epoch 4: val_loss did not improve from 0.41000",
    "Epoch 5: saving model to last.npz".

    Each write is atomic (readers see the previous checkpoint or the new one). A diverged model is never written:
    ``fit`` stops at the step that made its state non-finite, before any epoch end, and ``model.save`` refuses a
    non-finite state; epochs whose logged values are not finite are skipped."""

    def __init__(self, filepath: str | os.PathLike | None = None, monitor: str = "val_loss", verbose: int = 0,
                 save_best_only: bool = False, save_weights_only: bool = False, mode: str = "auto", *,
                 path: str | os.PathLike | None = None) -> None:
        if (filepath is None) == (path is None):
            raise GraphcError("ModelCheckpoint: give the file to write as filepath (Keras' name) or path, once")
        self.path = os.fspath(filepath if filepath is not None else path)
        if self.path.lower().endswith((".h5", ".hdf5", ".keras")):
            stem = self.path.rsplit(".", 1)[0]
            raise GraphcError(f"ModelCheckpoint: graphc writes its own .npz model files, not Keras' "
                              f"{self.path.rsplit('.', 1)[1]}; use filepath={stem + '.npz'!r}")
        self._watch(monitor, mode)
        self.verbose, self.save_best_only = int(verbose), bool(save_best_only)
        self.save_weights_only = bool(save_weights_only)
        self.best = self._worst()
        self.saved: list[str] = []

    def on_train_begin(self, logs=None):
        self._resolve_mode()
        if self.save_weights_only and not callable(getattr(self.model, "save_weights", None)):
            raise GraphcError("ModelCheckpoint(save_weights_only=True) needs model.save_weights")

    def on_epoch_end(self, epoch, logs):
        if not is_root():
            return  # a distributed fit: rank 0 writes (every rank holds the same weights)
        if any(isinstance(v, (float, np.floating)) and not math.isfinite(v) for v in logs.values()):
            return  # never write a checkpoint of a diverged model
        path = self.path.format(epoch=epoch + 1, **logs)
        if self.save_best_only:
            value = self._value(logs)
            if not self._improved(value, self.best):
                if self.verbose:
                    print(f"Epoch {epoch + 1}: {self.monitor} did not improve from {self.best:.5f}")
                return
            if self.verbose:
                print(f"Epoch {epoch + 1}: {self.monitor} improved from {self.best:.5f} to {value:.5f}, "
                      f"saving model to {path}")
            self.best = value
        elif self.verbose:
            print(f"Epoch {epoch + 1}: saving model to {path}")
        (self.model.save_weights if self.save_weights_only else self.model.save)(path)
        self.saved.append(path)


def _set_lr(owner: str, model: Any, value: Any) -> float:
    """Set the model optimizer's learning rate (graph state: the next step uses it; saved with the model)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise GraphcError(f"{owner}: the learning rate must be a number, got {value!r}")
    model.optimizer.learning_rate = float(value)
    return model.optimizer.learning_rate


def _check_settable_lr(owner: str, model: Any) -> None:
    if getattr(model.optimizer, "schedule", None) is not None:
        raise GraphcError(f"{owner}: the optimizer's learning rate follows a schedule, which would override it each "
                          "step; give the optimizer a fixed learning rate (e.g. gc.optim.Adam(learning_rate=1e-3))")


class ReduceLROnPlateau(_Monitor):
    """Multiply the learning rate by ``factor`` when ``monitor`` has not improved by more than ``min_delta`` for
    ``patience`` epochs: η ← max(η · factor, min_lr); then wait ``cooldown`` epochs before watching again. Logs
    ``lr`` (the rate of the epoch that just ended); ``verbose=1`` prints "Epoch 7: ReduceLROnPlateau reducing
    learning rate to 0.0005."."""

    def __init__(self, monitor: str = "val_loss", factor: float = 0.1, patience: int = 10, verbose: int = 0,
                 mode: str = "auto", min_delta: float = 1e-4, cooldown: int = 0, min_lr: float = 0.0) -> None:
        if not 0.0 < factor < 1.0:
            raise GraphcError(f"ReduceLROnPlateau: factor must be in (0, 1) (the rate is multiplied by it), got "
                              f"{factor!r}")
        self._watch(monitor, mode)
        self.factor, self.patience, self.verbose = float(factor), int(patience), int(verbose)
        self.min_delta, self.cooldown, self.min_lr = abs(float(min_delta)), int(cooldown), float(min_lr)
        self.best, self.wait, self.cooldown_counter = self._worst(), 0, 0

    def on_train_begin(self, logs=None):
        self._resolve_mode()
        _check_settable_lr("ReduceLROnPlateau", self.model)
        self.best, self.wait, self.cooldown_counter = self._worst(), 0, 0

    def on_epoch_end(self, epoch, logs):
        logs["lr"] = lr = self.model.optimizer.learning_rate
        value = self._value(logs)
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.wait = 0
        if self._improved(value, self.best, self.min_delta):
            self.best, self.wait = value, 0
        elif self.cooldown_counter <= 0:
            self.wait += 1
            if self.wait >= self.patience and lr > np.float32(self.min_lr):
                new_lr = _set_lr("ReduceLROnPlateau", self.model, max(lr * self.factor, self.min_lr))
                if self.verbose:
                    print(f"Epoch {epoch + 1}: ReduceLROnPlateau reducing learning rate to {new_lr}.")
                self.cooldown_counter, self.wait = self.cooldown, 0


class LearningRateScheduler(Callback):
    """Set the learning rate at each epoch's start to ``schedule(epoch, lr)`` (epoch counted from 0, lr the current
    rate; a ``schedule(epoch)`` of one argument works too). Logs ``lr``; ``verbose=1`` prints "Epoch 3:
    LearningRateScheduler setting learning rate to 0.05."."""

    def __init__(self, schedule: Callable[..., float], verbose: int = 0) -> None:
        if not callable(schedule):
            raise GraphcError(f"LearningRateScheduler: schedule must be a function schedule(epoch, lr), got "
                              f"{schedule!r}")
        self.schedule, self.verbose = schedule, int(verbose)
        self._arity = _positional_arity(schedule)

    def on_train_begin(self, logs=None):
        _check_settable_lr("LearningRateScheduler", self.model)

    def on_epoch_begin(self, epoch, logs=None):
        lr = self.model.optimizer.learning_rate
        value = self.schedule(epoch) if self._arity == 1 else self.schedule(epoch, lr)
        lr = _set_lr(f"LearningRateScheduler: schedule({epoch}, {lr})", self.model, value)
        if self.verbose:
            print(f"Epoch {epoch + 1}: LearningRateScheduler setting learning rate to {lr}.")

    def on_epoch_end(self, epoch, logs):
        logs["lr"] = self.model.optimizer.learning_rate


def _positional_arity(function: Callable[..., Any]) -> int:
    """1 for ``f(epoch)``, else 2 (Keras' ``f(epoch, lr)``)."""
    import inspect

    try:
        params = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):
        return 2
    if any(p.kind == p.VAR_POSITIONAL for p in params):
        return 2
    return 1 if sum(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in params) == 1 else 2


class CSVLogger(Callback):
    """Write each epoch's logs as a CSV row (columns ``epoch`` then the log keys in sorted order, as Keras);
    ``append=True`` continues an existing file (header written only when it is empty). The file is opened and
    closed for every row, so it is complete even when ``fit`` is interrupted."""

    def __init__(self, filename: str | os.PathLike, separator: str = ",", append: bool = False) -> None:
        self.filename, self.sep, self.append = os.fspath(filename), separator, bool(append)
        self.keys: list[str] | None = None
        self._header = True

    def on_train_begin(self, logs=None):
        self.keys = None
        if not is_root():
            return  # a distributed fit: rank 0 writes the log
        if self.append and os.path.exists(self.filename):
            with open(self.filename, encoding="utf-8") as f:
                self._header = not f.readline()
            return
        self._header = True
        with open(self.filename, "w", encoding="utf-8"):
            pass

    def on_epoch_end(self, epoch, logs):
        if not is_root():
            return
        if self.keys is None:
            self.keys = sorted(logs)
        row = {"epoch": epoch, **{k: logs.get(k, "NA") for k in self.keys}}
        with open(self.filename, "a", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=["epoch", *self.keys], delimiter=self.sep, extrasaction="ignore")
            if self._header:
                writer.writeheader()
                self._header = False
            writer.writerow(row)


class TerminateOnNaN(Callback):
    """Stop training cleanly when the loss (or any weight or optimizer value) becomes NaN or infinite, printing
    Keras' "Batch 12: Invalid loss, terminating training". Without it ``fit`` raises ``TrainingError``; with it
    ``fit`` returns the History of the completed epochs. Unlike Keras, the model is not left diverged: the
    failing epoch is undone, so the weights are those after the last completed epoch."""

    def terminate(self, batch: int) -> None:
        print(f"Batch {batch}: Invalid loss, terminating training")
        self.model.stop_training = True


class LambdaCallback(Callback):
    """A callback from plain functions: ``on_epoch_begin(epoch, logs)``, ``on_epoch_end(epoch, logs)``,
    ``on_batch_begin(batch, logs)``, ``on_batch_end(batch, logs)``, ``on_train_begin(logs)``,
    ``on_train_end(logs)`` (and ``on_train_batch_begin``/``on_train_batch_end``), each optional."""

    HOOKS = ("on_epoch_begin", "on_epoch_end", "on_batch_begin", "on_batch_end", "on_train_begin", "on_train_end",
             "on_train_batch_begin", "on_train_batch_end")

    def __init__(self, **hooks: Callable[..., Any] | None) -> None:
        unknown = sorted(set(hooks) - set(self.HOOKS))
        if unknown:
            raise GraphcError(f"LambdaCallback: unknown hooks {', '.join(unknown)}; known: {', '.join(self.HOOKS)}")
        for name, function in hooks.items():
            if function is not None:
                if not callable(function):
                    raise GraphcError(f"LambdaCallback: {name} must be a function, got {function!r}")
                setattr(self, name, function)


class CallbackList:
    """The callbacks of one ``fit``, History first; calls each hook on all of them in order."""

    def __init__(self, callbacks: list[Any] | None, model: Any, history: History) -> None:
        self.history = history
        self.callbacks = [history, *(callbacks or [])]
        self.batch = 0
        for cb in self.callbacks:
            if not callable(getattr(cb, "on_epoch_end", None)):
                raise GraphcError(f"callbacks must be gc.nn.Callback instances, got {cb!r}")
            cb.set_model(model)

    def _call(self, hook: str, *args: Any) -> None:
        for cb in self.callbacks:
            method = getattr(cb, hook, None)
            if method is not None:
                method(*args)

    def on_train_begin(self) -> None:
        self._call("on_train_begin", {})

    def on_epoch_begin(self, epoch: int) -> None:
        self._call("on_epoch_begin", epoch, {})

    def on_train_batch_begin(self, batch: int) -> None:
        self.batch = batch
        self._call("on_train_batch_begin", batch, {})

    def on_train_batch_end(self, batch: int, logs: dict) -> None:
        self._call("on_train_batch_end", batch, logs)

    def on_epoch_end(self, epoch: int, logs: dict) -> None:
        """Every callback's ``on_epoch_end``, then the keys they added (``lr``) go into the History too."""
        self._call("on_epoch_end", epoch, logs)
        for key, value in logs.items():
            values = self.history.history.setdefault(key, [])
            if len(values) < len(self.history.epoch):
                values.append(value)

    def on_train_end(self, logs: dict | None) -> None:
        self._call("on_train_end", logs or {})

    def terminate_on_nan(self) -> bool:
        """After a diverged step: True (training stops cleanly) when a TerminateOnNaN is among the callbacks."""
        stopper = next((cb for cb in self.callbacks if isinstance(cb, TerminateOnNaN)), None)
        if stopper is not None:
            stopper.terminate(self.batch)
        return stopper is not None
