"""A small CNN on the 8x8 digits, trained with the LLVM backend — graphc's main demo (``make run``).

It trains with progress bars, reports test accuracy, checks one compiled training step against the NumPy
interpreter on the same batch (loss and every updated parameter and optimizer state), and writes the forward
and backward graph of the training step to a folder.
"""

import argparse
import os

import numpy as np

import graphc as gc
from graphc import nn


def build(backend=None, seed=0):
    model = nn.Sequential([
        nn.Conv2D(16, 3, padding="same", activation="relu", input_shape=(1, 8, 8)),
        nn.MaxPool2D(2),
        nn.Conv2D(32, 3, padding="same", activation="relu"),
        nn.MaxPool2D(2),
        nn.Flatten(),
        nn.Dense(64, activation="relu"),
        nn.Dropout(0.25),
        nn.Dense(10, activation="softmax"),
    ])
    model.build(seed=seed)
    model.compile(loss="sparse_categorical_crossentropy", optimizer=gc.optim.Adam(0.003), metrics=["accuracy"],
                  backend=backend)
    return model


def compare_one_step(model, x, y, reference_backend="numpy"):
    """Run one training step from the same state with the model's backend and the interpreter."""
    twin = build(reference_backend)
    saved = {name: value.copy() for name, value in model.graph.state.items()}
    twin.set_state(saved)
    ours, theirs = model.train_on_batch(x, y), twin.train_on_batch(x, y)
    worst = max(float(np.max(np.abs(model.graph.state[n] - twin.graph.state[n]), initial=0.0))
                for n in twin.graph.state if n in model.graph.state)
    for name, value in saved.items():  # leave the trained model as it was
        model.graph.state[name][...] = value
    return abs(ours["loss"] - theirs["loss"]), worst


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backend", default=None, help="llvm (default) or numpy")
    parser.add_argument("--epochs", type=int, default=25)
    parser.add_argument("--out", default="out", help="folder for the graph renderings")
    args = parser.parse_args(argv)
    data = gc.data.digits(image=True)
    model = build(args.backend)
    model.summary()
    model.fit(data.x_train, data.y_train, epochs=args.epochs, batch_size=32, verbose=1)
    loss, accuracy = model.evaluate(data.x_test, data.y_test)
    print(f"test loss {loss:.4f}, test accuracy {accuracy:.4f}")
    loss_diff, state_diff = compare_one_step(model, data.x_train[:32], data.y_train[:32])
    print(f"one training step, compiled vs interpreter: |loss difference| {loss_diff:.3g}, "
          f"max |parameter/optimizer-state difference| {state_diff:.3g}")
    os.makedirs(args.out, exist_ok=True)
    path = model.render(os.path.join(args.out, "digits_cnn_train_step.svg"), batch_size=32)
    print(f"forward and backward graph of the training step: {path}")


if __name__ == "__main__":
    main()
