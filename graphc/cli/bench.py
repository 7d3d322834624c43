"""``graphc bench [WORKLOAD ...]``: benchmark graphc against NumPy, PyTorch and JAX (see :mod:`graphc.bench`);
``graphc bench models [MODEL ...]``: whole networks against onnxruntime and PyTorch (see :mod:`graphc.bench.zoo_run`).

``bench`` takes workload names positionally, so ``models`` is not a sub-subparser: a first argument ``models``
hands the rest of the command line to the parser of :func:`models_parser` (its own options and ``--help``).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from typing import Any

from graphc.bench.context import Context
from graphc.bench.runner import format_table, needs_reexec, reexec, run_benchmarks, write_json
from graphc.bench.workloads import WORKLOADS
from graphc.bench.zoo import EXPORTERS, MODELS, SMALL_MODELS, default_cache_dir, read_onnx_inputs
from graphc.cli.targets import check_writable
from graphc.ir import GraphcError

DESCRIPTION = "graphc bench: graphc (llvm and numpy backends) against NumPy, PyTorch and JAX, side by side in one run."
MODELS_USAGE = ("graphc bench models [MODEL ...] [--batches 1,8] [--threads N] [--repeat N] [--onnx PATH ...] "
                "[--json PATH] [--small] [--exporter {torchscript,dynamo}]")
MODELS_DESCRIPTION = """\
graphc bench models: graphc against onnxruntime and PyTorch on whole networks, from the same ONNX file.

Each torchvision model (random weights from a fixed seed, eval mode, random BatchNorm statistics) is exported
once per batch size with torch.onnx.export into the cache folder. graphc imports that file (gc.onnx.import_model)
and compiles it for the llvm backend; onnxruntime runs the file; PyTorch runs the module itself under
torch.no_grad(). --onnx files run on graphc and onnxruntime only. All systems use --threads threads and are timed
in interleaved rounds after warm-up; the table shows medians, graphc's median ÷ onnxruntime's and ÷ PyTorch's
(< 1: graphc is faster), the largest |graphc - onnxruntime| of the outputs (vs PyTorch without onnxruntime), and
the quartiles of graphc's time ÷ onnxruntime's within each round (how much of a ratio is the machine's noise).
torch, torchvision and onnxruntime are optional: what is missing is said and the rest runs."""


class BenchParser(argparse.ArgumentParser):
    """The parser of ``graphc bench``: a first argument ``models`` is ``graphc bench models``, parsed by
    ``models`` (options and positionals may be intermixed there)."""

    models: argparse.ArgumentParser

    def parse_known_args(self, args: Sequence[str] | None = None, namespace: Any = None) -> Any:
        if args and args[0] == "models":
            return self.models.parse_known_intermixed_args(args[1:], namespace)
        return super().parse_known_args(args, namespace)


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Create the ``bench`` subcommand; its description lists the workloads (first docstring line of each)."""
    listing = "\n".join(f"  {name:<18} {(fn.__doc__ or '').strip().splitlines()[0]}" for name, fn in WORKLOADS.items())
    parser = subparsers.add_parser(
        "bench", help="benchmark graphc against NumPy, PyTorch and JAX (and models against onnxruntime)",
        description=f"{DESCRIPTION}\n\nworkloads:\n{listing}\n\nwhole networks against onnxruntime and PyTorch:\n"
                    f"  {MODELS_USAGE}\n  (graphc bench models --help)",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.__class__ = BenchParser  # argparse creates subparsers of its own class: dispatch `models` (see above)
    parser.models = models_parser(parser.prog)
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
    if "models" in args.workloads:
        raise GraphcError(f"'models' is a command of its own and comes first: {MODELS_USAGE}")
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


# ------------------------------------------------------------------------------------------ bench models


def models_parser(prog: str) -> argparse.ArgumentParser:
    """The parser of ``graphc bench models``."""
    parser = argparse.ArgumentParser(
        prog=f"{prog} models", formatter_class=argparse.RawDescriptionHelpFormatter,
        description=f"{MODELS_DESCRIPTION}\n\ntorchvision models: {', '.join(MODELS)}\n\nexamples:\n"
                    "  graphc bench models resnet18 efficientnet_b0 --batches 1 --repeat 3\n"
                    "  graphc bench models --onnx model.onnx --batches 1,4 --threads 2 --json out.json")
    parser.add_argument("models", nargs="*", metavar="MODEL",
                        help="torchvision models (default: all of them, or none with --onnx; --small: "
                             f"{', '.join(SMALL_MODELS)})")
    parser.add_argument("--batches", help="comma list of batch sizes (default 1,8; --small: 1)")
    parser.add_argument("--threads", type=int, default=1, help="threads of every system (default 1)")
    parser.add_argument("--repeat", type=int, default=7, help="timed calls per system, interleaved (default 7)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed calls first (default 2; at least 1)")
    parser.add_argument("--max-seconds", type=float, default=60.0,
                        help="time cap per (model, batch): fewer rounds, at least 3 (default 60)")
    parser.add_argument("--onnx", nargs="+", action="extend", default=[], metavar="PATH",
                        help="ONNX files to benchmark too (graphc and onnxruntime; a symbolic first input "
                             "dimension takes each batch size)")
    parser.add_argument("--json", metavar="PATH", help="write every measured number to PATH")
    parser.add_argument("--small", action="store_true", help="3x64x64 inputs, resnet18 at batch 1 (for tests)")
    parser.add_argument("--exporter", choices=EXPORTERS, default="torchscript",
                        help="PyTorch's ONNX exporter: torchscript (dynamo=False, default) or dynamo")
    parser.add_argument("--cache", metavar="DIR",
                        help=f"folder of the exported ONNX files (default {default_cache_dir()})")
    parser.add_argument("--tune", action="store_true",
                        help="graphc compiles with tune=True: each conv layer runs the algorithm measured fastest "
                             "on this machine (measured once, then cached)")
    parser.set_defaults(handler=handle_models)
    return parser


def _batches(text: str | None, small: bool) -> list[int]:
    if text is None:
        return [1] if small else [1, 8]
    try:
        batches = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise GraphcError(f"--batches {text}: expected a comma list of integers, e.g. 1,8") from None
    if not batches or min(batches) < 1:
        raise GraphcError(f"--batches {text}: batch sizes must be >= 1")
    return list(dict.fromkeys(batches))


def _models_argv(args: argparse.Namespace, batches: list[int]) -> list[str]:
    """``graphc bench models`` again, for a re-executed process."""
    argv = ["models", *args.models, "--batches", ",".join(map(str, batches)), "--threads", str(args.threads),
            "--repeat", str(args.repeat), "--warmup", str(args.warmup), "--max-seconds", str(args.max_seconds),
            "--exporter", args.exporter]
    argv += (["--small"] if args.small else []) + (["--json", args.json] if args.json else [])
    argv += ["--tune"] if args.tune else []
    return argv + (["--cache", args.cache] if args.cache else []) + (["--onnx", *args.onnx] if args.onnx else [])


def handle_models(args: argparse.Namespace) -> int:
    from graphc.bench.zoo_run import Settings, format_table, run_models

    unknown = [m for m in args.models if m not in MODELS]
    if unknown:
        raise GraphcError(f"unknown model {', '.join(unknown)}; choose from {', '.join(MODELS)} "
                          "(or benchmark an ONNX file with --onnx PATH)")
    batches = _batches(args.batches, args.small)
    if args.threads < 1 or args.repeat < 1 or args.warmup < 0 or not args.max_seconds > 0:
        raise GraphcError("--threads and --repeat must be >= 1, --warmup >= 0, --max-seconds > 0")
    onnx = {path: read_onnx_inputs(path) for path in dict.fromkeys(args.onnx)}
    cache = args.cache or default_cache_dir()
    if os.path.exists(cache) and not os.path.isdir(cache):
        raise GraphcError(f"--cache {cache}: not a folder")
    if args.json:
        check_writable(args.json, "--json")  # before the run, not after it
    if needs_reexec(args.threads):
        return reexec(_models_argv(args, batches), args.threads)
    models = list(args.models) or ([] if onnx else list(SMALL_MODELS if args.small else MODELS))
    settings = Settings(models, onnx, batches, threads=args.threads, repeat=args.repeat, warmup=args.warmup,
                        max_seconds=args.max_seconds, small=args.small, exporter=args.exporter, cache_dir=cache,
                        tune=args.tune)
    notes: list[str] = []
    cases, doc = run_models(settings, notes)
    print(format_table(cases, settings))
    if args.json:
        write_json(doc, args.json)
        print(f"wrote {args.json}")
    return 0  # failures are rows of the report, not errors of the command
