"""Iris flowers: a 4-16-8-3 softmax classifier trained with Adam on standardized features."""

import argparse

import graphc as gc
from graphc import nn


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backend", default=None, help="llvm (default) or numpy")
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--seed", type=int, default=1, help="seed of the stratified 80/20 split")
    args = parser.parse_args(argv)
    data = gc.data.iris(seed=args.seed)
    scale = gc.data.Standardizer().fit(data.x_train)
    model = nn.Sequential([nn.Dense(16, activation="relu", input_shape=(4,)), nn.Dense(8, activation="relu"),
                           nn.Dense(3, activation="softmax")])
    model.compile(loss="sparse_categorical_crossentropy", optimizer=gc.optim.Adam(0.01), metrics=["accuracy"],
                  backend=args.backend)
    model.summary()
    model.fit(scale.transform(data.x_train), data.y_train, epochs=args.epochs, batch_size=16, verbose=2)
    loss, accuracy = model.evaluate(scale.transform(data.x_test), data.y_test)
    print(f"test loss {loss:.4f}, test accuracy {accuracy:.4f}")
    print("confusion matrix (rows: true class):")
    print(nn.confusion_matrix(data.y_test, model.predict(scale.transform(data.x_test)), 3))


if __name__ == "__main__":
    main()
