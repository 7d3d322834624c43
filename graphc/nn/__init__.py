"""Keras-like layers and models compiled into graphc training programs.

    model = gc.nn.Sequential([gc.nn.Dense(16, activation="relu", input_shape=(4,)), gc.nn.Dense(3, "softmax")])
    model.compile(loss="sparse_categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
    history = model.fit(x, y, epochs=50, batch_size=16)
"""

from graphc.nn.callbacks import Callback, EarlyStopping, History, ModelCheckpoint
from graphc.nn.layers import (
    Activation,
    AveragePooling2D,
    AvgPool2D,
    BatchNormalization,
    Conv2D,
    Dense,
    Dropout,
    Flatten,
    Layer,
    LeakyReLU,
    MaxPool2D,
    MaxPooling2D,
    ReLU,
    Sigmoid,
    Softmax,
    Tanh,
)
from graphc.nn.losses import accuracy, confusion_matrix
from graphc.nn.model import Sequential, TrainingError, load_model

__all__ = [
    "Activation", "AveragePooling2D", "AvgPool2D", "BatchNormalization", "Callback", "Conv2D", "Dense", "Dropout",
    "EarlyStopping", "Flatten", "History", "Layer", "LeakyReLU", "MaxPool2D", "MaxPooling2D", "ModelCheckpoint",
    "ReLU", "Sequential", "Sigmoid", "Softmax", "Tanh", "TrainingError", "accuracy", "confusion_matrix",
    "load_model",
]
