"""``Sequential``: a Keras-like model compiled into graphc programs.

One graph holds the model's params. Each (mode, batch size) gets its own compiled program, built on first use
and kept in a least-recently-used cache of ``Sequential.MAX_PROGRAMS`` (8) programs: the training step (forward,
backward and optimizer update in one call), evaluation (inference mode: dropout off, batch norm on running
statistics) and prediction. Shapes are static, so the last partial batch of an epoch runs through a second program
of its size instead of being dropped.

Reliability of ``fit``: every epoch is all-or-nothing for the model's state. After each step the loss and the
whole float state (weights, running statistics, optimizer state) are checked for NaN/inf; a non-finite one stops
``fit`` with :class:`TrainingError` naming the epoch and step. That error, Ctrl-C (``KeyboardInterrupt``) or any
other exception during an epoch's steps or validation restores the state of that epoch's start (weights,
optimizer moments and step count, learning rate, running statistics, dropout counter) before it propagates, so
after ``fit`` raises the model is exactly as after its last completed epoch (what ``History`` and
``ModelCheckpoint`` saw). An exception raised by an epoch-end callback keeps that completed epoch.
"""

from __future__ import annotations

import math
import sys
import threading
from collections import OrderedDict
from typing import Any

import numpy as np

import graphc.nn.losses as L
import graphc.optim as optim
from graphc.api import compile as compile_program
from graphc.ir import Graph, GraphcError, Node
from graphc.nn.callbacks import Callback, History, ProgressBar
from graphc.nn.layers import Layer
from graphc.nn.saving import apply_saved_state, read_model, save_model
from graphc.nn.state import describe_nonfinite, first_nonfinite, owned_entries, restore, snapshot
from ops import fn


class TrainingError(GraphcError):
    """Training diverged (a NaN or infinite loss, weight or optimizer value); ``history`` holds the epochs completed
    before, and the model's state is that of the start of the failing epoch."""

    def __init__(self, message: str, history: History) -> None:
        super().__init__(message)
        self.history = history


class Sequential:
    """A stack of layers; ``build`` → ``compile`` → ``fit`` / ``evaluate`` / ``predict``."""

    MAX_PROGRAMS = 8  # compiled programs kept per model (least recently used dropped first)

    def __init__(self, layers: list[Layer] | None = None, name: str = "sequential") -> None:
        self.name = name
        self.layers: list[Layer] = []
        self.graph: Graph | None = None
        self.input_shape: tuple[int, ...] | None = None
        self.output_shape: tuple[int, ...] | None = None
        self.loss: str | None = None
        self.metrics: list[str] = []
        self.optimizer: optim.Optimizer | None = None
        self.backend: str | None = None
        self.threads: int | None = None
        self.stop_training = False
        self._programs: OrderedDict[tuple[str, int], tuple[Any, str, str | None]] = OrderedDict()
        self._programs_lock = threading.RLock()
        self._pending_state: dict[str, np.ndarray] = {}
        for layer in layers or []:
            self.add(layer)

    # -- structure -----------------------------------------------------------------------------------
    def add(self, layer: Layer) -> None:
        if not isinstance(layer, Layer):
            raise GraphcError(f"Sequential.add expects a layer, got {type(layer).__name__}")
        if self.graph is not None:
            raise GraphcError("cannot add layers after the model was built")
        if layer.name is None:
            base = type(layer).__name__.lower()
            taken = {other.name for other in self.layers}
            layer.name = base if base not in taken else next(f"{base}_{i}" for i in range(1, 10**6)
                                                              if f"{base}_{i}" not in taken)
        self.layers.append(layer)

    def build(self, input_shape: Any = None, seed: int = 0) -> Sequential:
        """Create the params for inputs of ``input_shape`` (without the batch axis)."""
        if self.graph is not None:
            return self
        shape = input_shape if input_shape is not None else (self.layers[0].input_shape if self.layers else None)
        if shape is None:
            raise GraphcError("give the first layer an input_shape=... or call model.build(input_shape)")
        if not self.layers:
            raise GraphcError("the model has no layers")
        self.graph, rng = Graph(self.name), np.random.default_rng(seed)
        self.input_shape = shape = tuple(int(d) for d in shape)
        for layer in self.layers:
            shape = layer.build(self.graph, shape, rng)
        self.output_shape = shape
        return self

    def _require_built(self) -> None:
        if self.graph is None:
            self.build()

    def summary(self, print_fn: Any = print) -> None:
        """Layers, output shapes and parameter counts."""
        self._require_built()
        rows = [("Layer (type)", "Output Shape", "Param #")]
        for layer in self.layers:
            trainable, frozen = layer.count_params()
            rows.append((f"{layer.name} ({type(layer).__name__})", str((None, *layer.output_shape)),
                         str(trainable + frozen)))
        widths = [max(len(r[i]) for r in rows) + 2 for i in range(3)]
        rule = "=" * sum(widths)
        print_fn(f'Model: "{self.name}"')
        print_fn(rule)
        for i, row in enumerate(rows):
            print_fn("".join(cell.ljust(w) for cell, w in zip(row, widths)))
            print_fn(rule if i == 0 else "-" * sum(widths))
        trainable = sum(layer.count_params()[0] for layer in self.layers)
        frozen = sum(layer.count_params()[1] for layer in self.layers)
        print_fn(f"Total params: {trainable + frozen:,}")
        print_fn(f"Trainable params: {trainable:,}")
        print_fn(f"Non-trainable params: {frozen:,}")

    # -- weights -------------------------------------------------------------------------------------
    def layer_param_names(self) -> list[str]:
        return [p.name for layer in self.layers for p in layer.params.values()]

    def get_weights(self) -> dict[str, np.ndarray]:
        self._require_built()
        with self.graph.state_lock:
            return {name: self.graph.state[name].copy() for name in self.layer_param_names()}

    def set_weights(self, weights: dict[str, np.ndarray]) -> None:
        self._require_built()
        for name, value in weights.items():
            target = self.graph.state.get(name)
            if target is None or target.shape != np.shape(value):
                raise GraphcError(f"set_weights: {name!r} is not a model weight of shape {np.shape(value)}")
            target[...] = value

    def set_state(self, state: dict[str, np.ndarray]) -> None:
        """Copy graph state by name (weights, running statistics, optimizer state, counters).

        Optimizer state does not exist until the first training program is built; those entries are kept and
        applied then, so a fresh model given another model's state continues exactly where that one stopped.
        """
        self._require_built()
        for name, value in state.items():
            if name in self.graph.state:
                self.graph.state[name][...] = value
            else:
                self._pending_state[name] = np.array(value, copy=True)

    # -- compile -------------------------------------------------------------------------------------
    def compile(self, loss: str, optimizer: Any = "adam", metrics: Any = None, backend: str | None = None,
                threads: int | None = None) -> None:
        """Choose the loss, optimizer and metrics; ``backend`` and ``threads`` (native code's thread count; default
        ``$GRAPHC_NUM_THREADS`` or the cores this process may use) apply to every program the model compiles."""
        from runtime.parallel import check_threads

        self.loss = L.check_loss(loss)
        self.metrics = L.check_metrics(metrics)
        self.optimizer = optim.get(optimizer)
        self.backend = backend
        self.threads = check_threads(threads)
        self._programs.clear()
        self._require_built()

    def _require_compiled(self) -> None:
        if self.loss is None:
            raise GraphcError("call model.compile(loss=..., optimizer=...) first")

    def _forward(self, batch: int, training: bool) -> tuple[Node, Node]:
        mode = "train" if training else "infer"
        x = self.graph.input(self.graph.unique_name(f"x_{mode}{batch}"), (batch, *self.input_shape))
        h = x
        for layer in self.layers:
            h = layer.call(h, training)
        return x, h

    def _loss(self, batch: int, out: Node) -> tuple[Node, Node]:
        shape, dtype = L.target_spec(self.loss, self.output_shape)
        y = self.graph.input(self.graph.unique_name(f"y{batch}"), (batch, *shape), dtype)
        total = L.build_loss(self.loss, out, y)
        for penalty in (p for layer in self.layers for p in layer.regularization()):
            total = fn.add(total, penalty)
        return y, total

    def _program(self, mode: str, batch: int) -> tuple[Any, str, str | None]:
        """(program, input name, target name) for ``mode`` and ``batch``, from the LRU cache or compiled now.

        At most ``MAX_PROGRAMS`` programs are kept: a model used with many batch sizes (predict on arrays of many
        lengths) would otherwise keep one compiled program per size forever. A dropped program is rebuilt on its
        next use; the state it updates lives in the graph, so nothing is lost.
        """
        key = (mode, batch)
        with self._programs_lock:
            entry = self._programs.get(key)
            if entry is not None:
                self._programs.move_to_end(key)
                return entry
            entry = self._build_program(mode, batch)
            self._programs[key] = entry
            while len(self._programs) > max(1, self.MAX_PROGRAMS):
                self._programs.popitem(last=False)
            return entry

    def _options(self) -> dict[str, Any]:
        return {} if self.threads is None else {"threads": self.threads}

    def _build_program(self, mode: str, batch: int) -> tuple[Any, str, str | None]:
        x, out = self._forward(batch, training=(mode == "train"))
        if mode == "predict":
            prog, y = compile_program({"output": out}, backend=self.backend, **self._options()), None
        else:
            y, loss = self._loss(batch, out)
            updates = self.optimizer.minimize(loss) if mode == "train" else None
            prog = compile_program({"loss": loss, "output": out}, backend=self.backend, updates=updates,
                                   **self._options())
            if mode == "train":
                self._apply_pending_state()
        return prog, x.name, None if y is None else y.name

    def _apply_pending_state(self) -> None:
        for name in [n for n in self._pending_state if n in self.graph.state]:
            self.graph.state[name][...] = self._pending_state.pop(name)

    # -- data checks ---------------------------------------------------------------------------------
    def _check_xy(self, x: Any, y: Any) -> tuple[np.ndarray, np.ndarray | None]:
        return L.check_data(x, y, self.input_shape, self.output_shape, self.loss)

    # -- training ------------------------------------------------------------------------------------
    def fit(self, x: Any, y: Any, epochs: int = 1, batch_size: int = 32, validation_data: Any = None,
            validation_split: float = 0.0, shuffle: bool = True, callbacks: list[Callback] | None = None,
            verbose: int = 1, seed: int = 0) -> History:
        """Train for ``epochs``; returns a History with per-epoch loss, metrics and val_* values.

        Each epoch is all-or-nothing. After every step the loss and the model's float state are checked: a NaN or
        ±inf stops training with :class:`TrainingError` naming the epoch and step (weights can overflow while the
        loss, computed before the update, is still finite). That error, a ``KeyboardInterrupt`` (Ctrl-C) or any
        other exception raised during an epoch's steps or validation restores the complete state of the epoch's
        start — weights, running statistics, optimizer moments, step count and learning rate, dropout counter —
        and is re-raised: the model is then exactly as after its last completed epoch, consistent with
        ``History`` and any checkpoint. An exception from an epoch-end callback keeps the completed epoch.
        """
        self._require_compiled()
        x, y = self._check_xy(x, y)
        if validation_split and validation_data is None:
            if not 0.0 < validation_split < 1.0:
                raise GraphcError(f"validation_split must be in (0, 1), got {validation_split}")
            cut = len(x) - int(round(len(x) * validation_split))
            x, y, validation_data = x[:cut], y[:cut], (x[cut:], y[cut:])
        if validation_data is not None:
            validation_data = self._check_xy(*validation_data)
        names = self._prepare_training(len(x), batch_size)
        history = History()
        callbacks = [history, *(callbacks or [])]
        for cb in callbacks:
            cb.set_model(self)
            cb.on_train_begin()
        self.stop_training = False
        rng = np.random.default_rng(seed)
        for epoch in range(epochs):
            start = snapshot(self.graph)
            order = rng.permutation(len(x)) if shuffle else np.arange(len(x))
            try:
                logs = self._run_epoch(x, y, order, (epoch, epochs), batch_size, names, verbose, validation_data,
                                       history)
            except BaseException:
                restore(self.graph, start)
                raise
            for cb in callbacks:
                cb.on_epoch_end(epoch, logs)
            if self.stop_training:
                break
        for cb in callbacks:
            cb.on_train_end()
        return history

    def _prepare_training(self, count: int, batch_size: int) -> list[str]:
        """Build the training programs of this fit before the first epoch snapshot (so optimizer state and counters
        exist in it), check the starting state is finite; the state names checked after each step."""
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size <= 0:
            raise GraphcError(f"batch_size must be a positive integer, got {batch_size!r}")
        for size in sorted({min(batch_size, count), count % batch_size} - {0}):
            self._program("train", size)
        names = list(owned_entries(self).values())
        bad = first_nonfinite(self.graph.state, names)
        if bad is not None:
            raise GraphcError(f"fit: the model's state is not finite ({bad} holds "
                              f"{describe_nonfinite(self.graph.state[bad])}); load or build a finite model first")
        return names

    def _run_epoch(self, x: np.ndarray, y: np.ndarray, order: np.ndarray, epoch_of: tuple[int, int],
                   batch_size: int, names: list[str], verbose: int, validation_data: Any,
                   history: History) -> dict[str, float]:
        """Train one epoch over ``order`` (then validate); the epoch's logs. Raises TrainingError on divergence."""
        steps = math.ceil(len(x) / batch_size)
        bar = ProgressBar(*epoch_of, steps, verbose)
        totals: dict[str, float] = {}
        seen = 0
        for step in range(steps):
            idx = order[step * batch_size:(step + 1) * batch_size]
            prog, x_name, y_name = self._program("train", len(idx))
            self.optimizer.apply_schedule()
            out = prog(**{x_name: x[idx], y_name: y[idx]})
            loss = float(out["loss"])
            self._check_step(loss, names, f"epoch {epoch_of[0] + 1}, step {step + 1}/{steps} "
                                          f"(examples {int(idx[0])}...)", epoch_of[0], history)
            seen += len(idx)
            for key, value in self._batch_logs(loss, out["output"], y[idx]).items():
                totals[key] = totals.get(key, 0.0) + value * len(idx)
            bar.update(step + 1, {k: v / seen for k, v in totals.items()})
        logs = {k: v / seen for k, v in totals.items()}
        if validation_data is not None:
            logs.update({f"val_{k}": v for k, v in self.evaluate(*validation_data, batch_size=batch_size,
                                                                   return_dict=True).items()})
        bar.update(steps, logs, final=True)
        return logs

    def _check_step(self, loss: float, names: list[str], where: str, epoch: int, history: History) -> None:
        """Raise TrainingError when the step's loss or the state it left is not finite (cost: module docstring
        of graphc.nn.state)."""
        if math.isfinite(loss):
            bad = first_nonfinite(self.graph.state, names)
            if bad is None:
                return
            problem = f"{bad} became {describe_nonfinite(self.graph.state[bad])} (the loss was still {loss:.6g})"
        else:
            problem = f"the loss became {loss}"
        raise TrainingError(f"{problem} at {where}; training stopped and the weights and optimizer state were "
                            f"restored to the start of epoch {epoch + 1}. Try a smaller learning rate.", history)

    def _batch_logs(self, loss: float, output: np.ndarray, targets: np.ndarray) -> dict[str, float]:
        logs = {"loss": loss}
        if "accuracy" in self.metrics:
            logs["accuracy"] = L.accuracy(self.loss, output, targets)
        return logs

    def evaluate(self, x: Any, y: Any, batch_size: int = 32, verbose: int = 0, return_dict: bool = False) -> Any:
        """Loss and metrics in inference mode; a list [loss, *metrics] (Keras order) or a dict."""
        self._require_compiled()
        x, y = self._check_xy(x, y)
        totals: dict[str, float] = {}
        for start in range(0, len(x), batch_size):
            xb, yb = x[start:start + batch_size], y[start:start + batch_size]
            prog, x_name, y_name = self._program("eval", len(xb))
            out = prog(**{x_name: xb, y_name: yb})
            for key, value in self._batch_logs(float(out["loss"]), out["output"], yb).items():
                totals[key] = totals.get(key, 0.0) + value * len(xb)
        logs = {k: v / len(x) for k, v in totals.items()}
        if verbose:
            print(" - ".join(f"{k}: {v:.4f}" for k, v in logs.items()), file=sys.stdout)
        return logs if return_dict else (list(logs.values()) if len(logs) > 1 else logs["loss"])

    def predict(self, x: Any, batch_size: int = 32) -> np.ndarray:
        """Model outputs in inference mode."""
        self._require_built()
        x, _ = self._check_xy(x, None)
        parts = []
        for start in range(0, len(x), batch_size):
            xb = x[start:start + batch_size]
            prog, x_name, _ = self._program("predict", len(xb))
            parts.append(prog(**{x_name: xb})["output"])
        return np.concatenate(parts) if parts else np.zeros((0, *self.output_shape), np.float32)

    def train_on_batch(self, x: Any, y: Any) -> dict[str, float]:
        """One training step (forward, backward, update) on exactly this batch; returns its loss and metrics."""
        self._require_compiled()
        x, y = self._check_xy(x, y)
        prog, x_name, y_name = self._program("train", len(x))
        self.optimizer.apply_schedule()
        out = prog(**{x_name: x, y_name: y})
        return self._batch_logs(float(out["loss"]), out["output"], y)

    def render(self, path: str, batch_size: int = 32) -> str:
        """Draw the training step for ``batch_size`` (forward graph, backward graph and parameter updates) into
        ``path``; returns the file written."""
        from graphc.viz import render

        self._require_compiled()
        prog = self._program("train", batch_size)[0]
        outputs = {"loss": prog.output_nodes[0]}
        outputs.update({f"new {param.name}": value for param, value in prog.updates})
        return render(outputs, path).path

    # -- saving --------------------------------------------------------------------------------------
    def save(self, path: str) -> None:
        """Write the model (architecture, compile settings, whole state) to ``path`` atomically; refuses a model
        whose state is not finite (format and guarantees: graphc.nn.saving, graphc.nn.fileformat)."""
        save_model(self, path)


def load_model(path: str, backend: str | None = None, threads: int | None = None) -> Sequential:
    """Rebuild a saved Sequential model: layers (with regularizers), loss, metrics, optimizer (hyper-parameters,
    schedule) and the whole state (weights, running statistics, optimizer moments, step count, learning rate).

    The file is validated completely before anything is built (``graphc.nn.saving``); a wrong, truncated or
    hostile file raises one ``ModelFileError`` (a GraphcError) naming the file and the offending entry.
    """
    saved = read_model(path)
    model = Sequential(saved.layers, name=saved.name).build(saved.input_shape)
    if saved.loss is not None:
        model.compile(saved.loss, optimizer=saved.optimizer, metrics=saved.metrics, backend=backend, threads=threads)
    apply_saved_state(model, saved)
    return model
