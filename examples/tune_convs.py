"""Per-layer convolution algorithms timed on this machine: ``gc.compile(..., tune=True)``.

A small CNN (a 3x3 stem, a strided 3x3, a 1x1 and a depthwise 3x3) is compiled twice: with the rule of thumb
that picks each conv's algorithm from its shape, and tuned — every applicable algorithm (pointwise, implicit,
indirect, im2col, direct) is compiled as a one-conv program with the layer's shapes, timed, and the fastest runs. The
measurements are kept in ``~/.cache/graphc/conv-tuning/`` (``GRAPHC_CACHE_DIR``), so a second run measures
nothing. The two programs compute the same network to float32 rounding.

    python examples/tune_convs.py
    python examples/tune_convs.py --size 56 --threads 2
"""

import argparse
import time

import numpy as np

import graphc as gc
import runtime.conv_tune as conv_tune
from graphc.bench.context import median_ms


def network(size, seed=0):
    rng = np.random.default_rng(seed)
    g = gc.Graph("tune_cnn")
    x = g.input("x", (1, 3, size, size))

    def param(name, shape, scale=0.2):
        return g.param(name, (rng.standard_normal(shape) * scale).astype(np.float32))

    h = gc.relu(gc.conv2d(x, param("stem", (32, 3, 3, 3)), padding=1))
    h = gc.relu(gc.conv2d(h, param("down", (64, 32, 3, 3), 0.05), stride=2, padding=1))
    h = gc.relu(gc.conv2d(h, param("expand", (128, 64, 1, 1), 0.1)))
    h = gc.conv2d(h, param("dw", (128, 1, 3, 3)), param("dw_b", (128,), 0.1), padding=1, groups=128)
    return x, gc.global_avg_pool2d(h)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    x, y = network(args.size)
    feeds = {"x": np.random.default_rng(1).standard_normal(x.shape).astype(np.float32)}
    rule = gc.compile(y, threads=args.threads)
    start = time.perf_counter()
    tuned = gc.compile(y, threads=args.threads, tune=True)
    print(f"tuned compile took {time.perf_counter() - start:.2f} s (measurements are cached: run again)")
    table = conv_tune.table_entries()
    print("layer (tuning key)                                                     chosen      medians (ms)")
    for key, algorithm in tuned.plan.algorithms.items():
        medians = ", ".join(f"{a} {t:.3f}" for a, t in sorted(table[key]["ms"].items(), key=lambda kv: kv[1]))
        print(f"{key[:70]:70s} {algorithm:11s} {medians}")
    print(f"layers = {len(tuned.plan.algorithms)}")
    a, b = rule(**feeds), tuned(**feeds)
    print(f"relative_difference = {float(np.abs(a - b).max() / np.abs(a).max()):.3g}")
    print(f"rule_of_thumb_ms = {median_ms(lambda: rule(**feeds)):.3f}")
    print(f"tuned_ms = {median_ms(lambda: tuned(**feeds)):.3f}")


if __name__ == "__main__":
    main()
