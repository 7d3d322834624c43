"""An imported PyTorch model trains exactly its parameters: with both exporters (TorchScript, ``dynamo=False``, and
``dynamo=True``), SGD steps on the imported graph follow PyTorch's own SGD on the module step for step — the loss
and every parameter, whether the file keeps it by name or folded it (a Linear weight transposed for MatMul) — and
the constants the exporters store as initializers (attention scales, buffers) stay constants. Skipped without
torch. The rule itself, on hand-made files: tests/onnx/test_trainable.py."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")

import graphc as gc  # noqa: E402
from graphc.bench.zoo import export_quietly  # noqa: E402

EXPORTERS = ("torchscript", "dynamo")
BACKENDS = ("numpy", "llvm")
BATCH, TOKENS, WIDTH, CLASSES = 4, 5, 8, 3


class _Block(torch.nn.Module):
    """A pre-norm transformer block and a classifier: a position embedding added (a parameter read by Add),
    nn.MultiheadAttention (its scale a constant of the file), LayerNorms, a GELU MLP whose output is scaled by the
    constant 0.5, the mean over tokens and a Linear head. (Not 1/√2: the dynamo exporter writes a Python float
    rounded to float32, even into a float64 model, so PyTorch and the file would differ by 1e-8.)"""

    def __init__(self) -> None:
        super().__init__()
        self.pos = torch.nn.Parameter(torch.randn(1, TOKENS, WIDTH) * 0.1)
        self.ln1 = torch.nn.LayerNorm(WIDTH)
        self.attn = torch.nn.MultiheadAttention(WIDTH, 2, batch_first=True)
        self.ln2 = torch.nn.LayerNorm(WIDTH)
        self.fc1 = torch.nn.Linear(WIDTH, 2 * WIDTH)
        self.fc2 = torch.nn.Linear(2 * WIDTH, WIDTH)
        self.head = torch.nn.Linear(WIDTH, CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.pos
        h = self.ln1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        x = x + self.fc2(torch.nn.functional.gelu(self.fc1(self.ln2(x)))) * 0.5
        return self.head(x.mean(1))


class _Cnn(torch.nn.Module):
    """Input normalization by two buffers, conv → BN → ReLU twice, pooling and a Linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor([0.1, -0.2, 0.3]).reshape(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([1.1, 0.9, 1.3]).reshape(1, 3, 1, 1))
        self.body = torch.nn.Sequential(
            torch.nn.Conv2d(3, 6, 3, padding=1), torch.nn.BatchNorm2d(6), torch.nn.ReLU(),
            torch.nn.Conv2d(6, 6, 3, stride=2, padding=1, bias=False), torch.nn.BatchNorm2d(6), torch.nn.ReLU(),
            torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(6, CLASSES))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body((x - self.mean) / self.std)


class _Tokens(torch.nn.Module):
    """ViT's class token: a parameter expanded to the batch and concatenated to the projected tokens."""

    def __init__(self) -> None:
        super().__init__()
        self.cls = torch.nn.Parameter(torch.randn(1, 1, WIDTH))
        self.proj = torch.nn.Linear(4, WIDTH)
        self.head = torch.nn.Linear(WIDTH, CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = torch.cat([self.cls.expand(x.shape[0], -1, -1), self.proj(x)], dim=1)
        return self.head(torch.tanh(tokens).mean(1))


def _distinct(cls: type[torch.nn.Module]) -> torch.nn.Module:
    """A ``cls`` from a fixed seed, in float64, every parameter and running statistic perturbed: as after training,
    no two hold equal values (the exporters merge initializers of equal value: fresh LayerNorms' ones and zeros)."""
    torch.manual_seed(0)
    net = cls().double()
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.1)
        for name, b in net.named_buffers():
            if name.endswith("running_mean"):
                b.uniform_(-0.2, 0.2)
            elif name.endswith("running_var"):
                b.uniform_(0.5, 1.5)
    return net


def _export(net: torch.nn.Module, shape: tuple[int, ...], path: str, exporter: str, keep: bool = False) -> None:
    """``keep``: the exporter's options for fine-tuning (batch norms kept; dynamo: ``optimize=False``)."""
    if exporter == "dynamo":
        pytest.importorskip("onnxscript")
    export_quietly(torch, net.eval(), torch.zeros(shape, dtype=torch.float64), path, exporter, keep_batch_norms=keep)


def _param_map(imported: gc.onnx.ImportedModel, net: torch.nn.Module) -> dict[str, tuple[str, bool]]:
    """Each trainable initializer → (the PyTorch parameter of equal value, whether transposed); every parameter
    must be found exactly once, and no constant may equal one."""
    params = {k: v.detach().numpy() for k, v in net.named_parameters()}
    found: dict[str, tuple[str, bool]] = {}
    for name in imported.trainable_names:
        value = imported.graph.state[name]
        hits = [(k, False) for k, p in params.items() if p.shape == value.shape and np.array_equal(p, value)]
        hits += [(k, True) for k, p in params.items() if p.ndim == 2 and p.T.shape == value.shape
                 and np.array_equal(p.T, value)]
        assert len(hits) == 1, f"trainable initializer {name!r} is no parameter: {imported.why(name)}"
        found[name] = hits[0]
    assert sorted(k for k, _ in found.values()) == sorted(params), "every parameter trains, once"
    return found


def _train_both(imported: gc.onnx.ImportedModel, net: torch.nn.Module, x_shape: tuple[int, ...], backend: str,
                steps: int = 3) -> None:
    """``steps`` SGD steps (momentum) on the imported graph and on ``net`` (train mode): equal losses, then equal
    parameters."""
    found = _param_map(imported, net)
    g = imported.graph
    labels = g.input("labels", (x_shape[0],), "int64")
    loss = gc.softmax_cross_entropy(imported.outputs["y"], labels)
    updates = gc.optim.SGD(lr=0.1, momentum=0.9).minimize(loss)
    assert {p.name for p in updates if p.op == "param" and p.name in g.trainable} == set(imported.trainable_names)
    step = gc.compile({"loss": loss}, backend=backend, updates=updates)
    net.train()
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    rng = np.random.default_rng(2)
    for i in range(steps):
        x, y = rng.standard_normal(x_shape), rng.integers(0, CLASSES, size=x_shape[0])
        got = float(step(x=x, labels=y)["loss"])
        opt.zero_grad()
        want = torch.nn.functional.cross_entropy(net(torch.from_numpy(x)), torch.from_numpy(y))
        want.backward()
        opt.step()
        assert got == pytest.approx(want.item(), rel=1e-9), f"step {i}"
    params = dict(net.named_parameters())
    for name, (param, transposed) in found.items():
        want = params[param].detach().numpy()
        np.testing.assert_allclose(g.state[name], want.T if transposed else want, rtol=1e-8, atol=1e-11,
                                   err_msg=name)


@pytest.fixture(scope="module")
def block_files(tmp_path_factory) -> dict[str, str]:
    paths = {}
    for exporter in EXPORTERS:
        paths[exporter] = str(tmp_path_factory.mktemp("block") / f"block-{exporter}.onnx")
        _export(_distinct(_Block), (BATCH, TOKENS, WIDTH), paths[exporter], exporter)
    return paths


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("exporter", EXPORTERS)
def test_transformer_block_trains_its_parameters_like_pytorch(block_files, exporter: str, backend: str) -> None:
    imported = gc.onnx.import_model(block_files[exporter])
    folded = [n for n in imported.trainable_names if n.startswith(("onnx::", "val_"))]
    assert len(folded) == 3, "the exporter folds the transposes of attn.in_proj_weight, fc1 and fc2"
    if exporter == "dynamo":  # the attention scale and the 0.5 are initializers of the file, constants here
        assert imported.constant_names and all(imported.graph.params.get(n) is None for n in imported.constant_names)
        assert all(onnx.numpy_helper.to_array(i).size == 1 for i in onnx.load(block_files[exporter]).graph.initializer
                   if i.name in imported.constant_names)
    else:
        assert imported.constant_names == ()  # TorchScript writes scalars as Constant nodes
    _train_both(imported, _distinct(_Block), (BATCH, TOKENS, WIDTH), backend)


def _graph_stats(imported: gc.onnx.ImportedModel) -> list[np.ndarray]:
    nodes = [n for n in imported.graph.nodes if n.op == "batch_norm" and n.attrs["training"]]
    return [imported.graph.state[n.inputs[i].name] for n in nodes for i in (3, 4)]


@pytest.mark.parametrize("exporter", EXPORTERS)
def test_cnn_with_batch_norms_and_buffers_trains_like_pytorch(tmp_path, exporter: str) -> None:
    """training=True, three SGD steps: parameters, losses and running statistics as PyTorch's. The normalization
    buffers are constants from the dynamo file's metadata; a TorchScript file does not tell a buffer from a
    parameter, so there ``trainable=`` names them."""
    path = str(tmp_path / "cnn.onnx")
    _export(_distinct(_Cnn), (BATCH, 3, 8, 8), path, exporter, keep=True)
    imported = gc.onnx.import_model(path, training=True)
    assert len(imported.state_names) == 4 and all("running statistics" in imported.why(n)
                                                  for n in imported.state_names)
    if exporter == "dynamo":
        assert {"mean", "std"} <= set(imported.constant_names) and "buffer" in imported.why("mean")
    else:
        assert {"mean", "std"} <= set(imported.trainable_names) and "buffer" in imported.why("mean")
        imported = gc.onnx.import_model(path, training=True, trainable={"mean": False, "std": False})
        assert {"mean", "std"} <= set(imported.constant_names)
    net = _distinct(_Cnn)
    _train_both(imported, net, (BATCH, 3, 8, 8), "numpy")
    want = [b.detach().numpy() for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)
            for b in (m.running_mean, m.running_var)]
    for got, w in zip(_graph_stats(imported), want, strict=True):
        np.testing.assert_allclose(got, w, rtol=1e-9, atol=1e-12)
    np.testing.assert_array_equal(net.mean.numpy(), _Cnn().mean.double().numpy())  # buffers: not trained


def test_a_class_token_folded_by_dynamo_is_a_constant_and_training_says_so(tmp_path) -> None:
    """dynamo's optimize=True folds the expanded class token into an initializer ``expand`` [batch, 1, width]: the
    parameter is gone from the file, so no choice gives PyTorch's answer; it stays a constant and training=True
    warns. With optimize=False the file keeps the parameter, which trains as in PyTorch; TorchScript keeps it
    too."""
    pytest.importorskip("onnxscript")
    folded = str(tmp_path / "folded.onnx")
    _export(_distinct(_Tokens), (2, 3, 4), folded, "dynamo")
    with pytest.warns(UserWarning, match=r"constants, not trained: 'expand' \[2, 1, 8\].*optimize=False"):
        imported = gc.onnx.import_model(folded, training=True)
    assert "expand" in imported.constant_names and "cls" not in imported.trainable_names
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an explicit choice: no warning
        assert "expand" in gc.onnx.import_model(folded, training=True, trainable={"expand": True}).trainable_names
        for exporter in EXPORTERS:
            kept = str(tmp_path / f"kept-{exporter}.onnx")
            _export(_distinct(_Tokens), (2, 3, 4), kept, exporter, keep=True)
            imported = gc.onnx.import_model(kept, training=True)
            assert "cls" in imported.trainable_names
            _train_both(imported, _distinct(_Tokens), (2, 3, 4), "numpy", steps=2)
