"""Logistic regression by gradient descent on the NumPy interpreter.

p = sigmoid(X @ w + b); loss = mean(-(t log p + (1 - t) log(1 - p))) (binary cross-entropy, built from core ops).
One compiled program computes the loss and applies w <- w - lr dw, b <- b - lr db in place (``updates``).

    python examples/logistic.py [STEPS]
"""

from __future__ import annotations

import sys

import numpy as np

import graphc as gc

N, D, LR = 64, 2, 0.5


def make_data(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two Gaussian blobs, labels 0/1 (separable by a line through the origin, roughly)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, size=(N, 1)).astype("float32")
    centers = np.where(labels == 1, 1.0, -1.0) * np.array([[1.0, 0.5]])
    x = (centers + 0.8 * rng.standard_normal((N, D))).astype("float32")
    return x, labels


X_DATA, T_DATA = make_data()
FEEDS = {"x": X_DATA, "t": T_DATA}


def build() -> tuple[dict[str, gc.Tensor], dict[gc.Tensor, gc.Tensor]]:
    """The outputs (loss, gradients) and the gradient-descent updates of one training step."""
    g = gc.Graph("logistic")
    x, t = g.input("x", (N, D)), g.input("t", (N, 1))
    w, b = g.param("w", np.zeros((D, 1))), g.param("b", np.zeros((1,)))
    p = gc.sigmoid(x @ w + b)
    loss = gc.mean(-(t * gc.log(p) + (1.0 - t) * gc.log(1.0 - p)))
    dw, db = gc.grad(loss, [w, b])
    return {"loss": loss, "dw": dw, "db": db}, {w: w - LR * dw, b: b - LR * db}


def outputs() -> dict[str, gc.Tensor]:
    """For the CLI: the loss and its gradients at the initial weights."""
    return build()[0]


def main(steps: int = 10) -> None:
    outs, updates = build()
    step = gc.compile({"loss": outs["loss"]}, backend="numpy", updates=updates)
    for i in range(steps):
        print(f"step {i}: loss = {float(step(**FEEDS)['loss']):.6f}")
    state = outs["loss"].graph.state
    p = 1.0 / (1.0 + np.exp(-(X_DATA @ state["w"] + state["b"])))
    print(f"accuracy = {float(np.mean((p > 0.5) == (T_DATA > 0.5))):.3f}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 10)
