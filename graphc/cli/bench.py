"""``graphc bench [WORKLOAD ...]``: benchmark graphc against NumPy, PyTorch and JAX (see :mod:`graphc.bench`)."""

from __future__ import annotations

import argparse
from typing import Any

from graphc.bench.context import Context
from graphc.bench.runner import format_table, needs_reexec, reexec, run_benchmarks, write_json
from graphc.bench.workloads import WORKLOADS
from graphc.cli.targets import check_writable
from graphc.ir import GraphcError

DESCRIPTION = "graphc bench: graphc (llvm and numpy backends) against NumPy, PyTorch and JAX, side by side in one run."


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Create the ``bench`` subcommand; its description lists the workloads (first docstring line of each)."""
    listing = "\n".join(f"  {name:<18} {(fn.__doc__ or '').strip().splitlines()[0]}" for name, fn in WORKLOADS.items())
    parser = subparsers.add_parser(
        "bench", help="benchmark graphc against NumPy, PyTorch and JAX",
        description=f"{DESCRIPTION}\n\nworkloads:\n{listing}", formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("workloads", nargs="*", metavar="WORKLOAD", help="workloads to run (default: all)")
    parser.add_argument("--threads", type=int, default=1,
                        help="threads for graphc's native code, NumPy BLAS, PyTorch and XLA (default 1)")
    parser.add_argument("--profile", action="store_true",
                        help="also profile graphc's native programs kernel by kernel (time, FLOPs, bytes, %% of peak)")
    parser.add_argument("--repeat", type=int, default=10, help="timed calls per row after warm-up (default 10)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed calls first (default 2)")
    parser.add_argument("--max-seconds", type=float, default=10.0, help="time cap per row (>= 3 samples)")
    parser.add_argument("--small", action="store_true", help="tiny sizes (seconds; for tests)")
    parser.add_argument("--frameworks", default="torch,jax",
                        help="other frameworks to compare when importable (comma list; 'none' for graphc/NumPy only)")
    parser.add_argument("--json", metavar="PATH", help="write every measured number to PATH")
    parser.set_defaults(handler=handle)
    return parser


def _argv(args: argparse.Namespace) -> list[str]:
    """The command line again, for a re-executed process."""
    argv = [*args.workloads, "--threads", str(args.threads), "--repeat", str(args.repeat), "--warmup",
            str(args.warmup), "--max-seconds", str(args.max_seconds), "--frameworks", args.frameworks]
    return argv + (["--small"] if args.small else []) + (["--json", args.json] if args.json else []) + \
        (["--profile"] if args.profile else [])


def handle(args: argparse.Namespace) -> int:
    unknown = [w for w in args.workloads if w not in WORKLOADS]
    if unknown:
        raise GraphcError(f"unknown workload {', '.join(unknown)}; choose from {', '.join(WORKLOADS)}")
    if args.threads < 1 or args.repeat < 1 or args.warmup < 0:
        raise GraphcError("--threads and --repeat must be >= 1, --warmup >= 0")
    if args.json:
        check_writable(args.json, "--json")  # before the run, not after it
    if needs_reexec(args.threads):
        return reexec(_argv(args), args.threads)
    frameworks = tuple(f.strip() for f in args.frameworks.split(",") if f.strip() not in ("", "none"))
    ctx = Context(repeat=args.repeat, warmup=args.warmup, threads=args.threads, small=args.small,
                  max_seconds=args.max_seconds, frameworks=frameworks, profile=args.profile)
    doc = run_benchmarks(args.workloads or list(WORKLOADS), ctx)
    print(format_table(ctx.rows, args.threads))
    for title, report in ctx.profiles.items():
        print(f"\n== {title}\n{report}")
    if args.json:
        write_json(doc, args.json)
        print(f"wrote {args.json}")
    return 0
