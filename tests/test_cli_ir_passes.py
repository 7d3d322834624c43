"""``graphc ir``, ``graphc passes`` (with ``--timings``) and ``gc.compile(..., dump_dir=...)``."""

from __future__ import annotations

import textwrap

import numpy as np
import pytest

import graphc as gc
import graphc.cli as cli
from passes.pipeline import CHECK, PIPELINE

MODEL = """
    import numpy as np
    import graphc as gc

    g = gc.Graph("model")
    x = g.input("x", (4, 8))
    w = g.param("w", np.ones((8, 3), np.float32))
    loss = gc.sigmoid(gc.matmul(x, w) * 2.0 + 1.0).sum()
    dw = gc.grad(loss, [w])[0]
    outputs = {"loss": loss, "dw": dw}
"""
STAGES = ["00_graph", "01_simplify", "02_decompose", "03_fuse", "04_schedule", "05_memplan"]
VERIFY = "06_verify_plan.txt"
LLVM_FILES = ["07_llvm.ll", "08_llvm_opt.ll", "09_asm.s", "10_kernels.txt"]


@pytest.fixture
def model(tmp_path):
    path = tmp_path / "model.py"
    path.write_text(textwrap.dedent(MODEL))
    return str(path)


def test_ir_prints_unoptimized_ir(model, capsys):
    assert cli.main(["ir", model]) == 0
    out = capsys.readouterr().out
    assert "define" in out and "graphc_main" in out and "target triple" in out


def test_ir_optimized_asm_and_kernels(model, capsys):
    assert cli.main(["ir", model, "--optimized"]) == 0
    optimized = capsys.readouterr().out
    assert "define" in optimized and "graphc_main" in optimized
    assert cli.main(["ir", model, "--asm"]) == 0
    asm = capsys.readouterr().out
    assert "graphc_main" in asm and "ret" in asm and "define" not in asm
    assert cli.main(["ir", f"{model}:outputs", "--kernels"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[:5] == ["kernel", "kind", "vector", "FLOPs", "bytes"]
    assert any("matmul" in line for line in table[2:]) and any("sigmoid" in line for line in table[2:])


def test_ir_flags_are_exclusive(model, capsys):
    assert cli.main(["ir", model, "--asm", "--kernels"]) == 2


def test_passes_writes_every_stage(model, tmp_path, capsys):
    folder = tmp_path / "dump"
    assert cli.main(["passes", model, "-o", str(folder)]) == 0
    out = capsys.readouterr().out
    for stage in ("graph:", "simplify:", "decompose:", "fuse:", "schedule:", "memplan:", "verify_plan: ok", "llvm:"):
        assert stage in out
    assert str(folder) in out
    names = {p.name for p in folder.iterdir()}
    assert {f"{s}.{ext}" for s in STAGES for ext in ("txt", "dot")} | {VERIFY, *LLVM_FILES} == names
    for s in STAGES:
        assert (folder / f"{s}.dot").read_text().startswith("digraph")
    memory = (folder / "05_memplan.txt").read_text()
    assert "naive" in memory and "planned arena" in memory and "offset" in memory
    assert "fusion report" in (folder / "03_fuse.txt").read_text()
    assert "define" in (folder / "07_llvm.ll").read_text()


@pytest.mark.parametrize("backend", ["numpy", "llvm"])
def test_compile_dump_dir(backend, tmp_path):
    g = gc.Graph("train")
    x, y = g.input("x", (5, 3)), g.input("y", (5,), "int64")
    w = g.param("w", np.full((3, 4), 0.1, np.float32))
    loss = gc.softmax_cross_entropy(gc.relu(gc.matmul(x, w)), y)
    updates = gc.optim.SGD(0.1).minimize(loss)
    folder = tmp_path / backend
    prog = gc.compile({"loss": loss}, backend=backend, updates=updates, dump_dir=str(folder))
    names = {p.name for p in folder.iterdir()}
    assert {f"{s}.txt" for s in STAGES} <= names and VERIFY in names
    assert (set(LLVM_FILES) <= names) == (backend == "llvm")
    assert "new w" in (folder / "00_graph.txt").read_text()  # the update value is part of the dumped graph
    result = prog(x=np.ones((5, 3), np.float32), y=np.arange(5) % 4)
    assert np.isfinite(result["loss"])


def test_passes_numpy_backend_default_folder(model, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert cli.main(["passes", model, "--backend", "numpy"]) == 0
    folder = tmp_path / "model_passes"
    assert (folder / "05_memplan.txt").exists() and not (folder / "07_llvm.ll").exists()
    assert "wrote" in capsys.readouterr().out


def _timings_table(out: str) -> list[tuple[str, float]]:
    """(name, ms) per line of the table ``graphc passes --timings`` prints after its usual output."""
    usual, sep, table = out.partition("pass timings:\n")
    assert sep and "wrote " in usual and "verify_plan: ok" in usual  # the usual output comes first
    rows = [line.split() for line in table.strip().splitlines()]
    assert all(len(row) == 3 and row[2] == "ms" for row in rows), table
    return [(name, float(ms)) for name, ms, _ in rows]


@pytest.mark.parametrize("backend", ["llvm", "numpy"])
def test_passes_timings(model, tmp_path, capsys, backend):
    assert cli.main(["passes", model, "-o", str(tmp_path / "dump"), "--backend", backend, "--timings"]) == 0
    rows = _timings_table(capsys.readouterr().out)
    names = [name for name, _ in rows]
    passes = [stage.name for stage in PIPELINE]
    assert {"simplify", "decompose", "fuse", "schedule", "memplan"} <= set(passes)
    assert names == [*passes, CHECK, "total"]  # every pass in pipeline order, the plan check, then the total
    ms = [value for _, value in rows]
    assert all(value >= 0 for value in ms)
    assert ms[-1] == pytest.approx(sum(ms[:-1]), abs=0.01 * len(rows))


def test_passes_without_timings_prints_no_table(model, tmp_path, capsys):
    assert cli.main(["passes", model, "-o", str(tmp_path / "dump")]) == 0
    assert "pass timings" not in capsys.readouterr().out
