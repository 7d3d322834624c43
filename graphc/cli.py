"""The ``graphc`` command line.

Every subcommand is one ``add_parser(subparsers)`` function listed in :data:`COMMANDS`; it creates its parser
and sets ``handler`` (a function ``Namespace -> int``) as a default. A new subcommand (``ir``, ``bench``,
``passes``) is added by writing such a function and appending it to ``COMMANDS`` (or calling
:func:`register_command`).

Targets are ``FILE[:NAME]``: FILE is a Python file, loaded with ``runpy.run_path`` under the module name
``__graphc__`` (so its ``if __name__ == "__main__":`` block does not run). NAME names a module-level
``Graph``, tensor, dict/list of tensors, or a zero-argument function returning one of these. Without NAME the
target is the module's ``outputs`` (a variable or a function), else its single ``Graph``. Feed values default
to the module's ``FEEDS`` dict and are overridden by ``--feed name=value``.
"""

from __future__ import annotations

import argparse
import ast
import os
import runpy
import sys
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from graphc.api import compile as compile_program
from graphc.ir import Graph, GraphcError, Node
from graphc.viz import render
from runtime import BACKENDS, DEFAULT_BACKEND

RUN_NAME = "__graphc__"
DEFAULT_NAME = "outputs"
FEEDS_NAME = "FEEDS"

Handler = Callable[[argparse.Namespace], int]
AddParser = Callable[[Any], argparse.ArgumentParser]


class TargetError(GraphcError):
    """A FILE[:NAME] target or a --feed value that cannot be used."""


# --------------------------------------------------------------------------------------------- targets


def split_spec(spec: str) -> tuple[str, str | None]:
    """``"path/file.py:name"`` → ``("path/file.py", "name")``; a missing or non-identifier NAME → None."""
    path, sep, name = spec.rpartition(":")
    if sep and path and name and all(part.isidentifier() for part in name.split(".")):
        return path, name
    return spec, None


def load_module(path: str) -> dict[str, Any]:
    """Run the Python file at ``path`` as module ``__graphc__`` and return its namespace."""
    if not os.path.isfile(path):
        raise TargetError(f"no such file: {path}")
    folder = os.path.dirname(os.path.abspath(path))
    sys.path.insert(0, folder)  # sibling imports of the user's script work as when it runs directly
    try:
        return runpy.run_path(path, run_name=RUN_NAME)
    finally:
        if sys.path and sys.path[0] == folder:
            sys.path.pop(0)


def _is_target(obj: Any) -> bool:
    if isinstance(obj, (Graph, Node)):
        return True
    if isinstance(obj, Mapping):
        return bool(obj) and all(isinstance(v, Node) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return bool(obj) and all(isinstance(v, Node) for v in obj)
    return False


def resolve(namespace: Mapping[str, Any], name: str | None, where: str) -> Any:
    """The object NAME designates in ``namespace`` (calling it when it is a function), or the default."""
    if name is None:
        if DEFAULT_NAME in namespace:
            name = DEFAULT_NAME
        else:
            graphs = [k for k, v in namespace.items() if isinstance(v, Graph) and not k.startswith("_")]
            if len(graphs) != 1:
                found = f"graphs {', '.join(graphs)}" if graphs else "no Graph"
                raise TargetError(f"{where}: no target name given, no `{DEFAULT_NAME}` defined and {found} at "
                                  f"module level; write {where}:NAME")
            name = graphs[0]
    head, *rest = name.split(".")
    try:
        obj = namespace[head]
        for part in rest:
            obj = getattr(obj, part)
    except (KeyError, AttributeError):
        raise TargetError(f"{where}: defines no {name!r}") from None
    if callable(obj) and not isinstance(obj, (Graph, Node)):
        obj = obj()
    if not _is_target(obj):
        raise TargetError(f"{where}:{name} is a {type(obj).__name__}; expected a Graph, a tensor, a dict or list of "
                          f"tensors, or a function returning one")
    return obj


def load_target(spec: str) -> tuple[dict[str, Any], Any]:
    """Load ``FILE[:NAME]``: the module namespace and the Graph / tensor / dict / list it designates."""
    path, name = split_spec(spec)
    namespace = load_module(path)
    return namespace, resolve(namespace, name, path)


def as_outputs(obj: Any) -> dict[str, Node]:
    """Named outputs of a target: a Graph gives its terminal nodes (those no other node uses)."""
    if isinstance(obj, Graph):
        used = {id(x) for n in obj.nodes for x in n.inputs}
        return {n.name: n for n in obj.nodes if id(n) not in used}
    if isinstance(obj, Node):
        return {obj.name: obj}
    if isinstance(obj, Mapping):
        return {str(k): v for k, v in obj.items()}
    return {n.name: n for n in obj}


def parse_feeds(items: list[str] | None, defaults: Any = None) -> dict[str, Any]:
    """``FEEDS`` defaults overridden by ``name=value`` items (value: a Python literal, e.g. 2.5 or [[1, 2]])."""
    if defaults is not None and not isinstance(defaults, Mapping):
        raise TargetError(f"{FEEDS_NAME} must be a dict name -> value, got {type(defaults).__name__}")
    feeds = dict(defaults or {})
    for item in items or []:
        name, sep, text = item.partition("=")
        if not sep or not name.strip():
            raise TargetError(f"--feed {item!r}: expected name=value, e.g. --feed x=2.5")
        try:
            value = ast.literal_eval(text.strip())
        except (ValueError, SyntaxError):
            raise TargetError(f"--feed {item!r}: {text!r} is not a number or a (nested) list of numbers") from None
        feeds[name.strip()] = np.asarray(value)
    return feeds


def format_result(name: str, value: Any) -> str:
    """``name = 220`` for scalars; arrays get their type on the first line and the values below."""
    array = np.asarray(value)
    if array.ndim == 0:
        item = array.item()
        return f"{name} = {item:.6g}" if isinstance(item, float) else f"{name} = {item}"
    body = np.array2string(array, precision=6, suppress_small=True, threshold=200)
    return f"{name} = {array.dtype}{list(array.shape)}\n  " + body.replace("\n", "\n  ")


# ------------------------------------------------------------------------------------------ subcommands


def _add_target_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", metavar="FILE[:NAME]",
                        help="a Python file, optionally with the name of a Graph, tensor, dict/list of tensors or "
                             f"zero-argument function in it (default: `{DEFAULT_NAME}`, else the single Graph)")
    parser.add_argument("--feed", action="append", metavar="NAME=VALUE", default=[],
                        help=f"an input value (Python literal: 2.5, [1, 2]); overrides the file's {FEEDS_NAME} dict")


def add_render_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "render", help="draw the forward and backward graph (.svg, .png, .pdf, .dot)",
        description="Draw the forward and backward graph of a target in one picture. When feed values are known "
                    f"(the file's {FEEDS_NAME} dict or --feed), every edge shows the value flowing along it.")
    _add_target_args(parser)
    parser.add_argument("-o", "--output", metavar="OUT",
                        help="the file to write; format by extension (default: FILE's stem + .svg)")
    parser.add_argument("--no-values", action="store_true", help="do not compute values for the edges")
    parser.set_defaults(handler=cmd_render)
    return parser


def cmd_render(args: argparse.Namespace) -> int:
    namespace, obj = load_target(args.target)
    out = args.output or os.path.splitext(os.path.basename(split_spec(args.target)[0]))[0] + ".svg"
    values = None
    if not args.no_values:
        feeds = parse_feeds(args.feed, namespace.get(FEEDS_NAME))
        if feeds:  # run on the interpreter: its Results let render recompute every intermediate value
            values = compile_program(as_outputs(obj), backend="numpy")(**feeds)
    written = render(obj, out, values=values)
    print(f"wrote {written}")
    return 0


def add_run_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "run", help="compile a target and print its results",
        description="Compile a target's outputs, feed them and print every result.")
    _add_target_args(parser)
    parser.add_argument("--backend", choices=BACKENDS, default=DEFAULT_BACKEND,
                        help=f"the backend to run on (default: {DEFAULT_BACKEND})")
    parser.set_defaults(handler=cmd_run)
    return parser


def cmd_run(args: argparse.Namespace) -> int:
    namespace, obj = load_target(args.target)
    feeds = parse_feeds(args.feed, namespace.get(FEEDS_NAME))
    program = compile_program(as_outputs(obj), backend=args.backend)
    results = program(**feeds)
    for name, value in results.items():
        print(format_result(name, value))
    return 0


COMMANDS: list[AddParser] = [add_render_parser, add_run_parser]

from graphc.bench import add_bench_parser  # noqa: E402  (bench, ir and passes live in their own modules)


def add_ir_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "ir", help="print the LLVM IR, assembly or per-kernel facts of a target",
        description="Compile a target with the llvm backend and print its LLVM IR (as emitted, by default).")
    _add_target_args(parser)
    show = parser.add_mutually_exclusive_group()
    show.add_argument("--optimized", action="store_true", help="the IR after O3")
    show.add_argument("--asm", action="store_true", help="the host assembly")
    show.add_argument("--kernels", action="store_true", help="per kernel: ops, vector width, FLOPs, bytes")
    parser.set_defaults(handler=cmd_ir)
    return parser


def cmd_ir(args: argparse.Namespace) -> int:
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


def add_passes_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "passes", help="write what every compiler pass did (text and DOT per stage)",
        description="Compile a target and write what every compiler pass did (text and DOT per stage).",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_target_args(parser)
    parser.add_argument("-o", "--output", metavar="DIR", help="the folder (default: FILE's stem + _passes)")
    parser.add_argument("--backend", choices=("llvm", "numpy"), default="llvm",
                        help="llvm also writes the IR, optimized IR, asm and kernel facts (default: llvm)")
    parser.set_defaults(handler=cmd_passes)
    return parser


def cmd_passes(args: argparse.Namespace) -> int:
    from graphc.dump import dump_program

    _, obj = load_target(args.target)
    folder = args.output or os.path.splitext(os.path.basename(split_spec(args.target)[0]))[0] + "_passes"
    program = compile_program(as_outputs(obj), backend=args.backend)
    result = dump_program(program, folder)
    for line in result.summary:
        print(line)
    print(f"wrote {len(result.files)} files to {folder}")
    return 0




COMMANDS += [add_ir_parser, add_passes_parser, add_bench_parser]


def register_command(add_parser: AddParser) -> AddParser:
    """Add a subcommand: ``add_parser(subparsers)`` must create it and ``set_defaults(handler=...)``."""
    if add_parser not in COMMANDS:
        COMMANDS.append(add_parser)
    return add_parser


# ------------------------------------------------------------------------------------------------ main

EPILOG = f"""\
examples:
  graphc render examples/apple.py -o apple.svg       forward + backward graph with values on the edges
  graphc render model.py:loss -o loss.dot             the graph of the tensor `loss` defined in model.py
  graphc run examples/apple.py                        print price and gradients (feeds from {FEEDS_NAME})
  graphc run examples/apple.py --feed apple=150       override one feed
  graphc run examples/chain_rule.py --backend numpy

FILE[:NAME] names a Graph, a tensor, a dict/list of tensors, or a zero-argument function returning one;
without NAME graphc uses `{DEFAULT_NAME}` (a variable or function), else the file's single Graph.
The file is run as module {RUN_NAME!r}, so its `if __name__ == "__main__":` block is skipped.
"""


def build_parser() -> argparse.ArgumentParser:
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


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
