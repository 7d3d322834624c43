"""Backend agreement checks (re-exported by :mod:`graphc.testing`): the same computation compiled for two backends
(the NumPy interpreter, the reference, and the LLVM backend by default) must give the same numbers.

- :func:`assert_backends_agree`: outputs, and with ``wrt=`` the gradients of the summed outputs;
- :func:`assert_step_agrees`: N training steps of a ``gc.nn`` model or of a program with state updates, from the
  same starting state on both backends, comparing the outputs and the whole updated state (params, optimizer
  moments and counters, running statistics) after every step. The caller's state is left as it was.

Failure messages name tensors by the user's names (node names, ``name=``, ``gc.name_scope``, layer names).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from graphc.api import compile as compile_program
from graphc.api import grad
from graphc.ir import GraphcError, Node, name_scope
from ops import fn
from runtime.program import Program


def _outputs(outputs: Any) -> list[tuple[str, Node]]:
    """(label, node) for a tensor, a list/tuple or a dict of tensors; labels name the key and the node."""
    if isinstance(outputs, Node):
        items: list[tuple[Any, Node]] = [(outputs.name, outputs)]
    elif isinstance(outputs, Mapping):
        items = list(outputs.items())
    elif isinstance(outputs, (list, tuple)):
        items = list(enumerate(outputs))
    else:
        raise GraphcError(f"assert_backends_agree: outputs must be a tensor, a list or a dict of tensors, "
                          f"got {type(outputs).__name__}")
    labelled = []
    for key, node in items:
        if not isinstance(node, Node):
            raise GraphcError(f"assert_backends_agree: output {key!r} is a {type(node).__name__}, not a tensor")
        label = f"output {key!r}" + ("" if key == node.name else f" (node {node.name!r})")
        labelled.append((label, node))
    return labelled


def difference(label: str, a: Any, b: Any, backends: Sequence[str], rtol: float, atol: float,
               scale_atol: bool = False) -> str | None:
    """Why ``b`` (from ``backends[1]``) does not match ``a`` (from ``backends[0]``), or None when it does.

    Floats agree within ``rtol``/``atol`` (``scale_atol``: atol × max(1, max |a|)) and NaNs in the same places;
    integers and bools must be equal; shapes and dtypes must match."""
    a, b = np.asarray(a), np.asarray(b)
    ref, other = backends
    if a.shape != b.shape or a.dtype != b.dtype:
        return f"{label}: {ref} gives {a.dtype}{list(a.shape)}, {other} gives {b.dtype}{list(b.shape)}"
    if a.dtype.kind != "f":
        bad = a != b
        allowed = np.zeros(a.shape)
    else:
        scale = max(1.0, float(np.max(np.abs(np.nan_to_num(a)), initial=0.0))) if scale_atol else 1.0
        allowed = atol * scale + rtol * np.abs(a)
        with np.errstate(invalid="ignore"):
            bad = ~((np.abs(b - a) <= allowed) | (np.isnan(a) & np.isnan(b)) | (a == b))
    if not np.any(bad):
        return None
    flat = np.flatnonzero(bad)
    err = np.abs(b.astype(np.float64) - a.astype(np.float64)).reshape(-1)[flat]
    worst = int(flat[int(np.argmax(np.nan_to_num(err, nan=np.inf)))])
    where = tuple(int(i) for i in np.unravel_index(worst, a.shape)) if a.ndim else ()
    x, y = a.reshape(-1)[worst].item(), b.reshape(-1)[worst].item()
    shown = (lambda v: f"{v:.8g}") if a.dtype.kind == "f" else repr
    return (f"{label}: {other} vs {ref} differ at {len(flat)} of {a.size} elements; worst at index {where}: "
            f"{other} {shown(y)}, {ref} {shown(x)} (abs error {abs(float(y) - float(x)):.3g}, "
            f"allowed {float(allowed.reshape(-1)[worst]):.3g})")


def _raise(failures: list[str], what: str) -> None:
    if failures:
        shown = failures[:12] + ([f"... and {len(failures) - 12} more"] if len(failures) > 12 else [])
        raise AssertionError(f"{what}:\n  " + "\n  ".join(shown))


def assert_backends_agree(outputs: Any, feeds: Mapping[str, Any], rtol: float = 1e-4, atol: float = 1e-5,
                          backends: tuple[str, str] = ("numpy", "llvm"), scale_atol: bool = False,
                          wrt: Sequence[Node] | None = None) -> None:
    """Compile ``outputs`` with two backends, run both on ``feeds`` and assert the results agree.

    Floating outputs agree within ``rtol``/``atol`` (with ``scale_atol``, ``atol`` is multiplied by
    max(1, max |reference output|), so large-magnitude outputs are held to float precision at their scale);
    integer and bool outputs must be equal. Shapes and dtypes must match. Programs with state updates are compared
    on the outputs only; state is not touched (no updates compiled).

    ``wrt``: tensors (params, inputs or intermediates); the gradients of the sum of all floating outputs with
    respect to each are compared too (the sum and the gradients are built in ``outputs``' graph, under the name
    scope ``assert_backends_agree``).
    """
    labelled = _outputs(outputs)
    compiled = {f"out{i}": node for i, (_, node) in enumerate(labelled)}
    labels = {f"out{i}": label for i, (label, _) in enumerate(labelled)}
    if wrt is not None:
        xs = [wrt] if isinstance(wrt, Node) else list(wrt)
        for x in xs:
            if not isinstance(x, Node):
                raise GraphcError(f"assert_backends_agree: wrt must hold tensors, got {type(x).__name__}")
        floats = [node for _, node in labelled if node.type.is_float]
        if not floats:
            raise GraphcError("assert_backends_agree: wrt= needs a floating-point output to differentiate")
        with name_scope("assert_backends_agree"):
            total = fn.sum(floats[0])
            for node in floats[1:]:
                total = fn.add(total, fn.cast(fn.sum(node), total.dtype))
            grads = grad(total, xs)
        for j, (x, g) in enumerate(zip(xs, grads)):
            compiled[f"grad{j}"] = g
            labels[f"grad{j}"] = f"gradient of the summed outputs w.r.t. {x.name!r}"
    results = [compile_program(compiled, backend=b)(**feeds) for b in backends]
    failures = [message for key, label in labels.items()
                if (message := difference(label, results[0][key], results[1][key], backends, rtol, atol,
                                          scale_atol)) is not None]
    _raise(failures, f"backends {backends[1]} and {backends[0]} disagree")


# ------------------------------------------------------------------------------------------ training steps


@dataclass
class StepAgreement:
    """What :func:`assert_step_agrees` compared: the largest absolute differences seen over all steps."""

    steps: int
    backends: tuple[str, str]
    output_differences: dict[str, float] = field(default_factory=dict)  # by output name (the loss, ...)
    state_differences: dict[str, float] = field(default_factory=dict)  # by state entry (params, optimizer state)

    @property
    def compared(self) -> list[str]:
        """The state entries compared (every entry a step updates), by name."""
        return list(self.state_differences)

    @property
    def max_output_difference(self) -> float:
        return max(self.output_differences.values(), default=0.0)

    @property
    def max_state_difference(self) -> float:
        return max(self.state_differences.values(), default=0.0)

    def __str__(self) -> str:
        return (f"{self.steps} training step(s), {self.backends[1]} vs {self.backends[0]}: max |output difference| "
                f"{self.max_output_difference:.3g}, max |parameter/optimizer-state difference| "
                f"{self.max_state_difference:.3g} ({len(self.compared)} state entries)")


def _training_program(subject: Any, feeds: Any) -> tuple[Program, dict[str, Any], Any]:
    """(a program with updates, its feeds, the model's optimizer or None) for a model or a program."""
    if isinstance(subject, Program):
        if not subject.updates:
            raise GraphcError("assert_step_agrees: the program has no state updates (compile it with updates=...: "
                              "a training step); use assert_backends_agree for a program without state")
        if not isinstance(feeds, Mapping):
            raise GraphcError(f"assert_step_agrees: feeds must be a dict of input name → array, "
                              f"got {type(feeds).__name__}")
        return subject, dict(feeds), None
    if hasattr(subject, "_program") and hasattr(subject, "layers"):  # a gc.nn model
        if isinstance(feeds, Mapping):
            unknown = sorted(set(feeds) - {"x", "y"})
            if unknown or "x" not in feeds or "y" not in feeds:
                raise GraphcError(f"assert_step_agrees: a model takes feeds {{'x': inputs, 'y': targets}}, got keys "
                                  f"{sorted(feeds)}")
            x, y = feeds["x"], feeds["y"]
        elif isinstance(feeds, (tuple, list)) and len(feeds) == 2:
            x, y = feeds
        else:
            raise GraphcError("assert_step_agrees: a model takes feeds {'x': inputs, 'y': targets} or (x, y)")
        if getattr(subject, "loss", None) is None:
            raise GraphcError("assert_step_agrees: compile the model first (model.compile(loss=..., optimizer=...))")
        x, y = subject._check_xy(x, y)
        program, x_name, y_name = subject._program("train", len(x))
        return program, {x_name: x, y_name: y}, subject.optimizer
    raise GraphcError(f"assert_step_agrees: expected a gc.nn model or a compiled program with updates, got "
                      f"{type(subject).__name__}")


def _run_steps(program: Program, feeds: dict[str, Any], steps: int, optimizer: Any
               ) -> list[tuple[dict[str, np.ndarray], dict[str, np.ndarray]]]:
    """(outputs, updated state) after each of ``steps`` calls."""
    names = [param.name for param, _ in program.updates]
    trace = []
    for _ in range(steps):
        if optimizer is not None:
            optimizer.apply_schedule()  # as Sequential.train_on_batch does
        out = program(**feeds)
        outputs = dict(out) if isinstance(out, Mapping) else dict(enumerate(out if isinstance(out, list) else [out]))
        trace.append((outputs, {n: program.graph.state[n].copy() for n in names}))
    return trace


def assert_step_agrees(model_or_program: Any, feeds: Any, steps: int = 3, rtol: float = 1e-4, atol: float = 1e-5,
                       backends: tuple[str, str] = ("numpy", "llvm")) -> StepAgreement:
    """Run ``steps`` training steps on each backend from the same starting state and assert that the outputs
    (the loss, ...) and the whole updated state (params, optimizer state, running statistics, counters) agree
    after every step; returns the largest differences seen (:class:`StepAgreement`).

    ``model_or_program``: a compiled ``gc.nn`` model with ``feeds`` ``{"x": inputs, "y": targets}`` (or
    ``(x, y)``), or a program compiled with ``updates=`` (feeds by input name). Every step uses the same feeds.
    The state is restored afterwards: the model or program is left exactly as it was. Failures name the step, the
    output or state entry (its param name, e.g. ``'dense/kernel'`` or the optimizer's ``'adam_1/dense/kernel/m'``),
    the worst element and both values.

    A param whose gradient is zero up to rounding (a bias right before a batch norm) takes steps in the rounding
    noise's direction under Adam or RMSProp, whose normalization makes them full-size: such a model disagrees
    honestly; check it with SGD.
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise GraphcError(f"assert_step_agrees: steps must be a positive int, got {steps!r}")
    program, feeds, optimizer = _training_program(model_or_program, feeds)
    outputs = dict(zip(program.output_names, program.output_nodes)) \
        if len(set(program.output_names)) == len(program.output_names) \
        else {str(i): n for i, n in enumerate(program.output_nodes)}
    graph = program.graph
    with graph.state_lock:
        saved = {name: array.copy() for name, array in graph.state.items()}
        traces = []
        try:
            for backend in backends:
                for name, array in saved.items():
                    graph.state[name][...] = array
                stepper = compile_program(outputs, backend=backend, updates=program.updates)
                traces.append(_run_steps(stepper, feeds, steps, optimizer))
        finally:
            for name, array in saved.items():
                graph.state[name][...] = array
    report = StepAgreement(steps, tuple(backends))
    failures: list[str] = []
    for step, ((out_a, state_a), (out_b, state_b)) in enumerate(zip(*traces), 1):
        for kind, a_side, b_side, gaps in (("output", out_a, out_b, report.output_differences),
                                           ("state", state_a, state_b, report.state_differences)):
            for key in a_side:
                a, b = np.asarray(a_side[key]), np.asarray(b_side[key])
                if a.shape == b.shape and a.dtype.kind in "fiub":
                    gap = float(np.nanmax(np.abs(b.astype(np.float64) - a.astype(np.float64)), initial=0.0))
                    gaps[str(key)] = max(gaps.get(str(key), 0.0), gap)
                message = difference(f"step {step}, {kind} {key!r}", a, b, backends, rtol, atol)
                if message is not None:
                    failures.append(message)
        if failures:  # later steps only repeat (and amplify) the first difference
            break
    _raise(failures, f"training steps disagree between {backends[1]} and {backends[0]} (same starting state)")
    return report
