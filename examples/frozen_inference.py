"""Inference with frozen weights: a small MobileNet-style network (conv + batch norm + ReLU6, a depthwise conv, a
pointwise conv, global pooling and a classifier) compiled live and with ``freeze=True``.

The frozen program copies the params as constants, folds every batch norm into the conv before it and evaluates
constant subgraphs once; both programs must agree to float32 rounding. The profile shows each kernel (the
depthwise conv runs on its own direct kernel, the 1x1 conv as a GEMM on x, the classifier as a matrix-vector
product).

    python examples/frozen_inference.py
    python examples/frozen_inference.py --batch 8 --size 56
"""

import argparse

import numpy as np

import graphc as gc
from graphc.bench.context import median_ms


def network(batch, size, seed=0):
    rng = np.random.default_rng(seed)
    g = gc.Graph("mobile_block")
    x = g.input("x", (batch, 3, size, size))

    def param(name, shape, scale=0.3):
        return g.param(name, (rng.standard_normal(shape) * scale).astype(np.float32))

    def batch_norm(h, name, channels):
        stats = {"gamma": rng.random(channels) + 0.5, "beta": rng.standard_normal(channels) * 0.1,
                 "mean": rng.standard_normal(channels) * 0.1, "var": rng.random(channels) + 0.5}
        p = [g.param(f"{name}_{k}", v.astype(np.float32), trainable=k in ("gamma", "beta")) for k, v in stats.items()]
        return gc.batch_norm(h, *p, training=False)

    h = gc.clip(batch_norm(gc.conv2d(x, param("stem", (32, 3, 3, 3)), stride=2, padding=1), "bn0", 32), 0.0, 6.0)
    h = gc.clip(batch_norm(gc.conv2d(h, param("dw", (32, 1, 3, 3)), padding=1, groups=32), "bn1", 32), 0.0, 6.0)
    h = batch_norm(gc.conv2d(h, param("pw", (64, 32, 1, 1), 0.2)), "bn2", 64)
    pooled = gc.reshape(gc.global_avg_pool2d(h), (batch, 64))
    return x, pooled @ param("fc", (64, 10), 0.1) + param("fc_b", (10,))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--size", type=int, default=112)
    parser.add_argument("--threads", type=int, default=1, help="threads of the native programs (default 1)")
    args = parser.parse_args()
    x, logits = network(args.batch, args.size)
    feeds = {"x": np.random.default_rng(1).standard_normal(x.shape).astype(np.float32)}
    live = gc.compile(logits, threads=args.threads)
    frozen = gc.compile(logits, freeze=True, threads=args.threads)
    print("\n".join(frozen.freeze_report))
    want, got = live(**feeds), frozen(**feeds)
    print(f"folded = {sum('folded batch_norm' in line for line in frozen.freeze_report)}")
    print(f"max_difference = {float(np.abs(got - want).max()):.3g}")
    print(f"relative_difference = {float(np.abs(got - want).max() / np.abs(want).max()):.3g}")
    live_ms, frozen_ms = median_ms(lambda: live(**feeds)), median_ms(lambda: frozen(**feeds))
    print(f"live: {live_ms:.3f} ms, frozen: {frozen_ms:.3f} ms (median of 20 calls)")
    print(frozen.profile(feeds, repeat=5).format())


if __name__ == "__main__":
    main()
