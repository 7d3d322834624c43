"""The benchmark's neural-network workloads, one layer spec built three ways: graphc (``graphc.nn`` layers), PyTorch
(eager modules) and JAX (a pure function under ``jax.jit``).

A spec is a tuple of layers: ``("conv", filters)`` (3×3, padding 1), ``("pool",)`` (max 2×2), ``("flatten",)``,
``("dense", units)``, ``("bn",)``, ``("relu",)``, ``("softmax",)``. The graphc model is built first; PyTorch and
JAX copy its initial weights, so all frameworks compute the same step on the same data (their first losses are
recorded in the JSON as a sanity check). Every ``*_step`` builder returns a zero-argument callable that runs one
training step (forward, backward, SGD update) or one inference, and blocks until the result is ready.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

LR = 0.01
BN_EPS = 1e-3  # Keras' default, used by graphc.nn.BatchNormalization

Spec = tuple[tuple[Any, ...], ...]
Step = Callable[[], Any]


@dataclass
class ModelCase:
    """One model workload: the layer spec, input shape (without batch), batch size and mode."""

    spec: Spec
    input_shape: tuple[int, ...]
    batch: int
    training: bool

    def data(self, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng(seed)
        x = rng.standard_normal((self.batch, *self.input_shape)).astype(np.float32)
        classes = next(s[1] for s in reversed(self.spec) if s[0] == "dense")
        return x, rng.integers(0, classes, self.batch).astype(np.int64)

    def describe(self) -> str:
        """A short label: batch, input shape and the sizes of the conv/dense layers, e.g. ``b128 784-512-256-10``."""
        sizes = [f"c{s[1]}" if s[0] == "conv" else str(s[1]) for s in self.spec if s[0] in ("conv", "dense")]
        bn = " bn" if any(s[0] == "bn" for s in self.spec) else ""
        return f"b{self.batch} {'x'.join(map(str, self.input_shape))}-" + "-".join(sizes) + bn


def mlp_train(small: bool) -> ModelCase:
    h1, h2, d = (32, 16, 64) if small else (512, 256, 784)
    spec = (("dense", h1), ("relu",), ("dense", h2), ("relu",), ("dense", 10))
    return ModelCase(spec, (d,), 8 if small else 128, True)


def cnn_train(small: bool) -> ModelCase:
    c1, c2, hidden, side = (4, 8, 16, 8) if small else (32, 64, 128, 28)
    spec = (("conv", c1), ("relu",), ("pool",), ("conv", c2), ("relu",), ("pool",), ("flatten",),
            ("dense", hidden), ("relu",), ("dense", 10))
    return ModelCase(spec, (1, side, side), 4 if small else 64, True)


def mlp_infer_bn(small: bool) -> ModelCase:
    h1, h2, d = (32, 16, 64) if small else (512, 256, 784)
    spec = (("dense", h1), ("bn",), ("relu",), ("dense", h2), ("bn",), ("relu",), ("dense", 10), ("softmax",))
    return ModelCase(spec, (d,), 8 if small else 256, False)


# ------------------------------------------------------------------------------------------------ graphc


class GraphcModel:
    """The case as a ``graphc.nn.Sequential``; ``outputs`` and ``updates`` ready for ``graphc.api.compile``."""

    def __init__(self, case: ModelCase) -> None:
        import graphc.nn as nn
        from graphc.optim import SGD
        from ops.fn import softmax_cross_entropy

        makers: dict[str, Callable[..., Any]] = {
            "conv": lambda f: nn.Conv2D(f, 3, padding="same"), "pool": lambda: nn.MaxPool2D(2),
            "flatten": nn.Flatten, "dense": nn.Dense, "bn": nn.BatchNormalization, "relu": nn.ReLU,
            "softmax": lambda: nn.Activation("softmax")}
        self.case = case
        self.model = nn.Sequential([makers[s[0]](*s[1:]) for s in case.spec]).build(case.input_shape)
        graph = self.model.graph
        self.x = graph.input("x", (case.batch, *case.input_shape))
        h = self.x
        for layer in self.model.layers:
            h = layer.call(h, case.training)
        if case.training:
            self.y = graph.input("y", (case.batch,), "int64")
            self.loss = softmax_cross_entropy(h, self.y)
            self.outputs: dict[str, Any] = {"loss": self.loss}
            self.updates = SGD(LR).minimize(self.loss)
        else:
            self.y, self.outputs, self.updates = None, {"probs": h}, None
        self.initial = {k: np.array(v) for k, v in graph.state.items()}

    def weights(self) -> list[dict[str, np.ndarray]]:
        """Per spec entry, its param arrays by key (copies of the current state)."""
        state = self.model.graph.state
        return [{k: np.array(state[p.name]) for k, p in layer.params.items()} for layer in self.model.layers]

    def program(self, backend: str, **options: Any) -> tuple[Any, dict[str, np.ndarray], str]:
        """(program, feeds, output key), compiled for ``backend``; the state is reset to the initial weights first
        (backends share the graph)."""
        from graphc.api import compile as compile_program

        for name, value in self.initial.items():
            self.model.graph.state[name][...] = value

        program = compile_program(self.outputs, backend=backend, updates=self.updates, **options)
        x, y = self.case.data()
        feeds = {"x": x, "y": y} if self.case.training else {"x": x}
        return program, feeds, "loss" if self.case.training else "probs"

    def step(self, backend: str, **options: Any) -> Step:
        """One call of the program of :meth:`program`, returning its loss (training) or probabilities."""
        program, feeds, key = self.program(backend, **options)
        return lambda: program(**feeds)[key]


# ----------------------------------------------------------------------------------------------- PyTorch


def torch_step(case: ModelCase, weights: list[dict[str, np.ndarray]]) -> Step:
    """The case as eager PyTorch modules with torch.optim.SGD."""
    import torch

    def t(array: np.ndarray) -> Any:  # a copy: torch's in-place updates must not reach the shared weights
        return torch.tensor(np.ascontiguousarray(array))

    layers: list[Any] = []
    for s, w in zip(case.spec, weights):
        kind = s[0]
        if kind == "conv":
            layer = torch.nn.Conv2d(w["kernel"].shape[1], w["kernel"].shape[0], 3, padding=1)
            layer.weight.data, layer.bias.data = t(w["kernel"]), t(w["bias"])
        elif kind == "dense":
            layer = torch.nn.Linear(*w["kernel"].shape)
            layer.weight.data, layer.bias.data = t(w["kernel"].T), t(w["bias"])
        elif kind == "bn":
            layer = torch.nn.BatchNorm1d(w["gamma"].shape[0], eps=BN_EPS)
            layer.weight.data, layer.bias.data = t(w["gamma"]), t(w["beta"])
            layer.running_mean.data, layer.running_var.data = t(w["moving_mean"]), t(w["moving_variance"])
        else:
            layer = {"relu": torch.nn.ReLU, "pool": lambda: torch.nn.MaxPool2d(2), "flatten": torch.nn.Flatten,
                     "softmax": lambda: torch.nn.Softmax(dim=1)}[kind]()
        layers.append(layer)
    model = torch.nn.Sequential(*layers)
    x_np, y_np = case.data()
    x, y = torch.from_numpy(x_np), torch.from_numpy(y_np)
    if not case.training:
        model.eval()

        def infer() -> Any:
            with torch.inference_mode():
                return model(x)

        return infer
    opt = torch.optim.SGD(model.parameters(), lr=LR)

    def train() -> Any:
        opt.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss.detach()

    return train


# --------------------------------------------------------------------------------------------------- JAX


def _jax_forward(case: ModelCase) -> Callable[[Any, Any], Any]:
    import jax
    import jax.numpy as jnp

    def forward(params: list[dict[str, Any]], x: Any) -> Any:
        for s, p in zip(case.spec, params):
            kind = s[0]
            if kind == "conv":
                x = jax.lax.conv_general_dilated(x, p["kernel"], (1, 1), ((1, 1), (1, 1)),
                                                 dimension_numbers=("NCHW", "OIHW", "NCHW"))
                x = x + p["bias"][None, :, None, None]
            elif kind == "pool":
                x = jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 1, 2, 2), (1, 1, 2, 2), "VALID")
            elif kind == "flatten":
                x = x.reshape(x.shape[0], -1)
            elif kind == "dense":
                x = x @ p["kernel"] + p["bias"]
            elif kind == "bn":  # inference only in these workloads: running statistics
                x = (x - p["moving_mean"]) * jax.lax.rsqrt(p["moving_variance"] + BN_EPS) * p["gamma"] + p["beta"]
            elif kind == "relu":
                x = jax.nn.relu(x)
            elif kind == "softmax":
                x = jax.nn.softmax(x, axis=1)
        return x

    return forward


def jax_step_function(case: ModelCase) -> Callable[..., Any]:
    """The un-jitted step: ``(params, x, y) -> (new_params, loss)`` for training, ``(params, x) -> probs``."""
    import jax

    forward = _jax_forward(case)
    if not case.training:
        return forward

    def loss_fn(params: Any, x: Any, y: Any) -> Any:
        logp = jax.nn.log_softmax(forward(params, x), axis=1)
        return -jax.numpy.take_along_axis(logp, y[:, None], axis=1).mean()

    def step(params: Any, x: Any, y: Any) -> Any:
        loss, grads = jax.value_and_grad(loss_fn)(params, x, y)
        return jax.tree_util.tree_map(lambda p, g: p - LR * g, params, grads), loss

    return step


def jax_args(case: ModelCase, weights: list[dict[str, np.ndarray]]) -> tuple[Any, ...]:
    """Device arrays ``(params, x[, y])`` for the step function (labels as int32, JAX's default)."""
    import jax.numpy as jnp

    params = [{k: jnp.asarray(v) for k, v in w.items()} for w in weights]
    x, y = case.data()
    return (params, jnp.asarray(x), jnp.asarray(y.astype(np.int32))) if case.training else (params, jnp.asarray(x))


def jax_step(case: ModelCase, weights: list[dict[str, np.ndarray]]) -> Step:
    """The case under ``jax.jit``; training steps carry the updated params from call to call."""
    import jax

    fn = jax.jit(jax_step_function(case), donate_argnums=(0,) if case.training else ())
    args = list(jax_args(case, weights))
    if not case.training:
        return lambda: fn(*args).block_until_ready()

    def train() -> Any:
        args[0], loss = fn(*args)
        return loss.block_until_ready()

    return train
