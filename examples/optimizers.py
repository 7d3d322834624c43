"""SGD, Momentum, NAG, Adagrad, RMSProp and Adam on one model: a table of the training loss per epoch and the
loss curves compared in one picture (``gc.nn.plot_histories``; needs matplotlib: ``pip install 'graphc[plot]'``).
"""

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
    parser.add_argument("--plot", default="out/optimizers.png", help="where to write the loss curves (png, svg, pdf)")
    args = parser.parse_args(argv)
    data = gc.data.digits()
    histories = {}
    for index, (name, make) in enumerate(OPTIMIZERS.items(), 1):
        model = nn.Sequential([nn.Dense(64, activation="relu", input_shape=(64,)), nn.Dense(10, activation="softmax")])
        model.compile(loss="sparse_categorical_crossentropy", optimizer=make(), backend=args.backend)
        histories[name] = model.fit(data.x_train, data.y_train, epochs=args.epochs, batch_size=32, verbose=0, seed=0,
                                    callbacks=[nn.RunProgress(index, len(OPTIMIZERS), name, args.epochs)])
    curves = {name: history.history["loss"] for name, history in histories.items()}
    print("epoch " + "".join(f"{name:>10}" for name in curves))
    for epoch in range(args.epochs):
        print(f"{epoch + 1:5d} " + "".join(f"{curves[name][epoch]:10.4f}" for name in curves))
    try:
        print(f"loss curves: {nn.plot_histories(histories, args.plot, metric='loss', logy=True)}")
    except nn.plots.PlotError as err:  # matplotlib is missing: say how to get it, the table is the result
        print(f"(no picture: {str(err).splitlines()[0]})")


if __name__ == "__main__":
    main()
