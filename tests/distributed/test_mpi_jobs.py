"""Multi-process runs under ``mpiexec -n 2`` (each a few seconds): training steps, ``fit``, a failing rank."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import numpy as np
import pytest

from tests.distributed.mpi_helpers import MPIEXEC, ROOT, check, environment, mpirun, python, requires_mpi

pytestmark = requires_mpi


def test_steps_keep_ranks_identical_and_equal_to_one_process_on_the_whole_batch(tmp_path):
    """4 steps of SGD-momentum and Adam on both backends: rank 0 and 1 start from different weights and garbage
    optimizer state, broadcast_state makes them rank 0's, and after the steps both hold bitwise the same state,
    equal to float32 rounding to one process stepping on the concatenated batch (the mean loss over 2·8 examples,
    whose gradient is the ranks' averaged gradients)."""
    check(mpirun("steps.py", str(tmp_path)))
    check(python("steps.py", str(tmp_path), "--single"))
    for backend in ("numpy", "llvm"):
        for optimizer in ("sgd", "adam"):
            ranks = [np.load(tmp_path / f"{backend}_{optimizer}_{r}.npz") for r in (0, 1)]
            single = np.load(tmp_path / f"{backend}_{optimizer}_single.npz")
            assert sorted(ranks[0].files) == sorted(single.files)
            for name in single.files:
                np.testing.assert_array_equal(ranks[0][name], ranks[1][name], err_msg=f"{backend} {optimizer} {name}")
                np.testing.assert_allclose(ranks[0][name], single[name], rtol=1e-5, atol=1e-6,
                                           err_msg=f"{backend} {optimizer} {name}")


@pytest.mark.parametrize("backend", ["llvm"])  # the numpy backend's steps: the test above
def test_fit_on_two_ranks_matches_one_process_with_rank0_checkpoints(tmp_path, backend):
    """model.fit(distributed=True): 32 examples per rank and step, the learning rate doubled (Horovod's recipe),
    against one process with batches of 64: the same accuracy (±2%; the strided shards make each step's examples
    the single process's batch, so it is in fact equal), identical logs on both ranks, EarlyStopping on the
    rank-averaged training loss stopping both at the same epoch, and checkpoints written by rank 0 only."""
    check(mpirun("fit_digits.py", str(tmp_path), backend))
    check(python("fit_digits.py", str(tmp_path), backend, "--single"))
    rank0, rank1, single = (json.loads((tmp_path / f"result_{k}.json").read_text()) for k in ("0", "1", "single"))
    assert abs(rank0["accuracy"] - single["accuracy"]) <= 0.02, (rank0["accuracy"], single["accuracy"])
    assert rank0["accuracy"] > 0.9
    assert rank0["history"] == rank1["history"] and rank0["checksum"] == rank1["checksum"]
    assert rank0["stopped_epoch"] == rank1["stopped_epoch"] is not None  # EarlyStopping fired, alike on both
    epochs = len(rank0["history"]["loss"])
    assert len(rank0["saved"]) == epochs and rank1["saved"] == []
    assert sorted(p.name for p in tmp_path.glob("r*_ep*.npz")) == sorted(f"r0_ep{e}.npz" for e in range(1, epochs + 1))


def test_a_failing_rank_aborts_the_job_with_its_error():
    start = time.monotonic()
    result = mpirun("fail.py", timeout=60)
    assert time.monotonic() - start < 30
    assert result.returncode != 0
    assert "boom from rank 1" in result.stderr and "rank 1 of 2" in result.stderr
    assert "rank 0 finished" not in result.stdout


def test_graphc_launch_runs_a_script_on_two_ranks(tmp_path):
    script = tmp_path / "hello.py"
    script.write_text("import sys\nimport graphc.distributed as d\nd.init()\n"
                      "total = d.allreduce(d.rank() + 1.0, op='sum')\n"
                      "with open(sys.argv[1] + f'/rank{d.rank()}.txt', 'w') as f:\n"
                      "    f.write(f'{d.rank()} {d.size()} {total} {sys.argv[2:]}')\n")
    cmd = [str(ROOT / ".venv" / "bin" / "graphc") if (ROOT / ".venv" / "bin" / "graphc").exists() else "graphc"]
    launch = [*cmd, "launch", "-n", "2", "--mpiexec", str(MPIEXEC), str(script), "--", str(tmp_path), "--flag"]
    result = subprocess.run(launch, capture_output=True, text=True, timeout=60, cwd=ROOT, env=environment())
    check(result)
    for rank in (0, 1):
        assert (tmp_path / f"rank{rank}.txt").read_text() == f"{rank} 2 3.0 ['--flag']"


def test_the_example_runs_under_graphc_launch(tmp_path):
    cmd = [sys.executable, "-m", "graphc.cli", "launch", "-n", "2", "--mpiexec", str(MPIEXEC),
           str(ROOT / "examples" / "distributed_mnist.py"), "--digits", "--epochs", "2", "--checkpoint",
           str(tmp_path / "best.npz")]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=ROOT, env=environment())
    check(result)
    assert result.stdout.count("test_accuracy = ") == 1 and "2 rank(s)" in result.stdout  # printed by rank 0 only
    accuracy = float(result.stdout.split("test_accuracy = ")[1].split()[0])
    assert accuracy > 0.85 and (tmp_path / "best.npz").exists()
