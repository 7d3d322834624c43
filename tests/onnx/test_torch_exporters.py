"""Torchvision CNNs through both PyTorch exporters — ``torch.onnx.export(dynamo=False)`` (TorchScript, opset 17)
and ``dynamo=True`` (PyTorch's default, opset 18+) — import and match PyTorch on graphc's numpy and llvm backends.

Random weights from a fixed seed, eval mode, random BatchNorm statistics (the defaults would make every BatchNorm
an identity), one small image. The models cover different op sets: plain residual convs (ResNet-18), Concat and
ceil-mode pooling (SqueezeNet), Split/shape arithmetic and channel shuffles (ShuffleNet-v2), HardSwish/
HardSigmoid squeeze-excitation (MobileNet-v3), BatchNormalization that no conv absorbs (DenseNet), and the dynamo
exporter's adaptive average pooling at sizes that do not divide (GatherND, Where; VGG's and AlexNet's head on small
images), and the transformer architectures (ViT, Swin, ConvNeXt, MaxViT at small widths). Skipped without torch,
torchvision or, for dynamo=True, onnxscript; ``make test`` installs them (the ``oracle`` extra), so CI runs them.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")

import graphc as gc  # noqa: E402
from graphc.bench.zoo import export_quietly, import_torchvision, randomize_batch_norms  # noqa: E402

tv, _why = import_torchvision(torch)
if tv is None:
    pytest.skip(_why, allow_module_level=True)

BACKENDS = ("numpy", "llvm")
EXPORTERS = ("torchscript", "dynamo")
RTOL = 1e-4  # max |graphc - PyTorch| relative to max |PyTorch|
# name -> (torchvision constructor keywords, input resolution)
MODELS = {
    "resnet18": ({}, 32),
    "squeezenet1_0": ({}, 48),
    "shufflenet_v2_x0_5": ({}, 32),
    "mobilenet_v3_small": ({}, 32),
    "densenet121": ({}, 32),
}


def _torchvision_model(name: str):
    kwargs, _ = MODELS[name]
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = getattr(tv.models, name)(weights=None, **kwargs)
    randomize_batch_norms(torch, model, seed=0)
    return model.eval()


def _export(model, x, path: str, exporter: str) -> None:
    if exporter == "dynamo":
        pytest.importorskip("onnxscript")
    export_quietly(torch, model, x, path, exporter)


def _check(model, x, path: str) -> gc.onnx.ImportedModel:
    """Import ``path`` and compare both backends with PyTorch's output for ``x``."""
    with torch.no_grad():
        want = model(x).numpy()
    imported = gc.onnx.import_model(path)
    for backend in BACKENDS:
        got = imported.compile(backend=backend)(**{imported.inputs[0]: x.numpy()})["y"]
        assert got.shape == want.shape
        err = float(np.max(np.abs(got - want)) / np.max(np.abs(want)))
        assert err <= RTOL, f"{backend}: max relative error {err:.2e}"
    return imported


@pytest.mark.parametrize("exporter", EXPORTERS)
@pytest.mark.parametrize("name", list(MODELS))
def test_torchvision_model_matches_pytorch(name, exporter, tmp_path):
    model = _torchvision_model(name)
    x = torch.randn(1, 3, MODELS[name][1], MODELS[name][1], generator=torch.Generator().manual_seed(1))
    path = str(tmp_path / f"{name}-{exporter}.onnx")
    _export(model, x, path, exporter)
    imported = _check(model, x, path)
    graph = imported.graph
    for node in gc.ir.topo_ancestors(list(imported.outputs.values())):
        if node.op == "batch_norm":  # running statistics are state: never trained
            scale, _, mean, var = (node.inputs[i] for i in (1, 2, 3, 4))
            assert scale.op != "param" or scale.name in graph.trainable
            assert not {p.name for p in (mean, var) if p.op == "param"} & graph.trainable


def test_dynamo_adaptive_average_pool_that_does_not_divide(tmp_path):
    """AdaptiveAvgPool2d to a size that does not divide the input (VGG's and AlexNet's 7×7/6×6 head on small
    images): the dynamo exporter writes GatherND with constant indices, Where and Gather; TorchScript refuses."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d((3, 2)),
                                torch.nn.Flatten(), torch.nn.Linear(24, 5)).eval()
    x = torch.randn(1, 3, 7, 6, generator=torch.Generator().manual_seed(1))
    path = str(tmp_path / "adaptive.onnx")
    _export(model, x, path, "dynamo")
    _check(model, x, path)


def _transformer(name: str):
    """torchvision's transformer architectures at small widths and depths (the op patterns of vit_b_16, swin_t,
    convnext_tiny and maxvit_t: patch embedding, multi-head attention as batched matmuls, exact GELU through Erf,
    LayerNormalization, Swin's shifted windows and relative position bias, MaxViT's Einsum attention and
    squeeze-excitation), random weights from a fixed seed, the classifier not zero."""
    from torchvision.models import convnext, maxvit, swin_transformer, vision_transformer

    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if name == "vit":
            model = vision_transformer.VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=2,
                                                         hidden_dim=32, mlp_dim=64, num_classes=10)
            torch.nn.init.normal_(model.heads.head.weight, std=0.5)
        elif name == "swin":
            model = swin_transformer.SwinTransformer(patch_size=[4, 4], embed_dim=16, depths=[2, 2], num_heads=[2, 2],
                                                     window_size=[4, 4], num_classes=10)
        elif name == "convnext":
            model = convnext.ConvNeXt([convnext.CNBlockConfig(16, 32, 2), convnext.CNBlockConfig(32, None, 2)],
                                      num_classes=10)
        else:
            model = maxvit.MaxVit(input_size=(32, 32), stem_channels=16, partition_size=2, block_channels=[16, 32],
                                  block_layers=[1, 1], head_dim=8, stochastic_depth_prob=0.0, num_classes=10)
    return model.eval()


@pytest.mark.parametrize("exporter", EXPORTERS)
@pytest.mark.parametrize("name", ["vit", "swin", "convnext", "maxvit"])
def test_torchvision_transformer_matches_pytorch(name, exporter, tmp_path):
    model = _transformer(name)
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    path = str(tmp_path / f"{name}-{exporter}.onnx")
    _export(model, x, path, exporter)
    imported = _check(model, x, path)
    ops = {n.op for n in gc.ir.topo_ancestors(list(imported.outputs.values()))}
    assert "erf" in ops or any(n.op == "gelu" and n.attrs.get("approximate") == "none"
                               for n in gc.ir.topo_ancestors(list(imported.outputs.values())))
