"""The training examples run as scripts (small sizes) and print what they promise."""

import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(script, *args, cwd):
    env = dict(os.environ, PYTHONPATH=ROOT)
    result = subprocess.run([sys.executable, os.path.join(ROOT, "examples", script), *args], cwd=cwd, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def number_after(label, text):
    match = re.search(label + r"\s*([0-9.]+(?:e[+-]?[0-9]+)?)", text)
    assert match, f"{label!r} not in output:\n{text[-2000:]}"
    return float(match.group(1))


def test_xor(tmp_path):
    out = run("xor.py", cwd=tmp_path)
    assert number_after("accuracy", out) == 1.0
    assert "xor(1, 1) = 0.0" in out


def test_iris(tmp_path):
    out = run("iris.py", cwd=tmp_path)
    assert number_after("test accuracy", out) >= 0.9
    assert "confusion matrix" in out


def test_digits_mlp(tmp_path):
    assert number_after("test accuracy", run("digits_mlp.py", cwd=tmp_path)) >= 0.95


def test_digits_cnn_demo_parts(tmp_path):
    out = run("digits_cnn.py", "--epochs", "2", "--out", "graphs", cwd=tmp_path)
    assert number_after("test accuracy", out) > 0.5
    assert number_after(r"\|loss difference\|", out) < 1e-4
    assert number_after(r"optimizer-state difference\|", out) < 1e-4
    assert (tmp_path / "graphs" / "digits_cnn_train_step.svg").exists() or \
        (tmp_path / "graphs" / "digits_cnn_train_step.dot").exists()


def test_regularization_table(tmp_path):
    out = run("regularization.py", "--dataset", "digits", "--epochs", "1", cwd=tmp_path)
    for row in ("Original", "Remove Layer", "L2 Regularization", "Drop Out", "Batch Normalization",
                "L2 + Drop Out", "L2 + Batch", "Drop Out + Batch"):
        assert re.search(rf"\| {re.escape(row)}\s+\|\s+[0-9.e+-]+\s+\|", out), row


def test_optimizers_table(tmp_path):
    out = run("optimizers.py", "--epochs", "2", "--plot", "curves.png", cwd=tmp_path)
    header = next(line for line in out.splitlines() if line.startswith("epoch"))
    assert header.split()[1:] == ["SGD", "Momentum", "NAG", "Adagrad", "RMSProp", "Adam"]


def test_mnist_mlp_smoke(tmp_path):
    out = run("mnist_mlp.py", "--epochs", "1", "--limit", "2048", cwd=tmp_path)
    assert number_after("test accuracy", out) > 0.8
    assert "seconds per epoch" in out
