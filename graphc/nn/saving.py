"""The model file of ``model.save(path)`` / ``gc.nn.load_model(path)`` (``graphc.nn.model``): architecture, compile
settings, weights and optimizer state in one uncompressed ``.npz`` (container: :mod:`graphc.nn.fileformat`).

Format 2. Entries:
- ``__graphc_model__``: the JSON description as UTF-8 bytes (uint8)::

    {"format": 2, "name": str, "input_shape": [int, ...], ("data_format": "channels_last",)
     "layers": [{"class": <a LAYERS name>, "config": layer.get_config()}, ...],
     "compile": null | {"loss": str, "metrics": [str, ...],
                        "optimizer": {"class": <an OPTIMIZER_CLASSES name>, "config": opt.get_config()}}}

  ``data_format`` is present only for a channels_last model (``input_shape`` is then (H, W, C)); a file without it
  is channels_first whatever the current ``gc.nn.image_data_format()``.
- ``state/<layer>/<param>`` (float32) for every layer param; ``state/__dropout_step`` (int64, scalar) once the
  model has trained with dropout;
- ``optimizer/lr``, ``optimizer/step`` (float64 scalars) and ``optimizer/<layer>/<param>/<slot>`` once the optimizer
  has state (names relative to the optimizer's graph prefix, so they do not depend on how often the model was
  compiled).

Everything that changes the loss or a training step is saved: layer configs with regularizers, dropout rates and
seeds, batch-norm momentum and epsilon; loss and metrics; every optimizer hyper-parameter, its learning-rate
schedule and state (current learning rate, step count, moments). A model whose state is not finite, or that uses
something that cannot be written down (a custom layer class, activation, regularizer, optimizer or schedule
function), is refused with a :class:`GraphcError` instead of being saved incompletely.

Loading validates the whole file before building anything: the container, the format version, the JSON
structure and every value in it (layer and optimizer classes only from the ``LAYERS`` and ``OPTIMIZER_CLASSES``
tables), then every entry against what that architecture needs — each expected entry present, exact shape and
dtype, no extra entries, finite values. Any defect is one :class:`ModelFileError` naming the file and the entry.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

import graphc.nn.layout as layout
import graphc.nn.losses as L
import graphc.optim as optim
from graphc.ir import GraphcError
from graphc.nn.fileformat import Archive, Member, ModelFileError, write_archive
from graphc.nn.layers import LAYERS, Dropout, Layer
from graphc.nn.state import describe_nonfinite, first_nonfinite, owned_entries
from ops.random import STEP_PARAM

FORMAT = 2
DESCRIPTION = "__graphc_model__"
_TOP_KEYS = ("format", "name", "input_shape", "layers", "compile")
_COMPILE_KEYS = ("loss", "metrics", "optimizer")
Spec = tuple[tuple[int, ...], str]


@dataclass
class SavedModel:
    """A validated model file: everything needed to rebuild the model, nothing built yet."""

    name: str
    input_shape: tuple[int, ...]
    layers: list[Layer]
    data_format: str = "channels_first"
    loss: str | None = None
    metrics: list[str] = field(default_factory=list)
    optimizer: optim.Optimizer | None = None
    state: dict[str, np.ndarray] = field(default_factory=dict)  # graph-state name -> array
    optimizer_state: dict[str, np.ndarray] = field(default_factory=dict)  # name relative to the prefix -> array


# ------------------------------------------------------------------------------------------ saving


def describe(model: Any) -> dict[str, Any]:
    """The JSON description of ``model``; a :class:`GraphcError` for anything that cannot be written down."""
    layers = []
    for layer in model.layers:
        if LAYERS.get(type(layer).__name__) is not type(layer):
            raise GraphcError(f"cannot save layer {layer.name!r}: {type(layer).__name__} is not a graphc.nn layer")
        config = layer.get_config()
        _check_json(config, f"layer {layer.name!r}")
        layers.append({"class": type(layer).__name__, "config": config})
    compiled = None
    if model.loss is not None:
        opt = model.optimizer
        if optim.OPTIMIZER_CLASSES.get(type(opt).__name__) is not type(opt):
            raise GraphcError(f"cannot save the optimizer: {type(opt).__name__} is not one of "
                              f"{', '.join(optim.OPTIMIZER_CLASSES)}")
        spec = {"class": type(opt).__name__, "config": opt.get_config()}
        compiled = {"loss": model.loss, "metrics": list(model.metrics), "optimizer": spec}
        _check_json(spec, "the optimizer")
    described = {"format": FORMAT, "name": model.name, "input_shape": list(model.input_shape), "layers": layers,
                 "compile": compiled}
    if model.data_format == "channels_last":
        described["data_format"] = "channels_last"
    return described


def _check_json(value: Any, what: str) -> None:
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as err:
        raise GraphcError(f"cannot save {what}: its configuration {value!r} is not plain data ({err}); use "
                          "built-in activations, regularizers and schedules") from None


def save_model(model: Any, path: str) -> None:
    """Write ``model`` to ``path`` (format in the module docstring); refuses a model whose state is not finite."""
    path = os.fspath(path)
    model._require_built()
    text = json.dumps(describe(model), allow_nan=False)
    names = owned_entries(model)
    with model.graph.state_lock:  # copies of one consistent state, written without blocking other threads
        arrays = {key: model.graph.state[name].copy() for key, name in names.items()}
    bad = first_nonfinite(arrays, arrays)
    if bad is not None:
        raise GraphcError(f"cannot save the model to {path}: {names[bad]} holds {describe_nonfinite(arrays[bad])} "
                          "(the model diverged); a model file never holds non-finite weights")
    arrays[DESCRIPTION] = np.frombuffer(text.encode(), dtype=np.uint8)
    write_archive(path, arrays)


# ------------------------------------------------------------------------------------------ loading


def read_model(path: str) -> SavedModel:
    """The validated contents of a model file; a :class:`ModelFileError` naming the file and entry otherwise."""
    path = os.fspath(path)
    with Archive(path) as archive:
        description = _read_description(archive)
        saved = _parse(path, description)
        expected = _expected_entries(path, saved, archive.members)
        arrays = {key: archive.read(key) for key in expected}
    for key, array in arrays.items():
        _check_values(path, key, array)
        if key.startswith("optimizer/"):
            saved.optimizer_state[key[len("optimizer/"):]] = array
        else:
            saved.state[key[len("state/"):]] = array
    return saved


def _read_description(archive: Archive) -> Any:
    member = archive.members.get(DESCRIPTION)
    if member is None:
        raise ModelFileError(f"{archive.path} is not a graphc model file (no {DESCRIPTION} entry)")
    if member.dtype != np.uint8 or len(member.shape) != 1:
        raise ModelFileError(f"{archive.path}: entry {DESCRIPTION!r} must be UTF-8 bytes (uint8), got "
                             f"{member.dtype} {member.shape}")
    raw = archive.read(DESCRIPTION).tobytes()
    try:
        return json.loads(raw.decode("utf-8"), parse_constant=_reject_constant, parse_float=_finite_float)
    except (UnicodeDecodeError, ValueError, RecursionError) as err:
        raise ModelFileError(f"{archive.path}: entry {DESCRIPTION!r} is not valid JSON ({err})") from None


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is out of range")
    return value


def _field(path: str, where: str, value: Any, kind: type, what: str) -> Any:
    """``value`` if it is a ``kind`` (dict, list or str), else a ModelFileError."""
    if not isinstance(value, kind):
        raise ModelFileError(f"{path}: {where} must be {what}, got {value!r}")
    return value


def _object(path: str, where: str, value: Any, keys: tuple[str, ...]) -> dict[str, Any]:
    _field(path, where, value, dict, "an object")
    if set(value) != set(keys):
        raise ModelFileError(f"{path}: {where} must have exactly the keys {', '.join(keys)}; got "
                             f"{', '.join(map(str, value)) or 'none'}")
    return value


def _parse(path: str, description: Any) -> SavedModel:
    """Check the description's structure and values; the layers and optimizer it describes (nothing built)."""
    _field(path, "the description", description, dict, "an object")
    if description.get("format") != FORMAT:
        raise ModelFileError(f"{path}: unsupported model format {description.get('format')!r}; this graphc reads "
                             f"format {FORMAT}")
    data_format = description.get("data_format", "channels_first")
    _object(path, "the description", {k: v for k, v in description.items() if k != "data_format"}, _TOP_KEYS)
    if data_format not in layout.FORMATS:
        raise ModelFileError(f"{path}: data_format must be one of {', '.join(layout.FORMATS)}, got {data_format!r}")
    name = _field(path, "name", description["name"], str, "a string")
    shape = _field(path, "input_shape", description["input_shape"], list, "a list of positive integers")
    if not shape or any(isinstance(d, bool) or not isinstance(d, int) or d <= 0 for d in shape):
        raise ModelFileError(f"{path}: input_shape must be a non-empty list of positive integers, got {shape!r}")
    entries = _field(path, "layers", description["layers"], list, "a list")
    if not entries:
        raise ModelFileError(f"{path}: the model has no layers")
    saved = SavedModel(name, tuple(shape), [_layer(path, i, entry) for i, entry in enumerate(entries)], data_format)
    names = [layer.name for layer in saved.layers]
    duplicate = next((n for n in names if names.count(n) > 1), None)
    if duplicate is not None:
        raise ModelFileError(f"{path}: two layers are named {duplicate!r}")
    if description["compile"] is not None:
        _parse_compile(path, _object(path, "compile", description["compile"], _COMPILE_KEYS), saved)
    return saved


def _layer(path: str, index: int, entry: Any) -> Layer:
    where = f"layers[{index}]"
    _object(path, where, entry, ("class", "config"))
    cls = LAYERS.get(entry["class"]) if isinstance(entry["class"], str) else None
    if cls is None:
        raise ModelFileError(f"{path}: {where}: unknown layer class {entry['class']!r}; known: {', '.join(LAYERS)}")
    config = _field(path, f"{where}.config", entry["config"], dict, "an object")
    if not isinstance(config.get("name"), str):
        raise ModelFileError(f"{path}: {where}.config.name must be a string, got {config.get('name')!r}")
    try:
        layer = cls(**config)
        canonical = layer.get_config()
    except (GraphcError, TypeError, ValueError, OverflowError) as err:
        raise ModelFileError(f"{path}: {where} ({cls.__name__} {config['name']!r}): {err}") from None
    if set(canonical) != set(config):
        raise ModelFileError(f"{path}: {where} ({cls.__name__}) config must have exactly the keys "
                             f"{', '.join(canonical)}; got {', '.join(config)}")
    differs = next((k for k in canonical if not _same(canonical[k], config[k])), None)
    if differs is not None:
        raise ModelFileError(f"{path}: {where} ({cls.__name__}) config {differs!r} is {config[differs]!r}, not a valid "
                             f"value (expected something like {canonical[differs]!r})")
    return layer


def _same(a: Any, b: Any) -> bool:
    """JSON equality where ints and floats of equal value match but booleans match only booleans."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return set(a) == set(b) and all(_same(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


def _parse_compile(path: str, compiled: dict[str, Any], saved: SavedModel) -> None:
    loss = _field(path, "compile.loss", compiled["loss"], str, "a string")
    metrics = _field(path, "compile.metrics", compiled["metrics"], list, "a list of strings")
    if not all(isinstance(m, str) for m in metrics):
        raise ModelFileError(f"{path}: compile.metrics must be a list of strings, got {metrics!r}")
    saved.loss = _checked(path, "compile.loss", L.check_loss, loss)
    from graphc.nn.metrics import from_saved

    builtin, custom = from_saved(metrics)
    if custom:  # names of custom metric functions: a function cannot be saved, so the model loads without it
        import warnings

        warnings.warn(f"{path}: metrics {', '.join(map(repr, custom))} were custom functions and are not restored; "
                      "compile the loaded model again with metrics=[...] to compute them", stacklevel=4)
    saved.metrics = _checked(path, "compile.metrics", L.check_metrics, builtin)
    saved.optimizer = _checked(path, "compile.optimizer", optim.from_config, compiled["optimizer"])


def _checked(path: str, where: str, check: Any, value: Any) -> Any:
    """``check(value)``, its errors turned into a ModelFileError naming the file and ``where``."""
    try:
        return check(value)
    except (GraphcError, TypeError, ValueError, OverflowError) as err:
        raise ModelFileError(f"{path}: {where}: {err}") from None


def expected_specs(saved: SavedModel) -> tuple[dict[str, Spec], list[dict[str, Spec]]]:
    """(entries the architecture requires, optional groups each present entirely or not at all), computed from the
    layer configs without allocating anything; layer errors (incompatible shapes) are GraphcErrors."""
    required: dict[str, Spec] = {}
    trainable: dict[str, Spec] = {}
    layout.resolve(saved.data_format, saved.layers)  # the layers' own formats must agree with the model's
    shape = layout.to_internal(saved.input_shape, saved.data_format)
    for layer in saved.layers:
        output = layer.compute_output_shape(shape)
        for key, (param_shape, is_trainable) in layer.param_specs(shape).items():
            required[f"state/{layer.name}/{key}"] = (param_shape, "float32")
            if is_trainable:
                trainable[f"{layer.name}/{key}"] = (param_shape, "float32")
        shape = output
    groups = []
    if saved.optimizer is not None:
        groups.append({f"optimizer/{k}": v for k, v in saved.optimizer.state_spec(trainable).items()})
    if any(isinstance(layer, Dropout) and layer.rate > 0 for layer in saved.layers):
        groups.append({f"state/{STEP_PARAM}": ((), "int64")})
    return required, groups


def _expected_entries(path: str, saved: SavedModel, members: Mapping[str, Member]) -> dict[str, Spec]:
    """The entries to read: each expected one present with its exact shape and dtype, nothing else."""
    try:
        required, groups = expected_specs(saved)
    except GraphcError as err:
        raise ModelFileError(f"{path}: the layers do not fit together: {err}") from None
    expected = dict(required)
    for group in groups:
        present = [key for key in group if key in members]
        if present:
            missing = next(key for key in group if key not in members) if len(present) < len(group) else None
            if missing is not None:
                raise ModelFileError(f"{path}: entry {missing!r} is missing (entry {present[0]!r} is there)")
            expected.update(group)
    missing = next((key for key in required if key not in members), None)
    if missing is not None:
        raise ModelFileError(f"{path}: entry {missing!r} is missing")
    extra = next((key for key in members if key not in expected and key != DESCRIPTION), None)
    if extra is not None:
        raise ModelFileError(f"{path}: unexpected entry {extra!r} (not part of this model)")
    for key, (shape, dtype) in expected.items():
        member = members[key]
        if member.shape != tuple(shape) or member.dtype != np.dtype(dtype):
            raise ModelFileError(f"{path}: entry {key!r} is {member.dtype} of shape {member.shape}; the model needs "
                                 f"{dtype} of shape {tuple(shape)}")
    return expected


def _check_values(path: str, key: str, array: np.ndarray) -> None:
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise ModelFileError(f"{path}: entry {key!r} holds {describe_nonfinite(array)}; a model file never holds "
                             "non-finite values")
    value = array.item() if array.ndim == 0 else None
    if key == "optimizer/lr" and not value > 0:
        raise ModelFileError(f"{path}: entry {key!r} (the learning rate) must be positive, got {value}")
    if key in ("optimizer/step", f"state/{STEP_PARAM}") and not (value >= 0 and float(value).is_integer()):
        raise ModelFileError(f"{path}: entry {key!r} (a step count) must be a non-negative integer, got {value}")


def apply_saved_state(model: Any, saved: SavedModel) -> None:
    """Write a validated file's state into the freshly built (and compiled) ``model``; the optimizer is bound now,
    so its state exists (and is saved again) before the first training step."""
    graph = model.graph
    for name, value in saved.state.items():
        if name == STEP_PARAM:
            graph.param(STEP_PARAM, value, dtype="int64", trainable=False)
        else:
            graph.state[name][...] = value
    if saved.optimizer_state:
        params = [graph.params[name] for name in model.layer_param_names() if name in graph.trainable]
        model.optimizer.bind(graph, params)
        for rel, value in saved.optimizer_state.items():
            graph.state[f"{model.optimizer.prefix}/{rel}"][...] = value
    loaded = {f"state/{n}": a for n, a in saved.state.items()}
    loaded.update({f"optimizer/{n}": a for n, a in saved.optimizer_state.items()})
    entries = owned_entries(model)
    if set(entries) != set(loaded) or any(graph.state[name].shape != loaded[key].shape
                                          or graph.state[name].dtype != loaded[key].dtype
                                          for key, name in entries.items()):
        raise GraphcError(f"internal error: the rebuilt model's state {sorted(entries)} differs from the file's "
                          f"{sorted(loaded)}")


# ------------------------------------------------------------------------------------------ weights only

WEIGHTS_MARK = "__graphc_weights__"


def save_weights(model: Any, path: str) -> None:
    """Write the layers' weights (entries ``<layer>/<param>``, float32) to the ``.npz`` ``path`` atomically."""
    path = os.fspath(path)
    model._require_built()
    with model.graph.state_lock:
        arrays = {name: model.graph.state[name].copy() for name in model.layer_param_names()}
    bad = first_nonfinite(arrays, arrays)
    if bad is not None:
        raise GraphcError(f"cannot save weights to {path}: {bad} holds {describe_nonfinite(arrays[bad])}")
    arrays[WEIGHTS_MARK] = np.zeros((), np.uint8)
    write_archive(path, arrays)


def load_weights(model: Any, path: str) -> None:
    """Set the layers' weights from ``save_weights``' file (or a whole model file's weights); every weight must be
    there with its exact shape, nothing else, all finite — checked before anything is changed."""
    path = os.fspath(path)
    model._require_built()
    names = model.layer_param_names()
    with Archive(path) as archive:
        prefix = "state/" if DESCRIPTION in archive.members else ""
        if not prefix and WEIGHTS_MARK not in archive.members:
            raise ModelFileError(f"{path} is not a graphc weights or model file (no {WEIGHTS_MARK} entry)")
        for name in names:
            member = archive.members.get(prefix + name)
            expected = model.graph.state[name]
            if member is None:
                raise ModelFileError(f"{path}: no weight {name!r}; the file was saved from another architecture")
            if member.shape != expected.shape or member.dtype != expected.dtype:
                raise ModelFileError(f"{path}: weight {name!r} is {member.dtype} {member.shape}; this model needs "
                                     f"{expected.dtype} {expected.shape}")
        extra = [k for k in archive.members if k != WEIGHTS_MARK and not prefix and k not in names]
        if extra:
            raise ModelFileError(f"{path}: weight {extra[0]!r} is not part of this model")
        arrays = {name: archive.read(prefix + name) for name in names}
    for name, array in arrays.items():
        _check_values(path, name, array)
    with model.graph.state_lock:
        for name, array in arrays.items():
            model.graph.state[name][...] = array
