"""``graphc render FILE[:NAME]``: draw the forward and backward graph, with values on the edges when feeds are known."""

from __future__ import annotations

import argparse
from typing import Any

from graphc.api import compile as compile_program
from graphc.cli.targets import FEEDS_NAME, add_target_args, as_outputs, default_output, load_target, parse_feeds
from graphc.viz import render


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Create the ``render`` subcommand."""
    parser = subparsers.add_parser(
        "render", help="draw the forward and backward graph (.svg, .png, .pdf, .dot)",
        description="Draw the forward and backward graph of a target in one picture. When feed values are known "
                    f"(the file's {FEEDS_NAME} dict or --feed), every edge shows the value flowing along it.")
    add_target_args(parser)
    parser.add_argument("-o", "--output", metavar="OUT",
                        help="the file to write; format by extension (default: FILE's stem + .svg)")
    parser.add_argument("--no-values", action="store_true", help="do not compute values for the edges")
    parser.add_argument("--style", choices=("graph", "textbook"), default="graph",
                        help="graph: forward and backward nodes (default); textbook: the course's figure, forward "
                             "ops only, each edge with its value above and the gradient flowing back below (a "
                             "scalar target)")
    parser.set_defaults(handler=handle)
    return parser


def handle(args: argparse.Namespace) -> int:
    namespace, obj = load_target(args.target)
    out = args.output or default_output(args.target, ".svg")
    values = None
    if not args.no_values:
        feeds = parse_feeds(args.feed, namespace.get(FEEDS_NAME))
        if feeds:  # run on the interpreter: its Results let render recompute every intermediate value
            values = compile_program(as_outputs(obj), backend="numpy")(**feeds)
    picture = render(obj, out, values=values, style=args.style)
    print(f"wrote {picture.path}")
    return 0
