"""Targets and feeds of the ``graphc`` subcommands: ``FILE[:NAME]`` loading, ``--feed`` values, result printing.

FILE is a Python file, run with ``runpy.run_path`` under the module name ``__graphc__`` (so its
``if __name__ == "__main__":`` block does not run). NAME names a module-level ``Graph``, tensor, dict/list of tensors,
or a zero-argument function returning one of these. Without NAME the target is the module's ``outputs`` (a variable
or a function), else its single ``Graph``. Feed values default to the module's ``FEEDS`` dict and are overridden by
``--feed name=value``.

Every subcommand module imports what it needs from here (never from :mod:`graphc.cli`, which imports them).
"""

from __future__ import annotations

import argparse
import ast
import os
import runpy
import sys
from collections.abc import Mapping
from typing import Any

import numpy as np

from graphc.ir import Graph, GraphcError, Node

RUN_NAME = "__graphc__"
DEFAULT_NAME = "outputs"
FEEDS_NAME = "FEEDS"


class TargetError(GraphcError):
    """A FILE[:NAME] target or a --feed value that cannot be used."""


def split_spec(spec: str) -> tuple[str, str | None]:
    """``"path/file.py:name"`` → ``("path/file.py", "name")``; a missing or non-identifier NAME → None."""
    path, sep, name = spec.rpartition(":")
    if sep and path and name and all(part.isidentifier() for part in name.split(".")):
        return path, name
    return spec, None


def default_output(spec: str, suffix: str) -> str:
    """The default output path of a target: FILE's stem (no folder) + ``suffix``, e.g. ``model.svg``."""
    return os.path.splitext(os.path.basename(split_spec(spec)[0]))[0] + suffix


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


def add_target_args(parser: argparse.ArgumentParser) -> None:
    """The ``FILE[:NAME]`` positional and the repeatable ``--feed NAME=VALUE`` option."""
    parser.add_argument("target", metavar="FILE[:NAME]",
                        help="a Python file, optionally with the name of a Graph, tensor, dict/list of tensors or "
                             f"zero-argument function in it (default: `{DEFAULT_NAME}`, else the single Graph)")
    parser.add_argument("--feed", action="append", metavar="NAME=VALUE", default=[],
                        help=f"an input value (Python literal: 2.5, [1, 2]); overrides the file's {FEEDS_NAME} dict")


__all__ = ["DEFAULT_NAME", "FEEDS_NAME", "RUN_NAME", "TargetError", "add_target_args", "as_outputs",
           "default_output", "format_result", "load_module", "load_target", "parse_feeds", "resolve", "split_spec"]


def check_writable(path: str, what: str) -> None:
    """A :class:`TargetError` now when ``path`` cannot be written as a file later (a folder, a missing or
    read-only parent folder)."""
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise TargetError(f"{what} {path}: is a folder, not a file")
    if not os.path.isdir(folder):
        raise TargetError(f"{what} {path}: the folder {folder} does not exist")
    if not os.access(folder, os.W_OK) or (os.path.exists(path) and not os.access(path, os.W_OK)):
        raise TargetError(f"{what} {path}: not writable")
