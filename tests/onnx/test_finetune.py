"""Training imported models: ``import_model(training=True)`` gives PyTorch's ``model.train()`` (batch statistics,
running statistics updated in place), ``eval_outputs`` its ``model.eval()``, and SGD fine-tuning of the imported
graph (with a replaced classifier) follows PyTorch's own SGD step for step. Skipped without torch."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")

import graphc as gc  # noqa: E402
from graphc.bench.zoo import export_quietly  # noqa: E402


def _net() -> torch.nn.Module:
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.BatchNorm2d(8), torch.nn.ReLU(),
        torch.nn.Conv2d(8, 8, 3, stride=2, padding=1, bias=False), torch.nn.BatchNorm2d(8), torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(8, 5))
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):  # as after pre-training: no two layers hold equal values
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.8, 1.2)
                m.bias.uniform_(-0.1, 0.1)
    return net.double()


def _export(net: torch.nn.Module, path: str, exporter: str) -> None:
    """Export for fine-tuning: both exporters fold an eval-mode BatchNorm into the conv before it unless told
    not to (TorchScript: ``training=TrainingMode.PRESERVE``; dynamo: ``optimize=False``)."""
    if exporter == "dynamo":
        pytest.importorskip("onnxscript")
    export_quietly(torch, net.eval(), torch.zeros(4, 3, 8, 8, dtype=torch.float64), path, exporter,
                   keep_batch_norms=True)
    assert sum(n.op_type == "BatchNormalization" for n in onnx.load(path).graph.node) == 2


def _running_stats(net: torch.nn.Module) -> list[np.ndarray]:
    return [b.detach().numpy().copy() for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)
            for b in (m.running_mean, m.running_var)]


def _graph_stats(imported: gc.onnx.ImportedModel) -> list[np.ndarray]:
    """The running statistics in the graph's state, in the order of the BN nodes (mean, var per node)."""
    nodes = [n for n in imported.graph.nodes if n.op == "batch_norm" and n.attrs["training"]]
    return [imported.graph.state[n.inputs[i].name].copy() for n in nodes for i in (3, 4)]


@pytest.mark.parametrize("exporter", ["torchscript", "dynamo"])
@pytest.mark.parametrize("backend", ["numpy", "llvm"])
def test_training_import_is_pytorch_train_mode(tmp_path, exporter: str, backend: str) -> None:
    net = _net()
    path = str(tmp_path / "net.onnx")
    _export(net, path, exporter)
    imported = gc.onnx.import_model(path, training=True)
    assert imported.graph.trainable.isdisjoint(n.inputs[i].name for n in imported.graph.nodes
                                               if n.op == "batch_norm" for i in (3, 4))
    x = np.random.default_rng(0).standard_normal((4, 3, 8, 8))
    train_prog = imported.compile(backend=backend)
    got = train_prog(x=x)["y"]
    net.train()
    with torch.no_grad():
        want = net(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10)
    for g, w in zip(_graph_stats(imported), _running_stats(net), strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-10, atol=1e-12)
    eval_prog = gc.compile(imported.eval_outputs, backend=backend)
    net.eval()
    with torch.no_grad():
        want_eval = net(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(eval_prog(x=x)["y"], want_eval, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("backend", ["numpy", "llvm"])
def test_finetuning_with_a_replaced_classifier_follows_pytorch_sgd(tmp_path, backend: str) -> None:
    net = _net()
    path = str(tmp_path / "net.onnx")
    _export(net, path, "torchscript")
    imported = gc.onnx.import_model(path, training=True)
    head_input = onnx.load(path).graph.node[-1].input[0]  # the features the exported Linear (Gemm) reads
    features = imported.tensor(head_input)
    assert features.shape == (4, 8)
    rng = np.random.default_rng(1)
    w0, b0 = rng.standard_normal((8, 3)) * 0.3, np.zeros(3)
    g = imported.graph
    w, b = g.param("head/w", w0, dtype="float64"), g.param("head/b", b0, dtype="float64")
    labels = g.input("labels", (4,), "int64")
    loss = gc.softmax_cross_entropy(gc.matmul(features, w) + b, labels)
    updates = gc.optim.SGD(lr=0.1, momentum=0.9).minimize(loss)
    step = gc.compile({"loss": loss}, backend=backend, updates=updates)

    net[-1] = torch.nn.Linear(8, 3).double()
    with torch.no_grad():
        net[-1].weight.copy_(torch.from_numpy(w0.T))
        net[-1].bias.zero_()
    net.train()
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    for i in range(3):
        x = rng.standard_normal((4, 3, 8, 8))
        y = rng.integers(0, 3, size=4)
        got = float(step(x=x, labels=y)["loss"])
        opt.zero_grad()
        want = torch.nn.functional.cross_entropy(net(torch.from_numpy(x)), torch.from_numpy(y))
        want.backward()
        opt.step()
        assert got == pytest.approx(want.item(), rel=1e-10), f"step {i}"
    assert "4.weight" in g.params  # the second BN's scale, not merged with the first one's
    np.testing.assert_allclose(g.state["head/w"], net[-1].weight.detach().numpy().T, rtol=1e-9, atol=1e-12)
    first_conv = next(n for n in g.nodes if n.op == "conv2d").inputs[1].name
    np.testing.assert_allclose(g.state[first_conv], net[0].weight.detach().numpy(), rtol=1e-9, atol=1e-12)
    for got_stat, want_stat in zip(_graph_stats(imported), _running_stats(net), strict=True):
        np.testing.assert_allclose(got_stat, want_stat, rtol=1e-9, atol=1e-12)


def test_training_contradictions_are_errors(tmp_path) -> None:
    path = str(tmp_path / "net.onnx")
    _export(_net(), path, "torchscript")
    with pytest.raises(gc.GraphcError, match="contradict"):
        gc.onnx.import_model(path, training=True, inference=True)
    with pytest.raises(gc.GraphcError, match="initializers='consts' contradicts"):
        gc.onnx.import_model(path, training=True, initializers="consts")
    with pytest.raises(gc.GraphcError, match="no ONNX value 'nope'"):
        gc.onnx.import_model(path).tensor("nope")


def test_initializers_merged_by_the_exporter_are_reported_when_training(tmp_path) -> None:
    """TorchScript's eval export merges initializers of equal value (two fresh BatchNorms' ones and zeros): trained,
    they would stay tied, so ``training=True`` warns and names them."""
    net = _net()
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.fill_(1.0)
    path = str(tmp_path / "net.onnx")
    _export(net, path, "torchscript")
    with pytest.warns(UserWarning, match="initializer '1.weight' is read by 2 ops"):
        gc.onnx.import_model(path, training=True)


@pytest.mark.parametrize("backend", ["numpy", "llvm"])
def test_running_statistics_merged_by_the_exporter_are_untied(tmp_path, backend: str) -> None:
    """Fresh BatchNorms' running statistics are all zeros and ones, which the eval export merges into one
    initializer: each training-mode layer still updates its own, as in PyTorch."""
    net = _net()
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.zero_()
                m.running_var.fill_(1.0)
    path = str(tmp_path / "net.onnx")
    _export(net, path, "torchscript")
    nodes = onnx.load(path).graph.node
    alias = {n.output[0]: n.input[0] for n in nodes if n.op_type == "Identity"}  # how the export merges them
    assert len({alias.get(n.input[3], n.input[3]) for n in nodes if n.op_type == "BatchNormalization"}) == 1
    imported = gc.onnx.import_model(path, training=True)
    x = np.random.default_rng(0).standard_normal((4, 3, 8, 8))
    imported.compile(backend=backend)(x=x)
    net.train()
    with torch.no_grad():
        net(torch.from_numpy(x))
    for g, w in zip(_graph_stats(imported), _running_stats(net), strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-10, atol=1e-12)
    evaluated = gc.compile(imported.eval_outputs, backend=backend)(x=x)["y"]
    net.eval()
    with torch.no_grad():
        np.testing.assert_allclose(evaluated, net(torch.from_numpy(x)).numpy(), rtol=1e-10, atol=1e-10)


def test_the_finetune_example_runs(tmp_path):
    """examples/finetune_onnx.py: exports ResNet-18, replaces its classifier and trains (a few steps here)."""
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[2] / "examples" / "finetune_onnx.py"
    proc = subprocess.run([sys.executable, str(script), "--steps", "3", "--batch", "8"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    values = dict(line.split(" = ") for line in proc.stdout.splitlines() if " = " in line)
    assert np.isfinite(float(values["final_loss"])) and 0.0 <= float(values["accuracy"]) <= 1.0
