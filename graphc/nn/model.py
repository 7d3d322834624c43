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

import graphc.distributed.keras as distributed_fit
import graphc.nn.layout as layout
import graphc.nn.losses as L
import graphc.nn.metrics as M
import graphc.nn.saving as saving
import graphc.nn.structure as structure
import graphc.nn.training as T
import graphc.optim as optim
from graphc.api import compile as compile_program
from graphc.distributed import DistributedOptimizer
from graphc.ir import Graph, GraphcError, Node
from graphc.nn.callbacks import Callback, CallbackList, History
from graphc.nn.layers import InputLayer, Layer
from graphc.nn.progress import ProgressBar, compiling
from graphc.nn.saving import apply_saved_state, read_model, save_model
from graphc.nn.state import describe_nonfinite, first_nonfinite, owned_entries, restore, snapshot
from graphc.nn.training import TrainingError
from ops import fn


class Sequential:
    """A stack of layers; ``build`` → ``compile`` → ``fit`` / ``evaluate`` / ``predict``."""

    MAX_PROGRAMS = 8  # compiled programs kept per model (least recently used dropped first)

    def __init__(self, layers: list[Layer] | None = None, name: str = "sequential",
                 data_format: str | None = None) -> None:
        self.name = name
        self.layers: list[Layer] = []
        self.graph: Graph | None = None
        # the model's image layout (graphc.nn.layout): as given; after build, the one resolved
        self.data_format = layout.check_format(data_format, "Sequential")
        self._requested_format = self.data_format
        self._declared_input: InputLayer | None = None
        self.input_shape: tuple[int, ...] | None = None  # per example, in the user's layout
        self._layer_input_shape: tuple[int, ...] | None = None  # what the first layer sees (NCHW images)
        self.output_shape: tuple[int, ...] | None = None
        self.loss: str | None = None
        self.metrics: list[str] = []  # metric names (log keys); their functions: self._metric_runner
        self._metric_runner = M.MetricRunner([])
        self.optimizer: optim.Optimizer | None = None
        self.backend: str | None = None
        self.threads: int | None = None
        self.stop_training = False
        self._distributed = False  # fit(distributed=...): training programs average gradients over MPI ranks
        self._programs: OrderedDict[tuple[str, int], tuple[Any, str, str | None]] = OrderedDict()
        self._programs_lock = threading.RLock()
        self._pending_state: dict[str, np.ndarray] = {}
        for layer in layers or []:
            self.add(layer)

    # -- structure -----------------------------------------------------------------------------------
    def add(self, layer: Layer | InputLayer) -> None:
        if isinstance(layer, InputLayer):
            if self.layers or self._declared_input is not None:
                raise GraphcError("Input/InputLayer must be the first element of a Sequential, and only one")
            self._declared_input = layer
            return
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

    def _declared_shape(self) -> tuple[int, ...] | None:
        """The input shape given by an Input/InputLayer or the first layer's input_shape/input_dim, if any."""
        if self._declared_input is not None:
            return self._declared_input.input_shape
        return self.layers[0].input_shape if self.layers else None

    def build(self, input_shape: Any = None, seed: int = 0) -> Sequential:
        """Create the params for inputs of ``input_shape``: without the batch axis, ``(4,)``, or Keras' form with
        it, ``(None, 4)``. Image shapes are in the model's data format. A build that fails leaves the model
        unbuilt (a later correct build works)."""
        if self.graph is not None:
            return self
        if not self.layers:
            raise GraphcError("the model has no layers")
        shape = structure.input_shape_of(input_shape, self._declared_shape())
        fmt, stated = layout.resolve(self._requested_format or getattr(self._declared_input, "data_format", None),
                                     self.layers)
        layout.check_ambiguous(shape, fmt, stated)
        graph, inner, out = structure.build_layers(self.name, self.layers, shape, fmt, seed)
        self.graph, self.data_format, self.input_shape, self._layer_input_shape = graph, fmt, shape, inner
        self.output_shape = layout.to_user(out, fmt)
        return self

    def _require_built(self) -> None:
        if self.graph is None:
            self.build()

    def summary(self, print_fn: Any = print) -> None:
        """Layers, output shapes (in the model's data format) and parameter counts, as Keras prints them."""
        self._require_built()
        structure.summary(self, print_fn)

    def get_layer(self, name: str | None = None, index: int | None = None) -> Layer:
        """A layer by name or by index (Keras' ``model.get_layer``)."""
        return structure.get_layer(self.layers, name, index)

    def count_params(self) -> int:
        """The number of weights (trainable and not), as in ``summary()``."""
        self._require_built()
        return sum(sum(layer.count_params()) for layer in self.layers)

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
        self._metric_runner = M.MetricRunner(M.resolve(metrics, self.loss))
        self.metrics = self._metric_runner.names
        self.optimizer = optim.get(optimizer)
        self.backend = backend
        self.threads = check_threads(threads)
        self._programs.clear()
        if self._declared_shape() is not None:  # else the first fit/evaluate/predict builds it from the data
            self._require_built()
        if self.output_shape is not None:  # a metric that cannot apply to these targets fails here, not in fit
            self._metric_runner.check(*L.target_spec(self.loss, self.output_shape), self.output_shape)

    def _require_compiled(self) -> None:
        if self.loss is None:
            raise GraphcError("call model.compile(loss=..., optimizer=...) first")

    def _forward(self, batch: int, training: bool) -> tuple[Node, Node]:
        mode = "train" if training else "infer"
        x = self.graph.input(self.graph.unique_name(f"x_{mode}{batch}"), (batch, *self.input_shape))
        h = x
        if self._layer_input_shape != self.input_shape:  # channels_last images: the one NHWC -> NCHW conversion
            h = fn.transpose(x, (0, 3, 1, 2))
        from graphc.ir import name_scope  # each layer's nodes are named "<layer>/<op>_<k>"

        for layer in self.layers:
            with name_scope(layer.name):
                h = layer.call(h, training)
        if tuple(h.shape[1:]) != self.output_shape:  # an image output of a channels_last model, back to NHWC
            h = fn.transpose(h, (0, 2, 3, 1))
        return x, h

    def _loss(self, batch: int, out: Node, weighted: bool = False) -> tuple[Node, Node]:
        """(targets input, training loss); ``weighted`` adds the per-example weights input ``<targets>_weights``."""
        shape, dtype = L.target_spec(self.loss, self.output_shape)
        y = self.graph.input(self.graph.unique_name(f"y{batch}"), (batch, *shape), dtype)
        weights = self.graph.input(f"{y.name}_weights", (batch,), "float32") if weighted else None
        total = L.build_loss(self.loss, out, y, weights)
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
        """Modes: "train", "eval", "predict"; "train_w" / "eval_w" also take per-example loss weights."""
        training = mode.startswith("train")
        x, out = self._forward(batch, training=training)
        if mode == "predict":
            prog, y = compile_program({"output": out}, backend=self.backend, **self._options()), None
        else:
            y, loss = self._loss(batch, out, weighted=mode.endswith("_w"))
            opt = DistributedOptimizer(self.optimizer) if self._distributed else self.optimizer
            updates = opt.minimize(loss) if training else None
            prog = compile_program({"loss": loss, "output": out}, backend=self.backend, updates=updates,
                                   **self._options())
            if training:
                self._apply_pending_state()
        return prog, x.name, None if y is None else y.name

    def _apply_pending_state(self) -> None:
        for name in [n for n in self._pending_state if n in self.graph.state]:
            self.graph.state[name][...] = self._pending_state.pop(name)

    # -- data checks ---------------------------------------------------------------------------------
    def _check_xy(self, x: Any, y: Any) -> tuple[np.ndarray, np.ndarray | None]:
        """Checked arrays; a model without an input shape is built from ``x``'s first (Keras' deferred build)."""
        if self.graph is None:
            self.build(None if self._declared_shape() is not None else np.shape(x)[1:])
        return L.check_data(x, y, self.input_shape, self.output_shape, self.loss, self.data_format)

    @staticmethod
    def _feeds(x_name: str, y_name: str | None, x: np.ndarray, y: np.ndarray | None = None,
               weights: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """A program's feeds; the weights input of a "train_w"/"eval_w" program is named after its targets."""
        feeds = {x_name: x} if y_name is None else {x_name: x, y_name: y}
        if weights is not None:
            feeds[f"{y_name}_weights"] = weights
        return feeds

    # -- training ------------------------------------------------------------------------------------
    def fit(self, x: Any, y: Any, epochs: int = 1, batch_size: int | None = None, validation_data: Any = None,
            validation_split: float = 0.0, shuffle: bool = True, callbacks: list[Callback] | None = None,
            verbose: int = 1, seed: int = 0, initial_epoch: int = 0, class_weight: dict | None = None,
            sample_weight: Any = None, distributed: bool | None = None) -> History:
        """Train for ``epochs``; returns a History with per-epoch loss, metrics and val_* values.

        Keras' arguments: ``batch_size=None`` is 32; ``validation_data`` is ``(x, y)`` or ``(x, y, sample_weight)``;
        ``validation_split`` holds out the last fraction (before shuffling); training runs epochs
        ``initial_epoch .. epochs - 1``; ``class_weight`` / ``sample_weight`` weight each example's loss
        (graphc.nn.training).

        Each epoch is all-or-nothing. After every step the loss and the model's float state are checked: a NaN or
        ±inf stops training with :class:`TrainingError` naming the epoch and step (weights can overflow while the
        loss, computed before the update, is still finite). That error, a ``KeyboardInterrupt`` (Ctrl-C) or any
        other exception raised during an epoch's steps or validation restores the complete state of the epoch's
        start — weights, running statistics, optimizer moments, step count and learning rate, dropout counter —
        and is re-raised: the model is then exactly as after its last completed epoch, consistent with
        ``History`` and any checkpoint. An exception from an epoch-end callback keeps the completed epoch.

        ``distributed=True`` (or ``None`` after ``graphc.distributed.init()``), under ``mpiexec``: data-parallel
        training, each rank on its shard with ``batch_size`` examples per step and gradients averaged over the ranks;
        logs averaged, printing and checkpoints on rank 0 (``graphc.distributed.keras``).
        """
        self._require_compiled()
        shards = distributed_fit.begin(self, distributed)
        verbose = verbose if shards is None or shards.rank == 0 else 0
        batch_size = T.batch_size(batch_size)
        T.check_initial_epoch(initial_epoch)
        x, y, weights, validation_data = T.fit_data(self._check_xy, self.loss, x, y, validation_data,
                                                    validation_split, sample_weight, class_weight)
        with compiling(verbose):  # "compiling… 1.3 s": the first epoch's speed is then the training speed
            names = self._prepare_training(len(x) if shards is None else shards.shard_length(len(x)), batch_size,
                                           "train" if weights is None else "train_w")
        if shards is not None:
            distributed_fit.broadcast_state(self.graph)  # every rank starts from rank 0's weights and optimizer state
        history = History()
        callbacks = CallbackList(callbacks, self, history)
        self.stop_training = False
        callbacks.on_train_begin()
        rng = np.random.default_rng(seed)
        logs: dict[str, float] = {}
        for epoch in range(initial_epoch, epochs):
            start = snapshot(self.graph)
            order = rng.permutation(len(x)) if shuffle else np.arange(len(x))
            order = order if shards is None else shards.shard(order)
            try:
                callbacks.on_epoch_begin(epoch)
                logs = self._run_epoch(x, y, order, (epoch, epochs), batch_size, names, verbose, validation_data,
                                       history, weights, callbacks)
            except TrainingError:
                restore(self.graph, start)
                if not callbacks.terminate_on_nan():  # TerminateOnNaN: stop cleanly after the last whole epoch
                    raise
                break
            except BaseException:
                restore(self.graph, start)
                raise
            callbacks.on_epoch_end(epoch, logs)
            if self.stop_training:
                break
        callbacks.on_train_end(logs)
        return history

    def _prepare_training(self, count: int, batch_size: int, mode: str = "train") -> list[str]:
        """Build the training programs of this fit before the first epoch snapshot (so optimizer state and counters
        exist in it), check the starting state is finite; the state names checked after each step."""
        batch_size = T.batch_size(batch_size)
        for size in sorted({min(batch_size, count), count % batch_size} - {0}):
            self._program(mode, size)
        names = list(owned_entries(self).values())
        bad = first_nonfinite(self.graph.state, names)
        if bad is not None:
            raise GraphcError(f"fit: the model's state is not finite ({bad} holds "
                              f"{describe_nonfinite(self.graph.state[bad])}); load or build a finite model first")
        return names

    def _run_epoch(self, x: np.ndarray, y: np.ndarray, order: np.ndarray, epoch_of: tuple[int, int],
                   batch_size: int, names: list[str], verbose: int, validation_data: Any,
                   history: History, weights: np.ndarray | None = None,
                   callbacks: CallbackList | None = None) -> dict[str, float]:
        """Train one epoch over ``order`` (then validate); the epoch's logs. Raises TrainingError on divergence.
        A batch callback setting ``stop_training`` ends the epoch after that step (then validation runs)."""
        steps = math.ceil(len(order) / batch_size)
        bar = ProgressBar(*epoch_of, steps, verbose)
        totals: dict[str, float] = {}
        seen = done = 0
        for step in range(steps):
            if callbacks is not None:
                callbacks.on_train_batch_begin(step)
            idx = order[step * batch_size:(step + 1) * batch_size]
            prog, x_name, y_name = self._program("train" if weights is None else "train_w", len(idx))
            self.optimizer.apply_schedule()
            out = prog(**self._feeds(x_name, y_name, x[idx], y[idx], None if weights is None else weights[idx]))
            loss = float(out["loss"])
            self._check_step(loss, names, f"epoch {epoch_of[0] + 1}, step {step + 1}/{steps} "
                                          f"(examples {int(idx[0])}...)", epoch_of[0], history)
            seen, done = seen + len(idx), step + 1
            for key, value in self._batch_logs(loss, out["output"], y[idx]).items():
                totals[key] = totals.get(key, 0.0) + value * len(idx)
            bar.update(done, {k: v / seen for k, v in totals.items()})
            if callbacks is not None:
                callbacks.on_train_batch_end(step, {k: v / seen for k, v in totals.items()})
                if self.stop_training:
                    break
        logs = {k: v / seen for k, v in totals.items()}
        if self._distributed:
            logs = distributed_fit.average_logs(logs)
        if validation_data is not None:
            bar.validating()
            vx, vy, vw = validation_data
            logs.update({f"val_{k}": v for k, v in self.evaluate(vx, vy, batch_size=batch_size, return_dict=True,
                                                                   sample_weight=vw).items()})
        bar.update(done, logs, final=True)
        return logs

    def _check_step(self, loss: float, names: list[str], where: str, epoch: int, history: History) -> None:
        """Raise TrainingError when the step's loss or the state it left is not finite."""
        T.check_step(self.graph.state, loss, names, where, epoch, history)

    def _batch_logs(self, loss: float, output: np.ndarray, targets: np.ndarray) -> dict[str, float]:
        """The batch's loss and metric means (metrics run on the predictions: graphc.nn.metrics)."""
        return {"loss": loss, **self._metric_runner(targets, output)}

    def evaluate(self, x: Any, y: Any, batch_size: int | None = None, verbose: int = 0, return_dict: bool = False,
                 sample_weight: Any = None) -> Any:
        """Loss and metrics in inference mode; a list [loss, *metrics] (Keras order) or a dict. ``sample_weight``
        weights each example's loss (graphc.nn.training); ``batch_size=None`` is 32."""
        self._require_compiled()
        batch_size = T.batch_size(batch_size)
        x, y = self._check_xy(x, y)
        T.require_examples(len(x), "evaluate's data")
        weights = T.sample_weights(y, self.loss, sample_weight, None, "evaluate")
        totals: dict[str, float] = {}
        for start in range(0, len(x), batch_size):
            xb, yb = x[start:start + batch_size], y[start:start + batch_size]
            prog, x_name, y_name = self._program("eval" if weights is None else "eval_w", len(xb))
            wb = None if weights is None else weights[start:start + batch_size]
            out = prog(**self._feeds(x_name, y_name, xb, yb, wb))
            for key, value in self._batch_logs(float(out["loss"]), out["output"], yb).items():
                totals[key] = totals.get(key, 0.0) + value * len(xb)
        logs = {k: v / len(x) for k, v in totals.items()}
        if verbose:
            print(" - ".join(f"{k}: {v:.4f}" for k, v in logs.items()), file=sys.stdout)
        return logs if return_dict else (list(logs.values()) if len(logs) > 1 else logs["loss"])

    def predict(self, x: Any, batch_size: int | None = None, verbose: int = 0) -> np.ndarray:
        """Model outputs in inference mode (``batch_size=None`` is 32; ``verbose`` is accepted for Keras code and
        prints nothing)."""
        batch_size = T.batch_size(batch_size)
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

    def render(self, path: str | None = None, detail: str = "layers", backward: bool = False, updates: bool = False,
               batch_size: int = 32) -> Any:
        """The model's diagram (graphc.nn.diagram): ``detail="layers"`` one box per layer with its output shape and
        parameter count; ``"ops"`` the training step's op graph, one cluster per layer; ``"graph"`` the whole
        training step as ``gc.render`` draws it. ``backward``/``updates`` add the gradients / optimizer updates.
        Returns the picture when ``path`` is None, else the file written."""
        from graphc.nn.diagram import render_model

        return render_model(self, path, detail, backward, updates, batch_size)

    # -- saving --------------------------------------------------------------------------------------
    def save(self, path: str) -> None:
        """Write the model (architecture, compile settings, whole state) to ``path`` atomically; refuses a model
        whose state is not finite (format and guarantees: graphc.nn.saving, graphc.nn.fileformat)."""
        save_model(self, path)

    def save_weights(self, path: str) -> None:
        """Write only the layers' weights to the ``.npz`` ``path`` (``load_weights`` reads them back)."""
        saving.save_weights(self, path)

    def load_weights(self, path: str) -> None:
        """Set the layers' weights from ``save_weights``' file or a model file (same architecture; all checked
        before anything changes)."""
        saving.load_weights(self, path)


def load_model(path: str, backend: str | None = None, threads: int | None = None) -> Sequential:
    """Rebuild a saved Sequential model: layers (with regularizers), loss, metrics, optimizer (hyper-parameters,
    schedule) and the whole state (weights, running statistics, optimizer moments, step count, learning rate).

    The file is validated completely before anything is built (``graphc.nn.saving``); a wrong, truncated or
    hostile file raises one ``ModelFileError`` (a GraphcError) naming the file and the offending entry.
    """
    saved = read_model(path)
    model = Sequential(saved.layers, name=saved.name, data_format=saved.data_format).build(saved.input_shape)
    if saved.loss is not None:
        model.compile(saved.loss, optimizer=saved.optimizer, metrics=saved.metrics, backend=backend, threads=threads)
    apply_saved_state(model, saved)
    return model
