"""Which float initializers of an imported model are trainable params, which are constants, which are state.

Exporters store a model's constants as initializers too, so "every float initializer is a param" trains values
that PyTorch never updates. What the two PyTorch exporters write (PyTorch 2.13, torchvision's ViT, Swin,
ConvNeXt, MaxViT and ResNet, each initializer compared with ``model.named_parameters()`` and buffers):

- ``torch.onnx.export(dynamo=True)`` marks every initializer that was an input of the exported program in the
  file's ``value_info`` metadata, ``pkg.torch.export.graph_signature.InputSpec.kind``: ``PARAMETER`` (the module's
  parameters, under their paths, ``encoder.layers.encoder_layer_0.ln_1.weight``), ``BUFFER`` (running statistics,
  registered buffers) or ``CONSTANT_TENSOR`` (tensors lifted from ``forward``: Swin's ``attn.lifted_tensor_0`` ...,
  path-like names, yet constants). With ``optimize=True`` (the default) the optimizer folds whatever it can compute
  from initializers into new initializers *without* that metadata: Linear weights transposed for ``MatMul``
  (``val_4`` [96, 384] of ConvNeXt — a parameter, transposed), scalars (ViT's attention scale ``val_80`` [1],
  ``scalar_tensor_default``, Swin's mask fill values read by ``ScatterND``), and values computed from parameters
  that the file no longer holds: ViT's class token expanded to the batch (``expand`` [1, 1, D]), the
  relative-position bias gathered from its table (Swin-T's ``unsqueeze`` [1, 3, 49, 49] and ``index_2``
  [2401, 6], MaxViT's ``unsqueeze_<n>``), and a conv weight with an eval-mode BatchNorm folded in (named
  ``conv1.weight`` like the parameter, but another value; its bias ``conv1.weight_bias``).
- ``torch.onnx.export(dynamo=False)`` (TorchScript) writes no such metadata. Parameters and buffers keep their
  paths (``conv1.weight``, ``class_token``, ``bn1.running_mean``, a buffer ``shift``) — the file does not say which
  is which — and constant folding names what it computes ``onnx::<Op>_<n>``: transposed Linear weights
  (``onnx::MatMul_393``), BN-folded conv weights (``onnx::Conv_214``) and the gathered relative-position bias
  (``onnx::Add_1998``). Scalars of ``forward`` are ``Constant`` nodes, not initializers.
- Both exporters merge initializers of equal value (fresh LayerNorms' ones and zeros) into one.

The rule, for each float initializer, the first that applies:

1. ``initializers="consts"`` / ``inference=True``: a constant.
2. BatchNormalization's running mean or variance (inputs 3, 4): state — a non-trainable param that a
   ``training=True`` program updates in place.
3. ``trainable=``: a predicate ``(name, array) -> bool`` or a collection of names decides every float
   initializer; a mapping ``{name: bool}`` decides the names it holds, the rule the others.
4. The dynamo metadata: ``PARAMETER`` is trainable, ``BUFFER`` and ``CONSTANT_TENSOR`` are constants.
5. Read as a weight: a weight or bias input of Conv, ConvTranspose, Gemm, MatMul, Einsum, BatchNormalization,
   LayerNormalization, InstanceNormalization, GroupNormalization, the slope of PRelu, the table of Gather, an
   input of Gradient (directly or through Identity, Transpose, Reshape, Squeeze, Unsqueeze, Flatten, Cast):
   trainable. This catches parameters an exporter folded (``val_4``, ``onnx::MatMul_393``).
6. Other files from PyTorch: a value an exporter folded (no metadata in a dynamo file; an ``onnx::`` or ``val_<n>``
   name) is a constant; any other name is a module path of a TorchScript file, trainable (a parameter or a buffer:
   the file does not say; a float buffer read outside a BatchNormalization needs ``trainable=``).
7. Files from other producers: trainable when it has more than one element (the importer's former rule); a
   scalar or size-1 value read by arithmetic (an epsilon, a scale) is a constant.

Where no rule can give PyTorch's answer — a value folded from parameters that the file no longer holds (step 6)
— the value is a constant and ``training=True`` warns, naming it: export with ``optimize=False`` (dynamo) or
``do_constant_folding=False`` (TorchScript) to keep those parameters in the file.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from graphc.ir import GraphcError

TORCH_KIND = "pkg.torch.export.graph_signature.InputSpec.kind"  # the dynamo exporter's value_info metadata
_TORCH_TRAINABLE, _TORCH_CONSTANT = {"PARAMETER"}, {"BUFFER", "CONSTANT_TENSOR"}

# op type → the inputs that hold weights (None: every input)
WEIGHT_SLOTS: dict[str, tuple[int, ...] | None] = {
    "Conv": (1, 2), "ConvTranspose": (1, 2), "Gemm": (0, 1, 2), "MatMul": (0, 1), "Einsum": None,
    "BatchNormalization": (1, 2), "LayerNormalization": (1, 2), "InstanceNormalization": (1, 2),
    "GroupNormalization": (1, 2), "RMSNormalization": (1,), "PRelu": (1,), "Gather": (0,), "Gradient": None,
    "RNN": (1, 2, 3), "GRU": (1, 2, 3), "LSTM": (1, 2, 3, 7),
}
STATE_SLOTS: dict[str, tuple[int, ...]] = {"BatchNormalization": (3, 4)}  # running mean and variance
# ops that pass their first input on unchanged in value: a weight read through them is still a weight
PASS_THROUGH = frozenset({"Identity", "Transpose", "Reshape", "Squeeze", "Unsqueeze", "Flatten", "Cast"})
# ops graphc translates on import-time constants only: a value only they read can never be a param
IMPORT_TIME_ONLY = frozenset({"ScatterND"})
_FOLDED_NAME = re.compile(r"onnx::|val_\d+$")  # what the PyTorch exporters call the values they compute

TRAINABLE, CONSTANT, STATE = "trainable", "constant", "state"


@dataclass(frozen=True)
class Role:
    """What the importer makes of one float initializer: ``kind`` (trainable, constant or state) and why."""

    kind: str
    reason: str
    folded: bool = False  # a constant an exporter computed from initializers (maybe from parameters)


def check_option(trainable: Any) -> Callable[[str, np.ndarray], Any] | frozenset[str] | dict[str, bool] | None:
    """``trainable=`` as a predicate, a frozenset of names (exactly those train) or a dict of names → bool
    (those decided so, the others by the rule); a GraphcError for anything else."""
    if trainable is None or callable(trainable):
        return trainable
    what = ("import_model: trainable= takes a predicate (name, array) -> bool, a collection of initializer names "
            "or a mapping of names to True/False")
    if isinstance(trainable, (bool, np.bool_)):
        raise GraphcError(f"{what}, got {trainable!r} (every float initializer: lambda name, array: True; "
                          "none: ())")
    if isinstance(trainable, (str, bytes)):
        raise GraphcError(f"{what}, got the string {trainable!r} (one name: [{trainable!r}])")
    if not isinstance(trainable, Collection):
        raise GraphcError(f"{what}, got {type(trainable).__name__}")
    bad = [x for x in trainable if not isinstance(x, str)]
    if bad:
        raise GraphcError(f"{what}; {bad[0]!r} ({type(bad[0]).__name__}) is not a name")
    if isinstance(trainable, Mapping):
        for name, value in trainable.items():
            if not isinstance(value, (bool, np.bool_)):
                raise GraphcError(f"import_model: trainable={{...}} maps names to True or False; {name!r} maps to "
                                  f"{value!r}")
        return {name: bool(value) for name, value in trainable.items()}
    return frozenset(trainable)


def decide(model: Any, arrays: Mapping[str, np.ndarray], params: bool, trainable: Any,
           why_consts: str = "initializers='consts'") -> dict[str, Role]:
    """The role of every float initializer of ``model`` (``arrays``: initializer name → value), by the rule of
    this module's docstring; ``trainable`` as returned by :func:`check_option`."""
    floats = {name: a for name, a in arrays.items() if a.dtype.kind == "f"}
    if not params:
        return {name: Role(CONSTANT, why_consts) for name in floats}
    graph = model.graph
    readers: dict[str, list[tuple[Any, int]]] = {}
    for node in graph.node:
        for index, value in enumerate(node.input):
            if value:
                readers.setdefault(value, []).append((node, index))
    slots = _slots(readers, floats)
    kinds = _torch_kinds(graph)
    from_torch = model.producer_name == "pytorch"
    if isinstance(trainable, (frozenset, dict)):
        _check_names(trainable, arrays, slots)
    roles = {}
    for name, array in floats.items():
        weight, state = slots.get(name, (None, None))
        if state is not None:
            roles[name] = Role(STATE, f"running statistics ({state}): state a training=True program updates")
        elif isinstance(trainable, dict) and name in trainable:
            roles[name] = Role(TRAINABLE if trainable[name] else CONSTANT, f"trainable= maps it to {trainable[name]}")
        elif trainable is not None and not isinstance(trainable, dict):
            roles[name] = _ask(trainable, name, array)
        elif kinds.get(name) in _TORCH_TRAINABLE:
            roles[name] = Role(TRAINABLE, "the PyTorch exporter marks it a parameter")
        elif kinds.get(name) in _TORCH_CONSTANT:
            roles[name] = Role(CONSTANT, f"the PyTorch exporter marks it a {kinds[name].lower().replace('_', ' ')}")
        elif weight is not None:
            roles[name] = Role(TRAINABLE, f"read as a weight ({weight})")
        elif from_torch and (kinds or _FOLDED_NAME.match(name)):
            exporter = "dynamo exporter (no parameter metadata)" if kinds else "exporter (its name)"
            # worth a warning when it could be trained: not a scalar, read by an op that takes tensors
            tensor_read = any(node.op_type not in IMPORT_TIME_ONLY for node, _ in readers.get(name, ()))
            roles[name] = Role(CONSTANT, f"computed by the {exporter}, and read as no weight",
                               folded=array.size > 1 and tensor_read)
        elif from_torch:
            roles[name] = Role(TRAINABLE, "a module path of a TorchScript export (a parameter, or a buffer: the "
                                          "file does not say)")
        elif array.size > 1:
            roles[name] = Role(TRAINABLE, "a float initializer of several elements, read as no weight")
        else:
            roles[name] = Role(CONSTANT, "a scalar read as no weight")
    return roles


def _ask(trainable: Any, name: str, array: np.ndarray) -> Role:
    """The role ``trainable=`` gives ``name``."""
    if isinstance(trainable, frozenset):
        return Role(TRAINABLE, "named in trainable=") if name in trainable else Role(CONSTANT, "not in trainable=")
    view = array.view()
    view.setflags(write=False)
    try:
        answer = trainable(name, view)
    except Exception as err:  # noqa: BLE001 - the user's function: its error, not a malformed file
        raise GraphcError(f"import_model: trainable({name!r}, array) raised {type(err).__name__}: {err}") from err
    if not isinstance(answer, (bool, np.bool_)):
        raise GraphcError(f"import_model: trainable(name, array) must return True or False; it returned "
                          f"{answer!r} for initializer {name!r}")
    return Role(TRAINABLE, "trainable= returned True") if answer else Role(CONSTANT, "trainable= returned False")


def _check_names(names: Collection[str], arrays: Mapping[str, np.ndarray],
                 slots: Mapping[str, tuple[str | None, str | None]]) -> None:
    """A GraphcError for a name of ``trainable=`` that is no float initializer that can be trained."""
    for name in sorted(names):
        if name not in arrays:
            close = difflib.get_close_matches(name, list(arrays), n=5, cutoff=0.5)
            raise GraphcError(f"import_model: trainable= names {name!r}, which is no initializer of the model"
                              + (f"; similar: {close}" if close else ""))
        if arrays[name].dtype.kind != "f":
            raise GraphcError(f"import_model: trainable= names {name!r}, an initializer of dtype "
                              f"{arrays[name].dtype.name}; only float initializers can be trained")
        state = slots.get(name, (None, None))[1]
        if state is not None:
            raise GraphcError(f"import_model: trainable= names {name!r}, BatchNormalization running statistics "
                              f"({state}): state that training updates, never descends on")


def _torch_kinds(graph: Any) -> dict[str, str]:
    """The dynamo exporter's InputSpec kind by value name (empty for other files)."""
    kinds = {}
    for vi in list(graph.value_info) + list(graph.input):
        for entry in vi.metadata_props:
            if entry.key == TORCH_KIND:
                kinds[vi.name] = entry.value
    for init in graph.initializer:
        for entry in getattr(init, "metadata_props", ()):
            if entry.key == TORCH_KIND:
                kinds[init.name] = entry.value
    return kinds


def _slots(readers: Mapping[str, list[tuple[Any, int]]],
           names: Collection[str]) -> dict[str, tuple[str | None, str | None]]:
    """For each name: the first weight slot and the first running-statistics slot that read it (directly or
    through PASS_THROUGH ops; ``readers``: value name → its (node, input index) readers), each as a short
    description, or None."""
    found = {}
    for name in names:
        weight = state = None
        seen, todo = {name}, [name]
        while todo and (weight is None or state is None):
            value = todo.pop()
            for node, index in readers.get(value, ()):
                label = f"input {index} of {node.op_type}" + (f" {node.name!r}" if node.name else "")
                wanted = WEIGHT_SLOTS.get(node.op_type, ())
                if weight is None and (wanted is None or index in wanted):
                    weight = label
                if state is None and index in STATE_SLOTS.get(node.op_type, ()):
                    state = label
                if node.op_type in PASS_THROUGH and index == 0 and node.output and node.output[0] not in seen:
                    seen.add(node.output[0])
                    todo.append(node.output[0])
        if weight is not None or state is not None:
            found[name] = (weight, state)
    return found
