"""Per-layer convolution algorithms measured on this machine (``gc.compile(..., tune=True)``, runtime.conv_tune):
every candidate computes the same convolution, the tuner records its medians and winner per geometry, the
winners reach the generated code and the cache key, and the table is reused, rebuilt when damaged and private to
the process with the cache off."""

from __future__ import annotations

import json
import os
import time

import numpy as np
import pytest

import graphc as gc
import runtime.conv_tune as conv_tune
from codegen.conv_choice import candidates, conv_geometry, rule_of_thumb, tunable, tuning_key
from codegen.module import plan_key
from runtime.native import NativeProgram


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("GRAPHC_CACHE", "1")
    monkeypatch.delenv("GRAPHC_TUNE", raising=False)
    return tmp_path


def _net(seed: int = 0):
    """3×3 conv + relu, a strided 3×3, a 1×1 and a depthwise 3×3 (with bias): four tunable geometries."""
    rng = np.random.default_rng(seed)
    g = gc.Graph("tune_net")
    x = g.input("x", (1, 8, 12, 12))

    def param(name, shape):
        return g.param(name, (rng.standard_normal(shape) * 0.2).astype(np.float32))

    h = gc.relu(gc.conv2d(x, param("w1", (16, 8, 3, 3)), padding=1))
    h = gc.conv2d(h, param("w2", (16, 16, 3, 3)), stride=2, padding=1)
    h = gc.conv2d(h, param("w3", (24, 16, 1, 1)))
    h = gc.conv2d(h, param("w4", (24, 1, 3, 3)), param("b4", (24,)), padding=1, groups=24)
    feeds = {"x": rng.standard_normal((1, 8, 12, 12)).astype(np.float32)}
    return g, h, feeds


def _tunable_nodes(program) -> list:
    return [n for k in program.plan.kernels for n in k.nodes if tunable(n)]


def test_every_candidate_computes_the_convolution(cache_dir):
    _, y, feeds = _net()
    expected = gc.compile(y, backend="numpy")(**feeds)
    plain = gc.compile(y, threads=1)
    convs = _tunable_nodes(plain)
    assert len(convs) == 4
    seen = set()
    for node in convs:
        key = tuning_key(node, 1)
        for algorithm in candidates(conv_geometry(node)):
            program = NativeProgram(y, threads=1, algorithms={key: algorithm})
            assert program.plan.algorithms == {key: algorithm}
            np.testing.assert_allclose(program(**feeds), expected, rtol=2e-5, atol=2e-5)
            seen.add(algorithm)
    assert seen == {"pointwise", "implicit", "indirect", "im2col", "direct"}


def test_forced_choice_reaches_the_code_and_the_cache_key(cache_dir):
    _, y, _ = _net()
    plain = gc.compile(y, threads=1)
    first = _tunable_nodes(plain)[0]
    assert rule_of_thumb(conv_geometry(first), "auto") == "implicit"
    key = tuning_key(first, 1)
    direct = NativeProgram(y, threads=1, algorithms={key: "direct"})
    implicit_ir = plain.llvm_ir()
    direct_ir = direct.llvm_ir()
    kernel = plain.plan.kernels[[i for i, k in enumerate(plain.plan.kernels) if first in k.nodes][0]].name
    assert ".fwdi." in implicit_ir and f"{kernel}.fwdi." in implicit_ir
    assert f"{kernel}.fwdi." not in direct_ir
    assert plan_key(direct.plan, "tune_net")[0] != plan_key(plain.plan, "tune_net")[0]


def test_tune_measures_once_and_reuses_the_table(cache_dir, monkeypatch):
    _, y, feeds = _net()
    expected = gc.compile(y, backend="numpy")(**feeds)
    program = gc.compile(y, threads=1, tune=True)
    keys = {tuning_key(n, 1) for n in _tunable_nodes(program)}
    assert set(program.plan.algorithms) == keys
    np.testing.assert_allclose(program(**feeds), expected, rtol=2e-5, atol=2e-5)
    (path,) = [os.path.join(d, f) for d, _, files in os.walk(cache_dir / "conv-tuning") for f in files]
    table = json.load(open(path))
    assert set(table) == keys
    for key, entry in table.items():
        assert entry["algorithm"] == program.plan.algorithms[key]
        node = [n for n in _tunable_nodes(program) if tuning_key(n, 1) == key][0]
        assert set(entry["ms"]) <= set(candidates(conv_geometry(node)))
        assert entry["algorithm"] in entry["ms"] and all(t > 0 for t in entry["ms"].values())

    def no_measuring(*_args):
        raise AssertionError("measured again")

    monkeypatch.setattr(conv_tune, "measure", no_measuring)
    again = gc.compile(y, threads=1, tune=True)
    assert again.plan.algorithms == program.plan.algorithms
    assert not gc.compile(y, threads=1).plan.algorithms  # untuned programs keep the rule of thumb


def test_damaged_table_is_measured_again(cache_dir):
    _, y, _ = _net()
    folder = cache_dir / "conv-tuning"
    gc.compile(y, threads=1, tune=True)
    (path,) = list(folder.iterdir())
    path.write_text("{not json")
    program = gc.compile(y, threads=1, tune=True)
    assert len(program.plan.algorithms) == 4
    assert set(json.loads(path.read_text())) == set(program.plan.algorithms)


def test_cache_off_keeps_the_table_in_memory(tmp_path, monkeypatch):
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("GRAPHC_CACHE", "0")
    monkeypatch.setattr(conv_tune, "_memory", {})
    _, y, _ = _net()
    program = gc.compile(y, threads=1, tune=True)
    assert set(conv_tune.table_entries()) == set(program.plan.algorithms)
    assert not (tmp_path / "conv-tuning").exists()


def test_forced_algorithms_are_not_tuned(cache_dir):
    g = gc.Graph("forced")
    x = g.input("x", (1, 4, 8, 8))
    w = g.param("w", np.ones((4, 4, 3, 3), np.float32))
    program = gc.compile(gc.conv2d(x, w, padding=1, algorithm="direct"), threads=1, tune=True)
    assert program.plan.algorithms == {}


def test_tune_option_and_variable_are_checked(cache_dir, monkeypatch):
    _, y, _ = _net()
    with pytest.raises(gc.GraphcError, match="tune must be True or False"):
        gc.compile(y, tune="yes")
    monkeypatch.setenv("GRAPHC_TUNE", "maybe")
    with pytest.raises(gc.GraphcError, match="GRAPHC_TUNE must be 0 or 1"):
        gc.compile(y)
    monkeypatch.setenv("GRAPHC_TUNE", "1")
    assert len(gc.compile(y, threads=1).plan.algorithms) == 4
    assert gc.compile(y, threads=1, tune=False).plan.algorithms == {}
    with pytest.raises(gc.GraphcError, match="unknown options"):
        gc.compile(y, backend="numpy", tune=True)


class _Sleeper:
    """A stand-in program whose call takes ``seconds``."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def __call__(self, **_feeds) -> None:
        end = time.perf_counter() + self.seconds
        while time.perf_counter() < end:
            pass


@pytest.mark.parametrize("im2col_ms, winner", [(1.96, "implicit"), (1.0, "im2col")])
def test_the_rule_of_thumb_keeps_its_layer_unless_clearly_beaten(cache_dir, im2col_ms, winner):
    _, y, _ = _net()
    node = _tunable_nodes(gc.compile(y, threads=1))[0]  # implicit by the rule of thumb
    assert candidates(conv_geometry(node)) == ["implicit", "indirect", "im2col", "direct"]
    times = {"implicit": 2.0, "indirect": 2.5, "im2col": im2col_ms, "direct": 8.0}  # direct: > 3x the best, once

    def compiler(_outputs, _threads, algorithms):
        (algorithm,) = algorithms.values()
        return _Sleeper(times[algorithm] / 1e3)

    entry = conv_tune.measure(node, 1, compiler)
    assert entry["algorithm"] == winner
    assert entry["ms"]["implicit"] == pytest.approx(2.0, rel=0.2)
    assert entry["ms"]["im2col"] == pytest.approx(im2col_ms, rel=0.2)
    assert entry["ms"]["indirect"] == pytest.approx(2.5, rel=0.2)
    assert entry["ms"]["direct"] == pytest.approx(8.0, rel=0.2)


def test_a_layer_no_candidate_compiles_keeps_the_rule_of_thumb(cache_dir):
    from codegen.lowering import LoweringError

    _, y, _ = _net()
    node = _tunable_nodes(gc.compile(y, threads=1))[0]

    def compiler(_outputs, _threads, _algorithms):
        raise LoweringError("over the scratch budget")

    assert conv_tune.measure(node, 1, compiler) == {"algorithm": "implicit", "ms": {}}
