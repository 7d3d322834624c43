"""``load_model`` validates the whole file before building anything: one clear GraphcError naming the file and the
offending entry for every kind of wrong, truncated or hostile file (never a silent broadcast or cast, never a raw
JSONDecodeError / KeyError / BadZipFile / ValueError)."""

import json
import os
import zipfile

import numpy as np
import pytest

import graphc as gc
from graphc import nn

DESCRIPTION = "__graphc_model__"


@pytest.fixture(scope="module")
def valid(tmp_path_factory):
    """(entries, description) of a trained model file with dropout, batch norm and Adam state."""
    model = nn.Sequential([nn.Dense(8, activation="relu", input_shape=(4,), kernel_regularizer=gc.l2(0.01)),
                           nn.BatchNormalization(), nn.Dropout(0.2), nn.Dense(3, activation="softmax")])
    model.compile(loss="sparse_categorical_crossentropy", optimizer=gc.optim.Adam(0.01), metrics=["accuracy"],
                  backend="numpy")
    rng = np.random.default_rng(0)
    model.fit(rng.standard_normal((16, 4)).astype(np.float32), rng.integers(0, 3, 16), epochs=1, batch_size=8,
              verbose=0)
    path = tmp_path_factory.mktemp("valid") / "m.npz"
    model.save(str(path))
    with np.load(path, allow_pickle=False) as archive:
        entries = {key: archive[key] for key in archive.files}
    return entries, json.loads(entries.pop(DESCRIPTION).tobytes())


def _write(path, entries, description, **extra):
    arrays = {**entries, **extra}
    if description is not None:
        text = description if isinstance(description, (str, bytes)) else json.dumps(description)
        arrays[DESCRIPTION] = np.frombuffer(text.encode() if isinstance(text, str) else text, np.uint8)
    np.savez(path, **arrays)
    return str(path)


def _rejected(path, *fragments):
    """load_model(path) raises one GraphcError naming the file and every fragment."""
    with pytest.raises(gc.GraphcError) as info:
        nn.load_model(path)
    message = str(info.value)
    assert os.path.basename(path) in message, message
    for fragment in fragments:
        assert fragment in message, message
    return message


def test_the_valid_file_loads(tmp_path, valid):
    entries, description = valid
    model = nn.load_model(_write(tmp_path / "ok.npz", entries, description))
    assert model.optimizer.iterations == 2


@pytest.mark.parametrize("value", [np.float32(0.5), np.zeros((1, 8), np.float32), np.zeros((8, 4), np.float32),
                                   np.zeros((4, 8, 1), np.float32)], ids=["scalar", "(1,8)", "transposed", "3-d"])
def test_a_wrong_shape_is_never_broadcast(tmp_path, valid, value):
    entries, description = valid
    path = _write(tmp_path / "m.npz", {**entries, "state/dense/kernel": value}, description)
    _rejected(path, "'state/dense/kernel'", "shape (4, 8)", str(value.shape))


@pytest.mark.parametrize("dtype", ["int64", "complex64", "float64", "<U5", ">f4", "bool"])
def test_a_wrong_dtype_is_never_cast(tmp_path, valid, dtype):
    entries, description = valid
    value = np.zeros((4, 8), dtype)
    path = _write(tmp_path / "m.npz", {**entries, "state/dense/kernel": value}, description)
    _rejected(path, "'state/dense/kernel'", "float32")


def test_a_pickled_object_array_is_refused_without_unpickling(tmp_path, valid):
    entries, description = valid
    value = np.array([{"payload": 1}] * 32, dtype=object).reshape(4, 8)
    path = _write(tmp_path / "m.npz", {**entries, "state/dense/kernel": value}, description)
    _rejected(path, "'state/dense/kernel'", "object")


def test_a_missing_or_extra_entry_is_named(tmp_path, valid):
    entries, description = valid
    missing = {k: v for k, v in entries.items() if k != "state/batchnormalization/moving_mean"}
    _rejected(_write(tmp_path / "a.npz", missing, description), "'state/batchnormalization/moving_mean'", "missing")
    extra = _write(tmp_path / "b.npz", entries, description, **{"state/dense/extra": np.zeros(3, np.float32)})
    _rejected(extra, "'state/dense/extra'", "unexpected")
    partial = {k: v for k, v in entries.items() if k != "optimizer/dense/kernel/v"}
    _rejected(_write(tmp_path / "c.npz", partial, description), "'optimizer/dense/kernel/v'", "missing")


def test_non_finite_values_are_refused(tmp_path, valid):
    entries, description = valid
    bad = entries["optimizer/dense_1/bias/m"].copy()
    bad[1] = np.inf
    path = _write(tmp_path / "m.npz", {**entries, "optimizer/dense_1/bias/m": bad}, description)
    _rejected(path, "'optimizer/dense_1/bias/m'", "inf")


@pytest.mark.parametrize("content", [b"", b"\x00" * 10, os.urandom(4096), b"PK\x03\x04" + os.urandom(200)],
                         ids=["empty", "zeros", "random", "zip-magic"])
def test_garbage_is_not_a_model_file(tmp_path, content):
    path = tmp_path / "m.npz"
    path.write_bytes(content)
    _rejected(str(path))


@pytest.mark.parametrize("fraction", [0.1, 0.5, 0.9, 0.999])
def test_a_truncated_file_is_refused(tmp_path, valid, fraction):
    entries, description = valid
    full = _write(tmp_path / "full.npz", entries, description)
    data = open(full, "rb").read()
    (tmp_path / "cut.npz").write_bytes(data[: int(len(data) * fraction)])
    _rejected(str(tmp_path / "cut.npz"))


def test_a_corrupted_entry_is_refused(tmp_path, valid):
    entries, description = valid
    path = _write(tmp_path / "m.npz", entries, description)
    data = bytearray(open(path, "rb").read())
    offset = data.find(np.asarray(entries["state/dense/kernel"]).tobytes()[:16])
    data[offset + 3] ^= 0xFF  # flip bits inside the kernel's data: the CRC no longer matches
    (tmp_path / "bad.npz").write_bytes(bytes(data))
    _rejected(str(tmp_path / "bad.npz"), "'state/dense/kernel.npy'")


def test_a_missing_file_and_a_file_without_description(tmp_path, valid):
    _rejected(str(tmp_path / "absent.npz"), "no such model file")
    entries, _ = valid
    _rejected(_write(tmp_path / "m.npz", entries, None), DESCRIPTION)


@pytest.mark.parametrize("text", ["{not json", "[1, 2]", '"model"', "null", '{"format": NaN}', "\udcff",
                                  "[" * 100000], ids=["syntax", "list", "string", "null", "nan", "utf8", "deep"])
def test_malformed_json_is_refused(tmp_path, valid, text):
    entries, _ = valid
    raw = text.encode("utf-8", "surrogateescape")
    _rejected(_write(tmp_path / "m.npz", entries, raw))


def _mutations():
    def layer(index, **changes):
        return lambda d: d["layers"][index]["config"].update(changes)

    return {
        "format 1": (lambda d: d.update(format=1), "format 1"),
        "format string": (lambda d: d.update(format="2"), "format '2'"),
        "extra key": (lambda d: d.update(extra=1), "extra"),
        "missing compile": (lambda d: d.pop("compile"), "compile"),
        "name not a string": (lambda d: d.update(name=["m"]), "name"),
        "input_shape float": (lambda d: d.update(input_shape=[4.5]), "input_shape"),
        "input_shape string": (lambda d: d.update(input_shape="4"), "input_shape"),
        "layers not a list": (lambda d: d.update(layers={"a": 1}), "layers"),
        "unknown layer class": (lambda d: d["layers"][0].update({"class": "Lambda"}), "'Lambda'"),
        "layer class not a string": (lambda d: d["layers"][0].update({"class": ["Dense"]}), "layers[0]"),
        "units string": (layer(0, units="8"), "units"),
        "units bool": (layer(0, units=True), "units"),
        "units float": (layer(0, units=8.5), "units"),
        "unknown layer argument": (layer(0, dtype="float64"), "dtype"),
        "activation object": (layer(0, activation={"name": "relu"}), "activation"),
        "regularizer wrong": (layer(0, kernel_regularizer={"kind": "l3", "lam": 1}), "l3"),
        "regularizer lam string": (layer(0, kernel_regularizer={"kind": "l2", "lam": "0.1"}), "kernel_regularizer"),
        "dropout rate": (layer(2, rate=1.5), "rate"),
        "batchnorm epsilon": (layer(1, epsilon=-1.0), "epsilon"),
        "missing config key": (lambda d: d["layers"][3]["config"].pop("use_bias"), "use_bias"),
        "duplicate layer names": (layer(3, name="dense"), "'dense'"),
        "layers do not fit": (layer(0, units=7), "'state/dense/kernel'"),
        "unknown loss": (lambda d: d["compile"].update(loss="hinge"), "hinge"),
        "metrics string": (lambda d: d["compile"].update(metrics="accuracy"), "metrics"),
        "optimizer via getattr": (lambda d: d["compile"]["optimizer"].update({"class": "get"}), "'get'"),
        "optimizer base class": (lambda d: d["compile"]["optimizer"].update({"class": "Optimizer"}), "'Optimizer'"),
        "optimizer unknown arg": (lambda d: d["compile"]["optimizer"]["config"].update(amsgrad=True), "amsgrad"),
        "optimizer beta string": (lambda d: d["compile"]["optimizer"]["config"].update(beta1="0.9"), "beta1"),
        "optimizer bad schedule": (lambda d: d["compile"]["optimizer"]["config"].update(
            lr={"class": "eval", "config": {}}), "'eval'"),
    }


@pytest.mark.parametrize("name", list(_mutations()))
def test_a_description_of_the_wrong_structure_is_refused(tmp_path, valid, name):
    entries, description = valid
    mutate, fragment = _mutations()[name]
    broken = json.loads(json.dumps(description))
    mutate(broken)
    message = _rejected(_write(tmp_path / "m.npz", entries, broken), fragment)
    assert "Traceback" not in message


def test_the_error_is_a_model_file_error_and_nothing_raw(tmp_path, valid):
    entries, description = valid
    path = _write(tmp_path / "m.npz", {**entries, "state/dense/kernel": np.float32(0)}, description)
    with pytest.raises(nn.ModelFileError):
        nn.load_model(path)


def test_duplicate_and_compressed_members_are_refused(tmp_path, valid):
    entries, description = valid
    path = _write(tmp_path / "m.npz", entries, description)
    with zipfile.ZipFile(path, "a") as archive, pytest.warns(UserWarning, match="Duplicate name"):
        archive.writestr("state/dense/bias.npy", b"")
    _rejected(path, "'state/dense/bias.npy'", "twice")
    compressed = tmp_path / "c.npz"
    np.savez_compressed(compressed, **entries, **{DESCRIPTION: np.frombuffer(json.dumps(description).encode(),
                                                                             np.uint8)})
    _rejected(str(compressed), "compressed")


def test_a_dropout_counter_in_a_model_without_dropout_is_refused(tmp_path, valid):
    entries, description = valid
    description = json.loads(json.dumps(description))
    description["layers"][2]["config"]["rate"] = 0.0
    _rejected(_write(tmp_path / "m.npz", entries, description), "'state/__dropout_step'", "unexpected")


@pytest.mark.parametrize("key, value, fragment", [
    ("optimizer/lr", np.float64(0.0), "learning rate"), ("optimizer/step", np.float64(-1.0), "step count"),
    ("optimizer/step", np.float64(2.5), "step count"), ("state/__dropout_step", np.int64(-4), "step count"),
])
def test_counters_and_the_learning_rate_must_make_sense(tmp_path, valid, key, value, fragment):
    entries, description = valid
    _rejected(_write(tmp_path / "m.npz", {**entries, key: value}, description), f"'{key}'", fragment)
