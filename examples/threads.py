"""One training step of a small CNN on 1 thread and on every core: the same loss and weights to the bit, the
speed-up, and where the time goes (the per-kernel profile of the multi-threaded program).

    python examples/threads.py             # all the cores this process may use
    python examples/threads.py --threads 2 --batch 32
"""

import argparse
import os

import numpy as np

import graphc as gc
from graphc.bench.context import median_ms


def train_step(threads, batch, seed=0):
    """A LeNet-like CNN (conv3x3 + ReLU + maxpool twice, dense 10) and its SGD step, compiled for ``threads``."""
    rng = np.random.default_rng(seed)
    g = gc.Graph("cnn")
    x, y = g.input("x", (batch, 1, 28, 28)), g.input("y", (batch,), "int64")

    def param(name, shape, fan_in):
        return g.param(name, (rng.standard_normal(shape) * np.sqrt(2 / fan_in)).astype(np.float32))  # He

    h = gc.max_pool2d(gc.relu(gc.conv2d(x, param("c1", (16, 1, 3, 3), 9), padding=1)), 2)
    h = gc.max_pool2d(gc.relu(gc.conv2d(h, param("c2", (32, 16, 3, 3), 144), padding=1)), 2)
    logits = gc.reshape(h, (batch, 32 * 7 * 7)) @ param("d", (32 * 7 * 7, 10), 32 * 7 * 7)
    loss = gc.softmax_cross_entropy(logits, y)
    step = gc.compile({"loss": loss}, updates=gc.optim.SGD(0.01).minimize(loss), threads=threads)
    feeds = {"x": rng.standard_normal((batch, 1, 28, 28)).astype(np.float32), "y": rng.integers(0, 10, batch)}
    return g, step, feeds


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--batch", type=int, default=64)
    args = parser.parse_args(argv)

    runs = {}
    for threads in sorted({1, args.threads}):
        g, step, feeds = train_step(threads, args.batch)
        losses = [float(step(**feeds)["loss"]) for _ in range(3)]
        runs[threads] = (g, step, feeds, losses)
        print(f"threads {step.threads}: losses {', '.join(f'{v:.6f}' for v in losses)}")
    (g1, step1, feeds1, losses1), (gn, stepn, feedsn, lossesn) = runs[1], runs[args.threads]
    same = losses1 == lossesn and all(np.array_equal(g1.state[k], gn.state[k]) for k in g1.state)
    print(f"bitwise identical = {int(same)}")
    one, many = median_ms(lambda: step1(**feeds1), repeat=15), median_ms(lambda: stepn(**feedsn), repeat=15)
    print(f"step_ms_1 = {one:.3f}")
    print(f"step_ms_{stepn.threads} = {many:.3f}")
    print(f"speedup = {one / many:.2f}")
    print()
    print(stepn.profile(feedsn, repeat=10).format(top=8))


if __name__ == "__main__":
    main()
