"""Overfitting remedies compared, as in the course notes' table: Original, fewer layers, L2, Dropout,
BatchNorm, L2 + Dropout, L2 + BatchNorm, Dropout + BatchNorm — train / validation / test loss and test accuracy.

Default data: MNIST (the notes' setting, 784-512-256-10). ``--dataset digits`` runs the same comparison on
scikit-learn's 8x8 digits in seconds (64-512-256-10). Each model prints its progress while it trains, and the
training and validation loss curves of all of them are drawn in one picture (``gc.nn.plot_histories``; needs
matplotlib: ``pip install 'graphc[plot]'``).
"""

import argparse

import graphc as gc
from graphc import nn


def variants(inputs: int) -> dict:
    def dense(units, l2=False, **kw):
        return nn.Dense(units, kernel_regularizer=gc.l2(1e-5) if l2 else None, **kw)

    def block(units, l2=False, bn=False, dropout=0.0, first=False):
        kw = {"input_shape": (inputs,)} if first else {}
        if bn:
            layers = [dense(units, l2, **kw), nn.BatchNormalization(), nn.Activation("relu")]
        else:
            layers = [dense(units, l2, activation="relu", **kw)]
        return layers + ([nn.Dropout(dropout)] if dropout else [])

    def model(l2=False, bn=False, dropout=False, layers=2):
        hidden = block(512, l2, bn, 0.4 if dropout else 0.0, first=True)
        if layers == 2:
            hidden += block(256, l2, bn, 0.2 if dropout else 0.0)
        return hidden + [nn.Dense(10, activation="softmax")]

    return {
        "Original": model(), "Remove Layer": model(layers=1), "L2 Regularization": model(l2=True),
        "Drop Out": model(dropout=True), "Batch Normalization": model(bn=True),
        "L2 + Drop Out": model(l2=True, dropout=True), "L2 + Batch": model(l2=True, bn=True),
        "Drop Out + Batch": model(dropout=True, bn=True),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dataset", choices=["mnist", "digits"], default="mnist")
    parser.add_argument("--backend", default=None, help="llvm (default) or numpy")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--limit", type=int, default=None, help="train on the first N examples only")
    parser.add_argument("--plot", default="out/regularization.png", help="where to write the loss curves")
    args = parser.parse_args(argv)
    if args.dataset == "mnist":
        data = gc.data.mnist()
    else:
        data = gc.data.digits(val=0.15, test=0.2)
    x, y = data.x_train[:args.limit], data.y_train[:args.limit]
    rows, histories = [], {}
    models = variants(x.shape[1])
    for index, (name, layers) in enumerate(models.items(), 1):
        model = nn.Sequential(layers)
        model.compile(loss="sparse_categorical_crossentropy", optimizer="adam", metrics=["accuracy"],
                      backend=args.backend)
        history = model.fit(x, y, epochs=args.epochs, batch_size=128, validation_data=(data.x_val, data.y_val),
                            verbose=0, callbacks=[nn.RunProgress(index, len(models), name, args.epochs)])
        test_loss, test_accuracy = model.evaluate(data.x_test, data.y_test, batch_size=500)
        rows.append((name, history.history["loss"][-1], history.history["val_loss"][-1], test_loss, test_accuracy))
        histories[name] = history
    print(f"\n| {'':<20} | train_loss | validation_loss | eval_loss | eval_accuracy |")
    print(f"|{'-' * 22}|:----------:|:---------------:|:---------:|:-------------:|")
    for name, train, val, test, acc in rows:
        print(f"| {name:<20} | {train:10.4g} | {val:15.4f} | {test:9.5f} | {acc:13.5f} |")
    try:  # solid: training loss, dashed: validation loss (overfitting shows as the gap between them)
        print(f"\nloss curves: {nn.plot_histories(histories, args.plot, metric='loss')}")
    except nn.plots.PlotError as err:  # matplotlib is missing: say how to get it, the table is the result
        print(f"\n(no picture: {str(err).splitlines()[0]})")


if __name__ == "__main__":
    main()
