"""SGD, Momentum, NAG, Adagrad, RMSProp and Adam on one model: loss curves as a PNG (matplotlib) or a table."""

import argparse

import graphc as gc
from graphc import nn

OPTIMIZERS = {
    "SGD": lambda: gc.optim.SGD(0.05),
    "Momentum": lambda: gc.optim.SGD(0.05, momentum=0.9),
    "NAG": lambda: gc.optim.SGD(0.05, momentum=0.9, nesterov=True),
    "Adagrad": lambda: gc.optim.Adagrad(0.05),
    "RMSProp": lambda: gc.optim.RMSProp(0.001),
    "Adam": lambda: gc.optim.Adam(0.001),
}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backend", default=None, help="llvm (default) or numpy")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--plot", default="optimizers.png", help="where to write the loss curves")
    args = parser.parse_args(argv)
    data = gc.data.digits()
    curves = {}
    for name, make in OPTIMIZERS.items():
        model = nn.Sequential([nn.Dense(64, activation="relu", input_shape=(64,)), nn.Dense(10, activation="softmax")])
        model.compile(loss="sparse_categorical_crossentropy", optimizer=make(), backend=args.backend)
        curves[name] = model.fit(data.x_train, data.y_train, epochs=args.epochs, batch_size=32, verbose=0,
                                 seed=0).history["loss"]
    print("epoch " + "".join(f"{name:>10}" for name in curves))
    for epoch in range(args.epochs):
        print(f"{epoch + 1:5d} " + "".join(f"{curves[name][epoch]:10.4f}" for name in curves))
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("(install matplotlib for a plot of these curves)")
        return
    for name, losses in curves.items():
        plt.plot(range(1, args.epochs + 1), losses, label=name)
    plt.xlabel("epoch")
    plt.ylabel("training loss")
    plt.yscale("log")
    plt.legend()
    plt.savefig(args.plot, dpi=100)
    print(f"wrote {args.plot}")


if __name__ == "__main__":
    main()
