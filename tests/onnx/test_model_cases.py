"""ONNX's own model cases (``pytorch-converted``, ``pytorch-operator``, ``simple``) imported and run on graphc.

``onnx.backend.test.loader.load_model_tests(kind=...)`` lists the cases shipped in the onnx wheel: a folder with
``model.onnx`` and ``test_data_set_*/{input,output}_*.pb`` (all three kinds are local; ``real`` only names models
to download, ``light`` holds no case folders, so neither runs here). Every case runs on each backend against every
data set, compared as ONNX's runner does (dtype, shape, then the case's rtol/atol). A case is skipped only when the
importer raises ``UnsupportedOnnx`` and the case belongs to a documented out-of-scope category (``OUT_OF_SCOPE``);
any other refusal, and an out-of-scope case that imports after all, fails. The per-kind table of passes and skip
reasons prints at the end of the session (tests/onnx/conftest.py).
"""

from __future__ import annotations

import functools
import glob
import os
import re
from typing import Any

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")

import graphc as gc  # noqa: E402

KINDS = ("pytorch-converted", "pytorch-operator", "simple")
DEFAULT_BACKENDS = ("numpy", "llvm")
BACKENDS = tuple(b for b in os.environ.get("GRAPHC_ONNX_BACKENDS", ",".join(DEFAULT_BACKENDS)).split(",") if b)

# category → case names (regular expressions, whole name) that graphc refuses by design
OUT_OF_SCOPE: dict[str, str] = {
    "3-D convolution and pooling (graphc has 1-D and 2-D)": r"test_(Conv|MaxPool|AvgPool)3d.*",
    "sequences (SequenceEmpty, SequenceConstruct, SplitToSequence, ...)": r"test_sequence_model\d+",
    "strings (StringNormalizer on string tensors)": r"test_strnorm_.*",
}


def _category(name: str) -> str | None:
    """The out-of-scope category of case ``name``, or None."""
    return next((cat for cat, pattern in OUT_OF_SCOPE.items() if re.fullmatch(pattern, name)), None)


@functools.lru_cache(maxsize=1)
def model_cases() -> dict[str, Any]:
    """``"kind/name"`` → the loader's TestCase, for every case of KINDS whose model ships in the wheel."""
    import onnx.backend.test.loader as loader

    cases = {}
    for kind in KINDS:
        for case in loader.load_model_tests(kind=kind):
            if case.model_dir is not None and os.path.exists(os.path.join(case.model_dir, "model.onnx")):
                cases[f"{kind}/{case.name}"] = case
    return dict(sorted(cases.items()))


def _read_tensor(path: str) -> np.ndarray:
    tensor = onnx.TensorProto()
    with open(path, "rb") as f:
        tensor.ParseFromString(f.read())
    return onnx.numpy_helper.to_array(tensor)


def _data_sets(case: Any) -> list[tuple[list[np.ndarray], list[np.ndarray]]]:
    """Every ``test_data_set_*`` of the case: (inputs, expected outputs) in graph order."""
    sets = []
    for folder in sorted(glob.glob(os.path.join(case.model_dir, "test_data_set_*"))):
        pair = []
        for prefix in ("input", "output"):
            count = len(glob.glob(os.path.join(folder, f"{prefix}_*.pb")))
            pair.append([_read_tensor(os.path.join(folder, f"{prefix}_{i}.pb")) for i in range(count)])
        sets.append((pair[0], pair[1]))
    return sets


def _unsupported(err: gc.onnx.UnsupportedOnnx) -> str:
    return str(err).split("\n  at ")[0]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("key", list(model_cases()))
def test_onnx_model_case(key: str, backend: str, record_property) -> None:
    case = model_cases()[key]
    kind = key.split("/")[0]
    record_property("onnx_model_kind", kind)
    record_property("onnx_backend", backend)
    model = onnx.load(os.path.join(case.model_dir, "model.onnx"))
    init_names = {init.name for init in model.graph.initializer}
    input_names = [vi.name for vi in model.graph.input if vi.name not in init_names]
    sets = _data_sets(case)
    assert sets, f"{key}: no test_data_set_* folder"
    category = _category(case.name)
    for inputs, expected in sets:
        values = {k: np.asarray(v) for k, v in zip(input_names, inputs)}
        try:
            imported = gc.onnx.import_model(model, static_inputs=values,
                                            input_shapes={k: v.shape for k, v in values.items()})
        except gc.onnx.UnsupportedOnnx as err:
            if category is None:
                pytest.fail(f"{key} is refused but is not in a documented out-of-scope category: "
                            f"{_unsupported(err)}")
            pytest.skip(f"{category}: {_unsupported(err)}")
        assert category is None, f"{key} imports now: take it off OUT_OF_SCOPE[{category!r}]"
        got = imported.compile(backend=backend)(**{k: values[k] for k in imported.inputs})
        names = [vi.name for vi in model.graph.output]
        assert len(names) == len(expected)
        for out_name, want in zip(names, expected):
            actual = got[out_name]
            assert actual.dtype == want.dtype, f"{out_name}: dtype {actual.dtype}, expected {want.dtype}"
            assert actual.shape == want.shape, f"{out_name}: shape {actual.shape}, expected {want.shape}"
            np.testing.assert_allclose(actual, want, rtol=case.rtol, atol=case.atol, err_msg=f"output {out_name}")


def test_model_cases_are_found() -> None:
    """The wheel ships the three kinds' models (a loader change must not silently run nothing)."""
    kinds = {key.split("/")[0] for key in model_cases()}
    assert kinds == set(KINDS)
    assert len(model_cases()) >= 130
