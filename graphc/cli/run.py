"""``graphc run FILE[:NAME]``: compile a target's outputs, feed them and print every result."""

from __future__ import annotations

import argparse
from typing import Any

from graphc.api import compile as compile_program
from graphc.cli.targets import FEEDS_NAME, add_target_args, as_outputs, format_result, load_target, parse_feeds
from runtime import BACKENDS, DEFAULT_BACKEND


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Create the ``run`` subcommand."""
    parser = subparsers.add_parser(
        "run", help="compile a target and print its results",
        description="Compile a target's outputs, feed them and print every result.")
    add_target_args(parser)
    parser.add_argument("--backend", choices=BACKENDS, default=DEFAULT_BACKEND,
                        help=f"the backend to run on (default: {DEFAULT_BACKEND})")
    parser.set_defaults(handler=handle)
    return parser


def handle(args: argparse.Namespace) -> int:
    namespace, obj = load_target(args.target)
    feeds = parse_feeds(args.feed, namespace.get(FEEDS_NAME))
    program = compile_program(as_outputs(obj), backend=args.backend)
    results = program(**feeds)
    for name, value in results.items():
        print(format_result(name, value))
    return 0
