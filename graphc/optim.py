"""Optimizers as graph updates.

``opt.minimize(loss)`` differentiates ``loss`` symbolically and returns ``{param: new_value}`` for every trainable
param and every piece of optimizer state (velocities, moments, the step counter), all held as non-trainable graph
state. Compile it with ``gc.compile({"loss": loss}, updates=updates)``: one program call then does the forward
pass, the backward pass and the update. The learning rate is state too (``opt.lr_value``): a schedule changes it
between calls without recompiling.

Update rules (g is the gradient, plus ``weight_decay``·p when set; η the learning rate):
- SGD: p ← p − η g; with momentum μ: v ← μv − η g, p ← p + v; Nesterov: p ← p + μv − η g (v already updated).
- Adagrad: h ← h + g², p ← p − η g / (√h + ε).
- RMSProp: h ← ρh + (1 − ρ) g², p ← p − η g / (√h + ε).
- Adam: t ← t + 1, m ← β₁m + (1 − β₁)g, v ← β₂v + (1 − β₂)g², p ← p − η m̂ / (√v̂ + ε) with
  m̂ = m / (1 − β₁ᵗ), v̂ = v / (1 − β₂ᵗ).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from graphc.ir import GraphcError, Node, topo_ancestors
from ops import fn
from passes import autodiff

Schedule = Callable[[int], float]


class Optimizer:
    """Base class: subclasses implement ``_rule(p, g, lr) -> {node: new_value}`` for one param."""

    name = "optimizer"

    def __init__(self, lr: float | Schedule = 0.01, weight_decay: float = 0.0) -> None:
        self.schedule: Schedule | None = lr if callable(lr) else None
        self.initial_lr = float(self.schedule(0) if self.schedule else lr)
        if self.initial_lr <= 0 or not math.isfinite(self.initial_lr):
            raise GraphcError(f"{type(self).__name__}: the learning rate must be positive, got {self.initial_lr}")
        self.weight_decay = float(weight_decay)
        self.graph = None
        self.prefix = ""
        self.state_names: list[str] = []
        self._lr: Node | None = None
        self._step: Node | None = None

    # -- building --------------------------------------------------------------------------------------
    def minimize(self, loss: Node, params: Sequence[Node] | None = None) -> dict[Node, Node]:
        """Gradient graph plus update rules for ``params`` (default: every trainable param ``loss`` uses)."""
        if not isinstance(loss, Node) or loss.shape != ():
            raise GraphcError(f"{type(self).__name__}.minimize: the loss must be a scalar tensor, got {loss!r}")
        graph = loss.graph
        if self.graph is not None and self.graph is not graph:
            raise GraphcError(f"{type(self).__name__} is already bound to graph {self.graph.name!r}")
        if params is None:
            params = [n for n in topo_ancestors([loss]) if n.op == "param" and n.name in graph.trainable]
        params = list(params)
        if not params:
            raise GraphcError(f"{type(self).__name__}.minimize: the loss {loss.name!r} depends on no trainable param")
        for p in params:
            if p.op != "param" or p.graph is not graph or not p.type.is_float:
                raise GraphcError(f"{type(self).__name__}.minimize: {p!r} is not a float param of {graph.name!r}")
        if self.graph is None:
            self.graph, self.prefix = graph, graph.unique_name(self.name)
            self._lr = self._state("lr", np.float64(self.initial_lr))
            self._step = self._state("step", np.float64(0))
        grads = autodiff.grad(loss, params)
        with graph.backward_scope():
            return self._updates(params, grads)

    def _updates(self, params: list[Node], grads: list[Node]) -> dict[Node, Node]:
        step = fn.add(self._step, 1.0)
        updates: dict[Node, Node] = {self._step: step}
        for p, g in zip(params, grads):
            if self.weight_decay:
                g = fn.add(g, fn.mul(p, self.weight_decay))
            lr = self._lr if p.dtype == self._lr.dtype else fn.cast(self._lr, p.dtype)
            updates.update(self._rule(p, g, lr, step))
        return updates

    def _rule(self, p: Node, g: Node, lr: Node, step: Node) -> dict[Node, Node]:
        raise NotImplementedError

    def _state(self, suffix: str, value: Any, like: Node | None = None) -> Node:
        """The non-trainable state param ``<prefix>/<suffix>``, created on first use.

        Reusing it lets one optimizer minimize several variants of a loss (e.g. per batch size) with one state.
        """
        name = f"{self.prefix}/{suffix}"
        if name in self.graph.params:
            return self.graph.params[name]
        array = np.zeros(like.shape, like.dtype) if like is not None else np.asarray(value)
        node = self.graph.param(name, array, dtype=array.dtype, trainable=False)
        self.state_names.append(name)
        return node

    def _slot(self, p: Node, suffix: str) -> Node:
        return self._state(f"{p.name}/{suffix}", None, like=p)

    # -- learning rate ---------------------------------------------------------------------------------
    @property
    def iterations(self) -> int:
        """Number of update steps the compiled programs have taken."""
        self._require_bound()
        return int(self.graph.state[self._step.name])

    @property
    def lr_value(self) -> float:
        self._require_bound()
        return float(self.graph.state[self._lr.name])

    @lr_value.setter
    def lr_value(self, value: float) -> None:
        self._require_bound()
        self.graph.state[self._lr.name][...] = value

    def apply_schedule(self, step: int | None = None) -> float:
        """Set the learning rate from the schedule for ``step`` (default: the current iteration count)."""
        if self.schedule is not None:
            self.lr_value = self.schedule(self.iterations if step is None else step)
        return self.lr_value

    def _require_bound(self) -> None:
        if self.graph is None:
            raise GraphcError(f"{type(self).__name__}: call minimize(loss) first")


class SGD(Optimizer):
    """Stochastic gradient descent with optional (Nesterov) momentum."""

    name = "sgd"

    def __init__(self, lr: float | Schedule = 0.01, momentum: float = 0.0, nesterov: bool = False,
                 weight_decay: float = 0.0) -> None:
        super().__init__(lr, weight_decay)
        if not 0.0 <= momentum < 1.0:
            raise GraphcError(f"SGD: momentum must be in [0, 1), got {momentum}")
        if nesterov and momentum == 0.0:
            raise GraphcError("SGD: Nesterov momentum needs momentum > 0")
        self.momentum, self.nesterov = float(momentum), bool(nesterov)

    def _rule(self, p, g, lr, step):
        step_size = fn.mul(g, lr)
        if self.momentum == 0.0:
            return {p: fn.sub(p, step_size)}
        v = self._slot(p, "velocity")
        v_new = fn.sub(fn.mul(v, self.momentum), step_size)
        delta = fn.sub(fn.mul(v_new, self.momentum), step_size) if self.nesterov else v_new
        return {v: v_new, p: fn.add(p, delta)}


class Adagrad(Optimizer):
    """Adagrad: per-element steps shrink with the sum of squared gradients."""

    name = "adagrad"

    def __init__(self, lr: float | Schedule = 0.01, eps: float = 1e-7, weight_decay: float = 0.0) -> None:
        super().__init__(lr, weight_decay)
        self.eps = float(eps)

    def _rule(self, p, g, lr, step):
        h = self._slot(p, "accumulator")
        h_new = fn.add(h, fn.mul(g, g))
        return {h: h_new, p: fn.sub(p, fn.div(fn.mul(g, lr), fn.add(fn.sqrt(h_new), self.eps)))}


class RMSProp(Optimizer):
    """RMSProp: steps scaled by a running average of squared gradients."""

    name = "rmsprop"

    def __init__(self, lr: float | Schedule = 0.001, rho: float = 0.9, eps: float = 1e-7,
                 weight_decay: float = 0.0) -> None:
        super().__init__(lr, weight_decay)
        self.rho, self.eps = float(rho), float(eps)

    def _rule(self, p, g, lr, step):
        h = self._slot(p, "mean_square")
        h_new = fn.add(fn.mul(h, self.rho), fn.mul(fn.mul(g, g), 1.0 - self.rho))
        return {h: h_new, p: fn.sub(p, fn.div(fn.mul(g, lr), fn.add(fn.sqrt(h_new), self.eps)))}


class Adam(Optimizer):
    """Adam with bias-corrected first and second moments."""

    name = "adam"

    def __init__(self, lr: float | Schedule = 0.001, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8,
                 weight_decay: float = 0.0) -> None:
        super().__init__(lr, weight_decay)
        self.beta1, self.beta2, self.eps = float(beta1), float(beta2), float(eps)

    def _rule(self, p, g, lr, step):
        m, v = self._slot(p, "m"), self._slot(p, "v")
        m_new = fn.add(fn.mul(m, self.beta1), fn.mul(g, 1.0 - self.beta1))
        v_new = fn.add(fn.mul(v, self.beta2), fn.mul(fn.mul(g, g), 1.0 - self.beta2))
        t = step if step.dtype == p.dtype else fn.cast(step, p.dtype)
        correction1 = fn.sub(1.0, fn.exp(fn.mul(t, math.log(self.beta1))))  # 1 - β₁ᵗ
        correction2 = fn.sub(1.0, fn.exp(fn.mul(t, math.log(self.beta2))))  # 1 - β₂ᵗ
        m_hat, v_hat = fn.div(m_new, correction1), fn.div(v_new, correction2)
        return {m: m_new, v: v_new, p: fn.sub(p, fn.div(fn.mul(m_hat, lr), fn.add(fn.sqrt(v_hat), self.eps)))}


# ------------------------------------------------------------------------------------------ schedules


def step_decay(initial: float, step_size: int, gamma: float = 0.1) -> Schedule:
    """η(t) = η₀ · γ^⌊t / step_size⌋."""
    return lambda t: initial * gamma ** (t // step_size)


def exponential_decay(initial: float, decay_steps: int, decay_rate: float) -> Schedule:
    """η(t) = η₀ · rate^(t / decay_steps)."""
    return lambda t: initial * decay_rate ** (t / decay_steps)


def cosine_decay(initial: float, decay_steps: int, alpha: float = 0.0) -> Schedule:
    """η(t) = η₀ · ((1 − α) · ½(1 + cos(π · min(t, T) / T)) + α)."""
    return lambda t: initial * ((1 - alpha) * 0.5 * (1 + math.cos(math.pi * min(t, decay_steps) / decay_steps))
                                + alpha)


OPTIMIZERS = {"sgd": SGD, "momentum": lambda: SGD(0.01, momentum=0.9), "nesterov": lambda: SGD(0.01, 0.9, True),
              "adagrad": Adagrad, "rmsprop": RMSProp, "adam": Adam}


def get(optimizer: str | Optimizer) -> Optimizer:
    """An optimizer instance from a name (``"adam"``, ``"sgd"``, ...) or an instance."""
    if isinstance(optimizer, Optimizer):
        return optimizer
    factory = OPTIMIZERS.get(str(optimizer).lower())
    if factory is None:
        raise GraphcError(f"unknown optimizer {optimizer!r}; choose one of {', '.join(OPTIMIZERS)} "
                          "or pass a gc.optim instance")
    return factory()
