"""A program's module compiled as parts on parallel threads (codegen.split) links into the same program: every
function defined once, kernels with their chunk bodies, bitwise the same results, cached and reloaded as parts."""

from __future__ import annotations

import re

import numpy as np
import pytest

import codegen.cache as object_cache
import graphc as gc
from codegen.split import split_module
from codegen.target import PARTS_META, Jit, default_parts


def _cnn_step(threads: int):
    """A small CNN training step (conv, pool, dense, softmax cross-entropy, SGD): many kernels, chunk bodies."""
    g = gc.Graph("split_cnn")
    rng = np.random.default_rng(0)
    x, y = g.input("x", (4, 3, 8, 8)), g.input("y", (4,), "int64")
    w1 = g.param("w1", rng.standard_normal((8, 3, 3, 3)) * 0.3)
    w2 = g.param("w2", rng.standard_normal((8 * 4 * 4, 5)) * 0.1)
    h = gc.max_pool2d(gc.relu(gc.conv2d(x, w1, padding=1)), 2)
    loss = gc.softmax_cross_entropy(gc.matmul(gc.reshape(h, (4, -1)), w2), y)
    updates = gc.optim.SGD(lr=0.1, momentum=0.9).minimize(loss)
    feeds = {"x": rng.standard_normal((4, 3, 8, 8)).astype(np.float32), "y": rng.integers(0, 5, 4)}
    return g, gc.compile({"loss": loss}, updates=updates, threads=threads, cache=False), feeds


def _defined(text: str) -> list[str]:
    return re.findall(r'^define [^\n]*?@"?([\w.$]+)"?\(', text, re.M)


def test_every_function_is_defined_once_and_kernels_keep_their_bodies():
    _, prog, _ = _cnn_step(threads=2)
    text = prog.jit.llvm_ir
    parts = split_module(text, 3)
    assert len(parts) == 3
    names = [name for part in parts for name in _defined(part)]
    assert set(names) == set(_defined(text))
    inlined = set(re.findall(r'^define internal [^\n]*?@"?([\w.$]+)"?\([^\n]*\) alwaysinline', text, re.M))
    assert inlined  # the math library's helpers: a private copy in every part that calls them
    for name in set(names) - inlined:
        assert names.count(name) == 1, name
    for part in parts:
        kernels = {m for m in re.findall(r"^gk(\d+)_", "\n".join(_defined(part)), re.M)}
        for other in parts:
            if other is not part:
                assert not kernels & set(re.findall(r"^gk(\d+)_", "\n".join(_defined(other)), re.M))
        assert all(line.split("@")[1].split("(")[0].strip('"') in inlined
                   for line in part.splitlines() if line.startswith("define internal"))
    assert "graphc_main" in _defined(parts[0])


@pytest.mark.parametrize("threads", [1, 2])
def test_parts_compute_bitwise_what_one_module_computes(monkeypatch, threads):
    results = {}
    for parts in ("1", "3"):
        monkeypatch.setenv("GRAPHC_COMPILE_PARTS", parts)
        g, prog, feeds = _cnn_step(threads)
        assert prog.jit.parts == int(parts)
        losses = [float(prog(**feeds)["loss"]) for _ in range(3)]
        results[parts] = (losses, {k: v.copy() for k, v in g.state.items()})
    assert results["1"][0] == results["3"][0]
    for name, value in results["1"][1].items():
        assert np.array_equal(value, results["3"][1][name]), name


def test_parts_are_cached_and_a_damaged_entry_is_compiled_again(monkeypatch, tmp_path):
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path))
    _, prog, _ = _cnn_step(threads=1)
    text = prog.jit.llvm_ir
    first = Jit(text, name="split", parts=2)
    assert not first.cache_hit and first.parts == 2 and len(first.meta[PARTS_META]) == 2
    again = Jit(text, name="split")
    assert again.cache_hit and again.parts == 2
    assert again.address("graphc_main")
    entry = object_cache.load(first.cache_key)
    object_cache.store(first.cache_key, entry.object[:-1], entry.meta)  # lengths no longer add up
    repaired = Jit(text, name="split")
    assert not repaired.cache_hit and repaired.address("graphc_main")


def test_default_parts_follows_the_size_and_the_override(monkeypatch):
    monkeypatch.delenv("GRAPHC_COMPILE_PARTS", raising=False)
    assert default_parts(1000) == 1
    monkeypatch.setenv("GRAPHC_COMPILE_PARTS", "2")
    assert default_parts(1000) == 2
    monkeypatch.setenv("GRAPHC_COMPILE_PARTS", "zero")
    with pytest.raises(gc.GraphcError, match="GRAPHC_COMPILE_PARTS"):
        default_parts(1000)
