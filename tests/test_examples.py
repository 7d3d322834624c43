"""The examples run as scripts (``python examples/X.py``) and print the textbook numbers."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def run_example(name: str, cwd: Path, *args: str) -> str:
    proc = subprocess.run([sys.executable, str(EXAMPLES / name), *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, f"{name} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def printed(out: str) -> dict[str, float]:
    """``name = number`` lines of the output."""
    return {m.group(1): float(m.group(2)) for m in re.finditer(r"^(\w+) = (-?[\d.e+-]+)\s*$", out, re.M)}


def test_apple(tmp_path):
    out = run_example("apple.py", tmp_path)
    values = printed(out)
    assert values == pytest.approx({"price": 220.0, "d_apple": 2.2, "d_num": 110.0, "d_tax": 200.0}, rel=1e-6)
    written = tmp_path / ("apple.svg" if shutil.which("dot") else "apple.dot")
    assert written.exists() and f"graph written to {written.name}" in out
    textbook = tmp_path / ("apple_textbook.svg" if shutil.which("dot") else "apple_textbook.dot")
    assert textbook.exists() and f"textbook picture written to {textbook.name}" in out


def test_apple_renders_to_a_given_path(tmp_path):
    run_example("apple.py", tmp_path, "graph/apple.dot")
    dot = (tmp_path / "graph" / "apple.dot").read_text()
    assert "cluster_forward" in dot and "cluster_backward" in dot and re.search(r'label="?2\.2"?[ \]]', dot)
    textbook = (tmp_path / "graph" / "apple_textbook.dot").read_text()
    assert "cluster_backward" not in textbook and "rankdir=LR" in textbook
    for value, gradient in (("100", "2.2"), ("2", "110"), ("200", "1.1"), ("1.1", "200"), ("220", "1")):
        assert re.search(rf">{re.escape(value)}</font><br/><font [^>]*>← {re.escape(gradient)}<", textbook), value


def test_apple_textbook_only(tmp_path):
    out = run_example("apple.py", tmp_path, "--textbook", "docs/apple.gv")
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == ["apple.gv"]
    assert "textbook picture written to docs/apple.gv" in out and "graph written" not in out


def test_apple_orange(tmp_path):
    values = printed(run_example("apple_orange.py", tmp_path))
    expected = {"price": 715.0, "d_apple": 2.2, "d_apple_num": 110.0, "d_orange": 3.3, "d_orange_num": 165.0,
                "d_tax": 650.0}
    assert values == pytest.approx(expected, rel=1e-6)
    assert list(tmp_path.iterdir()) == []  # no picture unless asked for


def test_apple_orange_textbook(tmp_path):
    out = run_example("apple_orange.py", tmp_path, "fruit.dot")
    assert "graph written to fruit.dot" in out and "textbook picture written to fruit_textbook.dot" in out
    textbook = (tmp_path / "fruit_textbook.dot").read_text()
    for value, gradient in (("100", "2.2"), ("2", "110"), ("150", "3.3"), ("3", "165"), ("200", "1.1"),
                            ("450", "1.1"), ("650", "1.1"), ("1.1", "650"), ("715", "1")):
        assert re.search(rf">{re.escape(value)}</font><br/><font [^>]*>← {re.escape(gradient)}<", textbook), value
    assert "xlabel=all_price" in textbook


def test_chain_rule(tmp_path):
    out = run_example("chain_rule.py", tmp_path)
    values = printed(out)
    x, y = 1.5, 2.0  # the example's FEEDS
    assert values["z"] == pytest.approx((x + y) ** 2)
    assert values["dz_dx"] == pytest.approx(2 * (x + y))
    assert values["dz_dy"] == pytest.approx(2 * (x + y))


def test_chain_rule_textbook(tmp_path):
    out = run_example("chain_rule.py", tmp_path, "chain.dot")
    assert "textbook picture written to chain.dot" in out
    dot = (tmp_path / "chain.dot").read_text()
    for value, gradient in (("1.5", "7"), ("2", "7"), ("3.5", "7"), ("12.25", "1")):  # dz/dt = 2t = 7
        assert re.search(rf">{re.escape(value)}</font><br/><font [^>]*>← {re.escape(gradient)}<", dot), value
    assert ">**2<" in dot


def test_logistic_loss_decreases(tmp_path):
    out = run_example("logistic.py", tmp_path, "8")
    losses = [float(v) for v in re.findall(r"^step \d+: loss = ([\d.]+)$", out, re.M)]
    assert len(losses) == 8
    assert losses[0] == pytest.approx(0.693147, abs=1e-5)  # log 2: zero weights predict 1/2
    assert all(b < a for a, b in zip(losses, losses[1:])), losses
    assert losses[-1] < 0.8 * losses[0]
    accuracy = float(re.search(r"^accuracy = ([\d.]+)$", out, re.M).group(1))
    assert accuracy > 0.7


def test_threads_example_is_bitwise_identical_across_thread_counts(tmp_path):
    out = run_example("threads.py", tmp_path, "--threads", "3", "--batch", "5")
    values = printed(out)
    assert "bitwise identical = 1" in out
    assert values["step_ms_1"] > 0 and values["speedup"] > 0
    assert "profile: " in out and "conv2d_backward_weight" in out


def test_frozen_inference_example_agrees_and_folds(tmp_path):
    out = run_example("frozen_inference.py", tmp_path, "--size", "32")
    values = printed(out)
    assert values["folded"] == 3
    assert values["relative_difference"] < 1e-5
    assert "k0_fused_conv2d_clip" in out and "froze 17 params" in out


def test_tune_convs_example_measures_each_layer_once(tmp_path, monkeypatch):
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("GRAPHC_CACHE", "1")
    out = run_example("tune_convs.py", tmp_path, "--size", "16")
    values = printed(out)
    assert values["layers"] == 4 and values["relative_difference"] < 1e-5
    assert values["rule_of_thumb_ms"] > 0 and values["tuned_ms"] > 0
    chosen = re.findall(r"^float32 .* (pointwise|implicit|indirect|im2col|direct)\s+\w+ [\d.]+", out, re.M)
    assert len(chosen) == 4
    assert len(list((tmp_path / "cache" / "conv-tuning").iterdir())) == 1
