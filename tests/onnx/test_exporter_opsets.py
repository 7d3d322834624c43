"""Both PyTorch exporters across opsets 9–21: ResNet-18 (conv, batch norm, pools, Gemm/Flatten) and
MobileNet-v3-small (HardSwish/HardSigmoid, which are decomposed below opset 14; Clip's bounds moved from
attributes to inputs at opset 11) import and match PyTorch on both backends at every opset.

TorchScript (``dynamo=False``) exports each opset itself. The dynamo exporter writes opset 18 and later; lower
opsets come from ONNX's own version converter applied to its file, down to the lowest opset the converter can
reach for the model (it has no adapter below Relu-14, nor a version of HardSwish before 14)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")

import graphc as gc  # noqa: E402
from graphc.bench.zoo import export_quietly, import_torchvision, randomize_batch_norms  # noqa: E402

tv, _why = import_torchvision(torch)
if tv is None:
    pytest.skip(_why, allow_module_level=True)

RTOL = 1e-4
TORCHSCRIPT = [9, 11, 13, 15, 17, 20]
DYNAMO = {"resnet18": [14, 16, 18, 21], "mobilenet_v3_small": [15, 17, 18, 21]}  # < 18: version converter


@pytest.fixture(scope="module")
def models():
    made = {}
    for name in DYNAMO:
        torch.manual_seed(0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = getattr(tv.models, name)(weights=None)
        randomize_batch_norms(torch, model, seed=0)
        x = torch.randn(1, 3, 32, 32)
        with torch.no_grad():
            made[name] = (model.eval(), x, model(x).numpy())
    return made


@pytest.fixture(scope="module")
def dynamo_files(models, tmp_path_factory):
    pytest.importorskip("onnxscript")
    folder = tmp_path_factory.mktemp("dynamo")
    files = {}
    for name, (model, x, _) in models.items():
        path = str(folder / f"{name}.onnx")
        export_quietly(torch, model, x, path, "dynamo")
        files[name] = onnx.load(path)
    return files


def _check(proto, x, want) -> None:
    imported = gc.onnx.import_model(proto)
    for backend in ("numpy", "llvm"):
        got = imported.compile(backend=backend)(**{imported.inputs[0]: x.numpy()})
        got = np.asarray(next(iter(got.values())))
        err = float(np.max(np.abs(got - want)) / np.max(np.abs(want)))
        assert err <= RTOL, f"{backend}: max relative error {err:.2e}"


@pytest.mark.parametrize("opset", TORCHSCRIPT)
@pytest.mark.parametrize("name", list(DYNAMO))
def test_torchscript_exporter_opsets(name, opset, models, tmp_path):
    model, x, want = models[name]
    path = str(tmp_path / f"{name}_{opset}.onnx")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (x,), path, opset_version=opset, dynamo=False, input_names=["x"])
    proto = onnx.load(path)
    assert max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) == opset
    _check(proto, x, want)


@pytest.mark.parametrize("name, opset", [(n, o) for n, opsets in DYNAMO.items() for o in opsets])
def test_dynamo_exporter_opsets(name, opset, models, dynamo_files):
    _, x, want = models[name]
    proto = dynamo_files[name]
    native = max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))
    if opset != native:
        from onnx import version_converter

        proto = version_converter.convert_version(proto, opset)
    assert max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) == opset
    _check(proto, x, want)
