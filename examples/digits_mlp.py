"""8x8 handwritten digits with a 64-64-10 MLP (scikit-learn's bundled digits, 1,797 images)."""

import argparse

import graphc as gc
from graphc import nn


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backend", default=None, help="llvm (default) or numpy")
    parser.add_argument("--epochs", type=int, default=20)
    args = parser.parse_args(argv)
    data = gc.data.digits()
    model = nn.Sequential([nn.Dense(64, activation="relu", input_shape=(64,)), nn.Dense(10, activation="softmax")])
    model.compile(loss="sparse_categorical_crossentropy", optimizer=gc.optim.Adam(0.005), metrics=["accuracy"],
                  backend=args.backend)
    model.fit(data.x_train, data.y_train, epochs=args.epochs, batch_size=32, validation_split=0.1, verbose=2)
    loss, accuracy = model.evaluate(data.x_test, data.y_test)
    print(f"test loss {loss:.4f}, test accuracy {accuracy:.4f}")


if __name__ == "__main__":
    main()
