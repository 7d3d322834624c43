"""Explain one node of an MLP training step across every compiler layer.

A 2-layer MLP (64 → 128 → 10, ReLU, softmax cross-entropy) trained with SGD + momentum: one compiled program runs
the forward pass, the backward pass and the update. ``step.explain(NODE)`` reports where NODE was created, what
simplify/fuse/memplan did to it, its buffer in the arena, the LLVM IR lines that compute it and its kernel's
assembly with the vector width used; for a gradient node, also the forward node and VJP that built it.

    python examples/explain.py [NODE]        # default: layer1/hidden (the ReLU, fused into the GEMM's epilogue)
    graphc explain examples/explain.py:step layer1/hidden
"""

from __future__ import annotations

import sys

import numpy as np

import graphc as gc

BATCH, FEATURES, HIDDEN, CLASSES = 32, 64, 128, 10
NODE = "layer1/hidden"


def build() -> tuple[dict[str, gc.Tensor], dict[gc.Tensor, gc.Tensor]]:
    """The loss and the SGD-with-momentum updates of one training step."""
    g = gc.Graph("mlp")
    x, y = g.input("x", (BATCH, FEATURES)), g.input("y", (BATCH,), "int64")
    w1 = g.param("w1", gc.init.he_normal((FEATURES, HIDDEN), 0))
    b1 = g.param("b1", gc.init.zeros((HIDDEN,)))
    w2 = g.param("w2", gc.init.glorot_uniform((HIDDEN, CLASSES), 1))
    b2 = g.param("b2", gc.init.zeros((CLASSES,)))
    with gc.name_scope("layer1"):
        h = gc.relu(x @ w1 + b1, name="hidden")
    with gc.name_scope("layer2"):
        logits = gc.add(h @ w2, b2, name="logits")
    loss = gc.softmax_cross_entropy(logits, y, name="loss")
    return {"loss": loss}, gc.optim.SGD(0.1, momentum=0.9).minimize(loss)


def step() -> gc.api.Program:
    """The compiled training step (for the CLI: ``graphc explain examples/explain.py:step NODE``)."""
    outputs, updates = build()
    return gc.compile(outputs, updates=updates, threads=1)


def main(node: str = NODE) -> None:
    program = step()
    rng = np.random.default_rng(0)
    feeds = {"x": rng.standard_normal((BATCH, FEATURES)).astype("float32"),
             "y": rng.integers(0, CLASSES, size=BATCH)}
    print(f"loss = {float(program(**feeds)['loss']):.6g}")
    print(program.explain(node))


if __name__ == "__main__":
    main(*sys.argv[1:2])
