"""``keras.metrics``: the metric functions graphc computes (their names also work as strings in ``compile``)."""

from graphc.nn.metrics import (
    Metric,
    SparseTopKCategoricalAccuracy,
    TopKCategoricalAccuracy,
    binary_accuracy,
    categorical_accuracy,
    mae,
    mse,
    sparse_categorical_accuracy,
    sparse_top_k_categorical_accuracy,
    top_k_categorical_accuracy,
)

__all__ = ["Metric", "SparseTopKCategoricalAccuracy", "TopKCategoricalAccuracy", "binary_accuracy",
           "categorical_accuracy", "mae", "mse", "sparse_categorical_accuracy", "sparse_top_k_categorical_accuracy",
           "top_k_categorical_accuracy"]
