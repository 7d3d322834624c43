"""gc.testing.assert_backends_agree: what it accepts and what it catches (the second backend is faked)."""

import numpy as np
import pytest

import graphc as gc
import graphc.testing as testing


def _graph():
    g = gc.Graph("agree")
    x = g.input("x", (3,))
    return {"y": x * 1000.0, "k": gc.cast(x, "int64")}, {"x": np.array([1.5, -2.0, 3.25])}


def _perturbed(monkeypatch, dy: float = 0.0, dk: int = 0):
    real = testing.compile_program

    def fake(outputs, backend=None, **kw):
        program = real(outputs, backend="numpy", **kw)
        if backend == "numpy":
            return program
        return lambda **feeds: {k: v + (dy if k == "y" else dk) for k, v in program(**feeds).items()}

    monkeypatch.setattr(testing, "compile_program", fake)


def test_agreeing_backends_pass():
    outputs, feeds = _graph()
    gc.testing.assert_backends_agree(outputs, feeds, backends=("numpy", "numpy-plan"))


def test_integer_outputs_must_be_equal(monkeypatch):
    outputs, feeds = _graph()
    _perturbed(monkeypatch, dk=1)
    with pytest.raises(AssertionError, match="output 'k'"):
        gc.testing.assert_backends_agree(outputs, feeds, rtol=1.0, atol=1.0)


def test_scale_atol_scales_by_magnitude(monkeypatch):
    outputs, feeds = _graph()
    _perturbed(monkeypatch, dy=0.02)  # |y| up to 3250: 0.02 is within 1e-5 * 3250 but not within 1e-5
    with pytest.raises(AssertionError, match="output 'y'"):
        gc.testing.assert_backends_agree(outputs, feeds, rtol=0.0, atol=1e-5)
    gc.testing.assert_backends_agree(outputs, feeds, rtol=0.0, atol=1e-5, scale_atol=True)
