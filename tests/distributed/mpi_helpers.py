"""Running a script on several MPI ranks from a test: ``mpirun(script, *args, ranks=2)``.

The tests skip only when mpi4py or an mpiexec is missing (``pip install 'graphc[distributed]'``; ``make test``
installs it). Each rank runs on one thread (2 ranks share this machine's cores) with passive OpenMP waits.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = Path(__file__).resolve().parent / "scripts"


def find_mpiexec() -> str | None:
    beside = Path(sys.executable).parent / "mpiexec"
    return str(beside) if beside.is_file() else shutil.which("mpiexec")


MPIEXEC = find_mpiexec()
HAVE_MPI = MPIEXEC is not None and importlib.util.find_spec("mpi4py") is not None
requires_mpi = pytest.mark.skipif(not HAVE_MPI, reason="mpi4py or mpiexec missing: pip install 'graphc[distributed]'")


def environment(**extra: str) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "GRAPHC_NUM_THREADS": "1", "OMP_WAIT_POLICY": "passive"}
    env.update(extra)
    return env


def mpirun(script: str, *args: str, ranks: int = 2, timeout: float = 120) -> subprocess.CompletedProcess:
    """``mpiexec -n ranks python scripts/script args`` (stdout and stderr captured)."""
    assert MPIEXEC is not None
    cmd = [MPIEXEC, "-n", str(ranks), sys.executable, str(SCRIPTS / script), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=environment())


def python(script: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """The same script as one process, without MPI."""
    cmd = [sys.executable, str(SCRIPTS / script), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=environment())


def check(result: subprocess.CompletedProcess) -> None:
    assert result.returncode == 0, f"exit {result.returncode}\nstdout:\n{result.stdout[-3000:]}\n" \
                                   f"stderr:\n{result.stderr[-3000:]}"
