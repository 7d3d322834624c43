"""Pictures of a model and of the compiler's decisions (``make docs``): the digits CNN as one box per layer, and for
the digits MLP's training step (64-64-10, Adam, batch 32) the memory plan as a timeline and the fused kernels.

    python examples/pictures.py docs/      # digits_cnn_layers.svg, mlp_memory.svg, mlp_kernels.svg
"""

import argparse
import os

from digits_cnn import build as build_cnn

import graphc as gc
from graphc import nn


def mlp_step(batch_size=32):
    """The training step of examples/digits_mlp.py's model."""
    model = nn.Sequential([nn.Dense(64, activation="relu", input_shape=(64,)), nn.Dense(10, activation="softmax")],
                          name="digits_mlp")
    model.compile(loss="sparse_categorical_crossentropy", optimizer=gc.optim.Adam(0.005), backend="numpy-plan")
    return model._program("train", batch_size)[0]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", nargs="?", default="docs")
    args = parser.parse_args(argv)
    os.makedirs(args.folder, exist_ok=True)
    print(build_cnn(backend="numpy").render(os.path.join(args.folder, "digits_cnn_layers.svg")))
    step = mlp_step()
    print(step.render_memory(os.path.join(args.folder, "mlp_memory.svg")))
    print(step.render_kernels(os.path.join(args.folder, "mlp_kernels.svg")))


if __name__ == "__main__":
    main()
