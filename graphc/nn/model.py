"""``Sequential``: a Keras-like model compiled into graphc programs.

One graph holds the model's params. Each (mode, batch size) gets its own compiled program, built on first use
and cached: the training step (forward, backward and optimizer update in one call), evaluation (inference mode:
dropout off, batch norm on running statistics) and prediction. Shapes are static, so the last partial batch of
an epoch runs through a second program of its size instead of being dropped.
"""

from __future__ import annotations

import math
import sys
from typing import Any

import numpy as np

import graphc.nn.losses as L
import graphc.optim as optim
from graphc.api import compile as compile_program
from graphc.ir import Graph, GraphcError, Node
from graphc.nn.callbacks import Callback, History, ProgressBar
from graphc.nn.layers import Layer
from graphc.nn.saving import optimizer_from, read_model, save_model
from ops import fn


class TrainingError(GraphcError):
    """Training diverged (NaN or infinite loss); ``history`` holds the epochs completed before."""

    def __init__(self, message: str, history: History) -> None:
        super().__init__(message)
        self.history = history


class Sequential:
    """A stack of layers; ``build`` → ``compile`` → ``fit`` / ``evaluate`` / ``predict``."""

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
        self.stop_training = False
        self._programs: dict[tuple[str, int], Any] = {}
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
    def compile(self, loss: str, optimizer: Any = "adam", metrics: Any = None, backend: str | None = None) -> None:
        self.loss = L.check_loss(loss)
        self.metrics = L.check_metrics(metrics)
        self.optimizer = optim.get(optimizer)
        self.backend = backend
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
        key = (mode, batch)
        if key not in self._programs:
            x, out = self._forward(batch, training=(mode == "train"))
            if mode == "predict":
                prog, y = compile_program({"output": out}, backend=self.backend), None
            else:
                y, loss = self._loss(batch, out)
                updates = self.optimizer.minimize(loss) if mode == "train" else None
                prog = compile_program({"loss": loss, "output": out}, backend=self.backend, updates=updates)
                if mode == "train":
                    self._apply_pending_state()
            self._programs[key] = (prog, x.name, None if y is None else y.name)
        return self._programs[key]

    def _apply_pending_state(self) -> None:
        for name in [n for n in self._pending_state if n in self.graph.state]:
            self.graph.state[name][...] = self._pending_state.pop(name)

    # -- data checks ---------------------------------------------------------------------------------
    def _check_xy(self, x: Any, y: Any) -> tuple[np.ndarray, np.ndarray | None]:
        x = np.asarray(x)
        if x.shape[1:] != self.input_shape:
            expected = ", ".join(map(str, self.input_shape))
            raise GraphcError(f"inputs have shape {x.shape}; the model expects (batch, {expected})")
        if y is None:
            return x, None
        y = np.asarray(y)
        shape, dtype = L.target_spec(self.loss, self.output_shape)
        if len(y) != len(x):
            raise GraphcError(f"{len(x)} inputs but {len(y)} labels")
        if y.shape[1:] != shape or (dtype == "int64" and y.dtype.kind not in "iu"):
            hint = ""
            if self.loss == "sparse_categorical_crossentropy" and y.ndim == 2:
                hint = "; for one-hot targets use loss='categorical_crossentropy'"
            elif self.loss == "categorical_crossentropy" and y.ndim == 1:
                hint = "; for integer class labels use loss='sparse_categorical_crossentropy' (or gc.data.one_hot)"
            kind = "integer class labels" if dtype == "int64" else f"{dtype} targets"
            raise GraphcError(f"labels have shape {y.shape} ({y.dtype}) but loss {self.loss!r} expects {kind} "
                              f"of shape ({len(x)}{''.join(', ' + str(d) for d in shape)}){hint}")
        return x, y

    # -- training ------------------------------------------------------------------------------------
    def fit(self, x: Any, y: Any, epochs: int = 1, batch_size: int = 32, validation_data: Any = None,
            validation_split: float = 0.0, shuffle: bool = True, callbacks: list[Callback] | None = None,
            verbose: int = 1, seed: int = 0) -> History:
        """Train for ``epochs``; returns a History with per-epoch loss, metrics and val_* values."""
        self._require_compiled()
        x, y = self._check_xy(x, y)
        if validation_split and validation_data is None:
            if not 0.0 < validation_split < 1.0:
                raise GraphcError(f"validation_split must be in (0, 1), got {validation_split}")
            cut = len(x) - int(round(len(x) * validation_split))
            x, y, validation_data = x[:cut], y[:cut], (x[cut:], y[cut:])
        if validation_data is not None:
            validation_data = self._check_xy(*validation_data)
        history = History()
        callbacks = [history, *(callbacks or [])]
        for cb in callbacks:
            cb.set_model(self)
            cb.on_train_begin()
        self.stop_training = False
        rng = np.random.default_rng(seed)
        steps = math.ceil(len(x) / batch_size)
        for epoch in range(epochs):
            snapshot = {k: v.copy() for k, v in self.graph.state.items()}
            order = rng.permutation(len(x)) if shuffle else np.arange(len(x))
            bar = ProgressBar(epoch, epochs, steps, verbose)
            totals: dict[str, float] = {}
            seen = 0
            for step in range(steps):
                idx = order[step * batch_size:(step + 1) * batch_size]
                prog, x_name, y_name = self._program("train", len(idx))
                self.optimizer.apply_schedule()
                out = prog(**{x_name: x[idx], y_name: y[idx]})
                loss = float(out["loss"])
                if not math.isfinite(loss):
                    for k, v in snapshot.items():
                        self.graph.state[k][...] = v
                    raise TrainingError(f"the loss became {loss} at epoch {epoch + 1}, step {step + 1}/{steps} "
                                        f"(examples {int(idx[0])}...); training stopped and the weights were "
                                        f"restored to the start of epoch {epoch + 1}. Try a smaller learning rate.",
                                        history)
                seen += len(idx)
                for key, value in self._batch_logs(loss, out["output"], y[idx]).items():
                    totals[key] = totals.get(key, 0.0) + value * len(idx)
                bar.update(step + 1, {k: v / seen for k, v in totals.items()})
            logs = {k: v / seen for k, v in totals.items()}
            if validation_data is not None:
                logs.update({f"val_{k}": v for k, v in self.evaluate(*validation_data, batch_size=batch_size,
                                                                       return_dict=True).items()})
            bar.update(steps, logs, final=True)
            for cb in callbacks:
                cb.on_epoch_end(epoch, logs)
            if self.stop_training:
                break
        for cb in callbacks:
            cb.on_train_end()
        return history

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
        save_model(self, path)


def load_model(path: str, backend: str | None = None) -> Sequential:
    """Rebuild a saved Sequential model with its weights; optimizer state is restored when training resumes."""
    description, state, layers = read_model(path)
    model = Sequential(layers, name=description["name"]).build(tuple(description["input_shape"]))
    compiled = description.get("compile")
    if compiled:
        model.compile(compiled["loss"], optimizer=optimizer_from(compiled["optimizer"]), metrics=compiled["metrics"],
                      backend=backend)
    model.set_state(state)
    return model
