"""The model file format of ``model.save(path)`` / ``gc.nn.load_model(path)`` (``graphc.nn.model``): architecture,
weights and optimizer state in one ``.npz``.

The archive holds a JSON description under ``__graphc_model__`` (stored as UTF-8 bytes) and one array per
graph-state entry under ``state/<name>``. It is read with ``allow_pickle=False``: nothing in it can run code.
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

import graphc.optim as optim
from graphc.ir import GraphcError
from graphc.nn.layers import LAYERS

FORMAT = 1
_OPTIMIZER_FIELDS = ("momentum", "nesterov", "eps", "rho", "beta1", "beta2", "weight_decay")


def _optimizer_config(opt: optim.Optimizer) -> dict[str, Any]:
    config = {k: getattr(opt, k) for k in _OPTIMIZER_FIELDS if hasattr(opt, k)}
    config["lr"] = opt.lr_value if opt.graph is not None else opt.initial_lr
    return {"class": type(opt).__name__, "config": config}


def save_model(model: Any, path: str) -> None:
    model._require_built()
    description = {
        "format": FORMAT, "name": model.name, "input_shape": list(model.input_shape),
        "layers": [{"class": type(layer).__name__, "config": layer.get_config()} for layer in model.layers],
        "compile": None if model.loss is None else {
            "loss": model.loss, "metrics": model.metrics, "optimizer": _optimizer_config(model.optimizer)},
    }
    arrays = {f"state/{name}": value for name, value in model.graph.state.items()}
    arrays["__graphc_model__"] = np.frombuffer(json.dumps(description).encode(), dtype=np.uint8)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    temporary = path + ".tmp.npz"
    np.savez(temporary, **arrays)
    os.replace(temporary, path)  # a crash mid-write never leaves a truncated checkpoint


def read_model(path: str) -> tuple[dict[str, Any], dict[str, np.ndarray], list[Any]]:
    """(description, state arrays by name, the rebuilt layers) of a saved model file."""
    with np.load(path, allow_pickle=False) as archive:
        if "__graphc_model__" not in archive:
            raise GraphcError(f"{path} is not a graphc model file")
        description = json.loads(archive["__graphc_model__"].tobytes().decode())
        state = {key[len("state/"):]: archive[key] for key in archive.files if key.startswith("state/")}
    if description.get("format") != FORMAT:
        raise GraphcError(f"{path}: unsupported model format {description.get('format')!r}")
    layers = []
    for entry in description["layers"]:
        cls = LAYERS.get(entry["class"])
        if cls is None:
            raise GraphcError(f"{path}: unknown layer class {entry['class']!r}")
        layers.append(cls(**entry["config"]))
    return description, state, layers


def optimizer_from(spec: dict[str, Any]) -> optim.Optimizer:
    """The optimizer a saved ``{"class", "config"}`` entry describes."""
    return getattr(optim, spec["class"])(**spec["config"])
