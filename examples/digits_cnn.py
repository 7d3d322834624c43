"""A small CNN on the 8x8 digits, trained with the LLVM backend — graphc's main demo (``make run``).

It trains with progress bars, reports test accuracy, checks three compiled training steps against the NumPy
interpreter from the same state on the same batch (``gc.testing.assert_step_agrees``: the loss and every updated
parameter and optimizer state after each step), and writes the learning curves (with matplotlib) and the forward
and backward graph of the training step to a folder.
"""

import argparse
import os

import graphc as gc
from graphc import nn


def build(backend=None, seed=0):
    model = nn.Sequential([
        nn.Conv2D(16, 3, padding="same", activation="relu", input_shape=(1, 8, 8)),
        nn.MaxPool2D(2),
        nn.Conv2D(32, 3, padding="same", activation="relu"),
        nn.MaxPool2D(2),
        nn.Flatten(),
        nn.Dense(64, activation="relu"),
        nn.Dropout(0.25),
        nn.Dense(10, activation="softmax"),
    ])
    model.build(seed=seed)
    model.compile(loss="sparse_categorical_crossentropy", optimizer=gc.optim.Adam(0.003), metrics=["accuracy"],
                  backend=backend)
    return model


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backend", default=None, help="llvm (default) or numpy")
    parser.add_argument("--epochs", type=int, default=25)
    parser.add_argument("--out", default="out", help="folder for the graph renderings")
    args = parser.parse_args(argv)
    data = gc.data.digits(image=True)
    model = build(args.backend)
    model.summary()
    history = model.fit(data.x_train, data.y_train, epochs=args.epochs, batch_size=32, verbose=1,
                        validation_data=(data.x_test, data.y_test))  # (validation runs do not change the weights)
    loss, accuracy = model.evaluate(data.x_test, data.y_test)
    print(f"test loss {loss:.4f}, test accuracy {accuracy:.4f}")
    # llvm vs the interpreter: 3 steps from the trained state (raises, naming the tensor, if they disagree)
    check = gc.testing.assert_step_agrees(model, {"x": data.x_train[:32], "y": data.y_train[:32]}, steps=3)
    print(f"{check.steps} training steps, compiled vs interpreter: |loss difference| "
          f"{check.output_differences['loss']:.3g}, max |parameter/optimizer-state difference| "
          f"{check.max_state_difference:.3g}")
    os.makedirs(args.out, exist_ok=True)
    try:
        print(f"learning curves: {history.plot(os.path.join(args.out, 'digits_cnn_history.png'))}")
    except gc.nn.plots.PlotError as err:  # matplotlib is missing: say how to get it
        print(f"(no learning curves: {str(err).splitlines()[0]})")
    layers = model.render(os.path.join(args.out, "digits_cnn_layers.svg"))
    print(f"the model, one box per layer: {layers}")
    step = model.render(os.path.join(args.out, "digits_cnn_train_step.svg"), detail="graph", batch_size=32)
    print(f"forward and backward graph of the training step: {step}")


if __name__ == "__main__":
    main()
