"""Where ``graphc bench models`` gets its models: torchvision networks exported to ONNX once (cached), or the
user's ONNX files; and the inputs they are fed.

- :data:`MODELS`: the torchvision models (name -> constructor keywords). :func:`torch_model` builds one with random
  weights from a fixed seed, in eval mode, with random BatchNorm running statistics and affine parameters (the
  defaults — mean 0, variance 1, gamma 1, beta 0 — would make every BatchNorm an identity that no check can see).
- :func:`export_onnx`: ``torch.onnx.export`` of a model at one batch size into the cache folder
  (``$GRAPHC_CACHE_DIR/bench-models`` or ``~/.cache/graphc/bench-models``, ``--cache DIR``); the file name holds
  everything the file depends on (model, batch, resolution, seed, exporter, torch and torchvision versions), so a
  cached file is reused only when it is the same export.
- :func:`read_onnx_inputs` and :func:`input_shapes`: a user file's inputs, with the batch size put into a
  symbolic first dimension; :func:`make_feeds`: the random inputs (fixed seed).
- :func:`import_torch` / :func:`import_torchvision` / :func:`import_onnxruntime`: the optional frameworks, each
  returned with the reason it is missing. PyPI's Linux torchvision wheel is a CUDA build whose compiled ops do not
  load beside a ``+cpu`` torch; the classification models need none of them, so the two op schemas its import
  registers against (``torchvision::nms``, ``torchvision::qnms``) are declared first and the import retried.

The timing, the table and the JSON are :mod:`graphc.bench.zoo_run`.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from graphc.ir import GraphcError

# name -> keywords of torchvision.models.<name>(weights=None, **keywords), in the order the benchmark runs them
MODELS: dict[str, dict[str, Any]] = {
    "resnet18": {}, "resnet50": {}, "squeezenet1_0": {}, "googlenet": {"aux_logits": False, "init_weights": True},
    "densenet121": {}, "vgg11": {}, "alexnet": {}, "efficientnet_b0": {}, "mobilenet_v2": {},
    "vit_b_16": {}, "swin_t": {}, "convnext_tiny": {}, "maxvit_t": {},
}
SMALL_MODELS = ("resnet18",)  # what --small runs without model names
RESOLUTION, SMALL_RESOLUTION = 224, 64  # 3×224×224 inputs; --small: 3×64×64 (alexnet's pools need >= 63)
SEED = 0
EXPORTERS = ("torchscript", "dynamo")
TORCHSCRIPT_OPSET = 17

_TORCHVISION_STUBS: list[Any] = []  # keeps the torch.library declaring the stubbed schemas alive


# ----------------------------------------------------------------------------------------- frameworks


def import_torch() -> tuple[Any, str | None]:
    """(torch, None), or (None, why it cannot be used)."""
    try:
        import torch
    except Exception as err:  # noqa: BLE001 - a broken install counts as absent
        return None, f"PyTorch cannot be imported ({type(err).__name__}: {err})"
    return torch, None


def import_torchvision(torch: Any) -> tuple[Any, str | None]:
    """(torchvision, None), or (None, why it cannot be used); see the module docstring for the stubbed ops."""
    try:
        import torchvision
        return torchvision, None
    except RuntimeError as err:
        if "torchvision::" not in str(err):
            return None, f"torchvision cannot be imported (RuntimeError: {err})"
    except Exception as err:  # noqa: BLE001 - a broken install counts as absent
        return None, f"torchvision cannot be imported ({type(err).__name__}: {err})"
    for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
        del sys.modules[name]
    if not _TORCHVISION_STUBS:
        lib = torch.library.Library("torchvision", "DEF")
        lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        lib.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        _TORCHVISION_STUBS.append(lib)
    try:
        import torchvision
    except Exception as err:  # noqa: BLE001
        return None, f"torchvision cannot be imported ({type(err).__name__}: {err})"
    return torchvision, None


def import_onnxruntime() -> tuple[Any, str | None]:
    """(onnxruntime, None), or (None, why it cannot be used)."""
    try:
        import onnxruntime
    except Exception as err:  # noqa: BLE001 - a broken install counts as absent
        return None, f"onnxruntime cannot be imported ({type(err).__name__}: {err})"
    return onnxruntime, None


def require_onnx() -> Any:
    """The ``onnx`` package, or a GraphcError saying how to install it."""
    try:
        import onnx
    except ImportError:
        raise GraphcError("reading ONNX files needs the 'onnx' package: pip install onnx") from None
    return onnx


# ---------------------------------------------------------------------------------------------- models


def torch_model(torch: Any, tv: Any, name: str, seed: int = SEED) -> Any:
    """torchvision ``name`` with random weights (``torch.manual_seed(seed)``), eval mode, random BatchNorm
    statistics and affine parameters."""
    torch.manual_seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # googlenet's note about its default initialization
        model = getattr(tv.models, name)(weights=None, **MODELS[name])
    randomize_batch_norms(torch, model, seed)
    return model.eval()


def randomize_batch_norms(torch: Any, model: Any, seed: int = SEED) -> None:
    """Random running statistics and affine parameters in every BatchNorm of ``model`` (fresh ones are identities:
    mean 0, variance 1, scale 1, shift 0, which would hide a wrong normalization)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for mod in model.modules():
            if isinstance(mod, torch.nn.modules.batchnorm._BatchNorm) and mod.running_mean is not None:
                c = mod.num_features
                mod.running_mean.copy_(torch.randn(c, generator=gen) * 0.1)
                mod.running_var.copy_(torch.rand(c, generator=gen) + 0.5)
                if mod.affine:
                    mod.weight.copy_(torch.rand(c, generator=gen) + 0.5)
                    mod.bias.copy_(torch.randn(c, generator=gen) * 0.1)


def default_cache_dir() -> str:
    """``$GRAPHC_CACHE_DIR/bench-models``, or ``~/.cache/graphc/bench-models``."""
    root = os.environ.get("GRAPHC_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "graphc")
    return os.path.join(root, "bench-models")


def export_path(torch: Any, tv: Any, name: str, batch: int, resolution: int, exporter: str, cache_dir: str) -> str:
    """The cache file of one export: its name says everything the file depends on."""
    versions = f"torch{torch.__version__}-tv{tv.__version__}".replace("+", "_")
    return os.path.join(cache_dir, f"{name}-b{batch}-{resolution}px-seed{SEED}-{exporter}-{versions}.onnx")


def export_onnx(torch: Any, model: Any, path: str, batch: int, resolution: int, exporter: str) -> float | None:
    """Export ``model`` at ``(batch, 3, resolution, resolution)`` to ``path`` unless that file exists; returns the
    export's seconds (None: cached). Written to a temporary file and renamed, so a file in the cache is whole."""
    if os.path.isfile(path):
        return None
    folder = os.path.dirname(path)
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as err:
        raise GraphcError(f"cannot create the ONNX cache folder {folder}: {err.strerror or err}") from None
    x = torch.randn(batch, 3, resolution, resolution)
    fd, tmp = tempfile.mkstemp(suffix=".onnx.tmp", dir=folder)
    os.close(fd)
    start = time.perf_counter()
    try:
        export_quietly(torch, model, x, tmp, exporter)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return time.perf_counter() - start


def export_quietly(torch: Any, model: Any, x: Any, path: str, exporter: str, keep_batch_norms: bool = False) -> None:
    """``torch.onnx.export`` of ``model`` on the input ``x`` (graph names ``x`` → ``y``) to ``path`` with the
    exporter's progress and warnings silenced: ``"dynamo"`` (one file, no external data) or ``"torchscript"``
    (opset ``TORCHSCRIPT_OPSET``). ``keep_batch_norms``: for fine-tuning, keep eval-mode BatchNorms in the file —
    both exporters otherwise fold them into the conv before (TorchScript: ``training=TrainingMode.PRESERVE``;
    dynamo: ``optimize=False``)."""
    if exporter == "dynamo":
        options = {"dynamo": True, "external_data": False, **({"optimize": False} if keep_batch_norms else {})}
    else:
        options = {"dynamo": False, "opset_version": TORCHSCRIPT_OPSET,
                   **({"training": torch.onnx.TrainingMode.PRESERVE} if keep_batch_norms else {})}
    quiet = io.StringIO()
    with warnings.catch_warnings(), contextlib.redirect_stdout(quiet), contextlib.redirect_stderr(quiet):
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (x,), path, input_names=["x"], output_names=["y"], **options)


def exporter_call(exporter: str) -> str:
    return ("torch.onnx.export(dynamo=True)" if exporter == "dynamo" else
            f"torch.onnx.export(dynamo=False, opset_version={TORCHSCRIPT_OPSET})")


# ------------------------------------------------------------------------------------------ ONNX inputs


@dataclass(frozen=True)
class OnnxInput:
    """A graph input of an ONNX file: name, dims (None where symbolic) and NumPy dtype."""

    name: str
    dims: tuple[int | None, ...]
    dtype: np.dtype


def read_onnx_inputs(path: str) -> list[OnnxInput]:
    """The runtime inputs of the ONNX file at ``path`` (initializers excluded); a GraphcError when the file cannot
    be read or is no ONNX model."""
    onnx = require_onnx()
    from google.protobuf.message import DecodeError

    if not os.path.isfile(path):
        raise GraphcError(f"--onnx {path}: no such file")
    try:
        model = onnx.load(path, load_external_data=False)
    except OSError as err:
        raise GraphcError(f"--onnx {path}: cannot read it ({err.strerror or err})") from None
    except (DecodeError, ValueError, RuntimeError) as err:
        raise GraphcError(f"--onnx {path}: not an ONNX model ({type(err).__name__}: {err})") from None
    if not model.graph.node:
        raise GraphcError(f"--onnx {path}: not an ONNX model (its graph has no nodes)")
    inits = {init.name for init in model.graph.initializer}
    inputs = []
    for vi in model.graph.input:
        if vi.name in inits:
            continue
        tensor = vi.type.tensor_type
        if not vi.type.HasField("tensor_type"):
            raise GraphcError(f"--onnx {path}: input {vi.name!r} is not a tensor")
        dims = tuple(d.dim_value if d.HasField("dim_value") else None for d in tensor.shape.dim)
        try:
            dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type))
        except (KeyError, ValueError, TypeError):
            raise GraphcError(f"--onnx {path}: input {vi.name!r} has an unknown element type") from None
        inputs.append(OnnxInput(vi.name, dims, dtype))
    return inputs


def input_shapes(inputs: list[OnnxInput], batch: int) -> dict[str, tuple[int, ...]]:
    """Static shapes: a symbolic first dimension becomes ``batch``; any other symbolic dimension is an error."""
    shapes = {}
    for inp in inputs:
        dims = list(inp.dims)
        if dims and dims[0] is None:
            dims[0] = batch
        if None in dims:
            raise GraphcError(f"input {inp.name!r} has a symbolic dimension {dims.index(None)} besides the batch; "
                              "the benchmark can only fill in the first one")
        shapes[inp.name] = tuple(dims)
    return shapes


def make_feeds(inputs: list[OnnxInput], shapes: dict[str, tuple[int, ...]], seed: int = SEED) -> dict[str, Any]:
    """Random standard-normal floats (integer inputs: zeros, bool: False) of the given shapes."""
    rng = np.random.default_rng(seed)
    feeds = {}
    for inp in inputs:
        shape = shapes[inp.name]
        if inp.dtype.kind == "f":
            feeds[inp.name] = rng.standard_normal(shape).astype(inp.dtype)
        else:
            feeds[inp.name] = np.zeros(shape, inp.dtype)
    return feeds
