"""``examples/explain.py`` runs as a script and explains one node of the MLP training step."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "explain.py"


def run(cwd: Path, *args: str) -> str:
    proc = subprocess.run([sys.executable, str(EXAMPLE), *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, f"explain.py failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def test_explain_example_reports_the_hidden_layer(tmp_path):
    out = run(tmp_path)
    assert out.startswith("loss = ")
    assert "layer1/hidden: relu float32[32, 128]" in out and "explain.py:" in out
    assert "as part of the epilogue of matmul" in out and "why the kernel ends where it does" in out
    assert "arena offset" in out and "!graphc.node" in out and "vector width:" in out


def test_explain_example_takes_a_node_name(tmp_path):
    out = run(tmp_path, "layer2/logits")
    assert "layer2/logits: add float32[32, 10]" in out
