"""``graphc explain FILE[:NAME] NODE``: a target's outputs or a compiled training step, every backend, errors."""

from __future__ import annotations

import textwrap

import pytest

import graphc.cli as cli

MODEL = """
    import numpy as np
    import graphc as gc

    g = gc.Graph("model")
    x, y = g.input("x", (4, 8)), g.input("y", (4,), "int64")
    w = g.param("w", np.ones((8, 3), np.float32))
    h = gc.relu(x @ w, name="h")
    loss = gc.softmax_cross_entropy(h * 1.0, y, name="loss")
    outputs = {"loss": loss}

    def step():
        return gc.compile(outputs, updates=gc.optim.SGD(0.1).minimize(loss), threads=1)
"""


@pytest.fixture
def model(tmp_path):
    path = tmp_path / "model.py"
    path.write_text(textwrap.dedent(MODEL))
    return str(path)


def test_explain_prints_every_section(model, capsys):
    assert cli.main(["explain", model, "h"]) == 0
    out = capsys.readouterr().out
    for title in ("tensor", "passes", "buffer", "LLVM", "assembly"):
        assert f"== {title} =" in out
    assert "h: relu float32[4, 3]" in out and "model.py:8" in out
    assert "!graphc.node" in out and "vector width:" in out


def test_explain_a_gradient_node_of_a_compiled_training_step(model, capsys):
    assert cli.main(["explain", f"{model}:step", "where_1"]) == 0
    out = capsys.readouterr().out
    assert "built by the VJP of relu (Relu.vjp) for forward node 'h'" in out
    assert "== gradient =" in out


def test_explain_a_simplified_node_on_numpy(model, capsys):
    assert cli.main(["explain", model, "mul_1", "--backend", "numpy"]) == 0
    out = capsys.readouterr().out
    assert "simplified by rule mul_one: mul(h, 1.0) → h" in out
    assert "there is no LLVM IR and no assembly" in out


def test_explain_errors(model, capsys):
    assert cli.main(["explain", model, "hh"]) == 2
    assert "error: explain: the program computes no node named 'hh'" in capsys.readouterr().err
    assert cli.main(["explain", model, "h", "--feed", "x=1"]) == 2
    assert "--feed is not used" in capsys.readouterr().err
    assert cli.main(["explain", model]) == 2  # NODE is required
