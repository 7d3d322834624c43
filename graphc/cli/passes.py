"""``graphc passes FILE[:NAME]``: write what every compiler pass did (text and DOT per stage); ``--timings`` also
prints the time each pass took on the program (see :mod:`graphc.dump` for the files)."""

from __future__ import annotations

import argparse
from typing import Any

from graphc.api import compile as compile_program
from graphc.cli.targets import add_target_args, as_outputs, default_output, load_target


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Create the ``passes`` subcommand."""
    parser = subparsers.add_parser(
        "passes", help="write what every compiler pass did (text and DOT per stage)",
        description="Compile a target and write what every compiler pass did (text and DOT per stage).",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    add_target_args(parser)
    parser.add_argument("-o", "--output", metavar="DIR", help="the folder (default: FILE's stem + _passes)")
    parser.add_argument("--backend", choices=("llvm", "numpy"), default="llvm",
                        help="llvm also writes the IR, optimized IR, asm and kernel facts (default: llvm)")
    parser.add_argument("--timings", action="store_true",
                        help="also print the time each compiler pass took on this program, and the total")
    parser.set_defaults(handler=handle)
    return parser


def handle(args: argparse.Namespace) -> int:
    from graphc.dump import dump_program, format_timings, plan_of

    _, obj = load_target(args.target)
    folder = args.output or default_output(args.target, "_passes")
    program = compile_program(as_outputs(obj), backend=args.backend)
    result = dump_program(program, folder)
    for line in result.summary:
        print(line)
    print(f"wrote {len(result.files)} files to {folder}")
    if args.timings:
        print()
        print("pass timings:")
        print(format_timings(plan_of(program)))
    return 0
