"""``graphc launch -n 4 train.py [args]``: run a training script on N MPI ranks (a thin wrapper over ``mpiexec``).

It checks what a distributed run needs and says what is missing — mpi4py (``pip install 'graphc[distributed]'``),
an ``mpiexec`` (the one installed next to this Python first: the MPICH wheel's), the script — then runs
``mpiexec -n N [-f HOSTFILE] python train.py args...`` with this interpreter and returns mpiexec's exit status.
``--threads T`` sets ``GRAPHC_NUM_THREADS`` for every rank (default: ``graphc.distributed.init()`` gives each rank
its share of the cores). ``--dry-run`` prints the command instead. Running ``mpiexec -n 4 python train.py``
yourself is equivalent.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from graphc.ir import GraphcError

EXTRA = "pip install 'graphc[distributed]'"


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Create the ``launch`` subcommand."""
    parser = subparsers.add_parser(
        "launch", help="run a training script on N MPI ranks (mpiexec)",
        description="Run SCRIPT on N MPI ranks with this Python (a thin wrapper over mpiexec). The script calls "
                    "graphc.distributed.init() (or model.fit(..., distributed=True)).")
    parser.add_argument("-n", "--np", dest="ranks", type=int, required=True, help="number of ranks (processes)")
    parser.add_argument("--hostfile", help="MPI hostfile: one host per line (MPICH: 'host:slots'); "
                                           "default: every rank on this machine")
    parser.add_argument("--threads", type=int, help="GRAPHC_NUM_THREADS for every rank")
    parser.add_argument("--mpiexec", help="the mpiexec to use (default: the one next to this Python, then PATH)")
    parser.add_argument("--dry-run", action="store_true", help="print the command instead of running it")
    parser.add_argument("script", help="the Python script to run on every rank")
    parser.add_argument("args", nargs=argparse.REMAINDER, help="arguments passed to the script")
    parser.set_defaults(handler=handle)
    return parser


def find_mpiexec(explicit: str | None = None) -> str:
    """The mpiexec to run: ``explicit``, else the one in this Python's bin folder, else on PATH; a GraphcError
    saying how to get one."""
    if explicit:
        path = shutil.which(explicit)
        if path is None:
            raise GraphcError(f"launch: --mpiexec {explicit!r} is not an executable")
        return path
    beside = Path(sys.executable).parent / "mpiexec"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which("mpiexec") or shutil.which("mpirun")
    if found is None:
        raise GraphcError(f"launch: no mpiexec found next to {sys.executable} or on PATH; install MPI with {EXTRA} "
                          "(the MPICH wheel brings mpiexec), or give --mpiexec PATH")
    return found


def is_open_mpi(mpiexec: str) -> bool:
    """True for Open MPI's mpiexec (its options differ from MPICH's Hydra)."""
    try:
        out = subprocess.run([mpiexec, "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return False
    return "open mpi" in (out.stdout + out.stderr).lower() or "open-mpi" in (out.stdout + out.stderr).lower()


def command(args: argparse.Namespace) -> tuple[list[str], dict[str, str]]:
    """(the mpiexec command line, its environment) for ``args``, after checking the environment."""
    if args.ranks < 1:
        raise GraphcError(f"launch: -n must be at least 1, got {args.ranks}")
    if args.threads is not None and args.threads < 1:
        raise GraphcError(f"launch: --threads must be at least 1, got {args.threads}")
    if importlib.util.find_spec("mpi4py") is None:
        raise GraphcError(f"launch: mpi4py is not installed in {sys.executable}; install it with {EXTRA}")
    script = Path(args.script)
    if not script.is_file():
        raise GraphcError(f"launch: no such script: {args.script}")
    mpiexec = find_mpiexec(args.mpiexec)
    cmd = [mpiexec, "-n", str(args.ranks)]
    open_mpi = is_open_mpi(mpiexec)
    if args.hostfile:
        if not Path(args.hostfile).is_file():
            raise GraphcError(f"launch: no such hostfile: {args.hostfile}")
        cmd += ["--hostfile" if open_mpi else "-f", args.hostfile]
    if open_mpi and hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-run-as-root")
    env = dict(os.environ)
    if args.threads is not None:
        env["GRAPHC_NUM_THREADS"] = str(args.threads)
        if open_mpi:
            cmd += ["-x", "GRAPHC_NUM_THREADS"]
    args_after = list(args.args[1:]) if args.args[:1] == ["--"] else list(args.args)
    return cmd + [sys.executable, str(script), *args_after], env


def handle(args: argparse.Namespace) -> int:
    cmd, env = command(args)
    if args.dry_run:
        print(shlex.join(cmd))
        return 0
    try:
        return subprocess.run(cmd, env=env).returncode
    except KeyboardInterrupt:
        return 130
