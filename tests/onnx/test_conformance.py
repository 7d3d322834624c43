"""ONNX backend node cases translated by ``gc.onnx.import_model`` and run on graphc's backends.

Every case of a supported op (and its ``*_expanded`` multi-node variants) either matches ONNX's expected outputs
within the case's own rtol/atol, or is skipped because the importer raised ``UnsupportedOnnx`` (a documented
unsupported dtype, attribute or output) or because the case draws a random dropout mask. The per-op table of
passes and skip reasons prints at the end of the session (tests/onnx/conftest.py).

Backends: ``GRAPHC_ONNX_BACKENDS`` (comma-separated) or ``DEFAULT_BACKENDS`` (the interpreter and LLVM). The cases
of an op with an import-time folder also run folded (``[fold]`` in the table): the inputs become initializers, so
the importer evaluates the node with the folder's NumPy code, checked against ONNX's expected outputs as well.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from onnx_node_cases import onnx_cases

onnx = pytest.importorskip("onnx")

import graphc as gc  # noqa: E402

DEFAULT_BACKENDS = ("numpy", "llvm")
BACKENDS = tuple(b for b in os.environ.get("GRAPHC_ONNX_BACKENDS", ",".join(DEFAULT_BACKENDS)).split(",") if b)
CASES = onnx_cases()


def _random_dropout(imported: gc.onnx.ImportedModel) -> bool:
    """True when an output depends on a training-mode dropout (a random mask ONNX drew with NumPy's RNG)."""
    nodes = gc.ir.topo_ancestors(list(imported.outputs.values()))
    return any(n.op == "dropout" and n.attrs.get("training") for n in nodes)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", list(CASES))
def test_onnx_node_case(name: str, backend: str, record_property) -> None:
    op, case = CASES[name]
    record_property("onnx_op", op)
    record_property("onnx_backend", backend)
    inputs = case.data_sets[0][0]
    model = case.model
    init_names = {init.name for init in model.graph.initializer}
    input_names = [vi.name for vi in model.graph.input if vi.name not in init_names]
    values = {k: np.asarray(v) for k, v in zip(input_names, inputs)}
    try:
        imported = gc.onnx.import_model(model, static_inputs=values)
    except gc.onnx.UnsupportedOnnx as err:
        pytest.skip(str(err))
    if _random_dropout(imported):
        pytest.skip("Dropout training_mode=1 with ratio > 0 draws a random mask (the expected output used the "
                    "NumPy RNG of the ONNX reference; graphc dropout has its own generator)")
    program = imported.compile(backend=backend)
    _compare(model, case, program(**{k: values[k] for k in imported.inputs}))


FOLDED = [name for name, (op, _) in CASES.items() if op in gc.onnx.FOLDERS]


@pytest.mark.parametrize("name", FOLDED)
def test_onnx_node_case_folded(name: str, record_property) -> None:
    """The case with its inputs as initializers (constants): the node runs through the op's folder."""
    op, case = CASES[name]
    record_property("onnx_op", op)
    record_property("onnx_backend", "fold")
    inputs = case.data_sets[0][0]
    model = onnx.ModelProto()
    model.CopyFrom(case.model)
    init_names = {init.name for init in model.graph.initializer}
    runtime = [vi for vi in model.graph.input if vi.name not in init_names]
    for vi, value in zip(runtime, inputs):
        model.graph.initializer.append(onnx.numpy_helper.from_array(np.asarray(value), vi.name))
    try:
        imported = gc.onnx.import_model(model, initializers="consts")
    except gc.onnx.UnsupportedOnnx as err:
        pytest.skip(str(err))
    assert all(node.op == "const" for node in imported.outputs.values()), "the node was not folded"
    _compare(model, case, imported.compile(backend="numpy")())


def _compare(model, case, got: dict) -> None:
    """Every output of ``model`` matches the case's expected output (dtype, shape, values within its tolerance)."""
    expected = case.data_sets[0][1]
    names = [vi.name for vi in model.graph.output]
    assert len(names) == len(expected)
    for out_name, want in zip(names, expected):
        want = np.asarray(want)
        actual = got[out_name]
        assert actual.dtype == want.dtype, f"{out_name}: dtype {actual.dtype}, expected {want.dtype}"
        assert actual.shape == want.shape, f"{out_name}: shape {actual.shape}, expected {want.shape}"
        np.testing.assert_allclose(actual, want, rtol=case.rtol, atol=case.atol, err_msg=f"output {out_name}")
