"""``keras.layers``: graphc's layers under their Keras names."""

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
    Softmax,
)

__all__ = ["Activation", "AveragePooling2D", "AvgPool2D", "BatchNormalization", "Conv2D", "Dense", "Dropout",
           "Flatten", "GlobalAveragePooling2D", "GlobalAvgPool2D", "Input", "InputLayer", "Layer", "LeakyReLU",
           "MaxPool2D", "MaxPooling2D", "ReLU", "Softmax"]
