"""``graphc explain FILE[:NAME] NODE``: one node followed from its creation site through the passes, its buffer,
to the LLVM IR and assembly that compute it (see :mod:`runtime.explain`)."""

from __future__ import annotations

import argparse
from typing import Any

from graphc.cli.targets import TargetError, add_target_args, as_outputs, load_module, resolve, split_spec
from runtime import BACKENDS, DEFAULT_BACKEND, Program


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Create the ``explain`` subcommand."""
    parser = subparsers.add_parser(
        "explain", help="explain one node: passes, kernel, buffer, LLVM IR and assembly",
        description="Compile a target and explain how it computes one node: its creation site, what the passes "
                    "did to it, its kernel and why the kernel ends there, its buffer, and the LLVM IR and "
                    "assembly computing it. NAME may also name a compiled program (or a function returning one), "
                    "e.g. a training step with its updates.")
    add_target_args(parser)
    parser.add_argument("node", metavar="NODE", help="the name of the node to explain")
    parser.add_argument("--backend", choices=BACKENDS, default=DEFAULT_BACKEND,
                        help=f"the backend to compile for (default: {DEFAULT_BACKEND}; ignored for a program)")
    parser.set_defaults(handler=handle)
    return parser


def _program_or_outputs(spec: str) -> Any:
    """The compiled program NAME designates (a Program or a function returning one), else the target's outputs."""
    path, name = split_spec(spec)
    namespace = load_module(path)
    if name is not None and "." not in name and name in namespace:
        obj = namespace[name]
        if callable(obj) and not isinstance(obj, Program) and getattr(obj, "__code__", None) is not None \
                and obj.__code__.co_argcount == 0:
            obj = obj()
        if isinstance(obj, Program):
            return obj
        namespace = {**namespace, name: obj}
    return as_outputs(resolve(namespace, name, path))


def handle(args: argparse.Namespace) -> int:
    from graphc.explain import explain_target

    if args.feed:
        raise TargetError("explain: --feed is not used (nothing runs); drop it")
    target = _program_or_outputs(args.target)
    print(explain_target(target, args.node, backend=args.backend))
    return 0
