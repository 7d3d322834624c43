"""Optimizers as graph updates.

``opt.minimize(loss)`` differentiates ``loss`` symbolically and returns ``{param: new_value}`` for every trainable
param and every piece of optimizer state (velocities, moments, the step counter), all held as non-trainable graph
state. Compile it with ``gc.compile({"loss": loss}, updates=updates)``: one program call then does the forward
pass, the backward pass and the update. The learning rate is state too (``opt.learning_rate``, also ``opt.lr``
and ``opt.lr_value``): a schedule or a callback (``ReduceLROnPlateau``) changes it between calls without
recompiling. Constructors take Keras' spellings too: ``learning_rate=`` for ``lr=``, ``epsilon=`` for ``eps=``,
Adam's ``beta_1=``/``beta_2=`` for ``beta1``/``beta2``.

Update rules (g is the gradient, plus ``weight_decay``·p when set; η the learning rate):
- SGD: p ← p − η g; with momentum μ: v ← μv − η g, p ← p + v; Nesterov: p ← p + μv − η g (v already updated).
- Adagrad: h ← h + g², p ← p − η g / (√h + ε).
- RMSProp: h ← ρh + (1 − ρ) g², p ← p − η g / (√h + ε).
- Adam: t ← t + 1, m ← β₁m + (1 − β₁)g, v ← β₂v + (1 − β₂)g², p ← p − η m̂ / (√v̂ + ε) with
  m̂ = m / (1 − β₁ᵗ), v̂ = v / (1 − β₂ᵗ).

Saving: ``opt.get_config()`` holds every hyper-parameter and the learning rate (a number, or the config of a
built-in schedule: :class:`StepDecay`, :class:`ExponentialDecay`, :class:`CosineDecay`, which ``step_decay``,
``exponential_decay`` and ``cosine_decay`` return); :func:`from_config` rebuilds the optimizer from the explicit
:data:`OPTIMIZER_CLASSES` table only. The state (learning rate, step count, moments) lives in the graph; names
relative to ``opt.prefix`` are listed by ``opt.state_spec(params)`` and created up front by ``opt.bind``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from graphc.ir import GraphcError, Node, topo_ancestors
from ops import fn
from passes import autodiff

Schedule = Callable[[int], float]


class Optimizer:
    """Base class: subclasses implement ``_rule(p, g, lr) -> {node: new_value}`` for one param."""

    name = "optimizer"
    hyper: tuple[str, ...] = ()  # constructor arguments besides lr and weight_decay, saved by get_config

    def __init__(self, lr: float | Schedule | None = None, weight_decay: float = 0.0, *,
                 learning_rate: float | Schedule | None = None, default_lr: float = 0.01) -> None:
        lr = _alias(type(self).__name__, "lr", lr, "learning_rate", learning_rate, default_lr)
        self.schedule: Schedule | None = lr if callable(lr) else None
        self.initial_lr = float(self.schedule(0) if self.schedule else lr)
        if self.initial_lr <= 0 or not math.isfinite(self.initial_lr):
            raise GraphcError(f"{type(self).__name__}: the learning rate must be positive, got {self.initial_lr}")
        self.weight_decay = _in_range(type(self).__name__, "weight_decay", weight_decay, 0.0, math.inf)
        self.graph = None
        self.prefix = ""
        self.state_names: list[str] = []
        self._lr: Node | None = None
        self._step: Node | None = None

    # -- building --------------------------------------------------------------------------------------
    def minimize(self, loss: Node, params: Sequence[Node] | None = None, *,
                 reduce_gradients: Callable[[list[Node]], list[Node]] | None = None) -> dict[Node, Node]:
        """Gradient graph plus update rules for ``params`` (default: every trainable param ``loss`` uses);
        ``reduce_gradients`` maps the gradients to the ones the rules use (``graphc.distributed`` averages them over
        ranks)."""
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
        self._bind_graph(graph)
        grads = autodiff.grad(loss, params)
        with graph.backward_scope():
            if reduce_gradients is not None:
                grads = reduce_gradients(grads)
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

    def _bind_graph(self, graph: Any) -> None:
        """Bind to ``graph`` on first use: choose the state prefix, create the learning rate and step count."""
        if self.graph is not None and self.graph is not graph:
            raise GraphcError(f"{type(self).__name__} is already bound to graph {self.graph.name!r}")
        if self.graph is None:
            self.graph, self.prefix = graph, graph.unique_name(self.name)
            self._lr = self._state("lr", np.float64(self.initial_lr))
            self._step = self._state("step", np.float64(0))

    @property
    def slots(self) -> tuple[str, ...]:
        """Names of the per-param state this optimizer keeps (``<prefix>/<param>/<slot>``)."""
        return ()

    def bind(self, graph: Any, params: Sequence[Node]) -> None:
        """Create all state for ``params`` now (initial values) instead of on the first ``minimize``; ``minimize``
        reuses it. A loaded model binds this way so its optimizer state exists before the first step."""
        self._bind_graph(graph)
        for p in params:
            for slot in self.slots:
                self._slot(p, slot)

    def state_spec(self, params: Mapping[str, tuple[tuple[int, ...], str]]) -> dict[str, tuple[tuple[int, ...], str]]:
        """``{name relative to the prefix: (shape, dtype)}`` of the state kept for ``params`` (name → (shape,
        dtype)); computed without a graph, so a model file can be checked before anything is built."""
        spec = {"lr": ((), "float64"), "step": ((), "float64")}
        for name, (shape, dtype) in params.items():
            spec.update({f"{name}/{slot}": (tuple(shape), dtype) for slot in self.slots})
        return spec

    def relative_state_names(self) -> dict[str, str]:
        """``{name relative to the prefix: graph state name}`` of the state created so far (empty when unbound)."""
        return {name[len(self.prefix) + 1:]: name for name in self.state_names}

    # -- configuration ---------------------------------------------------------------------------------
    def get_config(self) -> dict[str, Any]:
        """Constructor arguments that rebuild this optimizer (:func:`from_config`); the learning rate is the initial
        one or the schedule's config (the current value and the step count are state)."""
        if self.schedule is None:
            lr: Any = self.initial_lr
        elif isinstance(self.schedule, _Schedule):
            lr = {"class": type(self.schedule).__name__, "config": self.schedule.get_config()}
        else:
            raise GraphcError(f"{type(self).__name__}: the custom learning-rate schedule {self.schedule!r} cannot be "
                              "saved; use gc.optim.step_decay, exponential_decay or cosine_decay")
        return {"lr": lr, "weight_decay": self.weight_decay, **{k: getattr(self, k) for k in self.hyper}}

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
    def learning_rate(self) -> float:
        """The current learning rate η (Keras' ``optimizer.learning_rate``); settable unless a schedule drives it.

        Before the first training step it is the initial rate; after, the graph state the programs read, so a new
        value takes effect at the next step without recompiling (and is saved with the model)."""
        return self.lr_value if self.graph is not None else self.initial_lr

    @learning_rate.setter
    def learning_rate(self, value: float) -> None:
        if self.schedule is not None:
            raise GraphcError(f"{type(self).__name__}: the learning rate follows the schedule {self.schedule!r} and "
                              "cannot be set; create the optimizer with a number instead")
        value = _in_range(type(self).__name__, "learning_rate", value, 0.0, math.inf, low_open=True)
        if self.graph is None:
            self.initial_lr = value
        else:
            self.lr_value = value

    lr = learning_rate  # Keras 2's spelling

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

    def __init__(self, lr: float | Schedule | None = None, momentum: float = 0.0, nesterov: bool = False,
                 weight_decay: float = 0.0, *, learning_rate: float | Schedule | None = None) -> None:
        super().__init__(lr, weight_decay, learning_rate=learning_rate, default_lr=0.01)
        if not 0.0 <= momentum < 1.0:
            raise GraphcError(f"SGD: momentum must be in [0, 1), got {momentum}")
        if nesterov and momentum == 0.0:
            raise GraphcError("SGD: Nesterov momentum needs momentum > 0")
        self.momentum, self.nesterov = float(momentum), bool(nesterov)

    hyper = ("momentum", "nesterov")

    @property
    def slots(self):
        return ("velocity",) if self.momentum else ()

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

    def __init__(self, lr: float | Schedule | None = None, eps: float | None = None, weight_decay: float = 0.0, *,
                 learning_rate: float | Schedule | None = None, epsilon: float | None = None) -> None:
        super().__init__(lr, weight_decay, learning_rate=learning_rate, default_lr=0.01)
        eps = _alias("Adagrad", "eps", eps, "epsilon", epsilon, 1e-7)
        self.eps = _in_range("Adagrad", "eps", eps, 0.0, math.inf, low_open=True)

    hyper = ("eps",)
    slots = ("accumulator",)

    def _rule(self, p, g, lr, step):
        h = self._slot(p, "accumulator")
        h_new = fn.add(h, fn.mul(g, g))
        return {h: h_new, p: fn.sub(p, fn.div(fn.mul(g, lr), fn.add(fn.sqrt(h_new), self.eps)))}


class RMSProp(Optimizer):
    """RMSProp: steps scaled by a running average of squared gradients."""

    name = "rmsprop"

    def __init__(self, lr: float | Schedule | None = None, rho: float = 0.9, eps: float | None = None,
                 weight_decay: float = 0.0, *, learning_rate: float | Schedule | None = None,
                 epsilon: float | None = None) -> None:
        super().__init__(lr, weight_decay, learning_rate=learning_rate, default_lr=0.001)
        eps = _alias("RMSProp", "eps", eps, "epsilon", epsilon, 1e-7)
        self.rho = _in_range("RMSProp", "rho", rho, 0.0, 1.0, high_open=True)
        self.eps = _in_range("RMSProp", "eps", eps, 0.0, math.inf, low_open=True)

    hyper = ("rho", "eps")
    slots = ("mean_square",)

    def _rule(self, p, g, lr, step):
        h = self._slot(p, "mean_square")
        h_new = fn.add(fn.mul(h, self.rho), fn.mul(fn.mul(g, g), 1.0 - self.rho))
        return {h: h_new, p: fn.sub(p, fn.div(fn.mul(g, lr), fn.add(fn.sqrt(h_new), self.eps)))}


class Adam(Optimizer):
    """Adam with bias-corrected first and second moments."""

    name = "adam"

    def __init__(self, lr: float | Schedule | None = None, beta1: float | None = None, beta2: float | None = None,
                 eps: float | None = None, weight_decay: float = 0.0, *, learning_rate: float | Schedule | None = None,
                 beta_1: float | None = None, beta_2: float | None = None, epsilon: float | None = None) -> None:
        super().__init__(lr, weight_decay, learning_rate=learning_rate, default_lr=0.001)
        beta1 = _alias("Adam", "beta1", beta1, "beta_1", beta_1, 0.9)
        beta2 = _alias("Adam", "beta2", beta2, "beta_2", beta_2, 0.999)
        eps = _alias("Adam", "eps", eps, "epsilon", epsilon, 1e-8)
        self.beta1 = _in_range("Adam", "beta1", beta1, 0.0, 1.0, low_open=True, high_open=True)
        self.beta2 = _in_range("Adam", "beta2", beta2, 0.0, 1.0, low_open=True, high_open=True)
        self.eps = _in_range("Adam", "eps", eps, 0.0, math.inf, low_open=True)

    hyper = ("beta1", "beta2", "eps")
    slots = ("m", "v")

    def _rule(self, p, g, lr, step):
        m, v = self._slot(p, "m"), self._slot(p, "v")
        m_new = fn.add(fn.mul(m, self.beta1), fn.mul(g, 1.0 - self.beta1))
        v_new = fn.add(fn.mul(v, self.beta2), fn.mul(fn.mul(g, g), 1.0 - self.beta2))
        t = step if step.dtype == p.dtype else fn.cast(step, p.dtype)
        correction1 = fn.sub(1.0, fn.exp(fn.mul(t, math.log(self.beta1))))  # 1 - β₁ᵗ
        correction2 = fn.sub(1.0, fn.exp(fn.mul(t, math.log(self.beta2))))  # 1 - β₂ᵗ
        m_hat, v_hat = fn.div(m_new, correction1), fn.div(v_new, correction2)
        return {m: m_new, v: v_new, p: fn.sub(p, fn.div(fn.mul(m_hat, lr), fn.add(fn.sqrt(v_hat), self.eps)))}


RMSprop = RMSProp  # Keras' spelling


# ------------------------------------------------------------------------------------------ schedules


class _Schedule:
    """A learning-rate schedule η(t) that can be saved: ``get_config()`` holds its constructor arguments."""

    fields: tuple[str, ...] = ()

    def __call__(self, t: int) -> float:
        raise NotImplementedError

    def get_config(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.fields}


class StepDecay(_Schedule):
    """η(t) = η₀ · γ^⌊t / step_size⌋."""

    fields = ("initial", "step_size", "gamma")

    def __init__(self, initial: float, step_size: int, gamma: float = 0.1) -> None:
        self.initial = _in_range("step_decay", "initial", initial, 0.0, math.inf, low_open=True)
        self.step_size = _positive_int("step_decay", "step_size", step_size)
        self.gamma = _in_range("step_decay", "gamma", gamma, 0.0, math.inf, low_open=True)

    def __call__(self, t):
        return self.initial * self.gamma ** (t // self.step_size)


class ExponentialDecay(_Schedule):
    """η(t) = η₀ · rate^(t / decay_steps)."""

    fields = ("initial", "decay_steps", "decay_rate")

    def __init__(self, initial: float, decay_steps: int, decay_rate: float) -> None:
        self.initial = _in_range("exponential_decay", "initial", initial, 0.0, math.inf, low_open=True)
        self.decay_steps = _positive_int("exponential_decay", "decay_steps", decay_steps)
        self.decay_rate = _in_range("exponential_decay", "decay_rate", decay_rate, 0.0, math.inf, low_open=True)

    def __call__(self, t):
        return self.initial * self.decay_rate ** (t / self.decay_steps)


class CosineDecay(_Schedule):
    """η(t) = η₀ · ((1 − α) · ½(1 + cos(π · min(t, T) / T)) + α)."""

    fields = ("initial", "decay_steps", "alpha")

    def __init__(self, initial: float, decay_steps: int, alpha: float = 0.0) -> None:
        self.initial = _in_range("cosine_decay", "initial", initial, 0.0, math.inf, low_open=True)
        self.decay_steps = _positive_int("cosine_decay", "decay_steps", decay_steps)
        self.alpha = _in_range("cosine_decay", "alpha", alpha, 0.0, 1.0, low_open=False)

    def __call__(self, t):
        return self.initial * ((1 - self.alpha) * 0.5 * (1 + math.cos(math.pi * min(t, self.decay_steps)
                                                                      / self.decay_steps)) + self.alpha)


# the functional names of the schedules (``gc.optim.step_decay(0.1, step_size=2, gamma=0.5)``)
step_decay, exponential_decay, cosine_decay = StepDecay, ExponentialDecay, CosineDecay


def _alias(owner: str, name: str, value: Any, keras_name: str, keras_value: Any, default: Any) -> Any:
    """The argument given as ``name`` or as its Keras spelling ``keras_name`` (not both), else ``default``."""
    if value is not None and keras_value is not None:
        raise GraphcError(f"{owner}: give {name}= or {keras_name}= (the same setting), not both")
    return default if value is None and keras_value is None else (value if value is not None else keras_value)


def _number(owner: str, key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise GraphcError(f"{owner}: {key} must be a number, got {value!r}")
    return float(value)


def _in_range(owner: str, key: str, value: Any, low: float, high: float, low_open: bool = False,
              high_open: bool = False) -> float:
    """``value`` as a float, checked to be finite and in the interval [low, high] (ends open as asked)."""
    x = _number(owner, key, value)
    above = x > low if low_open else x >= low
    below = x < high if high_open else x <= high
    if not (math.isfinite(x) and above and below):
        interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        raise GraphcError(f"{owner}: {key} must be a finite number in {interval}, got {value!r}")
    return x


def _positive_int(owner: str, key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise GraphcError(f"{owner}: {key} must be a positive integer, got {value!r}")
    return int(value)


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


OPTIMIZER_CLASSES: dict[str, type[Optimizer]] = {"SGD": SGD, "Adagrad": Adagrad, "RMSProp": RMSProp, "Adam": Adam}
SCHEDULE_CLASSES: dict[str, type[_Schedule]] = {"StepDecay": StepDecay, "ExponentialDecay": ExponentialDecay,
                                                "CosineDecay": CosineDecay}


def _class_spec(spec: Any, table: Mapping[str, type], what: str) -> tuple[type, dict[str, Any]]:
    """(class, config) of a saved ``{"class": name, "config": {...}}`` entry; the class only from ``table``."""
    if not isinstance(spec, Mapping) or set(spec) != {"class", "config"}:
        raise GraphcError(f"a saved {what} is {{'class': name, 'config': {{...}}}}, got {spec!r}")
    name, config = spec["class"], spec["config"]
    cls = table.get(name) if isinstance(name, str) else None
    if cls is None:
        raise GraphcError(f"unknown {what} class {name!r}; known: {', '.join(table)}")
    if not isinstance(config, Mapping) or not all(isinstance(k, str) for k in config):
        raise GraphcError(f"the {what} {name} config must be an object, got {config!r}")
    return cls, dict(config)


def schedule_from_config(spec: Any) -> _Schedule:
    """The built-in schedule a saved ``{"class", "config"}`` entry describes."""
    cls, config = _class_spec(spec, SCHEDULE_CLASSES, "learning-rate schedule")
    if set(config) != set(cls.fields):
        raise GraphcError(f"the {cls.__name__} config needs exactly {', '.join(cls.fields)}; got {', '.join(config)}")
    return cls(**config)


def from_config(spec: Any) -> Optimizer:
    """The optimizer a saved ``{"class": "Adam", "config": opt.get_config()}`` entry describes (classes only from
    :data:`OPTIMIZER_CLASSES`; every value type-checked); a :class:`GraphcError` for anything else."""
    cls, config = _class_spec(spec, OPTIMIZER_CLASSES, "optimizer")
    allowed = {"lr", "weight_decay", *cls.hyper}
    unknown = sorted(set(config) - allowed)
    if unknown or "lr" not in config:
        raise GraphcError(f"the {cls.__name__} config takes lr (required), {', '.join(sorted(allowed - {'lr'}))}; "
                          f"got {', '.join(config)}")
    lr = config.pop("lr")
    lr = schedule_from_config(lr) if isinstance(lr, Mapping) else _number(cls.__name__, "lr", lr)
    if "nesterov" in config and not isinstance(config["nesterov"], bool):
        raise GraphcError(f"{cls.__name__}: nesterov must be true or false, got {config['nesterov']!r}")
    for key in (k for k in config if k != "nesterov"):
        _number(cls.__name__, key, config[key])
    return cls(lr, **config)
