"""``graphc ir FILE[:NAME]``: the LLVM IR (as emitted or after O3), the host assembly or per-kernel facts."""

from __future__ import annotations

import argparse
from typing import Any

from graphc.api import compile as compile_program
from graphc.cli.targets import add_target_args, as_outputs, load_target


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Create the ``ir`` subcommand."""
    parser = subparsers.add_parser(
        "ir", help="print the LLVM IR, assembly or per-kernel facts of a target",
        description="Compile a target with the llvm backend and print its LLVM IR (as emitted, by default).")
    add_target_args(parser)
    show = parser.add_mutually_exclusive_group()
    show.add_argument("--optimized", action="store_true", help="the IR after O3")
    show.add_argument("--asm", action="store_true", help="the host assembly")
    show.add_argument("--kernels", action="store_true", help="per kernel: ops, vector width, FLOPs, bytes")
    parser.set_defaults(handler=handle)
    return parser


def handle(args: argparse.Namespace) -> int:
    from graphc.dump import format_kernels

    _, obj = load_target(args.target)
    program = compile_program(as_outputs(obj), backend="llvm")
    if args.kernels:
        print(format_kernels(program.kernels_info()))
    elif args.asm:
        print(program.asm())
    else:
        print(program.llvm_ir(optimized=args.optimized))
    return 0
