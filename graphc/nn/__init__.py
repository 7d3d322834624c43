"""Keras-like layers and models compiled into graphc training programs.

    model = gc.nn.Sequential([gc.nn.Dense(16, activation="relu", input_shape=(4,)), gc.nn.Dense(3, "softmax")])
    model.compile(loss="sparse_categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
    history = model.fit(x, y, epochs=50, batch_size=16)
    model.save("model.npz"); model = gc.nn.load_model("model.npz")

Reliability: ``fit`` is all-or-nothing per epoch. A step that makes the loss or any weight/optimizer value NaN or
±inf raises :class:`TrainingError` (epoch and step named); that error, Ctrl-C (``KeyboardInterrupt``) or any other
exception during an epoch's steps restores the complete state of the epoch's start and propagates, so the model
is exactly as after its last completed epoch. ``model.save`` writes atomically (concurrent writers and readers of
one path are safe; a killed writer leaves the previous file) and refuses a non-finite model; the file keeps
everything that changes the loss or a step (regularizers, dropout, batch norm, optimizer hyper-parameters, schedule
and state). ``load_model`` validates the whole file first and raises one :class:`ModelFileError` naming the file
and the offending entry. Each model keeps at most ``Sequential.MAX_PROGRAMS`` compiled programs (LRU).
"""

from graphc.nn import metrics
from graphc.nn.callbacks import (
    Callback,
    CSVLogger,
    EarlyStopping,
    History,
    LambdaCallback,
    LearningRateScheduler,
    ModelCheckpoint,
    ReduceLROnPlateau,
    TerminateOnNaN,
)
from graphc.nn.fileformat import ModelFileError
from graphc.nn.layers import (
    Activation,
    AveragePooling2D,
    AvgPool2D,
    BatchNormalization,
    Conv2D,
    Dense,
    Dropout,
    Flatten,
    GlobalAveragePooling2D,
    GlobalAvgPool2D,
    Input,
    InputLayer,
    Layer,
    LeakyReLU,
    MaxPool2D,
    MaxPooling2D,
    ReLU,
    Sigmoid,
    Softmax,
    Tanh,
)
from graphc.nn.layout import image_data_format, set_image_data_format
from graphc.nn.losses import accuracy, confusion_matrix
from graphc.nn.model import Sequential, TrainingError, load_model
from graphc.nn.plots import plot_histories
from graphc.nn.run_progress import RunProgress

__all__ = [
    "CSVLogger", "LambdaCallback", "LearningRateScheduler", "ReduceLROnPlateau", "TerminateOnNaN", "metrics",
    "Activation", "AveragePooling2D", "AvgPool2D", "BatchNormalization", "Callback", "Conv2D", "Dense", "Dropout",
    "EarlyStopping", "Flatten", "History", "Layer", "LeakyReLU", "MaxPool2D", "MaxPooling2D", "ModelCheckpoint",
    "ModelFileError", "ReLU", "Sequential", "Sigmoid", "Softmax", "Tanh", "TrainingError", "accuracy",
    "confusion_matrix", "load_model", "plot_histories", "RunProgress",
    "GlobalAveragePooling2D", "GlobalAvgPool2D", "Input", "InputLayer", "image_data_format", "set_image_data_format",
]
