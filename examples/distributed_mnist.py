"""Data-parallel MNIST (784-512-256-10 MLP) over MPI: every rank trains on its shard, gradients averaged in the step.

    graphc launch -n 2 examples/distributed_mnist.py            # or: mpiexec -n 2 python examples/distributed_mnist.py
    graphc launch -n 2 examples/distributed_mnist.py --digits   # the 8x8 digits (no download)
    python examples/distributed_mnist.py --digits --epochs 2    # one process works too (rank 0 of 1)

Horovod's recipe: each rank takes ``--batch`` examples per step (p·batch per step in all) and the learning rate is
scaled by p; rank 0's weights and optimizer state are broadcast first; progress and the checkpoint come from rank 0.
MNIST is downloaded once (``gc.data.mnist``); when that fails (no network) the example falls back to the digits.
"""

from __future__ import annotations

import argparse

import graphc as gc
from graphc import nn


def load(digits: bool):
    if not digits:
        try:
            return gc.data.mnist(), 784
        except Exception as err:  # offline: the download cannot happen
            if gc.distributed.is_root():
                print(f"MNIST unavailable ({str(err).splitlines()[0][:80]}); using the 8x8 digits")
    return gc.data.digits(), 64


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--digits", action="store_true", help="train on the 8x8 digits instead of MNIST")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch", type=int, default=64, help="examples per rank and step")
    parser.add_argument("--lr", type=float, default=1e-3, help="learning rate of one process (scaled by the ranks)")
    parser.add_argument("--checkpoint", default="distributed_mnist.npz")
    args = parser.parse_args()

    gc.distributed.init()  # one process without mpiexec
    ranks = gc.distributed.size()
    data, features = load(args.digits)
    model = nn.Sequential([nn.Dense(512, activation="relu", input_shape=(features,)),
                           nn.Dense(256, activation="relu"), nn.Dense(10, activation="softmax")])
    model.compile(loss="sparse_categorical_crossentropy", optimizer=gc.optim.Adam(args.lr * ranks),
                  metrics=["accuracy"])
    if gc.distributed.is_root():
        print(f"{ranks} rank(s), {gc.distributed.local_size()} on this machine, {args.batch} examples per rank and "
              f"step, learning rate {args.lr * ranks:g}")
    model.fit(data.x_train, data.y_train, epochs=args.epochs, batch_size=args.batch, validation_split=0.1,
              callbacks=[nn.ModelCheckpoint(args.checkpoint, save_best_only=True)], distributed=True, verbose=2)
    loss, accuracy = model.evaluate(data.x_test, data.y_test)  # every rank holds the same weights
    if gc.distributed.is_root():
        print(f"test_loss = {loss:.4f}")
        print(f"test_accuracy = {accuracy:.4f}")


if __name__ == "__main__":
    main()
