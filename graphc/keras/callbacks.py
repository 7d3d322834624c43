"""``keras.callbacks``: the callbacks of ``graphc.nn`` under their Keras names."""

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

__all__ = ["CSVLogger", "Callback", "EarlyStopping", "History", "LambdaCallback", "LearningRateScheduler",
           "ModelCheckpoint", "ReduceLROnPlateau", "TerminateOnNaN"]
