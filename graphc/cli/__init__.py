"""The ``graphc`` command line (console script ``graphc``, or ``python -m graphc.cli``).

What lives where:

- here: :func:`main` (the entry point), :func:`build_parser`, the :data:`COMMANDS` list and
  :func:`register_command`;
- :mod:`graphc.cli.targets`: ``FILE[:NAME]`` loading (:func:`~graphc.cli.targets.load_target`), ``--feed`` parsing,
  result formatting, :class:`~graphc.cli.targets.TargetError` and ``add_target_args`` (the shared arguments);
- one module per subcommand: :mod:`~graphc.cli.render`, :mod:`~graphc.cli.run`, :mod:`~graphc.cli.ir`,
  :mod:`~graphc.cli.passes`, :mod:`~graphc.cli.explain`, :mod:`~graphc.cli.bench` (the benchmark itself lives in
  :mod:`graphc.bench`),
  :mod:`~graphc.cli.launch` (``mpiexec`` for ``graphc.distributed``).

Adding a subcommand: write ``graphc/cli/NAME.py`` with ``add_parser(subparsers) -> ArgumentParser`` that calls
``subparsers.add_parser("NAME", ...)`` exactly once and sets ``handler`` (a function ``Namespace -> int``, the exit
status) with ``parser.set_defaults(handler=...)``; import it below and append its ``add_parser`` to
:data:`COMMANDS` (code outside the package calls :func:`register_command` instead). A subcommand module imports
what it needs from :mod:`graphc.cli.targets`, never from ``graphc.cli`` (that would be an import cycle). A handler
reports user errors by raising :class:`graphc.ir.GraphcError` (``TargetError`` is one): :func:`main` prints
``error: ...`` and returns 2.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from typing import Any

from graphc.cli import bench, explain, ir, launch, passes, render, run
from graphc.cli.targets import DEFAULT_NAME, FEEDS_NAME, RUN_NAME
from graphc.ir import GraphcError

Handler = Callable[[argparse.Namespace], int]
AddParser = Callable[[Any], argparse.ArgumentParser]

# the subcommands, in the order `graphc --help` lists them
COMMANDS: list[AddParser] = [render.add_parser, run.add_parser, ir.add_parser, passes.add_parser, explain.add_parser,
                             bench.add_parser, launch.add_parser]


def register_command(add_parser: AddParser) -> AddParser:
    """Add a subcommand: ``add_parser(subparsers)`` must create it and ``set_defaults(handler=...)``."""
    if add_parser not in COMMANDS:
        COMMANDS.append(add_parser)
    return add_parser


EPILOG = f"""\
examples:
  graphc render examples/apple.py -o apple.svg       forward + backward graph with values on the edges
  graphc render model.py:loss -o loss.dot             the graph of the tensor `loss` defined in model.py
  graphc run examples/apple.py                        print price and gradients (feeds from {FEEDS_NAME})
  graphc run examples/apple.py --feed apple=150       override one feed
  graphc run examples/chain_rule.py --backend numpy
  graphc passes examples/apple.py --timings           every pass's output into apple_passes/, and its time
  graphc explain examples/explain.py:step hidden      one node: passes, kernel, buffer, LLVM IR and assembly

FILE[:NAME] names a Graph, a tensor, a dict/list of tensors, or a zero-argument function returning one;
without NAME graphc uses `{DEFAULT_NAME}` (a variable or function), else the file's single Graph.
The file is run as module {RUN_NAME!r}, so its `if __name__ == "__main__":` block is skipped.
"""


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with one subparser per entry of :data:`COMMANDS`."""
    parser = argparse.ArgumentParser(
        prog="graphc", description="graphc: a symbolic computational-graph compiler for deep learning.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    for add_parser in COMMANDS:
        add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``graphc`` console script; returns the exit status (2 for user errors)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # --help (0) or a usage error (2)
        return exit_.code if isinstance(exit_.code, int) else 2
    handler: Handler | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 2
    try:
        return handler(args)
    except GraphcError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # the reader went away (graphc ir model.py | head -1): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error when Python flushes
        return 1
    except OSError as err:  # a file the user named cannot be read or written
        print(f"error: {err.strerror or err}: {err.filename or ''}".rstrip(": "), file=sys.stderr)
        return 2


__all__ = ["COMMANDS", "AddParser", "Handler", "build_parser", "main", "register_command"]
