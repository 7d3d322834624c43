"""Fine-tune an imported ONNX ResNet-18: replace its classifier and train it on the 8×8 digits with ``gc.optim``.

    python examples/finetune_onnx.py [MODEL.onnx] [--steps N] [--batch B]

Without a file, torchvision's ResNet-18 (random weights: no download here) is exported with PyTorch (needs
``torch``/``torchvision``; ``pip install 'graphc[oracle]'``); any ONNX ResNet whose last node is the classifier's
Gemm works, as long as its batch BatchNormalizations were not folded into the convs (export in eval mode with
``training=torch.onnx.TrainingMode.PRESERVE`` (TorchScript) or ``optimize=False`` (dynamo)).

How: ``import_model(path, training=True)`` gives the network with PyTorch's ``model.train()`` batch norms (batch
statistics; the running statistics are state the training step updates in place, never descended on), and
``eval_outputs`` the same network with ``model.eval()`` batch norms sharing every param. ``imported.tensor(name)``
is the node of any ONNX value: here the 512 features the old classifier read. A new dense head (512 → 10) on
them, softmax cross-entropy, ``gc.optim.SGD(momentum=0.9).minimize(loss)``: one compiled program runs forward,
backward, the update of every weight and the running statistics.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import numpy as np

import graphc as gc

SIZE = 32  # the digits upsampled 4× to 32×32, three channels


def export_resnet18(path: str, batch: int) -> None:
    """torchvision's ResNet-18 (random weights, 3×32×32 input, fixed batch) to ``path``, batch norms kept."""
    try:
        import torch

        from graphc.bench.zoo import export_quietly, import_torchvision
    except ImportError:
        sys.exit("this example exports ResNet-18 with PyTorch: pip install 'graphc[oracle]' (or pass an .onnx file)")
    tv, why = import_torchvision(torch)
    if tv is None:
        sys.exit(f"this example exports ResNet-18 with torchvision: {why}")
    torch.manual_seed(0)
    net = tv.models.resnet18(weights=None).eval()
    with torch.no_grad():  # distinct values per layer, as pre-trained weights have (see import_model's warning)
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.8, 1.2)
                m.bias.uniform_(-0.1, 0.1)
    export_quietly(torch, net, torch.zeros(batch, 3, SIZE, SIZE), path, "torchscript", keep_batch_norms=True)


def digits_as_images() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The digits as (N, 3, 32, 32) float32 images, standardized, with integer labels; train and test splits."""
    data = gc.data.digits(image=True)

    def images(x: np.ndarray) -> np.ndarray:
        big = np.kron(x, np.ones((1, 1, SIZE // 8, SIZE // 8)))
        return np.repeat((big - 0.3) / 0.4, 3, axis=1).astype("float32")

    return images(data.x_train), data.y_train.astype("int64"), images(data.x_test), data.y_test.astype("int64")


def build(path: str, batch: int, lr: float) -> tuple[gc.Program, gc.Program]:
    """The training step (loss; every weight, optimizer slot and running statistic updated) and the evaluation
    program (logits with running statistics), for a new 10-class head on the file's features."""
    import onnx

    head_input = onnx.load(path, load_external_data=False).graph.node[-1].input[0]
    imported = gc.onnx.import_model(path, training=True, input_shapes={"x": (batch, 3, SIZE, SIZE)})
    graph = imported.graph
    features = imported.tensor(head_input)
    width = features.shape[1]
    rng = np.random.default_rng(0)
    w = graph.param("head/w", rng.standard_normal((width, 10)) * np.sqrt(1.0 / width))
    b = graph.param("head/b", np.zeros(10))
    labels = graph.input("labels", (batch,), "int64")
    loss = gc.softmax_cross_entropy(gc.matmul(features, w) + b, labels)
    updates = gc.optim.SGD(lr=lr, momentum=0.9).minimize(loss)
    step = gc.compile({"loss": loss}, updates=updates)
    logits = gc.matmul(imported.tensor(head_input, eval=True), w) + b
    return step, gc.compile({"logits": logits})


def accuracy(evaluate: gc.Program, x: np.ndarray, y: np.ndarray, batch: int) -> float:
    """Test accuracy over the whole batches of ``x`` (the program's batch is fixed)."""
    whole = len(x) // batch * batch
    hits = sum(int((evaluate(x=x[i:i + batch])["logits"].argmax(1) == y[i:i + batch]).sum())
               for i in range(0, whole, batch))
    return hits / whole


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", nargs="?", help="an ONNX ResNet (default: export torchvision's ResNet-18)")
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=0.05)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = args.model or os.path.join(tmp, "resnet18.onnx")
        if args.model is None:
            export_resnet18(path, args.batch)
        x_train, y_train, x_test, y_test = digits_as_images()
        started = time.perf_counter()
        step, evaluate = build(path, args.batch, args.lr)
        print(f"imported and compiled in {time.perf_counter() - started:.1f} s")
        print(f"accuracy before = {accuracy(evaluate, x_test, y_test, args.batch):.3f}")
        rng = np.random.default_rng(1)
        order = rng.permutation(len(x_train))
        started = time.perf_counter()
        for i in range(args.steps):
            start = i * args.batch % (len(order) - args.batch + 1)
            idx = order[start:start + args.batch]
            loss = float(step(x=x_train[idx], labels=y_train[idx])["loss"])
            if i % 25 == 0 or i == args.steps - 1:
                print(f"step {i:4d}  loss {loss:.4f}")
        per_step = (time.perf_counter() - started) / max(args.steps, 1)
        print(f"{per_step * 1e3:.1f} ms per training step (batch {args.batch})")
        print(f"final_loss = {loss:.4f}")
        print(f"accuracy = {accuracy(evaluate, x_test, y_test, args.batch):.3f}")


if __name__ == "__main__":
    main()
